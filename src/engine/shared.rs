//! One chat model answering several threads at once: each document of a
//! batch asks as if it had the model to itself, and the calls of all of
//! them decode together ([`parallel::serve`]), a call joining as soon as a
//! slot is free.
//!
//! The model's weights and cache go to a scheduler thread for the time of
//! [`Llm::serve`]; what turns messages into prompts and answers into text
//! (tokenizer, template) stays shared, so the threads asking do that part
//! of the work themselves.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, Sender};

use anyhow::Result;

use super::generate::CacheState;
use super::parallel::{self, Answer, Arrivals, Owned};
use super::{ChatModel, Completion, Llm};
use crate::prompt::chat::Message;

/// The scheduler is gone (it panicked): no call will be answered again,
/// so a caller stops rather than fail every call that follows.
#[derive(Debug, thiserror::Error)]
#[error("the model stopped answering")]
pub struct Stopped;

/// Calls of one [`ChatModel::complete_all`], and where their answers go.
struct Request {
    calls: Vec<Owned>,
    reply: Sender<Result<Vec<Answer>, String>>,
}

/// What threads ask the model through while [`Llm::serve`] runs.
pub struct Hub<'m> {
    llm: &'m Llm,
    width: usize,
    tx: Sender<Request>,
}

impl Hub<'_> {
    /// A model to hand one thread.
    pub fn client(&self) -> Client<'_> {
        Client {
            llm: self.llm,
            width: self.width,
            tx: self.tx.clone(),
        }
    }

    /// Calls decoded at once.
    pub fn width(&self) -> usize {
        self.width
    }
}

/// The model as one thread sees it: its answers are those
/// [`Llm`] gives, decoded beside the other threads' calls.
pub struct Client<'m> {
    llm: &'m Llm,
    width: usize,
    tx: Sender<Request>,
}

impl Llm {
    /// Runs `work` with a [`Hub`] whose clients' calls decode together, up
    /// to `--parallel` at a time (one at a time on a GPU or with beam
    /// search, as [`ChatModel::complete_all`] does).
    pub fn serve<R>(&mut self, work: impl FnOnce(&Hub) -> R) -> Result<R> {
        let room = self.room(self.together_width());
        let width = room.width;
        let Some(mut decoder) = self.decoder.take() else {
            anyhow::bail!(
                "{}: loaded for planning only, without weights",
                self.info.id
            );
        };
        let mut caches = std::mem::take(&mut self.caches);
        let (tx, rx) = mpsc::channel();
        let llm = &*self;
        let out = std::thread::scope(|scope| {
            let (decoder, caches) = (&mut decoder, &mut caches);
            let scheduler = scope.spawn(move || schedule(decoder, caches, room, rx));
            let hub = Hub { llm, width, tx };
            let out = work(&hub);
            // The scheduler ends once no client is left.
            drop(hub);
            if let Err(panic) = scheduler.join() {
                std::panic::resume_unwind(panic);
            }
            out
        });
        self.decoder = Some(decoder);
        self.caches = caches;
        Ok(out)
    }
}

/// Serves requests until every sender is gone. A failed step fails the
/// requests then waiting, and the next ones are served afresh.
fn schedule(
    decoder: &mut super::decoder::Decoder,
    caches: &mut Vec<CacheState>,
    room: parallel::Room,
    rx: Receiver<Request>,
) {
    let mut door = Door {
        rx,
        next_key: 0,
        waiting: HashMap::new(),
        keys: HashMap::new(),
    };
    while let Err(e) = parallel::serve(decoder, caches, room, &mut door) {
        let msg = format!("{e:#}");
        for (_, w) in door.waiting.drain() {
            // A client that went away needs no answer.
            let _ = w.reply.send(Err(msg.clone()));
        }
        door.keys.clear();
    }
}

/// A request being answered.
struct Waiting {
    reply: Sender<Result<Vec<Answer>, String>>,
    answers: Vec<Option<Answer>>,
    left: usize,
}

/// The requests as [`parallel::serve`] sees them: one call per key.
struct Door {
    rx: Receiver<Request>,
    next_key: usize,
    /// By request.
    waiting: HashMap<usize, Waiting>,
    /// Key → (request, index of the call in it).
    keys: HashMap<usize, (usize, usize)>,
}

impl Door {
    fn take(&mut self, req: Request, out: &mut Vec<(usize, Owned)>) {
        let id = self.next_key;
        self.next_key += 1;
        if req.calls.is_empty() {
            let _ = req.reply.send(Ok(Vec::new()));
            return;
        }
        self.waiting.insert(
            id,
            Waiting {
                reply: req.reply,
                answers: vec![None; req.calls.len()],
                left: req.calls.len(),
            },
        );
        for (i, call) in req.calls.into_iter().enumerate() {
            let key = self.next_key;
            self.next_key += 1;
            self.keys.insert(key, (id, i));
            out.push((key, call));
        }
    }
}

impl Arrivals for Door {
    fn arrived(&mut self, wait: bool) -> Option<Vec<(usize, Owned)>> {
        let mut out = Vec::new();
        if wait {
            let req = self.rx.recv().ok()?;
            self.take(req, &mut out);
        }
        while let Ok(req) = self.rx.try_recv() {
            self.take(req, &mut out);
        }
        Some(out)
    }

    fn answered(&mut self, key: usize, answer: Answer) {
        let Some((id, i)) = self.keys.remove(&key) else {
            return;
        };
        let Some(w) = self.waiting.get_mut(&id) else {
            return;
        };
        w.answers[i] = Some(answer);
        w.left -= 1;
        if w.left == 0 {
            let w = self.waiting.remove(&id).expect("just seen");
            let answers = w
                .answers
                .into_iter()
                .map(|a| a.expect("answered"))
                .collect();
            let _ = w.reply.send(Ok(answers));
        }
    }
}

impl ChatModel for Client<'_> {
    fn context_length(&self) -> usize {
        self.llm.context_length()
    }
    fn count_tokens(&self, text: &str) -> Result<usize> {
        self.llm.count_tokens(text)
    }
    fn prompt_tokens(&self, messages: &[Message]) -> Result<usize> {
        self.llm.prompt_tokens(messages)
    }
    fn truncate_to_tokens(&self, text: &str, max: usize) -> Result<String> {
        self.llm.truncate_to_tokens(text, max)
    }
    fn writes_translation_prompt(&self) -> bool {
        self.llm.writes_translation_prompt()
    }
    fn decodes_together(&self) -> bool {
        self.width > 1
    }
    fn complete(&mut self, messages: &[Message], max_new_tokens: usize) -> Result<Completion> {
        Ok(self
            .complete_all(&[(messages.to_vec(), max_new_tokens)])?
            .remove(0))
    }
    fn complete_all(&mut self, calls: &[(Vec<Message>, usize)]) -> Result<Vec<Completion>> {
        let calls = self.llm.prepare(calls)?;
        let lens: Vec<usize> = calls.iter().map(|c| c.ids.len()).collect();
        let (reply, answers) = mpsc::channel();
        let request = Request { calls, reply };
        let stopped = || anyhow::Error::new(Stopped);
        self.tx.send(request).map_err(|_| stopped())?;
        let answers = answers
            .recv()
            .map_err(|_| stopped())?
            .map_err(anyhow::Error::msg)?;
        self.llm.completions(&lens, answers)
    }
}
