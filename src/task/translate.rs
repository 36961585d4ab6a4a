//! Whole-document translation, chunk by chunk, with every unit kept.
//!
//! The chunker plans over the document's units (paragraphs, headings, list
//! items, table cells: see [`crate::markup`]), one per paragraph of the text
//! it sees. A chunk of several units must come back with as many paragraphs,
//! each with its placeholders intact; units that do not are asked again one
//! by one, with a firmer instruction. An answer in the wrong language is
//! asked again once the same way. What still fails keeps its source text
//! and is counted, so nothing is ever dropped or half-restored.

use std::collections::HashMap;
use std::ops::Range;

use anyhow::Result;
use serde::Serialize;

use super::check::{check, echo, Problem, Scaffold};
use super::{wrong_language, Usage, SLACK};
use crate::engine::generate::translation_room;
use crate::engine::{ChatModel, Completion};
use crate::error::Error;
use crate::markup::Markup;
use crate::prompt::Prompts;
use crate::text::chunk;
use crate::text::lang::Language;
use crate::text::segment::paragraphs;

/// What to translate into.
#[derive(Debug, Clone)]
pub struct Request {
    /// Target language name, as used in prompts.
    pub target: String,
    /// Target language code, to check what the model wrote; `None` skips
    /// the check.
    pub target_code: Option<String>,
    /// Source language name when known.
    pub source: Option<String>,
    /// Source language code when known.
    pub source_code: Option<String>,
}

impl Request {
    /// A translation into `target`, from `source` when it is known.
    pub fn new(source: Option<&Language>, target: &Language) -> Self {
        Request {
            target: target.name.clone(),
            target_code: Some(target.code.clone()),
            source: source.map(|l| l.name.clone()),
            source_code: source.map(|l| l.code.clone()),
        }
    }
}

/// The translated document.
#[derive(Debug, Clone, Serialize)]
pub struct Translation {
    pub text: String,
    pub chunks: usize,
    /// Units of text translated: paragraphs, headings, list items, cells.
    pub paragraphs: usize,
    /// Chunks whose units had to be translated one by one.
    pub retried_chunks: usize,
    /// Units kept in the source language because the model answered with
    /// nothing or broke their markup placeholders even when asked again.
    pub untranslated: usize,
    /// Of those, units whose placeholders could not be restored.
    pub broken_markup: usize,
    /// Units whose translation is still in another language than the
    /// target after being asked again (kept, and reported).
    pub wrong_language: usize,
    /// Every unit left in the source, or kept with a doubt, by position.
    pub flags: Vec<Flag>,
    pub usage: Usage,
}

/// A unit that did not come through cleanly, even when asked again alone.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Flag {
    /// Line of the source where the unit starts (from 1).
    pub line: usize,
    /// `untranslated` (the source is kept), `wrong_language`, `numbers`
    /// or `shorter` (the translation is kept).
    pub kind: String,
    pub detail: String,
}

/// The chunks a translation of `doc` will send, with each first call's
/// prompt and answer cap, exactly as [`translate`] computes them.
pub fn plan(
    model: &dyn ChatModel,
    prompts: &Prompts,
    doc: &Markup,
    req: &Request,
) -> Result<super::Plan> {
    let Chunked { sent, text, plan } = chunk_plan(model, prompts, doc, req)?;
    let calls = plan
        .chunks
        .iter()
        .map(|c| {
            let content = &text[c.content.clone()];
            let n = if c.partial { 1 } else { c.paragraphs.len() };
            let (_, prompt, cap) = call_size(model, prompts, req, content, n, c.tokens, false)?;
            Ok(super::PlannedCall {
                line: Some(line_of(doc, sent[c.paragraphs.start])),
                text_tokens: c.tokens,
                prompt_tokens: prompt,
                answer_cap: cap,
                partial: c.partial,
            })
        })
        .collect::<Result<_>>()?;
    Ok(super::Plan {
        context: model.context_length(),
        calls,
        combine_calls_at_least: 0,
    })
}

/// The messages of one call for `text`, their tokens and the answer cap.
fn call_size(
    model: &dyn ChatModel,
    prompts: &Prompts,
    req: &Request,
    text: &str,
    paragraphs: usize,
    tokens: usize,
    firm: bool,
) -> Result<(Vec<crate::prompt::chat::Message>, usize, usize)> {
    let markup = crate::markup::strip_placeholders(text) != text;
    let messages = messages(model, prompts, req, text, paragraphs, markup, firm)?;
    let prompt = model.prompt_tokens(&messages)?;
    let cap = translation_room(tokens).min(model.context_length().saturating_sub(prompt + SLACK));
    Ok((messages, prompt, cap))
}

/// Translates the units of `doc`, keeping everything else as it is.
pub fn translate(
    model: &mut dyn ChatModel,
    prompts: &Prompts,
    doc: &Markup,
    req: &Request,
) -> Result<Translation> {
    let chunked = chunk_plan(model, prompts, doc, req)?;
    translate_planned(model, prompts, doc, req, chunked, None)
}

/// [`translate`], showing the translation as it is settled: `show` is given
/// the document from its start through the last unit whose translation is
/// final, with every unit before it, each time that grows. The last text it
/// is given is the translation's whole text.
pub fn translate_live(
    model: &mut dyn ChatModel,
    prompts: &Prompts,
    doc: &Markup,
    req: &Request,
    show: &mut dyn FnMut(&str),
) -> Result<Translation> {
    let chunked = chunk_plan(model, prompts, doc, req)?;
    translate_planned(model, prompts, doc, req, chunked, Some(show))
}

/// The units a model is asked for: those with letters. The rest (numbers,
/// times, list markers, placeholders alone) are copied through, as a model
/// can only get them wrong.
fn sendable(doc: &Markup) -> Vec<usize> {
    doc.units()
        .iter()
        .enumerate()
        .filter(|(_, u)| {
            crate::markup::strip_placeholders(u.text())
                .chars()
                .any(char::is_alphabetic)
        })
        .map(|(i, _)| i)
        .collect()
}

/// The texts of `units`, one paragraph each, as the chunker reads them.
fn model_text(doc: &Markup, units: &[usize]) -> String {
    let texts: Vec<&str> = units.iter().map(|&i| doc.units()[i].text()).collect();
    texts.join("\n\n")
}

/// What a translation of a document sends: the units with letters, their
/// text as the chunker reads it, and its chunks.
struct Chunked {
    /// Plan paragraph `p` is unit `sent[p]` of the document.
    sent: Vec<usize>,
    text: String,
    plan: chunk::Plan,
}

/// The chunks of the document's units with letters that fit one call each.
fn chunk_plan(
    model: &dyn ChatModel,
    prompts: &Prompts,
    doc: &Markup,
    req: &Request,
) -> Result<Chunked> {
    let sent = sendable(doc);
    let text = model_text(doc, &sent);
    let ctx = model.context_length();
    let markup = doc.units().iter().any(|u| u.has_markup());
    let overhead = model.prompt_tokens(&messages(model, prompts, req, "", 2, markup, true)?)?;
    // overhead + budget + translation_room(budget) + slack <= ctx
    let budget = ctx
        .checked_sub(overhead + translation_room(0) + SLACK)
        .map(|free| free / 3)
        .filter(|&b| b > 0)
        .ok_or_else(|| {
            Error::Context(format!(
                "the translation prompt alone needs {overhead} tokens, too many for the context of {ctx}: raise --max-context"
            ))
        })?;
    let counter = |s: &str| model.count_tokens(s);
    let plan = chunk::plan(&text, budget, &counter)?;
    debug_assert_eq!(plan.paragraphs.len(), sent.len());
    Ok(Chunked { sent, text, plan })
}

