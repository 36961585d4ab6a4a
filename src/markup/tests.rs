use super::*;

const MARKDOWN: &str = include_str!("../../tests/fixtures/documents/article.md");
const HTML: &str = include_str!("../../tests/fixtures/documents/page.html");
const TEXT: &str = include_str!("../../tests/fixtures/documents/notes.txt");
const SPANISH: &str = include_str!("../../tests/fixtures/corpus/es-maraton.md");
const JAPANESE: &str = include_str!("../../tests/fixtures/corpus/ja-matsuri.html");

pub(crate) fn all() -> Vec<(Format, &'static str)> {
    vec![
        (Format::Markdown, MARKDOWN),
        (Format::Html, HTML),
        (Format::Text, TEXT),
        (Format::Markdown, SPANISH),
        (Format::Html, JAPANESE),
    ]
}

/// Runs every unit through `engine` and puts the document back together.
fn round_trip(m: &Markup, engine: impl Fn(&str) -> String) -> String {
    let outputs: Vec<String> = (0..m.units().len())
        .map(|i| {
            m.restore_unit(i, &engine(m.units()[i].text()))
                .unwrap_or_else(|e| panic!("unit {i} {:?}: {e}", m.units()[i].text()))
        })
        .collect();
    m.assemble(&outputs, None)
}

fn texts(m: &Markup) -> Vec<&str> {
    m.units().iter().map(Unit::text).collect()
}

#[test]
fn an_identity_engine_gives_back_every_document_byte_for_byte() {
    for (format, doc) in all() {
        let m = Markup::parse(doc.to_string(), format);
        assert!(!m.units().is_empty());
        assert_eq!(round_trip(&m, str::to_string), doc, "{format:?}");
    }
}

#[test]
fn units_are_single_trimmed_paragraphs() {
    for (format, doc) in all() {
        let m = Markup::parse(doc.to_string(), format);
        for t in texts(&m) {
            assert_eq!(t, t.trim(), "{format:?}");
            assert_eq!(crate::text::segment::paragraphs(t).len(), 1, "{t:?}");
        }
        let joined = m.model_text();
        assert_eq!(
            crate::text::segment::paragraphs(&joined).len(),
            m.units().len()
        );
    }
}

#[test]
fn a_marking_engine_changes_prose_only() {
    for (format, doc) in all() {
        let m = Markup::parse(doc.to_string(), format);
        // Upper case, and a mark for scripts without case.
        let out = round_trip(&m, |t| format!("※{}", t.to_uppercase()));
        let mut rest = out.as_str();
        // Everything kept appears, unchanged and in order, in the output.
        for kept in m.kept() {
            let at = rest
                .find(kept)
                .unwrap_or_else(|| panic!("{format:?}: kept {kept:?} changed"));
            rest = &rest[at + kept.len()..];
        }
        assert_ne!(out, doc);
    }
    let m = Markup::parse(MARKDOWN.to_string(), Format::Markdown);
    let out = round_trip(&m, |t| t.to_uppercase());
    for verbatim in [
        "title: \"Front matter: never translated\"",
        "`code`",
        "(https://example.org/a_(b) \"Title\")",
        "https://example.com/path?q=1",
        "![image](img.png \"alt\")",
        "[ref]: https://example.org/ref",
        "`cell code`",
        "<span>HTML</span>",
        "fn main() { println!(\"never sent\"); }",
        "    indented code block",
        "An HTML block is kept as it is.",
        "<https://example.net>",
        "<me@example.com>",
        "[^1]",
        "- [ ] ",
        "|:-----------|---------------:|",
    ] {
        assert!(out.contains(verbatim), "{verbatim:?} changed:\n{out}");
    }
    for prose in [
        "# A HEADING WITH `code` AND A [LINK](",
        "INTRO PARAGRAPH WITH **BOLD**, *EMPHASIS*, ~~STRUCK~~",
        "IT WRAPS ONTO A SECOND LINE WITH A HARD BREAK  \nAND A THIRD LINE.",
        "> A QUOTED PARAGRAPH\n> THAT SPANS TWO LINES",
        "2. SECOND ITEM WITH [A REFERENCE LINK][ref]\n   CONTINUED ON THE NEXT LINE",
        "   - NESTED *ITEM*",
        "- [ ] A TASK",
        "| COLUMN ONE | COLUMN **TWO** |",
        "ESCAPED \\*STAR\\* &AMP; AN ENTITY.",
        "[^1]: THE FOOTNOTE TEXT.",
    ] {
        assert!(out.contains(prose), "{prose:?} not in:\n{out}");
    }
}

