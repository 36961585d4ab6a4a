//! The token loop: prefill, then pick one token at a time until a stop.
//!
//! Pure with respect to I/O: it takes a model and settings, reports each new
//! token to a callback and returns what it produced, so it can be tested
//! with a fake model and reused by every task.

use std::borrow::Cow;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::beam::{Beam, Found, Search};
use super::choice::{argmax, Rules, StopReason};

/// Anything that maps token ids at given positions to next-token logits.
pub trait Forward {
    /// Logits after `ids`, placed at positions `pos..pos + ids.len()`.
    fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Vec<f32>>;
    /// Keeps the first `len` cached positions and drops the rest.
    fn rewind(&mut self, len: usize) -> Result<()>;
    /// Logits after one more token per cached row, all at position `pos`
    /// (the beams of a beam search).
    fn forward_rows(&mut self, _ids: &[u32], _pos: usize) -> Result<Vec<Vec<f32>>> {
        anyhow::bail!("this model cannot decode several sequences at once")
    }
    /// Makes cached row `i` a copy of row `rows[i]`.
    fn reorder(&mut self, _rows: &[usize]) -> Result<()> {
        anyhow::bail!("this model cannot decode several sequences at once")
    }
    /// Makes `slot` the cache that the methods above use: independent
    /// sequences decoded side by side each keep their own.
    fn select(&mut self, slot: usize) -> Result<()> {
        anyhow::ensure!(slot == 0, "this model keeps one sequence at a time");
        Ok(())
    }
    /// Keeps the first `len` cached positions and gives back the memory of
    /// the rest, as [`Forward::rewind`] does not.
    fn trim(&mut self, len: usize) -> Result<()> {
        self.rewind(len)
    }
    /// Logits after one token per slot, `steps[i]` = (slot, id, position),
    /// each the same as [`Forward::forward`] gives that token alone in its
    /// slot.
    fn forward_slots(&mut self, _steps: &[(usize, u32, usize)]) -> Result<Vec<Vec<f32>>> {
        anyhow::bail!("this model cannot decode several sequences at once")
    }
}

/// Prompt ids and the places where prompts of one run stop being alike:
/// after the system message, after the instructions that precede the text.
///
/// Prefill always cuts the prompt at these breaks, whether or not an earlier
/// call left the same prefix in the cache. So a reused prefix holds exactly
/// the numbers a fresh run computes, and every output is the same whatever
/// ran before it in the process.
#[derive(Debug, Clone, Copy)]
pub struct Prompt<'a> {
    pub ids: &'a [u32],
    /// Increasing positions, each inside the prompt.
    pub breaks: &'a [usize],
}

impl<'a> Prompt<'a> {
    /// A prompt shared with no other.
    pub fn plain(ids: &'a [u32]) -> Self {
        Prompt { ids, breaks: &[] }
    }
}

/// What the model's cache holds after a call: the prompt it was fed and the
/// breaks its prefill was cut at.
#[derive(Debug, Clone, Default)]
pub struct CacheState {
    ids: Vec<u32>,
    breaks: Vec<usize>,
}

impl CacheState {
    /// The state after `prompt` was fed (and an answer after it, which the
    /// next prompt never reuses).
    pub(super) fn holding(prompt: Prompt) -> Self {
        CacheState {
            ids: prompt.ids.to_vec(),
            breaks: prompt.breaks.to_vec(),
        }
    }

    /// Forgets what no later prompt can reuse, the positions after the
    /// last break; returns how many positions are left.
    pub(super) fn keep_reusable(&mut self) -> usize {
        let keep = self
            .breaks
            .iter()
            .copied()
            .filter(|&b| b < self.ids.len())
            .max()
            .unwrap_or(0);
        self.ids.truncate(keep);
        self.breaks.retain(|&b| b <= keep);
        keep
    }

    /// The longest break of `prompt` up to which the cache holds the same
    /// ids, cut at the same breaks.
    pub(super) fn reusable(&self, prompt: &Prompt) -> usize {
        let mut best = 0;
        for (n, &b) in prompt.breaks.iter().enumerate() {
            let same_cuts = self.breaks.get(..=n) == Some(&prompt.breaks[..=n]);
            let same_ids = self.ids.get(..b) == prompt.ids.get(..b);
            if !(same_cuts && same_ids && b < prompt.ids.len()) {
                break;
            }
            best = b;
        }
        best
    }
}

