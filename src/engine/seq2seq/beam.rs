//! Beam search for the translation models, with the bookkeeping of
//! `transformers`' `generate(num_beams=N)`, so that the same model gives the
//! same translation in glot and in Python.
//!
//! What has to match, beyond "keep the N best prefixes":
//! - scores are summed log-probabilities of the raw logits; banned tokens
//!   and the forced end token are applied after the softmax, so they do not
//!   renormalise anything;
//! - each step looks at the 2·N best continuations over all beams. Of those,
//!   an end token among the N best becomes a finished hypothesis, scored as
//!   sum / length^length_penalty; the N best that did not end run on;
//! - a sentence stops when no running beam could beat its worst finished
//!   hypothesis (a heuristic whose details `early_stopping` chooses), or
//!   when it reaches its length cap.
//!
//! Each sentence's search is independent of the others in its batch, so a
//! sentence that is done leaves the batch, as in greedy decoding.

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};

use super::{encode_batch, length_caps, EncoderDecoder, Generation, Output, Special};
use crate::engine::generate::StopReason;

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

/// One sentence's search.
struct Search {
    sentence: usize,
    cap: usize,
    /// The running beams, best first: tokens so far and summed log-probability.
    running: Vec<(Vec<u32>, f32)>,
    /// The best finished hypotheses, best first.
    finished: Vec<Finished>,
    /// Whether a running beam may still beat a finished one.
    open: bool,
}

/// One continuation: the beam it extends, its token, its summed score.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    beam: usize,
    token: u32,
    score: f32,
}

/// Beam search over a batch: `inputs` are source ids, `max_new[i]` caps
/// sentence i. Each output carries its hypothesis's score.
pub fn beam_search<M: EncoderDecoder>(
    model: &M,
    inputs: &[Vec<u32>],
    max_new: &[usize],
    special: &Special,
    beam: &Beam,
    device: &Device,
) -> Result<Generation> {
    let n = beam.beams;
    anyhow::ensure!(n >= 2, "beam search needs at least 2 beams");
    let started = Instant::now();
    let Some(mut state) = encode_batch(model, inputs, special, device)? else {
        return Ok(Generation {
            outputs: Vec::new(),
            encode_secs: 0.0,
            decode_secs: 0.0,
        });
    };
    let caps = length_caps(model, inputs.len(), max_new)?;
    // Every sentence's row becomes N identical rows, one per beam.
    let rows: Vec<usize> = (0..inputs.len())
        .flat_map(|s| std::iter::repeat_n(s, n))
        .collect();
    state.retain(&rows)?;
    let encode_secs = started.elapsed().as_secs_f64();
    let decoding = Instant::now();

    let mut active: Vec<Search> = caps
        .iter()
        .enumerate()
        .map(|(sentence, &cap)| Search {
            sentence,
            cap,
            // Only the first beam is live at the start, so that the N beams
            // do not all pick the same first tokens.
            running: (0..n)
                .map(|b| (Vec::new(), if b == 0 { 0.0 } else { NONE }))
                .collect(),
            finished: vec![
                Finished {
                    ids: Vec::new(),
                    score: NONE,
                    real: false,
                };
                n
            ],
            open: true,
        })
        .collect();
    let mut outputs: Vec<Option<Output>> = vec![None; inputs.len()];
    let mut tokens = vec![special.start; active.len() * n];
    for step in 0.. {
        let input = Tensor::from_vec(tokens, active.len() * n, device)?;
        let logits = model.step(&mut state, &input)?.to_vec2::<f32>()?;
        let mut rows = Vec::with_capacity(active.len() * n);
        let mut next = Vec::with_capacity(active.len() * n);
        let mut kept = Vec::with_capacity(active.len());
        let before = active.len();
        for (k, mut search) in std::mem::take(&mut active).into_iter().enumerate() {
            let parents = advance(
                &mut search,
                &logits[k * n..(k + 1) * n],
                step,
                special,
                beam,
            );
            match parents {
                Some(parents) => {
                    for (parent, (ids, _)) in parents.into_iter().zip(&search.running) {
                        rows.push(k * n + parent);
                        next.push(*ids.last().expect("a running beam has a token"));
                    }
                    kept.push(search);
                }
                None => {
                    let sentence = search.sentence;
                    outputs[sentence] = Some(conclude(search, special));
                }
            }
        }
        active = kept;
        if active.is_empty() {
            break;
        }
        if active.len() == before {
            // Beams of one sentence share their source, so only the
            // decoder's own cache needs reordering.
            state.reorder_past(&rows)?;
        } else {
            state.retain(&rows)?;
        }
        tokens = next;
    }
    Ok(Generation {
        outputs: outputs
            .into_iter()
            .map(|o| o.expect("every sentence concludes"))
            .collect(),
        encode_secs,
        decode_secs: decoding.elapsed().as_secs_f64(),
    })
}

