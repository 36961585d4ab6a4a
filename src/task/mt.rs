//! Whole-document translation with a dedicated translation model (Marian,
//! T5): every unit is cut into sentences, all sentences go through the
//! model in batches, and each unit is put back together with its own
//! spacing, line breaks and markup.
//!
//! These models take one sentence and give one back, with no instructions:
//! there is nothing to ask again. A unit whose placeholders do not come
//! back keeps its source text, and a sentence that comes back empty keeps
//! its own; both are counted, never dropped.

use anyhow::Result;

use super::check::check;
use super::translate::{line_of, Flag, Translation};
use super::{wrong_language, Usage};
use crate::engine::seq2seq::Seq2Seq;
use crate::markup::{strip_placeholders, Markup};
use crate::text::chunk::split_paragraph;

/// What the task needs from a sentence translator.
pub trait SentenceModel {
    /// Source tokens `text` takes.
    fn count_tokens(&self, text: &str) -> Result<usize>;
    /// The most source tokens one sentence may take.
    fn max_tokens(&self) -> usize;
    /// Translations of `sentences`, in order, and what they cost.
    fn translate(&mut self, sentences: &[String]) -> Result<(Vec<String>, Usage)>;
    /// The ids the model is given for `sentence` (end and target tokens
    /// included) and the most tokens its answer may take.
    fn measure(&self, sentence: &str) -> Result<(usize, usize)>;
}

/// A loaded translation model, with the target token it needs (if any).
pub struct Mt<'a> {
    pub model: &'a Seq2Seq,
    pub target: Option<String>,
    pub batch_size: usize,
}

/// Tokens kept free for the end token and a target-language token.
const RESERVED: usize = 2;

impl SentenceModel for Mt<'_> {
    fn count_tokens(&self, text: &str) -> Result<usize> {
        self.model.count_tokens(text)
    }

    fn max_tokens(&self) -> usize {
        self.model
            .max_source_tokens()
            .saturating_sub(RESERVED)
            .max(1)
    }

    fn translate(&mut self, sentences: &[String]) -> Result<(Vec<String>, Usage)> {
        let (out, stats) =
            self.model
                .translate(sentences, self.target.as_deref(), self.batch_size)?;
        let usage = Usage {
            calls: stats.batches,
            prompt_tokens: stats.source_tokens,
            reused_tokens: 0,
            generated_tokens: stats.generated_tokens,
            prefill_secs: stats.encode_secs,
            decode_secs: stats.decode_secs,
            capped_calls: stats.capped,
            alone_tokens: stats.generated_tokens,
            alone_decode_secs: stats.decode_secs,
            ..Usage::default()
        };
        Ok((out.into_iter().map(|t| t.text).collect(), usage))
    }

    fn measure(&self, sentence: &str) -> Result<(usize, usize)> {
        let ids = self
            .model
            .vocab()
            .encode(sentence, self.target.as_deref())?
            .len();
        Ok((ids, self.model.answer_cap(ids)))
    }
}

/// Two models one after the other: source → English → target.
pub struct Pivot<'a> {
    pub first: &'a mut dyn SentenceModel,
    pub second: &'a mut dyn SentenceModel,
}

impl SentenceModel for Pivot<'_> {
    fn count_tokens(&self, text: &str) -> Result<usize> {
        self.first.count_tokens(text)
    }

    fn measure(&self, sentence: &str) -> Result<(usize, usize)> {
        self.first.measure(sentence)
    }

    fn max_tokens(&self) -> usize {
        self.first.max_tokens()
    }

    /// A sentence the first model returns empty, or too long for the
    /// second, comes back empty: the document keeps its source and counts it.
    fn translate(&mut self, sentences: &[String]) -> Result<(Vec<String>, Usage)> {
        let (middle, mut usage) = self.first.translate(sentences)?;
        let limit = self.second.max_tokens();
        let mut passed = Vec::new();
        let mut send = Vec::new();
        for (i, m) in middle.iter().enumerate() {
            if !m.trim().is_empty() && self.second.count_tokens(m)? <= limit {
                passed.push(i);
                send.push(m.clone());
            }
        }
        let (answers, second) = self.second.translate(&send)?;
        usage.absorb(&second);
        let mut out = vec![String::new(); middle.len()];
        for (i, a) in passed.into_iter().zip(answers) {
            out[i] = a;
        }
        Ok((out, usage))
    }
}

