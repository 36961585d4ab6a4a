//! Token-budgeted chunks that cover a document exactly once, in order.
//!
//! Paragraphs are packed whole while they fit; a paragraph over the budget
//! is packed sentence by sentence; a sentence over the budget alone is split
//! at word boundaries, and a word over it at character boundaries. Nothing
//! is ever cut off: every byte of the input belongs to exactly one chunk.

use std::ops::Range;

use anyhow::Result;

use super::segment::{paragraphs, sentences};

/// Counts the tokens a piece of text takes with the model's tokenizer.
pub trait TokenCounter {
    fn count(&self, text: &str) -> Result<usize>;
}

impl<F: Fn(&str) -> Result<usize>> TokenCounter for F {
    fn count(&self, text: &str) -> Result<usize> {
        self(text)
    }
}

/// One piece of the document to send to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Bytes of the input this chunk accounts for, separators included;
    /// consecutive chunks' spans tile the whole input.
    pub span: Range<usize>,
    /// The part of `span` with text, the part that is sent.
    pub content: Range<usize>,
    /// Tokens of the content.
    pub tokens: usize,
    /// Paragraphs (indices into the document's paragraphs) the content covers.
    pub paragraphs: Range<usize>,
    /// Whether the content is only part of a single paragraph.
    pub partial: bool,
}

/// A document split into paragraphs and chunks.
#[derive(Debug, Clone)]
pub struct Plan {
    pub paragraphs: Vec<Range<usize>>,
    pub chunks: Vec<Chunk>,
}

/// Splits `text` into chunks of at most `budget` tokens each.
pub fn plan(text: &str, budget: usize, counter: &dyn TokenCounter) -> Result<Plan> {
    anyhow::ensure!(budget > 0, "chunk budget must be positive");
    let paras = paragraphs(text);
    let mut pieces: Vec<Piece> = Vec::new();
    for (index, para) in paras.iter().enumerate() {
        let tokens = counter.count(&text[para.clone()])?;
        if tokens <= budget {
            pieces.push(Piece {
                range: para.clone(),
                paragraph: index,
                whole: true,
            });
        } else {
            for range in split_paragraph(text, para.clone(), budget, counter)? {
                pieces.push(Piece {
                    range,
                    paragraph: index,
                    whole: false,
                });
            }
        }
    }
    let mut chunks = pack(text, &pieces, budget, counter)?;
    // Spans: from the end of the previous chunk to the start of the next one.
    let n = chunks.len();
    for i in 0..n {
        let start = if i == 0 { 0 } else { chunks[i - 1].span.end };
        let end = if i + 1 == n {
            text.len()
        } else {
            chunks[i + 1].content.start
        };
        chunks[i].span = start..end;
    }
    Ok(Plan {
        paragraphs: paras,
        chunks,
    })
}

struct Piece {
    range: Range<usize>,
    paragraph: usize,
    whole: bool,
}

/// Packs consecutive pieces into chunks while the joined text fits. Whole
/// paragraphs pack with whole paragraphs; parts of a paragraph only with
/// other parts of the same paragraph, so each chunk maps to paragraphs.
fn pack(
    text: &str,
    pieces: &[Piece],
    budget: usize,
    counter: &dyn TokenCounter,
) -> Result<Vec<Chunk>> {
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut i = 0;
    while i < pieces.len() {
        let first = &pieces[i];
        let mut end = i;
        let mut tokens = counter.count(&text[first.range.clone()])?;
        while end + 1 < pieces.len() {
            let next = &pieces[end + 1];
            let compatible = if first.whole {
                next.whole
            } else {
                !next.whole && next.paragraph == first.paragraph
            };
            if !compatible {
                break;
            }
            let joined = counter.count(&text[first.range.start..next.range.end])?;
            if joined > budget {
                break;
            }
            tokens = joined;
            end += 1;
        }
        let last = &pieces[end];
        chunks.push(Chunk {
            span: 0..0,
            content: first.range.start..last.range.end,
            tokens,
            paragraphs: first.paragraph..last.paragraph + 1,
            partial: !first.whole,
        });
        i = end + 1;
    }
    Ok(chunks)
}

/// Ranges of a paragraph, each within budget: sentences, or smaller pieces
/// of sentences that alone exceed it. What lies between them is whitespace.
pub fn split_paragraph(
    text: &str,
    para: Range<usize>,
    budget: usize,
    counter: &dyn TokenCounter,
) -> Result<Vec<Range<usize>>> {
    let mut out = Vec::new();
    for sentence in sentences(text, para) {
        if counter.count(&text[sentence.clone()])? <= budget {
            out.push(sentence);
        } else {
            split_long(text, sentence, budget, counter, &mut out)?;
        }
    }
    Ok(out)
}

