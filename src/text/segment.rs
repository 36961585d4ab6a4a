//! Paragraph and sentence boundaries, as byte ranges into the original text.
//!
//! Ranges rather than copies let the chunker prove that every byte of the
//! input lands in exactly one chunk.

use std::ops::Range;

/// Content ranges of paragraphs: runs of text separated by blank lines,
/// with surrounding whitespace excluded.
pub fn paragraphs(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            if let Some(s) = start.take() {
                out.push(s..end);
            }
        } else {
            let lead = line.len() - line.trim_start().len();
            if start.is_none() {
                start = Some(pos + lead);
            }
            end = pos + line.trim_end().len();
        }
        pos += line.len();
    }
    if let Some(s) = start {
        out.push(s..end);
    }
    out
}

/// Closing punctuation that may follow a sentence end (`."`, `!)`, `。」`).
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | ')' | ']' | '»' | '”' | '’' | '」' | '』' | '）' | '】'
    )
}

/// Short words that end in a period without ending a sentence.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "z.b", "bzw", "usw", "nr",
    "ca", "vgl", "mme", "mlle", "sr", "sra", "jr", "no", "p", "pp", "т", "е", "г", "др", "см",
    "mio", "mrd", "sig", "sigg", "dott", "avv", "ing", "gen", "fig", "tel", "str", "dipl",
    "approx", "dept", "gg", "тыс", "млн", "млрд", "руб", "ул", "им", "проф",
];

fn ends_with_abbreviation(before: &str) -> bool {
    let word = before
        .rsplit(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("")
        .trim_end_matches('.')
        .to_lowercase();
    // A single letter ("J. Smith", "z. B.") is an initial, not a sentence
    // end; one or two digits after a short word are an ordinal ("am 3.
    // Oktober", but not "à 8 h 30."). Joining two sentences costs a chunk a
    // little room; a wrong cut costs meaning.
    let chars = word.chars().count();
    chars == 1 && word.chars().all(char::is_alphabetic)
        || (1..=2).contains(&chars)
            && word.chars().all(|c| c.is_ascii_digit())
            && preceded_by_short_word(before, &word)
        || ABBREVIATIONS.contains(&word.as_str())
}

/// Whether the word before `number` at the end of `before` is a short
/// lower-case word such as a preposition or article.
fn preceded_by_short_word(before: &str, number: &str) -> bool {
    let rest = before.trim_end_matches('.').trim_end();
    let rest = rest.strip_suffix(number).unwrap_or(rest).trim_end();
    let prev = rest.rsplit(char::is_whitespace).next().unwrap_or("");
    (2..=4).contains(&prev.chars().count()) && prev.chars().all(char::is_lowercase)
}

/// Sentence content ranges inside `range` of `text`. A sentence ends at
/// `.`, `!`, `?` or `…` followed by whitespace, at a CJK, Khmer or Myanmar
/// full stop, at a line break, and in Thai, Lao, Khmer and Myanmar text
/// (which has no sentence punctuation) at a space between two words of the
/// script, the way those languages mark clause and sentence ends. The
/// boundaries never drop a byte that is not whitespace.
pub fn sentences(text: &str, range: Range<usize>) -> Vec<Range<usize>> {
    let slice = &text[range.clone()];
    let mut out = Vec::new();
    let mut start = 0;
    let mut iter = slice.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let mut end = None;
        match c {
            // CJK marks end a sentence with no space after them.
            '。' | '！' | '？' | '．' | '｡' | '។' | '။' => end = Some(i + c.len_utf8()),
            '\n' => end = Some(i),
            ' ' if slice[..i].chars().next_back().is_some_and(spaceless)
                && slice[i..]
                    .trim_start()
                    .chars()
                    .next()
                    .is_some_and(spaceless) =>
            {
                end = Some(i)
            }
            // Latin/Cyrillic/Greek marks, the Devanagari danda, Arabic and
            // Urdu marks, the Ethiopic full stop: all followed by a space.
            '.' | '!' | '?' | '…' | '।' | '॥' | '؟' | '۔' | '።' | '։' | '།' => {
                let mut j = i + c.len_utf8();
                while let Some(&(k, n)) = iter.peek() {
                    if is_closer(n) || (n == '.' && c == '.') {
                        j = k + n.len_utf8();
                        iter.next();
                    } else {
                        break;
                    }
                }
                let next_is_space = iter.peek().is_none_or(|&(_, n)| n.is_whitespace());
                // "Yes!" he said: a lowercase word after the mark continues
                // the sentence, also after a dash («Идём!» — сказал он).
                let continues = slice[j..]
                    .trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '—' | '–'))
                    .chars()
                    .next()
                    .is_some_and(char::is_lowercase);
                if next_is_space
                    && !continues
                    && !(c == '.' && ends_with_abbreviation(&slice[start..i]))
                {
                    end = Some(j);
                }
            }
            _ => {}
        }
        if let Some(e) = end {
            push_trimmed(&mut out, slice, start, e, range.start);
            start = e;
        }
    }
    push_trimmed(&mut out, slice, start, slice.len(), range.start);
    out
}

