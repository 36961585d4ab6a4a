//! `glot batch`: every document of a selection, each job once.
//!
//! The walk runs twice, lazily: once to count (for progress), once to work.
//! The model loads only when a document actually needs it, so a rerun with
//! nothing left to do is as fast as the walk. Each finished item is written
//! whole (scratch file, then rename) and then recorded; Ctrl-C or SIGTERM
//! stops after the current item, a second signal stops at once, and either
//! way the outputs and the manifest stay consistent.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use glot::batch::lock::{lock_item, Scratch};
use glot::batch::manifest::{self, Index, Record, Seen, Status, Tokens, Writer};
use glot::batch::walk::{walk, Entry, Found};
use glot::batch::{paths, settings_hash, sha256_hex, Job};
use glot::engine::Llm;
use glot::markup::{Format, Markup};
use glot::prompt::Prompts;
use glot::task::{summarize, translate, Usage};
use glot::text::lang;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{load_model, Logged};
use crate::printer::Printer;
use crate::progress::Items;
use crate::settings::BatchSettings;

/// A job with what its records are keyed by.
struct Planned {
    job: Job,
    key: String,
    settings: serde_json::Value,
    hash: String,
}

/// What the run did, for the closing table.
#[derive(Default)]
struct Tally {
    /// Per job key: done, copied, up to date, failed, would run (dry run).
    jobs: Vec<(String, [usize; 5])>,
    failures: Vec<(String, String, String)>,
    busy: usize,
    problems: usize,
}

const DONE: usize = 0;
const COPIED: usize = 1;
const UP_TO_DATE: usize = 2;
const FAILED: usize = 3;
const WOULD_RUN: usize = 4;

impl Tally {
    fn count(&mut self, key: &str, what: usize) {
        match self.jobs.iter_mut().find(|(k, _)| k == key) {
            Some((_, c)) => c[what] += 1,
            None => {
                let mut c = [0; 5];
                c[what] = 1;
                self.jobs.push((key.to_string(), c));
            }
        }
    }

    fn failed(&self) -> usize {
        self.jobs.iter().map(|(_, c)| c[FAILED]).sum::<usize>() + self.problems
    }
}

/// What `glot batch --status` needs to know about the last run.
#[derive(Serialize, Deserialize)]
struct RunFile {
    roots: Vec<PathBuf>,
    include: Vec<String>,
    exclude: Vec<String>,
    /// (job key, settings hash)
    jobs: Vec<(String, String)>,
}

/// Everything one item needs besides itself.
struct Run<'a> {
    s: &'a BatchSettings,
    printer: &'a Printer,
    prompts: &'a Prompts,
    out: &'a Path,
    model: Option<Llm>,
}

