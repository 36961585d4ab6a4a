//! Units: prose with numbered placeholders for its inline markup, and the
//! way back from the model's answer to the original markup.

use std::ops::Range;

use super::escape::Escape;
use super::placeholder::{find_emails, find_placeholders, find_urls, scan, Tag, Token};

/// What a placeholder in the model's answer was wrong about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("placeholder {0} is missing")]
    Missing(String),
    #[error("placeholder {0} appears more than once")]
    Repeated(String),
    #[error("placeholder {0} was not in the text")]
    Unknown(String),
    #[error("placeholder {0} closes before it opens or across another span")]
    Order(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Text the model translates.
    Prose,
    /// A line break inside the unit, with the next line's container prefix
    /// (`> ` in a quote, indentation in a list item).
    Break,
    /// Opening markup of a span (`**`, `[`, `<a href=…>`), by pair number.
    Open(u32),
    /// Closing markup of a span (`**`, `](url)`, `</a>`), by pair number.
    Close(u32),
    /// Markup or text the model must not change (inline code, a URL, an
    /// image), by number.
    Keep(u32),
}

#[derive(Debug, Clone)]
struct Atom {
    kind: Kind,
    range: Range<usize>,
    /// What a reader sees of it (entities decoded, escapes removed).
    plain: String,
    /// What a kept atom becomes in the translation instead of its source
    /// bytes: a glossary term's translation.
    replacement: Option<String>,
}

/// Draft atoms as a parser finds them; pairs are matched by key later.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DraftKind {
    Prose,
    Break,
    Open(String),
    Close(String),
    Keep,
}

#[derive(Debug, Clone)]
struct DraftAtom {
    kind: DraftKind,
    range: Range<usize>,
    plain: String,
}

/// A unit as a parser collects it: atoms in source order.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    atoms: Vec<DraftAtom>,
    multiline: bool,
    main: bool,
    escape: Escape,
}

impl Draft {
    /// `multiline`: whether the unit may span lines (not a Markdown heading
    /// or table cell). `main`: whether it belongs to the main text.
    pub fn new(multiline: bool, main: bool) -> Draft {
        Draft {
            atoms: Vec::new(),
            multiline,
            main,
            escape: Escape::None,
        }
    }

    /// A unit of an HTML page: the model's text is escaped on the way back,
    /// so an answer cannot add tags of its own.
    pub fn html(main: bool) -> Draft {
        Draft {
            escape: Escape::Html,
            ..Draft::new(true, main)
        }
    }