/// Languages written without spaces between sentences. (Thai, Lao, Khmer
/// and Myanmar use a space *as* the sentence break: theirs is kept.)
fn spaceless(code: Option<&str>) -> bool {
    let base = code.map(|c| c.split('-').next().unwrap_or(c));
    matches!(base, Some("zh" | "ja" | "yue"))
}

/// Unit `u` of `doc` with its sentences' answers in place of theirs, and
/// whether a sentence of it came back empty (it keeps its source).
fn joined(
    doc: &Markup,
    u: usize,
    segments: &[Segment],
    answers: &[String],
    join_tight: bool,
) -> (String, bool) {
    let text = doc.units()[u].text();
    let mut joined = String::new();
    let mut end = 0;
    let mut empty = false;
    let mut after_translation = false;
    // Segments come in the order of their units.
    let first = segments.partition_point(|s| s.unit < u);
    for s in segments[first..].iter().take_while(|s| s.unit == u) {
        let gap = &text[end..s.range.start];
        let answer = s.sent.map(|i| answers[i].trim()).filter(|a| !a.is_empty());
        if join_tight && !gap.contains('\n') && !joined.is_empty() {
            // A space between two sentences has no place in Chinese or
            // Japanese; line breaks stay.
        } else if gap.is_empty() && !join_tight && after_translation && answer.is_some() {
            // Sentences of a Chinese or Japanese source touch; in the
            // target they need a space.
            joined.push(' ');
        } else {
            joined.push_str(gap);
        }
        match answer {
            Some(a) => joined.push_str(a),
            None => {
                empty |= s.sent.is_some();
                joined.push_str(&text[s.range.clone()]);
            }
        }
        after_translation = answer.is_some();
        end = s.range.end;
    }
    joined.push_str(&text[end..]);
    (joined, empty)
}

/// A piece of a unit: a sentence (or part of one over the model's limit).
struct Segment {
    unit: usize,
    range: std::ops::Range<usize>,
    /// Index into the sentences sent to the model; `None` for pieces with
    /// no letters (numbers, code placeholders), kept as they are.
    sent: Option<usize>,
}

/// The units of `doc` cut into what the model is sent: sentences, or
/// pieces of sentences over its limit. Returns every segment and the texts
/// to send.
fn segments(model: &dyn SentenceModel, doc: &Markup) -> Result<(Vec<Segment>, Vec<String>)> {
    let budget = model.max_tokens();
    let mut segments = Vec::new();
    let mut to_send: Vec<String> = Vec::new();
    for (u, unit) in doc.units().iter().enumerate() {
        let text = unit.text();
        let counter = |s: &str| model.count_tokens(s);
        for range in split_paragraph(text, 0..text.len(), budget, &counter)? {
            let piece = &text[range.clone()];
            let sent = strip_placeholders(piece)
                .chars()
                .any(char::is_alphabetic)
                .then(|| {
                    to_send.push(piece.to_string());
                    to_send.len() - 1
                });
            segments.push(Segment {
                unit: u,
                range,
                sent,
            });
        }
    }
    Ok((segments, to_send))
}

