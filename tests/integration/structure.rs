//! Property test over the structure and chunk pipeline: random Markdown,
//! HTML and text built from real syntax and random characters.
//!
//! For every input: parsing never panics; putting the units back unchanged
//! gives the input byte for byte; each unit is one trimmed paragraph, so the
//! chunker's paragraphs are exactly the units; chunks tile the model text
//! once, in order, none over budget; and an answer that only changes the
//! case of every unit restores without error.
//!
//! A second property feeds random hostile answers (markup of every kind
//! around and inside each unit's own text and placeholders) and checks that
//! whatever restores adds no markup to the document: the rendered output's
//! elements, link targets, image sources and raw HTML are among the
//! source's.
//!
//! `PROPTEST_CASES=N` runs more cases; the test prints how many it ran and
//! how long they took.

use std::cell::Cell;
use std::time::Instant;

use glot::markup::{rendered_markup, Format, Markup};
use glot::text::chunk;
use glot::text::segment::paragraphs;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Pieces of real syntax the parsers must handle in any combination.
const SYNTAX: &[&str] = &[
    "# ",
    "## ",
    "\n",
    "\n\n",
    "\n\n\n",
    "  \n",
    "> ",
    "- ",
    "1. ",
    "* ",
    "- [ ] ",
    "```\n",
    "```rust\n",
    "    ",
    "`",
    "**",
    "*",
    "_",
    "~~",
    "[",
    "](",
    ")",
    "![",
    "<",
    ">",
    "|",
    "|---|",
    "\n---\n",
    "+++\n",
    "---\ntitle: x\n---\n",
    "[^1]",
    "[^1]: ",
    "\\",
    "&amp;",
    "&eacute;",
    "https://example.org/a_(b)",
    "www.example.com.",
    "<p>",
    "</p>",
    "<b>",
    "</b>",
    "<a href=\"x\">",
    "</a>",
    "<em>",
    "<br>",
    "<img src=\"i.png\">",
    "<code>",
    "</code>",
    "<pre>",
    "</pre>",
    "<script>",
    "</script>",
    "<style>",
    "<!-- c -->",
    "<div>",
    "</div>",
    "<nav>",
    "</nav>",
    "<article>",
    "<li>",
    "<td>",
    "<table>",
    "<!DOCTYPE html>",
    "<x1/>",
    "<g1>",
    "</g1>",
    "\t",
    "\r\n",
    "。",
    "！",
    "…",
    ". ",
    "? ",
    "z. B. ",
    "Dr. ",
    "3.5 ",
    "« ",
    " »",
    "«Да!» — ",
];

/// Words in several scripts.
const WORDS: &[&str] = &[
    "word",
    "Satz",
    "über",
    "été",
    "слово",
    "λέξη",
    "शब्द",
    "كلمة",
    "日本語",
    "中文字",
    "한국어",
    "ภาษาไทย",
    "ខ្មែរ",
    "🙂",
    "a",
    "I",
    "42",
];

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(SYNTAX).prop_map(str::to_string),
        4 => prop::sample::select(WORDS).prop_map(|w| format!("{w} ")),
        1 => "\\PC{0,6}",
    ]
}

fn document() -> impl Strategy<Value = (String, Format, usize)> {
    (
        prop::collection::vec(piece(), 0..60),
        prop::sample::select(&[Format::Text, Format::Markdown, Format::Html][..]),
        1usize..40,
    )
        .prop_map(|(pieces, format, budget)| (pieces.concat(), format, budget))
}

/// One token per word, one per character of a script without spaces.
fn tokens(text: &str) -> anyhow::Result<usize> {
    Ok(text
        .split_whitespace()
        .map(|w| w.chars().filter(|c| *c as u32 >= 0x0E00).count().max(1))
        .sum())
}

/// Checks one document; returns its units and chunks.
fn check(source: &str, format: Format, budget: usize) -> Result<(usize, usize), TestCaseError> {
    let m = Markup::parse(source.to_string(), format);
    let units = m.units();
    let identity: Vec<String> = (0..units.len())
        .map(|i| {
            m.restore_unit(i, units[i].text())
                .expect("its own text restores")
        })
        .collect();
    prop_assert_eq!(m.assemble(&identity, None), source);
    for u in units {
        prop_assert_eq!(u.text(), u.text().trim());
        prop_assert_eq!(paragraphs(u.text()).len(), 1, "unit {:?}", u.text());
    }
    let text = m.model_text();
    let plan = chunk::plan(&text, budget, &tokens).unwrap();
    prop_assert_eq!(plan.paragraphs.len(), units.len());
    let mut pos = 0;
    for c in &plan.chunks {
        prop_assert_eq!(c.span.start, pos, "chunks tile the text in order");
        prop_assert!(c.tokens <= budget, "chunk of {} over {}", c.tokens, budget);
        prop_assert_eq!(tokens(&text[c.content.clone()]).unwrap(), c.tokens);
        pos = c.span.end;
    }
    if !plan.chunks.is_empty() {
        prop_assert_eq!(pos, text.len());
    }
    for (i, u) in units.iter().enumerate() {
        prop_assert!(m.restore_unit(i, &u.text().to_uppercase()).is_ok());
    }
    Ok((units.len(), plan.chunks.len()))
}

/// A runner of `PROPTEST_CASES` cases (512 unless set), and their number.
fn runner() -> (TestRunner, u32) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    (TestRunner::new(config), cases)
}