    /// A unit of a Markdown document (`cell`: a table cell): the model's
    /// text is escaped on the way back, so an answer cannot add markup of
    /// its own.
    pub fn markdown(multiline: bool, cell: bool) -> Draft {
        Draft {
            escape: Escape::Markdown { cell },
            ..Draft::new(multiline, true)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.atoms.is_empty()
    }

    /// Where the last atom so far ends.
    pub fn last_end(&self) -> Option<usize> {
        self.atoms.last().map(|a| a.range.end)
    }

    /// Prose at `range` of `source`, read as `plain` (the raw bytes when
    /// `None`). URLs and e-mail addresses in it, and text that looks like a
    /// placeholder, are kept apart, as they are.
    pub fn prose(&mut self, source: &str, range: Range<usize>, plain: Option<&str>) {
        let raw = &source[range.clone()];
        let mut kept = find_urls(raw);
        kept.extend(find_emails(raw));
        kept.extend(find_placeholders(raw));
        if kept.is_empty() {
            self.push(DraftKind::Prose, range, plain.unwrap_or(raw));
            return;
        }
        kept.sort_by_key(|r| r.start);
        let base = range.start;
        let mut pos = 0;
        for k in kept {
            if k.start < pos {
                continue;
            }
            self.push(
                DraftKind::Prose,
                base + pos..base + k.start,
                &raw[pos..k.start],
            );
            self.push(
                DraftKind::Keep,
                base + k.start..base + k.end,
                &raw[k.clone()],
            );
            pos = k.end;
        }
        self.push(DraftKind::Prose, base + pos..range.end, &raw[pos..]);
    }

    /// A line break and whatever prefix the next line carries.
    pub fn line_break(&mut self, range: Range<usize>) {
        self.push(DraftKind::Break, range, "\n");
    }

    /// Opening markup of a span, matched with the next `close` of `key`.
    pub fn open(&mut self, range: Range<usize>, key: &str) {
        self.push(DraftKind::Open(key.to_string()), range, "");
    }

    pub fn close(&mut self, range: Range<usize>, key: &str) {
        self.push(DraftKind::Close(key.to_string()), range, "");
    }

    /// Bytes the model must not change, read as `plain`.
    pub fn keep(&mut self, range: Range<usize>, plain: &str) {
        self.push(DraftKind::Keep, range, plain);
    }

    fn push(&mut self, kind: DraftKind, range: Range<usize>, plain: &str) {
        if range.is_empty() {
            return;
        }
        self.atoms.push(DraftAtom {
            kind,
            range,
            plain: plain.to_string(),
        });
    }
}

/// One unit of prose, ready for the model.
#[derive(Debug, Clone)]
pub struct Unit {
    /// The bytes of the source it stands for.
    pub range: Range<usize>,
    /// Whether it belongs to the article's main text.
    pub main: bool,
    atoms: Vec<Atom>,
    multiline: bool,
    escape: Escape,
    text: String,
}

impl Unit {
    /// Turns drafts into units: pairs matched, edges trimmed, split where a
    /// blank line falls inside (a unit is one paragraph to the chunker).
    pub(crate) fn finish(source: &str, mut draft: Draft) -> Vec<Unit> {
        let atoms = normalize(source, std::mem::take(&mut draft.atoms));
        split_at_blank_lines(source, atoms)
            .into_iter()
            .filter_map(|atoms| Unit::build(source, atoms, &draft))
            .collect()
    }

    fn build(source: &str, atoms: Vec<DraftAtom>, draft: &Draft) -> Option<Unit> {
        let mut atoms = pair(atoms);
        trim(source, &mut atoms);
        let has_words = atoms.iter().any(|a| {
            a.kind == Kind::Prose && source[a.range.clone()].chars().any(char::is_alphanumeric)
        });
        if !has_words {
            return None;
        }
        let range = atoms[0].range.start..atoms[atoms.len() - 1].range.end;
        let mut unit = Unit {
            range,
            main: draft.main,
            atoms,
            multiline: draft.multiline,
            escape: draft.escape,
            text: String::new(),
        };
        unit.text = unit.encode(source);
        Some(unit)
    }

    /// Puts every whole-word occurrence of a glossary term in the unit's
    /// prose behind a placeholder, which the translation restores as the
    /// term's given translation: the model cannot alter or drop it without
    /// the unit being asked again.
    pub(crate) fn protect_terms(&mut self, source: &str, terms: &[(String, String)]) {
        let mut atoms = Vec::with_capacity(self.atoms.len());
        let mut changed = false;
        for a in std::mem::take(&mut self.atoms) {
            let raw = &source[a.range.clone()];
            let hits = if a.kind == Kind::Prose {
                find_terms(raw, terms)
            } else {
                Vec::new()
            };
            if hits.is_empty() {
                atoms.push(a);
                continue;
            }
            changed = true;
            let base = a.range.start;
            let piece = |r: Range<usize>, kind: Kind, replacement: Option<String>| Atom {
                kind,
                range: base + r.start..base + r.end,
                plain: raw[r].to_string(),
                replacement,
            };
            let mut pos = 0;
            for (r, target) in hits {
                if r.start > pos {
                    atoms.push(piece(pos..r.start, Kind::Prose, None));
                }
                atoms.push(piece(r.clone(), Kind::Keep(0), Some(target)));
                pos = r.end;
            }
            if pos < raw.len() {
                atoms.push(piece(pos..raw.len(), Kind::Prose, None));
            }
        }
        self.atoms = atoms;
        if changed {
            renumber(&mut self.atoms);
            self.text = self.encode(source);
        }
    }