/// Sampling settings; without them decoding is greedy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
}

/// How to decode one prompt.
#[derive(Debug, Clone)]
pub struct GenParams {
    pub max_new_tokens: usize,
    pub eos: Vec<u32>,
    pub sampling: Option<Sampling>,
    /// Stop when the output falls into a loop of repeated token runs.
    pub repeat_guard: bool,
    /// Never complete an n-gram of this many tokens that the answer already
    /// holds (transformers' `no_repeat_ngram_size`, over the answer's own
    /// tokens: an answer may quote its prompt).
    pub no_repeat_ngram: Option<usize>,
    /// Beam search instead of greedy decoding (not with sampling).
    pub beam: Option<Beam>,
}

impl GenParams {
    /// The settings an answer that looped is asked again with.
    pub(super) fn for_retry(&self) -> GenParams {
        GenParams {
            no_repeat_ngram: Some(RETRY_NO_REPEAT_NGRAM),
            ..self.clone()
        }
    }
}

/// The answer tokens a translation of `source_tokens` tokens may take:
/// twice as many and some, as a translation may be longer than its source.
/// Chat models and translation models alike.
pub fn translation_room(source_tokens: usize) -> usize {
    source_tokens * 2 + 16
}

/// What a generation produced.
#[derive(Debug, Clone)]
pub struct Generated {
    /// New tokens, including the end-of-sequence token if one was produced;
    /// a loop cut by the repeat guard is removed except its first run.
    pub ids: Vec<u32>,
    pub stop: StopReason,
    /// Logits of the first step (after the prompt).
    pub first_logits: Vec<f32>,
    /// Prompt positions taken from the cache rather than computed.
    pub reused: usize,
    pub prefill_secs: f64,
    pub decode_secs: f64,
    /// A beam search's score for `ids`: summed log-probabilities over
    /// length^length_penalty, as transformers' `sequences_scores`.
    pub beam_score: Option<f32>,
    /// The tokens decoded, and the seconds they took, in steps that
    /// computed no other call: steps shared with others
    /// ([`super::parallel`]) count in `decode_secs` but are no measure of
    /// one call's speed.
    pub alone: (usize, f64),
}

impl Generated {
    /// Every token decoded in steps of this call alone.
    fn all_alone(self) -> Generated {
        Generated {
            alone: (self.ids.len(), self.decode_secs),
            ..self
        }
    }
}

/// Prompt positions fed to the model at once: bounds the attention matrix of
/// long prompts while keeping prefill batched.
const PREFILL_CHUNK: usize = 512;

/// Decodes a continuation of `prompt`, reusing the part of the cache that
/// `cache` says holds the same prefix, and records what the cache holds after.
pub fn generate(
    model: &mut dyn Forward,
    cache: &mut CacheState,
    prompt: Prompt,
    params: &GenParams,
    on_token: &mut dyn FnMut(u32),
) -> Result<Generated> {
    anyhow::ensure!(
        !prompt.ids.is_empty(),
        "cannot generate from an empty prompt"
    );
    let start = std::time::Instant::now();
    let kept = cache.reusable(&prompt);
    // Forget the state first: a failure below leaves the cache unknown.
    *cache = CacheState::default();
    model.rewind(kept)?;
    let logits = prefill(model, prompt, kept)?;
    let prefill_secs = start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    let first_logits = logits.clone();
    let (ids, stop, beam_score) = match &params.beam {
        Some(beam) => {
            let found = beam_search(model, prompt.ids.len(), &logits, params, beam)?;
            // Back to one row holding the prompt, for the next call to reuse.
            model.reorder(&[0])?;
            model.rewind(prompt.ids.len())?;
            found.ids.iter().for_each(|&t| on_token(t));
            (found.ids, found.stop, Some(found.score))
        }
        None => {
            let (ids, stop) = decode(model, prompt.ids.len(), logits, params, on_token)?;
            (ids, stop, None)
        }
    };
    *cache = CacheState::holding(prompt);
    Ok(Generated {
        ids,
        stop,
        first_logits,
        reused: kept,
        prefill_secs,
        decode_secs: start.elapsed().as_secs_f64(),
        beam_score,
        alone: (0, 0.0),
    }
    .all_alone())
}