pub fn run(s: BatchSettings, printer: &Printer) -> Result<()> {
    let out = s.selection.out.clone();
    if !s.dry_run {
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create the output folder {}", out.display()))?;
    }
    let prompts = Prompts::load(s.prompts.as_deref())?;
    let common = json!({
        "model": s.model.spec,
        "tokenizer": s.model.tokenizer,
        "max_context": s.model.load.max_context,
        "sampling": s.model.sampling.map(|x| json!([x.temperature, x.top_p, x.seed])),
        "input_format": s.format.map(Format::name),
        "lossy": s.lossy,
        "source": s.source.as_ref().map(|l| &l.code),
        "prompts": prompts.fingerprint(),
    });
    let planned: Vec<Planned> = s
        .jobs
        .iter()
        .map(|job| {
            let settings = job.settings(&common);
            Planned {
                key: job.key(),
                hash: settings_hash(&settings),
                settings,
                job: job.clone(),
            }
        })
        .collect();
    let mut index = Index::load(&out)?;
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
    let (scratch, mut writer) = if s.dry_run {
        (None, None)
    } else {
        save_run(&out, &s, &planned)?;
        (Some(Scratch::new(&out)?), Some(Writer::open(&out, shard)?))
    };
    let mut cx = Run {
        s: &s,
        printer,
        prompts: &prompts,
        out: &out,
        model: None,
    };
    let mut tally = Tally::default();
    let progress = Items::new(printer, total * planned.len());
    let mut interrupted = false;
    'walk: for entry in walk(&s.selection)? {
        let found = match entry {
            Entry::Document(f) if shard.owns(&f.relative) => f,
            Entry::Problem { path, reason } => {
                printer.warn(format!("{path}: {reason}"));
                tally.problems += 1;
                continue;
            }
            _ => continue,
        };
        let bytes = read(&found, s.max_bytes);
        let sha = bytes.as_ref().ok().map(|b| sha256_hex(b));
        for p in &planned {
            if stop.load(Ordering::SeqCst) {
                interrupted = true;
                break 'walk;
            }
            let name = format!("{} ({})", found.relative, p.key);
            progress.start(&name);
            let prev = index.get(&found.relative, &p.key);
            if !needed(&s, prev, sha.as_deref(), &p.hash, &out) {
                tally.count(&p.key, UP_TO_DATE);
                progress.finish(&name, "up to date", None);
                continue;
            }
            if s.dry_run {
                tally.count(&p.key, WOULD_RUN);
                progress.finish(&name, "would run", None);
                continue;
            }
            let Some(_lock) = lock_item(&out, &found.relative, &p.key)? else {
                printer.warn(format!("{name}: another glot process is on it; left to it"));
                tally.busy += 1;
                continue;
            };
            // Another process on the same folder may have done it meanwhile.
            index.refresh()?;
            let prev = index.get(&found.relative, &p.key);
            if !needed(&s, prev, sha.as_deref(), &p.hash, &out) && !s.force {
                tally.count(&p.key, UP_TO_DATE);
                progress.finish(&name, "up to date", None);
                continue;
            }
            let start = Instant::now();
            let result = match &bytes {
                Ok(b) => produce(&mut cx, &found, b, p, &index),
                Err(e) => Err(anyhow::anyhow!("{e}")),
            };
            let result = match result {
                Err(e) if e.downcast_ref::<Fatal>().is_some() => {
                    progress.done();
                    return Err(e);
                }
                other => other,
            };
            let result = result.and_then(|(status, path, data, usage)| {
                let scratch = scratch.as_ref().expect("not a dry run");
                paths::prepare(&out, &path)?;
                scratch.write(&path, &data)?;
                Ok((status, path, usage))
            });
            let record = record(&cx, &found, sha.clone(), p, result, start, shard);
            match record.status {
                Status::Failed => {
                    let err = record.error.clone().unwrap_or_default();
                    tally
                        .failures
                        .push((found.relative.clone(), p.key.clone(), err));
                    tally.count(&p.key, FAILED);
                }
                Status::Copied => tally.count(&p.key, COPIED),
                Status::Done => tally.count(&p.key, DONE),
            }
            let label = match record.status {
                Status::Done => "done".to_string(),
                Status::Copied => "copied (already in that language)".to_string(),
                Status::Failed => format!("failed ({})", record.error.as_deref().unwrap_or("")),
            };
            progress.finish(
                &name,
                &label,
                record
                    .tokens
                    .as_ref()
                    .map(|t| (t.generated, record.seconds)),
            );
            writer.as_mut().expect("not a dry run").append(&record)?;
            index.add(&record);
        }
    }
    progress.done();
    print_table(&tally, s.dry_run)?;
    if interrupted {
        return Err(glot::Error::Interrupted(
            "stopped before the end: run the same command again to finish".into(),
        )
        .into());
    }
    let failed = tally.failed();
    if failed > 0 {
        return Err(glot::Error::BatchFailures(format!(
            "{failed} item(s) failed (see the table and {})",
            out.join(manifest::file_name(shard)).display()
        ))
        .into());
    }
    Ok(())
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
    std::fs::read(&found.path).map_err(|e| format!("cannot read: {e}"))
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

