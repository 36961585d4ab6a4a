//! `glot batch`: every document of a selection, each job once.
//!
//! The walk runs twice, lazily: once to count (for progress), once to work.
//! The model loads only when a document actually needs it, so a rerun with
//! nothing left to do is as fast as the walk. Each finished item is written
//! whole (scratch file, then rename) and then recorded; Ctrl-C or SIGTERM
//! stops after the current item, a second signal stops at once, and either
//! way the outputs and the manifest stay consistent.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use glot::digest::sha256_hex;
use glot::engine::ModelInfo;
use glot::folder::lock::{lock_item, ItemLock, Scratch};
use glot::folder::manifest::{self, Index, Record, Seen, Status, Tokens, Writer};
use glot::folder::shard::Shard;
use glot::folder::walk::{walk, Entry, Found};
use glot::folder::{paths, settings_hash, Job};
use glot::markup::Format;
use glot::prompt::Prompts;
use glot::task::{summarize, translate, Article, Usage};
use glot::text::lang;
use serde_json::json;

use crate::model::{Chat, Logged, Need, Resolved, Translator};
use crate::printer::Printer;
use crate::progress::Items;
use crate::settings::BatchSettings;
use report::{print_table, RunFile, Tally, COPIED, DONE, FAILED, UP_TO_DATE, WOULD_RUN};

mod plan;
mod report;

pub use report::status;

/// A job with what its records are keyed by.
struct Planned {
    job: Job,
    key: String,
    settings: serde_json::Value,
    hash: String,
}

/// The model `--model` names, and what has been loaded of it so far: the
/// model loads only when a document actually needs it.
struct Models<'a> {
    s: &'a BatchSettings,
    printer: &'a Printer,
    prompts: &'a Prompts,
    /// `None` only in a dry run that could not find the model's files.
    resolved: Option<Resolved>,
    chat: Option<Chat>,
    /// Translation models loaded so far, by language pair.
    translators: std::collections::HashMap<String, Translator>,
    /// The model the current item was made with, when not the chat model.
    used: Option<ModelInfo>,
}

/// Translation models kept loaded at once (each opus-mt model is about 300 MB).
const MAX_TRANSLATORS: usize = 4;

/// One pass over the selection: what was done, and where it is recorded.
struct Pass<'a> {
    s: &'a BatchSettings,
    printer: &'a Printer,
    out: &'a Path,
    planned: &'a [Planned],
    models: Models<'a>,
    index: Index,
    /// Both `None` in a dry run, which writes nothing.
    writer: Option<Writer>,
    scratch: Option<Scratch>,
    tally: Tally,
    progress: Items,
    stop: Arc<AtomicBool>,
    started: u64,
}

pub fn run(s: BatchSettings, printer: &Printer) -> Result<()> {
    if let Some(json) = s.plan {
        return plan::run(&s, printer, json);
    }
    let out = s.selection.out.clone();
    if !s.dry_run {
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create the output folder {}", out.display()))?;
    }
    let resolved = resolve(&s, printer)?;
    if let Some(model) = &resolved {
        check_jobs(&s, model)?;
    }
    let prompts = Prompts::load(s.prompts.as_deref())?;
    let prompts = match &resolved {
        Some(model) => model.prompts(prompts)?,
        None => prompts,
    };
    if resolved
        .as_ref()
        .is_some_and(Resolved::translates_sentences)
    {
        refuse_summaries(&s)?;
    }
    let planned = plan_jobs(&s, &prompts, resolved.as_ref());
    let models = Models {
        s: &s,
        printer,
        prompts: &prompts,
        resolved,
        chat: None,
        translators: std::collections::HashMap::new(),
        used: None,
    };
    let mut pass = Pass::open(&s, printer, &out, &planned, models)?;
    let interrupted = pass.walk()?;
    pass.finish(interrupted)
}

