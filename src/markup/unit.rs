//! Units: prose with numbered placeholders for its inline markup, and the
//! way back from the model's answer to the original markup.

use std::ops::Range;

use super::escape::{block_marker, Escape};
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
    #[error("a line of the answer starts with {0:?}, which would open a block")]
    LineStart(String),
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
            // Kept where the model puts it, so with the backslash that
            // escapes its first character (`\<x1/>`) in the source.
            let slashes = source[..base + k.start].len()
                - source[..base + k.start].trim_end_matches('\\').len();
            let from = match slashes % 2 == 1 && k.start == pos && pos == 0 {
                true => base - 1,
                false => base + k.start,
            };
            self.push(
                DraftKind::Keep,
                from..base + k.end,
                &source[from..base + k.end],
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
        // A backslash just before the unit (an escape whose character
        // opens it) escapes what the answer puts first: the escaping sees
        // it, and it is taken off again at the end.
        let lead = source[..self.range.start].len()
            - source[..self.range.start].trim_end_matches('\\').len();
        let mut out = String::with_capacity(reply.len() + 64);
        out.push_str(&"\\".repeat(lead));
        let mut line_start = true;
        // Where the line break the current line starts with was written,
        // while nothing but spaces follows it.
        let mut last_break = None;
        // The unit's first line holds only markup that opens a block at a
        // line start (see below).
        let mut tags_only = false;
        // The unit starts with the tag the source's starts with.
        let mut kept_first = false;
        // The unit's own text given back is the source's bytes, as they
        // are; anything else is the model's and is escaped.
        let escape = match reply.trim() == self.text {
            true => Escape::None,
            false => self.escape,
        };
        let markdown = matches!(escape, Escape::Markdown { .. });
        // Line breaks of the answer (where, and their length), and where
        // lines after the source's hard breaks start (with the hard break's
        // atom, and whether the line starts with the tag the source's
        // does).
        let (mut written, mut hard): (Vec<(usize, usize)>, Vec<HardLine>) =
            (Vec::new(), Vec::new());
        for t in &tokens {
            match t {
                Token::Text(s) => {
                    for (i, line) in s.split('\n').enumerate() {
                        if i > 0 && tags_only {
                            // Alone on its line, a tag would be an HTML
                            // block: the next line joins it.
                            out.push(' ');
                        } else if i > 0 && !(line_start && last_break.is_some()) {
                            // (A blank line would end the block: lines of
                            // the answer close up instead.)
                            let newline =
                                self.newline(&breaks, newlines, next_break, escape == Escape::None);
                            last_break = Some(out.len());
                            written.push((out.len(), newline.len()));
                            out.push_str(&newline);
                            next_break += 1;
                            line_start = true;
                        }
                        escape.push(&mut out, line, line_start);
                        if !line.trim().is_empty() {
                            (line_start, last_break, tags_only) = (false, None, false);
                        }
                    }
                }
                Token::Tag(tag) => {
                    let atom = self.atom_for(*tag);
                    let markup = &source[atom.range.clone()];
                    // A tag that the unit starts with, as the source's does,
                    // opens no block there; alone on the line it would. So
                    // does the tag the source has right after a hard break.
                    let index = self.index_of(atom);
                    let after_hard = hard.last_mut().filter(|h| line_start && h.at == out.len());
                    if markdown && opens_block(markup) {
                        if out.len() == lead && self.first_from(0) == Some(index) {
                            (tags_only, kept_first) = (true, true);
                        } else if let Some(h) = after_hard {
                            if self.first_from(h.atom + 1) == Some(index) {
                                (tags_only, h.kept) = (true, true);
                            }
                        }
                    }
                    match &atom.replacement {
                        // A glossary's term, written as text.
                        Some(r) => self.escape.push(&mut out, r, line_start),
                        None => out.push_str(markup),
                    }
                    last_break = None;
                    // After a hard break (and the next line's container
                    // prefix), the model's words open a line.
                    line_start = markup.contains('\n') && line_prefix(markup) == markup.len();
                    if line_start {
                        hard.push(HardLine {
                            at: out.len(),
                            atom: index,
                            kept: false,
                        });
                    }
                }
            }
        }
        if markdown {
            self.no_new_blocks(&mut out, &written, &hard, kept_first)?;
        }
        Ok(out.split_off(lead))
    }

    /// Makes sure no line of a restored Markdown unit starts a block of its
    /// own: model text is escaped where it would, but the source's markup
    /// moved to a line's start can too (inline HTML, a footnote reference
    /// followed by a colon, an emphasis `*` followed by a space). A line
    /// after a break of the answer that would joins the line before (a
    /// soft break and a space read the same). The unit's first line may
    /// start with nothing of the kind but the inline tag the source's unit
    /// starts with (`kept_first`: a tag that opened no block there, and
    /// is never left alone on its line), and the same holds for a line
    /// after a hard break of the source.
    fn no_new_blocks(
        &self,
        out: &mut String,
        written: &[(usize, usize)],
        hard: &[HardLine],
        kept_first: bool,
    ) -> Result<(), Broken> {
        let line = |out: &str, at: usize| out[at..].split('\n').next().unwrap_or("").to_string();
        let refuse = |l: &str| Broken::LineStart(l.chars().take(16).collect());
        let unkept = hard.iter().filter(|h| !h.kept).map(|h| line(out, h.at));
        if let Some(l) = unkept.into_iter().find(|l| starts_block(l)) {
            return Err(refuse(&l));
        }
        for &(at, len) in written.iter().rev() {
            // The break's newline and the container prefix after it; what
            // follows (an escape's backslash, say) is the line's.
            let content = at + line_prefix(&out[at..at + len]);
            if starts_block(&line(out, content)) {
                out.replace_range(at..content, " ");
            }
        }
        // (With the backslash before the unit, which is on the line too.)
        let first = line(out, 0);
        if starts_block(&first) && !kept_first {
            return Err(refuse(&first));
        }
        Ok(())
    }

    /// The place of `atom` among the unit's atoms.
    fn index_of(&self, atom: &Atom) -> usize {
        self.atoms
            .iter()
            .position(|a| std::ptr::eq(a, atom))
            .expect("an atom of the unit")
    }

    /// The first atom from `from` on that is not blank prose.
    fn first_from(&self, from: usize) -> Option<usize> {
        let blank = |a: &Atom| a.kind == Kind::Prose && a.plain.trim().is_empty();
        (from..self.atoms.len()).find(|&i| !blank(&self.atoms[i]))
    }

    /// The bytes for the `k`-th line break of an answer with `count` of
    /// them. `own`: the unit's own text, whose breaks are the source's
    /// bytes; in the model's words a break is its newline and container
    /// prefix alone (not an escape's backslash that followed it).
    fn newline(&self, breaks: &[&str], count: usize, k: usize, own: bool) -> String {
        let prefix = |b: &str| b[..line_prefix(b)].to_string();
        if count == breaks.len() && own {
            breaks[k].to_string()
        } else if count == breaks.len() {
            prefix(breaks[k])
        } else if !self.multiline {
            " ".to_string()
        } else {
            // The model reflowed the lines: each break takes the first
            // break's prefix, so a quote or list item stays one.
            prefix(breaks.first().copied().unwrap_or("\n"))
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

/// The length of `b` up to its last line break and the container prefix
/// (spaces, tabs, `>`) after it, or its leading prefix without a break:
/// where the text of its last line starts.
fn line_prefix(b: &str) -> usize {
    let nl = b.rfind('\n').map_or(0, |i| i + 1);
    b.len() - b[nl..].trim_start_matches([' ', '\t', '>']).len()
}

/// A line of a restored unit that follows a hard break of the source.
struct HardLine {
    /// Where it starts in the output.
    at: usize,
    /// The hard break's atom.
    atom: usize,
    /// It starts with the tag that follows the hard break in the source.
    kept: bool,
}

/// Whether a line of a paragraph that reads `line` would start a block
/// instead of going on with the paragraph's text: a marker of a heading,
/// quote, list, break, fence or table; HTML; or a definition. Conservative:
/// a line joined to the one before reads the same.
fn starts_block(line: &str) -> bool {
    let l = line.trim_start_matches(' ');
    // Indented four columns, a line goes on with the paragraph.
    let indented = line.len() - l.len() >= 4;
    let definition = l.starts_with('[') && l.contains("]:");
    !indented && (block_marker(l).is_some() || opens_block(l) || definition)
}

/// Whether a line that starts with `markup` (a span's or kept atom's
/// source bytes) starts a block in Markdown: an HTML tag, comment or
/// declaration (not an autolink, whose scheme or `@` a tag name cannot
/// hold), or a run of three backticks or tildes (a fence).
fn opens_block(markup: &str) -> bool {
    let tag = markup.strip_prefix('<').is_some_and(|rest| {
        let name = rest.split([' ', '>', '\n']).next().unwrap_or("");
        rest.starts_with(|c: char| c.is_ascii_alphabetic() || "/!?".contains(c))
            && !name.contains([':', '@'])
    });
    tag || markup.starts_with("```") || markup.starts_with("~~~")
}
