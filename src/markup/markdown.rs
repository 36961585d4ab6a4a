//! Markdown (CommonMark with GFM tables, strikethrough, task lists,
//! footnotes, and YAML or TOML front matter): paragraphs, headings, list
//! items and table cells become units; code, HTML blocks and front matter
//! are copied as they are.

use pulldown_cmark::{Event, LinkType, Options, Parser, Tag, TagEnd};

use super::unit::Draft;

pub(super) fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
        | Options::ENABLE_PLUSES_DELIMITED_METADATA_BLOCKS
        | Options::ENABLE_GFM
}

/// Units of a Markdown document.
pub(crate) fn units(source: &str) -> Vec<Draft> {
    let mut drafts = Vec::new();
    let mut draft: Option<Draft> = None;
    // Headings and table cells must stay on one line.
    let mut multiline = true;
    // Table cells end at a `|` the model writes.
    let mut cell = false;
    // While inside something copied whole: its nesting depth.
    let mut skip = 0usize;
    // While inside an image or autolink: kept as one placeholder from here.
    let mut keep_from: Option<(usize, usize)> = None;
    let flush = |draft: &mut Option<Draft>, drafts: &mut Vec<Draft>| {
        if let Some(d) = draft.take() {
            if !d.is_empty() {
                drafts.push(d);
            }
        }
    };
    for (event, range) in Parser::new_ext(source, options()).into_offset_iter() {
        if skip > 0 {
            match event {
                Event::Start(_) => skip += 1,
                Event::End(_) => skip -= 1,
                _ => {}
            }
            continue;
        }
        if let Some((start, depth)) = keep_from {
            let depth = match event {
                Event::Start(_) => depth + 1,
                Event::End(_) => depth - 1,
                _ => depth,
            };
            if depth == 0 {
                keep_from = None;
                let end = range.end.max(start);
                d(&mut draft, multiline, cell).keep(start..end, "");
            } else {
                keep_from = Some((start, depth));
            }
            continue;
        }
        match event {
            Event::Start(tag) => match tag {
                Tag::CodeBlock(_) | Tag::HtmlBlock | Tag::MetadataBlock(_) => {
                    flush(&mut draft, &mut drafts);
                    skip = 1;
                }
                Tag::Image { .. } => keep_from = Some((range.start, 1)),
                Tag::Link {
                    link_type: LinkType::Autolink | LinkType::Email,
                    ..
                } => keep_from = Some((range.start, 1)),
                Tag::Emphasis
                | Tag::Strong
                | Tag::Strikethrough
                | Tag::Superscript
                | Tag::Subscript
                | Tag::Link { .. } => {
                    d(&mut draft, multiline, cell)
                        .open(range.start..range.start + 1, span_key(&tag));
                }
                Tag::Heading { .. } | Tag::TableCell => {
                    flush(&mut draft, &mut drafts);
                    multiline = false;
                    cell = matches!(tag, Tag::TableCell);
                }
                _ => flush(&mut draft, &mut drafts),
            },
            Event::End(end) => match end {
                TagEnd::Emphasis
                | TagEnd::Strong
                | TagEnd::Strikethrough
                | TagEnd::Superscript
                | TagEnd::Subscript
                | TagEnd::Link => {
                    let dr = d(&mut draft, multiline, cell);
                    let from = dr.last_end().unwrap_or(range.start).min(range.end);
                    dr.close(from..range.end, end_key(end));
                }
                TagEnd::Heading(_) | TagEnd::TableCell => {
                    flush(&mut draft, &mut drafts);
                    multiline = true;
                    cell = false;
                }
                _ => flush(&mut draft, &mut drafts),
            },
            Event::Text(text) => d(&mut draft, multiline, cell).prose(source, range, Some(&text)),
            Event::Code(code) => d(&mut draft, multiline, cell).keep(range, &code),
            Event::SoftBreak => d(&mut draft, multiline, cell).line_break(range),
            Event::HardBreak => d(&mut draft, multiline, cell).keep(range, "\n"),
            Event::InlineHtml(_)
            | Event::InlineMath(_)
            | Event::DisplayMath(_)
            | Event::FootnoteReference(_)
            | Event::TaskListMarker(_) => d(&mut draft, multiline, cell).keep(range, ""),
            Event::Html(_) | Event::Rule => flush(&mut draft, &mut drafts),
        }
    }
    flush(&mut draft, &mut drafts);
    drafts
}

/// The unit being collected, begun if need be.
fn d(draft: &mut Option<Draft>, multiline: bool, cell: bool) -> &mut Draft {
    draft.get_or_insert_with(|| Draft::markdown(multiline, cell))
}

fn span_key(tag: &Tag) -> &'static str {
    match tag {
        Tag::Emphasis => "em",
        Tag::Strong => "strong",
        Tag::Strikethrough => "del",
        Tag::Superscript => "sup",
        Tag::Subscript => "sub",
        _ => "a",
    }
}

fn end_key(end: TagEnd) -> &'static str {
    match end {
        TagEnd::Emphasis => "em",
        TagEnd::Strong => "strong",
        TagEnd::Strikethrough => "del",
        TagEnd::Superscript => "sup",
        TagEnd::Subscript => "sub",
        _ => "a",
    }
}
