//! Checks that a translated unit still says everything its source says:
//! every number is there, and no sentence went missing; and that an answer
//! is not the prompt's own words given back.
//!
//! All are cheap and language-independent, so they run on every answer.
//! They look for what models do to text when they fail quietly (drop a
//! sentence, round or mistype a figure, repeat their instructions), not
//! for translation quality.

use std::collections::HashSet;

use serde::Serialize;

use crate::text::segment;

/// What a check found wrong with a unit's translation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// Numbers of the source that the translation lacks, as written there.
    Numbers { missing: Vec<String> },
    /// Fewer sentences and less text than the source: a sentence is
    /// probably gone.
    Shorter { sentences: usize, of: usize },
    /// The source given back untranslated, though it is not in the target
    /// language.
    Echo,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Numbers { missing } => {
                write!(
                    f,
                    "number(s) {} missing from the translation",
                    missing.join(", ")
                )
            }
            Problem::Shorter { sentences, of } => write!(
                f,
                "the translation has {sentences} sentence(s) of the source's {of} and less text"
            ),
            Problem::Echo => write!(f, "the model gave the source text back untranslated"),
        }
    }
}

/// Whether `output` is `source` given back (spacing and case aside) while
/// `source` is reliably in another language than `target`.
pub fn echo(source: &str, output: &str, target: Option<&str>) -> Option<Problem> {
    let norm = |t: &str| -> String {
        t.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    (norm(source) == norm(output) && super::wrong_language(source, target)).then_some(Problem::Echo)
}

/// The words of a task's prompts besides the text: delimiters such as
/// `<text>` and the instruction sentences. A weak model repeats them, and
/// an article can ask a strong one to; either way they are no part of the
/// answer, and an answer that holds them fails its check.
#[derive(Debug, Default)]
pub struct Scaffold {
    /// Names of the delimiter tags (`text`, `article`, …).
    tags: Vec<String>,
    /// Every run of [`RUN`] consecutive words of the instructions.
    runs: HashSet<String>,
}

/// Words in a row that make a phrase of the instructions, rather than a
/// turn of speech any text may use ("in the same order" is four).
const RUN: usize = 5;

impl Scaffold {
    /// The scaffolding of prompts rendered without their text (see
    /// [`crate::prompt::Prompts::translate_scaffolding`]).
    pub fn new<S: AsRef<str>>(prompts: &[S]) -> Scaffold {
        let mut tags = Vec::new();
        let mut runs = HashSet::new();
        for p in prompts {
            let p = p.as_ref();
            for t in tag_names(p) {
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
            for line in p.lines() {
                runs.extend(word_runs(line));
            }
        }
        Scaffold { tags, runs }
    }

    /// The first piece of scaffolding in `answer` that `source` does not
    /// have itself: a delimiter tag as written, or a phrase of the
    /// instructions in lower case.
    pub fn found(&self, answer: &str, source: &str) -> Option<String> {
        let (answer, source) = (answer.to_lowercase(), source.to_lowercase());
        for name in &self.tags {
            for form in [
                format!("<{name}>"),
                format!("<{name} "),
                format!("</{name}>"),
            ] {
                if answer.contains(&form) && !source.contains(&form) {
                    return Some(form.trim().to_string());
                }
            }
        }
        let own: HashSet<String> = word_runs(&source).collect();
        word_runs(&answer).find(|r| self.runs.contains(r) && !own.contains(r))
    }

    /// `text` without its lines that hold scaffolding `source` lacks, and
    /// how many lines those were.
    pub fn strip_lines(&self, text: &str, source: &str) -> (String, usize) {
        let mut dropped = 0;
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                let bad = self.found(l, source).is_some();
                dropped += usize::from(bad);
                !bad
            })
            .collect();
        (kept.join("\n").trim().to_string(), dropped)
    }
}

