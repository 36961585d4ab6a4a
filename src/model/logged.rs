//! A model that reports its calls on stderr with `-v`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Result;
use glot::engine::{ChatModel, Completion, Unwatched, Watch};
use glot::prompt::chat::Message;
use glot::task::mt::{Mt, SentenceModel};
use glot::task::Usage;

use crate::printer::Printer;
use crate::progress::Parts;

/// A model that reports every call on stderr with `-v`, so a long article
/// shows its progress without the tasks knowing about terminals: a chat
/// model (`&mut dyn ChatModel`) call by call, a translation model
/// ([`Mt`]) batch by batch; and that moves the progress line, if any.
pub struct Logged<'a, M> {
    pub model: M,
    pub printer: &'a Printer,
    /// Calls so far, shared with the model's twins.
    calls: Arc<AtomicUsize>,
    parts: Option<Arc<Parts>>,
}

impl<'a, M> Logged<'a, M> {
    pub fn new(model: M, printer: &'a Printer) -> Self {
        Logged {
            model,
            printer,
            calls: Arc::default(),
            parts: None,
        }
    }

    /// Also moves `parts` as calls go.
    pub fn with_parts(mut self, parts: Option<Arc<Parts>>) -> Self {
        self.parts = parts;
        self
    }
}

/// Any handle on a chat model: `&mut` one, or a boxed twin.
impl<M> ChatModel for Logged<'_, M>
where
    M: std::ops::DerefMut,
    M::Target: ChatModel,
{
    fn context_length(&self) -> usize {
        self.model.context_length()
    }
    fn writes_translation_prompt(&self) -> bool {
        self.model.writes_translation_prompt()
    }
    fn decodes_together(&self) -> bool {
        self.model.decodes_together()
    }
    fn count_tokens(&self, text: &str) -> Result<usize> {
        self.model.count_tokens(text)
    }
    fn prompt_tokens(&self, messages: &[Message]) -> Result<usize> {
        self.model.prompt_tokens(messages)
    }
    fn truncate_to_tokens(&self, text: &str, max: usize) -> Result<String> {
        self.model.truncate_to_tokens(text, max)
    }
    fn complete(&mut self, messages: &[Message], max_new_tokens: usize) -> Result<Completion> {
        Ok(self
            .complete_all_watched(&[(messages.to_vec(), max_new_tokens)], &mut Unwatched)?
            .remove(0))
    }
    fn complete_all_watched(
        &mut self,
        calls: &[(Vec<Message>, usize)],
        watch: &mut dyn Watch,
    ) -> Result<Vec<Completion>> {
        let batch = self.parts.as_ref().map_or(0, |p| p.batch());
        let mut both = Both {
            outer: watch,
            logged: Reporter {
                printer: self.printer,
                calls: &self.calls,
                parts: self.parts.as_deref(),
            },
            caps: calls.iter().map(|(_, max)| *max).collect(),
            batch,
        };
        self.model.complete_all_watched(calls, &mut both)
    }
    fn twin(&self) -> Option<Box<dyn ChatModel + '_>> {
        // Logged alike, in the same count.
        Some(Box::new(Logged {
            model: self.model.twin()?,
            printer: self.printer,
            calls: self.calls.clone(),
            parts: self.parts.clone(),
        }))
    }
}

/// Where a logged model's calls are told.
struct Reporter<'a> {
    printer: &'a Printer,
    calls: &'a AtomicUsize,
    parts: Option<&'a Parts>,
}

/// The task's own watch, and the log's.
struct Both<'a, 'w> {
    outer: &'w mut dyn Watch,
    logged: Reporter<'a>,
    caps: Vec<usize>,
    /// The batch's number for the progress line.
    batch: u64,
}

impl Watch for Both<'_, '_> {
    fn wants_tokens(&self) -> bool {
        self.logged.parts.is_some() || self.outer.wants_tokens()
    }
    fn wants_text(&self, index: usize) -> bool {
        self.outer.wants_tokens() && self.outer.wants_text(index)
    }
    fn decoded(&mut self, index: usize, tokens: usize, text: Option<&str>) {
        if let Some(p) = self.logged.parts {
            p.tokens(self.batch, index, tokens);
        }
        if self.outer.wants_tokens() {
            self.outer.decoded(index, tokens, text);
        }
    }
    fn answered(&mut self, index: usize, c: &Completion) {
        if let Some(p) = self.logged.parts {
            p.finished(self.batch, index, c.generated_tokens, 1);
        }
        self.logged.report(c, self.caps[index]);
        self.outer.answered(index, c);
    }
}

impl Reporter<'_> {
    /// One call's line on stderr.
    fn report(&self, c: &Completion, max_new_tokens: usize) {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        self.printer.call(format!(
            "call {n}: {} prompt tokens, {} from cache ({:.0} tok/s), {} new tokens of at most {max_new_tokens} ({:.1} tok/s)",
            c.prompt_tokens,
            c.reused_tokens,
            (c.prompt_tokens - c.reused_tokens) as f64 / c.prefill_secs.max(1e-9),
            c.generated_tokens,
            c.generated_tokens as f64 / c.decode_secs.max(1e-9),
        ));
    }
}

impl SentenceModel for Logged<'_, Mt<'_>> {
    fn count_tokens(&self, text: &str) -> Result<usize> {
        self.model.count_tokens(text)
    }
    fn max_tokens(&self) -> usize {
        self.model.max_tokens()
    }
    fn measure(&self, sentence: &str) -> Result<(usize, usize)> {
        self.model.measure(sentence)
    }
    fn translate(&mut self, sentences: &[String]) -> Result<(Vec<String>, Usage)> {
        let (out, u) = self.model.translate(sentences)?;
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(p) = &self.parts {
            let batch = p.batch();
            p.finished(batch, 0, u.generated_tokens, sentences.len());
        }
        self.printer.call(format!(
            "{} part {}: {} sentence(s) in {} batch(es), {} source tokens ({:.0} tok/s), {} new tokens ({:.1} tok/s)",
            self.model.model.info().id,
            n,
            sentences.len(),
            u.calls,
            u.prompt_tokens,
            u.prompt_tokens as f64 / u.prefill_secs.max(1e-9),
            u.generated_tokens,
            u.generated_tokens as f64 / u.decode_secs.max(1e-9),
        ));
        Ok((out, u))
    }
}