    /// What the model is given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the unit holds any placeholder the answer must keep.
    pub fn has_markup(&self) -> bool {
        self.atoms
            .iter()
            .any(|a| !matches!(a.kind, Kind::Prose | Kind::Break))
    }

    fn encode(&self, source: &str) -> String {
        let mut s = String::new();
        for a in &self.atoms {
            match a.kind {
                Kind::Prose => s.push_str(&source[a.range.clone()]),
                Kind::Break => s.push('\n'),
                Kind::Open(n) => s.push_str(&format!("<g{n}>")),
                Kind::Close(n) => s.push_str(&format!("</g{n}>")),
                Kind::Keep(n) => s.push_str(&format!("<x{n}/>")),
            }
        }
        s
    }

    /// What a reader sees; `collapse` folds runs of white space (HTML).
    pub fn plain(&self, collapse: bool) -> String {
        let mut s = String::new();
        for a in &self.atoms {
            s.push_str(&a.plain);
        }
        if collapse {
            s.split_whitespace().collect::<Vec<_>>().join(" ")
        } else {
            s.trim().to_string()
        }
    }

    /// The source bytes for the model's answer: placeholders back to the
    /// markup they stand for, line breaks back to the source's, and an
    /// error when a placeholder was lost, repeated, invented or misordered.
    pub fn restore(&self, source: &str, reply: &str) -> Result<String, Broken> {
        let tokens = scan(reply.trim());
        self.check(&tokens)?;
        let breaks: Vec<&str> = self
            .atoms
            .iter()
            .filter(|a| a.kind == Kind::Break)
            .map(|a| &source[a.range.clone()])
            .collect();
        let newlines = tokens
            .iter()
            .map(|t| match t {
                Token::Text(s) => s.matches('\n').count(),
                _ => 0,
            })
            .sum::<usize>();
        let mut next_break = 0;
        let mut out = String::with_capacity(reply.len() + 64);
        let mut line_start = true;
        // The unit's own text given back is the source's bytes, as they
        // are; anything else is the model's and is escaped.
        let escape = match reply.trim() == self.text {
            true => Escape::None,
            false => self.escape,
        };
        for t in &tokens {
            match t {
                Token::Text(s) => {
                    for (i, line) in s.split('\n').enumerate() {
                        if i > 0 {
                            out.push_str(&self.newline(&breaks, newlines, next_break));
                            next_break += 1;
                            line_start = true;
                        }
                        escape.push(&mut out, line, line_start);
                        line_start &= line.trim().is_empty();
                    }
                }
                Token::Tag(tag) => {
                    let atom = self.atom_for(*tag);
                    match &atom.replacement {
                        // A glossary's term, written as text.
                        Some(r) => self.escape.push(&mut out, r, line_start),
                        None => out.push_str(&source[atom.range.clone()]),
                    }
                    line_start = false;
                }
            }
        }
        Ok(out)
    }

    /// The bytes for the `k`-th line break of an answer with `count` of them.
    fn newline(&self, breaks: &[&str], count: usize, k: usize) -> String {
        if count == breaks.len() {
            breaks[k].to_string()
        } else if !self.multiline {
            " ".to_string()
        } else {
            // The model reflowed the lines: each break takes the first
            // break's prefix, so a quote or list item stays one.
            breaks.first().copied().unwrap_or("\n").to_string()
        }
    }

    fn atom_for(&self, tag: Tag) -> &Atom {
        self.atoms
            .iter()
            .find(|a| match (tag, &a.kind) {
                (Tag::Open(n), Kind::Open(m)) | (Tag::Close(n), Kind::Close(m)) => n == *m,
                (Tag::Keep(n), Kind::Keep(m)) => n == *m,
                _ => false,
            })
            .expect("checked tags name atoms of the unit")
    }

