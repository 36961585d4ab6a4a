//! The files of encoder-decoder models (Marian, T5, BART, NLLB) as they are published:
//! found in a folder, named by a manifest or fetched from a hub repository.
//! [`crate::engine::seq2seq`] runs what these files hold.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::download::{Fetcher, FileRef};
use super::manifest::Manifest;
use super::HubSpec;
use crate::error::Error;

/// The families of translation models glot runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Helsinki-NLP opus-mt: one language pair (or group) per model.
    Marian,
    /// MADLAD-400 and flan-t5.
    T5,
    /// BART summarizers (facebook/bart-large-cnn, distilbart-cnn).
    Bart,
    /// M2M100 and NLLB-200: many-to-many translation by language tokens.
    M2m100,
    /// mBART-50 many-to-many: the same, on BART's network.
    Mbart,
}

impl Family {
    /// The family a `config.json` describes, if it is a translation model.
    pub fn of_config(config: &serde_json::Value) -> Option<Family> {
        match config.get("model_type").and_then(|v| v.as_str()) {
            Some("marian") => Some(Family::Marian),
            Some("t5") | Some("mt5") => Some(Family::T5),
            Some("bart") => Some(Family::Bart),
            Some("m2m_100") => Some(Family::M2m100),
            Some("mbart") => Some(Family::Mbart),
            _ => None,
        }
    }

    /// The family of a hub repository whose config.json describes a
    /// translation model (`None` for other models, or no config.json).
    pub fn of_repo(
        repo: &str,
        revision: &str,
        fetcher: &Fetcher,
        origin: &str,
        download_name: &str,
    ) -> Result<Option<Family>> {
        let config = fetcher.fetch(
            &FileRef {
                repo,
                revision,
                file: "config.json",
                origin,
                model: download_name,
            },
            false,
        )?;
        Ok(match config {
            Some(c) => Family::of_config(&super::read_json(&c)?),
            None => None,
        })
    }

    /// Whether its models can write summaries: BART summarizers, and
    /// instruction-following T5 models (which ones do, their manifest or
    /// the user says).
    pub fn can_summarize(self) -> bool {
        matches!(self, Family::T5 | Family::Bart)
    }

    /// Whether its models translate (all but BART summarizers).
    pub fn translates(self) -> bool {
        self != Family::Bart
    }

    /// The family a manifest's `architecture` names.
    pub fn of_architecture(arch: &str) -> Option<Family> {
        match arch {
            "marian" => Some(Family::Marian),
            "t5" => Some(Family::T5),
            "bart" => Some(Family::Bart),
            "m2m_100" | "nllb" => Some(Family::M2m100),
            "mbart" => Some(Family::Mbart),
            _ => None,
        }
    }
}

/// The files of a translation model, resolved to local paths.
#[derive(Debug, Clone)]
pub struct Seq2SeqFiles {
    /// What the user called the model (shown in outputs and manifests).
    pub id: String,
    pub family: Family,
    pub config: PathBuf,
    pub weights: Vec<PathBuf>,
    pub generation_config: Option<PathBuf>,
    /// Marian: `source.spm` and `vocab.json`.
    pub source_spm: Option<PathBuf>,
    pub vocab: Option<PathBuf>,
    /// T5: `tokenizer.json`, or `spiece.model` to build one from; BART and
    /// NLLB: `tokenizer.json`.
    pub tokenizer: Option<PathBuf>,
    pub spiece: Option<PathBuf>,
}

impl Seq2SeqFiles {
    /// Every file, weights first.
    pub fn all(&self) -> Vec<PathBuf> {
        let rest = [
            Some(&self.config),
            self.generation_config.as_ref(),
            self.source_spm.as_ref(),
            self.vocab.as_ref(),
            self.tokenizer.as_ref(),
            self.spiece.as_ref(),
        ];
        self.weights
            .iter()
            .chain(rest.into_iter().flatten())
            .cloned()
            .collect()
    }

    /// Sorts files by name into roles; `origin` names where they came from.
    pub fn from_named(
        id: &str,
        family: Family,
        paths: &[(String, PathBuf)],
        origin: &str,
    ) -> Result<Self> {
        let named = |n: &str| {
            paths
                .iter()
                .find(|(f, _)| f.rsplit('/').next() == Some(n))
                .map(|(_, p)| p.clone())
        };
        let need = |n: &str| -> Result<PathBuf> {
            named(n).ok_or_else(|| Error::model(format!("{origin}: no {n}")).into())
        };
        let with_ext = |ext: &str| -> Vec<PathBuf> {
            paths
                .iter()
                .filter(|(f, _)| f.ends_with(ext))
                .map(|(_, p)| p.clone())
                .collect()
        };
        // Safetensors when there are any, else one GGUF file (T5 only:
        // candle's GGUF files of T5 models keep the tensors' own names).
        let mut weights = with_ext(".safetensors");
        if weights.is_empty() && family == Family::T5 {
            weights = with_ext(".gguf");
            if weights.len() > 1 {
                return Err(Error::model(format!(
                    "{origin}: several .gguf files: name one, as in hf:OWNER/NAME:FILE.gguf"
                ))
                .into());
            }
        }
        if weights.is_empty() {
            return Err(Error::model(format!(
                "{origin}: no *.safetensors weights (pickled .bin weights are never loaded)"
            ))
            .into());
        }
        let mut files = Seq2SeqFiles {
            id: id.to_string(),
            family,
            config: need("config.json")?,
            weights,
            generation_config: named("generation_config.json"),
            source_spm: None,
            vocab: None,
            tokenizer: None,
            spiece: None,
        };
        match family {
            Family::Marian => {
                files.source_spm = Some(need("source.spm")?);
                files.vocab = Some(need("vocab.json")?);
            }
            Family::T5 => {
                files.tokenizer = named("tokenizer.json");
                files.spiece = named("spiece.model");
                if files.tokenizer.is_none() && files.spiece.is_none() {
                    need("tokenizer.json")?;
                }
            }
            Family::Bart | Family::M2m100 | Family::Mbart => {
                files.tokenizer = Some(need("tokenizer.json")?)
            }
        }
        Ok(files)
    }

