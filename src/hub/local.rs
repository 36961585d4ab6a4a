//! Models on the local disk: a folder in the Hugging Face layout or a GGUF
//! file, which carries its own tokenizer unless one is given or lies beside it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{index_shards, ModelFiles, TokenizerFiles, WeightsFormat};
use crate::error::Error;

/// Resolves a local path (and `--tokenizer`) to files on disk.
pub fn resolve(spec: &str, tokenizer: Option<&Path>) -> Result<ModelFiles> {
    let path = Path::new(spec);
    if path.is_dir() {
        resolve_dir(spec, path, tokenizer)
    } else if path.is_file() {
        if path.extension().and_then(|e| e.to_str()) != Some("gguf") {
            return Err(Error::model(format!(
                "{spec}: a model file must be a .gguf file; for safetensors give the model's folder"
            ))
            .into());
        }
        resolve_gguf(spec, path, tokenizer)
    } else {
        Err(Error::model(format!("model `{spec}` not found")).into())
    }
}

fn optional(dir: &Path, name: &str) -> Option<PathBuf> {
    let p = dir.join(name);
    p.is_file().then_some(p)
}

fn required(dir: &Path, name: &str) -> Result<PathBuf> {
    optional(dir, name).ok_or_else(|| {
        Error::ModelFileMissing {
            path: dir.to_path_buf(),
            what: name.to_string(),
        }
        .into()
    })
}

/// Files of the given extension directly inside `dir`, sorted.
pub(crate) fn files_with_ext(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let p = entry?.path();
        if p.is_file() && p.extension().and_then(|e| e.to_str()) == Some(ext) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn resolve_dir(spec: &str, dir: &Path, tokenizer: Option<&Path>) -> Result<ModelFiles> {
    let ggufs = files_with_ext(dir, "gguf")?;
    let shards = safetensors_shards(dir)?;
    if shards.is_empty() {
        if let [only] = ggufs.as_slice() {
            return resolve_gguf(spec, only, tokenizer);
        }
        let what = if ggufs.len() > 1 {
            "a single weights file (several .gguf files: name one)".to_string()
        } else if !files_with_ext(dir, "bin")?.is_empty() {
            "*.safetensors weights (pickled .bin weights are never loaded)".to_string()
        } else {
            "*.safetensors weights".to_string()
        };
        return Err(Error::ModelFileMissing {
            path: dir.to_path_buf(),
            what,
        }
        .into());
    }
    let config = required(dir, "config.json")?;
    let tok = tokenizer_at(tokenizer.unwrap_or(dir))?;
    Ok(ModelFiles {
        id: spec.to_string(),
        weights: WeightsFormat::Safetensors(shards),
        config: Some(config),
        tokenizer: Some(tok.tokenizer),
        tokenizer_config: tok.tokenizer_config,
        generation_config: optional(dir, "generation_config.json"),
        chat_template: tok.chat_template,
        prompts: Vec::new(),
    })
}

/// Shards listed by `model.safetensors.index.json`, or every `*.safetensors`.
pub(super) fn safetensors_shards(dir: &Path) -> Result<Vec<PathBuf>> {
    match optional(dir, "model.safetensors.index.json") {
        Some(index) => index_shards(&index)?
            .iter()
            .map(|n| required(dir, n))
            .collect(),
        None => files_with_ext(dir, "safetensors"),
    }
}

fn resolve_gguf(spec: &str, file: &Path, tokenizer: Option<&Path>) -> Result<ModelFiles> {
    let dir = file.parent().unwrap_or(Path::new("."));
    // `--tokenizer` first, then a tokenizer.json beside the file; without
    // either the GGUF's own metadata is the tokenizer.
    let tok = match tokenizer {
        Some(t) => Some(tokenizer_at(t)?),
        None => optional(dir, "tokenizer.json")
            .map(|_| tokenizer_at(dir))
            .transpose()?,
    };
    let generation_config = tok
        .as_ref()
        .and_then(|t| t.generation_config.clone())
        .or_else(|| optional(dir, "generation_config.json"));
    Ok(ModelFiles {
        id: spec.to_string(),
        weights: WeightsFormat::Gguf(file.to_path_buf()),
        config: None,
        tokenizer: tok.as_ref().map(|t| t.tokenizer.clone()),
        tokenizer_config: tok.as_ref().and_then(|t| t.tokenizer_config.clone()),
        generation_config,
        chat_template: tok.and_then(|t| t.chat_template),
        prompts: Vec::new(),
    })
}

/// A tokenizer given as its `tokenizer.json` or the folder holding it, with
/// the files that sit beside it.
pub(super) fn tokenizer_at(path: &Path) -> Result<TokenizerFiles> {
    if !path.exists() {
        return Err(Error::model(format!("tokenizer {} not found", path.display())).into());
    }
    let (dir, tokenizer) = if path.is_dir() {
        (path.to_path_buf(), required(path, "tokenizer.json")?)
    } else {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        (dir, path.to_path_buf())
    };
    Ok(TokenizerFiles {
        tokenizer,
        tokenizer_config: optional(&dir, "tokenizer_config.json"),
        generation_config: optional(&dir, "generation_config.json"),
        chat_template: optional(&dir, "chat_template.jinja"),
    })
}
