//! Where a model's files are: the seam between what the user named and files
//! on disk.
//!
//! `--model` may be a local folder or `.gguf` file, a manifest id or alias
//! from `models/` (`qwen3-4b`, `fast`), or any hub repository as
//! `hf:OWNER/NAME[@REVISION][:FILE]`. Every form ends as [`ModelFiles`]:
//! local paths, fetched into the Hugging Face cache when needed.

pub mod download;
mod local;
pub mod manifest;
pub mod opus_mt;
pub mod seq2seq_files;

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::Error;
use download::{Fetcher, FileRef};
use manifest::{refuse_pickle, Catalog, Manifest};

/// How the weights are stored.
#[derive(Debug, Clone)]
pub enum WeightsFormat {
    /// One or more safetensors files (shards of one checkpoint).
    Safetensors(Vec<PathBuf>),
    /// One GGUF file.
    Gguf(PathBuf),
}

impl WeightsFormat {
    /// The weight files, in order.
    pub fn paths(&self) -> &[PathBuf] {
        match self {
            WeightsFormat::Safetensors(v) => v,
            WeightsFormat::Gguf(p) => std::slice::from_ref(p),
        }
    }
}

/// Every file a model needs, resolved to local paths.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// What the user called the model (shown in outputs and manifests).
    pub id: String,
    pub weights: WeightsFormat,
    pub config: Option<PathBuf>,
    /// `tokenizer.json`; `None` for a GGUF file whose own metadata is the
    /// tokenizer.
    pub tokenizer: Option<PathBuf>,
    pub tokenizer_config: Option<PathBuf>,
    pub generation_config: Option<PathBuf>,
    pub chat_template: Option<PathBuf>,
    /// The model's own prompt templates, by the name of the one of glot's
    /// each replaces (from its manifest).
    pub prompts: Vec<(String, PathBuf)>,
}

impl ModelFiles {
    /// Every file, weights first.
    pub fn all(&self) -> Vec<PathBuf> {
        let weights = self.weights.paths().to_vec();
        let rest = [
            &self.config,
            &self.tokenizer,
            &self.tokenizer_config,
            &self.generation_config,
            &self.chat_template,
        ];
        weights
            .into_iter()
            .chain(rest.into_iter().flatten().cloned())
            .collect()
    }

    /// What pins these exact files: the id with the hub commit of cached
    /// files, or, for local files, their paths, sizes and modification
    /// times. Outputs made from other files are other outputs.
    pub fn fingerprint(&self) -> serde_json::Value {
        let files: Vec<serde_json::Value> = self
            .weights
            .paths()
            .iter()
            .chain(&self.tokenizer)
            .map(|p| file_fingerprint(p))
            .collect();
        serde_json::json!({ "id": self.id, "files": files })
    }
}

/// A file the model was built from, by content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileDigest {
    /// The file's name (paths differ between machines).
    pub file: String,
    pub sha256: String,
}

/// [`digest`] of each file, remembered for the rest of the process: a
/// batch records them for every document but reads each file once.
pub fn digests(paths: &[PathBuf]) -> Result<Vec<FileDigest>> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static KNOWN: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    let known = KNOWN.get_or_init(Default::default);
    paths
        .iter()
        .map(|p| {
            let cached = known.lock().ok().and_then(|k| k.get(p).cloned());
            let sha256 = match cached {
                Some(d) => d,
                None => {
                    let d = digest(p)?;
                    if let Ok(mut k) = known.lock() {
                        k.insert(p.clone(), d.clone());
                    }
                    d
                }
            };
            Ok(FileDigest {
                file: p
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                sha256,
            })
        })
        .collect()
}

/// SHA-256 of a file's bytes, in hex. A file in the hub cache is a link
/// to a blob named by its SHA-256 when the hub stores it with Git LFS (all
/// weights), and that name is taken instead of reading gigabytes again;
/// other files are hashed.
pub fn digest(path: &Path) -> Result<String> {
    if let Ok(target) = std::fs::read_link(path) {
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) =
            name.filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Ok(name);
        }
    }
    download::sha256_file(path)
}