/// The n-gram size barred from repeating when an answer that looped is
/// asked again: long enough for names and set phrases to come back, short
/// enough that a sentence cannot.
pub const RETRY_NO_REPEAT_NGRAM: usize = 6;

/// [`generate`]; an answer that falls into a loop (greedy or sampled) is
/// asked again, barred from repeating any [`RETRY_NO_REPEAT_NGRAM`] tokens
/// of itself. An answer that loops even so is kept cut at the loop
/// ([`StopReason::Repetition`]). Returns whether the first answer looped;
/// the times are those of both runs. Answers that do not loop are exactly
/// what [`generate`] gives.
///
/// The second answer starts from the first one's prompt, still in the
/// cache: prefill cuts a prompt at the same places whatever the cache held,
/// so the cached positions and the first logits are the bits a second
/// prefill would compute.
pub fn generate_unlooped(
    model: &mut dyn Forward,
    cache: &mut CacheState,
    prompt: Prompt,
    params: &GenParams,
    on_ids: &mut dyn FnMut(&[u32]),
) -> Result<(Generated, bool)> {
    let mut ids = Vec::new();
    let first = generate(model, cache, prompt, params, &mut |t| {
        ids.push(t);
        on_ids(&ids);
    })?;
    if first.stop != StopReason::Repetition || params.beam.is_some() {
        return Ok((first, false));
    }
    let start = std::time::Instant::now();
    *cache = CacheState::default();
    model.rewind(prompt.ids.len())?;
    let retry = params.for_retry();
    let logits = first.first_logits.clone();
    ids.clear();
    let (ids, stop) = decode(model, prompt.ids.len(), logits, &retry, &mut |t| {
        ids.push(t);
        on_ids(&ids);
    })?;
    *cache = CacheState::holding(prompt);
    Ok((
        Generated {
            ids,
            stop,
            decode_secs: first.decode_secs + start.elapsed().as_secs_f64(),
            ..first
        }
        .all_alone(),
        true,
    ))
}

/// Greedy or sampled decoding after a prompt of `prompt_len` positions
/// whose next-token logits are `logits`.
fn decode(
    model: &mut dyn Forward,
    prompt_len: usize,
    mut logits: Vec<f32>,
    params: &GenParams,
    on_token: &mut dyn FnMut(u32),
) -> Result<(Vec<u32>, StopReason)> {
    let mut d = Decoding::new(Cow::Borrowed(params), prompt_len);
    loop {
        if let Some(stop) = d.next(&mut logits, on_token) {
            return Ok((d.ids, stop));
        }
        let (token, pos) = d.last();
        logits = model.forward(&[token], pos)?;
    }
}

/// One greedy or sampled answer, token by token: what to pick from each
/// step's logits and when to stop. The sequential loop and the parallel
/// scheduler both drive it, so an answer is the same either way.
pub(crate) struct Decoding<'p> {
    params: Cow<'p, GenParams>,
    rng: Option<StdRng>,
    prompt_len: usize,
    /// The answer so far.
    pub ids: Vec<u32>,
}

impl<'p> Decoding<'p> {
    /// Borrows `params`, or owns them where the answer outlives the
    /// caller's settings (a call handed to the scheduler).
    pub fn new(params: Cow<'p, GenParams>, prompt_len: usize) -> Self {
        Decoding {
            rng: params.sampling.map(|s| StdRng::seed_from_u64(s.seed)),
            params,
            prompt_len,
            ids: Vec::new(),
        }
    }