/// Splits one over-budget sentence: at whitespace when it has words,
/// otherwise (CJK, one giant token) at character boundaries.
fn split_long(
    text: &str,
    range: Range<usize>,
    budget: usize,
    counter: &dyn TokenCounter,
    out: &mut Vec<Range<usize>>,
) -> Result<()> {
    let words = word_ranges(text, range.clone());
    if words.len() > 1 {
        pack_units(text, &words, budget, counter, out, true)
    } else {
        pack_units(text, &char_ranges(text, range), budget, counter, out, false)
    }
}

/// Greedily packs consecutive units into ranges within budget. A unit that
/// alone exceeds it is split into characters when `split_units` allows.
fn pack_units(
    text: &str,
    units: &[Range<usize>],
    budget: usize,
    counter: &dyn TokenCounter,
    out: &mut Vec<Range<usize>>,
    split_units: bool,
) -> Result<()> {
    let mut start = 0;
    while start < units.len() {
        let fits = |end: usize| -> Result<bool> {
            Ok(counter.count(&text[units[start].start..units[end - 1].end])? <= budget)
        };
        if !fits(start + 1)? {
            anyhow::ensure!(
                split_units,
                "a single character takes more than {budget} tokens"
            );
            let chars = char_ranges(text, units[start].clone());
            pack_units(text, &chars, budget, counter, out, false)?;
            start += 1;
            continue;
        }
        // Largest end such that units[start..end] fits, by bisection: token
        // counts grow with the prefix for real tokenizers.
        let (mut lo, mut hi) = (start + 1, units.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits(mid)? {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        out.push(units[start].start..units[lo - 1].end);
        start = lo;
    }
    Ok(())
}

fn char_ranges(text: &str, range: Range<usize>) -> Vec<Range<usize>> {
    text[range.clone()]
        .char_indices()
        .map(|(i, c)| range.start + i..range.start + i + c.len_utf8())
        .collect()
}

/// Whitespace-separated words, each keeping the whitespace before it so that
/// joining consecutive words reproduces the text between them.
fn word_ranges(text: &str, range: Range<usize>) -> Vec<Range<usize>> {
    let s = &text[range.clone()];
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_space = false;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() {
            in_space = true;
        } else if in_space {
            out.push(range.start + start..range.start + i);
            start = i;
            in_space = false;
        }
    }
    out.push(range.start + start..range.end);
    // Leading whitespace of a word belongs to the gap, not the word.
    out.iter()
        .map(|r| {
            let w = &text[r.clone()];
            let lead = w.len() - w.trim_start().len();
            let trail = w.len() - w.trim_end().len();
            r.start + lead..r.end - trail
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One token per whitespace-separated word, and one per CJK character.
    fn words(text: &str) -> Result<usize> {
        Ok(text
            .split_whitespace()
            .map(|w| {
                let cjk = w.chars().filter(|c| *c as u32 >= 0x3000).count();
                cjk.max(1)
            })
            .sum())
    }

    fn check(text: &str, budget: usize) -> Plan {
        let plan = plan(text, budget, &words).unwrap();
        let mut pos = 0;
        for c in &plan.chunks {
            assert_eq!(c.span.start, pos, "spans tile the input");
            assert!(c.span.start <= c.content.start && c.content.end <= c.span.end);
            assert!(
                text[c.span.start..c.content.start].trim().is_empty()
                    && text[c.content.end..c.span.end].trim().is_empty(),
                "only whitespace outside the content"
            );
            let tokens = words(&text[c.content.clone()]).unwrap();
            assert_eq!(tokens, c.tokens);
            assert!(tokens <= budget, "chunk of {tokens} over budget {budget}");
            pos = c.span.end;
        }
        if !plan.chunks.is_empty() {
            assert_eq!(pos, text.len(), "spans reach the end");
        }
        plan
    }

    #[test]
    fn small_paragraphs_pack_together() {
        let t = "a b c\n\nd e\n\nf g h i";
        let p = check(t, 5);
        assert_eq!(p.chunks.len(), 2);
        assert_eq!(p.chunks[0].paragraphs, 0..2);
        assert_eq!(p.chunks[1].paragraphs, 2..3);
    }

    #[test]
    fn long_paragraph_splits_on_sentences_then_words() {
        let t = "One two three. Four five six seven eight nine ten eleven. Twelve.";
        let p = check(t, 4);
        assert!(p.chunks.iter().all(|c| c.partial && c.paragraphs == (0..1)));
        assert_eq!(&t[p.chunks[0].content.clone()], "One two three.");
        let t = "長い文章です長い文章です長い文章です";
        let p = check(t, 5);
        assert_eq!(p.chunks.len(), 4);
    }

    proptest! {
        #[test]
        fn chunks_tile_the_input(
            paras in prop::collection::vec(
                prop::collection::vec("[a-zé]{1,12}[.!?]?|日本語です。|Dr\\.", 1..40), 1..8),
            seps in prop::collection::vec("\n\n|\n \n\n|\r\n\r\n", 8),
            budget in 1usize..30,
        ) {
            let mut text = String::from("  ");
            for (i, p) in paras.iter().enumerate() {
                text.push_str(&p.join(" "));
                text.push_str(&seps[i % seps.len()]);
            }
            check(&text, budget);
        }
    }
}
