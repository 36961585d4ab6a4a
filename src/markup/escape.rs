//! The model's words put back into a document as words.
//!
//! Model output is untrusted: a weak model invents markup, and an article
//! can steer a strong one into writing it (prompt injection). So the text of
//! an answer is escaped for the document's format, and the only markup in
//! the output is the source's, which travels as placeholders the model
//! cannot forge (an unknown placeholder fails the answer's check).

/// How the model's text is written back into a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escape {
    /// Plain text: nothing is markup.
    None,
    /// `cell`: in a table cell, where a `|` would end the cell.
    Markdown {
        cell: bool,
    },
    Html,
}

impl Escape {
    /// Appends `text`, a piece of the model's answer. `line_start`: whether
    /// it begins a line of the output (after the source's own line prefix,
    /// such as a list marker or a quote's `>`).
    pub fn push(self, out: &mut String, text: &str, line_start: bool) {
        match self {
            Escape::None => out.push_str(text),
            Escape::Markdown { cell } => markdown(out, text, line_start, cell),
            Escape::Html => html(out, text),
        }
    }
}

/// A text of the model's own, such as a summary, as Markdown whose only
/// markup is a bullet `- ` where a line starts with one (the form glot asks
/// summaries with citations for; `*`, `+` and `•` bullets become `- `).
/// Everything else is the model's words, escaped as in a translated unit.
/// The citation a line ends with (`[2]`, `[1, 3]`) stays as it is.
pub fn model_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let line = line.trim();
        let bullet = ["- ", "* ", "+ ", "• "]
            .iter()
            .find_map(|b| line.strip_prefix(b));
        let rest = match bullet {
            Some(rest) => {
                out.push_str("- ");
                rest.trim_start()
            }
            None => line,
        };
        let (words, cites) = rest.split_at(citation(rest));
        markdown(&mut out, words, true, false);
        out.push_str(cites);
    }
    out
}

/// Where the citation a line ends with starts (`… [2]`, `… [1, 3]`), or
/// the line's length. With no definition of that name in a summary (a
/// definition would open a line with `[`, which is escaped) a bracketed
/// number renders as itself.
fn citation(line: &str) -> usize {
    let Some(open) = line.strip_suffix(']').and_then(|l| l.rfind('[')) else {
        return line.len();
    };
    let inner = &line[open + 1..line.len() - 1];
    let numbers = inner.split(',').all(|n| {
        let n = n.trim();
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    });
    match numbers && open > 0 {
        true => open,
        false => line.len(),
    }
}

/// Appends `text` with every `<` escaped: the model's words stay words in
/// the page. (An HTML tokenizer reads `<a`, `</a`, `<!`, `<?` and even `</ `
/// as markup; a `<` written as `&lt;` is text wherever it stands. A lone
/// `&` is text, and a character reference is what it says.)
fn html(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            c => out.push(c),
        }
    }
}