/// One step of one sentence's search, from its beams' logits. Returns, for
/// each new running beam, the beam it continues; `None` when the search
/// is over.
fn advance(
    search: &mut Search,
    logits: &[Vec<f32>],
    step: usize,
    special: &Special,
    beam: &Beam,
) -> Option<Vec<usize>> {
    let n = search.running.len();
    let keep = 2 * n;
    // Tokens generated once this step's is added.
    let length = step + 1;
    let last = length >= search.cap;
    let mut candidates: Vec<Candidate> = Vec::with_capacity(n * keep);
    for (b, row) in logits.iter().enumerate() {
        let mut scores = log_softmax(row);
        for &banned in &special.banned {
            if let Some(x) = scores.get_mut(banned as usize) {
                *x = f32::NEG_INFINITY;
            }
        }
        if let (Some(eos), true) = (special.forced_eos, last) {
            scores.fill(f32::NEG_INFINITY);
            if let Some(x) = scores.get_mut(eos as usize) {
                *x = 0.0;
            }
        }
        let base = search.running[b].1;
        candidates.extend(best(&scores, base, b, keep));
    }
    // Best first; among equal scores the lower beam, then the lower token.
    candidates.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.beam.cmp(&b.beam))
            .then(a.token.cmp(&b.token))
    });
    candidates.truncate(keep);
    let ends = |c: &Candidate| c.token == special.eos || last;

    // Hypotheses that end here, if among the N best. (A search that could
    // no longer improve them has already stopped.)
    let divisor = (length as f64).powf(beam.length_penalty as f64) as f32;
    let mut merged = std::mem::take(&mut search.finished);
    for c in candidates.iter().take(n).filter(|c| ends(c)) {
        let mut ids = search.running[c.beam].0.clone();
        ids.push(c.token);
        merged.push(Finished {
            ids,
            score: c.score / divisor,
            real: true,
        });
    }
    merged.sort_by(|a, b| b.score.total_cmp(&a.score));
    merged.truncate(n);
    search.finished = merged;

    // The N best that did not end run on (ended ones sink to the bottom).
    let mut ranked: Vec<(f32, &Candidate)> = candidates
        .iter()
        .map(|c| (if ends(c) { c.score + NONE } else { c.score }, c))
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked.truncate(n);
    let parents: Vec<usize> = ranked.iter().map(|(_, c)| c.beam).collect();
    search.running = ranked
        .iter()
        .map(|&(score, c)| {
            let mut ids = search.running[c.beam].0.clone();
            ids.push(c.token);
            (ids, score)
        })
        .collect();

    // Can a running beam still beat the worst finished hypothesis?
    let judged_at = match beam.early_stopping {
        EarlyStopping::Never if beam.length_penalty > 0.0 => search.cap,
        _ => length,
    };
    let best_possible =
        search.running[0].1 / (judged_at as f64).powf(beam.length_penalty as f64) as f32;
    let worst = search
        .finished
        .iter()
        .map(|f| f.score)
        .fold(f32::INFINITY, f32::min);
    search.open &= search
        .finished
        .iter()
        .any(|f| best_possible > if f.real { worst } else { NONE });

    let full = search.finished.iter().all(|f| f.real);
    let over = !search.open
        || (beam.early_stopping == EarlyStopping::Done && full)
        || candidates.iter().all(ends);
    (!over).then_some(parents)
}

/// The best finished hypothesis as the sentence's output.
fn conclude(search: Search, special: &Special) -> Output {
    let best = search
        .finished
        .into_iter()
        .find(|f| f.real)
        .unwrap_or_else(|| {
            let (ids, score) = search.running.into_iter().next().unwrap_or_default();
            Finished {
                ids,
                score,
                real: false,
            }
        });
    // At the cap a forced end token is not the model's choice.
    let forced = special.forced_eos.is_some() && best.ids.len() >= search.cap;
    let stop = if best.ids.last() == Some(&special.eos) && !forced {
        StopReason::Eos
    } else {
        StopReason::Length
    };
    Output {
        ids: best.ids,
        stop,
        score: Some(best.score),
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