/// What pins one file: the hub commit it was cached from, or its path,
/// size and modification time.
pub(crate) fn file_fingerprint(p: &Path) -> serde_json::Value {
    if let Some(commit) = snapshot_of(p) {
        return serde_json::json!(commit);
    }
    let meta = std::fs::metadata(p).ok();
    let modified = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    serde_json::json!([p, meta.map(|m| m.len()), modified])
}

/// Safetensors files of a model folder: the shards its index lists, or
/// every `*.safetensors` file.
pub fn safetensors_in(dir: &Path) -> Result<Vec<PathBuf>> {
    local::safetensors_shards(dir)
}

/// Resolves a local path only (and a local `--tokenizer`), never the hub.
pub fn resolve_local(spec: &str, tokenizer: Option<&Path>) -> Result<ModelFiles> {
    local::resolve(spec, tokenizer)
}

/// A hub repository as `--model hf:OWNER/NAME[@REVISION][:FILE]` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSpec {
    pub repo: String,
    pub revision: String,
    pub file: Option<String>,
}

impl HubSpec {
    /// Parses the part after `hf:`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let (repo_rev, file) = match s.split_once(':') {
            Some((r, f)) if !f.is_empty() => (r, Some(f.to_string())),
            Some(_) => {
                return Err(Error::Usage(format!(
                    "`hf:{s}`: the file after `:` is empty"
                )))
            }
            None => (s, None),
        };
        let (repo, revision) = match repo_rev.split_once('@') {
            Some((r, v)) if !v.is_empty() => (r, v.to_string()),
            Some(_) => {
                return Err(Error::Usage(format!(
                    "`hf:{s}`: the revision after `@` is empty"
                )))
            }
            None => (repo_rev, "main".to_string()),
        };
        manifest::check_repo_id(repo).map_err(|_| {
            Error::Usage(format!(
                "`hf:{s}` is not of the form hf:OWNER/NAME[@REVISION][:FILE]"
            ))
        })?;
        if let Some(f) = &file {
            refuse_pickle(f)?;
        }
        Ok(HubSpec {
            repo: repo.to_string(),
            revision,
            file,
        })
    }
}

