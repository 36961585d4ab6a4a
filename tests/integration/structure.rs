//! Property test over the structure and chunk pipeline: random Markdown,
//! HTML and text built from real syntax and random characters.
//!
//! For every input: parsing never panics; putting the units back unchanged
//! gives the input byte for byte; each unit is one trimmed paragraph, so the
//! chunker's paragraphs are exactly the units; chunks tile the model text
//! once, in order, none over budget; and an answer that only changes the
//! case of every unit restores without error.
//!
//! `PROPTEST_CASES=N` runs more cases; the test prints how many it ran and
//! how long they took.

use std::cell::Cell;
use std::time::Instant;

use glot::markup::{Format, Markup};
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

#[test]
fn structure_and_chunks_hold_for_random_documents() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
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
