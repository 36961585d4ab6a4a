//! The model's side of `glot serve`: each worker takes one job at a time
//! from the queue and answers it.

use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::sync::Mutex;

use anyhow::Result;
use glot::engine::shared::Client;
use glot::engine::ChatModel;
use glot::markup::Format;
use glot::prompt::Prompts;
use glot::task::{summarize, translate, Article};
use glot::text::lang::{self, Detected, Language};
use serde_json::{json, Value};

use crate::model::{Chat, Logged, Resolved, Translator};
use crate::printer::Printer;
use crate::settings::ModelSettings;

/// What every job reads.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub prompts: &'a Prompts,
    pub printer: &'a Printer,
    pub glossary: &'a [(String, String)],
}

/// A worker's model.
pub enum Engine<'h> {
    /// Its share of a chat model that decodes every worker's calls
    /// together.
    Shared(Client<'h>),
    /// A model of its own: the only worker.
    Own(Own<'h>),
}

/// Models a lone worker holds: a chat model that is not shared (T5), or
/// the translation models of the language pairs asked so far.
pub struct Own<'a> {
    chat: Option<Chat>,
    resolved: &'a Resolved,
    settings: &'a ModelSettings,
    translators: HashMap<String, Translator>,
}

/// Translation models kept loaded at once, as `glot batch` keeps them.
const MAX_TRANSLATORS: usize = 4;

impl<'a> Own<'a> {
    /// A lone worker's models: `chat` where the model writes answers,
    /// the translation legs `resolved` names for each language pair.
    pub fn new(chat: Option<Chat>, resolved: &'a Resolved, settings: &'a ModelSettings) -> Own<'a> {
        Own {
            chat,
            resolved,
            settings,
            translators: HashMap::new(),
        }
    }
}

/// What a request asks of the model.
pub enum Job {
    /// Each text translated; `source` `None` is detected from each text.
    Translate {
        texts: Vec<String>,
        source: Option<Language>,
        target: Language,
        format: Format,
    },
    Summarize {
        text: String,
        format: Format,
        language: Option<Language>,
        words: usize,
    },
}

/// A translated text, and the language it was read in when detected.
pub struct Translated {
    pub text: String,
    pub detected: Option<Detected>,
}

pub enum Done {
    Translated(Vec<Translated>),
    /// The summary and its accounting, as `--format json` gives them.
    Summary(Value),
}

/// Why a job gave no answer.
#[derive(Debug)]
pub enum Failure {
    /// The request cannot be answered as it is (400).
    Bad(String),
    /// The model failed (500).
    Failed(String),
}

/// A job and where its answer goes. A request that stopped waiting
/// (timed out, or its client left) has its job skipped.
pub struct Task {
    pub job: Job,
    pub reply: tokio::sync::oneshot::Sender<Result<Done, Failure>>,
    /// Where the result settled so far goes as it grows (one text only).
    pub live: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

/// Answers jobs from `rx` until every sender is gone.
pub fn serve(mut engine: Engine, rx: &Mutex<Receiver<Task>>, ctx: Ctx) {
    loop {
        let task = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(task) = task else {
            return;
        };
        if task.reply.is_closed() {
            continue;
        }
        let live = task.live;
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // A task may tell the same text again: it is sent once.
            let mut sent = String::new();
            let mut show = |t: &str| {
                if let Some(tx) = live.as_ref().filter(|_| t != sent) {
                    sent = t.to_string();
                    let _ = tx.send(sent.clone());
                }
            };
            let show: Option<&mut dyn FnMut(&str)> = match live.is_some() {
                true => Some(&mut show),
                false => None,
            };
            engine.run(task.job, ctx, show)
        }))
        .unwrap_or_else(|_| {
            Err(Failure::Failed(
                "internal error (see the server's log)".into(),
            ))
        });
        let _ = task.reply.send(done);
    }
}