/// Runs one job on one document: the status, where the output goes, its
/// bytes, and the tokens spent.
fn produce(
    cx: &mut Run,
    found: &Found,
    bytes: &[u8],
    p: &Planned,
    index: &Index,
) -> Result<(Status, PathBuf, Vec<u8>, Usage)> {
    let path = paths::output_path(cx.out, &found.relative, |stem, ext| {
        p.job.output_name(stem, ext)
    })?;
    let rel_out = relative_output(cx.out, &path);
    if let Some(other) = index.writer_of(&rel_out).filter(|o| *o != found.relative) {
        anyhow::bail!("its output {rel_out} was already written from {other}: rename one of them");
    }
    let (text, _) = glot::input::decode(&found.relative, bytes, cx.s.lossy)?;
    let format =
        cx.s.format
            .unwrap_or_else(|| Format::from_path(&found.relative));
    let markup = Markup::parse(text, format);
    if markup.units().is_empty() {
        return Err(glot::Error::input(
            &found.relative,
            format!("has no text to work on (read as {})", format.name()),
        )
        .into());
    }
    let detected = lang::detect(&markup.prose(true));
    let reliable = detected
        .as_ref()
        .and_then(|d| d.reliable_language())
        .cloned();
    match &p.job {
        Job::Summarize { language, words } => {
            let language = language.clone().or(reliable);
            let req = summarize::Request {
                language: language.as_ref().map(|l| l.name.clone()),
                language_code: language.as_ref().map(|l| l.code.clone()),
                length: summarize::Length { words: *words },
            };
            let (printer, prompts) = (cx.printer, cx.prompts);
            let model = model(cx)?;
            let sum = summarize::summarize(
                &mut Logged {
                    model,
                    printer,
                    calls: 0,
                },
                prompts,
                &markup.prose(true),
                &req,
            )?;
            let mut text = sum.text;
            if !text.ends_with('\n') {
                text.push('\n');
            }
            Ok((Status::Done, path, text.into_bytes(), sum.usage))
        }
        Job::Translate { target } => {
            let source = cx.s.source.clone().or(reliable);
            if source
                .as_ref()
                .is_some_and(|l| lang::same_language(&l.code, &target.code))
            {
                return Ok((Status::Copied, path, bytes.to_vec(), Usage::default()));
            }
            let req = translate::Request {
                target: target.name.clone(),
                target_code: Some(target.code.clone()),
                source: source.map(|l| l.name),
            };
            let (printer, prompts) = (cx.printer, cx.prompts);
            let model = model(cx)?;
            let t = translate::translate(
                &mut Logged {
                    model,
                    printer,
                    calls: 0,
                },
                prompts,
                &markup,
                &req,
            )?;
            if t.untranslated > 0 {
                printer.warn(format!(
                    "{}: {} unit(s) left untranslated",
                    found.relative, t.untranslated
                ));
            }
            Ok((Status::Done, path, t.text.into_bytes(), t.usage))
        }
    }
}

/// The model, loaded on first use. A model that fails to load ends the
/// batch: every item would fail the same way.
fn model<'a>(cx: &'a mut Run) -> Result<&'a mut Llm> {
    if cx.model.is_none() {
        let llm = load_model(&cx.s.model, cx.printer, true).context(Fatal)?;
        cx.model = Some(llm);
    }
    Ok(cx.model.as_mut().expect("just loaded"))
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

fn record(
    cx: &Run,
    found: &Found,
    sha: Option<String>,
    p: &Planned,
    result: Result<(Status, PathBuf, Usage)>,
    start: Instant,
    shard: glot::batch::shard::Shard,
) -> Record {
    let info = cx.model.as_ref().map(|m| m.info());
    let (status, error, output, tokens) = match result {
        Ok((status, path, usage)) => (
            status,
            None,
            Some(relative_output(cx.out, &path)),
            Some(Tokens {
                prompt: usage.prompt_tokens,
                generated: usage.generated_tokens,
            }),
        ),
        Err(e) => {
            // Messages about the document start with its name: the record
            // names it already.
            let msg = format!("{e:#}");
            let prefix = format!("{}: ", found.relative);
            let msg = msg
                .strip_prefix(&prefix)
                .map_or(msg.clone(), str::to_string);
            (Status::Failed, Some(msg), None, None)
        }
    };
    Record {
        input: found.relative.clone(),
        sha256: sha,
        task: p.key.clone(),
        settings: p.settings.clone(),
        settings_hash: p.hash.clone(),
        model: info.map(|i| i.id.clone()),
        revision: info.and_then(|i| i.revision.clone()),
        status,
        error,
        output,
        tokens,
        seconds: start.elapsed().as_secs_f64(),
        finished: manifest::now(),
        shard: (shard.count > 1).then(|| shard.label()),
    }
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
        jobs: planned
            .iter()
            .map(|p| (p.key.clone(), p.hash.clone()))
            .collect(),
    };
    let dir = out.join(".glot");
    std::fs::create_dir_all(&dir)?;
    glot::output::write_atomic(&dir.join("run.json"), &serde_json::to_vec_pretty(&run)?)
}