fn translate_planned(
    model: &mut dyn ChatModel,
    prompts: &Prompts,
    doc: &Markup,
    req: &Request,
    chunked: Chunked,
    mut show: Option<&mut dyn FnMut(&str)>,
) -> Result<Translation> {
    let Chunked { sent, text, plan } = chunked;
    let text = text.as_str();
    let run = Run {
        prompts,
        doc,
        req,
        sent: &sent,
        text,
        plan: &plan,
    };
    // A chunk's calls (its first, then asked again, in halves, unit by
    // unit) depend on its own earlier answers only. Where the model decodes
    // calls together, each round replays the run with the answers in hand,
    // gathers every chunk's next call (the first round, every chunk's
    // first), and asks them as one batch; the run itself is then replayed
    // with every answer in hand, so that it asks and decides exactly as one
    // call at a time would.
    let mut ready: Vec<(Call, Completion)> = Vec::new();
    if model.decodes_together() {
        for _ in 0..ROUNDS {
            let mut probe = Answered {
                model: &mut *model,
                ready: ready.clone(),
                missing: Some(Vec::new()),
                foreseen: Vec::new(),
            };
            // What the round gathered is all it is for: a real error comes
            // back from the run below.
            let _ = run.replay(&mut probe, reborrow(&mut show));
            let missing = probe.missing.unwrap_or_default();
            if missing.is_empty() {
                break;
            }
            // A translation shown as it goes looks at each answer as it
            // comes: the calls go through one more handle on the model, and
            // the answers are looked at through another.
            let watched = match (reborrow(&mut show), model.twin(), model.twin()) {
                (Some(show), Some(mut asker), Some(looker)) => {
                    let mut watch = Round {
                        run: &run,
                        twin: looker,
                        ready: &ready,
                        missing: &missing,
                        got: Vec::new(),
                        looked: std::time::Instant::now(),
                        cost: std::time::Duration::ZERO,
                        show,
                    };
                    Some(asker.complete_all_watched(&missing, &mut watch)?)
                }
                _ => None,
            };
            let answers = match watched {
                Some(answers) => answers,
                None => model.complete_all(&missing)?,
            };
            ready.extend(missing.into_iter().zip(answers));
        }
    }
    let mut model = Answered {
        model,
        ready,
        missing: None,
        foreseen: Vec::new(),
    };
    run.replay(&mut model, show)
}

/// `show` again, for one more call.
fn reborrow<'s>(show: &'s mut Option<&mut dyn FnMut(&str)>) -> Option<&'s mut dyn FnMut(&str)> {
    match show {
        Some(f) => Some(&mut **f),
        None => None,
    }
}

/// A translation's plan, as every replay of it reads it.
struct Run<'a> {
    prompts: &'a Prompts,
    doc: &'a Markup,
    req: &'a Request,
    sent: &'a [usize],
    text: &'a str,
    plan: &'a chunk::Plan,
}

/// A round of gathered calls being answered, looked at as answers come so
/// that what they settle is shown before the round ends.
struct Round<'a, 'm> {
    run: &'a Run<'a>,
    twin: Box<dyn ChatModel + 'm>,
    ready: &'a [(Call, Completion)],
    missing: &'a [Call],
    got: Vec<(Call, Completion)>,
    /// When answers were last looked at, and how long that took: looking
    /// again takes at most a fifth of the time, so that a long document's
    /// replays do not take the decoder's.
    looked: std::time::Instant,
    cost: std::time::Duration,
    show: &'a mut dyn FnMut(&str),
}

impl crate::engine::Watch for Round<'_, '_> {
    fn answered(&mut self, index: usize, c: &Completion) {
        self.got.push((self.missing[index].clone(), c.clone()));
        // With the round's last answer in, the replay that follows the
        // round shows what it settles.
        let last = self.got.len() == self.missing.len();
        if last || self.looked.elapsed() < self.cost * 4 {
            return;
        }
        let start = std::time::Instant::now();
        let mut ready = self.ready.to_vec();
        ready.extend(self.got.iter().cloned());
        let mut probe = Answered {
            model: self.twin.as_mut(),
            ready,
            missing: Some(Vec::new()),
            foreseen: Vec::new(),
        };
        let _ = self.run.replay(&mut probe, Some(&mut *self.show));
        self.looked = std::time::Instant::now();
        self.cost = start.elapsed();
    }
}

/// Rounds of gathered calls before the rest of a translation's calls go
/// one at a time: every chunk's first call, then up to eight later ones (a
/// chunk's chain of calls is rarely longer).
const ROUNDS: usize = 9;

/// A model call: the conversation and its cap on new tokens.
type Call = (Vec<crate::prompt::chat::Message>, usize);

/// What a call is made of: text, paragraphs, tokens, and whether it is
/// asked firmly.
type Ask<'t> = (&'t str, usize, usize, bool);

impl Run<'_> {
    /// The translation of the planned chunks with `model`, whose calls are
    /// answered from what is in hand where they were asked before; `show` is
    /// given the document through each chunk done, as long as every chunk
    /// before it is done too.
    fn replay(
        &self,
        model: &mut Answered,
        mut show: Option<&mut dyn FnMut(&str)>,
    ) -> Result<Translation> {
        let Run {
            prompts,
            doc,
            req,
            sent,
            text,
            plan,
        } = *self;
        // Units that are not sent keep their text as it is.
        let mut out: Vec<Option<String>> = doc
            .units()
            .iter()
            .map(|u| Some(doc.source()[u.range.clone()].to_string()))
            .collect();
        for &i in sent {
            out[i] = None;
        }
        let mut t = Translator {
            model,
            prompts,
            req,
            doc,
            usage: Usage::default(),
            out,
            sent,
            retried: 0,
            broken: 0,
            wrong_language: 0,
            flags: Vec::new(),
            scaffold: Scaffold::new(
                &prompts.translate_scaffolding(&req.target, req.source.as_deref())?,
            ),
            why: HashMap::new(),
            show: reborrow(&mut show),
            answered: true,
        };
        // Pieces of a unit too long for one chunk, joined once all are in:
        // (answer, still in the wrong language); `None` once a piece failed.
        let mut pieces: Option<Vec<(String, bool)>> = Some(Vec::new());
        // Whether every chunk so far was answered.
        let mut answered = true;
        for (i, c) in plan.chunks.iter().enumerate() {
            t.answered = answered;
            if i > 0 {
                // Units before this chunk's first one are final.
                t.show_before(sent[c.paragraphs.start]);
            }
            let content = &text[c.content.clone()];
            let first = c.paragraphs.start;
            if c.partial {
                let (reply, wrong) = match t.ask(content, 1, c.tokens, false) {
                    // A round gathering calls goes on with the other chunks.
                    Err(e) if e.is::<Unanswered>() => {
                        answered = false;
                        continue;
                    }
                    r => r?,
                };
                if reply.trim().is_empty() {
                    pieces = None;
                } else if let Some(p) = pieces.as_mut() {
                    p.push((one_paragraph(&reply), wrong));
                }
                let last_piece = plan
                    .chunks
                    .get(i + 1)
                    .is_none_or(|k| !k.partial || k.paragraphs.start != first);
                if last_piece {
                    // Too long to ask again as a whole: a unit with an empty
                    // piece or lost placeholders keeps its source, all of it.
                    if let Some(p) = pieces.replace(Vec::new()) {
                        let joined: Vec<&str> = p.iter().map(|(s, _)| s.as_str()).collect();
                        let wrong = p.iter().any(|(_, w)| *w);
                        t.accept(first, &joined.join(" "), wrong);
                    }
                }
                continue;
            }
            let (units, content) = (c.paragraphs.clone(), c.content.clone());
            match t.units(text, &plan.paragraphs, units, content, c.tokens, true) {
                Err(e) if e.is::<Unanswered>() => answered = false,
                r => r?,
            }
        }
        t.answered = answered;
        t.show_before(doc.units().len());
        let Translator {
            out,
            usage,
            retried,
            broken,
            wrong_language,
            mut flags,
            why,
            ..
        } = t;
        let mut untranslated = 0;
        let outputs: Vec<String> = out
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                o.unwrap_or_else(|| {
                    untranslated += 1;
                    let detail = why.get(&i).map_or(
                        "the model returned nothing, or lost its formatting placeholders",
                        String::as_str,
                    );
                    flags.push(Flag::untranslated(line_of(doc, i), detail));
                    doc.source()[doc.units()[i].range.clone()].to_string()
                })
            })
            .collect();
        flags.sort_by_key(|f| f.line);
        Ok(Translation {
            text: doc.assemble(&outputs, req.target_code.as_deref()),
            chunks: plan.chunks.len(),
            paragraphs: doc.units().len(),
            retried_chunks: retried,
            untranslated,
            broken_markup: broken,
            wrong_language,
            flags,
            usage,
        })
    }
}

