//! `glot models`: list, inspect, download and remove models.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use glot::hub::download::{Fetcher, FileRef};
use glot::hub::manifest::{Catalog, Manifest};
use glot::hub::opus_mt::{parse_pair, Registry, Route};
use glot::hub::seq2seq_files::{Family, Seq2SeqFiles};
use glot::hub::{self, ModelRef};
use glot::Error;
use indicatif::HumanBytes;
use serde::Serialize;

use crate::cli::{Format, ModelsCommand};
use crate::model::fetcher;
use crate::printer::Printer;
use crate::settings::ModelsSettings;

pub fn run(s: ModelsSettings, printer: &Printer) -> Result<()> {
    let catalog = crate::model::catalog(printer)?;
    let fetcher = fetcher(s.offline, printer);
    match s.command {
        ModelsCommand::List { format } => list(&catalog, &fetcher, format),
        ModelsCommand::Info { model, format } => info(&catalog, &fetcher, &model, format),
        ModelsCommand::Download { model, format } => {
            let ready = download(&catalog, &fetcher, model.as_deref(), printer)?;
            let cache = fetcher.cache_dir()?;
            let text: String = ready.iter().map(|r| r.line(&cache)).collect();
            let report = serde_json::json!({ "models": ready, "cache": cache });
            emit(format, &text, &report)
        }
        ModelsCommand::Remove { model, format } => {
            let removed = remove(&catalog, &fetcher, &model)?;
            emit(format, &removed.line(), &removed)
        }
        ModelsCommand::Pairs { language, format } => pairs(language.as_deref(), format),
    }
}

#[derive(Serialize)]
struct PairRow<'a> {
    from: &'a str,
    to: &'a str,
    repo: &'a str,
    revision: &'a str,
    target_token: Option<&'a str>,
}

/// The registry, or what it has from and into one language.
fn pairs(language: Option<&str>, format: Format) -> Result<()> {
    let registry = Registry::builtin();
    let code = match language {
        Some(l) => Some(glot::text::lang::resolve(l)?.code),
        None => None,
    };
    let rows: Vec<PairRow> = registry
        .pairs
        .iter()
        .filter(|p| {
            code.as_deref().is_none_or(|c| {
                registry.from_language(c).any(|q| std::ptr::eq(q, *p))
                    || registry.into_language(c).any(|q| std::ptr::eq(q, *p))
            })
        })
        .map(|p| PairRow {
            from: &p.from,
            to: &p.to,
            repo: &p.repo,
            revision: &p.revision,
            target_token: p.target_token.as_deref(),
        })
        .collect();
    if format == Format::Json {
        let mut json = serde_json::to_string_pretty(&rows)?;
        json.push('\n');
        return glot::output::emit(None, &json);
    }
    let mut out = String::new();
    for r in &rows {
        out.push_str(&format!(
            "{:<8} {:<8} {}@{}{}\n",
            r.from,
            r.to,
            r.repo,
            r.revision,
            r.target_token.map(|t| format!(" {t}")).unwrap_or_default()
        ));
    }
    if let Some(c) = &code {
        let into: Vec<&str> = registry.into_language(c).map(|p| p.from.as_str()).collect();
        let from: Vec<&str> = registry.from_language(c).map(|p| p.to.as_str()).collect();
        let list = |v: &[&str]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(" ")
            }
        };
        out.push_str(&format!(
            "\n{c} → {}; {} → {c}; other pairs with {c} go through English when both halves exist\n",
            list(&from),
            list(&into),
        ));
    }
    glot::output::emit(None, &out)
}

fn manifest<'a>(catalog: &'a Catalog, name: &str) -> Result<&'a Manifest> {
    catalog.find(name).ok_or_else(|| {
        let ids: Vec<&str> = catalog.manifests.iter().map(|m| m.id.as_str()).collect();
        Error::model(format!(
            "unknown model `{name}` (known: {})",
            ids.join(", ")
        ))
        .into()
    })
}