    /// Picks the next token from `logits` (barring what the rules bar) and
    /// reports it; returns why the answer ends with it, if it does.
    pub fn next(
        &mut self,
        logits: &mut [f32],
        on_token: &mut dyn FnMut(u32),
    ) -> Option<StopReason> {
        let params = &*self.params;
        if self.ids.len() >= params.max_new_tokens {
            return Some(StopReason::Length);
        }
        let rules = Rules {
            no_repeat_ngram: params.no_repeat_ngram.unwrap_or(0),
            ..Rules::default()
        };
        rules.bar(logits, &self.ids, false);
        let next = match (&params.sampling, self.rng.as_mut()) {
            (Some(s), Some(rng)) => sample(logits, s, rng),
            _ => argmax(logits),
        };
        self.ids.push(next);
        on_token(next);
        if params.eos.contains(&next) {
            return Some(StopReason::Eos);
        }
        if params.repeat_guard {
            if let Some(keep) = loop_start(&self.ids) {
                self.ids.truncate(keep);
                return Some(StopReason::Repetition);
            }
        }
        (self.ids.len() == params.max_new_tokens).then_some(StopReason::Length)
    }

    /// The settings it decodes with.
    pub fn params(&self) -> &GenParams {
        &self.params
    }

    /// The newest token and the position it takes.
    pub fn last(&self) -> (u32, usize) {
        let n = self.ids.len();
        (self.ids[n - 1], self.prompt_len + n - 1)
    }
}

/// Beam search after a prompt of `prompt_len` positions whose next-token
/// logits are `first`: the cache's one row becomes a row per beam, and rows
/// follow their beams from step to step. A loop the repeat guard would cut
/// is cut from the result (its score stays the search's).
fn beam_search(
    model: &mut dyn Forward,
    prompt_len: usize,
    first: &[f32],
    params: &GenParams,
    beam: &Beam,
) -> Result<Found> {
    anyhow::ensure!(beam.beams >= 2, "beam search needs at least 2 beams");
    if params.max_new_tokens == 0 {
        return Ok(Found {
            ids: Vec::new(),
            stop: StopReason::Length,
            score: 0.0,
        });
    }
    let rules = Rules {
        eos: &params.eos,
        ..Rules::default()
    };
    let mut search = Search::new(beam.beams, params.max_new_tokens);
    // Before the first step every beam has the prompt's logits.
    let mut logits = vec![first.to_vec()];
    while let Some(parents) = search.advance(|b| &logits[b.min(logits.len() - 1)], &rules, beam) {
        model.reorder(&parents)?;
        let tokens: Vec<u32> = search.last_tokens().collect();
        // The newest tokens take the position after the ones before them.
        logits = model.forward_rows(&tokens, prompt_len + search.steps() - 1)?;
    }
    let mut found = search.conclude(&rules);
    if params.repeat_guard {
        if let Some(keep) = loop_start(&found.ids) {
            found.ids.truncate(keep);
            found.stop = StopReason::Repetition;
        }
    }
    Ok(found)
}

/// Feeds `prompt` from position `from` (a break, or 0), cut at every break
/// and into pieces of at most [`PREFILL_CHUNK`] after each; returns the
/// logits after the last position.
pub(super) fn prefill(model: &mut dyn Forward, prompt: Prompt, from: usize) -> Result<Vec<f32>> {
    let len = prompt.ids.len();
    let mut cuts: Vec<usize> = prompt
        .breaks
        .iter()
        .copied()
        .filter(|&b| b > from && b < len)
        .collect();
    cuts.push(len);
    let mut logits = Vec::new();
    let mut start = from;
    for end in cuts {
        for piece in (start..end).step_by(PREFILL_CHUNK) {
            let stop = (piece + PREFILL_CHUNK).min(end);
            logits = model.forward(&prompt.ids[piece..stop], piece)?;
        }
        start = end;
    }
    Ok(logits)
}

fn sample(logits: &[f32], s: &Sampling, rng: &mut StdRng) -> u32 {
    if s.temperature <= 0.0 {
        return argmax(logits);
    }
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i, ((l as f64 - max) / s.temperature).exp()))
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    probs.iter_mut().for_each(|p| p.1 /= total);
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    // Nucleus: the smallest prefix whose mass reaches top_p.
    let mut mass = 0.0;
    let mut keep = probs.len();
    for (n, p) in probs.iter().enumerate() {
        mass += p.1;
        if mass >= s.top_p {
            keep = n + 1;
            break;
        }
    }
    probs.truncate(keep);
    let total: f64 = probs.iter().map(|p| p.1).sum();
    let mut r = rng.random::<f64>() * total;
    for (i, p) in &probs {
        r -= p;
        if r <= 0.0 {
            return *i as u32;
        }
    }
    probs.last().map_or(0, |p| p.0 as u32)
}

