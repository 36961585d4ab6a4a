//! HTML: text between block tags, with its inline tags, becomes units.
//!
//! The document is read with a WHATWG tokenizer that reports where each
//! token lies, so everything outside text (tags, attributes, comments,
//! scripts) is copied through byte for byte. No tree is built: the element
//! stack kept here only answers "is this inside `<pre>`, `<nav>`, the
//! article?", which tolerates the missing end tags real pages have.

use std::ops::Range;

use html5gum::{DefaultEmitter, Token, Tokenizer};

use super::unit::Draft;

/// Phrasing elements: they stay inside a unit as placeholders.
const INLINE: &[&str] = &[
    "a", "abbr", "b", "bdi", "bdo", "big", "cite", "data", "del", "dfn", "em", "font", "i", "ins",
    "label", "mark", "q", "rp", "rt", "ruby", "s", "small", "span", "strike", "strong", "sub",
    "sup", "time", "tt", "u",
];

/// Void phrasing elements: one placeholder each.
const INLINE_VOID: &[&str] = &["br", "wbr", "img", "input"];

/// Elements without content or end tag.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

/// Phrasing elements whose content the model must not see (code, maths):
/// the whole element is one placeholder.
const INLINE_VERBATIM: &[&str] = &["code", "kbd", "samp", "var", "math", "svg"];

/// Block elements whose content is copied as it is.
const BLOCK_VERBATIM: &[&str] = &[
    "pre",
    "script",
    "style",
    "textarea",
    "template",
    "noscript",
    "iframe",
    "object",
    "select",
    "canvas",
    "audio",
    "video",
    "plaintext",
    "xmp",
];

/// Page furniture, not article text.
const BOILERPLATE: &[&str] = &["nav", "footer", "aside", "form", "menu", "dialog", "head"];

/// ARIA roles of page furniture.
const BOILERPLATE_ROLES: &[&str] = &[
    "navigation",
    "banner",
    "contentinfo",
    "complementary",
    "search",
    "menu",
    "menubar",
    "dialog",
];

/// Words in class names and ids that mark page furniture.
const BOILERPLATE_WORDS: &[&str] = &[
    "nav",
    "navbar",
    "navigation",
    "menu",
    "footer",
    "sidebar",
    "breadcrumb",
    "breadcrumbs",
    "cookie",
    "cookies",
    "share",
    "social",
    "comments",
    "advert",
    "ads",
    "promo",
    "related",
    "newsletter",
    "subscribe",
    "skip",
];

struct Frame {
    name: String,
    main: bool,
    furniture: bool,
}

/// Units of an HTML document, and where the value of the root element's
/// `lang` attribute lies, to say what language a translation is in.
pub(crate) fn units(source: &str) -> (Vec<Draft>, Option<Range<usize>>) {
    let mut emitter = DefaultEmitter::<usize>::new_with_span();
    emitter.naively_switch_states(true);
    let tokens: Vec<Token<usize>> = Tokenizer::new_with_emitter(source, emitter)
        .filter_map(Result::ok)
        .collect();
    let has_main = tokens.iter().any(|t| match t {
        Token::StartTag(tag) => is_main(&name(&tag.name), tag),
        _ => false,
    });
    let mut w = Walker {
        source,
        has_main,
        stack: Vec::new(),
        draft: None,
        drafts: Vec::new(),
    };
    let mut i = 0;
    while i < tokens.len() {
        i = w.token(&tokens, i);
    }
    w.flush();
    (w.drafts, lang_value(source, &tokens))
}

/// The bytes of `<html lang="…">`'s value.
fn lang_value(source: &str, tokens: &[Token<usize>]) -> Option<Range<usize>> {
    let root = tokens.iter().find_map(|t| match t {
        Token::StartTag(tag) if name(&tag.name) == "html" => Some(tag),
        _ => None,
    })?;
    let attr = root.attributes.get(b"lang".as_slice())?;
    let value = std::str::from_utf8(&attr.value).ok()?;
    let raw = source.get(attr.span.start..attr.span.end.min(source.len()))?;
    let eq = raw.find('=')?;
    let at = eq + raw[eq..].find(value)?;
    let range = attr.span.start + at..attr.span.start + at + value.len();
    (!value.is_empty() && source.get(range.clone()) == Some(value)).then_some(range)
}

fn name(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_ascii_lowercase()
}

fn attr(tag: &html5gum::StartTag<usize>, key: &str) -> Option<String> {
    tag.attributes
        .get(key.as_bytes())
        .map(|v| String::from_utf8_lossy(v).to_ascii_lowercase())
}

fn is_main(name: &str, tag: &html5gum::StartTag<usize>) -> bool {
    name == "main" || name == "article" || attr(tag, "role").as_deref() == Some("main")
}

