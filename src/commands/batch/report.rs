//! What a batch did or what its manifests say: the closing table of a run
//! and `glot batch --status`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use glot::digest::sha256_hex;
use glot::folder::manifest::{Index, Status};
use glot::folder::walk::{walk, Entry, Selection};
use serde::{Deserialize, Serialize};

/// What the run did, for the closing table.
#[derive(Default)]
pub(super) struct Tally {
    /// Per job key: done, copied, up to date, failed, would run (dry run).
    pub jobs: Vec<(String, [usize; 5])>,
    pub failures: Vec<(String, String, String)>,
    pub busy: usize,
    /// Items done with parts untranslated or in another language.
    pub flagged: usize,
}

pub(super) const DONE: usize = 0;
pub(super) const COPIED: usize = 1;
pub(super) const UP_TO_DATE: usize = 2;
pub(super) const FAILED: usize = 3;
pub(super) const WOULD_RUN: usize = 4;

impl Tally {
    pub fn count(&mut self, key: &str, what: usize) {
        match self.jobs.iter_mut().find(|(k, _)| k == key) {
            Some((_, c)) => c[what] += 1,
            None => {
                let mut c = [0; 5];
                c[what] = 1;
                self.jobs.push((key.to_string(), c));
            }
        }
    }

    pub fn failed(&self) -> usize {
        self.jobs.iter().map(|(_, c)| c[FAILED]).sum::<usize>()
    }
}

/// What `glot batch --status` needs to know about the last run.
#[derive(Serialize, Deserialize)]
pub(super) struct RunFile {
    pub roots: Vec<PathBuf>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// `--follow` (absent in runs from before it existed).
    #[serde(default)]
    pub follow: bool,
    /// (job key, settings hash)
    pub jobs: Vec<(String, String)>,
}

pub(super) fn print_table(t: &Tally, dry_run: bool) -> Result<()> {
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
    if t.flagged > 0 {
        s.push_str(&format!(
            "{} item(s) are done with parts left untranslated or in another language (`untranslated`, `wrong_language` in the manifest)\n",
            t.flagged
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
pub fn status(out: &Path, json: bool) -> Result<()> {
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
        let sel = Selection {
            roots: run.roots.clone(),
            include: run.include.clone(),
            exclude: run.exclude.clone(),
            out: out.to_path_buf(),
            follow: run.follow,
        };
        for (key, _) in &run.jobs {
            pending.push((key.clone(), 0));
        }
        for entry in walk(&sel)? {
            let f = match entry {
                Entry::Document(f) => f,
                Entry::Problem { path, reason } => {
                    for (key, _) in &run.jobs {
                        tally.count(key, FAILED);
                        tally
                            .failures
                            .push((path.clone(), key.clone(), reason.clone()));
                    }
                    continue;
                }
                Entry::Skipped => continue,
            };
            let sha = std::fs::read(&f.path).ok().map(|b| sha256_hex(&b));
            for (i, (key, hash)) in run.jobs.iter().enumerate() {
                match index.get(&f.relative, key) {
                    Some(r) if r.status == Status::Failed => {
                        tally.count(key, FAILED);
                        let err = r.error.clone().unwrap_or_default();
                        tally.failures.push((f.relative.clone(), key.clone(), err));
                    }
                    Some(r)
                        if r.sha256 == sha
                            && &r.settings_hash == hash
                            && r.output.as_ref().is_some_and(|o| out.join(o).is_file()) =>
                    {
                        tally.count(
                            key,
                            if r.status == Status::Copied {
                                COPIED
                            } else {
                                DONE
                            },
                        )
                    }
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
    let mut keys: Vec<String> = tally.jobs.iter().map(|(k, _)| k.clone()).collect();
    for (k, _) in &pending {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    tally.failures.sort();
    let jobs: Vec<JobStatus> = keys
        .into_iter()
        .map(|job| {
            let c = tally
                .jobs
                .iter()
                .find(|(k, _)| *k == job)
                .map_or([0; 5], |(_, c)| *c);
            let pending = pending.iter().find(|(k, _)| *k == job).map(|(_, n)| *n);
            JobStatus {
                job,
                done: c[DONE],
                copied: c[COPIED],
                failed: c[FAILED],
                pending,
            }
        })
        .collect();
    if json {
        let failures: Vec<serde_json::Value> = tally
            .failures
            .iter()
            .map(|(input, job, error)| serde_json::json!({"input": input, "job": job, "error": error}))
            .collect();
        let report = serde_json::json!({ "jobs": jobs, "failures": failures });
        let text = format!("{}\n", serde_json::to_string_pretty(&report)?);
        return glot::output::emit(None, &text);
    }
    let mut s = format!(
        "{:<16} {:>6} {:>7} {:>7} {:>8}\n",
        "JOB", "DONE", "COPIED", "FAILED", "PENDING"
    );
    for j in &jobs {
        let pending = j.pending.map_or_else(|| "?".to_string(), |n| n.to_string());
        s.push_str(&format!(
            "{:<16} {:>6} {:>7} {:>7} {pending:>8}\n",
            j.job, j.done, j.copied, j.failed
        ));
    }
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

/// One job's line of `glot batch --status`.
#[derive(Serialize)]
struct JobStatus {
    job: String,
    done: usize,
    copied: usize,
    failed: usize,
    /// Unknown (`null`) without a record of the inputs.
    pending: Option<usize>,
}