fn print_table(t: &Tally, dry_run: bool) -> Result<()> {
    let mut s = if dry_run {
        format!("{:<16} {:>9} {:>10}\n", "JOB", "WOULD RUN", "UP TO DATE")
    } else {
        format!(
            "{:<16} {:>6} {:>7} {:>10} {:>7}\n",
            "JOB", "DONE", "COPIED", "UP TO DATE", "FAILED"
        )
    };
    for (key, c) in &t.jobs {
        if dry_run {
            s.push_str(&format!(
                "{key:<16} {:>9} {:>10}\n",
                c[WOULD_RUN], c[UP_TO_DATE]
            ));
        } else {
            s.push_str(&format!(
                "{key:<16} {:>6} {:>7} {:>10} {:>7}\n",
                c[DONE], c[COPIED], c[UP_TO_DATE], c[FAILED]
            ));
        }
    }
    for (input, key, err) in &t.failures {
        s.push_str(&format!("failed: {input} ({key}): {err}\n"));
    }
    if t.problems > 0 {
        s.push_str(&format!(
            "{} path(s) could not be walked (see the warnings)\n",
            t.problems
        ));
    }
    if t.busy > 0 {
        s.push_str(&format!(
            "{} item(s) were being done by another process\n",
            t.busy
        ));
    }
    glot::output::emit(None, &s)
}

/// `glot batch --status DIR`: the manifests against the last run's inputs.
pub fn status(out: &Path) -> Result<()> {
    if !out.is_dir() {
        return Err(glot::Error::Usage(format!("{} is not a folder", out.display())).into());
    }
    let index = Index::load(out)?;
    let run: Option<RunFile> = std::fs::read(out.join(".glot").join("run.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut tally = Tally::default();
    let mut pending: Vec<(String, usize)> = Vec::new();
    if let Some(run) = &run {
        let sel = glot::batch::walk::Selection {
            roots: run.roots.clone(),
            include: run.include.clone(),
            exclude: run.exclude.clone(),
            out: out.to_path_buf(),
        };
        for (key, _) in &run.jobs {
            pending.push((key.clone(), 0));
        }
        for entry in walk(&sel)? {
            let Entry::Document(f) = entry else { continue };
            let sha = std::fs::read(&f.path).ok().map(|b| sha256_hex(&b));
            for (i, (key, hash)) in run.jobs.iter().enumerate() {
                match index.get(&f.relative, key) {
                    Some(r) if r.status == Status::Failed => {
                        tally.count(key, FAILED);
                        let err = r.error.clone().unwrap_or_default();
                        tally.failures.push((f.relative.clone(), key.clone(), err));
                    }
                    Some(r) if r.sha256 == sha && &r.settings_hash == hash => tally.count(
                        key,
                        if r.status == Status::Copied {
                            COPIED
                        } else {
                            DONE
                        },
                    ),
                    _ => pending[i].1 += 1,
                }
            }
        }
    } else {
        for (input, task, r) in index.records() {
            match r.status {
                Status::Failed => {
                    tally.count(task, FAILED);
                    let err = r.error.clone().unwrap_or_default();
                    tally
                        .failures
                        .push((input.to_string(), task.to_string(), err));
                }
                Status::Copied => tally.count(task, COPIED),
                Status::Done => tally.count(task, DONE),
            }
        }
    }
    let mut s = format!(
        "{:<16} {:>6} {:>7} {:>7} {:>8}\n",
        "JOB", "DONE", "COPIED", "FAILED", "PENDING"
    );
    let mut keys: Vec<String> = tally.jobs.iter().map(|(k, _)| k.clone()).collect();
    for (k, _) in &pending {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    for key in keys {
        let c = tally
            .jobs
            .iter()
            .find(|(k, _)| *k == key)
            .map_or([0; 5], |(_, c)| *c);
        let p = pending
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, n)| n.to_string());
        s.push_str(&format!(
            "{key:<16} {:>6} {:>7} {:>7} {:>8}\n",
            c[DONE],
            c[COPIED],
            c[FAILED],
            p.unwrap_or_else(|| "?".into())
        ));
    }
    tally.failures.sort();
    for (input, key, err) in &tally.failures {
        s.push_str(&format!("failed: {input} ({key}): {err}\n"));
    }
    if run.is_none() {
        s.push_str(
            "(no record of the inputs in .glot/run.json: pending documents are not known)\n",
        );
    }
    glot::output::emit(None, &s)
}
