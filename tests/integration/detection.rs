//! How well the article's language is detected, by length of text.
//!
//! Snippets of the sample articles (their main text, read through the
//! markup parser) are cut at several lengths; each detection is right,
//! flagged unreliable (glot then names no language in prompts), or wrong
//! yet reliable, the only harmful case. Run with `--nocapture` for the table.

use glot::markup::{Format, Markup};
use glot::text::lang::detect;

use crate::util::fixtures;

const SAMPLES: &[(&str, &str)] = &[
    ("de-energie.txt", "de"),
    ("en-kim-russia-visit.txt", "en"),
    ("es-maraton.md", "es"),
    ("fr-tramway.txt", "fr"),
    ("ja-matsuri.html", "ja"),
    ("ru-biblioteka.txt", "ru"),
    ("zh-gaotie.txt", "zh"),
];

/// Snippets of `chars` characters, starting every `chars / 2` characters.
fn snippets(text: &str, chars: usize) -> Vec<String> {
    let all: Vec<char> = text.chars().collect();
    (0..all.len().saturating_sub(chars) + 1)
        .step_by((chars / 2).max(1))
        .map(|i| all[i..(i + chars).min(all.len())].iter().collect())
        .collect()
}

#[test]
fn detection_accuracy_by_length() {
    eprintln!("length  snippets  right  unreliable  wrong-but-reliable");
    let mut rows = Vec::new();
    for chars in [10, 20, 40, 80, 160, 320] {
        let (mut n, mut right, mut unreliable, mut wrong) = (0, 0, 0, 0);
        for (file, code) in SAMPLES {
            let path = fixtures().join("corpus").join(file);
            let source = std::fs::read_to_string(path).unwrap();
            let prose = Markup::parse(source, Format::from_path(file)).prose(true);
            for s in snippets(&prose, chars) {
                n += 1;
                match detect(&s) {
                    Some(d) if d.reliable && d.language.code == *code => right += 1,
                    Some(d) if d.reliable => wrong += 1,
                    _ => unreliable += 1,
                }
            }
        }
        eprintln!("{chars:>6}  {n:>8}  {right:>5}  {unreliable:>10}  {wrong:>18}");
        rows.push((chars, n, right, unreliable, wrong));
    }
    // The documented limits (README): a wrong language is almost never
    // vouched for; short text is mostly flagged unreliable; a paragraph or
    // more is detected.
    for (chars, n, right, unreliable, wrong) in rows {
        assert!(wrong * 100 <= n, "{chars} chars: {wrong}/{n} wrong");
        if chars < 40 {
            assert!(
                unreliable * 2 > n,
                "{chars} chars: only {unreliable}/{n} flagged unreliable"
            );
        }
        let least_right = match chars {
            ..=40 => 0,
            80 => 75,
            _ => 95,
        };
        assert!(
            right * 100 >= n * least_right,
            "{chars} chars: {right}/{n} right"
        );
    }
}
