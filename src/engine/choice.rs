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

/// The tokens a generation must treat specially, as transformers' logits
/// processors do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules<'a> {
    /// Tokens that end a generation.
    pub eos: &'a [u32],
    /// Tokens never produced.
    pub banned: &'a [u32],
    /// The only token allowed at the last step the cap leaves (Marian).
    pub forced_eos: Option<u32>,
    /// The only token allowed first (BART's `forced_bos_token_id`).
    pub forced_first: Option<u32>,
    /// Tokens generated before an end may be (transformers' `min_length`
    /// less the decoder's start token, which it counts).
    pub min_new: usize,
    /// No n-gram of this many tokens twice (`no_repeat_ngram_size`; 0 for
    /// none), over the generated tokens after `start`.
    pub no_repeat_ngram: usize,
    /// An encoder-decoder's decoder start token, which transformers counts
    /// in the sequence its n-grams come from.
    pub start: Option<u32>,
}

impl Rules<'_> {
    /// Bars from `scores` (logits or log-probabilities of one step, after
    /// the `generated` tokens) what the rules bar: banned tokens, tokens
    /// that would repeat an n-gram, an end before the minimum length; and
    /// every token but the forced one at the first step, or at the `last`
    /// step the cap leaves.
    pub fn bar(&self, scores: &mut [f32], generated: &[u32], last: bool) {
        let mut set = |token: u32, value: f32| {
            if let Some(x) = scores.get_mut(token as usize) {
                *x = value;
            }
        };
        for &banned in self.banned {
            set(banned, f32::NEG_INFINITY);
        }
        for token in repeated_ngram_ends(self.start, generated, self.no_repeat_ngram) {
            set(token, f32::NEG_INFINITY);
        }
        if generated.len() < self.min_new {
            for &eos in self.eos {
                set(eos, f32::NEG_INFINITY);
            }
        }
        let forced = match (self.forced_first, self.forced_eos) {
            (Some(first), _) if generated.is_empty() => Some(first),
            (_, Some(eos)) if last => Some(eos),
            _ => None,
        };
        if let Some(token) = forced {
            scores.fill(f32::NEG_INFINITY);
            if let Some(x) = scores.get_mut(token as usize) {
                *x = 0.0;
            }
        }
    }

    /// The greedy choice from one step's `logits` after the `generated`
    /// tokens, at a step that is the `last` the cap leaves or not, and
    /// whether it ends the generation by the model's own choice (a forced
    /// end is the cap's).
    pub fn greedy(&self, logits: &mut [f32], generated: &[u32], last: bool) -> (u32, bool) {
        self.bar(logits, generated, false);
        let chosen = argmax(logits);
        let token = match self.forced_eos {
            Some(eos) if last => eos,
            _ => chosen,
        };
        (token, token == chosen && self.eos.contains(&token))
    }
}

/// Tokens that would complete an `n`-gram (0: none) the sequence already
/// holds: the tokens after each earlier occurrence of its last `n - 1`
/// tokens. The sequence is `start`, when given, then `ids`.
fn repeated_ngram_ends(start: Option<u32>, ids: &[u32], n: usize) -> Vec<u32> {
    let len = ids.len() + usize::from(start.is_some());
    if n == 0 || len < n {
        return Vec::new();
    }
    let at = |i: usize| match start {
        Some(s) if i == 0 => s,
        Some(_) => ids[i - 1],
        None => ids[i],
    };
    let tail = len + 1 - n;
    (0..=len - n)
        .filter(|&w| (0..n - 1).all(|k| at(w + k) == at(tail + k)))
        .map(|w| at(w + n - 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_repeat_ngram_bans_what_would_complete_a_seen_ngram() {
        assert_eq!(repeated_ngram_ends(None, &[1, 2, 3, 1, 2], 3), [3]);
        assert_eq!(
            repeated_ngram_ends(None, &[1, 2, 3, 1, 2, 4, 1, 2], 3),
            [3, 4]
        );
        assert!(repeated_ngram_ends(None, &[1, 2, 3], 3).is_empty());
        assert!(repeated_ngram_ends(None, &[1, 2], 3).is_empty());
        assert!(repeated_ngram_ends(None, &[1, 2, 1], 0).is_empty());
        // The start token counts, as transformers counts the decoder's.
        assert_eq!(repeated_ngram_ends(Some(7), &[1, 7], 2), [1]);
        assert_eq!(repeated_ngram_ends(Some(7), &[1, 2, 7, 1], 3), [2]);
        assert!(repeated_ngram_ends(Some(7), &[1], 3).is_empty());
    }
}
