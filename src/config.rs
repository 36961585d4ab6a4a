//! The config file: defaults for the flags people give the same way every
//! time (the model, threads, the target language, the summary length, the
//! context, a glossary).
//!
//! It is `$GLOT_CONFIG` when set, else `$XDG_CONFIG_HOME/glot/config.toml`,
//! else `~/.config/glot/config.toml`; a missing default file is no config,
//! a missing `$GLOT_CONFIG` an error. A flag beats the environment
//! (`GLOT_MODEL`), which beats the file, which beats glot's own defaults:
//! the file fills only what the command line and the environment left
//! empty. Unknown keys are refused, so that a misspelt one is not silently
//! ignored.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::ValueEnum;
use serde::Deserialize;

use crate::cli::{Cli, Command, LengthArg, ModelArgs};

/// The keys of the file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    model: Option<String>,
    threads: Option<NonZeroUsize>,
    to: Option<String>,
    length: Option<String>,
    max_context: Option<u32>,
    glossary: Option<String>,
}

/// The config file's settings, checked.
#[derive(Debug, Default)]
pub struct Config {
    /// Where the file was looked for (none without a home folder).
    pub path: Option<PathBuf>,
    /// Whether a file was there and read.
    pub found: bool,
    pub model: Option<String>,
    pub threads: Option<NonZeroUsize>,
    pub to: Option<String>,
    pub length: Option<LengthArg>,
    pub max_context: Option<u32>,
    /// Relative paths are taken from the file's folder, `~/` from home.
    pub glossary: Option<String>,
}

/// Where the config file is looked for, and whether it must exist.
fn location() -> Option<(PathBuf, bool)> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(p) = var("GLOT_CONFIG") {
        return Some((PathBuf::from(p), true));
    }
    let base = var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some((base.join("glot").join("config.toml"), false))
}

/// The config file, or none where there is none.
pub fn load() -> Result<Config> {
    let Some((path, required)) = location() else {
        return Ok(Config::default());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(Config {
                path: Some(path),
                ..Config::default()
            })
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read config file {}", path.display()))
        }
    };
    parse(&text, &path)
}

/// The settings `text`, the content of the file at `path`, holds.
fn parse(text: &str, path: &Path) -> Result<Config> {
    let at = |what: String| format!("config file {}: {what}", path.display());
    let wrong = |what: String| anyhow::Error::from(glot::error::Error::Usage(at(what)));
    let keys: Keys = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let message = e.message().lines().next().unwrap_or("").trim().to_string();
        wrong(match line {
            Some(n) => format!("line {n}: {message}"),
            None => message,
        })
    })?;
    let length = match &keys.length {
        Some(s) => Some(
            LengthArg::from_str(s, true)
                .map_err(|_| wrong(format!("length {s:?} is not one of short, medium, long")))?,
        ),
        None => None,
    };
    if let Some(n) = keys.max_context.filter(|&n| n < 16) {
        return Err(wrong(format!("max_context {n} is below 16")));
    }
    let glossary = keys.glossary.map(|g| {
        let dir = path.parent().unwrap_or(Path::new("."));
        let home = std::env::var_os("HOME").map(PathBuf::from);
        match (g.strip_prefix("~/"), home) {
            (Some(rest), Some(home)) => home.join(rest),
            _ => dir.join(&g),
        }
        .to_string_lossy()
        .into_owned()
    });
    Ok(Config {
        path: Some(path.to_path_buf()),
        found: true,
        model: keys.model.filter(|m| !m.is_empty()),
        threads: keys.threads,
        to: keys.to,
        length,
        max_context: keys.max_context,
        glossary,
    })
}

