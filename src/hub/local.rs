//! Models on the local disk: a folder in the Hugging Face layout or a GGUF
//! file with its tokenizer beside it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{ModelFiles, WeightsFormat};
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
pub(super) fn files_with_ext(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
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
            return resolve_gguf(spec, only, tokenizer.or(Some(dir)));
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
    let tok_dir = tokenizer_dir(dir, tokenizer);
    Ok(ModelFiles {
        id: spec.to_string(),
        weights: WeightsFormat::Safetensors(shards),
        config: Some(required(dir, "config.json")?),
        tokenizer: tokenizer_file(&tok_dir, tokenizer)?,
        tokenizer_config: optional(&tok_dir, "tokenizer_config.json"),
        generation_config: optional(dir, "generation_config.json"),
        chat_template: optional(&tok_dir, "chat_template.jinja"),
    })
}

/// Shards listed by `model.safetensors.index.json`, or every `*.safetensors`.
fn safetensors_shards(dir: &Path) -> Result<Vec<PathBuf>> {
    let Some(index) = optional(dir, "model.safetensors.index.json") else {
        return files_with_ext(dir, "safetensors");
    };
    let text = std::fs::read_to_string(&index)
        .with_context(|| format!("cannot read {}", index.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", index.display()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::model(format!("{} has no weight_map", index.display())))?;
    let mut names: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names.into_iter().map(|n| required(dir, n)).collect()
}

fn resolve_gguf(spec: &str, file: &Path, tokenizer: Option<&Path>) -> Result<ModelFiles> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let tok_dir = tokenizer_dir(dir, tokenizer);
    let tok = tokenizer_file(&tok_dir, tokenizer).map_err(|_| {
        Error::model(format!(
            "{}: no tokenizer.json beside the GGUF file; pass --tokenizer PATH (a tokenizer.json or its folder)",
            file.display()
        ))
    })?;
    Ok(ModelFiles {
        id: spec.to_string(),
        weights: WeightsFormat::Gguf(file.to_path_buf()),
        config: None,
        tokenizer: tok,
        tokenizer_config: optional(&tok_dir, "tokenizer_config.json"),
        generation_config: optional(&tok_dir, "generation_config.json")
            .or_else(|| optional(dir, "generation_config.json")),
        chat_template: optional(&tok_dir, "chat_template.jinja"),
    })
}

fn tokenizer_dir(model_dir: &Path, tokenizer: Option<&Path>) -> PathBuf {
    match tokenizer {
        Some(t) if t.is_dir() => t.to_path_buf(),
        Some(t) => t
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        None => model_dir.to_path_buf(),
    }
}

fn tokenizer_file(dir: &Path, tokenizer: Option<&Path>) -> Result<PathBuf> {
    match tokenizer {
        Some(t) if t.is_file() => Ok(t.to_path_buf()),
        Some(t) if !t.exists() => {
            Err(Error::model(format!("tokenizer {} not found", t.display())).into())
        }
        _ => required(dir, "tokenizer.json"),
    }
}
