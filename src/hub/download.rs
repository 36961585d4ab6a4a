//! Files from the Hugging Face Hub through hf-hub, cache first.
//!
//! hf-hub keeps the standard cache layout (`models--owner--name/{blobs,
//! refs,snapshots}`), so models fetched by Python tools are reused. On top
//! of it this module adds what glot promises: a cached file is used without
//! touching the network; `HF_HUB_OFFLINE`/`--offline` are honoured; a hub
//! that stops answering is given up on instead of hanging; every fresh LFS
//! blob is checked against its SHA-256; hub errors become sentences.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use hf_hub::progress::{DownloadEvent, ProgressEvent, ProgressHandler};
use hf_hub::{HFClientBuilder, HFClientSync, HFError};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Receives download progress; implemented by the binary (bars or lines).
pub trait DownloadProgress: Send + Sync {
    /// A file of `total` bytes starts downloading.
    fn start(&self, repo: &str, file: &str, total: u64);
    /// `done` of its bytes have arrived.
    fn advance(&self, file: &str, done: u64);
    /// The file is complete (or failed).
    fn finish(&self, file: &str);
}

/// One file of one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef<'a> {
    pub repo: &'a str,
    pub revision: &'a str,
    pub file: &'a str,
    /// Names what asked for the file (a manifest path, `--model hf:…`), for errors.
    pub origin: &'a str,
    /// What `glot models download …` would fetch it, for offline errors.
    pub model: &'a str,
}

/// Seconds without any answer from the hub before a download is given up,
/// overridable with `GLOT_HUB_TIMEOUT`.
const DEFAULT_IDLE_TIMEOUT: u64 = 30;

/// Fetches files, from the cache when it has them.
pub struct Fetcher {
    client: OnceLock<Client>,
    offline: bool,
    idle_timeout: Duration,
    progress: Option<Arc<dyn DownloadProgress>>,
}

