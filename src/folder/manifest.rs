//! The batch manifest: one JSON line per item and task, appended as each
//! finishes, in the output folder.
//!
//! A line is written in one piece and flushed to disk before the next item
//! starts, so a crash loses at most the item in flight; a line cut short by
//! one is skipped when reading. Each process writes its own file
//! (`manifest.jsonl`, or `manifest.shard-3-of-8.jsonl` for a shard), and
//! every file is read back together, so shards merge by simply being there
//! (or by `cat`-ing the files into one).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::shard::Shard;

/// How an item ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Output written.
    Done,
    /// Already in the target language: the input was copied as the output.
    Copied,
    /// Not done; `error` says why.
    Failed,
}

/// Tokens an item took.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tokens {
    pub prompt: usize,
    pub generated: usize,
    /// Model answers that fell into a loop and were asked again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub looped: usize,
    /// Answers kept cut at a loop (see `Usage::loops_cut`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub loops_cut: usize,
}

/// One manifest line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The document's path relative to its root, `/`-separated.
    pub input: String,
    /// SHA-256 of the input's bytes (absent when it could not be read).
    pub sha256: Option<String>,
    /// `summarize` or `translate:LANG`.
    pub task: String,
    /// The settings the task ran with, as given.
    pub settings: serde_json::Value,
    /// Digest of `settings`: a rerun redoes items whose settings changed.
    pub settings_hash: String,
    pub model: Option<String>,
    pub revision: Option<String>,
    pub status: Status,
    pub error: Option<String>,
    /// The output, relative to the output folder.
    pub output: Option<String>,
    pub tokens: Option<Tokens>,
    pub seconds: f64,
    /// When the item finished, in milliseconds since the Unix epoch.
    pub finished: u64,
    pub shard: Option<String>,
    /// Units of a translation kept in the source language because the
    /// model answered with nothing or broke their markup.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub untranslated: usize,
    /// Units of a translation (or 1 for a summary) still in another
    /// language than asked after being asked again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wrong_language: usize,
    /// Units of a translation left in the source or kept with a doubt, by
    /// line of the input.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<crate::task::translate::Flag>,
    /// The glot that wrote the line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glot_version: Option<String>,
    /// The model's files by content: with `settings` (prompts, decoding),
    /// what it takes to make the output again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<crate::hub::FileDigest>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The file this process appends to.
pub fn file_name(shard: Shard) -> String {
    if shard.count == 1 {
        "manifest.jsonl".into()
    } else {
        format!(
            "manifest.shard-{}-of-{}.jsonl",
            shard.index + 1,
            shard.count
        )
    }
}

/// Appends records to one manifest file.
pub struct Writer {
    file: std::fs::File,
    path: PathBuf,
}

impl Writer {
    pub fn open(out: &Path, shard: Shard) -> Result<Writer> {
        let path = out.join(file_name(shard));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .with_context(|| format!("cannot open the manifest {}", path.display()))?;
        // A line cut short by a crash must not swallow the next record.
        if !ends_with_newline(&mut file)? {
            file.write_all(b"\n")?;
        }
        Ok(Writer { file, path })
    }

    /// Appends `r` as one line and waits until it is on disk.
    pub fn append(&mut self, r: &Record) -> Result<()> {
        let mut line = serde_json::to_string(r)?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.sync_data())
            .with_context(|| format!("cannot write the manifest {}", self.path.display()))
    }
}

/// Whether `file` is empty or ends with a line break.
fn ends_with_newline(file: &mut std::fs::File) -> Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// What a rerun needs of a record: everything but its settings and
/// counts, so the index of a large batch stays small.
#[derive(Debug, Clone, Deserialize)]
pub struct Seen {
    pub sha256: Option<String>,
    pub settings_hash: String,
    pub status: Status,
    pub error: Option<String>,
    pub output: Option<String>,
    pub finished: u64,
    /// Which manifest file it came from ([`OWN`] for this process's).
    #[serde(skip)]
    from: usize,
}

/// Records this process appended: they follow what it read before.
const OWN: usize = usize::MAX;

/// A manifest line as the index reads it (other fields are skipped).
#[derive(Deserialize)]
struct Line {
    input: String,
    task: String,
    #[serde(flatten)]
    seen: Seen,
}

/// What the manifests say, per item and task: the latest record.
#[derive(Debug, Default)]
pub struct Index {
    latest: HashMap<(String, String), Seen>,
    /// Output path → (input that wrote it, when).
    outputs: HashMap<String, (String, u64)>,
    /// Lines that were not records (cut short by a crash).
    pub damaged: usize,
    dir: PathBuf,
    /// How far each manifest file has been read.
    offsets: HashMap<PathBuf, u64>,
    /// Manifest files by number, for [`Seen::from`].
    files: Vec<PathBuf>,
}

impl Index {
    /// Reads every `manifest*.jsonl` in `out` (none yet is fine).
    pub fn load(out: &Path) -> Result<Index> {
        let mut index = Index {
            dir: out.to_path_buf(),
            ..Index::default()
        };
        index.refresh()?;
        Ok(index)
    }