impl Translator<'_> {
    /// Shows the document through the units before unit `first`, when
    /// every call before was answered. Units are done in order: those
    /// before the one being asked for are final.
    fn show_before(&mut self, first: usize) {
        if self.show.is_none() || !self.answered {
            return;
        }
        let text = self.shown(first, self.req.target_code.as_deref());
        if let Some(show) = self.show.as_mut() {
            show(&text);
        }
    }

    /// Plan paragraph `p` is done: shows the document through it.
    fn settled(&mut self, p: usize) {
        let first = self
            .sent
            .get(p + 1)
            .copied()
            .unwrap_or(self.doc.units().len());
        self.show_before(first);
    }

    /// The document through its first `units` units, as the translation
    /// will have them: each translated or, where it failed, as it was.
    fn shown(&self, units: usize, language: Option<&str>) -> String {
        let outputs: Vec<String> = self.out[..units]
            .iter()
            .enumerate()
            .map(|(i, o)| match o {
                Some(o) => o.clone(),
                None => self.doc.source()[self.doc.units()[i].range.clone()].to_string(),
            })
            .collect();
        self.doc.assemble_prefix(&outputs, language)
    }
}

impl Flag {
    /// A translation kept although a check found `p`.
    pub(crate) fn of(line: usize, p: &Problem) -> Flag {
        Flag {
            line,
            kind: match p {
                Problem::Numbers { .. } => "numbers",
                Problem::Shorter { .. } => "shorter",
                Problem::Echo => "echo",
            }
            .into(),
            detail: p.to_string(),
        }
    }

    pub(crate) fn untranslated(line: usize, detail: &str) -> Flag {
        Flag {
            line,
            kind: "untranslated".into(),
            detail: format!("kept in the source language: {detail}"),
        }
    }

    pub(crate) fn wrong_language(line: usize) -> Flag {
        Flag {
            line,
            kind: "wrong_language".into(),
            detail: "not in the target language, even when asked again".into(),
        }
    }
}

/// Line of the source where unit `i` starts, from 1.
pub(crate) fn line_of(doc: &Markup, i: usize) -> usize {
    let start = doc.units()[i].range.start;
    doc.source()[..start].matches('\n').count() + 1
}

/// A model with some answers already in: a call asked before is answered
/// from them (once), any other goes to the model. Calls are deterministic,
/// so the answers are those the model would give then. While `missing` is
/// kept, a call not in hand is noted there instead and fails with
/// [`Unanswered`].
struct Answered<'a> {
    model: &'a mut dyn ChatModel,
    ready: Vec<(Call, Completion)>,
    missing: Option<Vec<Call>>,
    /// Calls noted in `missing` ahead ([`ChatModel::foresee`]) and not
    /// asked since: asked, they are not noted again.
    foreseen: Vec<Call>,
}

/// A call that a round gathering calls noted rather than asked.
#[derive(Debug, thiserror::Error)]
#[error("a call not asked yet")]
struct Unanswered;

impl ChatModel for Answered<'_> {
    fn context_length(&self) -> usize {
        self.model.context_length()
    }
    fn count_tokens(&self, text: &str) -> Result<usize> {
        self.model.count_tokens(text)
    }
    fn prompt_tokens(&self, messages: &[crate::prompt::chat::Message]) -> Result<usize> {
        self.model.prompt_tokens(messages)
    }
    fn truncate_to_tokens(&self, text: &str, max: usize) -> Result<String> {
        self.model.truncate_to_tokens(text, max)
    }
    fn complete(
        &mut self,
        messages: &[crate::prompt::chat::Message],
        max_new_tokens: usize,
    ) -> Result<crate::engine::Completion> {
        let asked = self
            .ready
            .iter()
            .position(|((m, max), _)| *max == max_new_tokens && m.as_slice() == messages);
        match (asked, &mut self.missing) {
            (Some(i), _) => Ok(self.ready.swap_remove(i).1),
            (None, Some(missing)) => {
                let call = (messages.to_vec(), max_new_tokens);
                match self.foreseen.iter().position(|c| *c == call) {
                    Some(i) => {
                        self.foreseen.swap_remove(i);
                    }
                    None => missing.push(call),
                }
                Err(Unanswered.into())
            }
            (None, None) => self.model.complete(messages, max_new_tokens),
        }
    }
    fn writes_translation_prompt(&self) -> bool {
        self.model.writes_translation_prompt()
    }
    /// While gathering, calls sure to come are noted with the chunk's next
    /// one, so that calls of one chunk that do not wait on each other's
    /// answers go in one round.
    fn foresee(&mut self, calls: &[Call]) {
        let Some(missing) = &mut self.missing else {
            return;
        };
        let mut ready: Vec<&Call> = self.ready.iter().map(|(c, _)| c).collect();
        for call in calls {
            match ready.iter().position(|c| *c == call) {
                // Answered already: that answer serves it.
                Some(i) => {
                    ready.swap_remove(i);
                }
                None => {
                    missing.push(call.clone());
                    self.foreseen.push(call.clone());
                }
            }
        }
    }
}