#[test]
fn html_keeps_tags_attributes_scripts_and_code() {
    let m = Markup::parse(HTML.to_string(), Format::Html);
    let out = round_trip(&m, |t| t.to_uppercase());
    for verbatim in [
        "<title>PAGE TITLE</title>",
        "<style>body { font-family: serif; } p::after { content: \"never\"; }</style>",
        "<script>var s = \"<p>never sent</p>\"; if (a < b && c > d) {}</script>",
        "<a href=\"https://example.org/x?a=1&amp;b=2\" title=\"Link title\">INLINE LINK</a>",
        "<code>inline_code()</code>",
        "<h1 id=\"top\" class=\"title\">THE HEADLINE OF THE ARTICLE</h1>",
        "SECOND PARAGRAPH<br>AFTER A LINE BREAK, <em>WITH <b>NESTED</b> MARKUP</em>.<!-- a comment -->",
        "<img src=\"a.png\" alt=\"An image\">",
        "    return \"never sent\"",
        "<textarea>never translated</textarea>",
        "<span class=\"x\">A SPAN</span>",
        "A QUOTATION,\n\nWITH A BLANK LINE INSIDE.",
    ] {
        assert!(out.contains(verbatim), "{verbatim:?} not in:\n{out}");
    }
}

#[test]
fn html_main_text_leaves_out_page_furniture() {
    let m = Markup::parse(HTML.to_string(), Format::Html);
    let main = m.prose(true);
    assert!(main.starts_with("The headline of the article\n\nFirst paragraph with strong words"));
    assert!(
        main.contains("inline_code() in it & an entity été."),
        "{main}"
    );
    assert!(
        main.contains("Second paragraph after a line break"),
        "{main}"
    );
    for furniture in [
        "Page title",
        "Home",
        "News",
        "Share this",
        "Article footer",
        "Sidebar",
        "© 2026",
        "never",
    ] {
        assert!(!main.contains(furniture), "{furniture:?} in:\n{main}");
    }
    let all = m.prose(false);
    assert!(all.contains("Sidebar text") && all.contains("Page title"));

    let ja = Markup::parse(JAPANESE.to_string(), Format::Html);
    let main = ja.prose(true);
    assert!(main.starts_with("港町の夏祭り、過去最多の人出\n\n2026年8月3日\n\n"));
    assert!(!main.contains("ホーム") && !main.contains("©"), "{main}");
    assert_eq!(
        crate::text::lang::detect(&main).map(|d| d.language.code),
        Some("ja".to_string())
    );
}

#[test]
fn markdown_prose_is_what_a_reader_sees() {
    let m = Markup::parse(SPANISH.to_string(), Format::Markdown);
    let prose = m.prose(true);
    assert!(prose.starts_with("Récord de participación en el maratón de Sevilla\n\n"));
    assert!(prose.contains("reunió este domingo a 14.200 corredores, una cifra récord."));
    assert!(
        !prose.contains("title:") && !prose.contains("curl"),
        "{prose}"
    );
    assert!(prose.contains("con el parámetro bib."), "{prose}");
}

