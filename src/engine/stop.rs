//! Why a generation ended: what greedy decoding, sampling and beam search
//! all report, in a module of its own so that neither driver imports the
//! other for it.

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Eos,
    Length,
    Repetition,
}
