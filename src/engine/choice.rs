//! What every decoding driver shares (greedy decoding, sampling, beam
//! search, for chat models and encoder-decoders alike): the greedy choice,
//! the rules that bar or force tokens, and why a generation ended. A module
//! of its own, so that no driver imports another for them.

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Eos,
    Length,
    Repetition,
}

/// Index of the largest logit; the first one on ties, as `torch.argmax`.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in logits.iter().enumerate() {
        if *x > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// The tokens a generation must treat specially.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// Tokens that end a generation.
    pub eos: &'a [u32],
    /// Tokens never produced.
    pub banned: &'a [u32],
    /// The only token allowed at the last step the cap leaves (Marian).
    pub forced_eos: Option<u32>,
}

impl Rules<'_> {
    /// Bars from `scores` (logits or log-probabilities of one step) what
    /// the rules bar: banned tokens always, and every token but the forced
    /// end at the `last` step the cap leaves.
    pub fn bar(&self, scores: &mut [f32], last: bool) {
        for &banned in self.banned {
            if let Some(x) = scores.get_mut(banned as usize) {
                *x = f32::NEG_INFINITY;
            }
        }
        if let (Some(eos), true) = (self.forced_eos, last) {
            scores.fill(f32::NEG_INFINITY);
            if let Some(x) = scores.get_mut(eos as usize) {
                *x = 0.0;
            }
        }
    }

    /// The greedy choice from one step's `logits`, at a step that is the
    /// `last` the cap leaves or not, and whether it ends the generation
    /// by the model's own choice (a forced end is the cap's).
    pub fn greedy(&self, logits: &mut [f32], last: bool) -> (u32, bool) {
        self.bar(logits, false);
        let chosen = argmax(logits);
        let token = match self.forced_eos {
            Some(eos) if last => eos,
            _ => chosen,
        };
        (token, token == chosen && self.eos.contains(&token))
    }
}