#[test]
fn what_the_model_sees_has_placeholders_for_markup() {
    let m = Markup::parse(MARKDOWN.to_string(), Format::Markdown);
    let t = texts(&m);
    assert_eq!(t[0], "A heading with <x1/> and a <g2>link</g2>");
    assert_eq!(
        t[1],
        "Intro paragraph with <g1>bold</g1>, <g2>emphasis</g2>, <g3>struck</g3> and a bare URL <x4/>.\n\
         It wraps onto a second line with a hard break<x5/>and a third line."
    );
    assert!(t.contains(&"A quoted paragraph\nthat spans two lines, with an <x1/> inside."));
    assert!(t.contains(&"a task"));
    assert!(t.contains(&"Column <g1>two</g1>"));
    for t in &t {
        assert!(!t.contains("http") && !t.contains("never"), "{t}");
    }
    let plain = Markup::parse(TEXT.to_string(), Format::Text);
    assert_eq!(
        texts(&plain),
        [
            "First paragraph of plain text,\nwrapped over two lines. See <x1/>.",
            "Second paragraph after two blank lines.",
            "Third paragraph after a line of white space."
        ]
    );
}

#[test]
fn broken_placeholders_are_refused() {
    let m = Markup::parse("Some **bold** and `code` here.".into(), Format::Markdown);
    assert_eq!(texts(&m), ["Some <g1>bold</g1> and <x2/> here."]);
    let ok = |r: &str| m.restore_unit(0, r);
    assert_eq!(
        ok("Etwas <G1>Fettes</G1> und <x2 /> hier.").unwrap(),
        "Etwas **Fettes** und `code` hier."
    );
    assert_eq!(
        ok("<x2> zuerst, dann <g1>fett</g1>.").unwrap(),
        "`code` zuerst, dann **fett**."
    );
    assert_eq!(
        ok("Etwas <g1>Fettes</g1> hier."),
        Err(Broken::Missing("<x2/>".into()))
    );
    assert_eq!(
        ok("<x2/> <x2/> <g1>a</g1>"),
        Err(Broken::Repeated("<x2/>".into()))
    );
    assert_eq!(
        ok("<x2/> <g1>a</g1> <x3/>"),
        Err(Broken::Unknown("<x3/>".into()))
    );
    assert_eq!(ok("<x2/> </g1>a<g1>"), Err(Broken::Order("</g1>".into())));
    // Stray forms and crossed spans are refused too.
    assert_eq!(
        ok("<x2></x2> <g1>a</g1>"),
        Err(Broken::Unknown("</x2>".into()))
    );
    let nested = Markup::parse("*a **b** c* `d`".into(), Format::Markdown);
    assert_eq!(texts(&nested), ["<g1>a <g2>b</g2> c</g1> <x3/>"]);
    assert_eq!(
        nested.restore_unit(0, "<g1>a <g2>b</g1> c</g2> <x3/>"),
        Err(Broken::Order("</g1>".into()))
    );
    // Angle brackets that are no placeholder are text, escaped where
    // Markdown would read a tag.
    assert_eq!(
        ok("a < b <g1>x</g1> <x2/> <gx>").unwrap(),
        "a \\< b **x** `code` \\<gx>"
    );
}

#[test]
fn answers_cannot_add_html_tags() {
    let m = Markup::parse(
        "<p>Use the &lt;div&gt; element, if a < b.</p>".into(),
        Format::Html,
    );
    let t = m.units()[0].text();
    assert_eq!(
        m.restore_unit(0, t).unwrap(),
        "Use the &lt;div&gt; element, if a < b."
    );
    assert_eq!(
        m.restore_unit(0, "Nimm das <div>-Element & <b>fett</b>, wenn a < b.")
            .unwrap(),
        "Nimm das &lt;div>-Element & &lt;b>fett&lt;/b>, wenn a &lt; b."
    );
}

#[test]
fn unclosed_inline_code_does_not_swallow_the_page() {
    let m = Markup::parse(
        "<p>Call <code>f() now.</p><p>Next <svg/> paragraph.</p>".into(),
        Format::Html,
    );
    assert_eq!(texts(&m), ["Call <x1/>f() now.", "Next <x1/> paragraph."]);
    let pre = Markup::parse("<p>Text.</p><pre>kept to the end".into(), Format::Html);
    assert_eq!(texts(&pre), ["Text."]);
}