/// Scripts written without spaces between words, where a space ends a
/// clause or sentence: Thai, Lao, Myanmar, Khmer.
fn spaceless(c: char) -> bool {
    matches!(c, '\u{0E00}'..='\u{0EFF}' | '\u{1000}'..='\u{109F}' | '\u{1780}'..='\u{17FF}')
}

fn push_trimmed(out: &mut Vec<Range<usize>>, s: &str, start: usize, end: usize, base: usize) {
    let piece = &s[start..end];
    let lead = piece.len() - piece.trim_start().len();
    let trimmed = piece.trim();
    if !trimmed.is_empty() {
        let a = base + start + lead;
        out.push(a..a + trimmed.len());
    }
}

/// `text` without the sentences that repeat an earlier one word for word
/// (spacing aside), and how many were dropped. A paragraph left empty goes
/// with its blank line. For summaries: a small model writes a sentence
/// again where it has nothing more to say, and a reader gains nothing from
/// the second copy.
pub fn drop_repeated_sentences(text: &str) -> (String, usize) {
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut seen = std::collections::HashSet::new();
    let mut dropped = 0;
    let mut kept_paragraphs = Vec::new();
    for para in paragraphs(text) {
        let mut kept = String::new();
        let mut last_end = para.start;
        for s in sentences(text, para.clone()) {
            if seen.insert(norm(&text[s.clone()])) {
                if !kept.is_empty() {
                    kept.push_str(&text[last_end..s.start]);
                }
                kept.push_str(&text[s.clone()]);
            } else {
                dropped += 1;
            }
            last_end = s.end;
        }
        if !kept.is_empty() {
            kept_paragraphs.push(kept);
        }
    }
    if dropped == 0 {
        return (text.to_string(), 0);
    }
    (kept_paragraphs.join("\n\n"), dropped)
}

