//! Beam search with the bookkeeping of `transformers`'
//! `generate(num_beams=N)`, so that the same model gives the same output in
//! glot and in Python. The model-specific drivers (encoder-decoders in
//! `seq2seq`, chat models in `generate`) run the network; this module
//! decides, step by step, which beams live on.
//!
//! What has to match, beyond "keep the N best prefixes":
//! - scores are summed log-probabilities of the raw logits; banned tokens
//!   and the forced end token are applied after the softmax, so they do not
//!   renormalise anything;
//! - each step looks at the (1 + end tokens)·N best continuations over all
//!   beams (at least 2·N). Of those, an end token among the N best becomes a
//!   finished hypothesis, scored as sum / length^length_penalty; the N best
//!   that did not end run on;
//! - a search stops when no running beam could beat its worst finished
//!   hypothesis (a heuristic whose details `early_stopping` chooses), or
//!   when it reaches its length cap.

use crate::engine::choice::{Rules, StopReason};

/// How long a search goes on once hypotheses have finished
/// (`early_stopping` of `transformers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyStopping {
    /// `false`: stop when the best running beam, at its current length,
    /// cannot beat the worst finished hypothesis.
    Heuristic,
    /// `true`: stop as soon as there are N finished hypotheses.
    Done,
    /// `"never"`: as `Heuristic`, but with a positive length penalty the
    /// running beam is judged at the longest length it could reach.
    Never,
}

impl EarlyStopping {
    /// The value of `early_stopping` in a generation config.
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        match v {
            serde_json::Value::Bool(true) => Some(EarlyStopping::Done),
            serde_json::Value::Bool(false) => Some(EarlyStopping::Heuristic),
            serde_json::Value::String(s) if s == "never" => Some(EarlyStopping::Never),
            _ => None,
        }
    }
}

/// Beam search settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beam {
    /// Hypotheses kept per sentence (2 or more).
    pub beams: usize,
    /// Exponent of the length that divides a finished hypothesis's score:
    /// above 0 favours longer translations, below 0 shorter ones.
    pub length_penalty: f32,
    pub early_stopping: EarlyStopping,
}

/// The score `transformers` gives a placeholder: far below any real one.
const NONE: f32 = -1.0e9;

/// A finished hypothesis, or a placeholder for one not found yet.
#[derive(Debug, Clone)]
struct Finished {
    ids: Vec<u32>,
    score: f32,
    real: bool,
}

/// One sequence's search: its running beams and finished hypotheses.
pub struct Search {
    cap: usize,
    /// Tokens produced so far by each running beam.
    step: usize,
    /// The running beams, best first: tokens so far and summed log-probability.
    running: Vec<(Vec<u32>, f32)>,
    /// The best finished hypotheses, best first.
    finished: Vec<Finished>,
    /// Whether a running beam may still beat a finished one.
    open: bool,
}

/// What a search settled on.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub ids: Vec<u32>,
    pub stop: StopReason,
    /// Summed log-probabilities over length^length_penalty.
    pub score: f32,
}

/// One continuation: the beam it extends, its token, its summed score.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    beam: usize,
    token: u32,
    score: f32,
}

impl Search {
    /// A search of `beams` beams for at most `cap` new tokens. Only the
    /// first beam is live at the start, so that the beams do not all pick
    /// the same first tokens.
    pub fn new(beams: usize, cap: usize) -> Self {
        Search {
            cap,
            step: 0,
            running: (0..beams)
                .map(|b| (Vec::new(), if b == 0 { 0.0 } else { NONE }))
                .collect(),
            finished: vec![
                Finished {
                    ids: Vec::new(),
                    score: NONE,
                    real: false,
                };
                beams
            ],
            open: true,
        }
    }