#[test]
fn numbers_alone_are_units_too() {
    let m = Markup::parse("Intro.\n\n2024: 3.5 %\n\n***\n".into(), Format::Markdown);
    assert_eq!(texts(&m), ["Intro.", "2024: 3.5 %"]);
}

#[test]
fn reflowed_lines_keep_their_container_prefix() {
    let m = Markup::parse("> one\n> two\n> three\n".into(), Format::Markdown);
    assert_eq!(texts(&m), ["one\ntwo\nthree"]);
    assert_eq!(m.restore_unit(0, "eins\nzwei").unwrap(), "eins\n> zwei");
    let h = Markup::parse("# Title\n".into(), Format::Markdown);
    assert_eq!(h.restore_unit(0, "Ti\ntel").unwrap(), "Ti tel");
}

#[test]
fn urls_are_found_without_trailing_punctuation() {
    let s = "See https://a.org/x_(y), www.b.com. And (http://c.net/p?q=1) or mailto.www.no";
    let urls: Vec<&str> = placeholder::find_urls(s)
        .into_iter()
        .map(|r| &s[r])
        .collect();
    assert_eq!(
        urls,
        ["https://a.org/x_(y)", "www.b.com", "http://c.net/p?q=1"]
    );
}

#[test]
fn formats_follow_file_names() {
    assert_eq!(Format::from_path("a/b.MD"), Format::Markdown);
    assert_eq!(Format::from_path("page.htm"), Format::Html);
    assert_eq!(Format::from_path("notes.txt"), Format::Text);
    assert_eq!(Format::from_path("-"), Format::Text);
}

#[test]
fn a_translated_page_says_its_new_language() {
    let m = Markup::parse(JAPANESE.to_string(), Format::Html);
    let same: Vec<String> = m
        .units()
        .iter()
        .map(|u| m.source()[u.range.clone()].to_string())
        .collect();
    let out = m.assemble(&same, Some("de"));
    assert!(
        out.starts_with("<!DOCTYPE html>\n<html lang=\"de\">\n<head>"),
        "{out}"
    );
    assert_eq!(out.replacen("lang=\"de\"", "lang=\"ja\"", 1), JAPANESE);
    assert_eq!(m.assemble(&same, None), JAPANESE);
    let bare = Markup::parse("<html lang=en><p>Text</p>".into(), Format::Html);
    assert_eq!(
        bare.assemble(&["Texte".into()], Some("fr")),
        "<html lang=fr><p>Texte</p>"
    );
}

#[test]
fn emails_are_found_whole() {
    let s = "Write to press@kremlin.ru, or .a.b+c@mail.example.org. Not @home, x@y, or a@b.";
    let found: Vec<&str> = placeholder::find_emails(s)
        .into_iter()
        .map(|r| &s[r])
        .collect();
    assert_eq!(found, ["press@kremlin.ru", "a.b+c@mail.example.org"]);
    let m = Markup::parse(format!("{s}\n"), Format::Text);
    assert!(
        texts(&m)[0].starts_with("Write to <x1/>, or .<x2/>."),
        "{:?}",
        texts(&m)
    );
}

#[test]
fn glossary_terms_come_back_as_their_translations() {
    let terms = [
        ("Kremlin".to_string(), "Kreml".to_string()),
        ("Superjet-100".to_string(), "Superjet-100".to_string()),
        ("Jet".to_string(), "Düse".to_string()),
    ];
    let src = "The Kremlin said the *Superjet-100* flies; Kremlinology is not a term.\n";
    let mut m = Markup::parse(src.into(), Format::Markdown);
    m.protect_terms(&terms);
    // Whole words only, longest first, inside markup too; numbered in order.
    assert_eq!(
        texts(&m),
        ["The <x1/> said the <g2><x3/></g2> flies; Kremlinology is not a term."]
    );
    let reply = "Der <x1/> sagte, der <g2><x3/></g2> fliegt; Kremlinologie ist kein Begriff.";
    assert_eq!(
        m.restore_unit(0, reply).unwrap(),
        "Der Kreml sagte, der *Superjet-100* fliegt; Kremlinologie ist kein Begriff."
    );
    // A lost term is a broken answer, as any lost placeholder.
    assert!(m
        .restore_unit(0, "Der Kreml sagte, der <g2><x3/></g2> fliegt.")
        .is_err());
    // In HTML the translation is escaped like any text the model writes.
    let mut h = Markup::parse("<p>Tom said hi.</p>".into(), Format::Html);
    h.protect_terms(&[("Tom".into(), "<Tom>".into())]);
    assert_eq!(
        h.restore_unit(0, "<x1/> sagte hallo.").unwrap(),
        "&lt;Tom> sagte hallo."
    );
}