fn file_ref<'a>(
    m: &'a Manifest,
    repo: &'a glot::hub::manifest::RepoFiles,
    file: &'a str,
    origin: &'a str,
) -> FileRef<'a> {
    FileRef {
        repo: &repo.repo,
        revision: &repo.revision,
        file,
        origin,
        model: &m.id,
    }
}

/// Cached path of each of the manifest's files, in order.
fn cached_files(m: &Manifest, fetcher: &Fetcher) -> Vec<Option<PathBuf>> {
    let origin = format!("manifest {}", m.origin);
    m.files()
        .into_iter()
        .map(|(repo, file)| {
            fetcher
                .cached(&file_ref(m, repo, file, &origin))
                .ok()
                .flatten()
        })
        .collect()
}

#[derive(Serialize)]
struct Row<'a> {
    id: &'a str,
    aliases: &'a [String],
    default: bool,
    name: &'a str,
    family: &'a str,
    tasks: &'a [String],
    languages: &'a [String],
    size_bytes: u64,
    license: &'a str,
    gated: bool,
    /// "yes", "partly" or "no".
    cached: &'static str,
}

fn cached_state(files: &[Option<PathBuf>]) -> &'static str {
    match files.iter().filter(|f| f.is_some()).count() {
        0 => "no",
        n if n == files.len() => "yes",
        _ => "partly",
    }
}

fn list(catalog: &Catalog, fetcher: &Fetcher, format: Format) -> Result<()> {
    let rows: Vec<Row> = catalog
        .manifests
        .iter()
        .map(|m| Row {
            id: &m.id,
            aliases: &m.aliases,
            default: m.default,
            name: &m.name,
            family: &m.family,
            tasks: &m.tasks,
            languages: &m.languages,
            size_bytes: m.size_bytes,
            license: &m.license,
            gated: m.gated,
            cached: cached_state(&cached_files(m, fetcher)),
        })
        .collect();
    let out = if format == Format::Json {
        serde_json::to_string_pretty(&rows)? + "\n"
    } else {
        let label = |r: &Row| {
            if r.default {
                format!("{} *", r.id)
            } else {
                r.id.to_string()
            }
        };
        let wid = rows
            .iter()
            .map(|r| label(r).len())
            .max()
            .unwrap_or(0)
            .max(2);
        let wfam = rows
            .iter()
            .map(|r| r.family.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let mut t = format!(
            "{:<wid$} {:<wfam$} {:<20} {:>9} {:>9} {:<12} {:<6} {}\n",
            "ID", "FAMILY", "TASKS", "LANGUAGES", "SIZE", "LICENSE", "GATED", "CACHED"
        );
        for r in &rows {
            t.push_str(&format!(
                "{:<wid$} {:<wfam$} {:<20} {:>9} {:>9} {:<12} {:<6} {}\n",
                label(r),
                r.family,
                r.tasks.join(","),
                r.languages.len(),
                HumanBytes(r.size_bytes).to_string(),
                r.license,
                if r.gated { "yes" } else { "no" },
                r.cached
            ));
        }
        t.push_str("* default model\n");
        t
    };
    glot::output::emit(None, &out)
}

#[derive(Serialize)]
struct FileInfo<'a> {
    repo: &'a str,
    revision: &'a str,
    file: &'a str,
    cached: Option<PathBuf>,
}

#[derive(Serialize)]
struct Info<'a> {
    #[serde(flatten)]
    manifest: &'a Manifest,
    origin: &'a str,
    cache_dir: PathBuf,
    files: Vec<FileInfo<'a>>,
}