    /// Tokens each running beam holds: the steps taken so far.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// The token each running beam ended on, to feed the model next.
    pub fn last_tokens(&self) -> impl Iterator<Item = u32> + '_ {
        self.running
            .iter()
            .map(|(ids, _)| *ids.last().expect("a running beam has a token"))
    }

    /// One step, from the next-token logits of each beam (`logits(b)`).
    /// Returns, for each new running beam, the beam it continues; `None`
    /// when the search is over.
    pub fn advance<'l>(
        &mut self,
        logits: impl Fn(usize) -> &'l [f32],
        rules: &Rules,
        beam: &Beam,
    ) -> Option<Vec<usize>> {
        let n = self.running.len();
        let keep = (1 + rules.eos.len()).max(2) * n;
        self.step += 1;
        // Tokens generated once this step's is added.
        let length = self.step;
        let last = length >= self.cap;
        let mut candidates: Vec<Candidate> = Vec::with_capacity(n * keep);
        for b in 0..n {
            let mut scores = log_softmax(logits(b));
            rules.bar(&mut scores, &self.running[b].0, last);
            candidates.extend(best(&scores, self.running[b].1, b, keep));
        }
        // Best first; among equal scores the lower beam, then the lower token.
        candidates.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.beam.cmp(&b.beam))
                .then(a.token.cmp(&b.token))
        });
        candidates.truncate(keep);
        let ends = |c: &Candidate| last || rules.eos.contains(&c.token);

        // Hypotheses that end here, if among the N best. (A search that
        // could no longer improve them has already stopped.)
        let divisor = (length as f64).powf(beam.length_penalty as f64) as f32;
        let mut merged = std::mem::take(&mut self.finished);
        for c in candidates.iter().take(n).filter(|c| ends(c)) {
            let mut ids = self.running[c.beam].0.clone();
            ids.push(c.token);
            merged.push(Finished {
                ids,
                score: c.score / divisor,
                real: true,
            });
        }
        merged.sort_by(|a, b| b.score.total_cmp(&a.score));
        merged.truncate(n);
        self.finished = merged;

        // The N best that did not end run on (ended ones sink to the bottom).
        let mut ranked: Vec<(f32, &Candidate)> = candidates
            .iter()
            .map(|c| (if ends(c) { c.score + NONE } else { c.score }, c))
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranked.truncate(n);
        let parents: Vec<usize> = ranked.iter().map(|(_, c)| c.beam).collect();
        self.running = ranked
            .iter()
            .map(|&(score, c)| {
                let mut ids = self.running[c.beam].0.clone();
                ids.push(c.token);
                (ids, score)
            })
            .collect();

        // Can a running beam still beat the worst finished hypothesis?
        let judged_at = match beam.early_stopping {
            EarlyStopping::Never if beam.length_penalty > 0.0 => self.cap,
            _ => length,
        };
        let best_possible =
            self.running[0].1 / (judged_at as f64).powf(beam.length_penalty as f64) as f32;
        let worst = self
            .finished
            .iter()
            .map(|f| f.score)
            .fold(f32::INFINITY, f32::min);
        self.open &= self
            .finished
            .iter()
            .any(|f| best_possible > if f.real { worst } else { NONE });

        let full = self.finished.iter().all(|f| f.real);
        let over = !self.open
            || (beam.early_stopping == EarlyStopping::Done && full)
            || candidates.iter().all(ends);
        (!over).then_some(parents)
    }

    /// The best finished hypothesis.
    pub fn conclude(self, rules: &Rules) -> Found {
        let best = self
            .finished
            .into_iter()
            .find(|f| f.real)
            .unwrap_or_else(|| {
                let (ids, score) = self.running.into_iter().next().unwrap_or_default();
                Finished {
                    ids,
                    score,
                    real: false,
                }
            });
        // At the cap a forced end token is not the model's choice.
        let forced = rules.forced_eos.is_some() && best.ids.len() >= self.cap;
        let ended = best.ids.last().is_some_and(|t| rules.eos.contains(t));
        Found {
            stop: if ended && !forced {
                StopReason::Eos
            } else {
                StopReason::Length
            },
            ids: best.ids,
            score: best.score,
        }
    }
}

/// `log_softmax` in f32 as torch computes it: x - max - ln Σ exp(x - max).
fn log_softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    let shift = max + sum.ln();
    row.iter().map(|&x| x - shift).collect()
}

/// The `keep` best continuations of beam `b`, whose score so far is `base`.
fn best(scores: &[f32], base: f32, b: usize, keep: usize) -> Vec<Candidate> {
    let mut top: Vec<Candidate> = Vec::with_capacity(keep + 1);
    for (token, &s) in scores.iter().enumerate() {
        let score = s + base;
        if top.len() == keep && score <= top[keep - 1].score {
            continue;
        }
        let at = top.partition_point(|c| c.score >= score);
        top.insert(
            at,
            Candidate {
                beam: b,
                token: token as u32,
                score,
            },
        );
        top.truncate(keep);
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_sums_to_one_and_keeps_order() {
        let row = [1.0f32, 3.0, -2.0, 0.5];
        let l = log_softmax(&row);
        let total: f32 = l.iter().map(|x| x.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!(l[1] > l[0] && l[0] > l[3] && l[3] > l[2]);
    }

    #[test]
    fn best_keeps_the_highest_scores_first_tokens_first_on_ties() {
        let scores = [0.5f32, 2.0, 2.0, -1.0, 3.0];
        let top = best(&scores, -1.0, 1, 3);
        let got: Vec<(u32, f32)> = top.iter().map(|c| (c.token, c.score)).collect();
        assert_eq!(got, vec![(4, 2.0), (1, 1.0), (2, 1.0)]);
        assert!(top.iter().all(|c| c.beam == 1));
    }
}
