//! `glot batch`: every document of a selection, each job once.
//!
//! The walk runs twice, lazily: once to count (for progress), once to work.
//! The model loads only when a document actually needs it, so a rerun with
//! nothing left to do is as fast as the walk. Each finished item is written
//! whole (scratch file, then rename) and then recorded; Ctrl-C or SIGTERM
//! stops after the current item (the items begun, with `--parallel`), a
//! second signal stops at once, and either way the outputs and the
//! manifest stay consistent. With `--parallel` and a chat model that
//! decodes calls together, up to that many documents are worked on at once
//! ([`Pass::together`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use anyhow::{Context, Result};
use glot::digest::sha256_hex;
use glot::engine::shared::{Client, Hub, Stopped};
use glot::engine::{ChatModel, ModelInfo};
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
    translators: HashMap<String, Translator>,
    /// The chat model's, once loaded (while it serves documents decoded
    /// together, `chat` is lent out).
    chat_info: Option<ModelInfo>,
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
        translators: HashMap::new(),
        chat_info: None,
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
    /// Once an item has loaded a chat model that decodes calls together,
    /// the rest go [`Pass::together`].
    fn walk(&mut self) -> Result<bool> {
        let mut units = units(self.s, self.planned)?;
        while let Some(unit) = units.next() {
            let (doc, p) = match unit {
                Unit::Item(doc, p) => (doc, p),
                Unit::Problem { path, reason } => {
                    self.problem(&path, &reason)?;
                    continue;
                }
            };
            if self.stop.load(Ordering::SeqCst) {
                return Ok(true);
            }
            let Some((claimed, path)) = self.claim(&doc, p)? else {
                continue;
            };
            let ctx = self.ctx();
            let made = make(&mut self.models, ctx, &doc, p, path);
            self.conclude(&doc, p, claimed, made)?;
            if self.documents_together() {
                return self.together(&mut units);
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

    /// What every job is made with.
    fn ctx(&self) -> Ctx<'a> {
        Ctx {
            s: self.s,
            prompts: self.models.prompts,
            printer: self.printer,
        }
    }

    /// Whether documents go to the model together: with `--parallel` above
    /// 1 and a chat model, loaded by now, that decodes calls together.
    fn documents_together(&self) -> bool {
        self.s.model.parallel > 1
            && matches!(&self.models.chat, Some(Chat::Llm(m)) if m.decodes_together())
    }

    /// The rest of the walk, up to `--parallel` documents at a time, each
    /// on a thread of its own whose calls decode beside the others'
    /// ([`glot::engine::Llm::serve`]). Items are recorded as they finish; a
    /// signal stops the taking of new ones and lets those begun end.
    fn together(&mut self, units: &mut dyn Iterator<Item = Unit<'a>>) -> Result<bool> {
        let mut chat = self.models.chat.take().expect("loaded to decide");
        let Chat::Llm(llm) = &mut chat else {
            unreachable!("only a decoder-only model decodes together")
        };
        let out = llm.serve(|hub| self.pipeline(hub, units));
        self.models.chat = Some(chat);
        out?
    }

    fn pipeline(&mut self, hub: &Hub, units: &mut dyn Iterator<Item = Unit<'a>>) -> Result<bool> {
        let ctx = self.ctx();
        let width = hub.width().max(1);
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<(usize, Result<Made>)>();
            let mut running: HashMap<usize, InFlight> = HashMap::new();
            let (mut ticket, mut stopped, mut ended) = (0, false, false);
            // The first error ends the taking of items; those begun are
            // still recorded, then it is returned.
            let mut failure: Option<anyhow::Error> = None;
            loop {
                while failure.is_none() && running.len() < width && !ended {
                    let (doc, p) = match units.next() {
                        None => {
                            ended = true;
                            break;
                        }
                        Some(Unit::Problem { path, reason }) => {
                            if let Err(e) = self.problem(&path, &reason) {
                                failure = Some(e);
                            }
                            continue;
                        }
                        Some(Unit::Item(doc, p)) => (doc, p),
                    };
                    if self.stop.load(Ordering::SeqCst) {
                        (stopped, ended) = (true, true);
                        break;
                    }
                    // Two documents with one output name (`a.md`, `a.html`)
                    // go one after the other, as they do one at a time: the
                    // second then finds the first's record.
                    let output = output_of(self.out, &doc.found, p);
                    while output.is_some() && running.values().any(|f| f.output == output) {
                        let (done, made) = rx.recv().expect("this end holds a sender");
                        let item = running.remove(&done).expect("an item in flight");
                        if let Err(e) = self.conclude(&item.doc, item.p, item.claimed, made) {
                            failure.get_or_insert(e);
                        }
                    }
                    let claimed = match self.claim(&doc, p) {
                        Ok(Some(claimed)) => claimed,
                        Ok(None) => continue,
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    };
                    let (claimed, path) = claimed;
                    let (tx, theirs, client) = (tx.clone(), Arc::clone(&doc), hub.client());
                    let t = ticket;
                    let worker = move || {
                        let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            let mut asking = Asking {
                                client,
                                printer: ctx.printer,
                            };
                            make(&mut asking, ctx, &theirs, p, path)
                        }))
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("internal error (see above)")));
                        // The receiver is gone only when the batch failed.
                        let _ = tx.send((t, made));
                    };
                    // The stack of the main thread: documents are parsed
                    // recursively.
                    let spawned = std::thread::Builder::new()
                        .stack_size(8 << 20)
                        .spawn_scoped(scope, worker);
                    if let Err(e) = spawned {
                        failure = Some(anyhow::Error::new(e).context("cannot start a thread"));
                        break;
                    }
                    running.insert(
                        t,
                        InFlight {
                            doc,
                            p,
                            claimed,
                            output,
                        },
                    );
                    ticket += 1;
                }
                if running.is_empty() {
                    return failure.map_or(Ok(stopped), Err);
                }
                let (t, made) = rx.recv().expect("this end holds a sender");
                let item = running.remove(&t).expect("an item in flight");
                if let Err(e) = self.conclude(&item.doc, item.p, item.claimed, made) {
                    failure.get_or_insert(e);
                }
            }
        })
    }

    /// Takes one job on one document: `None` when it is up to date or
    /// another process has it, else its locks and where its output goes.
    fn claim(&mut self, doc: &Doc, p: &Planned) -> Result<Option<(Claimed, Result<PathBuf>)>> {
        let (s, out) = (self.s, self.out);
        let (found, sha) = (&doc.found, doc.sha.as_deref());
        let name = format!("{} ({})", found.relative, p.key);
        self.progress.start(&name);
        let prev = self.index.get(&found.relative, &p.key);
        if !needed(s, prev, sha, &p.hash, out) {
            self.skip(&name, p, UP_TO_DATE, "up to date");
            return Ok(None);
        }
        if s.dry_run {
            self.skip(&name, p, WOULD_RUN, "would run");
            return Ok(None);
        }
        let Some(lock) = lock_item(out, &found.relative, &p.key)? else {
            self.printer
                .warn(format!("{name}: another glot process is on it; left to it"));
            self.tally.busy += 1;
            return Ok(None);
        };
        // Claiming the output re-reads the manifests: another process on
        // the same folder may have done the item meanwhile (with --force
        // too: then since this run began).
        let Some((path, output_lock)) = claim_output(out, found, p, &mut self.index)? else {
            self.printer.warn(format!(
                "{name}: another glot process is writing its output; left to it"
            ));
            self.tally.busy += 1;
            return Ok(None);
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
            return Ok(None);
        }
        let claimed = Claimed {
            name,
            _locks: (lock, output_lock),
            start: Instant::now(),
        };
        Ok(Some((claimed, path)))
    }

    /// A made (or failed) item written whole and recorded.
    fn conclude(
        &mut self,
        doc: &Doc,
        p: &Planned,
        claimed: Claimed,
        made: Result<Made>,
    ) -> Result<()> {
        let (s, out) = (self.s, self.out);
        if let Err(e) = &made {
            // A model that cannot load or has stopped fails every item
            // alike: the batch ends, and this item stays to do.
            if e.downcast_ref::<Fatal>().is_some() || e.downcast_ref::<Stopped>().is_some() {
                self.progress.done();
                return made.map(|_| ());
            }
        }
        let used = made.as_ref().ok().and_then(|m| m.used.clone());
        let made = made.and_then(|made| {
            let scratch = self.scratch.as_ref().expect("not a dry run");
            paths::prepare(out, &made.path)?;
            scratch.write(&made.path, &made.data)?;
            Ok(made)
        });
        if let (Ok(made), Some(chat)) = (&made, &self.models.chat_info) {
            if made.used.is_none() {
                crate::speed::remember(chat, &made.usage, &s.model, self.printer);
            }
        }
        let record = self.record(doc, p, made, used, claimed.start);
        self.count(&record, &doc.found, p);
        let label = match record.status {
            Status::Done => "done".to_string(),
            Status::Copied => "copied (already in that language)".to_string(),
            Status::Failed => format!("failed ({})", record.error.as_deref().unwrap_or("")),
        };
        let work = record
            .tokens
            .as_ref()
            .map(|t| (t.generated, record.seconds));
        self.progress.finish(&claimed.name, &label, work);
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

/// A document, read once for all its jobs.
struct Doc {
    found: Found,
    bytes: Result<Vec<u8>, String>,
    sha: Option<String>,
}

/// One step of the walk: a job on a document, or a path that could not be
/// walked (which fails each of its jobs, in the table and the manifest
/// alike, in the one shard that owns it).
enum Unit<'p> {
    Item(Arc<Doc>, &'p Planned),
    Problem { path: String, reason: String },
}

/// This shard's units, in the order of the walk; each document is read as
/// the walk reaches it.
fn units<'p>(
    s: &'p BatchSettings,
    planned: &'p [Planned],
) -> Result<impl Iterator<Item = Unit<'p>> + 'p> {
    let (shard, max_bytes) = (s.shard, s.max_bytes);
    Ok(walk(&s.selection)?.flat_map(move |entry| match entry {
        Entry::Document(found) if shard.owns(&found.relative) => {
            let bytes = read(&found, max_bytes);
            let sha = bytes.as_ref().ok().map(|b| sha256_hex(b));
            let doc = Arc::new(Doc { found, bytes, sha });
            planned
                .iter()
                .map(|p| Unit::Item(Arc::clone(&doc), p))
                .collect()
        }
        Entry::Problem { path, reason } if shard.owns(&path) => {
            vec![Unit::Problem { path, reason }]
        }
        _ => Vec::new(),
    }))
}