    /// Reads what was appended since the last read (by other processes
    /// too): complete lines only, so a line being written is read next time.
    pub fn refresh(&mut self) -> Result<()> {
        use std::io::{BufRead, Seek, SeekFrom};
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("manifest") && n.ends_with(".jsonl"))
            })
            .collect();
        files.sort();
        for f in files {
            let from = match self.files.iter().position(|k| *k == f) {
                Some(i) => i,
                None => {
                    self.files.push(f.clone());
                    self.files.len() - 1
                }
            };
            let mut offset = self.offsets.get(&f).copied().unwrap_or(0);
            let mut file = std::fs::File::open(&f)
                .with_context(|| format!("cannot read the manifest {}", f.display()))?;
            if file.metadata()?.len() <= offset {
                continue;
            }
            file.seek(SeekFrom::Start(offset))?;
            let mut reader = std::io::BufReader::new(file);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = reader
                    .read_until(b'\n', &mut line)
                    .with_context(|| format!("cannot read the manifest {}", f.display()))?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                offset += n as u64;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<Line>(&line) {
                    Ok(mut l) => {
                        l.seen.from = from;
                        self.insert(l.input, l.task, l.seen)
                    }
                    Err(_) => self.damaged += 1,
                }
            }
            self.offsets.insert(f, offset);
        }
        Ok(())
    }

    /// Adds a record this process just wrote.
    pub fn add(&mut self, r: &Record) {
        let seen = Seen {
            sha256: r.sha256.clone(),
            settings_hash: r.settings_hash.clone(),
            status: r.status,
            error: r.error.clone(),
            output: r.output.clone(),
            finished: r.finished,
            from: OWN,
        };
        self.insert(r.input.clone(), r.task.clone(), seen);
    }

    /// Keeps `seen` if it is the latest for its item and task: a later line
    /// of the same file or this process's own record always is; between
    /// files, the later finishing time (clocks of machines may differ, so
    /// order within a file never depends on them).
    fn insert(&mut self, input: String, task: String, seen: Seen) {
        if let Some(out) = seen
            .output
            .as_ref()
            .filter(|_| seen.status != Status::Failed)
        {
            let newer = self
                .outputs
                .get(out)
                .is_none_or(|(_, t)| *t <= seen.finished);
            if newer {
                self.outputs
                    .insert(out.clone(), (input.clone(), seen.finished));
            }
        }
        let key = (input, task);
        let newer = self.latest.get(&key).is_none_or(|old| {
            old.from == seen.from || seen.from == OWN || seen.finished >= old.finished
        });
        if newer {
            self.latest.insert(key, seen);
        }
    }

    /// The latest record of `input`'s `task`.
    pub fn get(&self, input: &str, task: &str) -> Option<&Seen> {
        self.latest.get(&(input.to_string(), task.to_string()))
    }

    /// Every latest record as (input, task, record), in no particular order.
    pub fn records(&self) -> impl Iterator<Item = (&str, &str, &Seen)> {
        self.latest
            .iter()
            .map(|((input, task), seen)| (input.as_str(), task.as_str(), seen))
    }

    /// The input that last wrote `output`, if any.
    pub fn writer_of(&self, output: &str) -> Option<&str> {
        self.outputs.get(output).map(|(input, _)| input.as_str())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(input: &str, status: Status, finished: u64) -> Record {
        Record {
            input: input.into(),
            sha256: Some("ab".into()),
            task: "summarize".into(),
            settings: serde_json::json!({}),
            settings_hash: "h".into(),
            model: None,
            revision: None,
            status,
            error: None,
            output: Some(format!("{input}.summary.md")),
            tokens: None,
            seconds: 0.0,
            finished,
            shard: None,
            untranslated: 0,
            wrong_language: 0,
            flags: Vec::new(),
            glot_version: None,
            files: Vec::new(),
        }
    }

    #[test]
    fn latest_records_win_and_cut_lines_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let mut w = Writer::open(d.path(), Shard::ALL).unwrap();
        w.append(&record("a.md", Status::Failed, 1)).unwrap();
        w.append(&record("a.md", Status::Done, 2)).unwrap();
        let mut shard = Writer::open(d.path(), Shard { index: 1, count: 2 }).unwrap();
        shard.append(&record("b.md", Status::Done, 3)).unwrap();
        // A crash in the middle of a line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.path().join("manifest.jsonl"))
            .unwrap();
        f.write_all(b"{\"input\":\"c.md\",\"sha").unwrap();
        // The next run's first record still gets a line of its own.
        let mut w = Writer::open(d.path(), Shard::ALL).unwrap();
        w.append(&record("d.md", Status::Done, 4)).unwrap();
        let index = Index::load(d.path()).unwrap();
        assert_eq!(index.get("d.md", "summarize").unwrap().finished, 4);
        assert_eq!(index.get("a.md", "summarize").unwrap().status, Status::Done);
        assert_eq!(index.get("b.md", "summarize").unwrap().finished, 3);
        assert!(index.get("c.md", "summarize").is_none());
        assert_eq!(index.damaged, 1);
        assert_eq!(index.writer_of("b.md.summary.md"), Some("b.md"));
        assert!(d.path().join("manifest.shard-2-of-2.jsonl").is_file());
    }
}