#[test]
fn structure_and_chunks_hold_for_random_documents() {
    let (mut runner, cases) = runner();
    let start = Instant::now();
    let (bytes, units, chunks) = (Cell::new(0), Cell::new(0), Cell::new(0));
    let result = runner.run(&document(), |(source, format, budget)| {
        let (u, c) = check(&source, format, budget)?;
        bytes.set(bytes.get() + source.len());
        units.set(units.get() + u);
        chunks.set(chunks.get() + c);
        Ok(())
    });
    eprintln!(
        "structure + chunks: {cases} random documents ({} bytes, {} units, {} chunks) in {:.1}s",
        bytes.get(),
        units.get(),
        chunks.get(),
        start.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn known_hard_documents() {
    for (doc, format) in [
        ("<p>a<b>b\n\n</b>c</p>", Format::Html),
        ("*a\n\nb*", Format::Markdown),
        ("> a\n>\n> b", Format::Markdown),
        ("<x1/> and <g1>text</g1>", Format::Text),
        ("| a |\n|---|\n| `b` |", Format::Markdown),
        ("<script>never", Format::Html),
        ("<pre>never", Format::Html),
        ("# </>a", Format::Html),
        ("<p>a <b>b</p>", Format::Html),
    ] {
        check(doc, format, 3).unwrap();
    }
}

/// Pieces of answers written to attack, and plain words between them.
const HOSTILE: &[&str] = &[
    "<img src=\"https://evil.example/t.png\">",
    "<script>alert(1)</script>",
    "<iframe src=x>",
    "<a href=\"https://evil.example\">",
    "</a>",
    "<p>",
    "<!-- c -->",
    "[",
    "]",
    "](javascript:alert(1))",
    "](https://evil.example/l)",
    "![",
    "][ref]",
    "[ref]: https://evil.example/d",
    "[^1]",
    "[^1]: ",
    "<https://evil.example/a>",
    "<me@evil.example>",
    "https://evil.example/x",
    "www.evil.example",
    "x@evil.example",
    "\n",
    "\n# ",
    "\n===\n",
    "\n---\n",
    "\n- ",
    "\n1. ",
    "\n> ",
    "\n```\n",
    "\n    ",
    "|",
    "\n|---|---|\n",
    "&lt;",
    "&amp;",
    "\\",
    "<",
    ">",
    "*",
    "`",
    ":",
    ": ",
    " ",
    "word ",
    "Satz ",
    SWAP,
    SWAP,
];

/// One answer per unit of a document: hostile pieces, each put at a gap
/// between the words of the unit's own text (placeholders included) or
/// glued to the word before; [`SWAP`] moves a word (a placeholder, say)
/// to the front instead.
fn answers(units: &[&str], pieces: &[(usize, String)]) -> Vec<String> {
    units
        .iter()
        .enumerate()
        .map(|(u, text)| {
            let mut words: Vec<String> = text.split(' ').map(str::to_string).collect();
            for (seed, piece) in pieces.iter().skip(u % 3) {
                let at = seed % (words.len() + 1);
                if piece == SWAP {
                    let word = words.remove(at.min(words.len() - 1));
                    words.insert(0, word);
                } else if seed / 7 % 2 == 0 && at > 0 {
                    words[at - 1].push_str(piece);
                } else {
                    words.insert(at, piece.clone());
                }
            }
            words.join(" ")
        })
        .collect()
}

/// Not a piece: moves a word of the answer to its front.
const SWAP: &str = "⇄";

fn hostile_case() -> impl Strategy<Value = (String, Format, Vec<(usize, String)>)> {
    (
        prop::collection::vec(piece(), 0..40),
        prop::sample::select(&[Format::Markdown, Format::Html][..]),
        prop::collection::vec(
            (
                any::<usize>(),
                prop_oneof![
                    6 => prop::sample::select(HOSTILE).prop_map(str::to_string),
                    1 => "\\PC{0,4}",
                ],
            ),
            1..8,
        ),
    )
        .prop_map(|(pieces, format, answer)| (pieces.concat(), format, answer))
}

/// Restores every unit whose answer restores (the others keep their
/// source, as the pipeline keeps them) and checks the output's markup.
fn check_hostile(
    source: &str,
    format: Format,
    pieces: &[(usize, String)],
) -> Result<(), TestCaseError> {
    let m = Markup::parse(source.to_string(), format);
    let units: Vec<&str> = m.units().iter().map(|u| u.text()).collect();
    let outputs: Vec<String> = answers(&units, pieces)
        .iter()
        .enumerate()
        .map(|(i, a)| {
            m.restore_unit(i, a)
                .unwrap_or_else(|_| source[m.units()[i].range.clone()].to_string())
        })
        .collect();
    let out = m.assemble(&outputs, None);
    let want = rendered_markup(source, format);
    let got = rendered_markup(&out, format);
    let added: Vec<_> = got.difference(&want).collect();
    prop_assert!(
        added.is_empty(),
        "added {:?}\nsource:\n{}\noutput:\n{}",
        added,
        source,
        out
    );
    Ok(())
}

#[test]
fn hostile_answers_add_no_markup_to_random_documents() {
    let (mut runner, cases) = runner();
    let start = Instant::now();
    let result = runner.run(&hostile_case(), |(source, format, pieces)| {
        check_hostile(&source, format, &pieces)
    });
    eprintln!(
        "hostile answers: {cases} random documents in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