/// An item this process is making: its locks, held until it is recorded.
struct Claimed {
    name: String,
    _locks: (ItemLock, Option<ItemLock>),
    start: Instant,
}

/// An item a thread is making.
struct InFlight<'p> {
    doc: Arc<Doc>,
    p: &'p Planned,
    claimed: Claimed,
    /// Where its output goes, when the path is allowed.
    output: Option<PathBuf>,
}

/// Where job `p`'s output of `found` goes, if the path is allowed.
fn output_of(out: &Path, found: &Found, p: &Planned) -> Option<PathBuf> {
    paths::output_path(out, &found.relative, |stem, ext| {
        p.job.output_name(stem, ext)
    })
    .ok()
}

/// What every job is made with.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    s: &'a BatchSettings,
    prompts: &'a Prompts,
    printer: &'a Printer,
}

/// Where a job's answers come from: the models of the run, or, for a
/// document decoded beside others, its share of the chat model.
trait Answers {
    /// The model that writes answers, logging its calls with `-v`.
    fn chat(&mut self) -> Result<Logged<'_, &mut dyn ChatModel>>;
    /// The translation model(s) for a language pair; `None` when a chat
    /// model translates.
    fn translator(
        &mut self,
        source: Option<&lang::Language>,
        target: &lang::Language,
    ) -> Result<Option<&mut Translator>>;
}

