//! Errors a caller can act on.
//!
//! Everything here is the user's to fix (a file, a flag, a model folder) and
//! maps to exit code 1; anything else that goes wrong is unexpected (exit 2).

use std::path::PathBuf;

/// A failure caused by the input, the flags or the model files given.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {reason}")]
    Input { path: String, reason: String },
    #[error("unsupported model architecture `{found}` (supported: {supported})")]
    UnsupportedArchitecture { found: String, supported: String },
    #[error("{0}")]
    Model(String),
    #[error("{path}: missing {what}")]
    ModelFileMissing { path: PathBuf, what: String },
    #[error("{0}")]
    Language(String),
    #[error("{0}")]
    Context(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    HubNotFound(String),
    #[error("{0}")]
    HubUnreachable(String),
    /// A batch ended with documents that failed (each is in the manifest).
    #[error("{0}")]
    BatchFailures(String),
    /// Stopped by a signal before the work was done.
    #[error("{0}")]
    Interrupted(String),
}

impl Error {
    /// A problem with a model's files or metadata.
    pub fn model(msg: impl Into<String>) -> Self {
        Error::Model(msg.into())
    }

    /// A problem with an input document.
    pub fn input(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
