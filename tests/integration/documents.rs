//! Markdown, HTML and badly encoded input through the real binary.
//!
//! The fixture models write noise, so these tests check what glot promises
//! whatever the model says: kept bytes stay kept, structure stays, and the
//! report says how the document was read.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::util::{fixtures, glot, model_dir, run, stderr, stdout};

fn model() -> String {
    model_dir("qwen3").to_str().unwrap().to_string()
}

fn document(name: &str) -> PathBuf {
    fixtures().join("documents").join(name)
}

fn copy(dir: &Path, name: &str, to: &str) -> String {
    let p = dir.join(to);
    let from = document(name);
    let from = if from.exists() {
        from
    } else {
        fixtures().join("corpus").join(name)
    };
    std::fs::copy(from, &p).unwrap();
    p.to_str().unwrap().to_string()
}

#[derive(Deserialize)]
struct Report {
    text: String,
    input_format: String,
    paragraphs: usize,
    untranslated: usize,
    flags: Vec<Flag>,
}

#[derive(Deserialize)]
struct Flag {
    line: usize,
    kind: String,
}

#[derive(Deserialize)]
struct SummaryReport {
    input_format: String,
    source_language: serde_json::Value,
}

fn translate(home: &Path, args: &[&str]) -> Report {
    let mut cmd = glot(home);
    cmd.args([
        "translate",
        "--to",
        "de",
        "--model",
        &model(),
        "--format",
        "json",
    ]);
    cmd.args(args);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// Every fragment appears in `text`, in this order.
fn in_order(text: &str, fragments: &[&str]) {
    let mut rest = text;
    for f in fragments {
        let at = rest
            .find(f)
            .unwrap_or_else(|| panic!("{f:?} missing or out of order in:\n{text}"));
        rest = &rest[at + f.len()..];
    }
}

#[test]
fn markdown_code_links_and_front_matter_survive_translation() {
    let home = tempfile::tempdir().unwrap();
    let md = copy(home.path(), "article.md", "post.md");
    let r = translate(home.path(), &[&md]);
    assert_eq!(r.input_format, "markdown");
    assert_eq!(r.paragraphs, 15);
    // Each unit kept in the source is flagged by its line, and comes back
    // as it was, markup and all: the whole line, or for a table row (a
    // line of several units) one of its cells.
    let source = std::fs::read_to_string(&md).unwrap();
    let kept: Vec<usize> = r
        .flags
        .iter()
        .filter(|f| f.kind == "untranslated")
        .map(|f| f.line)
        .collect();
    assert_eq!(kept.len(), r.untranslated);
    let mut whole_lines = 0;
    for line in kept {
        let original = source.lines().nth(line - 1).unwrap().trim();
        let found = match original.starts_with('|') {
            true => original
                .split('|')
                .map(str::trim)
                .any(|cell| !cell.is_empty() && r.text.contains(cell)),
            false => {
                whole_lines += 1;
                r.text.contains(original)
            }
        };
        assert!(found, "line {line} `{original}` not kept in:\n{}", r.text);
    }
    assert!(
        r.untranslated == 0 || whole_lines > 0,
        "no kept unit outside tables to check"
    );
    in_order(
        &r.text,
        &[
            "---\ntitle: \"Front matter: never translated\"\ntags: [a, b]\n---\n\n# ",
            "`code`",
            "](https://example.org/a_(b) \"Title\")",
            "https://example.com/path?q=1",
            "\n> ",
            "![image](img.png \"alt\")",
            "\n1. ",
            "\n2. ",
            "][ref]",
            "\n   - ",
            "\n- [ ] ",
            "\n- [x] ",
            "\n| ",
            " |\n|:-----------|---------------:|\n| ",
            "`cell code`",
            "```rust\nfn main() { println!(\"never sent\"); }\n```\n\n    indented code block\n\n<div class=\"note\">\nAn HTML block is kept as it is.\n</div>\n\n",
            "<https://example.net>",
            "<me@example.com>",
            "[^1]",
            "\n\n***\n\n[ref]: https://example.org/ref\n[^1]: ",
        ],
    );
}

#[test]
fn html_markup_scripts_and_attributes_survive_translation() {
    let home = tempfile::tempdir().unwrap();
    let html = copy(home.path(), "page.html", "page.html");
    let r = translate(home.path(), &[&html]);
    assert_eq!(r.input_format, "html");
    in_order(
        &r.text,
        &[
            "<!DOCTYPE html>\n<html lang=\"de\">\n<head>\n<meta charset=\"utf-8\">\n<title>",
            "</title>\n<style>body { font-family: serif; } p::after { content: \"never\"; }</style>\n<script>var s = \"<p>never sent</p>\"; if (a < b && c > d) {}</script>\n</head>",
            "<h1 id=\"top\" class=\"title\">",
            "<a href=\"https://example.org/x?a=1&amp;b=2\" title=\"Link title\">",
            "<code>inline_code()</code>",
            "<img src=\"a.png\" alt=\"An image\">",
            "<pre><code class=\"language-python\">def f():\n    return \"never sent\"\n</code></pre>",
            "<textarea>never translated</textarea>\n</body>\n</html>\n",
        ],
    );
}

#[test]
fn the_input_format_flag_overrides_the_extension() {
    let home = tempfile::tempdir().unwrap();
    let txt = home.path().join("post.txt");
    std::fs::write(&txt, "# Title\n\n```\nnever sent\n```\n").unwrap();
    let txt = txt.to_str().unwrap();
    let as_text = translate(home.path(), &[txt]);
    assert_eq!(
        (as_text.input_format.as_str(), as_text.paragraphs),
        ("text", 2)
    );
    let as_md = translate(home.path(), &[txt, "--input-format", "md"]);
    assert_eq!(
        (as_md.input_format.as_str(), as_md.paragraphs),
        ("markdown", 1)
    );
    assert!(as_md.text.ends_with("\n\n```\nnever sent\n```\n"));
}

#[test]
fn an_html_summary_reads_the_main_text_in_its_language() {
    let home = tempfile::tempdir().unwrap();
    let html = copy(home.path(), "ja-matsuri.html", "matsuri.html");
    let mut cmd = glot(home.path());
    cmd.args(["summarize", &html, "--model", &model(), "--format", "json"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: SummaryReport = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(r.input_format, "html");
    let lang = r.source_language;
    assert_eq!(lang["code"], "ja", "{lang}");
    assert_eq!(lang["reliable"], true, "{lang}");
}

#[test]
fn bad_bytes_are_refused_unless_lossy() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("latin1.txt");
    std::fs::write(
        &path,
        b"Le caf\xe9 de la gare a rouvert ses portes lundi.\n\nLes habitu\xe9s sont revenus.\n",
    )
    .unwrap();
    let path = path.to_str().unwrap();
    let mut cmd = glot(home.path());
    cmd.args(["translate", path, "--to", "de", "--model", &model()]);
    let out = run(cmd, None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("not valid UTF-8") && err.contains("--lossy"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let r = translate(home.path(), &[path, "--lossy"]);
    assert_eq!(r.paragraphs, 2);
    let mut cmd = glot(home.path());
    cmd.args([
        "translate",
        path,
        "--to",
        "de",
        "--model",
        &model(),
        "--lossy",
    ]);
    let out = run(cmd, None);
    assert!(
        stderr(&out).contains("2 undecodable byte sequence(s) replaced"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_document_without_text_is_an_error() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("code.md");
    std::fs::write(&path, "```\nonly code\n```\n").unwrap();
    let mut cmd = glot(home.path());
    cmd.args(["summarize", path.to_str().unwrap(), "--model", &model()]);
    let out = run(cmd, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has no text to work on (read as markdown)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn cross_lingual_summaries_and_translations_from_any_detected_language() {
    let home = tempfile::tempdir().unwrap();
    let html = copy(home.path(), "ja-matsuri.html", "matsuri.html");
    let mut cmd = glot(home.path());
    cmd.args(["summarize", &html, "--lang", "fr", "--words", "10"]);
    cmd.args(["--model", &model(), "--format", "json"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["source_language"]["code"], "ja");
    assert_eq!(v["language"]["name"], "French");

    let txt = copy(home.path(), "ru-biblioteka.txt", "notes.txt");
    let mut cmd = glot(home.path());
    cmd.args([
        "translate",
        &txt,
        "--from",
        "auto",
        "--to",
        "português do Brasil",
    ]);
    cmd.args(["--model", &model(), "--format", "json"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["source_language"]["code"], "ru");
    assert_eq!(v["target_language"]["code"], "pt-BR");
    assert_eq!(v["target_language"]["name"], "Portuguese (Brazil)");
}