/// A document's share of a chat model that serves several.
struct Asking<'a, 'h> {
    client: Client<'h>,
    printer: &'a Printer,
}

impl Answers for Asking<'_, '_> {
    fn chat(&mut self) -> Result<Logged<'_, &mut dyn ChatModel>> {
        Ok(Logged::new(&mut self.client, self.printer))
    }

    fn translator(
        &mut self,
        _: Option<&lang::Language>,
        _: &lang::Language,
    ) -> Result<Option<&mut Translator>> {
        Ok(None)
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
    /// The model that made it, when not the chat model.
    used: Option<ModelInfo>,
}

/// One job on one document, unless its output path was refused or the
/// document could not be read.
fn make(
    answers: &mut dyn Answers,
    ctx: Ctx,
    doc: &Doc,
    p: &Planned,
    path: Result<PathBuf>,
) -> Result<Made> {
    match (path, &doc.bytes) {
        (Ok(path), Ok(b)) => produce(answers, ctx, &doc.found, b, p, path),
        (Err(e), _) => Err(e),
        (_, Err(e)) => Err(anyhow::anyhow!("{e}")),
    }
}

/// Runs one job on one document: the status, where the output goes, its
/// bytes, the tokens spent, and what did not come out as asked.
fn produce(
    answers: &mut dyn Answers,
    ctx: Ctx,
    found: &Found,
    bytes: &[u8],
    p: &Planned,
    path: PathBuf,
) -> Result<Made> {
    let Ctx {
        s,
        prompts,
        printer,
    } = ctx;
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
            let sum =
                summarize::summarize(&mut answers.chat()?, prompts, &article.main_text, &req)?;
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
                used: None,
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
                    used: None,
                });
            }
            article.markup.protect_terms(&s.glossary);
            let markup = &article.markup;
            let (t, used) = match answers.translator(source.as_ref(), target)? {
                Some(translator) => {
                    let t = translator.translate(markup, target, printer)?;
                    (t, Some(translator.info()))
                }
                None => {
                    let req = translate::Request::new(source.as_ref(), target);
                    let t = translate::translate(&mut answers.chat()?, prompts, markup, &req)?;
                    (t, None)
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
                used,
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
}

impl Answers for Models<'_> {
    /// Loaded on first use. A model that fails to load ends the batch:
    /// every item would fail the same way.
    fn chat(&mut self) -> Result<Logged<'_, &mut dyn ChatModel>> {
        if self.chat.is_none() {
            let chat = self.resolved()?.chat(&self.s.model, self.printer, true);
            let chat = chat.context(Fatal)?;
            self.chat_info = Some(chat.info().clone());
            self.chat = Some(chat);
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
        doc: &Doc,
        p: &Planned,
        result: Result<Made>,
        used: Option<ModelInfo>,
        start: Instant,
    ) -> Record {
        let (found, sha) = (&doc.found, doc.sha.as_deref());
        let info = used.or_else(|| self.models.chat_info.clone());
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
