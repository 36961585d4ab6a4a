//! What a renderer makes of a document's markup, to compare the markup of
//! an output with its source's: the proof that the model's words added
//! none.

use std::collections::BTreeSet;

use super::{markdown, Format};

/// What a renderer makes of a document's markup: the kinds of elements,
/// link targets, image sources and raw HTML (Markdown, read by
/// pulldown-cmark with glot's options), or the tags with their `href` and
/// `src` values and the comments (HTML, read by an HTML tokenizer).
pub fn rendered_markup(doc: &str, format: Format) -> BTreeSet<String> {
    use pulldown_cmark::{Event, Parser, Tag};
    let mut out = BTreeSet::new();
    match format {
        Format::Markdown => {
            for event in Parser::new_ext(doc, markdown::options()) {
                let item = match event {
                    Event::Start(Tag::Link { dest_url, .. }) => format!("link {dest_url}"),
                    Event::Start(Tag::Image { dest_url, .. }) => format!("image {dest_url}"),
                    Event::Start(tag) => {
                        let name = format!("{tag:?}");
                        name.split([' ', '(', '{']).next().unwrap().to_string()
                    }
                    Event::Html(h) | Event::InlineHtml(h) => format!("html {}", h.trim()),
                    Event::FootnoteReference(f) => format!("footnote {f}"),
                    Event::Rule => "rule".into(),
                    _ => continue,
                };
                out.insert(item);
            }
        }
        Format::Html => {
            use html5gum::{DefaultEmitter, Token, Tokenizer};
            let mut emitter = DefaultEmitter::<()>::default();
            emitter.naively_switch_states(true);
            for token in Tokenizer::new_with_emitter(doc, emitter).filter_map(Result::ok) {
                match token {
                    Token::StartTag(t) => {
                        let name = String::from_utf8_lossy(&t.name).to_string();
                        for (k, v) in &t.attributes {
                            if [&b"href"[..], b"src"].contains(&&k[..]) {
                                out.insert(format!("{name} {}", String::from_utf8_lossy(v)));
                            }
                        }
                        out.insert(name);
                    }
                    Token::Comment(c) => {
                        out.insert(format!("comment {}", String::from_utf8_lossy(&c)));
                    }
                    _ => {}
                }
            }
        }
        Format::Text => {}
    }
    out
}