impl Fetcher {
    /// `offline` (or `HF_HUB_OFFLINE=1`) forbids any network access.
    pub fn new(offline: bool, progress: Option<Arc<dyn DownloadProgress>>) -> Self {
        let env_offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            })
            .unwrap_or(false);
        let idle = std::env::var("GLOT_HUB_TIMEOUT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_IDLE_TIMEOUT);
        Fetcher {
            client: OnceLock::new(),
            offline: offline || env_offline,
            idle_timeout: Duration::from_secs(idle.max(1)),
            progress,
        }
    }

    fn client(&self) -> Result<&Client> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        // hf-hub's own HEAD client has no timeouts; the idle watchdog below
        // covers it, these cover the downloads themselves.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(self.idle_timeout)
            .user_agent(concat!("glot/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        let setup = |e: HFError| Error::model(format!("cannot set up the hub client: {e}"));
        let inner = HFClientBuilder::new()
            .client(http)
            .retry_max_attempts(2)
            .build()
            .map_err(setup)?;
        let client = Client {
            endpoint: inner.endpoint().to_string(),
            cache_dir: inner.cache_dir().to_path_buf(),
            sync: HFClientSync::from_inner(inner).map_err(setup)?,
        };
        Ok(self.client.get_or_init(|| client))
    }

    /// The hub cache folder in use (`HF_HUB_CACHE`, else `HF_HOME/hub`).
    pub fn cache_dir(&self) -> Result<PathBuf> {
        Ok(self.client()?.cache_dir.clone())
    }

    /// The cached path of a file, without any network access. `Ok(None)`:
    /// not cached; `Err`: the cache records that the file does not exist.
    pub fn cached(&self, f: &FileRef) -> Result<Option<PathBuf>, HFError> {
        let (owner, name) = f.repo.split_once('/').unwrap_or((f.repo, ""));
        let repo = self
            .client()
            .map_err(|e| HFError::Other(e.to_string()))?
            .sync
            .model(owner, name);
        match repo
            .download_file()
            .filename(f.file)
            .revision(f.revision)
            .local_files_only(true)
            .send()
        {
            Ok(p) => Ok(Some(p)),
            Err(HFError::LocalEntryNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The local path of a file: from the cache, else downloaded. A missing
    /// optional file is `Ok(None)`.
    pub fn fetch(&self, f: &FileRef, required: bool) -> Result<Option<PathBuf>> {
        match self.cached(f) {
            Ok(Some(p)) => return Ok(Some(p)),
            Ok(None) => {}
            Err(HFError::EntryNotFound { .. }) if !required => return Ok(None),
            Err(_) => {}
        }
        if self.offline {
            if !required {
                return Ok(None);
            }
            return Err(Error::model(format!(
                "{} from {} is not in the cache and glot is offline: run `glot models download {}` with the network on",
                f.file, f.repo, f.model
            ))
            .into());
        }
        match self.download(f, false) {
            Ok(d) => Ok(Some(d.path)),
            Err(e) if !required && is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Asks the hub for the current version of a file even when one is
    /// cached (`glot models download`); falls back to the cache with a
    /// warning printed by `warn` if the hub cannot be reached.
    pub fn refresh(&self, f: &FileRef, warn: &dyn Fn(&str)) -> Result<PathBuf> {
        if self.offline {
            return self.fetch(f, true).map(|p| p.expect("required file"));
        }
        match self.download(f, false) {
            // hf-hub itself falls back to the cache when the hub is unreachable.
            Ok(d) if !d.hub_answered => {
                warn(&format!(
                    "cannot reach the hub; using the cached {} of {}",
                    f.file, f.repo
                ));
                Ok(d.path)
            }
            Ok(d) => Ok(d.path),
            Err(e) if is_network(&e) => match self.cached(f) {
                Ok(Some(p)) => {
                    warn(&format!(
                        "cannot reach the hub ({e:#}); using the cached {}",
                        f.file
                    ));
                    Ok(p)
                }
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Downloads through hf-hub on a worker thread watched for silence.
    fn download(&self, f: &FileRef, force: bool) -> Result<Downloaded> {
        let client = self.client()?;
        let (owner, name) = f.repo.split_once('/').unwrap_or((f.repo, ""));
        let repo = client.sync.model(owner, name);
        let activity = Arc::new(AtomicU64::new(0));
        let answered = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let handler = Watch {
            activity: activity.clone(),
            answered: answered.clone(),
            started,
            repo: f.repo.to_string(),
            file: f.file.to_string(),
            progress: self.progress.clone(),
        };
        let (tx, rx) = mpsc::channel();
        let (file, revision) = (f.file.to_string(), f.revision.to_string());
        let wall_start = SystemTime::now();
        std::thread::spawn(move || {
            let result = repo
                .download_file()
                .filename(file)
                .revision(revision)
                .force_download(force)
                .progress(handler)
                .send();
            let _ = tx.send(result);
        });
        let result = loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(r) => break r,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("the download of {} stopped unexpectedly", f.file)
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let last = Duration::from_millis(activity.load(Ordering::Relaxed));
                    if started.elapsed().saturating_sub(last) > self.idle_timeout {
                        if let Some(p) = &self.progress {
                            p.finish(f.file);
                        }
                        return Err(Error::model(format!(
                            "the hub at {} sent nothing for {}s while fetching {} from {}: check the network, or use --offline with a cached model",
                            client.endpoint,
                            self.idle_timeout.as_secs(),
                            f.file,
                            f.repo
                        ))
                        .into());
                    }
                }
            }
        };
        if let Some(p) = &self.progress {
            p.finish(f.file);
        }
        let path = result.map_err(|e| explain(e, f, &client.endpoint))?;
        verify_if_fresh(&path, wall_start, f)?;
        Ok(Downloaded {
            path,
            hub_answered: answered.load(Ordering::Relaxed),
        })
    }
}

/// A file hf-hub handed back, and whether the hub took part.
struct Downloaded {
    path: PathBuf,
    hub_answered: bool,
}

/// The hub client and what glot reports about it.
struct Client {
    endpoint: String,
    cache_dir: PathBuf,
    sync: HFClientSync,
}

/// Feeds the watchdog and the user's progress display.
struct Watch {
    activity: Arc<AtomicU64>,
    answered: Arc<AtomicBool>,
    started: Instant,
    repo: String,
    file: String,
    progress: Option<Arc<dyn DownloadProgress>>,
}

impl ProgressHandler for Watch {
    fn on_progress(&self, event: &ProgressEvent) {
        self.activity
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        // `Complete` also follows hf-hub's silent fallback to the cache; the
        // other events only follow an answer from the hub.
        if !matches!(event, ProgressEvent::Download(DownloadEvent::Complete)) {
            self.answered.store(true, Ordering::Relaxed);
        }
        let (Some(p), ProgressEvent::Download(ev)) = (&self.progress, event) else {
            return;
        };
        match ev {
            DownloadEvent::Start { total_bytes, .. } => {
                p.start(&self.repo, &self.file, *total_bytes)
            }
            DownloadEvent::Progress { files } => {
                for f in files {
                    p.advance(&self.file, f.bytes_completed);
                }
            }
            DownloadEvent::AggregateProgress {
                bytes_completed, ..
            } => p.advance(&self.file, *bytes_completed),
            DownloadEvent::Complete => {}
        }
    }
}

fn is_not_found(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<Error>(), Some(Error::HubNotFound(_)))
}

fn is_network(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<Error>(), Some(Error::HubUnreachable(_)))
}

/// Turns hf-hub's errors into sentences that name the repo, the file and
/// where they came from, and say what to do. Never includes the token.
fn explain(e: HFError, f: &FileRef, endpoint: &str) -> anyhow::Error {
    let what = format!("{} (revision {}) of {}", f.file, f.revision, f.repo);
    let from = format!("asked for by {}", f.origin);
    match e {
        HFError::AuthRequired { .. } | HFError::Forbidden { .. } => Error::model(format!(
            "the hub refused {what} ({from}): the repository is gated or private (or does not exist); accept its terms on the hub if it is gated, then set HF_TOKEN to a read token"
        ))
        .into(),
        HFError::RepoNotFound { .. } => {
            Error::HubNotFound(format!("repository {} not found on the hub ({from})", f.repo)).into()
        }
        HFError::RevisionNotFound { .. } => Error::HubNotFound(format!(
            "revision {} of {} not found on the hub ({from})",
            f.revision, f.repo
        ))
        .into(),
        HFError::EntryNotFound { .. } => {
            Error::HubNotFound(format!("{what} not found on the hub ({from})")).into()
        }
        HFError::Request { source, .. } => Error::HubUnreachable(format!(
            "cannot fetch {what} from {endpoint}: {}",
            request_reason(&source)
        ))
        .into(),
        HFError::Io(io) => Error::HubUnreachable(format!("cannot fetch {what}: {io}")).into(),
        other => Error::HubUnreachable(format!("cannot fetch {what} from {endpoint}: {other}")).into(),
    }
}

fn request_reason(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

/// Where a snapshot link points. Another process fetching the same file
/// replaces the link (remove, then create): a moment without it is waited
/// out rather than reported.
fn resolve_link(path: &Path) -> Result<PathBuf> {
    let mut tries = 0;
    loop {
        match std::fs::canonicalize(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.with_context(|| format!("cannot open {}", path.display())),
        }
    }
}

/// Checks a blob that this call wrote against the SHA-256 in its name (LFS
/// files are stored under their hash); a mismatch removes it.
fn verify_if_fresh(path: &Path, since: SystemTime, f: &FileRef) -> Result<()> {
    let blob = resolve_link(path)?;
    let Some(expected) = blob
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
    else {
        return Ok(());
    };
    let fresh = std::fs::metadata(&blob)
        .and_then(|m| m.modified())
        .map(|m| m >= since - Duration::from_secs(1))
        .unwrap_or(true);
    if !fresh || expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    let actual = sha256_file(&blob)?;
    if actual != expected {
        let _ = std::fs::remove_file(&blob);
        let _ = std::fs::remove_file(path);
        return Err(Error::model(format!(
            "{} from {} failed its integrity check (SHA-256 {actual}, the hub says {expected}); the corrupt download was deleted: run the command again",
            f.file, f.repo
        ))
        .into());
    }
    Ok(())
}

/// SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(crate::digest::hex(&hasher.finalize()))
}