/// Every sentence a translation of `doc` sends, as [`translate`] cuts the
/// units: one planned call per sentence, with its text tokens, the ids the
/// model is given and its answer cap; `partial` marks pieces of a sentence
/// over the model's limit. The context is the source tokens the model
/// takes.
pub fn plan(model: &dyn SentenceModel, doc: &Markup) -> Result<super::Plan> {
    let (segments, to_send) = segments(model, doc)?;
    let mut calls = Vec::with_capacity(to_send.len());
    for s in segments {
        let Some(i) = s.sent else { continue };
        let text = doc.units()[s.unit].text();
        let whole = crate::text::segment::sentences(text, 0..text.len()).contains(&s.range);
        let (ids, cap) = model.measure(&to_send[i])?;
        calls.push(super::PlannedCall {
            line: Some(line_of(doc, s.unit)),
            text_tokens: model.count_tokens(&to_send[i])?,
            prompt_tokens: ids,
            answer_cap: cap,
            partial: !whole,
        });
    }
    Ok(super::Plan {
        context: model.max_tokens() + RESERVED,
        calls,
        combine_calls_at_least: 0,
    })
}

/// Translates the units of `doc` into the language `target_code` names.
pub fn translate(
    model: &mut dyn SentenceModel,
    doc: &Markup,
    target_code: Option<&str>,
) -> Result<Translation> {
    translate_with(model, doc, target_code, None)
}

/// Sentences sent at a time when a translation is shown as it goes: a few
/// batches, whole units.
const WAVE: usize = 64;

/// [`translate`], showing the translation as it is settled: the sentences
/// go to the model a few batches at a time, whole units each time, and
/// `show` is given the document through the last unit translated after
/// each. The last text it is given is the translation's whole text. A
/// sentence's translation is the same whatever the batch it is in.
pub fn translate_live(
    model: &mut dyn SentenceModel,
    doc: &Markup,
    target_code: Option<&str>,
    show: &mut dyn FnMut(&str),
) -> Result<Translation> {
    translate_with(model, doc, target_code, Some(show))
}