/// What `--model` names.
pub enum ModelRef<'a> {
    Local(&'a str),
    Manifest(&'a Manifest),
    Hub(HubSpec),
}

/// Classifies `--model`; `None` means the default model.
pub fn model_ref<'a>(spec: Option<&'a str>, catalog: &'a Catalog) -> Result<ModelRef<'a>> {
    let Some(spec) = spec else {
        return catalog
            .default_model()
            .map(ModelRef::Manifest)
            .ok_or_else(|| {
                Error::Usage("no model given and no default model: pass --model".into()).into()
            });
    };
    if let Some(rest) = spec.strip_prefix("hf:") {
        return Ok(ModelRef::Hub(HubSpec::parse(rest)?));
    }
    if Path::new(spec).exists() {
        return Ok(ModelRef::Local(spec));
    }
    if let Some(m) = catalog.find(spec) {
        return Ok(ModelRef::Manifest(m));
    }
    let looks_like_path = spec.contains(std::path::MAIN_SEPARATOR) || spec.ends_with(".gguf");
    Err(Error::model(if looks_like_path {
        format!("model `{spec}` not found: no such file or folder")
    } else {
        format!(
            "unknown model `{spec}`: not a local folder or .gguf file, nor a model id of `glot models list`; name hub repositories as hf:OWNER/NAME"
        )
    })
    .into())
}

/// Resolves `--model` and `--tokenizer` to local files, fetching what the
/// cache lacks (unless offline).
pub fn resolve(
    spec: Option<&str>,
    tokenizer: Option<&str>,
    catalog: &Catalog,
    fetcher: &Fetcher,
) -> Result<ModelFiles> {
    match model_ref(spec, catalog)? {
        ModelRef::Local(path) => {
            // A hub tokenizer lands in the cache, its files side by side.
            let tok = match tokenizer {
                Some(t) if t.starts_with("hf:") => Some(hub_tokenizer(t, fetcher, path)?.tokenizer),
                t => t.map(PathBuf::from),
            };
            local::resolve(path, tok.as_deref())
        }
        ModelRef::Manifest(m) => {
            let mut files = resolve_manifest(m, fetcher)?;
            files.prompts = m.prompts.clone().into_iter().collect();
            if let Some(t) = tokenizer {
                apply_tokenizer(&mut files, tokenizer_files(t, fetcher, &m.id)?);
            }
            Ok(files)
        }
        ModelRef::Hub(h) => resolve_hub(&h, tokenizer, fetcher, spec.unwrap_or_default()),
    }
}

/// Tokenizer files found for a model.
pub(crate) struct TokenizerFiles {
    tokenizer: PathBuf,
    tokenizer_config: Option<PathBuf>,
    generation_config: Option<PathBuf>,
    chat_template: Option<PathBuf>,
}

fn apply_tokenizer(files: &mut ModelFiles, t: TokenizerFiles) {
    files.tokenizer = Some(t.tokenizer);
    files.tokenizer_config = t.tokenizer_config.or(files.tokenizer_config.take());
    files.generation_config = files.generation_config.take().or(t.generation_config);
    files.chat_template = t.chat_template.or(files.chat_template.take());
}

/// `--tokenizer` as a local path or `hf:OWNER/NAME[@REVISION]`.
fn tokenizer_files(spec: &str, fetcher: &Fetcher, model: &str) -> Result<TokenizerFiles> {
    if spec.starts_with("hf:") {
        hub_tokenizer(spec, fetcher, model)
    } else {
        local::tokenizer_at(Path::new(spec))
    }
}

fn hub_tokenizer(spec: &str, fetcher: &Fetcher, model: &str) -> Result<TokenizerFiles> {
    let h = HubSpec::parse(spec.trim_start_matches("hf:"))?;
    let origin = format!("--tokenizer {spec}");
    fetch_tokenizer(&h.repo, &h.revision, fetcher, &origin, model)?
        .ok_or_else(|| Error::model(format!("{} has no tokenizer.json ({origin})", h.repo)).into())
}

/// The tokenizer files of a repository; `None` when it has no tokenizer.json.
fn fetch_tokenizer(
    repo: &str,
    revision: &str,
    fetcher: &Fetcher,
    origin: &str,
    model: &str,
) -> Result<Option<TokenizerFiles>> {
    let get = |file: &str, required: bool| {
        fetcher.fetch(
            &FileRef {
                repo,
                revision,
                file,
                origin,
                model,
            },
            required,
        )
    };
    let Some(tokenizer) = get("tokenizer.json", false)? else {
        return Ok(None);
    };
    Ok(Some(TokenizerFiles {
        tokenizer,
        tokenizer_config: get("tokenizer_config.json", false)?,
        generation_config: get("generation_config.json", false)?,
        chat_template: get("chat_template.jinja", false)?,
    }))
}

/// Every file of a manifest, fetched, sorted into roles by name.
fn resolve_manifest(m: &Manifest, fetcher: &Fetcher) -> Result<ModelFiles> {
    let paths = fetch_manifest(m, fetcher)?;
    assemble(&m.id, &paths, &format!("manifest {}", m.origin))
}

/// Every file a manifest lists, fetched if need be, by its name.
pub(crate) fn fetch_manifest(m: &Manifest, fetcher: &Fetcher) -> Result<Vec<(String, PathBuf)>> {
    let origin = format!("manifest {}", m.origin);
    let mut paths = Vec::new();
    for (repo, file) in m.files() {
        let f = FileRef {
            repo: &repo.repo,
            revision: &repo.revision,
            file,
            origin: &origin,
            model: &m.id,
        };
        let p = fetcher
            .fetch(&f, true)?
            .expect("required files are fetched or fail");
        paths.push((file.to_string(), p));
    }
    Ok(paths)
}

/// Sorts fetched files into a [`ModelFiles`] by their names.
fn assemble(id: &str, paths: &[(String, PathBuf)], origin: &str) -> Result<ModelFiles> {
    let named = |n: &str| {
        paths
            .iter()
            .find(|(f, _)| f.rsplit('/').next() == Some(n))
            .map(|(_, p)| p.clone())
    };
    let with_ext = |e: &str| -> Vec<PathBuf> {
        paths
            .iter()
            .filter(|(f, _)| f.ends_with(e))
            .map(|(_, p)| p.clone())
            .collect()
    };
    let ggufs = with_ext(".gguf");
    let shards = with_ext(".safetensors");
    let weights = match (ggufs.as_slice(), shards.is_empty()) {
        ([one], true) => WeightsFormat::Gguf(one.clone()),
        ([], false) => WeightsFormat::Safetensors(shards),
        _ => {
            return Err(Error::model(format!(
                "{origin} must list either one .gguf file or safetensors files"
            ))
            .into())
        }
    };
    if matches!(weights, WeightsFormat::Safetensors(_)) && named("config.json").is_none() {
        return Err(Error::model(format!(
            "{origin} lists safetensors weights but no config.json"
        ))
        .into());
    }
    let tokenizer = match (&weights, named("tokenizer.json")) {
        (_, Some(t)) => Some(t),
        // A GGUF file carries its tokenizer.
        (WeightsFormat::Gguf(_), None) => None,
        (WeightsFormat::Safetensors(_), None) => {
            return Err(Error::model(format!("{origin} lists no tokenizer.json")).into())
        }
    };
    Ok(ModelFiles {
        id: id.to_string(),
        weights,
        config: named("config.json"),
        tokenizer,
        tokenizer_config: named("tokenizer_config.json"),
        generation_config: named("generation_config.json"),
        chat_template: named("chat_template.jinja"),
        prompts: Vec::new(),
    })
}

/// `hf:OWNER/NAME[@REV][:FILE]`: the named file, or what the architecture
/// needs (configs, tokenizer, safetensors shards via their index).
fn resolve_hub(
    h: &HubSpec,
    tokenizer: Option<&str>,
    fetcher: &Fetcher,
    spec: &str,
) -> Result<ModelFiles> {
    let origin = format!("--model {spec}");
    let get = |file: &str, required: bool| {
        fetcher.fetch(
            &FileRef {
                repo: &h.repo,
                revision: &h.revision,
                file,
                origin: &origin,
                model: spec,
            },
            required,
        )
    };
    let mut paths: Vec<(String, PathBuf)> = Vec::new();
    match &h.file {
        Some(file) if file.ends_with(".gguf") => {
            paths.push((file.clone(), get(file, true)?.expect("required")));
        }
        Some(file) if file.ends_with(".safetensors") => {
            paths.push((file.clone(), get(file, true)?.expect("required")));
            paths.push((
                "config.json".into(),
                get("config.json", true)?.expect("required"),
            ));
        }
        Some(file) => {
            return Err(Error::model(format!(
                "`{file}`: name a .gguf or .safetensors file, or no file to fetch the whole model"
            ))
            .into())
        }
        None => {
            paths.push((
                "config.json".into(),
                get("config.json", true)?.expect("required"),
            ));
            let shards = match get("model.safetensors.index.json", false)? {
                Some(index) => index_shards(&index)?,
                None => vec!["model.safetensors".to_string()],
            };
            for shard in shards {
                let p = get(&shard, true).map_err(|e| {
                    e.context(format!(
                        "{} has no safetensors weights at its top level: name a file, as in hf:{}:FILE.gguf",
                        h.repo, h.repo
                    ))
                })?;
                paths.push((shard, p.expect("required")));
            }
        }
    }
    let gguf = matches!(&h.file, Some(f) if f.ends_with(".gguf"));
    let tok = match tokenizer {
        Some(t) => Some(tokenizer_files(t, fetcher, spec)?),
        // A GGUF file is a whole model: its metadata holds the tokenizer
        // and chat template.
        None if gguf => None,
        None => Some(
            fetch_tokenizer(&h.repo, &h.revision, fetcher, &origin, spec)?.ok_or_else(|| {
                Error::model(format!(
                    "{} has no tokenizer.json: pass --tokenizer hf:OWNER/NAME or a local tokenizer.json",
                    h.repo
                ))
            })?,
        ),
    };
    if let Some(tok) = &tok {
        paths.push(("tokenizer.json".into(), tok.tokenizer.clone()));
    }
    let mut files = assemble(spec, &paths, &origin)?;
    if let Some(tok) = tok {
        apply_tokenizer(&mut files, tok);
    }
    Ok(files)
}

/// Shard file names listed by a `model.safetensors.index.json`.
pub(crate) fn index_shards(index: &Path) -> Result<Vec<String>> {
    let text = crate::bounded::read_to_string(index, crate::bounded::MODEL_JSON)?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::model(format!("{}: invalid JSON ({e})", index.display())))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::model(format!("{} has no weight_map", index.display())))?;
    let mut names: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    for n in &names {
        refuse_pickle(n)?;
    }
    Ok(names)
}

