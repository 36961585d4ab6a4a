//! A folder of documents as `glot batch` does it: every document, each with
//! one or more jobs, done once even across interruptions, reruns and
//! machines.
//!
//! The pieces are independent of how the batch is shown or stopped: the
//! walk finds documents lazily ([`walk`]), [`shard`] says which belong to
//! this process, [`paths`] keeps writes inside the output folder, [`lock`]
//! keeps two processes off one item and off each other's half-written
//! files, and the [`manifest`] records what was done with which settings,
//! so a rerun knows what to skip.

pub mod lock;
pub mod manifest;
pub mod paths;
pub mod shard;
pub mod walk;

use serde_json::json;

use crate::digest::sha256_hex;
use crate::text::lang::Language;

/// One thing to make of each document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// A summary, in `language` (the document's own when `None`).
    Summarize {
        language: Option<Language>,
        words: usize,
    },
    /// A translation into `target`.
    Translate { target: Language },
}

impl Job {
    /// The job's name in the manifest: `summarize` or `translate:fr`.
    pub fn key(&self) -> String {
        match self {
            Job::Summarize { .. } => "summarize".into(),
            Job::Translate { target } => format!("translate:{}", target.code),
        }
    }

    /// The output file name for a document named `stem.ext`: summaries
    /// are Markdown, translations keep the document's format.
    pub fn output_name(&self, stem: &str, ext: &str) -> String {
        match self {
            Job::Summarize { .. } => format!("{stem}.summary.md"),
            Job::Translate { target } if ext.is_empty() => format!("{stem}.{}", target.code),
            Job::Translate { target } => format!("{stem}.{}.{ext}", target.code),
        }
    }

    /// What the job's result depends on, besides the input and `common`.
    pub fn settings(&self, common: &serde_json::Value) -> serde_json::Value {
        let own = match self {
            Job::Summarize { language, words } => json!({
                "task": "summarize",
                "language": language.as_ref().map(|l| &l.code),
                "words": words,
            }),
            Job::Translate { target } => json!({
                "task": "translate",
                "target": target.code,
            }),
        };
        json!({ "job": own, "run": common })
    }
}

/// Digest of settings, stable for equal JSON (object keys are sorted).
pub fn settings_hash(settings: &serde_json::Value) -> String {
    sha256_hex(settings.to_string().as_bytes())[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::lang::resolve;

    #[test]
    fn job_names_and_settings() {
        let fr = Job::Translate {
            target: resolve("fr").unwrap(),
        };
        assert_eq!(fr.key(), "translate:fr");
        assert_eq!(fr.output_name("post", "md"), "post.fr.md");
        assert_eq!(fr.output_name("README", ""), "README.fr");
        let s = Job::Summarize {
            language: None,
            words: 150,
        };
        assert_eq!(s.output_name("post", "html"), "post.summary.md");
        let common = json!({"model": "m"});
        assert_eq!(
            settings_hash(&s.settings(&common)),
            settings_hash(&s.settings(&json!({"model": "m"})))
        );
        assert_ne!(
            settings_hash(&s.settings(&common)),
            settings_hash(&fr.settings(&common))
        );
    }
}