/// Longest period considered a loop, and how many tokens a loop must cover
/// before it is cut: short enough to stop degenerate output early, long
/// enough never to fire on lists or tables that legitimately repeat.
const MAX_PERIOD: usize = 32;
const MIN_LOOP_TOKENS: usize = 48;
const MIN_REPEATS: usize = 3;

/// A loop of whole sentences: the newest this many tokens are found twice
/// before, apart. Shorter than a typical sentence, longer than the phrases
/// (names, titles, table cells) that good answers repeat.
const LOOP_NGRAM: usize = 16;

/// If the answer has fallen into a loop, returns the length to keep:
/// everything before the loop's second turn. A loop is the tail of `ids`
/// repeated as one short run ([`MAX_PERIOD`]), or a long n-gram
/// ([`LOOP_NGRAM`]) that comes back a third time, which catches a sentence
/// repeated with other text between.
pub(crate) fn loop_start(ids: &[u32]) -> Option<usize> {
    periodic_loop(ids).or_else(|| ngram_loop(ids))
}

fn ngram_loop(ids: &[u32]) -> Option<usize> {
    if ids.len() < LOOP_NGRAM * MIN_REPEATS {
        return None;
    }
    let tail = &ids[ids.len() - LOOP_NGRAM..];
    let mut earlier: Vec<usize> = Vec::new();
    let mut i = 0;
    while i + 2 * LOOP_NGRAM <= ids.len() {
        if &ids[i..i + LOOP_NGRAM] == tail {
            earlier.push(i);
            i += LOOP_NGRAM;
        } else {
            i += 1;
        }
    }
    if earlier.len() + 1 < MIN_REPEATS {
        return None;
    }
    // The loop's second turn starts where the text before it stops being
    // the text before the first.
    let (first, second) = (earlier[0], earlier[1]);
    let same = (1..=first)
        .take_while(|&j| ids[second - j] == ids[first - j])
        .count();
    Some(second - same)
}