fn info(catalog: &Catalog, fetcher: &Fetcher, name: &str, format: Format) -> Result<()> {
    let m = manifest(catalog, name)?;
    let cached = cached_files(m, fetcher);
    let files: Vec<FileInfo> = m
        .files()
        .into_iter()
        .zip(cached)
        .map(|((repo, file), cached)| FileInfo {
            repo: &repo.repo,
            revision: &repo.revision,
            file,
            cached,
        })
        .collect();
    let info = Info {
        manifest: m,
        origin: &m.origin,
        cache_dir: fetcher.cache_dir()?,
        files,
    };
    let out = if format == Format::Json {
        serde_json::to_string_pretty(&info)? + "\n"
    } else {
        let mut t = format!("{} — {}\n", m.id, m.name);
        if !m.aliases.is_empty() {
            t.push_str(&format!("aliases:        {}\n", m.aliases.join(", ")));
        }
        t.push_str(&format!("architecture:   {}", m.architecture));
        if let Some(q) = &m.quantization {
            t.push_str(&format!(" ({q})"));
        }
        t.push_str(&format!(
            "\ncontext length: {}\nsize:           about {}\nlicense:        {}{}\ntasks:          {}\nlanguages:      {}\nmanifest:       {}\ncache:          {}\nfiles:\n",
            m.context_length,
            HumanBytes(m.size_bytes),
            m.license,
            if m.gated { " (gated: needs HF_TOKEN)" } else { "" },
            m.tasks.join(", "),
            m.languages.join(" "),
            m.origin,
            info.cache_dir.display()
        ));
        for f in &info.files {
            t.push_str(&format!(
                "  {}@{} {}\n    {}\n",
                f.repo,
                f.revision,
                f.file,
                f.cached
                    .as_ref()
                    .map_or("not cached".to_string(), |p| p.display().to_string())
            ));
        }
        t
    };
    glot::output::emit(None, &out)
}

/// A model whose files are in the cache.
#[derive(Serialize)]
struct Ready {
    id: String,
    /// `SRC→TGT` of an opus-mt pair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pair: Option<String>,
    files: Vec<PathBuf>,
    bytes: u64,
}

impl Ready {
    fn new(id: &str, pair: Option<String>, files: Vec<PathBuf>) -> Ready {
        let bytes = files
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
        Ready {
            id: id.to_string(),
            pair,
            files,
            bytes,
        }
    }

    fn line(&self, cache: &Path) -> String {
        let pair = self
            .pair
            .as_ref()
            .map_or_else(String::new, |p| format!(" ({p})"));
        format!(
            "{}{pair}: {} file(s), {}, ready in {}\n",
            self.id,
            self.files.len(),
            HumanBytes(self.bytes),
            cache.display()
        )
    }
}

/// Writes `text`, or `report` as JSON.
fn emit<T: Serialize>(format: Format, text: &str, report: &T) -> Result<()> {
    match format {
        Format::Text => glot::output::emit(None, text),
        Format::Json => {
            let mut json = serde_json::to_string_pretty(report)?;
            json.push('\n');
            glot::output::emit(None, &json)
        }
    }
}

/// Fetches what the cache lacks of the model `name` names (both models of
/// an opus-mt pair that goes through English).
fn download(
    catalog: &Catalog,
    fetcher: &Fetcher,
    name: Option<&str>,
    printer: &Printer,
) -> Result<Vec<Ready>> {
    let warn = |msg: &str| printer.warn(msg);
    if let Some((from, to)) = name.and_then(parse_pair) {
        let registry = Registry::builtin();
        let pairs = match registry.route(from, to)? {
            Route::Direct(p) => vec![p],
            Route::Pivot(a, b) => vec![a, b],
        };
        return pairs
            .into_iter()
            .map(|p| {
                let files = crate::model::translator::fetch_pair(p, fetcher)?;
                let pair = format!("{}→{}", p.from, p.to);
                Ok(Ready::new(&files.id, Some(pair), files.all()))
            })
            .collect();
    }
    let ready = match hub::model_ref(name, catalog)? {
        ModelRef::Local(p) => {
            return Err(Error::Usage(format!(
                "`{p}` is a local path: there is nothing to download"
            ))
            .into())
        }
        ModelRef::Manifest(m) => {
            let origin = format!("manifest {}", m.origin);
            let files = m
                .files()
                .into_iter()
                .map(|(repo, file)| fetcher.refresh(&file_ref(m, repo, file, &origin), &warn))
                .collect::<Result<Vec<_>>>()?;
            Ready::new(&m.id, None, files)
        }
        ModelRef::Hub(h) => {
            let spec = name.unwrap_or_default();
            let origin = format!("glot models download {spec}");
            // A repository as a whole may hold a translation model; a
            // named file is a chat model's.
            let family = match h.file {
                None => Family::of_repo(&h.repo, &h.revision, fetcher, &origin, spec)?,
                Some(_) => None,
            };
            match family {
                Some(family) => {
                    let files = Seq2SeqFiles::from_hub(spec, family, &h, fetcher, &origin)?;
                    Ready::new(&files.id, None, files.all())
                }
                None => {
                    let files = hub::resolve(name, None, catalog, fetcher)?;
                    Ready::new(&files.id, None, files.all())
                }
            }
        }
    };
    Ok(vec![ready])
}