impl Engine<'_> {
    fn run(
        &mut self,
        job: Job,
        ctx: Ctx,
        mut show: Option<&mut dyn FnMut(&str)>,
    ) -> Result<Done, Failure> {
        match job {
            Job::Translate {
                texts,
                source,
                target,
                format,
            } => texts
                .iter()
                .map(|t| {
                    let show = show.as_mut().map(|s| &mut **s as &mut dyn FnMut(&str));
                    self.translate(t, source.as_ref(), &target, format, ctx, show)
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Done::Translated),
            Job::Summarize {
                text,
                format,
                language,
                words,
            } => self
                .summarize(&text, format, language.as_ref(), words, ctx, show)
                .map(Done::Summary),
        }
    }

    fn translate(
        &mut self,
        text: &str,
        given: Option<&Language>,
        target: &Language,
        format: Format,
        ctx: Ctx,
        show: Option<&mut dyn FnMut(&str)>,
    ) -> Result<Translated, Failure> {
        let detected = given.is_none().then(|| lang::detect(text)).flatten();
        if text.trim().is_empty() {
            return Ok(Translated {
                text: text.to_string(),
                detected,
            });
        }
        let mut article = Article::parse("the text", text.to_string(), format).map_err(bad)?;
        let source = article.source(given).cloned();
        // Nothing to translate: the text is in the target language already.
        if source
            .as_ref()
            .is_some_and(|l| lang::same_language(&l.code, &target.code))
        {
            return Ok(Translated {
                text: text.to_string(),
                detected,
            });
        }
        article.markup.protect_terms(ctx.glossary);
        let markup = &article.markup;
        let req = translate::Request::new(source.as_ref(), target);
        let with_chat = |chat: &mut dyn ChatModel, show: Option<&mut dyn FnMut(&str)>| {
            let mut logged = Logged::new(chat, ctx.printer);
            match show {
                Some(show) => {
                    translate::translate_live(&mut logged, ctx.prompts, markup, &req, show)
                }
                None => translate::translate(&mut logged, ctx.prompts, markup, &req),
            }
        };
        let t = match self {
            Engine::Shared(client) => with_chat(client, show),
            Engine::Own(own) => match own.translator(source.as_ref(), target, ctx.printer)? {
                Some(translator) => {
                    translator.translate_live(markup, target, ctx.printer, None, show)
                }
                None => with_chat(own.chat_model()?, show),
            },
        }
        .map_err(failed)?;
        // The text as it came: a line end at its end only if it had one.
        let mut out = t.text;
        if !text.ends_with('\n') && out.ends_with('\n') {
            out.pop();
        }
        Ok(Translated {
            text: out,
            detected,
        })
    }

    fn summarize(
        &mut self,
        text: &str,
        format: Format,
        language: Option<&Language>,
        words: usize,
        ctx: Ctx,
        show: Option<&mut dyn FnMut(&str)>,
    ) -> Result<Value, Failure> {
        let article = Article::parse("the text", text.to_string(), format).map_err(bad)?;
        let language = language.or(article.language());
        let req = summarize::Request::new(language, summarize::Length { words }, false);
        let model: &mut dyn ChatModel = match self {
            Engine::Shared(client) => client,
            Engine::Own(own) => own.chat_model()?,
        };
        let mut logged = Logged::new(model, ctx.printer);
        let s = match show {
            Some(show) => {
                summarize::summarize_live(&mut logged, ctx.prompts, &article.main_text, &req, show)
            }
            None => summarize::summarize(&mut logged, ctx.prompts, &article.main_text, &req),
        }
        .map_err(failed)?;
        let mut out = json!({
            "task": "summarize",
            "input_format": article.markup.format(),
            "source_language": article.detected,
            "language": language,
            "words": words,
            "max_tokens": summarize::Length { words }.max_tokens(),
        });
        if let (Value::Object(out), Ok(Value::Object(summary))) =
            (&mut out, serde_json::to_value(&s))
        {
            out.extend(summary);
        }
        Ok(out)
    }
}

impl Own<'_> {
    /// The chat model, where this worker has one.
    fn chat_model(&mut self) -> Result<&mut dyn ChatModel, Failure> {
        match &mut self.chat {
            Some(chat) => Ok(chat.model()),
            None => Err(Failure::Bad(
                "the server's model only translates: summaries need a chat model".into(),
            )),
        }
    }

    /// The translation model(s) for a language pair, loaded on first use;
    /// `None` when the chat model translates.
    fn translator(
        &mut self,
        source: Option<&Language>,
        target: &Language,
        printer: &Printer,
    ) -> Result<Option<&mut Translator>, Failure> {
        let (resolved, settings) = (self.resolved, self.settings);
        let key = resolved.translator_key(source, target);
        if !self.translators.contains_key(&key) {
            let Some(legs) = resolved.legs(source, target, printer).map_err(bad)? else {
                return Ok(None);
            };
            if self.translators.len() >= MAX_TRANSLATORS {
                self.translators.clear();
            }
            let loaded = Translator::load(legs, target, settings, printer).map_err(failed)?;
            self.translators.insert(key.clone(), loaded);
        }
        Ok(self.translators.get_mut(&key))
    }
}

fn bad(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Bad(format!("{:#}", e.into()))
}

fn failed(e: anyhow::Error) -> Failure {
    // A request the model cannot take (too long a prompt, a language it
    // lacks) is the request's fault; anything else is the server's.
    match e.downcast_ref::<glot::Error>() {
        Some(_) => Failure::Bad(format!("{e:#}")),
        None => Failure::Failed(format!("{e:#}")),
    }
}
