//! Document structure: what the model may see, and everything it must not touch.
//!
//! A document is cut, in order, into bytes kept exactly as they are (Markdown
//! syntax, HTML tags, code, front matter) and *units*: runs of prose such as a
//! paragraph, a heading or a table cell. A unit is handed to the model as its
//! prose with short numbered placeholders standing for the inline markup it
//! contains (`<g1>…</g1>` around emphasis or a link's text, `<x2/>` for inline
//! code, a URL or an image), and is put back with the placeholders turned into
//! the original bytes. A model that returns its input therefore reproduces the
//! document byte for byte, and a model that changes the prose cannot change a
//! URL, an attribute or a line of code.

mod escape;
mod html;
mod markdown;
mod placeholder;
mod render;
mod unit;

use std::ops::Range;
use std::path::Path;

use serde::Serialize;

pub use escape::model_markdown;
pub use placeholder::strip_placeholders;
pub use render::rendered_markup;
pub use unit::{Broken, Unit};

/// How a document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Markdown,
    Html,
}

impl Format {
    /// The format a file name implies; plain text when nothing else fits.
    pub fn from_path(path: &str) -> Format {
        let ext = Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("md" | "markdown" | "mdown" | "mkd") => Format::Markdown,
            Some("html" | "htm" | "xhtml") => Format::Html,
            _ => Format::Text,
        }
    }

    /// Lower-case name, as `--input-format` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Markdown => "markdown",
            Format::Html => "html",
        }
    }
}

/// A parsed document: the source, cut into kept bytes and units.
#[derive(Debug, Clone)]
pub struct Markup {
    source: String,
    format: Format,
    pieces: Vec<Piece>,
    units: Vec<Unit>,
    /// The value of an HTML page's `lang` attribute.
    lang: Option<Range<usize>>,
}

#[derive(Debug, Clone)]
enum Piece {
    Keep(Range<usize>),
    Unit(usize),
}

impl Markup {
    /// Parses `source` written in `format`.
    pub fn parse(source: String, format: Format) -> Markup {
        let (drafts, lang) = match format {
            Format::Text => (plain_units(&source), None),
            Format::Markdown => (markdown::units(&source), None),
            Format::Html => html::units(&source),
        };
        let units: Vec<Unit> = drafts
            .into_iter()
            .flat_map(|d| Unit::finish(&source, d))
            .collect();
        let mut pieces = Vec::with_capacity(units.len() * 2 + 1);
        let mut pos = 0;
        for (i, u) in units.iter().enumerate() {
            if u.range.start > pos {
                pieces.push(Piece::Keep(pos..u.range.start));
            }
            pieces.push(Piece::Unit(i));
            pos = u.range.end;
        }
        if pos < source.len() {
            pieces.push(Piece::Keep(pos..source.len()));
        }
        Markup {
            source,
            format,
            pieces,
            units,
            lang,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The units, in document order.
    pub fn units(&self) -> &[Unit] {
        &self.units
    }

    /// Every unit's model text, one paragraph each, separated by blank lines:
    /// the text the chunker plans over, whose paragraphs are the units.
    pub fn model_text(&self) -> String {
        let texts: Vec<&str> = self.units.iter().map(Unit::text).collect();
        texts.join("\n\n")
    }

    /// Puts glossary terms (source, translation) behind placeholders that
    /// come back as their translations; see [`Unit::protect_terms`].
    pub fn protect_terms(&mut self, terms: &[(String, String)]) {
        if terms.is_empty() {
            return;
        }
        for u in &mut self.units {
            u.protect_terms(&self.source, terms);
        }
    }

    /// Restores one unit from the model's answer for it.
    pub fn restore_unit(&self, index: usize, reply: &str) -> Result<String, Broken> {
        self.units[index].restore(&self.source, reply)
    }

    /// The document with each unit replaced by `outputs[i]` (already
    /// restored markup, see [`Markup::restore_unit`]); with `language`, an
    /// HTML page's `lang` attribute says so too.
    pub fn assemble(&self, outputs: &[String], language: Option<&str>) -> String {
        assert_eq!(outputs.len(), self.units.len(), "one output per unit");
        let mut out = String::with_capacity(self.source.len() + self.source.len() / 4);
        for p in &self.pieces {
            match p {
                Piece::Keep(r) => self.push_kept(&mut out, r.clone(), language),
                Piece::Unit(i) => out.push_str(&outputs[*i]),
            }
        }
        out
    }

    /// The start of [`Markup::assemble`]'s document: through the last
    /// unit `outputs` holds (the first `outputs.len()` units), and what
    /// follows it up to the next unit. With every unit, the whole document.
    pub fn assemble_prefix(&self, outputs: &[String], language: Option<&str>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Keep(r) => self.push_kept(&mut out, r.clone(), language),
                Piece::Unit(i) if *i < outputs.len() => out.push_str(&outputs[*i]),
                Piece::Unit(_) => break,
            }
        }
        out
    }

    fn push_kept(&self, out: &mut String, r: Range<usize>, language: Option<&str>) {
        match (&self.lang, language) {
            (Some(lang), Some(code)) if r.start <= lang.start && lang.end <= r.end => {
                out.push_str(&self.source[r.start..lang.start]);
                out.push_str(code);
                out.push_str(&self.source[lang.end..r.end]);
            }
            _ => out.push_str(&self.source[r]),
        }
    }

    /// The text a reader sees, without markup, one unit per paragraph; with
    /// `main_only`, only the article's main text (no menus, footers or
    /// page titles) when the document marks it or it can be told apart.
    pub fn prose(&self, main_only: bool) -> String {
        let any_main = self.units.iter().any(|u| u.main);
        let paras: Vec<String> = self
            .units
            .iter()
            .filter(|u| !main_only || !any_main || u.main)
            .map(|u| u.plain(self.format == Format::Html))
            .filter(|p| !p.trim().is_empty())
            .collect();
        paras.join("\n\n")
    }

    /// Bytes kept as they are, for tests that check what is never sent.
    #[cfg(test)]
    fn kept(&self) -> Vec<&str> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Keep(r) => Some(&self.source[r.clone()]),
                Piece::Unit(_) => None,
            })
            .collect()
    }
}

/// Plain text: paragraphs are the units, URLs inside them are kept.
fn plain_units(source: &str) -> Vec<unit::Draft> {
    crate::text::segment::paragraphs(source)
        .into_iter()
        .map(|r| {
            let mut d = unit::Draft::new(true, true);
            d.prose(source, r, None);
            d
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