/// Names of the tags in `text` that are not markup placeholders (`<g1>`,
/// `<x2/>`, which the instructions show as examples).
fn tag_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices('<') {
        let rest = text[i + 1..].trim_start_matches('/');
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        let placeholder = name.len() > 1
            && name.starts_with(['g', 'x'])
            && name[1..].bytes().all(|b| b.is_ascii_digit());
        let closes = rest[name.len()..].starts_with(['>', ' ']);
        if name.starts_with(|c: char| c.is_ascii_alphabetic()) && closes && !placeholder {
            out.push(name.to_lowercase());
        }
    }
    out
}

/// The runs of [`RUN`] consecutive words of `text`, lower-cased, each
/// number standing as `#` (the prompts say how many paragraphs).
fn word_runs(text: &str) -> impl Iterator<Item = String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| match w.chars().all(|c| c.is_ascii_digit()) {
            true => "#".to_string(),
            false => w.to_lowercase(),
        })
        .collect();
    let n = words.len().saturating_sub(RUN - 1);
    (0..n).map(move |i| words[i..i + RUN].join(" "))
}

/// What `output` lacks of `source`, if anything.
pub fn check(source: &str, output: &str) -> Option<Problem> {
    let missing = missing_numbers(source, output);
    if !missing.is_empty() {
        return Some(Problem::Numbers { missing });
    }
    let (of, sentences) = (sentences(source), sentences(output));
    if sentences < of && weight(output) < SHORTER * weight(source) {
        return Some(Problem::Shorter { sentences, of });
    }
    None
}

/// Below this share of the source's weight, fewer sentences means a loss
/// rather than two sentences merged into one: a merge keeps the words, a
/// dropped sentence of three takes a third of them. Translations into a
/// terser language that also merge sentences get asked again for nothing,
/// which costs a call, not text.
const SHORTER: f64 = 0.9;

/// Sentences of a text, as the chunker splits them.
fn sentences(text: &str) -> usize {
    segment::sentences(text, 0..text.len()).len()
}

/// Amount of text, comparable across scripts: a Han, kana or Hangul
/// character carries about what three Latin letters do.
fn weight(text: &str) -> f64 {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| if dense(c) { 3.0 } else { 1.0 })
        .sum()
}

fn dense(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF)
}

/// The numbers of `source` that `output` does not have as often, each as
/// written in the source. Numbers compare by their digits alone, so
/// `1,250.5` matches `1.250,5` and `1 250,5`, and digits of other scripts
/// (Arabic-Indic, Devanagari, full-width) count as the digits they are.
pub fn missing_numbers(source: &str, output: &str) -> Vec<String> {
    let mut have: Vec<String> = numbers(output).into_iter().map(|n| n.1).collect();
    let mut missing = Vec::new();
    for (written, digits) in numbers(source) {
        match have.iter().position(|h| *h == digits) {
            Some(i) => {
                have.swap_remove(i);
            }
            None => missing.push(written),
        }
    }
    missing
}

/// Numbers in `text`: runs of digits, with the separators a number may
/// hold between digits (`.`, `,`, `:`, `'`, spaces of thousands). Each as
/// written and as its digits.
fn numbers(text: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if digit(chars[i]).is_none() {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = String::new();
        let mut end = i;
        while i < chars.len() {
            if let Some(d) = digit(chars[i]) {
                digits.push(d);
                end = i + 1;
                i += 1;
            } else if separator(chars[i]) && chars.get(i + 1).and_then(|&c| digit(c)).is_some() {
                i += 1;
            } else {
                break;
            }
        }
        out.push((chars[start..end].iter().collect(), digits));
    }
    out
}

fn separator(c: char) -> bool {
    matches!(
        c,
        '.' | ',' | ':' | '\'' | '’' | ' ' | '\u{a0}' | '\u{202f}' | '\u{2009}'
    )
}