/// Appends `text` with a backslash before every character that would
/// start CommonMark or GFM markup that adds HTML, a link, an image, a
/// reference definition, a table cell or a block where it stands, so that
/// it renders as the same text: `<` opening a tag, comment or autolink;
/// `[` opening the text of a link, image, footnote or reference, and `]`
/// closing one after the source's own `[`; `|` in a table cell (the cell's end); bare
/// autolinks (`scheme://`, `www.`, `name@host`); and at the start of a line
/// the markers of headings, quotes, lists, thematic breaks, setext
/// underlines, code fences and reference definitions; and the delimiters
/// of emphasis, strikethrough and code spans. Text that cannot start markup
/// is left alone (`snake_case`, `AT&T`), and a model that gives back the
/// unit's own text gives back the source's bytes (see `Unit::restore`).
fn markdown(out: &mut String, text: &str, line_start: bool, cell: bool) {
    // Indentation at the start of a line could open a code block; the
    // source's own indentation travels with its line breaks.
    let text = match line_start {
        true => text.trim_start_matches([' ', '\t']),
        false => text,
    };
    // What a line starting with `text` would open, and at which byte the
    // backslash goes.
    let block = line_start.then(|| block_marker(text)).flatten();
    for (i, c) in text.char_indices() {
        let before = &text[..i];
        let rest = &text[i + c.len_utf8()..];
        let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
        let escape = Some(i) == block
            || match c {
                // Raw HTML, a comment or an autolink; also a `<` that ends
                // the piece, before the source's own markup (a URL).
                '<' => true,
                // A link's, image's, footnote's or reference's text
                // opening: with no `[` of the model's, its words cannot
                // use a definition of the source's either.
                '[' => true,
                // A link's text closing after a `[` of the source's own
                // link (its placeholder): a lone `](` is text.
                ']' => {
                    let opened = out.contains('[') || before.contains('[');
                    (opened && rest.starts_with(['(', '[']))
                        || (rest.starts_with(':') && line_start && text.starts_with('['))
                }
                // Emphasis, strikethrough and code spans: formatting the
                // source did not have. (`_` inside a word opens nothing.)
                '*' | '`' | '~' => true,
                '_' => !(word(before.chars().next_back()) && word(rest.chars().next())),
                '|' => cell,
                ':' => rest.starts_with("//"),
                '.' => before.to_ascii_lowercase().ends_with("www") && word(rest.chars().next()),
                '@' => word(before.chars().next_back()) && word(rest.chars().next()),
                _ => false,
            };
        // After an odd run of backslashes (the model's, or the source's
        // own escape just before this text) it is escaped already: a
        // second one would escape the backslash instead. What was written
        // so far ends with the text before `c` (an added escape is always
        // followed by its character, never by a backslash).
        let slashes = out.bytes().rev().take_while(|&b| b == b'\\').count();
        let escaped = slashes % 2 == 1;
        if escape && !escaped {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Where a line that reads `line` (indentation removed) starts a block:
/// the byte to escape, if any. Text that starts no block is left as it is
/// (`#tag`, `-5 °C`, `[sic]`, `~~`).
pub(super) fn block_marker(line: &str) -> Option<usize> {
    let first = line.chars().next()?;
    let spaced = |s: &str| s.is_empty() || s.starts_with([' ', '\t']);
    // How many times `first` opens the line, and whether the line is only
    // that character (and spaces).
    let run = line.chars().take_while(|&c| c == first).count();
    let only = line
        .trim_end()
        .chars()
        .all(|c| c == first || c == ' ' || c == '\t');
    let marker = match first {
        // A heading.
        '#' => run <= 6 && spaced(&line[run..]),
        // A quote.
        '>' => true,
        // A list item, or a setext underline or thematic break.
        '-' | '+' | '*' if spaced(&line[1..]) => true,
        '-' if line.contains('|') && line.chars().all(|c| "|-: \t".contains(c)) => true,
        '-' | '=' => only,
        // The end of a `+++` metadata block that opens the document.
        '+' => only && run >= 3,
        '*' | '_' => only && line.chars().filter(|&c| c == first).count() >= 3,
        // A code fence.
        '`' | '~' => run >= 3,
        // A table's delimiter row under a line of the model's (`--|--`).
        '|' | ':' if line.contains('-') && line.chars().all(|c| "|-: \t".contains(c)) => true,
        // An ordered list item: digits, then `.` or `)`.
        '0'..='9' => {
            let digits = line.bytes().take_while(u8::is_ascii_digit).count();
            let after = &line[digits..];
            return (digits <= 9 && after.starts_with(['.', ')']) && spaced(&after[1..]))
                .then_some(digits);
        }
        _ => false,
    };
    marker.then_some(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(text: &str) -> String {
        let mut out = String::new();
        Escape::Markdown { cell: false }.push(&mut out, text, true);
        out
    }

    #[test]
    fn markdown_escapes_what_would_be_markup_and_only_that() {
        for same in ["Hello, world. (Yes!) AT&T", "-5 °C", "#tag", "snake_case"] {
            assert_eq!(md(same), same);
        }
        assert_eq!(
            md("*it* and `x` ~~y~~ __a__"),
            "\\*it\\* and \\`x\\` \\~\\~y\\~\\~ \\_\\_a\\_\\_"
        );
        assert_eq!(md("## heading"), "\\## heading");
        assert_eq!(md("* * *"), "\\* \\* \\*");
        assert_eq!(md("# not a heading"), "\\# not a heading");
        assert_eq!(md("- not an item"), "\\- not an item");
        assert_eq!(md("---"), "\\---");
        assert_eq!(md("    not code"), "not code");
        assert_eq!(md("```rust"), "\\`\\`\\`rust");
        assert_eq!(
            md("12. not an item, 3.5 stays"),
            "12\\. not an item, 3.5 stays"
        );
        assert_eq!(md("[1]: https://e.com"), "\\[1\\]: https\\://e.com");
        assert_eq!(
            md("a [link](x) and ![img](y)"),
            "a \\[link\\](x) and !\\[img\\](y)"
        );
        assert_eq!(
            md("<img src=x> <!-- c --> a|b"),
            "\\<img src=x> \\<!-- c --> a|b"
        );
        assert_eq!(md("a [^1]: b [x]"), "a \\[^1]: b \\[x]");
        assert_eq!(md("b ](c [sic]"), "b ](c \\[sic]");
        assert_eq!(md("--|--"), "\\--|--");
        assert_eq!(md("| :-- |"), "\\| :-- |");
        let mut out = String::new();
        Escape::Markdown { cell: true }.push(&mut out, "a|b", false);
        assert_eq!(out, "a\\|b");
        assert_eq!(md("see www.e.com, a@b.c"), "see www\\.e.com, a\\@b.c");
        // A backslash only ever takes markup away; the model's own escapes
        // are not doubled.
        assert_eq!(
            md("a \\* b \\<img> \\\\<img>"),
            "a \\* b \\<img> \\\\\\<img>"
        );
        let mut out = String::new();
        Escape::Markdown { cell: false }.push(&mut out, "# mid-line - stays", false);
        assert_eq!(out, "# mid-line - stays");
    }

    #[test]
    fn a_models_text_keeps_its_bullets_and_citations_only() {
        assert_eq!(
            model_markdown("- One [1]\n* Two <img src=x> [1, 2]\n\n# Three\n  • [a](b)"),
            "- One [1]\n- Two \\<img src=x> [1, 2]\n\n\\# Three\n- \\[a\\](b)"
        );
        // What follows a bullet cannot open another block.
        assert_eq!(model_markdown("- > quote"), "- \\> quote");
        assert_eq!(model_markdown("Plain prose."), "Plain prose.");
        assert_eq!(model_markdown("[1] first [2]"), "\\[1] first [2]");
        assert_eq!(model_markdown("a [b] [x, 2]"), "a \\[b] \\[x, 2]");
    }
}
