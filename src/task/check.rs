//! Checks that a translated unit still says everything its source says:
//! every number is there, and no sentence went missing.
//!
//! Both are cheap and language-independent, so they run on every answer.
//! They look for what models do to text when they fail quietly (drop a
//! sentence, round or mistype a figure), not for translation quality.

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
