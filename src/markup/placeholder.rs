//! Placeholders in the text the model sees, and what must become one.
//!
//! `<g1>…</g1>` stands for a span's opening and closing markup, `<x2/>` for
//! something kept whole. Reading them back forgives what models do to tags
//! (case, spaces, a missing slash) and nothing else.

use std::ops::Range;

/// Byte ranges of URLs in `text`: `http://`, `https://` and `www.` runs up
/// to whitespace, without trailing punctuation.
pub(super) fn find_urls(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut search = 0;
    while search < text.len() {
        let rest = &text[search..];
        let hit = ["https://", "http://", "www."]
            .iter()
            .filter_map(|p| find_ascii_ci(rest, p).map(|i| (i, p.len())))
            .min();
        let Some((i, plen)) = hit else { break };
        let start = search + i;
        let word_start = text[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric() && c != '.' && c != '/');
        let mut end = start
            + text[start..]
                .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '`'))
                .unwrap_or(text.len() - start);
        while end > start {
            let last = text[..end].chars().next_back().unwrap_or(' ');
            let unbalanced = last == ')'
                && text[start..end].matches('(').count() < text[start..end].matches(')').count();
            if matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*' | '_') || unbalanced {
                end -= last.len_utf8();
            } else {
                break;
            }
        }
        if word_start && end > start + plen {
            out.push(start..end);
            search = end;
        } else {
            search = start + plen;
        }
    }
    out
}

/// Byte ranges of e-mail addresses in `text`: a local part of letters,
/// digits and `._%+-`, an `@`, and a domain of at least two labels.
pub(super) fn find_emails(text: &str) -> Vec<Range<usize>> {
    let local = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-');
    let domain = |c: char| c.is_alphanumeric() || matches!(c, '.' | '-');
    let mut out: Vec<Range<usize>> = Vec::new();
    for (at, _) in text.match_indices('@') {
        if out.last().is_some_and(|r| r.end > at) {
            continue;
        }
        let start = text[..at]
            .char_indices()
            .rev()
            .take_while(|&(_, c)| local(c))
            .last()
            .map_or(at, |(i, _)| i);
        let start = start + text[start..at].len() - text[start..at].trim_start_matches('.').len();
        let mut end = at
            + 1
            + text[at + 1..]
                .find(|c: char| !domain(c))
                .unwrap_or(text.len() - at - 1);
        while text[..end].ends_with(['.', '-']) {
            end -= 1;
        }
        let host = &text[at + 1..end];
        let labels: Vec<&str> = host.split('.').collect();
        if start < at && labels.len() >= 2 && labels.iter().all(|l| !l.is_empty()) {
            out.push(start..end);
        }
    }
    out
}

/// Byte ranges of text that reads as a placeholder (`<g1>`, `<x2/>`): an
/// article may contain such text, and it must not pass for one.
pub(super) fn find_placeholders(text: &str) -> Vec<Range<usize>> {
    text.match_indices('<')
        .filter_map(|(i, _)| parse_tag(&text[i..]).map(|(_, len)| i..i + len))
        .collect()
}

fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tag {
    Open(u32),
    Close(u32),
    Keep(u32),
    /// A form no placeholder takes (`</x1>`, `<g1/>`): never valid, so it
    /// cannot slip into the output as text.
    Stray {
        letter: char,
        closing: bool,
        n: u32,
    },
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tag::Open(n) => write!(f, "<g{n}>"),
            Tag::Close(n) => write!(f, "</g{n}>"),
            Tag::Keep(n) => write!(f, "<x{n}/>"),
            Tag::Stray {
                letter,
                closing: true,
                n,
            } => write!(f, "</{letter}{n}>"),
            Tag::Stray { letter, n, .. } => write!(f, "<{letter}{n}/>"),
        }
    }
}

pub(super) enum Token<'a> {
    Text(&'a str),
    Tag(Tag),
}

/// `text` without placeholders: what to run language detection on.
pub fn strip_placeholders(text: &str) -> String {
    scan(text)
        .into_iter()
        .filter_map(|t| match t {
            Token::Text(s) => Some(s),
            Token::Tag(_) => None,
        })
        .collect()
}

/// Splits an answer into text and placeholders. Models change case and
/// spacing of tags now and then (`<G1>`, `<x2 />`, `<x2>`): those count;
/// other tag forms of the same names are read as stray tags.
pub(super) fn scan(reply: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    let bytes = reply.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'<' {
            if let Some((tag, len)) = parse_tag(&reply[i..]) {
                if i > text_start {
                    out.push(Token::Text(&reply[text_start..i]));
                }
                out.push(Token::Tag(tag));
                i += len;
                text_start = i;
                continue;
            }
        }
        i += 1;
    }
    if text_start < reply.len() {
        out.push(Token::Text(&reply[text_start..]));
    }
    out
}

/// A placeholder at the start of `s`, and its length in bytes.
fn parse_tag(s: &str) -> Option<(Tag, usize)> {
    let b = s.as_bytes();
    let mut i = 1;
    let closing = b.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    let letter = b.get(i)?.to_ascii_lowercase();
    if letter != b'g' && letter != b'x' {
        return None;
    }
    i += 1;
    let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 6 {
        return None;
    }
    let n: u32 = s[i..i + digits].parse().ok()?;
    i += digits;
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    let self_closing = b.get(i) == Some(&b'/');
    if self_closing {
        i += 1;
    }
    if b.get(i) != Some(&b'>') {
        return None;
    }
    let tag = match (letter, closing, self_closing) {
        (b'g', false, false) => Tag::Open(n),
        (b'g', true, false) => Tag::Close(n),
        (b'x', false, _) => Tag::Keep(n),
        _ => Tag::Stray {
            letter: char::from(letter),
            closing,
            n,
        },
    };
    Some((tag, i + 1))
}
