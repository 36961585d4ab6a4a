//! Model manifests: what a model id means (repos, revisions, files) as data.
//!
//! The manifests in `models/` are compiled into the binary; a user adds
//! their own as `*.toml` files in `$XDG_CONFIG_HOME/glot/models/`
//! (`~/.config/glot/models/`), which may also override built-in ids.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The manifests shipped with glot, by file name.
const BUILTIN: &[(&str, &str)] = &[
    ("qwen3-4b.toml", include_str!("../../models/qwen3-4b.toml")),
    (
        "qwen3-1.7b.toml",
        include_str!("../../models/qwen3-1.7b.toml"),
    ),
    (
        "madlad400-3b.toml",
        include_str!("../../models/madlad400-3b.toml"),
    ),
    (
        "madlad400-3b-q4k.toml",
        include_str!("../../models/madlad400-3b-q4k.toml"),
    ),
    (
        "nllb-200-distilled-600m.toml",
        include_str!("../../models/nllb-200-distilled-600m.toml"),
    ),
    (
        "nllb-200-distilled-1.3b.toml",
        include_str!("../../models/nllb-200-distilled-1.3b.toml"),
    ),
    (
        "nllb-200-3.3b.toml",
        include_str!("../../models/nllb-200-3.3b.toml"),
    ),
    (
        "bart-large-cnn.toml",
        include_str!("../../models/bart-large-cnn.toml"),
    ),
    (
        "gemma3-4b.toml",
        include_str!("../../models/gemma3-4b.toml"),
    ),
    (
        "gemma3-1b.toml",
        include_str!("../../models/gemma3-1b.toml"),
    ),
    (
        "translategemma-4b.toml",
        include_str!("../../models/translategemma-4b.toml"),
    ),
    (
        "translategemma-12b.toml",
        include_str!("../../models/translategemma-12b.toml"),
    ),
];

/// Files of one repository at one revision.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RepoFiles {
    pub repo: String,
    #[serde(default = "main")]
    pub revision: String,
    pub files: Vec<String>,
}

fn main() -> String {
    "main".to_string()
}

/// One model as `glot models` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The model used when none is named.
    #[serde(default)]
    pub default: bool,
    pub name: String,
    pub family: String,
    pub architecture: String,
    #[serde(default)]
    pub quantization: Option<String>,
    pub context_length: usize,
    /// Approximate download size.
    pub size_bytes: u64,
    pub license: String,
    #[serde(default)]
    pub gated: bool,
    pub tasks: Vec<String>,
    pub languages: Vec<String>,
    /// Weights (and, for safetensors models, config files).
    pub weights: RepoFiles,
    /// Where tokenizer and chat template come from, when not beside the weights.
    #[serde(default)]
    pub tokenizer: Option<RepoFiles>,
    /// glot's prompt templates this model replaces with its own wording:
    /// template name (`system`, `summarize`, `combine`, `translate`) to a
    /// file, relative to the manifest's folder.
    #[serde(default)]
    pub prompts: std::collections::BTreeMap<String, std::path::PathBuf>,
    /// Where the manifest was read from, for error messages.
    #[serde(skip)]
    pub origin: String,
}

impl Manifest {
    /// Every repository file the model needs, weights first.
    pub fn files(&self) -> Vec<(&RepoFiles, &str)> {
        let mut out: Vec<(&RepoFiles, &str)> = self
            .weights
            .files
            .iter()
            .map(|f| (&self.weights, f.as_str()))
            .collect();
        if let Some(t) = &self.tokenizer {
            out.extend(t.files.iter().map(|f| (t, f.as_str())));
        }
        out
    }

    /// Whether `name` is this model's id or one of its aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        self.id.eq_ignore_ascii_case(name)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// All manifests known to this run.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub manifests: Vec<Manifest>,
    /// Why each of the user's manifests that could not be read was left
    /// out, one line each: one broken file must not stop every command.
    pub skipped: Vec<String>,
}

/// The user's manifest folder.
pub fn user_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("glot").join("models"))
}

impl Catalog {
    /// Built-in manifests plus the user's (which win on the same id).
    pub fn load() -> Result<Self> {
        let mut manifests = Vec::new();
        for (name, text) in BUILTIN {
            manifests.push(parse(text, &format!("built-in models/{name}"))?);
        }
        let mut skipped = Vec::new();
        if let Some(dir) = user_dir().filter(|d| d.is_dir()) {
            for m in read_dir(&dir) {
                match m {
                    Ok(m) => {
                        manifests.retain(|old: &Manifest| old.id != m.id);
                        manifests.push(m);
                    }
                    Err(e) => skipped.push(format!("{e:#}")),
                }
            }
        }
        Ok(Catalog { manifests, skipped })
    }