/// The model's side of a translation, and what came of each unit.
struct Translator<'a> {
    model: &'a mut dyn ChatModel,
    prompts: &'a Prompts,
    req: &'a Request,
    doc: &'a Markup,
    usage: Usage,
    /// Restored output per unit; `None` keeps the source.
    out: Vec<Option<String>>,
    /// The units sent, by their place in the chunk plan: plan paragraph
    /// `p` is unit `sent[p]` of the document.
    sent: &'a [usize],
    retried: usize,
    broken: usize,
    wrong_language: usize,
    flags: Vec<Flag>,
    /// The prompts' own words, which no answer may hold.
    scaffold: Scaffold,
    /// Why a unit's last answer was refused, where a flag should say more
    /// than "nothing, or lost placeholders".
    why: HashMap<usize, String>,
    /// Where the translation settled so far goes (`translate_live`).
    show: Option<&'a mut dyn FnMut(&str)>,
    /// Every chunk before the current one was answered: what is done of
    /// it is final.
    answered: bool,
}

impl<'a> Translator<'a> {
    /// Asks for `text`; an answer reliably in another language than the
    /// target is asked for once more, firmly (unless it was already asked
    /// firmly: greedy decoding would only repeat itself). Returns the answer
    /// and whether it is still in the wrong language.
    fn ask(
        &mut self,
        text: &str,
        paragraphs: usize,
        tokens: usize,
        firm: bool,
    ) -> Result<(String, bool)> {
        let reply = self.call(text, paragraphs, tokens, firm)?;
        let code = self.req.target_code.as_deref();
        let wrong = |r: &str| wrong_language(&crate::markup::strip_placeholders(r), code);
        if firm || !wrong(&reply) {
            let w = firm && wrong(&reply);
            return Ok((reply, w));
        }
        let again = self.call(text, paragraphs, tokens, true)?;
        if again.trim().is_empty() {
            return Ok((reply, true));
        }
        let w = wrong(&again);
        Ok((again, w))
    }

    /// The calls `asks` (text, paragraphs, tokens, firm) will make, told
    /// to the model before they are made one by one.
    fn foresee(&mut self, asks: &[Ask]) -> Result<()> {
        let calls = asks
            .iter()
            .map(|&(text, paragraphs, tokens, firm)| self.sized(text, paragraphs, tokens, firm))
            .collect::<Result<Vec<_>>>()?;
        self.model.foresee(&calls);
        Ok(())
    }

    /// The first ask [`Translator::alone`] makes for `unit`.
    fn alone_ask(&self, unit: usize) -> Result<Ask<'a>> {
        let src = self.doc.units()[self.sent[unit]].text();
        Ok((src, 1, self.model.count_tokens(src)?, true))
    }

    /// The messages and answer cap of a call for `text`.
    fn sized(&self, text: &str, paragraphs: usize, tokens: usize, firm: bool) -> Result<Call> {
        let (messages, _, cap) = call_size(
            &*self.model,
            self.prompts,
            self.req,
            text,
            paragraphs,
            tokens,
            firm,
        )?;
        Ok((messages, cap))
    }

    fn call(&mut self, text: &str, paragraphs: usize, tokens: usize, firm: bool) -> Result<String> {
        let (messages, cap) = self.sized(text, paragraphs, tokens, firm)?;
        let c = self.model.complete(&messages, cap)?;
        self.usage.add(&c);
        // A text that itself speaks of `<text>` tags may keep them.
        if text.contains("<text>") || text.contains("</text>") {
            return Ok(c.text);
        }
        Ok(super::answer_only(&c.text, "text").unwrap_or_default())
    }

    /// Takes `reply` as the unit's translation when it is not empty, its
    /// placeholders restore and it has every number and sentence of the
    /// source; says whether it did. On the `last` chance a translation that
    /// restores is kept even so, and flagged with what it lacks.
    fn accept_or_not(&mut self, planned: usize, reply: &str, wrong: bool, last: bool) -> bool {
        let unit = self.sent[planned];
        if reply.trim().is_empty() {
            return false;
        }
        let strip = crate::markup::strip_placeholders;
        let (source, answer) = (strip(self.doc.units()[unit].text()), strip(reply));
        // The prompt's words in an answer are never kept, even on the last
        // chance: the unit stays in its source.
        if let Some(found) = self.scaffold.found(&answer, &source) {
            let why = format!("the answer repeated the prompt's own words (\"{found}\")");
            self.why.insert(unit, why);
            return false;
        }
        let Ok(restored) = self.doc.restore_unit(unit, reply) else {
            return false;
        };
        let problem = check(&source, &answer)
            .or_else(|| echo(&source, &answer, self.req.target_code.as_deref()));
        if problem.is_some() && !last {
            return false;
        }
        let line = line_of(self.doc, unit);
        if let Some(p) = problem {
            self.flags.push(Flag::of(line, &p));
        }
        if wrong {
            self.wrong_language += 1;
            self.flags.push(Flag::wrong_language(line));
        }
        self.out[unit] = Some(restored);
        true
    }

    /// Asks for the whole units `units` in one call: `content` of `text`,
    /// `tokens` long (`paras` are the byte ranges of all units). An
    /// answer with another number of paragraphs is asked again in two
    /// halves (if `halve`), then unit by unit; a unit whose answer fails
    /// its checks is asked again alone. Halves keep most of the context a
    /// unit is translated in, and take fewer calls than going unit by unit
    /// at once; halving only once bounds the calls a model that never
    /// keeps count can waste.
    fn units(
        &mut self,
        text: &str,
        paras: &[Range<usize>],
        units: Range<usize>,
        content: Range<usize>,
        tokens: usize,
        halve: bool,
    ) -> Result<()> {
        let n = units.len();
        let (reply, wrong) = self.ask(&text[content], n, tokens, false)?;
        let replies: Vec<String> = if n == 1 {
            vec![one_paragraph(&reply)]
        } else {
            paragraphs(&reply)
                .into_iter()
                .map(|r| reply[r].to_string())
                .collect()
        };
        if replies.len() != n {
            self.retried += 1;
            if !halve || n == 2 {
                let asks = units.clone().map(|u| self.alone_ask(u));
                self.foresee(&asks.collect::<Result<Vec<_>>>()?)?;
                return units.into_iter().try_for_each(|u| {
                    self.alone(u)?;
                    self.settled(u);
                    Ok(())
                });
            }
            let mid = units.start + n / 2;
            let halves = [units.start..mid, mid..units.end];
            let mut asks = Vec::new();
            for half in &halves {
                if half.len() == 1 {
                    asks.push(self.alone_ask(half.start)?);
                } else {
                    let content = &text[paras[half.start].start..paras[half.end - 1].end];
                    asks.push((
                        content,
                        half.len(),
                        self.model.count_tokens(content)?,
                        false,
                    ));
                }
            }
            self.foresee(&asks)?;
            for half in halves {
                if half.len() == 1 {
                    self.alone(half.start)?;
                    self.settled(half.start);
                } else {
                    let content = paras[half.start].start..paras[half.end - 1].end;
                    let tokens = self.model.count_tokens(&text[content.clone()])?;
                    self.units(text, paras, half, content, tokens, false)?;
                }
            }
            return Ok(());
        }
        for (u, r) in units.zip(&replies) {
            if !self.accept_or_not(u, r, wrong, false) {
                self.alone(u)?;
            }
            self.settled(u);
        }
        Ok(())
    }

    /// Takes `reply` as the unit's last chance: what fails keeps the source.
    fn accept(&mut self, unit: usize, reply: &str, wrong: bool) {
        if !self.accept_or_not(unit, reply, wrong, true)
            && !reply.trim().is_empty()
            && self.doc.restore_unit(self.sent[unit], reply).is_err()
        {
            self.broken += 1;
        }
    }

    /// Asks for one unit alone, firmly; then, if the answer still fails a
    /// check, sentence by sentence. What fails even so is kept with a flag
    /// (an answer that restores) or left in the source.
    fn alone(&mut self, unit: usize) -> Result<()> {
        let (src, paragraphs, tokens, firm) = self.alone_ask(unit)?;
        let (reply, wrong) = self.ask(src, paragraphs, tokens, firm)?;
        let whole = one_paragraph(&reply);
        if self.accept_or_not(unit, &whole, wrong, false) {
            return Ok(());
        }
        if let Some((joined, wrong)) = self.by_sentence(src)? {
            if self.accept_or_not(unit, &joined, wrong, false) {
                return Ok(());
            }
        }
        self.accept(unit, &whole, wrong);
        Ok(())
    }

    /// The unit's sentences translated one at a time and joined with the
    /// source's spacing; `None` for a single sentence or an empty answer.
    fn by_sentence(&mut self, src: &str) -> Result<Option<(String, bool)>> {
        let sentences = crate::text::segment::sentences(src, 0..src.len());
        if sentences.len() < 2 {
            return Ok(None);
        }
        let (mut joined, mut any_wrong, mut end) = (String::new(), false, 0);
        for r in sentences {
            let s = &src[r.clone()];
            let tokens = self.model.count_tokens(s)?;
            let (reply, wrong) = self.ask(s, 1, tokens, true)?;
            let reply = one_paragraph(&reply);
            if reply.trim().is_empty() {
                return Ok(None);
            }
            joined.push_str(&src[end..r.start]);
            joined.push_str(reply.trim());
            any_wrong |= wrong;
            end = r.end;
        }
        joined.push_str(&src[end..]);
        Ok(Some((joined, any_wrong)))
    }
}