/// Deletes the snapshot links of the model's files and the blobs that no
/// other link in the cache still points to. A file another model uses is
/// kept (see [`kept_for_others`]).
fn remove(catalog: &Catalog, fetcher: &Fetcher, name: &str) -> Result<Removed> {
    let m = manifest(catalog, name)?;
    let cached = cached_files(m, fetcher);
    let shared = kept_for_others(catalog, m, &cached);
    let mut removed_blobs = Vec::new();
    let mut repo_dirs = HashSet::new();
    let mut kept = 0;
    for link in cached.into_iter().flatten() {
        if shared.contains(&link) {
            kept += 1;
            continue;
        }
        let blob = std::fs::canonicalize(&link).ok();
        std::fs::remove_file(&link).with_context(|| format!("cannot remove {}", link.display()))?;
        if let Some(dir) = repo_dir(&link) {
            repo_dirs.insert(dir);
        }
        removed_blobs.extend(blob);
    }
    let mut still_used = HashSet::new();
    for dir in &repo_dirs {
        collect_link_targets(&dir.join("snapshots"), &mut still_used);
    }
    let mut freed = 0;
    for blob in removed_blobs {
        if !still_used.contains(&blob) {
            freed += std::fs::metadata(&blob).map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(&blob)
                .with_context(|| format!("cannot remove {}", blob.display()))?;
        }
    }
    for dir in &repo_dirs {
        prune_empty_dirs(&dir.join("snapshots"));
    }
    Ok(Removed {
        id: m.id.clone(),
        freed_bytes: freed,
        kept_files: kept,
    })
}

/// What `glot models remove` did.
#[derive(Serialize)]
struct Removed {
    id: String,
    freed_bytes: u64,
    /// Files of the model kept because other models use them.
    kept_files: usize,
}

impl Removed {
    fn line(&self) -> String {
        let note = match self.kept_files {
            0 => String::new(),
            n => format!(" ({n} file(s) kept: other models use them)"),
        };
        format!(
            "{}: freed {}{note}\n",
            self.id,
            HumanBytes(self.freed_bytes)
        )
    }
}