    /// The files of a local folder holding a Marian or T5 model, or of a
    /// T5 GGUF file with the model's other files beside it; `None` when the
    /// config describes another kind of model.
    pub fn in_dir(id: &str, path: &Path) -> Result<Option<Self>> {
        // A named file is the weights; the folder holds the rest.
        let (dir, named) = if path.is_file() {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            (dir, Some(path))
        } else {
            (path, None)
        };
        let config = dir.join("config.json");
        if !config.is_file() {
            return Ok(None);
        }
        let Some(family) = Family::of_config(&super::read_json(&config)?) else {
            return Ok(None);
        };
        let is_weights = |n: &str| n.ends_with(".safetensors") || n.ends_with(".gguf");
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let p = entry?.path();
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if p.is_file() && !is_weights(&name) {
                paths.push((name, p));
            }
        }
        let weights: Vec<PathBuf> = match named {
            Some(file) => vec![file.to_path_buf()],
            // Shards named by an index, when there is one, else GGUF files.
            None => {
                let shards = super::safetensors_in(dir)?;
                if shards.is_empty() {
                    super::local::files_with_ext(dir, "gguf")?
                } else {
                    shards
                }
            }
        };
        for w in weights {
            let name = w
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            paths.push((name, w));
        }
        Self::from_named(id, family, &paths, &dir.display().to_string()).map(Some)
    }

    /// Fetches the model `hf:` names by `spec` (`h` parsed): its
    /// repository at its revision, and the GGUF file it names if any.
    pub fn from_hub(
        spec: &str,
        family: Family,
        h: &HubSpec,
        fetcher: &Fetcher,
        origin: &str,
    ) -> Result<Self> {
        Self::fetch(
            spec,
            family,
            &h.repo,
            &h.revision,
            h.file.as_deref(),
            fetcher,
            origin,
            spec,
        )
    }

    /// Fetches what a family needs from a hub repository at `revision`:
    /// `weights_file` when named (a GGUF file), else its safetensors;
    /// `download_name` is what `glot models download` takes to fetch it.
    #[allow(clippy::too_many_arguments)]
    pub fn fetch(
        id: &str,
        family: Family,
        repo: &str,
        revision: &str,
        weights_file: Option<&str>,
        fetcher: &Fetcher,
        origin: &str,
        download_name: &str,
    ) -> Result<Self> {
        let get = |file: &str, required: bool| {
            fetcher.fetch(
                &FileRef {
                    repo,
                    revision,
                    file,
                    origin,
                    model: download_name,
                },
                required,
            )
        };
        let mut paths = Vec::new();
        let mut add = |name: &str, p: Option<PathBuf>| {
            if let Some(p) = p {
                paths.push((name.to_string(), p));
            }
        };
        add("config.json", get("config.json", true)?);
        add(
            "generation_config.json",
            get("generation_config.json", false)?,
        );
        match family {
            Family::Marian => {
                add("source.spm", get("source.spm", true)?);
                add("vocab.json", get("vocab.json", true)?);
            }
            Family::T5 => match get("tokenizer.json", false)? {
                Some(p) => add("tokenizer.json", Some(p)),
                None => add("spiece.model", get("spiece.model", true)?),
            },
            Family::Bart | Family::M2m100 | Family::Mbart => {
                add("tokenizer.json", get("tokenizer.json", true)?)
            }
        }
        let shards = match weights_file {
            Some(f) => vec![f.to_string()],
            None => match get("model.safetensors.index.json", false)? {
                Some(index) => super::index_shards(&index)?,
                None => vec!["model.safetensors".to_string()],
            },
        };
        for shard in shards {
            let p = get(&shard, true).map_err(|e| {
                let hint = if family == Family::Marian && revision == "main" {
                    format!(
                        "; many opus-mt repositories have safetensors only in a conversion pull request: try --model hf:{repo}@refs/pr/N"
                    )
                } else {
                    String::new()
                };
                e.context(format!(
                    "{repo}@{revision} has no {shard} (pickled weights are never loaded){hint}"
                ))
            })?;
            add(&shard, p);
        }
        Self::from_named(id, family, &paths, origin)
    }

    /// What pins these exact files: the hub commit of cached files, or the
    /// paths, sizes and modification times of local ones.
    pub fn fingerprint(&self) -> serde_json::Value {
        let files: Vec<serde_json::Value> = std::iter::once(&self.config)
            .chain(&self.weights)
            .map(|p| super::file_fingerprint(p))
            .collect();
        serde_json::json!({ "id": self.id, "files": files })
    }

    /// Fetches every file a manifest of a translation model lists.
    pub fn from_manifest(m: &Manifest, family: Family, fetcher: &Fetcher) -> Result<Self> {
        let paths = super::fetch_manifest(m, fetcher)?;
        Self::from_named(&m.id, family, &paths, &format!("manifest {}", m.origin))
    }
}