/// The commit of a file in the hub cache (`…/snapshots/<commit>/…`).
pub fn snapshot_of(path: &Path) -> Option<String> {
    let parts: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts
        .windows(2)
        .find(|w| {
            w[0] == "snapshots" && w[1].len() == 40 && w[1].chars().all(|c| c.is_ascii_hexdigit())
        })
        .map(|w| w[1].clone())
}

/// Reads a JSON file; invalid JSON is a model error naming the file.
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = crate::bounded::read_to_string(path, crate::bounded::MODEL_JSON)?;
    serde_json::from_str(&text)
        .map_err(|e| Error::model(format!("{}: invalid JSON ({e})", path.display())).into())
}

#[cfg(test)]
mod tests {

    #[cfg(unix)]
    #[test]
    fn hub_blobs_are_known_by_name_other_files_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let name = "ab".repeat(32);
        std::fs::write(dir.path().join(&name), b"weights").unwrap();
        std::os::unix::fs::symlink(dir.path().join(&name), dir.path().join("model.gguf")).unwrap();
        assert_eq!(digest(&dir.path().join("model.gguf")).unwrap(), name);
        std::fs::write(dir.path().join("config.json"), b"abc").unwrap();
        assert_eq!(
            digest(&dir.path().join("config.json")).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let d = digests(&[dir.path().join("config.json")]).unwrap();
        assert_eq!(d[0].file, "config.json");
    }
    use super::*;

    #[test]
    fn hub_specs() {
        let h = HubSpec::parse("Qwen/Qwen3-1.7B-GGUF:Qwen3-1.7B-Q8_0.gguf").unwrap();
        assert_eq!(
            h,
            HubSpec {
                repo: "Qwen/Qwen3-1.7B-GGUF".into(),
                revision: "main".into(),
                file: Some("Qwen3-1.7B-Q8_0.gguf".into())
            }
        );
        let h = HubSpec::parse("Qwen/Qwen3-1.7B@v1.0").unwrap();
        assert_eq!((h.revision.as_str(), h.file), ("v1.0", None));
        assert!(HubSpec::parse("Qwen").is_err());
        assert!(HubSpec::parse("a/b@").is_err());
        let e = HubSpec::parse("a/b:pytorch_model.bin")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pickled"), "{e}");
    }
}