/// Answers written to attack: raw HTML, scripts, `javascript:` links,
/// images, reference definitions, autolinks, comments, block markers and
/// table pipes.
pub(crate) const ATTACKS: &[&str] = &[
    "<img src=\"https://evil.example/t.png\">",
    "<script>alert(1)</script>",
    "[click](javascript:alert(1))",
    "<a href=\"javascript:alert(1)\">x</a>",
    "![pixel](https://evil.example/p.png)",
    "[ref]: https://evil.example/def",
    "[x][ref] and [^1]",
    "<https://evil.example/auto> <me@evil.example>",
    "https://evil.example/bare www.evil.example x@evil.example",
    "<!-- hidden -->",
    "# Heading",
    "Setext\n===",
    "Setext\n---",
    "- item\n1. item\n> quote",
    "```\ncode\n```",
    "    indented",
    "a | b | c",
    "&lt;img src=x&gt; \\<img src=y>",
];

/// Whatever a model adds around the unit's own placeholders, the output's
/// markup is the source's, in every format.
#[test]
fn hostile_answers_add_no_markup() {
    for (format, doc) in all() {
        let m = Markup::parse(doc.to_string(), format);
        let want = super::rendered_markup(doc, format);
        for attack in ATTACKS {
            let out = round_trip(&m, |t| format!("{attack}\n{t}\n{attack} {attack}"));
            let got = super::rendered_markup(&out, format);
            let added: Vec<_> = got.difference(&want).collect();
            assert!(
                added.is_empty(),
                "{format:?}, {attack:?} added {added:?}:\n{out}"
            );
        }
    }
}

/// Placeholders the unit does not have, or forms of them it does not have,
/// fail the answer's check: a model cannot forge the source's markup.
#[test]
fn fake_placeholders_fail_the_check() {
    let m = Markup::parse(
        "A [link](https://example.org) and *this*.".into(),
        Format::Markdown,
    );
    assert_eq!(texts(&m), ["A <g1>link</g1> and <g2>this</g2>."]);
    for fake in ["<x3/>", "<g3>x</g3>", "<g1>again</g1>", "</g2>"] {
        let reply = format!("A <g1>link</g1> and <g2>this</g2>. {fake}");
        assert!(m.restore_unit(0, &reply).is_err(), "{fake}");
    }
}

/// The start of a document through any number of units is where the
/// whole document starts, and through all of them it is the document.
#[test]
fn a_prefix_of_units_starts_the_assembled_document() {
    for (src, format) in [
        ("# Title\n\nOne paragraph.\n\n- item one\n- item two\n", Format::Markdown),
        (
            "<html lang=\"en\"><body><h1>Title</h1><p>One <b>bold</b> word.</p><p>Two.</p></body></html>",
            Format::Html,
        ),
        ("First.\n\nSecond.\n\nThird.", Format::Text),
    ] {
        let doc = Markup::parse(src.to_string(), format);
        let outputs: Vec<String> = (0..doc.units().len()).map(|i| format!("<{i}>")).collect();
        let whole = doc.assemble(&outputs, Some("de"));
        let mut last = String::new();
        for k in 0..=outputs.len() {
            let start = doc.assemble_prefix(&outputs[..k], Some("de"));
            assert!(whole.starts_with(&start), "{format:?} {k}: {start:?}");
            assert!(start.len() >= last.len());
            if k > 0 {
                assert!(start.contains(&format!("<{}>", k - 1)));
            }
            last = start;
        }
        assert_eq!(last, whole);
    }
}
