//! The decoding drivers of an encoder-decoder: the source batch encoded
//! once, then greedy decoding or beam search one decoder step at a time,
//! each sentence leaving the batch when it is done.

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};

use super::generation::Special;
use super::network::{DecoderState, EncoderDecoder};
use crate::engine::beam::{Beam, Search};
use crate::engine::choice::StopReason;
use crate::error::Error;

/// One sentence's output ids (ending with EOS when one was produced).
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub ids: Vec<u32>,
    pub stop: StopReason,
    /// A beam search hypothesis's score: summed log-probabilities over
    /// length^length_penalty.
    pub score: Option<f32>,
}

/// Outputs of one batch and where its time went.
#[derive(Debug, Clone, Default)]
pub struct Generation {
    pub outputs: Vec<Output>,
    pub encode_secs: f64,
    pub decode_secs: f64,
}

/// Runs the encoder on a padded batch of source ids; `None` for no input.
fn encode_batch<M: EncoderDecoder>(
    model: &M,
    inputs: &[Vec<u32>],
    special: &Special,
    device: &Device,
) -> Result<Option<DecoderState>> {
    let b = inputs.len();
    if b == 0 {
        return Ok(None);
    }
    let s = inputs.iter().map(Vec::len).max().unwrap_or(0).max(1);
    if s > model.max_positions() {
        return Err(Error::Context(format!(
            "a sentence of {s} tokens is longer than the model's {} positions",
            model.max_positions()
        ))
        .into());
    }
    let mut ids = Vec::with_capacity(b * s);
    let mut mask = Vec::with_capacity(b * s);
    for row in inputs {
        ids.extend(row.iter().copied());
        ids.extend(std::iter::repeat_n(special.pad, s - row.len()));
        mask.extend(std::iter::repeat_n(1u32, row.len()));
        mask.extend(std::iter::repeat_n(0u32, s - row.len()));
    }
    let ids = Tensor::from_vec(ids, (b, s), device)?;
    let mask = Tensor::from_vec(mask, (b, s), device)?;
    Ok(Some(model.encode(&ids, &mask)?))
}

/// Each sentence's cap on new tokens, within the decoder's positions.
fn length_caps<M: EncoderDecoder>(model: &M, b: usize, max_new: &[usize]) -> Result<Vec<usize>> {
    anyhow::ensure!(
        max_new.len() == b,
        "{} length caps for {b} sentences",
        max_new.len()
    );
    // The start token takes the first decoder position (transformers'
    // `max_length` counts it too).
    let limit = model.max_positions().saturating_sub(1).max(1);
    Ok(max_new.iter().map(|&m| m.min(limit).max(1)).collect())
}

/// Greedy decoding of a batch: `inputs` are source ids, `max_new[i]` caps
/// sentence i. Finished sentences leave the batch, so a long one does not
/// keep short ones computing.
pub fn greedy<M: EncoderDecoder>(
    model: &M,
    inputs: &[Vec<u32>],
    max_new: &[usize],
    special: &Special,
    device: &Device,
) -> Result<Generation> {
    let started = Instant::now();
    let Some(mut state) = encode_batch(model, inputs, special, device)? else {
        return Ok(Generation::default());
    };
    let b = inputs.len();
    let caps = length_caps(model, b, max_new)?;
    let encode_secs = started.elapsed().as_secs_f64();
    let decoding = Instant::now();
    let mut outputs: Vec<Output> = (0..b)
        .map(|_| Output {
            ids: Vec::new(),
            stop: StopReason::Length,
            score: None,
        })
        .collect();
    let eos = [special.eos];
    let rules = special.rules(&eos);
    let mut active: Vec<usize> = (0..b).collect();
    let mut tokens = vec![special.start; b];
    for step in 0.. {
        let input = Tensor::from_vec(tokens.clone(), tokens.len(), device)?;
        let logits = model.step(&mut state, &input)?.to_vec2::<f32>()?;
        let mut keep = Vec::with_capacity(active.len());
        let mut next = Vec::with_capacity(active.len());
        for (row, (&sentence, mut l)) in active.iter().zip(logits).enumerate() {
            let last = step + 1 >= caps[sentence];
            let out = &mut outputs[sentence];
            let (token, ended) = rules.greedy(&mut l, &out.ids, last);
            out.ids.push(token);
            // An end the model chose itself, not one forced at the cap.
            if ended {
                out.stop = StopReason::Eos;
            } else if !last {
                keep.push(row);
                next.push(token);
            }
        }
        if keep.is_empty() {
            break;
        }
        if keep.len() < active.len() {
            state.retain(&keep)?;
            active = keep.iter().map(|&r| active[r]).collect();
        }
        tokens = next;
    }
    Ok(Generation {
        outputs,
        encode_secs,
        decode_secs: decoding.elapsed().as_secs_f64(),
    })
}

/// Beam search over a batch: `inputs` are source ids, `max_new[i]` caps
/// sentence i. Each sentence's search is independent of the others in its
/// batch, so one that is done leaves the batch, as in greedy decoding. Each
/// output carries its hypothesis's score.
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
        return Ok(Generation::default());
    };
    let caps = length_caps(model, inputs.len(), max_new)?;
    // Every sentence's row becomes N identical rows, one per beam.
    let rows: Vec<usize> = (0..inputs.len())
        .flat_map(|s| std::iter::repeat_n(s, n))
        .collect();
    state.retain(&rows)?;
    let encode_secs = started.elapsed().as_secs_f64();
    let decoding = Instant::now();

    let eos = [special.eos];
    let rules = special.rules(&eos);
    let mut active: Vec<(usize, Search)> = caps
        .iter()
        .enumerate()
        .map(|(sentence, &cap)| (sentence, Search::new(n, cap)))
        .collect();
    let mut outputs: Vec<Option<Output>> = vec![None; inputs.len()];
    let mut tokens = vec![special.start; active.len() * n];
    loop {
        let input = Tensor::from_vec(tokens, active.len() * n, device)?;
        let logits = model.step(&mut state, &input)?.to_vec2::<f32>()?;
        let mut rows = Vec::with_capacity(active.len() * n);
        let mut next = Vec::with_capacity(active.len() * n);
        let mut kept = Vec::with_capacity(active.len());
        let before = active.len();
        for (k, (sentence, mut search)) in std::mem::take(&mut active).into_iter().enumerate() {
            match search.advance(|b| &logits[k * n + b], &rules, beam) {
                Some(parents) => {
                    rows.extend(parents.into_iter().map(|p| k * n + p));
                    next.extend(search.last_tokens());
                    kept.push((sentence, search));
                }
                None => {
                    let found = search.conclude(&rules);
                    outputs[sentence] = Some(Output {
                        ids: found.ids,
                        stop: found.stop,
                        score: Some(found.score),
                    });
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