fn translate_with(
    model: &mut dyn SentenceModel,
    doc: &Markup,
    target_code: Option<&str>,
    mut show: Option<&mut dyn FnMut(&str)>,
) -> Result<Translation> {
    let (segments, to_send) = segments(model, doc)?;
    let join_tight = spaceless(target_code);
    let mut answers: Vec<String> = Vec::with_capacity(to_send.len());
    let mut usage = Usage::default();
    // The units shown so far, as the translation will have them.
    let mut shown: Vec<String> = Vec::new();
    while answers.len() < to_send.len() {
        let from = answers.len();
        // Through the end of the unit of the wave's last sentence.
        let to = match show {
            None => to_send.len(),
            Some(_) => {
                let last = (from + WAVE).min(to_send.len()) - 1;
                let unit = segments
                    .iter()
                    .find(|s| s.sent == Some(last))
                    .map(|s| s.unit);
                segments
                    .iter()
                    .filter(|s| Some(s.unit) == unit)
                    .filter_map(|s| s.sent)
                    .max()
                    .map_or(to_send.len(), |i| i + 1)
            }
        };
        let (got, u) = model.translate(&to_send[from..to])?;
        anyhow::ensure!(
            got.len() == to - from,
            "the model returned {} translations for {} sentences",
            got.len(),
            to - from
        );
        answers.extend(got);
        usage.absorb(&u);
        if let Some(show) = show.as_deref_mut() {
            // Units whose sentences are all in.
            let done = segments
                .iter()
                .find(|s| s.sent.is_some_and(|i| i >= answers.len()))
                .map_or(doc.units().len(), |s| s.unit);
            for u in shown.len()..done {
                let (joined, _) = joined(doc, u, &segments, &answers, join_tight);
                shown
                    .push(doc.restore_unit(u, &joined).unwrap_or_else(|_| {
                        doc.source()[doc.units()[u].range.clone()].to_string()
                    }));
            }
            show(&doc.assemble_prefix(&shown, target_code));
        }
    }

    let mut outputs = Vec::with_capacity(doc.units().len());
    let (mut untranslated, mut broken, mut wrong) = (0, 0, 0);
    let mut flags = Vec::new();
    for (u, unit) in doc.units().iter().enumerate() {
        let text = unit.text();
        let (joined, empty) = joined(doc, u, &segments, &answers, join_tight);
        let line = line_of(doc, u);
        match doc.restore_unit(u, &joined) {
            Ok(restored) => {
                untranslated += usize::from(empty);
                if empty {
                    flags.push(Flag::untranslated(
                        line,
                        "the model returned nothing for a sentence of it",
                    ));
                }
                let plain = strip_placeholders(&joined);
                if wrong_language(&plain, target_code) {
                    wrong += 1;
                    flags.push(Flag::wrong_language(line));
                }
                // A translation model asked again answers the same: what a
                // check finds is reported, not retried.
                if let Some(p) = check(&strip_placeholders(text), &plain) {
                    flags.push(Flag::of(line, &p));
                }
                outputs.push(restored);
            }
            Err(_) => {
                untranslated += 1;
                broken += 1;
                flags.push(Flag::untranslated(
                    line,
                    "the model lost its formatting placeholders",
                ));
                outputs.push(doc.source()[unit.range.clone()].to_string());
            }
        }
    }
    Ok(Translation {
        text: doc.assemble(&outputs, target_code),
        chunks: usage.calls,
        paragraphs: doc.units().len(),
        retried_chunks: 0,
        untranslated,
        broken_markup: broken,
        wrong_language: wrong,
        flags,
        usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markup::Format;

    /// Upper-cases each sentence and counts one token per word; drops
    /// placeholders when `lose_markup`, answers nothing for "SILENT".
    struct Upper {
        lose_markup: bool,
        seen: Vec<String>,
    }

    impl SentenceModel for Upper {
        fn count_tokens(&self, text: &str) -> Result<usize> {
            Ok(text.split_whitespace().count())
        }
        fn max_tokens(&self) -> usize {
            6
        }
        fn measure(&self, sentence: &str) -> Result<(usize, usize)> {
            let ids = self.count_tokens(sentence)? + 1;
            Ok((ids, ids * 2 + 16))
        }
        fn translate(&mut self, sentences: &[String]) -> Result<(Vec<String>, Usage)> {
            self.seen.extend(sentences.iter().cloned());
            let out = sentences
                .iter()
                .map(|s| {
                    if s.contains("silent") {
                        String::new()
                    } else if self.lose_markup {
                        strip_placeholders(s).to_uppercase()
                    } else {
                        s.to_uppercase()
                    }
                })
                .collect();
            let usage = Usage {
                calls: 1,
                ..Usage::default()
            };
            Ok((out, usage))
        }
    }

    fn upper() -> Upper {
        Upper {
            lose_markup: false,
            seen: Vec::new(),
        }
    }

    /// Shown as it goes, a translation goes to the model a few batches of
    /// whole units at a time, is shown after each, and ends as it does
    /// whole.
    #[test]
    fn a_live_translation_is_shown_unit_by_unit_in_waves() {
        let src: String = (0..40)
            .map(|i| {
                format!("## Part {i}\n\nThe first one. The second one. The third one is here.")
            })
            .collect::<Vec<_>>()
            .join("\n\n");
        let doc = Markup::parse(src, Format::Markdown);
        let whole = translate(&mut upper(), &doc, Some("de")).unwrap();
        let mut m = upper();
        let mut shown: Vec<(usize, String)> = Vec::new();
        let seen = std::cell::Cell::new(0);
        let t = {
            let mut counting = Counting {
                inner: &mut m,
                seen: &seen,
            };
            translate_live(&mut counting, &doc, Some("de"), &mut |s| {
                shown.push((seen.get(), s.to_string()))
            })
            .unwrap()
        };
        assert_eq!(t.text, whole.text);
        assert_eq!(m.seen.len(), 160);
        assert_eq!(
            shown.len(),
            3,
            "{:?}",
            shown.iter().map(|s| s.0).collect::<Vec<_>>()
        );
        // Waves of 64 sentences or a little more, to the end of a unit
        // (a heading and its paragraph take four).
        assert_eq!(
            shown.iter().map(|s| s.0).collect::<Vec<_>>(),
            [64, 128, 160]
        );
        for w in shown.windows(2) {
            assert!(w[1].1.starts_with(&w[0].1) && w[1].1.len() > w[0].1.len());
        }
        // The first wave: parts 0 to 15, and the markup before the next.
        assert!(shown[0].1.ends_with(
            "## PART 15\n\nTHE FIRST ONE. THE SECOND ONE. THE THIRD ONE IS HERE.\n\n## "
        ));
        assert_eq!(shown.last().unwrap().1, t.text);
    }

    /// A sentence model that counts the sentences it was sent.
    struct Counting<'a> {
        inner: &'a mut Upper,
        seen: &'a std::cell::Cell<usize>,
    }

    impl SentenceModel for Counting<'_> {
        fn count_tokens(&self, text: &str) -> Result<usize> {
            self.inner.count_tokens(text)
        }
        fn max_tokens(&self) -> usize {
            self.inner.max_tokens()
        }
        fn measure(&self, sentence: &str) -> Result<(usize, usize)> {
            self.inner.measure(sentence)
        }
        fn translate(&mut self, sentences: &[String]) -> Result<(Vec<String>, Usage)> {
            self.seen.set(self.seen.get() + sentences.len());
            self.inner.translate(sentences)
        }
    }

    #[test]
    fn sentences_go_one_by_one_and_units_keep_their_shape() {
        let src = "# A title\n\nOne sentence here. Another one follows!\n\n- item one\n- item 42\n\n```\ncode stays\n```\n";
        let doc = Markup::parse(src.to_string(), Format::Markdown);
        let mut m = upper();
        let t = translate(&mut m, &doc, Some("de")).unwrap();
        assert_eq!(
            t.text,
            "# A TITLE\n\nONE SENTENCE HERE. ANOTHER ONE FOLLOWS!\n\n- ITEM ONE\n- ITEM 42\n\n```\ncode stays\n```\n"
        );
        assert!(m.seen.contains(&"One sentence here.".to_string()));
        assert!(m.seen.contains(&"Another one follows!".to_string()));
        assert_eq!(t.untranslated, 0);
    }

    #[test]
    fn long_sentences_are_cut_to_the_model_limit_and_joined() {
        let long = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13.";
        let doc = Markup::parse(long.to_string(), Format::Text);
        let mut m = upper();
        let t = translate(&mut m, &doc, None).unwrap();
        assert_eq!(t.text, long.to_uppercase());
        assert!(m.seen.len() >= 3);
        assert!(m.seen.iter().all(|s| s.split_whitespace().count() <= 6));
    }

    #[test]
    fn lost_markup_keeps_the_source_and_empty_answers_keep_their_sentence() {
        let src = "Some *bold* words here.\n\nPlain text. A silent one.";
        let doc = Markup::parse(src.to_string(), Format::Markdown);
        let mut m = Upper {
            lose_markup: true,
            seen: Vec::new(),
        };
        let t = translate(&mut m, &doc, None).unwrap();
        assert_eq!(
            t.text,
            "Some *bold* words here.\n\nPLAIN TEXT. A silent one."
        );
        assert_eq!((t.untranslated, t.broken_markup), (2, 1));
    }

    #[test]
    fn no_space_between_sentences_in_japanese() {
        let doc = Markup::parse("First one. Second one.\nThird.".to_string(), Format::Text);
        let t = translate(&mut upper(), &doc, Some("ja")).unwrap();
        assert_eq!(t.text, "FIRST ONE.SECOND ONE.\nTHIRD.");
    }

    /// The plan lists what the run sends, sentence by sentence and line by
    /// line, and marks the pieces of a sentence over the model's limit.
    #[test]
    fn the_plan_lists_every_sentence_the_run_sends() {
        let doc = Markup::parse(
            "Short one. Another short one.\n\nThis sentence has far too many words for the model.\n\n42\n".into(),
            Format::Text,
        );
        let p = plan(&upper(), &doc).unwrap();
        let mut m = upper();
        translate(&mut m, &doc, None).unwrap();
        assert_eq!(p.calls.len(), m.seen.len(), "{:?}", m.seen);
        let lines: Vec<Option<usize>> = p.calls.iter().map(|c| c.line).collect();
        assert_eq!(lines[..2], [Some(1), Some(1)]);
        assert!(lines[2..].iter().all(|l| *l == Some(3)), "{lines:?}");
        assert!(!p.calls[0].partial && !p.calls[1].partial);
        assert!(p.calls[2..].iter().all(|c| c.partial && c.text_tokens <= 6));
        for (c, sent) in p.calls.iter().zip(&m.seen) {
            assert_eq!(c.text_tokens, sent.split_whitespace().count());
            assert_eq!(c.prompt_tokens, c.text_tokens + 1);
        }
    }

    /// Appends its mark to every sentence.
    struct Mark(&'static str);

    impl SentenceModel for Mark {
        fn count_tokens(&self, text: &str) -> Result<usize> {
            Ok(text.split_whitespace().count())
        }
        fn max_tokens(&self) -> usize {
            50
        }
        fn measure(&self, sentence: &str) -> Result<(usize, usize)> {
            Ok((self.count_tokens(sentence)?, 0))
        }
        fn translate(&mut self, sentences: &[String]) -> Result<(Vec<String>, Usage)> {
            let out = sentences
                .iter()
                .map(|s| format!("{s} {}", self.0))
                .collect();
            let usage = Usage {
                calls: 1,
                generated_tokens: sentences.len(),
                ..Usage::default()
            };
            Ok((out, usage))
        }
    }

    /// Sentences given back with an attack after them: the output's markup
    /// is the source's, in every format.
    #[test]
    fn hostile_sentences_add_no_markup() {
        use crate::markup::{rendered_markup, tests};
        for (format, src) in tests::all() {
            let doc = Markup::parse(src.to_string(), format);
            let want = rendered_markup(src, format);
            for attack in tests::ATTACKS {
                let t = translate(&mut Mark(attack), &doc, None).unwrap();
                assert_eq!(t.untranslated, 0);
                let got = rendered_markup(&t.text, format);
                let added: Vec<_> = got.difference(&want).collect();
                assert!(added.is_empty(), "{format:?}, {attack:?} added {added:?}");
            }
        }
    }

    #[test]
    fn a_pivot_chains_two_models_sentence_by_sentence() {
        let doc = Markup::parse("One. Two.\n\nThree.".to_string(), Format::Text);
        let (mut first, mut second) = (Mark("[fi→en]"), Mark("[en→de]"));
        let t = translate(
            &mut Pivot {
                first: &mut first,
                second: &mut second,
            },
            &doc,
            None,
        )
        .unwrap();
        assert_eq!(
            t.text,
            "One. [fi→en] [en→de] Two. [fi→en] [en→de]\n\nThree. [fi→en] [en→de]"
        );
        assert_eq!((t.usage.calls, t.usage.generated_tokens), (2, 6));
    }

    #[test]
    fn sentences_of_a_chinese_source_get_spaces_in_english_and_thai_keeps_its_own() {
        let doc = Markup::parse("你好吗。我很好！".to_string(), Format::Text);
        let t = translate(&mut Mark("x"), &doc, Some("en")).unwrap();
        assert_eq!(t.text, "你好吗。 x 我很好！ x");
        let doc = Markup::parse("ประโยคแรก ประโยคสอง".to_string(), Format::Text);
        let t = translate(&mut Mark("x"), &doc, Some("th")).unwrap();
        assert_eq!(t.text, "ประโยคแรก x ประโยคสอง x");
    }

    #[test]
    fn pieces_without_letters_are_not_sent() {
        let doc = Markup::parse("2026\n\nSee `x = 1` now.".to_string(), Format::Markdown);
        let mut m = upper();
        let t = translate(&mut m, &doc, None).unwrap();
        assert_eq!(t.text, "2026\n\nSEE `x = 1` NOW.");
        assert_eq!(m.seen.len(), 1);
    }
}