/// Refuses summaries a summarizer trained on text alone cannot be asked
/// for (in a named language).
fn check_jobs(s: &BatchSettings, model: &Resolved) -> Result<()> {
    for job in &s.jobs {
        match job {
            Job::Summarize { language, .. } => {
                model.check_summary_options(language.as_ref(), false)?
            }
            Job::Translate { .. } => model.check_translates()?,
        }
    }
    Ok(())
}

/// Resolves the model once for the whole run; a model that cannot write
/// the summaries asked for is refused before any download. A dry run never
/// downloads: without the files, it says so and counts every item as to do.
fn resolve(s: &BatchSettings, printer: &Printer) -> Result<Option<Resolved>> {
    match Resolved::new(&s.model, need(s), s.model.offline || s.dry_run, printer) {
        Ok(r) => Ok(Some(r)),
        Err(e) if s.dry_run && !is_refusal(&e) => {
            printer.warn(format!(
                "{e:#}: without the model's files, every item counts as to do"
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Every job with the settings its records are keyed by. The exact model
/// files go into them, so a changed model (another revision, a replaced
/// local file) redoes the work.
fn plan_jobs(s: &BatchSettings, prompts: &Prompts, resolved: Option<&Resolved>) -> Vec<Planned> {
    let model_key = resolved.map_or_else(|| json!(s.model.spec), |r| r.fingerprint(&s.model));
    let mut common = json!({
        "model": model_key,
        "tokenizer": s.model.tokenizer,
        "max_context": s.model.load.max_context,
        "quantize": s.model.load.quantize.map(|q| format!("{q:?}")),
        "sampling": s.model.sampling.map(|x| json!([x.temperature, x.top_p, x.seed])),
        "input_format": s.format.map(Format::name),
        "lossy": s.lossy,
        "prompts": prompts.fingerprint(),
    });
    // Only when set, so that manifests written before beam search existed
    // still match their settings.
    if let Some(b) = s.model.beam {
        common["beam"] = json!([b.beams, b.length_penalty]);
    }
    // Likewise: another cache type changes the logits, so it redoes the work.
    if let Some(c) = s.model.load.cache {
        common["cache_type"] = json!(format!("{c:?}"));
    }
    s.jobs
        .iter()
        .map(|job| {
            let mut settings = job.settings(&common);
            if matches!(job, Job::Translate { .. }) {
                settings["job"]["source"] = json!(s.source.as_ref().map(|l| &l.code));
                // Another glossary makes other translations.
                if !s.glossary.is_empty() {
                    settings["job"]["glossary"] = json!(s.glossary);
                }
            }
            Planned {
                key: job.key(),
                hash: settings_hash(&settings),
                settings,
                job: job.clone(),
            }
        })
        .collect()
}

impl<'a> Pass<'a> {
    /// Reads the manifests, counts this shard's documents (for progress)
    /// and, unless this is a dry run, opens the files it records into.
    fn open(
        s: &'a BatchSettings,
        printer: &'a Printer,
        out: &'a Path,
        planned: &'a [Planned],
        models: Models<'a>,
    ) -> Result<Self> {
        let index = Index::load(out)?;
        if index.damaged > 0 {
            printer.warn(format!(
                "{} manifest line(s) cut short by an earlier crash were skipped",
                index.damaged
            ));
        }
        let shard = s.shard;
        let total = walk(&s.selection)?
            .filter(|e| matches!(e, Entry::Document(f) if shard.owns(&f.relative)))
            .count();
        printer.info(format!(
            "{total} document(s){}, {} job(s) each",
            if shard.count > 1 {
                format!(" in shard {}", shard.label())
            } else {
                String::new()
            },
            planned.len()
        ));
        let stop = on_signals()?;
        let started = manifest::now();
        let (scratch, writer) = if s.dry_run {
            (None, None)
        } else {
            refuse_links(out)?;
            save_run(out, s, planned)?;
            (Some(Scratch::new(out)?), Some(Writer::open(out, shard)?))
        };
        Ok(Pass {
            s,
            printer,
            out,
            planned,
            models,
            index,
            writer,
            scratch,
            tally: Tally::default(),
            progress: Items::new(printer, total * planned.len()),
            stop,
            started,
        })
    }

    /// Does every item of this shard; `true` when a signal stopped it.
    fn walk(&mut self) -> Result<bool> {
        let shard = self.s.shard;
        for entry in walk(&self.s.selection)? {
            let flow = match entry {
                Entry::Document(f) if shard.owns(&f.relative) => self.document(&f)?,
                // A path that cannot be walked fails each of its jobs, in
                // the table and the manifest alike, in the one shard that
                // owns it.
                Entry::Problem { path, reason } if shard.owns(&path) => {
                    self.problem(&path, &reason)?;
                    ControlFlow::Continue(())
                }
                _ => ControlFlow::Continue(()),
            };
            if flow.is_break() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn problem(&mut self, path: &str, reason: &str) -> Result<()> {
        self.printer.warn(format!("{path}: {reason}"));
        for p in self.planned {
            self.tally.count(&p.key, FAILED);
            let failure = (path.to_string(), p.key.clone(), reason.to_string());
            self.tally.failures.push(failure);
            if let Some(w) = self.writer.as_mut() {
                w.append(&failed(path, p, self.s.shard, reason.to_string()))?;
            }
        }
        Ok(())
    }

    /// Every job of one document, until a signal says stop.
    fn document(&mut self, found: &Found) -> Result<ControlFlow<()>> {
        let bytes = read(found, self.s.max_bytes);
        let sha = bytes.as_ref().ok().map(|b| sha256_hex(b));
        for p in self.planned {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(ControlFlow::Break(()));
            }
            self.item(found, &bytes, sha.as_deref(), p)?;
        }
        Ok(ControlFlow::Continue(()))
    }

    /// One job on one document: skipped when up to date or another process
    /// has it, else made, written whole and recorded.
    fn item(
        &mut self,
        found: &Found,
        bytes: &Result<Vec<u8>, String>,
        sha: Option<&str>,
        p: &Planned,
    ) -> Result<()> {
        let (s, out) = (self.s, self.out);
        let name = format!("{} ({})", found.relative, p.key);
        self.progress.start(&name);
        let prev = self.index.get(&found.relative, &p.key);
        if !needed(s, prev, sha, &p.hash, out) {
            self.skip(&name, p, UP_TO_DATE, "up to date");
            return Ok(());
        }
        if s.dry_run {
            self.skip(&name, p, WOULD_RUN, "would run");
            return Ok(());
        }
        let Some(_lock) = lock_item(out, &found.relative, &p.key)? else {
            self.printer
                .warn(format!("{name}: another glot process is on it; left to it"));
            self.tally.busy += 1;
            return Ok(());
        };
        // Claiming the output re-reads the manifests: another process on
        // the same folder may have done the item meanwhile (with --force
        // too: then since this run began).
        let Some((path, _output_lock)) = claim_output(out, found, p, &mut self.index)? else {
            self.printer.warn(format!(
                "{name}: another glot process is writing its output; left to it"
            ));
            self.tally.busy += 1;
            return Ok(());
        };
        let prev = self.index.get(&found.relative, &p.key);
        let done_meanwhile = s.force
            && prev.is_some_and(|r| {
                r.finished >= self.started
                    && r.status != Status::Failed
                    && r.sha256.as_deref() == sha
                    && r.settings_hash == p.hash
            });
        if (!s.force && !needed(s, prev, sha, &p.hash, out)) || done_meanwhile {
            self.skip(&name, p, UP_TO_DATE, "up to date");
            return Ok(());
        }
        let start = Instant::now();
        let result = match (path, bytes) {
            (Ok(path), Ok(b)) => produce(&mut self.models, found, b, p, path),
            (Err(e), _) => Err(e),
            (_, Err(e)) => Err(anyhow::anyhow!("{e}")),
        };
        if let Err(e) = &result {
            if e.downcast_ref::<Fatal>().is_some() {
                self.progress.done();
                return result.map(|_| ());
            }
        }
        let result = result.and_then(|made| {
            let scratch = self.scratch.as_ref().expect("not a dry run");
            paths::prepare(out, &made.path)?;
            scratch.write(&made.path, &made.data)?;
            Ok(made)
        });
        let models = &self.models;
        if let (Ok(made), Some(chat), None) = (&result, models.chat.as_ref(), &models.used) {
            crate::speed::remember(chat.info(), &made.usage, &s.model, self.printer);
        }
        let record = self.record(found, sha, p, result, start);
        self.count(&record, found, p);
        let label = match record.status {
            Status::Done => "done".to_string(),
            Status::Copied => "copied (already in that language)".to_string(),
            Status::Failed => format!("failed ({})", record.error.as_deref().unwrap_or("")),
        };
        let work = record
            .tokens
            .as_ref()
            .map(|t| (t.generated, record.seconds));
        self.progress.finish(&name, &label, work);
        let writer = self.writer.as_mut().expect("not a dry run");
        writer.append(&record)?;
        self.index.add(&record);
        Ok(())
    }

    /// An item left as it is.
    fn skip(&mut self, name: &str, p: &Planned, what: usize, label: &str) {
        self.tally.count(&p.key, what);
        self.progress.finish(name, label, None);
    }

    /// An item's outcome, in the closing table.
    fn count(&mut self, record: &Record, found: &Found, p: &Planned) {
        match record.status {
            Status::Failed => {
                let err = record.error.clone().unwrap_or_default();
                let failure = (found.relative.clone(), p.key.clone(), err);
                self.tally.failures.push(failure);
                self.tally.count(&p.key, FAILED);
            }
            Status::Copied => self.tally.count(&p.key, COPIED),
            Status::Done => {
                self.tally.count(&p.key, DONE);
                if record.untranslated + record.wrong_language > 0 {
                    self.tally.flagged += 1;
                }
            }
        }
    }

    /// The closing table, and the exit: an error when stopped early or when
    /// any item failed.
    fn finish(self, interrupted: bool) -> Result<()> {
        self.progress.done();
        print_table(&self.tally, self.s.dry_run)?;
        if interrupted {
            return Err(glot::Error::Interrupted(
                "stopped before the end: run the same command again to finish".into(),
            )
            .into());
        }
        let failed = self.tally.failed();
        if failed > 0 {
            let why = match self.s.dry_run {
                true => format!("{failed} item(s) would fail (see the table)"),
                false => format!(
                    "{failed} item(s) failed (see the table and {})",
                    self.out.join(manifest::file_name(self.s.shard)).display()
                ),
            };
            return Err(glot::Error::BatchFailures(why).into());
        }
        Ok(())
    }
}

/// Sets a flag on the first SIGINT or SIGTERM and exits (130) on the second.
fn on_signals() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // In this order: the exit checks the flag before the first signal sets it.
        signal_hook::flag::register_conditional_shutdown(
            sig,
            i32::from(crate::exit::INTERRUPTED),
            Arc::clone(&stop),
        )?;
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    Ok(stop)
}

/// The document's bytes, unless it is too large or unreadable.
fn read(found: &Found, max_bytes: u64) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(&found.path)
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    if len > max_bytes {
        return Err(format!("is {len} bytes, more than --max-bytes {max_bytes}"));
    }
    // Bounded again as it is read: the file may have grown since.
    let file = std::fs::File::open(&found.path).map_err(|e| format!("cannot read: {e}"))?;
    glot::bounded::read_at_most(file, max_bytes)
        .map_err(|e| format!("cannot read: {e}"))?
        .ok_or_else(|| format!("grew past --max-bytes {max_bytes} while being read"))
}

/// Whether an item must run, given its latest record.
fn needed(
    s: &BatchSettings,
    prev: Option<&Seen>,
    sha: Option<&str>,
    hash: &str,
    out: &Path,
) -> bool {
    if s.force {
        return true;
    }
    if s.retry_failed {
        return prev.is_some_and(|r| r.status == Status::Failed);
    }
    let Some(r) = prev else { return true };
    let up_to_date = r.status != Status::Failed
        && r.sha256.as_deref() == sha
        && sha.is_some()
        && r.settings_hash == hash
        && r.output.as_ref().is_some_and(|o| out.join(o).is_file());
    !up_to_date
}

/// The item's output path, locked for this process, with the manifests
/// re-read under the lock: two documents whose outputs share a name
/// (`a.md`, `a.html`) must not overwrite each other, even from two shards. `Ok(None)` when another process holds the output;
/// `Ok(Some(Err(_)))` when the path is refused (it would leave `--out`, or
/// another document still present wrote it).
fn claim_output(
    out: &Path,
    found: &Found,
    p: &Planned,
    index: &mut Index,
) -> Result<Option<(Result<PathBuf>, Option<ItemLock>)>> {
    let path = match paths::output_path(out, &found.relative, |stem, ext| {
        p.job.output_name(stem, ext)
    }) {
        Ok(path) => path,
        Err(e) => return Ok(Some((Err(e.into()), None))),
    };
    let rel_out = relative_output(out, &path);
    let Some(lock) = lock_item(out, &rel_out, "output")? else {
        return Ok(None);
    };
    index.refresh()?;
    // Where the other document would be, if it still exists.
    let base = found
        .path
        .to_string_lossy()
        .strip_suffix(&found.relative)
        .map(PathBuf::from);
    let other = index
        .writer_of(&rel_out)
        .filter(|o| *o != found.relative)
        .filter(|o| base.as_ref().is_none_or(|b| b.join(o).exists()));
    match other {
        Some(other) => Ok(Some((
            Err(anyhow::anyhow!(
                "its output {rel_out} is written from {other}: rename one of them"
            )),
            Some(lock),
        ))),
        None => Ok(Some((Ok(path), Some(lock)))),
    }
}

/// What a job made of a document.
struct Made {
    status: Status,
    path: PathBuf,
    data: Vec<u8>,
    usage: Usage,
    /// Units left in the source language (translations).
    untranslated: usize,
    /// Units (translations) or the summary still in another language.
    wrong_language: usize,
    /// Units of a translation left in the source or kept with a doubt.
    flags: Vec<glot::task::translate::Flag>,
}

/// Runs one job on one document: the status, where the output goes, its
/// bytes, the tokens spent, and what did not come out as asked.
fn produce(
    models: &mut Models,
    found: &Found,
    bytes: &[u8],
    p: &Planned,
    path: PathBuf,
) -> Result<Made> {
    models.used = None;
    let s = models.s;
    let (text, _) = glot::input::decode(&found.relative, bytes, s.lossy)?;
    let format = s
        .format
        .unwrap_or_else(|| Format::from_path(&found.relative));
    let mut article = Article::parse(&found.relative, text, format)?;
    match &p.job {
        Job::Summarize { language, words } => {
            let language = language.as_ref().or(article.language());
            let length = summarize::Length { words: *words };
            let req = summarize::Request::new(language, length, false);
            let prompts = models.prompts;
            let sum = summarize::summarize(&mut models.chat()?, prompts, &article.main_text, &req)?;
            let mut text = sum.text;
            if !text.ends_with('\n') {
                text.push('\n');
            }
            Ok(Made {
                status: Status::Done,
                path,
                data: text.into_bytes(),
                usage: sum.usage,
                untranslated: 0,
                wrong_language: usize::from(sum.wrong_language),
                flags: Vec::new(),
            })
        }
        Job::Translate { target } => {
            let source = article.source(s.source.as_ref()).cloned();
            if source
                .as_ref()
                .is_some_and(|l| lang::same_language(&l.code, &target.code))
            {
                return Ok(Made {
                    status: Status::Copied,
                    path,
                    data: bytes.to_vec(),
                    usage: Usage::default(),
                    untranslated: 0,
                    wrong_language: 0,
                    flags: Vec::new(),
                });
            }
            article.markup.protect_terms(&s.glossary);
            let (markup, printer) = (&article.markup, models.printer);
            let t = match models.translator(source.as_ref(), target)? {
                Some(translator) => {
                    let t = translator.translate(markup, target, printer)?;
                    models.used = Some(translator.info());
                    t
                }
                None => {
                    let req = translate::Request::new(source.as_ref(), target);
                    let prompts = models.prompts;
                    translate::translate(&mut models.chat()?, prompts, markup, &req)?
                }
            };
            if t.untranslated > 0 {
                printer.warn(format!(
                    "{}: {} unit(s) left untranslated",
                    found.relative, t.untranslated
                ));
            }
            Ok(Made {
                status: Status::Done,
                path,
                data: t.text.into_bytes(),
                usage: t.usage,
                untranslated: t.untranslated,
                wrong_language: t.wrong_language,
                flags: t.flags,
            })
        }
    }
}

impl Models<'_> {
    fn resolved(&self) -> Result<&Resolved> {
        self.resolved
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the model's files were not found"))
    }

    /// The model that writes answers, loaded on first use and logging its
    /// calls with `-v`. A model that fails to load ends the batch: every
    /// item would fail the same way.
    fn chat(&mut self) -> Result<Logged<'_, &mut dyn glot::engine::ChatModel>> {
        if self.chat.is_none() {
            let chat = self.resolved()?.chat(&self.s.model, self.printer, true);
            self.chat = Some(chat.context(Fatal)?);
        }
        let chat = self.chat.as_mut().expect("just loaded");
        Ok(Logged::new(chat.model(), self.printer))
    }

    /// The translation model(s) for a language pair, loaded on first use;
    /// `None` when a chat model translates. A pair with no model fails the
    /// item; a model that cannot load, the batch.
    fn translator(
        &mut self,
        source: Option<&lang::Language>,
        target: &lang::Language,
    ) -> Result<Option<&mut Translator>> {
        let resolved = self.resolved()?;
        if !resolved.translates_sentences() {
            return Ok(None);
        }
        let key = resolved.translator_key(source, target);
        if !self.translators.contains_key(&key) {
            let legs = resolved
                .legs(source, target, self.printer)?
                .expect("a model that translates sentences");
            if self.translators.len() >= MAX_TRANSLATORS {
                self.translators.clear();
            }
            let loaded = Translator::load(legs, target, &self.s.model, self.printer);
            self.translators.insert(key.clone(), loaded.context(Fatal)?);
        }
        Ok(self.translators.get_mut(&key))
    }
}

/// Whether a job of the batch is a summary.
fn summarizes(s: &BatchSettings) -> bool {
    s.jobs.iter().any(|j| matches!(j, Job::Summarize { .. }))
}

/// What the jobs ask of the model: answers when any is a summary, else
/// translations.
fn need(s: &BatchSettings) -> Need {
    match summarizes(s) {
        true => Need::Answers,
        false => Need::Translations,
    }
}

/// Whether `e` refuses the model for what it was asked (rather than say its
/// files are missing).
fn is_refusal(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<glot::Error>(), Some(glot::Error::Usage(_)))
}

/// Translation models do not summarize: a batch that asks them to stops
/// before any work.
fn refuse_summaries(s: &BatchSettings) -> Result<()> {
    if summarizes(s) {
        return Err(glot::Error::Usage(format!(
            "{} is a translation model: --summarize needs a chat model (run the summaries separately)",
            s.model.spec.as_deref().unwrap_or_default()
        ))
        .into());
    }
    Ok(())
}

/// Marks an error that ends the whole batch rather than one item.
#[derive(Debug)]
struct Fatal;

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cannot load the model")
    }
}