/// `text` up to the end of its last complete sentence: sentence punctuation
/// (with any closing quotes or brackets) followed by whitespace or the end.
/// `None` when no sentence in it is complete. For answers cut off at their
/// length cap: a reader gets whole sentences or nothing.
pub fn through_last_sentence(text: &str) -> Option<&str> {
    const ENDS: &[char] = &['.', '!', '?', '…', '。', '！', '？', '．', '｡'];
    const CLOSERS: &[char] = &[
        '"', '\'', '”', '’', '»', '›', ')', ']', '」', '』', '）', '*', '_',
    ];
    let text = text.trim_end();
    let mut best = None;
    for (i, c) in text.char_indices() {
        if !ENDS.contains(&c) {
            continue;
        }
        let after = &text[i + c.len_utf8()..];
        let closers: usize = after
            .chars()
            .take_while(|c| CLOSERS.contains(c))
            .map(char::len_utf8)
            .sum();
        let end = i + c.len_utf8() + closers;
        let cjk = c as u32 >= 0x3000;
        if cjk || text[end..].chars().next().is_none_or(char::is_whitespace) {
            best = Some(end);
        }
    }
    best.map(|end| &text[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn repeated_sentences_are_dropped_once_seen() {
        use super::drop_repeated_sentences as drop;
        let text = "One. Two.\n\nThree. One.\n\nTwo.  \n\nFour.";
        assert_eq!(drop(text), ("One. Two.\n\nThree.\n\nFour.".to_string(), 2));
        assert_eq!(drop("A. B."), ("A. B.".to_string(), 0));
    }

    #[test]
    fn answers_are_cut_after_their_last_full_sentence() {
        use super::through_last_sentence as cut;
        assert_eq!(cut("One. Two is seen with the"), Some("One."));
        assert_eq!(cut("He said \"stop.\" Then"), Some("He said \"stop.\""));
        assert_eq!(cut("Pi is 3.14 and"), None);
        assert_eq!(cut("Done!\n\nMore"), Some("Done!"));
        assert_eq!(cut("完了。次は"), Some("完了。"));
        assert_eq!(cut("Whole. "), Some("Whole."));
    }

    use super::*;

    fn texts<'a>(text: &'a str, ranges: &[Range<usize>]) -> Vec<&'a str> {
        ranges.iter().map(|r| &text[r.clone()]).collect()
    }

    #[test]
    fn paragraphs_split_on_blank_lines() {
        let t = "  One\nstill one.\n\n \nTwo.\r\n\r\nThree";
        assert_eq!(
            texts(t, &paragraphs(t)),
            ["One\nstill one.", "Two.", "Three"]
        );
        assert!(paragraphs(" \n\n ").is_empty());
    }

    /// Eight languages in six scripts, each with the trap its writing
    /// system sets (abbreviations, decimals, quotes, marks without spaces).
    #[test]
    fn sentences_in_many_languages_and_scripts() {
        let cases: &[(&str, &[&str])] = &[
            (
                "en",
                &["Dr. Lee earned $3.5 million in 2024.", "Was it enough?"],
            ),
            ("de", &["Das gilt z. B. für Züge.", "Der Bahnhof ist neu!"]),
            (
                "fr",
                &["M. Dupont prend le tramway.", "« Il est rapide », dit-il."],
            ),
            (
                "es",
                &["¿Corriste el maratón?", "Sí, terminé en 3 h 41 min."],
            ),
            (
                "ru",
                &["Это т. е. пример.", "Библиотека открыта до 21.00 часа."],
            ),
            ("el", &["Το τρένο έφτασε.", "Ήταν γεμάτο."]),
            ("hi", &["ट्रेन आज देर से आई।", "यात्री नाराज़ थे।"]),
            ("ar", &["هل وصل القطار؟", "نعم، وصل متأخرا."]),
            ("zh", &["高铁很快。", "乘客很多！"]),
            ("ja", &["祭りは八月です。", "花火もあります！"]),
        ];
        for (lang, expected) in cases {
            let sep = if matches!(*lang, "zh" | "ja") {
                ""
            } else {
                " "
            };
            let text = expected.join(sep);
            let got = texts(&text, &sentences(&text, 0..text.len()));
            assert_eq!(&got, expected, "{lang}");
        }
    }

    #[test]
    fn sentences_respect_abbreviations_decimals_and_cjk() {
        let t = "Mr. Smith paid 3.5 euros. Was it enough? \"Yes!\" he said… Then z. B. this.";
        assert_eq!(
            texts(t, &sentences(t, 0..t.len())),
            [
                "Mr. Smith paid 3.5 euros.",
                "Was it enough?",
                "\"Yes!\" he said…",
                "Then z. B. this."
            ]
        );
        let t = "高铁很快。乘客很多！真的吗？";
        assert_eq!(
            texts(t, &sentences(t, 0..t.len())),
            ["高铁很快。", "乘客很多！", "真的吗？"]
        );
    }
}