impl Config {
    /// Fills what the command line and the environment left empty.
    pub fn apply(&self, cli: &mut Cli) {
        cli.threads = cli.threads.or(self.threads);
        let model = |m: &mut ModelArgs| {
            if m.model.is_none() {
                m.model.clone_from(&self.model);
            }
            m.max_context = m.max_context.or(self.max_context);
        };
        match &mut cli.command {
            Command::Summarize(a) => {
                a.length = a.length.or(self.length);
                model(&mut a.doc.model);
            }
            Command::Translate(a) => {
                if a.to.is_none() {
                    a.to.clone_from(&self.to);
                }
                if a.glossary.is_none() {
                    a.glossary.clone_from(&self.glossary);
                }
                model(&mut a.doc.model);
            }
            Command::Batch(a) => {
                a.length = a.length.or(self.length);
                if a.glossary.is_none() {
                    a.glossary.clone_from(&self.glossary);
                }
                model(&mut a.model);
            }
            Command::Generate(a) => model(&mut a.model),
            Command::Serve(a) => {
                if a.glossary.is_none() {
                    a.glossary.clone_from(&self.glossary);
                }
                model(&mut a.model);
            }
            Command::Eval(crate::cli::EvalCommand::Translate { model: m, .. })
            | Command::Eval(crate::cli::EvalCommand::Summarize { model: m, .. }) => model(m),
            Command::Models(_)
            | Command::Languages { .. }
            | Command::Completions { .. }
            | Command::Man { .. }
            | Command::Config => {}
        }
    }

    /// `glot config`: each setting the file can hold, its value and where it
    /// comes from (a command's own flags come first still).
    pub fn describe(&self) -> String {
        let file = match &self.path {
            Some(p) if self.found => format!("config file {}", p.display()),
            _ => String::new(),
        };
        let from_file = |set: bool, builtin: &str| match set {
            true => file.clone(),
            false => format!("built-in{builtin}"),
        };
        let env_model = std::env::var("GLOT_MODEL").ok().filter(|m| !m.is_empty());
        let (model, model_from) = match (&env_model, &self.model) {
            (Some(m), _) => (m.clone(), "environment (GLOT_MODEL)".to_string()),
            (None, Some(m)) => (m.clone(), file.clone()),
            (None, None) => (
                "-".to_string(),
                "built-in: the task's default model".to_string(),
            ),
        };
        let show = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
        let rows = [
            ("model", model, model_from),
            (
                "threads",
                show(self.threads.map(|n| n.to_string())),
                from_file(self.threads.is_some(), ": one per physical core"),
            ),
            (
                "to",
                show(self.to.clone()),
                from_file(self.to.is_some(), ": none, `glot translate` needs --to"),
            ),
            (
                "length",
                format!("{:?}", self.length.unwrap_or_default()).to_lowercase(),
                from_file(self.length.is_some(), ""),
            ),
            (
                "max_context",
                show(self.max_context.map(|n| n.to_string())),
                from_file(
                    self.max_context.is_some(),
                    ": by cache type and the model's own",
                ),
            ),
            (
                "glossary",
                show(self.glossary.clone()),
                from_file(self.glossary.is_some(), ": none"),
            ),
        ];
        let mut out = match &self.path {
            Some(p) if !self.found => format!("config file: {} (none there)\n", p.display()),
            Some(p) => format!("config file: {}\n", p.display()),
            None => "config file: none (no HOME)\n".to_string(),
        };
        for (key, value, from) in rows {
            out.push_str(&format!("{key:<12} {value:<32} {from}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_checked_and_glossaries_found_beside_the_file() {
        let path = Path::new("/etc/glot/config.toml");
        let c = parse(
            "model = \"m.gguf\"\nthreads = 3\nto = \"de\"\nlength = \"Short\"\nmax_context = 4096\nglossary = \"terms.tsv\"\n",
            path,
        )
        .unwrap();
        assert_eq!(c.model.as_deref(), Some("m.gguf"));
        assert_eq!(c.threads.map(|n| n.get()), Some(3));
        assert_eq!(c.length, Some(LengthArg::Short));
        assert_eq!(c.max_context, Some(4096));
        assert_eq!(c.glossary.as_deref(), Some("/etc/glot/terms.tsv"));
        let err = |text: &str| parse(text, path).unwrap_err().to_string();
        assert!(
            err("modle = \"x\"").contains("line 1"),
            "{}",
            err("modle = \"x\"")
        );
        assert!(err("modle = \"x\"").contains("modle"));
        assert!(err("threads = 0").starts_with("config file /etc/glot/config.toml"));
        assert!(err("length = \"huge\"").contains("short, medium, long"));
        assert!(err("max_context = 8").contains("below 16"));
        assert!(err("\n\nto = ").contains("line 3"), "{}", err("\n\nto = "));
        for e in [err("modle = 1"), err("threads = -1"), err("\n\nto = ")] {
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }
}
