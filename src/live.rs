//! A result written as it is produced: on a terminal, or with `--stream`.
//!
//! A task hands over its text settled so far each time it grows; what is
//! new is written at once. The end brings the whole result, which is what
//! a run without streaming writes, byte for byte. Where a later text does
//! not extend what was written (a summary asked again), a terminal has
//! the written rows erased and the new text written in their place; a
//! pipe cannot take text back, so the whole result follows what was
//! written, after a blank line, with a warning.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::Result;

use crate::printer::Printer;
use crate::progress::Parts;

/// What streaming writes, and where it stands.
pub struct Live {
    terminal: bool,
    /// Written so far.
    shown: String,
    /// A text did not extend what a pipe was given: nothing more is
    /// written until the end.
    stuck: bool,
    parts: Option<Arc<Parts>>,
    /// The first write error: the rest is not written, the end reports it.
    failed: Option<std::io::Error>,
}

impl Live {
    /// Streaming for a run writing to stdout as text, when stdout is a
    /// terminal or `--stream` asks for it; `None` otherwise.
    pub fn new(stream: bool, to_stdout_as_text: bool, parts: Option<Arc<Parts>>) -> Option<Live> {
        let terminal = std::io::stdout().is_terminal();
        (to_stdout_as_text && (stream || terminal)).then_some(Live {
            terminal,
            shown: String::new(),
            stuck: false,
            parts,
            failed: None,
        })
    }

    /// The progress line to keep out of the way when writing.
    pub fn set_parts(&mut self, parts: Option<Arc<Parts>>) {
        self.parts = parts;
    }

    /// The text settled so far.
    pub fn show(&mut self, text: &str) {
        // Text already written is nothing new: a task may tell it again.
        if self.stuck || self.failed.is_some() || self.shown.starts_with(text) {
            return;
        }
        self.put(text);
    }

    /// Leaves `text` written: what it adds to what was, or, where it does
    /// not start with that, all of it in place of the rows written on a
    /// terminal. A pipe cannot take text back: it is stuck.
    fn put(&mut self, text: &str) {
        let result = match text.strip_prefix(self.shown.as_str()) {
            Some(new) => self.write(new),
            None if self.terminal && self.erase() => self.write(text),
            None => {
                self.stuck = true;
                return;
            }
        };
        match result {
            Ok(()) => self.shown = text.to_string(),
            Err(e) => self.failed = Some(e),
        }
    }

    /// The whole result: what was not written yet is.
    pub fn finish(mut self, text: &str, printer: &Printer) -> Result<()> {
        // Unlike a text settled so far, the whole result is what must be
        // left written, even where it is shorter than what was.
        if !self.stuck && self.failed.is_none() && self.shown != text {
            self.put(text);
        }
        if let Some(p) = &self.parts {
            p.clear();
        }
        if let Some(e) = self.failed.take() {
            return Err(anyhow::Error::new(e).context("cannot write to stdout"));
        }
        if self.shown != text {
            printer.warn(
                "the model was asked again after the first words of its answer were written: the whole result follows them",
            );
            self.parts = None;
            self.write(&format!("\n\n{text}"))?;
        }
        Ok(())
    }

    /// Writes `text` to stdout, with the progress line out of the way.
    fn write(&self, text: &str) -> std::io::Result<()> {
        let put = || {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()
        };
        match &self.parts {
            Some(p) => p.bar().suspend(put),
            None => put(),
        }
    }

    /// Erases the rows written so far from the terminal, where they are
    /// all still on the screen.
    fn erase(&mut self) -> bool {
        let term = console::Term::stdout();
        let (height, width) = term.size();
        let (height, width) = (usize::from(height), usize::from(width).max(1));
        // Rows above the cursor's: each line takes its width in rows, the
        // last one (the cursor's) counts only those above it.
        let lines: Vec<&str> = self.shown.split('\n').collect();
        let rows = |l: &str| console::measure_text_width(l).div_ceil(width).max(1);
        let above = lines[..lines.len() - 1]
            .iter()
            .map(|l| rows(l))
            .sum::<usize>()
            + rows(lines[lines.len() - 1])
            - 1;
        if above >= height {
            return false;
        }
        let cleared = || {
            term.clear_line()?;
            term.clear_last_lines(above)
        };
        let done = match &self.parts {
            Some(p) => p.bar().suspend(cleared),
            None => cleared(),
        };
        if done.is_err() {
            return false;
        }
        self.shown.clear();
        true
    }
}