    /// The manifest with this id or alias.
    pub fn find(&self, name: &str) -> Option<&Manifest> {
        // A user's manifest comes last and wins over a built-in alias.
        self.manifests.iter().rev().find(|m| m.answers_to(name))
    }

    /// The model used when none is named.
    pub fn default_model(&self) -> Option<&Manifest> {
        self.manifests.iter().rev().find(|m| m.default)
    }
}

/// The manifests of the user's folder, each read or failed on its own.
fn read_dir(dir: &Path) -> Vec<Result<Manifest>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return vec![Err(anyhow::anyhow!("cannot list {}: {e}", dir.display()))],
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("toml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = crate::bounded::read_to_string(p, crate::bounded::TEXT)?;
            parse(&text, &p.display().to_string())
        })
        .collect()
}

/// Parses and checks one manifest; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Manifest> {
    let mut m: Manifest = toml::from_str(text)
        .map_err(|e| Error::model(format!("manifest {origin} is invalid: {e}")))?;
    m.origin = origin.to_string();
    let folder = std::path::Path::new(origin).parent();
    for path in m.prompts.values_mut() {
        if let (true, Some(dir)) = (path.is_relative(), folder) {
            *path = dir.join(&*path);
        }
    }
    for (repo, file) in m.files() {
        check_repo_id(&repo.repo).map_err(|e| Error::model(format!("manifest {origin}: {e}")))?;
        refuse_pickle(file).map_err(|e| Error::model(format!("manifest {origin}: {e}")))?;
    }
    Ok(m)
}

/// `owner/name`, as the hub spells repository ids.
pub fn check_repo_id(repo: &str) -> Result<(), Error> {
    let ok = repo.split('/').count() == 2
        && repo.split('/').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::model(format!(
            "`{repo}` is not a repository id (owner/name)"
        )))
    }
}

/// Pickled weights can run code when loaded; glot never loads them.
pub fn refuse_pickle(file: &str) -> Result<(), Error> {
    let pickled = [".bin", ".pt", ".pth", ".ckpt", ".pkl"]
        .iter()
        .any(|ext| file.to_ascii_lowercase().ends_with(ext));
    if pickled {
        Err(Error::model(format!(
            "`{file}` is a pickled PyTorch file: loading one can run arbitrary code, so glot only loads safetensors and GGUF weights"
        )))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifests_parse_and_cover_models_folder() {
        let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name == "opus-mt.toml" {
                continue; // the pair registry, read by hub::opus_mt
            }
            assert!(
                names.contains(&name.as_str()),
                "models/{name} is not compiled in"
            );
        }
        let c = Catalog {
            manifests: BUILTIN.iter().map(|(n, t)| parse(t, n).unwrap()).collect(),
            skipped: Vec::new(),
        };
        assert_eq!(c.default_model().unwrap().id, "qwen3-4b");
        assert_eq!(c.find("fast").unwrap().id, "qwen3-1.7b");
        assert_eq!(c.find("QWEN3-4B").unwrap().id, "qwen3-4b");
        assert_eq!(c.find("translategemma").unwrap().id, "translategemma-4b");
        assert_eq!(c.find("gemma3").unwrap().id, "gemma3-4b");
        assert_eq!(c.find("bart").unwrap().id, "bart-large-cnn");
        assert_eq!(c.find("nllb").unwrap().id, "nllb-200-distilled-600m");
    }

    #[test]
    fn bad_manifests_are_refused_with_their_origin() {
        let base = r#"
            id = "x"
            name = "x"
            family = "qwen3"
            architecture = "qwen3"
            context_length = 10
            size_bytes = 1
            license = "mit"
            tasks = []
            languages = []
        "#;
        let err = parse(
            &format!("{base}\n[weights]\nrepo = \"a/b\"\nfiles = [\"pytorch_model.bin\"]"),
            "my.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("my.toml") && err.contains("pickled"), "{err}");
        let err = parse(
            &format!("{base}\n[weights]\nrepo = \"nope\"\nfiles = [\"a.gguf\"]"),
            "my.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not a repository id"), "{err}");
        assert!(parse("id = 3", "bad.toml")
            .unwrap_err()
            .to_string()
            .contains("bad.toml"));
    }
}
