//! `glot serve`: LibreTranslate's HTTP API, and `/summarize`, over the
//! model loaded once.
//!
//! HTTP is answered on a small async runtime; the model work goes to
//! worker threads through a bounded queue, so a request beyond it gets 429
//! at once rather than a place in an unbounded pile. A chat model decodes
//! the requests of all workers together (`--parallel`); a translation
//! model serves one request at a time.

mod api;
mod work;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use anyhow::{Context, Result};
use glot::prompt::Prompts;

use crate::model::{Chat, Need, Resolved};
use crate::printer::Printer;
use crate::settings::ServeSettings;
use work::{Engine, Task};

pub fn run(s: ServeSettings, printer: &Printer) -> Result<()> {
    let keys = s.api_keys.as_deref().map(read_keys).transpose()?;
    let resolved = Resolved::new(&s.model, Need::Any, s.model.offline, printer)?;
    let prompts = resolved.prompts(Prompts::load(s.prompts.as_deref())?)?;
    let addr = SocketAddr::new(s.host, s.port);
    let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    // Loaded before the first request, so that a broken model fails here.
    let chat = match &resolved {
        Resolved::Chat(_) | Resolved::Seq2Seq { answers: true, .. } => {
            Some(resolved.chat(&s.model, printer, true)?)
        }
        _ => None,
    };
    // A local model is named by its file or folder: the server's own
    // paths are no business of its clients.
    let model_id = chat
        .as_ref()
        .map_or_else(|| resolved.id().to_string(), |c| c.info().id.clone());
    let model_id = match Path::new(&model_id).file_name() {
        Some(name) if Path::new(&model_id).exists() => name.to_string_lossy().into_owned(),
        _ => model_id,
    };
    let (tx, rx) = mpsc::sync_channel::<Task>(s.queue);
    let state = Arc::new(api::State::new(
        &s,
        keys,
        tx,
        model_id,
        chat.is_some(),
        languages(&resolved),
    ));
    let rx = Arc::new(Mutex::new(rx));
    let ctx = work::Ctx {
        prompts: &prompts,
        printer,
        glossary: &s.glossary,
    };
    let serve = |workers: Vec<Engine>| -> Result<()> {
        std::thread::scope(|scope| {
            for engine in workers {
                let rx = Arc::clone(&rx);
                scope.spawn(move || work::serve(engine, &rx, ctx));
            }
            if !printer.quiet() {
                eprintln!("glot: serving {} on http://{local}", state.model);
            }
            let out = api::listen(listener, Arc::clone(&state), printer);
            // No more work comes in: the workers end once the queue is
            // empty.
            state.close();
            out
        })
    };
    match chat {
        Some(Chat::Llm(mut llm)) => llm
            .serve(|hub| {
                let workers = (0..hub.width().max(1))
                    .map(|_| Engine::Shared(hub.client()))
                    .collect();
                serve(workers)
            })
            .and_then(|r| r),
        // Translation models, and an instruction-following T5 model for
        // summaries: one worker of their own.
        other => serve(vec![Engine::Own(work::Own::new(
            other, &resolved, &s.model,
        ))]),
    }
}

/// What `/languages` lists: each language glot knows with the languages it
/// can be translated into. With the opus-mt registry, the pairs it has a
/// model or a route through English for; otherwise every other language.
fn languages(resolved: &Resolved) -> Vec<api::Listed> {
    let all = glot::text::lang::all();
    all.iter()
        .map(|e| api::Listed {
            code: e.code,
            name: e.name,
            targets: all
                .iter()
                .map(|t| t.code)
                .filter(|&t| t != e.code)
                .filter(|t| match resolved {
                    Resolved::Registry { registry, .. } => registry.route(e.code, t).is_ok(),
                    _ => true,
                })
                .collect(),
        })
        .filter(|l| !l.targets.is_empty())
        .collect()
}

/// The keys in `path`: one a line; blank lines and lines starting with `#`
/// are not keys.
fn read_keys(path: &Path) -> Result<HashSet<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the API keys in {}", path.display()))?;
    let keys: HashSet<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if keys.is_empty() {
        return Err(glot::Error::Usage(format!(
            "{} holds no API key: every request would be refused",
            path.display()
        ))
        .into());
    }
    Ok(keys)
}