/// The ASCII digit a decimal digit of any common script stands for.
fn digit(c: char) -> Option<char> {
    let zero = match c as u32 {
        0x30..=0x39 => 0x30,
        0x660..=0x669 => 0x660,
        0x6F0..=0x6F9 => 0x6F0,
        0x966..=0x96F => 0x966,
        0x9E6..=0x9EF => 0x9E6,
        0xE50..=0xE59 => 0xE50,
        0xFF10..=0xFF19 => 0xFF10,
        _ => return None,
    };
    char::from_digit(c as u32 - zero, 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_whatever_their_separators_and_digits() {
        let src = "It cost 410 million euros on 5 May 2024, 3.5% more, at 10:45.";
        let de = "Es kostete 410 Millionen Euro am 5. Mai 2024, 3,5 % mehr, um 10:45 Uhr.";
        assert!(missing_numbers(src, de).is_empty());
        assert!(missing_numbers("1,250 euros", "1.250 Euro").is_empty());
        assert!(missing_numbers("1,250 euros", "1 250 euros").is_empty());
        assert!(missing_numbers("12 stops", "١٢ محطة").is_empty());
        assert!(missing_numbers("12 stops", "１２の駅").is_empty());
        assert_eq!(missing_numbers(src, &de.replace("410", "401")), ["410"]);
        // Each occurrence counts.
        assert_eq!(missing_numbers("2 and 2", "2 und zwei"), ["2"]);
        // Numbers the translation adds are not the check's business.
        assert!(missing_numbers("no numbers", "7 Zahlen").is_empty());
    }

    fn scaffold() -> Scaffold {
        Scaffold::new(&[
            "You are a careful translator.",
            "Translate the text below from Spanish into English. It has 2 paragraphs: keep exactly 2 paragraphs. Tags such as <g1>…</g1> and <x2/> are placeholders.\n\n<text>\n\n</text>",
        ])
    }

    #[test]
    fn the_prompts_own_words_in_an_answer_are_found() {
        let s = scaffold();
        assert_eq!(s.tags, ["text"]);
        let found = |a: &str| s.found(a, "La carrera empieza a las 9.");
        assert_eq!(found("The race starts at 9."), None);
        assert_eq!(found("<text> The race starts at 9."), Some("<text>".into()));
        assert_eq!(found("The race.</TEXT>"), Some("</text>".into()));
        assert_eq!(
            found("Translate the text below from Spanish: the race"),
            Some("translate the text below from".into())
        );
        // Another count of paragraphs is the same instruction.
        assert!(found("It has 7 paragraphs, keep exactly 7.").is_some());
        // Placeholders and everyday phrases are no scaffolding.
        assert_eq!(found("<g1>The race</g1> starts <x2/> at 9."), None);
        assert_eq!(found("Keep the text below the line."), None);
        // A source that has the words itself may keep them.
        let src = "Escribió: translate the text below from Spanish.";
        assert_eq!(
            s.found("He wrote: translate the text below from Spanish.", src),
            None
        );
        assert_eq!(
            s.strip_lines("A line.\n<text>\nAnother.", "x"),
            ("A line.\nAnother.".into(), 1)
        );
    }

    #[test]
    fn a_dropped_sentence_is_found_a_merged_one_is_not() {
        let src = "The line opened on Monday. Thousands rode it. Critics say it cost too much.";
        let all = "Die Linie wurde am Montag eröffnet. Tausende fuhren mit. Kritiker sagen, sie sei zu teuer.";
        assert_eq!(check(src, all), None);
        let merged = "Die Linie wurde am Montag eröffnet, und Tausende fuhren mit. Kritiker sagen, sie sei zu teuer.";
        assert_eq!(check(src, merged), None);
        let dropped = "Die Linie wurde am Montag eröffnet. Tausende fuhren mit.";
        assert_eq!(
            check(src, dropped),
            Some(Problem::Shorter {
                sentences: 2,
                of: 3
            })
        );
        // Chinese is dense: fewer characters is not less text.
        let zh = "这条线路周一开通。数千人乘坐了它。批评者说它太贵了。";
        assert_eq!(check(src, zh), None);
    }
}