/// The messages that ask for `text` translated: glot's prompt, or for a
/// model whose chat template writes its own instruction (TranslateGemma),
/// the text alone with the two language codes. Such a model needs the
/// source language: as given or detected for the article, else as
/// detected for the text itself.
#[allow(clippy::too_many_arguments)]
fn messages(
    model: &dyn ChatModel,
    prompts: &Prompts,
    req: &Request,
    text: &str,
    paragraphs: usize,
    markup: bool,
    firm: bool,
) -> Result<Vec<crate::prompt::chat::Message>> {
    if !model.writes_translation_prompt() {
        return prompts.translate(&prompt_args(req, text, paragraphs, markup, firm));
    }
    let target = req.target_code.as_deref().ok_or_else(|| {
        Error::Usage("this model is asked for a translation by language code: name the target language by its code".into())
    })?;
    let text = text.trim();
    let source = match (&req.source_code, text.is_empty()) {
        (Some(code), _) => code.clone(),
        // Sizing the prompt: any code takes about as many tokens.
        (None, true) => "en".to_string(),
        (None, false) => crate::text::lang::detect(text)
            .map(|d| d.language.code)
            .ok_or_else(|| {
                Error::Usage(
                    "this model needs the source language, which the text does not show: pass --from".into(),
                )
            })?,
    };
    Ok(vec![crate::prompt::chat::Message::translation(
        text, &source, target,
    )])
}

fn prompt_args<'a>(
    req: &'a Request,
    text: &'a str,
    paragraphs: usize,
    markup: bool,
    firm: bool,
) -> crate::prompt::Translate<'a> {
    crate::prompt::Translate {
        text,
        target: &req.target,
        source: req.source.as_deref(),
        paragraphs,
        markup,
        firm,
    }
}