fn relative_output(out: &Path, path: &Path) -> String {
    path.strip_prefix(out)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

impl Pass<'_> {
    /// The manifest's record of an item that took since `start`, made with
    /// the model that made it.
    fn record(
        &self,
        found: &Found,
        sha: Option<&str>,
        p: &Planned,
        result: Result<Made>,
        start: Instant,
    ) -> Record {
        let models = &self.models;
        let info = models
            .used
            .clone()
            .or_else(|| models.chat.as_ref().map(|m| m.info().clone()));
        let mut record = match result {
            Ok(made) => Record {
                status: made.status,
                error: None,
                output: Some(relative_output(self.out, &made.path)),
                tokens: Some(Tokens {
                    prompt: made.usage.prompt_tokens,
                    generated: made.usage.generated_tokens,
                    looped: made.usage.looped_calls,
                    loops_cut: made.usage.loops_cut,
                }),
                untranslated: made.untranslated,
                wrong_language: made.wrong_language,
                flags: made.flags,
                ..failed(&found.relative, p, self.s.shard, String::new())
            },
            Err(e) => {
                // Messages about the document start with its name: the
                // record names it already.
                let msg = format!("{e:#}");
                let prefix = format!("{}: ", found.relative);
                let msg = msg
                    .strip_prefix(&prefix)
                    .map_or(msg.clone(), str::to_string);
                failed(&found.relative, p, self.s.shard, msg)
            }
        };
        record.sha256 = sha.map(str::to_string);
        record.seconds = start.elapsed().as_secs_f64();
        record.model = info.as_ref().map(|i| i.id.clone());
        record.revision = info.as_ref().and_then(|i| i.revision.clone());
        // The files were read to load the model; should one have gone
        // since, the record goes without digests rather than fail a
        // finished document.
        record.files = info
            .and_then(|i| glot::hub::digests(&i.files).ok())
            .unwrap_or_default();
        record
    }
}