fn periodic_loop(ids: &[u32]) -> Option<usize> {
    for period in 1..=MAX_PERIOD.min(ids.len() / MIN_REPEATS) {
        let run = &ids[ids.len() - period..];
        let mut repeats = 1;
        let mut end = ids.len() - period;
        while end >= period && &ids[end - period..end] == run {
            repeats += 1;
            end -= period;
        }
        if repeats >= MIN_REPEATS && repeats * period >= MIN_LOOP_TOKENS {
            return Some(end + period);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers with a fixed script of tokens, one per step.
    struct Script {
        tokens: Vec<u32>,
        step: usize,
        vocab: usize,
    }

    impl Forward for Script {
        fn forward(&mut self, _ids: &[u32], _pos: usize) -> Result<Vec<f32>> {
            let mut logits = vec![0.0; self.vocab];
            logits[self.tokens[self.step.min(self.tokens.len() - 1)] as usize] = 1.0;
            self.step += 1;
            Ok(logits)
        }
        fn rewind(&mut self, _len: usize) -> Result<()> {
            self.step = 0;
            Ok(())
        }
    }

    fn run(m: &mut dyn Forward, prompt: &[u32], p: &GenParams) -> Generated {
        generate(
            m,
            &mut CacheState::default(),
            Prompt::plain(prompt),
            p,
            &mut |_| {},
        )
        .unwrap()
    }

    fn params(max: usize, guard: bool) -> GenParams {
        GenParams {
            max_new_tokens: max,
            eos: vec![9],
            sampling: None,
            repeat_guard: guard,
            no_repeat_ngram: None,
            beam: None,
        }
    }

    #[test]
    fn stops_at_eos_and_keeps_it() {
        let mut m = Script {
            tokens: vec![1, 2, 9, 3],
            step: 0,
            vocab: 10,
        };
        let g = run(&mut m, &[5], &params(10, false));
        assert_eq!(g.ids, vec![1, 2, 9]);
        assert_eq!(g.stop, StopReason::Eos);
    }

    #[test]
    fn stops_at_length() {
        let mut m = Script {
            tokens: vec![1, 2, 3, 4, 5],
            step: 0,
            vocab: 10,
        };
        let g = run(&mut m, &[5], &params(3, false));
        assert_eq!(g.ids, vec![1, 2, 3]);
        assert_eq!(g.stop, StopReason::Length);
    }

    #[test]
    fn repeat_guard_cuts_a_loop_to_one_run() {
        let mut tokens = vec![7, 8];
        tokens.extend([1, 2, 3].repeat(40));
        let mut m = Script {
            tokens,
            step: 0,
            vocab: 10,
        };
        let g = run(&mut m, &[5], &params(200, true));
        assert_eq!(g.stop, StopReason::Repetition);
        assert_eq!(&g.ids[..2], &[7, 8]);
        assert_eq!(&g.ids[2..], &[1, 2, 3]);
        // Without the guard the same script runs to the cap.
        let g = run(&mut m, &[5], &params(200, false));
        assert_eq!(g.ids.len(), 200);
    }

    /// Records what it is fed; its cache is the list of positions it holds.
    #[derive(Default)]
    struct Recorder {
        cached: Vec<u32>,
        calls: Vec<(usize, Vec<u32>)>,
    }

    impl Forward for Recorder {
        fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Vec<f32>> {
            assert_eq!(pos, self.cached.len(), "positions must follow the cache");
            self.cached.extend(ids);
            self.calls.push((pos, ids.to_vec()));
            Ok(vec![0.0, 1.0])
        }
        fn rewind(&mut self, len: usize) -> Result<()> {
            self.cached.truncate(len);
            Ok(())
        }
    }

    #[test]
    fn prefill_is_cut_at_breaks_and_a_shared_prefix_is_reused() {
        let p = params(2, false);
        let mut m = Recorder::default();
        let mut cache = CacheState::default();
        let mut go = |m: &mut Recorder, ids: &[u32], breaks: &[usize]| {
            m.calls.clear();
            let g = generate(m, &mut cache, Prompt { ids, breaks }, &p, &mut |_| {}).unwrap();
            (g.reused, m.calls.clone())
        };
        // A fresh cache: every piece computed, cut at both breaks.
        let (reused, calls) = go(&mut m, &[1, 2, 3, 4, 5, 6], &[2, 4]);
        assert_eq!(reused, 0);
        assert_eq!(
            calls[..3],
            [(0, vec![1, 2]), (2, vec![3, 4]), (4, vec![5, 6])]
        );
        // Same system and instructions, other text: only the text is fed,
        // as the same piece a fresh run would feed.
        let (reused, calls) = go(&mut m, &[1, 2, 3, 4, 7, 8, 9], &[2, 4]);
        assert_eq!(reused, 4);
        assert_eq!(calls[0], (4, vec![7, 8, 9]));
        // Other instructions: the system message alone is kept.
        let (reused, calls) = go(&mut m, &[1, 2, 0, 4, 7], &[2, 4]);
        assert_eq!(reused, 2);
        assert_eq!(calls[..2], [(2, vec![0, 4]), (4, vec![7])]);
        // Same ids cut elsewhere: nothing is kept, the cuts would differ.
        let (reused, calls) = go(&mut m, &[1, 2, 0, 4, 7], &[3]);
        assert_eq!(reused, 0);
        assert_eq!(calls[..2], [(0, vec![1, 2, 0]), (3, vec![4, 7])]);
        // A prompt that is all prefix still feeds its last piece for logits.
        go(&mut m, &[1, 2, 0], &[3]);
        let (reused, calls) = go(&mut m, &[1, 2, 0], &[3]);
        assert_eq!(reused, 0);
        assert_eq!(calls[0], (0, vec![1, 2, 0]));
    }

    #[test]
    fn long_pieces_are_fed_in_bounded_steps() {
        let ids: Vec<u32> = (0..(PREFILL_CHUNK as u32 * 2 + 10)).collect();
        let mut m = Recorder::default();
        let g = generate(
            &mut m,
            &mut CacheState::default(),
            Prompt {
                ids: &ids,
                breaks: &[5],
            },
            &params(1, false),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(g.ids.len(), 1);
        let sizes: Vec<usize> = m.calls.iter().map(|c| c.1.len()).collect();
        assert_eq!(sizes, [5, PREFILL_CHUNK, PREFILL_CHUNK, 5]);
    }

    /// A sentence of 20 tokens, again and again, unless barred: then the
    /// end of the answer (id 9) is its next choice.
    struct Looper {
        prompt: usize,
    }

    const SENTENCE: std::ops::Range<u32> = 20..40;

    impl Forward for Looper {
        fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Vec<f32>> {
            let answered = pos + ids.len() - self.prompt;
            let mut logits = vec![0.0; 64];
            logits[(SENTENCE.start as usize) + answered % SENTENCE.len()] = 2.0;
            logits[9] = 1.0;
            Ok(logits)
        }
        fn rewind(&mut self, _len: usize) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_looping_answer_is_asked_again_barred_from_repeating_itself() {
        let mut m = Looper { prompt: 3 };
        let prompt = [5, 6, 7];
        let sentence: Vec<u32> = SENTENCE.collect();
        // Greedy decoding loops; the guard cuts it after one sentence.
        let g = run(&mut m, &prompt, &params(200, true));
        assert_eq!(
            (g.stop, g.ids.clone()),
            (StopReason::Repetition, sentence.clone())
        );
        let mut heard: Vec<Vec<u32>> = Vec::new();
        let (g, looped) = generate_unlooped(
            &mut m,
            &mut CacheState::default(),
            Prompt::plain(&prompt),
            &params(200, true),
            &mut |ids| heard.push(ids.to_vec()),
        )
        .unwrap();
        assert!(looped);
        // The watcher heard the first answer, then the second from its
        // first token, ending with the answer kept.
        assert_eq!(heard.last(), Some(&g.ids));
        assert!(heard.windows(2).any(|w| w[1].len() == 1 && w[0].len() > 1));
        assert_eq!(g.stop, StopReason::Eos);
        // The sentence once, then as far as no 6 tokens come back.
        let mut expected = sentence.clone();
        expected.extend(&sentence[..RETRY_NO_REPEAT_NGRAM - 1]);
        expected.push(9);
        assert_eq!(g.ids, expected);
        // An answer that does not loop is what plain decoding gives.
        let mut m = Script {
            tokens: vec![1, 2, 3, 9],
            step: 0,
            vocab: 10,
        };
        let (g, looped) = generate_unlooped(
            &mut m,
            &mut CacheState::default(),
            Prompt::plain(&[5]),
            &params(200, true),
            &mut |_| {},
        )
        .unwrap();
        assert!(!looped);
        assert_eq!(g.ids, [1, 2, 3, 9]);
    }

    #[test]
    fn a_sentence_that_keeps_coming_back_is_a_loop() {
        let sentence: Vec<u32> = SENTENCE.collect();
        let mut ids = vec![1, 2];
        for sep in 40..43 {
            ids.extend(&sentence);
            ids.push(sep);
        }
        // Checked after every token, as decoding does: it fires once the
        // third turn has 16 tokens, and keeps everything before the second.
        let fired = (1..=ids.len()).find_map(|n| loop_start(&ids[..n]).map(|keep| (n, keep)));
        assert_eq!(fired, Some((2 + 2 * 21 + LOOP_NGRAM, 2 + 21)));
    }

    #[test]
    fn short_repeats_are_not_loops() {
        let ids: Vec<u32> = [1, 2, 3].repeat(5);
        assert_eq!(loop_start(&ids), None);
    }

    #[test]
    fn sampling_is_reproducible_with_a_seed() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let s = Sampling {
            temperature: 1.0,
            top_p: 0.9,
            seed: 42,
        };
        let a: Vec<u32> = {
            let mut rng = StdRng::seed_from_u64(s.seed);
            (0..20).map(|_| sample(&logits, &s, &mut rng)).collect()
        };
        let b: Vec<u32> = {
            let mut rng = StdRng::seed_from_u64(s.seed);
            (0..20).map(|_| sample(&logits, &s, &mut rng)).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().any(|&t| t != a[0]), "sampling should vary: {a:?}");
    }
}
