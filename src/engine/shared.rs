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
use super::{strip_think, ChatModel, Completion, Llm, Watch};
use crate::prompt::chat::Message;

/// The scheduler is gone (it panicked): no call will be answered again,
/// so a caller stops rather than fail every call that follows.
#[derive(Debug, thiserror::Error)]
#[error("the model stopped answering")]
pub struct Stopped;

/// Calls of one [`ChatModel::complete_all`], and where their answers go.
struct Request {
    calls: Vec<Owned>,
    reply: Sender<Reply>,
    /// Whether each call's tokens are told as they come, and whether with
    /// the ids themselves.
    tokens: bool,
    ids: Vec<bool>,
}

/// What the scheduler tells the thread that asked, call by call.
enum Reply {
    /// Call `index` has decoded `tokens` tokens, `ids` where asked.
    Decoded {
        index: usize,
        tokens: usize,
        ids: Option<Vec<u32>>,
    },
    Answered(usize, Answer),
    /// The request's calls not answered yet never will be.
    Failed(String),
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
#[derive(Clone)]
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
            let _ = w.reply.send(Reply::Failed(msg.clone()));
        }
        door.keys.clear();
    }
}

/// A request being answered.
struct Waiting {
    reply: Sender<Reply>,
    tokens: bool,
    ids: Vec<bool>,
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
            return;
        }
        self.waiting.insert(
            id,
            Waiting {
                reply: req.reply,
                tokens: req.tokens,
                ids: req.ids,
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
        let _ = w.reply.send(Reply::Answered(i, answer));
        w.left -= 1;
        if w.left == 0 {
            self.waiting.remove(&id);
        }
    }

    fn decoded(&mut self, key: usize, ids: &[u32]) {
        let Some(&(id, i)) = self.keys.get(&key) else {
            return;
        };
        let Some(w) = self.waiting.get(&id).filter(|w| w.tokens) else {
            return;
        };
        let _ = w.reply.send(Reply::Decoded {
            index: i,
            tokens: ids.len(),
            ids: w.ids[i].then(|| ids.to_vec()),
        });
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
    fn complete_all_watched(
        &mut self,
        calls: &[(Vec<Message>, usize)],
        watch: &mut dyn Watch,
    ) -> Result<Vec<Completion>> {
        let calls = self.llm.prepare(calls)?;
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let lens: Vec<usize> = calls.iter().map(|c| c.ids.len()).collect();
        let (reply, replies) = mpsc::channel();
        let request = Request {
            ids: (0..calls.len()).map(|i| watch.wants_text(i)).collect(),
            tokens: watch.wants_tokens(),
            calls,
            reply,
        };
        let stopped = || anyhow::Error::new(Stopped);
        self.tx.send(request).map_err(|_| stopped())?;
        let mut done: Vec<Option<Completion>> = vec![None; lens.len()];
        let mut left = lens.len();
        while left > 0 {
            match replies.recv().map_err(|_| stopped())? {
                Reply::Decoded { index, tokens, ids } => {
                    let text = match ids {
                        Some(ids) => Some(strip_think(&self.llm.tokenizer().decode(&ids)?)),
                        None => None,
                    };
                    watch.decoded(index, tokens, text.as_deref());
                }
                Reply::Answered(index, answer) => {
                    let c = self.llm.completion(lens[index], &answer)?;
                    watch.answered(index, &c);
                    done[index] = Some(c);
                    left -= 1;
                }
                Reply::Failed(msg) => return Err(anyhow::Error::msg(msg)),
            }
        }
        Ok(done.into_iter().map(|c| c.expect("answered")).collect())
    }

    fn twin(&self) -> Option<Box<dyn ChatModel + '_>> {
        Some(Box::new(self.clone()))
    }
}