fn is_furniture(name: &str, tag: &html5gum::StartTag<usize>, has_main: bool) -> bool {
    if BOILERPLATE.contains(&name) || (!has_main && name == "header") {
        return true;
    }
    if attr(tag, "role").is_some_and(|r| BOILERPLATE_ROLES.contains(&r.as_str())) {
        return true;
    }
    ["class", "id"].iter().any(|key| {
        attr(tag, key).is_some_and(|v| {
            v.split(|c: char| c.is_whitespace() || c == '-' || c == '_')
                .any(|w| BOILERPLATE_WORDS.contains(&w))
        })
    })
}

struct Walker<'s> {
    source: &'s str,
    has_main: bool,
    stack: Vec<Frame>,
    draft: Option<Draft>,
    drafts: Vec<Draft>,
}

impl Walker<'_> {
    /// Handles the token at `i`; returns the index of the next one.
    fn token(&mut self, tokens: &[Token<usize>], i: usize) -> usize {
        match &tokens[i] {
            Token::StartTag(tag) => {
                let n = name(&tag.name);
                let span = tag.span.start..tag.span.end;
                let inline_verbatim = INLINE_VERBATIM.contains(&n.as_str());
                if !tag.self_closing && (inline_verbatim || BLOCK_VERBATIM.contains(&n.as_str())) {
                    let skipped = self.skip_element(tokens, i, &n);
                    match skipped {
                        Some((end, plain, next)) if inline_verbatim => {
                            self.draft().keep(span.start..end, &plain);
                            return next;
                        }
                        // An inline element never closed is only its tag:
                        // it must not swallow the rest of the page.
                        None if inline_verbatim => self.draft().keep(span, ""),
                        Some((_, _, next)) => {
                            self.flush();
                            return next;
                        }
                        // A block never closed runs to the end, as it would
                        // in a browser: kept as it is.
                        None => {
                            self.flush();
                            return tokens.len();
                        }
                    }
                } else if inline_verbatim || INLINE_VOID.contains(&n.as_str()) {
                    let plain = if n == "br" { "\n" } else { "" };
                    self.draft().keep(span, plain);
                } else if INLINE.contains(&n.as_str()) {
                    if tag.self_closing {
                        self.draft().keep(span, "");
                    } else {
                        self.draft().open(span, &n);
                    }
                } else {
                    self.flush();
                    if !tag.self_closing && !VOID.contains(&n.as_str()) {
                        let parent_main = self.stack.last().is_some_and(|f| f.main);
                        let parent_furniture = self.stack.last().is_some_and(|f| f.furniture);
                        self.stack.push(Frame {
                            main: parent_main || is_main(&n, tag),
                            furniture: parent_furniture || is_furniture(&n, tag, self.has_main),
                            name: n,
                        });
                    }
                }
            }
            Token::EndTag(tag) => {
                let n = name(&tag.name);
                let span = tag.span.start..tag.span.end;
                if INLINE.contains(&n.as_str()) {
                    self.draft().close(span, &n);
                } else if INLINE_VOID.contains(&n.as_str()) {
                    self.draft().keep(span, "");
                } else {
                    self.flush();
                    if let Some(depth) = self.stack.iter().rposition(|f| f.name == n) {
                        self.stack.truncate(depth);
                    }
                }
            }
            Token::String(s) => {
                let range = s.span.start..s.span.end;
                let raw = &self.source[range.clone()];
                if self.draft.is_some() || !raw.trim().is_empty() {
                    let plain = String::from_utf8_lossy(&s.value).into_owned();
                    let source = self.source;
                    self.draft().prose(source, range, Some(&plain));
                }
            }
            Token::Comment(c) => {
                if let Some(d) = self.draft.as_mut() {
                    d.keep(c.span.start..c.span.end, "");
                }
            }
            Token::Doctype(_) => self.flush(),
            Token::Error(_) => {}
        }
        i + 1
    }

    /// Skips an element copied as it is, from its start tag at `i` to its
    /// end tag: where it ends, the text a reader sees in it, and the index
    /// of the next token; `None` when it is never closed.
    fn skip_element(
        &self,
        tokens: &[Token<usize>],
        i: usize,
        n: &str,
    ) -> Option<(usize, String, usize)> {
        let mut depth = 0;
        let mut plain = String::new();
        for (j, t) in tokens.iter().enumerate().skip(i) {
            match t {
                Token::StartTag(tag) if name(&tag.name) == n && !tag.self_closing => depth += 1,
                Token::EndTag(tag) if name(&tag.name) == n => {
                    depth -= 1;
                    if depth == 0 {
                        return Some((tag.span.end, plain, j + 1));
                    }
                }
                Token::String(s) => plain.push_str(&String::from_utf8_lossy(&s.value)),
                _ => {}
            }
        }
        None
    }

    /// The unit being collected, begun if need be.
    fn draft(&mut self) -> &mut Draft {
        let main = match self.stack.last() {
            Some(f) => (f.main || !self.has_main) && !f.furniture,
            None => !self.has_main,
        };
        self.draft.get_or_insert_with(|| Draft::html(main))
    }

    fn flush(&mut self) {
        if let Some(d) = self.draft.take() {
            if !d.is_empty() {
                self.drafts.push(d);
            }
        }
    }
}
