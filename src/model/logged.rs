//! A model that reports its calls on stderr with `-v`.

use anyhow::Result;
use glot::engine::{ChatModel, Completion};
use glot::prompt::chat::Message;
use glot::task::mt::{Mt, SentenceModel};
use glot::task::Usage;

use crate::printer::Printer;

/// A model that reports every call on stderr with `-v`, so a long article
/// shows its progress without the tasks knowing about terminals: a chat
/// model (`&mut dyn ChatModel`) call by call, a translation model
/// ([`Mt`]) batch by batch.
pub struct Logged<'a, M> {
    pub model: M,
    pub printer: &'a Printer,
    pub calls: usize,
}

impl<'a, M> Logged<'a, M> {
    pub fn new(model: M, printer: &'a Printer) -> Self {
        Logged {
            model,
            printer,
            calls: 0,
        }
    }
}

impl<M: ChatModel + ?Sized> ChatModel for Logged<'_, &mut M> {
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
        let c = self.model.complete(messages, max_new_tokens)?;
        self.report(&c, max_new_tokens);
        Ok(c)
    }
    fn complete_all(&mut self, calls: &[(Vec<Message>, usize)]) -> Result<Vec<Completion>> {
        let cs = self.model.complete_all(calls)?;
        for (c, (_, max)) in cs.iter().zip(calls) {
            self.report(c, *max);
        }
        Ok(cs)
    }
}

impl<M> Logged<'_, M> {
    /// One call's line on stderr.
    fn report(&mut self, c: &Completion, max_new_tokens: usize) {
        self.calls += 1;
        self.printer.call(format!(
            "call {}: {} prompt tokens, {} from cache ({:.0} tok/s), {} new tokens of at most {max_new_tokens} ({:.1} tok/s)",
            self.calls,
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
        self.calls += 1;
        self.printer.call(format!(
            "{} part {}: {} sentence(s) in {} batch(es), {} source tokens ({:.0} tok/s), {} new tokens ({:.1} tok/s)",
            self.model.model.info().id,
            self.calls,
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