/// Makes a reply one paragraph: blank lines inside become single breaks.
fn one_paragraph(reply: &str) -> String {
    let paras: Vec<&str> = paragraphs(reply).into_iter().map(|r| &reply[r]).collect();
    paras.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::chat::Message;
    use crate::task::fake::{Fake, Reply};

    fn doc() -> String {
        let long = "This sentence is rather long. ".repeat(30);
        format!("First one.\n\nSecond one here.\n\n{long}\n\nLast paragraph.")
    }

    fn req() -> Request {
        Request {
            target: "German".into(),
            target_code: None,
            source_code: None,
            source: None,
        }
    }

    fn text(s: &str) -> Markup {
        Markup::parse(s.to_string(), crate::markup::Format::Text)
    }

    fn fake(reply: Reply) -> Fake {
        Fake {
            context: 300,
            reply,
            calls: vec![],
        }
    }

    /// A model whose template writes its own translation instruction, with
    /// every message it is sent.
    struct OwnPrompt {
        inner: Fake,
        sent: Vec<Vec<crate::prompt::chat::Message>>,
    }

    impl ChatModel for OwnPrompt {
        fn context_length(&self) -> usize {
            self.inner.context_length()
        }
        fn writes_translation_prompt(&self) -> bool {
            true
        }
        fn count_tokens(&self, text: &str) -> Result<usize> {
            self.inner.count_tokens(text)
        }
        fn prompt_tokens(&self, m: &[crate::prompt::chat::Message]) -> Result<usize> {
            self.inner.prompt_tokens(m)
        }
        fn truncate_to_tokens(&self, text: &str, max: usize) -> Result<String> {
            self.inner.truncate_to_tokens(text, max)
        }
        fn complete(
            &mut self,
            m: &[crate::prompt::chat::Message],
            max: usize,
        ) -> Result<crate::engine::Completion> {
            self.sent.push(m.to_vec());
            // Fake echoes what is between <text> tags, or all of it.
            self.inner.complete(m, max)
        }
    }

    /// Such a model gets each chunk alone, as one user message with the
    /// source and target codes, and none of glot's instructions; without
    /// a source language, each chunk's own is detected.
    #[test]
    fn a_model_that_writes_its_own_prompt_gets_the_text_and_codes() {
        let p = Prompts::load(None).unwrap();
        let english = "The council met on Monday and approved the budget for the new year.";
        let german = "Der Rat tagte am Montag und beschloss den Haushalt für das neue Jahr.";
        for (doc, source, want) in [
            (english, Some("fr"), "fr"),
            (english, None, "en"),
            (german, None, "de"),
        ] {
            let mut m = OwnPrompt {
                inner: fake(Reply::Echo),
                sent: Vec::new(),
            };
            let mut r = req();
            r.target_code = Some("pt-BR".into());
            r.source_code = source.map(String::from);
            translate(&mut m, &p, &text(doc), &r).unwrap();
            assert!(!m.sent.is_empty());
            for sent in &m.sent {
                assert_eq!(sent.len(), 1);
                assert_eq!(
                    (sent[0].role.as_str(), sent[0].content.as_str()),
                    ("user", doc)
                );
                let l = sent[0].languages.as_ref().unwrap();
                assert_eq!((l.source.as_str(), l.target.as_str()), (want, "pt-BR"));
            }
        }
    }

    #[test]
    fn paragraphs_are_kept_in_order() {
        let mut m = Fake {
            context: 300,
            reply: Reply::Echo,
            calls: vec![],
        };
        let p = Prompts::load(None).unwrap();
        let t = translate(&mut m, &p, &text(&doc()), &req()).unwrap();
        assert_eq!(t.paragraphs, 4);
        let out = paragraphs(&t.text);
        assert_eq!(out.len(), 4);
        assert_eq!(&t.text[out[0].clone()], "FIRST ONE.");
        assert_eq!(&t.text[out[3].clone()], "LAST PARAGRAPH.");
        assert!(t.chunks > 2, "the long paragraph is split: {}", t.chunks);
        assert_eq!(t.retried_chunks, 0);
    }

    #[test]
    fn empty_replies_keep_the_source_text() {
        let mut m = Fake {
            context: 300,
            reply: Reply::Empty,
            calls: vec![],
        };
        let p = Prompts::load(None).unwrap();
        let t = translate(&mut m, &p, &text(&doc()), &req()).unwrap();
        assert_eq!(paragraphs(&t.text).len(), 4);
        assert!(t.text.starts_with("First one.\n\nSecond one here."));
        assert!(t.untranslated >= 4, "{}", t.untranslated);
    }

    #[test]
    fn the_plan_is_what_the_run_sends() {
        let p = Prompts::load(None).unwrap();
        let doc = text(&doc());
        let mut m = fake(Reply::Echo);
        let plan = plan(&m, &p, &doc, &req()).unwrap();
        let t = translate(&mut m, &p, &doc, &req()).unwrap();
        assert_eq!(plan.calls.len(), t.chunks);
        let planned: Vec<(usize, usize)> = plan
            .calls
            .iter()
            .map(|c| (c.prompt_tokens, c.answer_cap))
            .collect();
        assert_eq!(planned, m.calls);
        assert!(plan.calls.iter().any(|c| c.partial));
        assert_eq!(plan.calls[0].line, Some(1));
        assert!(plan.peak() <= plan.context);
    }

    #[test]
    fn an_answer_is_unwrapped_unless_the_text_itself_has_the_delimiters() {
        let p = Prompts::load(None).unwrap();
        let doc = text("The <text> element holds words.");
        let mut m = fake(Reply::Identity);
        let t = translate(&mut m, &p, &doc, &req()).unwrap();
        assert_eq!(t.text, "The <text> element holds words.");
        assert_eq!(t.untranslated, 0);
    }

    #[test]
    fn units_without_letters_are_copied_not_sent() {
        let p = Prompts::load(None).unwrap();
        let doc = text("Results of the race.\n\n2:19:41\n\n4.\n\nThe winner ran fast.");
        // Any 4 the model sees comes back a 7.
        let mut m = fake(Reply::Garble { once: false });
        let plan = plan(&m, &p, &doc, &req()).unwrap();
        let t = translate(&mut m, &p, &doc, &req()).unwrap();
        assert_eq!(
            t.text,
            "Results of the race.\n\n2:19:41\n\n4.\n\nThe winner ran fast."
        );
        assert_eq!(plan.calls.len(), 1);
        assert_eq!(m.calls.len(), 1, "one call, for the two units with words");
        assert!(t.flags.is_empty(), "{:?}", t.flags);
    }

    #[test]
    fn merged_paragraphs_are_retried_one_by_one() {
        let mut m = Fake {
            context: 300,
            reply: Reply::Merge,
            calls: vec![],
        };
        let p = Prompts::load(None).unwrap();
        let t = translate(&mut m, &p, &text(&doc()), &req()).unwrap();
        assert_eq!(paragraphs(&t.text).len(), 4);
        assert!(t.retried_chunks >= 1);
    }

    /// A model that runs two paragraphs together only when it is given
    /// more than 4: the 8-paragraph chunk is asked again as two halves of
    /// 4, not as 8 single paragraphs.
    #[test]
    fn a_chunk_that_loses_a_paragraph_is_asked_again_in_halves() {
        let doc: String = (1..=8)
            .map(|i| format!("Paragraph number {i} says something."))
            .collect::<Vec<_>>()
            .join("\n\n");
        let mut m = fake(Reply::MergeLong { above: 4 });
        let p = Prompts::load(None).unwrap();
        let t = translate(&mut m, &p, &text(&doc), &req()).unwrap();
        assert_eq!(t.chunks, 1);
        assert_eq!(m.calls.len(), 3, "{:?}", m.calls);
        assert_eq!(t.retried_chunks, 1);
        assert_eq!(t.text, doc.to_uppercase());
        assert!(t.flags.is_empty(), "{:?}", t.flags);
        // Halves are halved no further: a model that merges at every size
        // costs the chunk, its halves, then each of the 8 paragraphs alone.
        let mut m = fake(Reply::MergeLong { above: 1 });
        let t = translate(&mut m, &p, &text(&doc), &req()).unwrap();
        assert_eq!(m.calls.len(), 1 + 2 + 8, "{:?}", m.calls);
        assert_eq!(t.retried_chunks, 3);
        assert_eq!(t.text, doc.to_uppercase());
    }

    /// A model that decodes together: it counts the calls of each batch.
    struct Together {
        inner: Fake,
        batches: Vec<usize>,
    }

    impl ChatModel for Together {
        crate::task::measures_of!(inner);
        fn complete(&mut self, messages: &[Message], max: usize) -> Result<Completion> {
            self.batches.push(1);
            self.inner.complete(messages, max)
        }
        fn complete_all(&mut self, calls: &[(Vec<Message>, usize)]) -> Result<Vec<Completion>> {
            self.batches.push(calls.len());
            calls
                .iter()
                .map(|(m, max)| self.inner.complete(m, *max))
                .collect()
        }
        fn decodes_together(&self) -> bool {
            true
        }
    }

    /// Every chunk is asked again: a model that decodes together gets the
    /// chunks' later calls in batches, and the translation is the same as
    /// one call at a time, from the same calls.
    #[test]
    fn later_calls_of_the_chunks_go_together_with_the_same_result() {
        let doc: String = (1..=6)
            .map(|i| format!("Paragraph {i} is about the new tram line and its stops."))
            .collect::<Vec<_>>()
            .join("\n\n");
        let p = Prompts::load(None).unwrap();
        let mut alone = Fake {
            context: 200,
            reply: Reply::Empty,
            calls: vec![],
        };
        let one = translate(&mut alone, &p, &text(&doc), &req()).unwrap();
        let mut together = Together {
            inner: Fake {
                context: 200,
                reply: Reply::Empty,
                calls: vec![],
            },
            batches: vec![],
        };
        let all = translate(&mut together, &p, &text(&doc), &req()).unwrap();
        assert!(one.chunks > 1, "{} chunk(s)", one.chunks);
        assert_eq!(all.text, one.text);
        assert_eq!(all.untranslated, one.untranslated);
        // The same calls, in another order.
        let (mut a, mut b) = (alone.calls.clone(), together.inner.calls.clone());
        a.sort();
        b.sort();
        assert_eq!(a, b);
        // The first calls, then at least one round of later calls, together.
        let b = &together.batches;
        assert_eq!(b[0], one.chunks, "{b:?}");
        assert!(b[1..].iter().any(|&n| n > 1), "{b:?}");
        assert_eq!(b.iter().sum::<usize>(), alone.calls.len(), "{b:?}");
        // Every chunk's answer has the wrong number of paragraphs, and
        // each chunk's units are then asked alone: those calls wait on
        // none of each other's answers, so they are one round, not one a
        // unit.
        assert_eq!(b.len(), 2, "{b:?}");
    }

    /// A model that decodes together and lends twins: each answer is told
    /// as it comes, and `asked` counts the calls answered so far.
    struct Lending {
        inner: Fake,
        asked: std::rc::Rc<std::cell::Cell<usize>>,
    }

    impl Lending {
        fn new(asked: std::rc::Rc<std::cell::Cell<usize>>) -> Lending {
            Lending::answering(asked, Reply::Echo, 200)
        }

        fn answering(
            asked: std::rc::Rc<std::cell::Cell<usize>>,
            reply: Reply,
            context: usize,
        ) -> Lending {
            Lending {
                inner: Fake {
                    context,
                    reply,
                    calls: vec![],
                },
                asked,
            }
        }
    }

    impl ChatModel for Lending {
        crate::task::measures_of!(inner);
        fn complete(&mut self, messages: &[Message], max: usize) -> Result<Completion> {
            // Answers take time, as a model's do: looking at them as they
            // come takes less.
            std::thread::sleep(std::time::Duration::from_millis(20));
            self.asked.set(self.asked.get() + 1);
            self.inner.complete(messages, max)
        }
        fn complete_all_watched(
            &mut self,
            calls: &[(Vec<Message>, usize)],
            watch: &mut dyn crate::engine::Watch,
        ) -> Result<Vec<Completion>> {
            let mut out = Vec::new();
            for (i, (m, max)) in calls.iter().enumerate() {
                let c = self.complete(m, *max)?;
                watch.answered(i, &c);
                out.push(c);
            }
            Ok(out)
        }
        fn decodes_together(&self) -> bool {
            true
        }
        fn twin(&self) -> Option<Box<dyn ChatModel + '_>> {
            Some(Box::new(Lending::new(self.asked.clone())))
        }
    }

    /// A translation shown as it goes is shown paragraph by paragraph
    /// while the calls are still being answered, never shows what it
    /// takes back, and ends with the whole translation, one call at a time
    /// as with calls decoded together.
    #[test]
    fn a_live_translation_shows_settled_paragraphs_before_the_last_answer() {
        let doc: String = (1..=8)
            .map(|i| format!("Paragraph {i} is about the new tram line and its stops."))
            .collect::<Vec<_>>()
            .join("\n\n");
        let doc = text(&doc);
        let p = Prompts::load(None).unwrap();
        let mut alone = fake(Reply::Echo);
        alone.context = 200;
        let whole = translate(&mut alone, &p, &doc, &req()).unwrap();
        for together in [false, true] {
            let asked = std::rc::Rc::new(std::cell::Cell::new(0));
            let mut shown: Vec<(usize, String)> = Vec::new();
            let t = if together {
                let mut m = Lending::new(asked.clone());
                translate_live(&mut m, &p, &doc, &req(), &mut |s| {
                    shown.push((asked.get(), s.to_string()))
                })
            } else {
                let mut m = Lending::new(asked.clone());
                let mut m = Alone(&mut m);
                translate_live(&mut m, &p, &doc, &req(), &mut |s| {
                    shown.push((asked.get(), s.to_string()))
                })
            }
            .unwrap();
            assert_eq!(t.text, whole.text);
            assert!(t.chunks > 2, "{} chunks", t.chunks);
            let calls = asked.get();
            assert_eq!(calls, t.usage.calls);
            assert!(shown.iter().all(|(_, s)| t.text.starts_with(s.as_str())));
            assert_eq!(shown.last().unwrap().1, t.text);
            // Paragraphs were shown while calls were still to be answered.
            let early: Vec<usize> = shown
                .iter()
                .filter(|(n, s)| *n < calls && !s.is_empty())
                .map(|(_, s)| s.matches("PARAGRAPH").count())
                .collect();
            assert!(
                early.windows(2).any(|w| w[1] > w[0]),
                "together {together}: {early:?} of {} chunks, {calls} calls",
                t.chunks
            );
        }
    }

    /// Within one chunk asked again unit by unit, each unit is shown as
    /// soon as it and those before it are done, not when the chunk is.
    #[test]
    fn a_chunk_asked_again_unit_by_unit_is_shown_unit_by_unit() {
        let doc: String = (1..=5)
            .map(|i| format!("Paragraph {i} is about the tram."))
            .collect::<Vec<_>>()
            .join("\n\n");
        let doc = text(&doc);
        let p = Prompts::load(None).unwrap();
        let asked = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut m = Lending::answering(asked.clone(), Reply::Merge, 400);
        let mut m = Alone(&mut m);
        let mut shown: Vec<(usize, usize)> = Vec::new();
        let t = translate_live(&mut m, &p, &doc, &req(), &mut |s| {
            shown.push((asked.get(), s.matches("Paragraph").count()))
        })
        .unwrap();
        assert_eq!(t.chunks, 1);
        assert_eq!(t.text.matches("Paragraph").count(), 5);
        // The chunk, then its halves, then units alone: each unit is shown
        // after a call of its own, before the calls of the next.
        let calls = asked.get();
        let first_seen: Vec<usize> = (1..=5)
            .map(|n| shown.iter().find(|(_, k)| *k >= n).unwrap().0)
            .collect();
        assert!(first_seen.windows(2).all(|w| w[1] > w[0]), "{shown:?}");
        assert!(first_seen[0] < calls - 3, "{first_seen:?} of {calls} calls");
    }

    /// A model as it is, one call at a time.
    struct Alone<'a>(&'a mut dyn ChatModel);

    impl ChatModel for Alone<'_> {
        crate::task::measures_of!(0);
        fn complete(&mut self, messages: &[Message], max: usize) -> Result<Completion> {
            self.0.complete(messages, max)
        }
    }

    const MARKDOWN: &str = "# Title with `code`\n\nSome **bold** text and [a link](https://example.org/x).\n\n```\nnever sent\n```\n\n- item *one*\n- item two\n";

    #[test]
    fn markdown_round_trips_through_an_identity_engine() {
        let p = Prompts::load(None).unwrap();
        let doc = Markup::parse(MARKDOWN.into(), crate::markup::Format::Markdown);
        let mut m = fake(Reply::Identity);
        let t = translate(&mut m, &p, &doc, &req()).unwrap();
        assert_eq!(t.text, MARKDOWN);
        assert_eq!((t.paragraphs, t.untranslated, t.retried_chunks), (4, 0, 0));
        let mut m = fake(Reply::Echo);
        let t = translate(&mut m, &p, &doc, &req()).unwrap();
        assert_eq!(
            t.text,
            "# TITLE WITH `code`\n\nSOME **BOLD** TEXT AND [A LINK](https://example.org/x).\n\n```\nnever sent\n```\n\n- ITEM *ONE*\n- ITEM TWO\n"
        );
    }

    #[test]
    fn lost_placeholders_are_asked_again_then_the_source_is_kept() {
        let p = Prompts::load(None).unwrap();
        let doc = Markup::parse(MARKDOWN.into(), crate::markup::Format::Markdown);
        let mut m = fake(Reply::StripPlaceholders);
        let t = translate(&mut m, &p, &doc, &req()).unwrap();
        // Units with markup keep their source; the item without is translated.
        assert_eq!(t.text, MARKDOWN);
        assert_eq!((t.untranslated, t.broken_markup), (3, 3));
        // One chunk, then each of the three broken units alone.
        assert_eq!(m.calls.len(), 4);
    }

    const FIGURES: &str =
        "First one.\n\nThe line cost 410 million euros. It opened in 2024.\n\nLast paragraph.";

    #[test]
    fn a_garbled_number_is_asked_again_then_flagged_by_line() {
        let p = Prompts::load(None).unwrap();
        // Fixed when asked again: the retry's answer is kept, nothing flagged.
        let mut m = fake(Reply::Garble { once: true });
        let t = translate(&mut m, &p, &text(FIGURES), &req()).unwrap();
        assert_eq!(t.text, FIGURES);
        assert!(t.flags.is_empty(), "{:?}", t.flags);
        assert_eq!(m.calls.len(), 2, "the chunk, then the unit alone");
        // Garbled every time: kept, and reported with its line.
        let mut m = fake(Reply::Garble { once: false });
        let t = translate(&mut m, &p, &text(FIGURES), &req()).unwrap();
        assert!(t.text.contains("710 million"));
        assert_eq!(t.flags.len(), 1, "{:?}", t.flags);
        let f = &t.flags[0];
        assert_eq!((f.line, f.kind.as_str()), (3, "numbers"));
        assert!(
            f.detail.contains("410") && f.detail.contains("2024"),
            "{}",
            f.detail
        );
    }

    /// Answers with an attack around every unit, through the whole
    /// pipeline (chunks, checks, retries): the output's markup is the
    /// source's, in every format.
    #[test]
    fn hostile_answers_add_no_markup() {
        use crate::markup::{rendered_markup, tests};
        let p = Prompts::load(None).unwrap();
        for (format, src) in tests::all() {
            let doc = Markup::parse(src.to_string(), format);
            let want = rendered_markup(src, format);
            for attack in tests::ATTACKS {
                let mut m = Fake {
                    context: 2000,
                    reply: Reply::Around(attack),
                    calls: vec![],
                };
                let t = translate(&mut m, &p, &doc, &req()).unwrap();
                assert_eq!(t.untranslated, 0, "{attack:?}: {:?}", t.flags);
                let got = rendered_markup(&t.text, format);
                let added: Vec<_> = got.difference(&want).collect();
                assert!(added.is_empty(), "{format:?}, {attack:?} added {added:?}");
            }
        }
    }

    #[test]
    fn answers_that_repeat_the_prompt_are_asked_again_then_the_source_is_kept() {
        let p = Prompts::load(None).unwrap();
        let mut m = fake(Reply::Leak { once: true });
        let t = translate(&mut m, &p, &text(FIGURES), &req()).unwrap();
        assert_eq!(t.text, FIGURES);
        assert!(t.flags.is_empty(), "{:?}", t.flags);
        assert_eq!(m.calls.len(), 4, "the chunk, then each unit alone");
        // Every answer leaks: every unit keeps its source, and says why.
        let mut m = fake(Reply::Leak { once: false });
        let t = translate(&mut m, &p, &text(FIGURES), &req()).unwrap();
        assert_eq!(t.text, FIGURES);
        assert_eq!((t.untranslated, t.broken_markup), (3, 0));
        for f in &t.flags {
            assert_eq!(f.kind, "untranslated");
            assert!(
                f.detail.contains("reply with the translation only"),
                "{}",
                f.detail
            );
        }
    }

    #[test]
    fn a_dropped_sentence_is_asked_again_then_sentence_by_sentence() {
        let p = Prompts::load(None).unwrap();
        // The engine drops a paragraph's last sentence whenever it has two:
        // asked one sentence at a time, it loses nothing.
        let mut m = fake(Reply::DropSentence);
        let t = translate(&mut m, &p, &text(FIGURES), &req()).unwrap();
        assert_eq!(t.text, FIGURES);
        assert!(t.flags.is_empty(), "{:?}", t.flags);
        assert_eq!(
            m.calls.len(),
            4,
            "the chunk, the unit alone, its two sentences"
        );
        // Without figures to miss, the lost sentence itself is what is found.
        let plain = FIGURES.replace("410", "many").replace(" in 2024", " soon");
        let mut m = fake(Reply::DropSentence);
        let t = translate(&mut m, &p, &text(&plain), &req()).unwrap();
        assert_eq!(t.text, plain);
        assert_eq!(m.calls.len(), 4);
    }

    #[test]
    fn what_fails_sentence_by_sentence_too_is_flagged_by_line() {
        let p = Prompts::load(None).unwrap();
        let mut m = fake(Reply::Garble { once: false });
        let t = translate(&mut m, &p, &text(FIGURES), &req()).unwrap();
        // The chunk, the unit alone, then each of its two sentences.
        assert_eq!(m.calls.len(), 4);
        let kinds: Vec<(usize, &str)> = t.flags.iter().map(|f| (f.line, f.kind.as_str())).collect();
        assert_eq!(kinds, [(3, "numbers")], "{:?}", t.flags);
    }

    #[test]
    fn glossary_terms_and_addresses_survive_an_identity_engine() {
        let p = Prompts::load(None).unwrap();
        let src = "The Kremlin said so. Mail press@kremlin.ru or see https://example.org/Kremlin.";
        let mut doc = text(src);
        doc.protect_terms(&[("Kremlin".into(), "Kreml".into())]);
        let mut m = fake(Reply::Identity);
        let t = translate(&mut m, &p, &doc, &req()).unwrap();
        assert_eq!(
            t.text,
            "The Kreml said so. Mail press@kremlin.ru or see https://example.org/Kremlin."
        );
        assert!(t.flags.is_empty(), "{:?}", t.flags);
    }

    #[test]
    fn units_left_untranslated_are_flagged_by_line() {
        let p = Prompts::load(None).unwrap();
        let mut m = fake(Reply::Empty);
        let t = translate(&mut m, &p, &text(FIGURES), &req()).unwrap();
        let lines: Vec<(usize, &str)> = t.flags.iter().map(|f| (f.line, f.kind.as_str())).collect();
        assert_eq!(
            lines,
            [
                (1, "untranslated"),
                (3, "untranslated"),
                (5, "untranslated")
            ]
        );
    }

    #[test]
    fn an_answer_in_the_wrong_language_is_asked_again_firmly() {
        let p = Prompts::load(None).unwrap();
        let doc = text("Un paragraphe en français, assez long pour être reconnu.");
        let mut req = req();
        req.target_code = Some("de".into());
        let wrong = "Ceci est toujours une phrase en français, pas en allemand du tout.";
        let right = "Dies ist ein deutscher Satz, lang genug, um erkannt zu werden.";
        let mut m = fake(Reply::Language { wrong, right });
        let t = translate(&mut m, &p, &doc, &req).unwrap();
        assert_eq!((t.text.as_str(), t.wrong_language), (right, 0));
        assert_eq!(m.calls.len(), 2);
        let mut m = fake(Reply::Language {
            wrong,
            right: wrong,
        });
        let t = translate(&mut m, &p, &doc, &req).unwrap();
        assert_eq!((t.text.as_str(), t.wrong_language), (wrong, 1));
        // Without a code to check against, the first answer stands.
        req.target_code = None;
        let mut m = fake(Reply::Language { wrong, right });
        let t = translate(&mut m, &p, &doc, &req).unwrap();
        assert_eq!((t.text.as_str(), m.calls.len()), (wrong, 1));
    }
}