/// The record of job `p` failed on `input` (a document, or something the
/// walk could not read: a link loop, a folder without permission) for
/// `error`; what a finished item's record starts from.
fn failed(input: &str, p: &Planned, shard: Shard, error: String) -> Record {
    Record {
        input: input.to_string(),
        sha256: None,
        task: p.key.clone(),
        settings: p.settings.clone(),
        settings_hash: p.hash.clone(),
        model: None,
        revision: None,
        status: Status::Failed,
        error: Some(error),
        output: None,
        tokens: None,
        seconds: 0.0,
        finished: manifest::now(),
        shard: (shard.count > 1).then(|| shard.label()),
        untranslated: 0,
        wrong_language: 0,
        flags: Vec::new(),
        glot_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        files: Vec::new(),
    }
}

/// glot's own files in `out` are written in place: none may be a link
/// that would lead the writes elsewhere.
fn refuse_links(out: &Path) -> Result<()> {
    let mut own = vec![out.join(".glot")];
    if let Ok(entries) = std::fs::read_dir(out) {
        own.extend(entries.flatten().map(|e| e.path()).filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("manifest"))
        }));
    }
    if let Some(link) = own.iter().find(|p| p.is_symlink()) {
        return Err(glot::Error::Usage(format!(
            "{} is a symbolic link: glot writes its own files there only when they are real files",
            link.display()
        ))
        .into());
    }
    Ok(())
}

fn save_run(out: &Path, s: &BatchSettings, planned: &[Planned]) -> Result<()> {
    let run = RunFile {
        roots: s
            .selection
            .roots
            .iter()
            .map(|r| r.canonicalize().unwrap_or_else(|_| r.clone()))
            .collect(),
        include: s.selection.include.clone(),
        exclude: s.selection.exclude.clone(),
        follow: s.selection.follow,
        jobs: planned
            .iter()
            .map(|p| (p.key.clone(), p.hash.clone()))
            .collect(),
    };
    let dir = out.join(".glot");
    std::fs::create_dir_all(&dir)?;
    glot::output::write_atomic(&dir.join("run.json"), &serde_json::to_vec_pretty(&run)?)
}