    fn check(&self, tokens: &[Token]) -> Result<(), Broken> {
        let expected: Vec<Tag> = self
            .atoms
            .iter()
            .filter_map(|a| match a.kind {
                Kind::Open(n) => Some(Tag::Open(n)),
                Kind::Close(n) => Some(Tag::Close(n)),
                Kind::Keep(n) => Some(Tag::Keep(n)),
                _ => None,
            })
            .collect();
        let got: Vec<Tag> = tokens
            .iter()
            .filter_map(|t| match t {
                Token::Tag(tag) => Some(*tag),
                Token::Text(_) => None,
            })
            .collect();
        // Spans must nest: a close ends the innermost open span.
        let mut open: Vec<u32> = Vec::new();
        for (i, tag) in got.iter().enumerate() {
            if !expected.contains(tag) {
                return Err(Broken::Unknown(tag.to_string()));
            }
            if got[..i].contains(tag) {
                return Err(Broken::Repeated(tag.to_string()));
            }
            match tag {
                Tag::Open(n) => open.push(*n),
                Tag::Close(n) if open.last() == Some(n) => {
                    open.pop();
                }
                Tag::Close(_) => return Err(Broken::Order(tag.to_string())),
                _ => {}
            }
        }
        if let Some(missing) = expected.iter().find(|t| !got.contains(t)) {
            return Err(Broken::Missing(missing.to_string()));
        }
        Ok(())
    }
}

/// Atoms in order, without overlaps; a gap between two atoms joins the
/// first (an escape's backslash, a line prefix), and adjacent prose merges.
fn normalize(source: &str, atoms: Vec<DraftAtom>) -> Vec<DraftAtom> {
    let mut out: Vec<DraftAtom> = Vec::with_capacity(atoms.len());
    for mut a in atoms {
        if let Some(prev) = out.last_mut() {
            if a.range.start < prev.range.end {
                a.range.start = prev.range.end;
            }
            if a.range.start >= a.range.end {
                continue;
            }
            prev.range.end = a.range.start;
            if prev.kind == DraftKind::Prose && a.kind == DraftKind::Prose {
                prev.range.end = a.range.end;
                prev.plain.push_str(&a.plain);
                continue;
            }
        }
        out.push(a);
    }
    debug_assert!(out
        .iter()
        .all(|a| source.is_char_boundary(a.range.start) && source.is_char_boundary(a.range.end)));
    out
}

/// Cuts atoms where a prose atom holds a blank line (anywhere, edges
/// included); the blank lines themselves are left between the pieces.
fn split_at_blank_lines(source: &str, atoms: Vec<DraftAtom>) -> Vec<Vec<DraftAtom>> {
    let mut groups = vec![Vec::new()];
    for a in atoms {
        let runs = if a.kind == DraftKind::Prose {
            blank_runs(&source[a.range.clone()])
        } else {
            Vec::new()
        };
        if runs.is_empty() {
            groups.last_mut().expect("never empty").push(a);
            continue;
        }
        let raw = &source[a.range.clone()];
        let mut pos = 0;
        for run in runs
            .iter()
            .cloned()
            .chain(std::iter::once(raw.len()..raw.len()))
        {
            if run.start > pos {
                // Entities or escapes cannot be mapped into pieces: pieces
                // read as their raw bytes.
                groups.last_mut().expect("never empty").push(DraftAtom {
                    kind: DraftKind::Prose,
                    range: a.range.start + pos..a.range.start + run.start,
                    plain: raw[pos..run.start].to_string(),
                });
            }
            if !run.is_empty() {
                groups.push(Vec::new());
            }
            pos = run.end;
        }
    }
    groups
}

/// Runs of white space that hold a blank line: two line breaks or more.
fn blank_runs(raw: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    let mut newlines = 0;
    for (i, c) in raw.char_indices().chain(std::iter::once((raw.len(), 'x'))) {
        if c.is_whitespace() {
            start.get_or_insert(i);
            newlines += usize::from(c == '\n');
        } else {
            if let Some(s) = start.take() {
                if newlines >= 2 {
                    out.push(s..i);
                }
            }
            newlines = 0;
        }
    }
    out
}

/// Matches opens with closes of the same key, innermost first; what stays
/// unmatched is kept as it is.
fn pair(atoms: Vec<DraftAtom>) -> Vec<Atom> {
    let mut kinds: Vec<Option<Kind>> = vec![None; atoms.len()];
    let mut stack: Vec<(usize, &str)> = Vec::new();
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for (i, a) in atoms.iter().enumerate() {
        match &a.kind {
            DraftKind::Open(key) => stack.push((i, key)),
            DraftKind::Close(key) => {
                if let Some(depth) = stack.iter().rposition(|(_, k)| *k == key.as_str()) {
                    let (open, _) = stack[depth];
                    stack.truncate(depth);
                    pairs.push((open, i));
                }
            }
            _ => {}
        }
    }
    pairs.sort_unstable();
    let mut n = 0;
    for (open, close) in pairs {
        n += 1;
        kinds[open] = Some(Kind::Open(n));
        kinds[close] = Some(Kind::Close(n));
    }
    atoms
        .into_iter()
        .zip(kinds)
        .map(|(a, kind)| {
            let kind = kind.unwrap_or(match a.kind {
                DraftKind::Prose => Kind::Prose,
                DraftKind::Break => Kind::Break,
                _ => Kind::Keep(0),
            });
            Atom {
                kind,
                range: a.range,
                plain: a.plain,
                replacement: None,
            }
        })
        .collect()
}

/// Leaves white space, line breaks and invisible markup (comments, empty
/// tags) at the edges outside the unit.
fn trim(source: &str, atoms: &mut Vec<Atom>) {
    let invisible = |a: &Atom| match a.kind {
        Kind::Break => true,
        Kind::Keep(_) => a.plain.trim().is_empty(),
        Kind::Prose => source[a.range.clone()].trim().is_empty(),
        _ => false,
    };
    while atoms.first().is_some_and(invisible) {
        atoms.remove(0);
    }
    while atoms.last().is_some_and(invisible) {
        atoms.pop();
    }
    if let Some(first) = atoms.first_mut().filter(|a| a.kind == Kind::Prose) {
        let raw = &source[first.range.clone()];
        first.range.start += raw.len() - raw.trim_start().len();
        first.plain = first.plain.trim_start().to_string();
    }
    if let Some(last) = atoms.last_mut().filter(|a| a.kind == Kind::Prose) {
        let raw = &source[last.range.clone()];
        last.range.end -= raw.len() - raw.trim_end().len();
        last.plain = last.plain.trim_end().to_string();
    }
    renumber(atoms);
}

/// Whole-word occurrences of the terms' sources in `text`, longest terms
/// first where they overlap, in text order, with the translation of each.
fn find_terms(text: &str, terms: &[(String, String)]) -> Vec<(Range<usize>, String)> {
    let mut order: Vec<&(String, String)> = terms.iter().filter(|t| !t.0.is_empty()).collect();
    order.sort_by_key(|t| std::cmp::Reverse(t.0.len()));
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut hits: Vec<(Range<usize>, String)> = Vec::new();
    for (from, to) in order {
        for (i, _) in text.match_indices(from.as_str()) {
            let r = i..i + from.len();
            let alone =
                !word(text[..r.start].chars().next_back()) && !word(text[r.end..].chars().next());
            let free = hits
                .iter()
                .all(|(h, _)| h.end <= r.start || r.end <= h.start);
            if alone && free {
                hits.push((r, to.clone()));
            }
        }
    }
    hits.sort_by_key(|h| h.0.start);
    hits
}

/// Numbers placeholders 1, 2, … in order of appearance once trimming has
/// removed some.
fn renumber(atoms: &mut [Atom]) {
    let mut map: Vec<(u32, u32)> = Vec::new();
    let mut next = 0;
    for a in atoms.iter_mut() {
        match &mut a.kind {
            Kind::Open(n) | Kind::Keep(n) => {
                next += 1;
                map.push((*n, next));
                *n = next;
            }
            Kind::Close(n) => {
                *n = map
                    .iter()
                    .find(|(old, _)| old == n)
                    .map(|(_, new)| *new)
                    .unwrap_or(*n);
            }
            _ => {}
        }
    }
}