/// The cached files of `m` (`cached`, as [`cached_files`] gives them) that
/// another model still uses, so that removing `m` breaks no other:
/// - files another catalog model lists, cached or not;
/// - files of an opus-mt pair, or of a hub model of `m`'s repositories
///   (`hf:OWNER/NAME`, and `hf:OWNER/NAME:FILE` for each other GGUF file
///   of the snapshot), that the cache holds whole and that has files `m`
///   does not: a model downloaded in its own right, not `m` under another
///   name (whose files are all `m`'s, and go with it).
///
/// Hub models are resolved as glot would resolve them offline; files other
/// tools use without any of these names are not known here.
fn kept_for_others(
    catalog: &Catalog,
    m: &Manifest,
    cached: &[Option<PathBuf>],
) -> HashSet<PathBuf> {
    let mine: Vec<PathBuf> = cached.iter().flatten().cloned().collect();
    let mut kept = HashSet::new();
    let listed: HashSet<(&str, &str)> = catalog
        .manifests
        .iter()
        .filter(|o| o.id != m.id)
        .flat_map(|o| o.files().into_iter().map(|(r, f)| (r.repo.as_str(), f)))
        .collect();
    for ((repo, file), link) in m.files().into_iter().zip(cached) {
        if let Some(link) = link
            .as_ref()
            .filter(|_| listed.contains(&(&repo.repo, file)))
        {
            kept.insert(link.clone());
        }
    }
    let offline = Fetcher::new(true, None);
    let same = |a: &Path, b: &Path| {
        a == b
            || std::fs::canonicalize(a)
                .is_ok_and(|a| std::fs::canonicalize(b).is_ok_and(|b| a == b))
    };
    let mut keep_shared = |theirs: &[PathBuf]| {
        if theirs.iter().any(|t| !mine.iter().any(|f| same(f, t))) {
            for f in mine.iter().filter(|f| theirs.iter().any(|t| same(f, t))) {
                kept.insert(f.clone());
            }
        }
    };
    for pair in &Registry::builtin().pairs {
        if let Ok(files) = crate::model::translator::fetch_pair(pair, &offline) {
            keep_shared(&files.all());
        }
    }
    for spec in hub_models_of(m, cached) {
        let Ok(h) = hub::HubSpec::parse(&spec["hf:".len()..]) else {
            continue;
        };
        let origin = format!("glot models remove {}", m.id);
        let files = match Family::of_repo(&h.repo, &h.revision, &offline, &origin, &spec) {
            Ok(Some(family)) => {
                Seq2SeqFiles::from_hub(&spec, family, &h, &offline, &origin).map(|f| f.all())
            }
            _ => hub::resolve(Some(&spec), None, catalog, &offline).map(|f| f.all()),
        };
        if let Ok(files) = files {
            keep_shared(&files);
        }
    }
    kept
}

/// The hub models of `m`'s repositories that the cache may hold: each
/// repository as a whole, and each GGUF file of its snapshot that `m` does
/// not list.
fn hub_models_of(m: &Manifest, cached: &[Option<PathBuf>]) -> Vec<String> {
    let mut specs = Vec::new();
    let mut seen = HashSet::new();
    for ((repo, _), link) in m.files().into_iter().zip(cached) {
        // The snapshot folder: the one below `snapshots/`, whatever
        // subfolder the file is in.
        let Some(snapshot) = link.as_ref().and_then(|l| {
            l.ancestors()
                .find(|a| a.parent().and_then(Path::file_name) == Some("snapshots".as_ref()))
        }) else {
            continue;
        };
        if !seen.insert((&repo.repo, &repo.revision)) {
            continue;
        }
        let base = format!("hf:{}@{}", repo.repo, repo.revision);
        let listed: HashSet<&str> = m
            .files()
            .into_iter()
            .filter(|(r, _)| r.repo == repo.repo)
            .map(|(_, f)| f)
            .collect();
        if let Ok(entries) = std::fs::read_dir(snapshot) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".gguf") && !listed.contains(name.as_str()) {
                    specs.push(format!("{base}:{name}"));
                }
            }
        }
        specs.push(base);
    }
    specs
}

/// `…/models--owner--name` above a snapshot path.
fn repo_dir(link: &Path) -> Option<PathBuf> {
    link.ancestors()
        .find(|a| {
            a.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("models--"))
        })
        .map(Path::to_path_buf)
}

fn collect_link_targets(dir: &Path, out: &mut HashSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            collect_link_targets(&p, out);
        } else if let Ok(target) = std::fs::canonicalize(&p) {
            out.insert(target);
        }
    }
}

/// Removes empty folders below `dir` (and `dir` itself when empty).
fn prune_empty_dirs(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut empty = true;
    for e in entries.flatten() {
        let p = e.path();
        if !(p.is_dir() && !p.is_symlink() && prune_empty_dirs(&p)) {
            empty = false;
        }
    }
    empty && std::fs::remove_dir(dir).is_ok()
}
