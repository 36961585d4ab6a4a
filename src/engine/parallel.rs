//! Independent generations decoded side by side: the map calls of a
//! summary, the chunks of a translation, the documents of a batch.
//!
//! A decoding step of one sequence reads every weight once for one row of
//! activations; the same read serves several rows for little more. So up to
//! `width` calls share each step, each in its own slot of the model's
//! cache, and a call that finishes hands its slot to the next waiting one
//! at once (continuous batching): no call waits for the slowest. Calls may
//! arrive while others decode ([`serve`]); a joining call's prompt is
//! computed alone, between two steps of the others. An answer that loops is
//! asked again at once in the slot it holds.
//!
//! Every call gets exactly the answer it gets alone ([`generate_unlooped`]):
//! a step computes each row as it computes a lone one
//! ([`Forward::forward_slots`]), and each call's choices come from the same
//! [`Decoding`].

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::Instant;

use anyhow::Result;

use super::choice::StopReason;
use super::generate::{
    generate_unlooped, prefill, CacheState, Decoding, Forward, GenParams, Generated, Prompt,
};

/// One generation to run.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub prompt: Prompt<'a>,
    pub params: &'a GenParams,
}

/// A generation handed to [`serve`], which keeps it until it is answered.
#[derive(Debug, Clone)]
pub struct Owned {
    pub ids: Vec<u32>,
    /// See [`Prompt::breaks`].
    pub breaks: Vec<usize>,
    pub params: GenParams,
}

impl Owned {
    /// A copy of `call` to hand over.
    pub fn of(call: &Call) -> Owned {
        Owned {
            ids: call.prompt.ids.to_vec(),
            breaks: call.prompt.breaks.to_vec(),
            params: call.params.clone(),
        }
    }

    fn prompt(&self) -> Prompt<'_> {
        Prompt {
            ids: &self.ids,
            breaks: &self.breaks,
        }
    }
}

/// What [`generate_unlooped`] gives a call: the answer, and whether the
/// first one looped and was asked again.
pub type Answer = (Generated, bool);

/// Where [`serve`]'s calls come from and where their answers go.
pub trait Arrivals {
    /// The calls that arrived since the last time, each with the key its
    /// answer goes back under. With `wait`, nothing is being decoded: block
    /// until a call arrives, or return `None` to end [`serve`]. Without, an
    /// empty list (or `None`) when no call is waiting.
    fn arrived(&mut self, wait: bool) -> Option<Vec<(usize, Owned)>>;
    /// The answer to the call that arrived under `key`.
    fn answered(&mut self, key: usize, answer: Answer);
    /// The call under `key` has decoded `ids` so far (fewer than the last
    /// time when its answer looped and it is asked again). Nothing by
    /// default.
    fn decoded(&mut self, _key: usize, _ids: &[u32]) {}
}

/// Hears how the calls of [`generate_watched`] go, by their index.
pub trait Progress {
    /// Call `index` has decoded `ids` so far; see [`Arrivals::decoded`].
    fn decoded(&mut self, _index: usize, _ids: &[u32]) {}
    /// Call `index` is answered.
    fn answered(&mut self, _index: usize, _answer: &Answer) {}
}

/// Hears nothing.
pub struct Unheard;
impl Progress for Unheard {}

/// A call being decoded.
struct Running {
    key: usize,
    /// This is the second answer, the first having looped.
    retry: bool,
    slot: usize,
    prompt_len: usize,
    logits: Vec<f32>,
    /// `logits` are new: the next token is still to be chosen from them.
    fresh: bool,
    decoding: Decoding<'static>,
    first_logits: Vec<f32>,
    reused: usize,
    prefill_secs: f64,
    decode_secs: f64,
    /// Steps that computed this call alone, and their seconds.
    alone: (usize, f64),
}

/// How many calls may decode at once, and the cache positions they may
/// take together.
#[derive(Debug, Clone, Copy)]
pub struct Room {
    pub width: usize,
    /// Positions (prompt and answer cap) of the calls decoding at once: a
    /// call waits until the others leave room for it. A call alone always
    /// runs.
    pub positions: usize,
}

impl Room {
    /// `width` calls at a time, whatever their length.
    pub fn width(width: usize) -> Room {
        Room {
            width,
            positions: usize::MAX,
        }
    }
}

impl Running {
    /// Cache positions it may take: its prompt and its answer's cap.
    fn positions(&self) -> usize {
        self.prompt_len + self.decoding.params().max_new_tokens
    }
}

/// What [`generate_unlooped`] gives each of `calls`, decoded together as
/// `room` allows. `caches` says what each slot's cache holds, and grows to
/// the width. Beam searches, and a width of 1, run one call after another
/// in slot 0. The model's slot 0 is selected at the end.
pub fn generate_all(
    model: &mut dyn Forward,
    caches: &mut Vec<CacheState>,
    calls: &[Call],
    room: Room,
) -> Result<Vec<Answer>> {
    let owned = calls.iter().map(Owned::of).collect();
    generate_owned(model, caches, owned, room)
}

/// [`generate_all`] of calls the caller hands over.
pub fn generate_owned(
    model: &mut dyn Forward,
    caches: &mut Vec<CacheState>,
    calls: Vec<Owned>,
    room: Room,
) -> Result<Vec<Answer>> {
    generate_watched(model, caches, calls, room, &mut Unheard)
}

/// [`generate_owned`], telling `progress` of every call's tokens and
/// answer as they come.
pub fn generate_watched(
    model: &mut dyn Forward,
    caches: &mut Vec<CacheState>,
    calls: Vec<Owned>,
    room: Room,
    progress: &mut dyn Progress,
) -> Result<Vec<Answer>> {
    if calls.iter().any(|c| c.params.beam.is_some()) {
        let answers = one_at_a_time(model, caches, &calls)?;
        for (i, a) in answers.iter().enumerate() {
            progress.answered(i, a);
        }
        return Ok(answers);
    }
    /// Every call at once, then the end.
    struct Given<'p> {
        calls: Option<Vec<(usize, Owned)>>,
        done: Vec<Option<Answer>>,
        progress: &'p mut dyn Progress,
    }
    impl Arrivals for Given<'_> {
        fn arrived(&mut self, _wait: bool) -> Option<Vec<(usize, Owned)>> {
            self.calls.take()
        }
        fn answered(&mut self, key: usize, answer: Answer) {
            self.progress.answered(key, &answer);
            self.done[key] = Some(answer);
        }
        fn decoded(&mut self, key: usize, ids: &[u32]) {
            self.progress.decoded(key, ids);
        }
    }
    let room = Room {
        width: room.width.min(calls.len()),
        ..room
    };
    let mut given = Given {
        done: vec![None; calls.len()],
        calls: Some(calls.into_iter().enumerate().collect()),
        progress,
    };
    serve(model, caches, room, &mut given)?;
    Ok(given
        .done
        .into_iter()
        .map(|d| d.expect("every call answered"))
        .collect())
}

/// Each call in turn in slot 0.
fn one_at_a_time(
    model: &mut dyn Forward,
    caches: &mut Vec<CacheState>,
    calls: &[Owned],
) -> Result<Vec<Answer>> {
    if caches.is_empty() {
        caches.push(CacheState::default());
    }
    model.select(0)?;
    calls
        .iter()
        .map(|c| generate_unlooped(model, &mut caches[0], c.prompt(), &c.params, &mut |_| {}))
        .collect()
}

/// Decodes the calls `arrivals` brings, as many at a time as `room`
/// allows, in the order they come, until it has no more, and hands each
/// its answer as soon as it is done. `caches` says what each slot's cache
/// holds, and grows to the width. A slot whose call ends keeps only the
/// part of the prompt a later one may reuse, so idle slots hold little
/// memory. A width of 1 runs one call after another in slot 0; beam
/// searches need it. The model's slot 0 is selected at the end. On an
/// error, calls not yet answered stay so.
pub fn serve(
    model: &mut dyn Forward,
    caches: &mut Vec<CacheState>,
    room: Room,
    arrivals: &mut dyn Arrivals,
) -> Result<()> {
    let width = room.width.max(1);
    if caches.len() < width {
        caches.resize_with(width, CacheState::default);
    }
    let mut running: Vec<Running> = Vec::with_capacity(width);
    let result = steps(model, caches, width, room.positions, arrivals, &mut running);
    // Slots left mid-answer hold what no state describes.
    if result.is_err() {
        for r in &running {
            caches[r.slot] = CacheState::default();
        }
    }
    model.select(0)?;
    result
}

/// [`serve`]'s loop; `running` is left with the calls an error stopped.
fn steps(
    model: &mut dyn Forward,
    caches: &mut [CacheState],
    width: usize,
    positions: usize,
    arrivals: &mut dyn Arrivals,
    running: &mut Vec<Running>,
) -> Result<()> {
    let mut queue: VecDeque<(usize, Owned)> = VecDeque::new();
    let mut free: Vec<usize> = (0..width).collect();
    let taken = |running: &[Running]| running.iter().map(Running::positions).sum::<usize>();
    loop {
        let idle = running.is_empty() && queue.is_empty();
        match arrivals.arrived(idle) {
            Some(calls) => queue.extend(calls),
            None if idle => return Ok(()),
            None => {}
        }
        if width == 1 {
            model.select(0)?;
            while let Some((key, call)) = queue.pop_front() {
                let answer = generate_unlooped(
                    model,
                    &mut caches[0],
                    call.prompt(),
                    &call.params,
                    &mut |ids| arrivals.decoded(key, ids),
                )?;
                arrivals.answered(key, answer);
            }
            continue;
        }
        while let (false, Some((_, call))) = (free.is_empty(), queue.front()) {
            anyhow::ensure!(
                call.params.beam.is_none(),
                "a beam search decodes one call at a time"
            );
            let need = call.ids.len() + call.params.max_new_tokens;
            if !running.is_empty() && taken(running) + need > positions {
                break;
            }
            // The free slot holding the longest reusable prefix.
            let prompt = call.prompt();
            let at = (0..free.len())
                .max_by_key(|&i| {
                    (
                        caches[free[i]].reusable(&prompt),
                        std::cmp::Reverse(free[i]),
                    )
                })
                .unwrap_or(0);
            let slot = free.swap_remove(at);
            let (key, call) = queue.pop_front().expect("just seen");
            running.push(join(model, &mut caches[slot], slot, key, call)?);
        }
        if running.is_empty() {
            continue;
        }
        let mut finished = false;
        let mut i = 0;
        while i < running.len() {
            let r = &mut running[i];
            if !r.fresh {
                i += 1;
                continue;
            }
            r.fresh = false;
            let stop = r.decoding.next(&mut r.logits, &mut |_| {});
            arrivals.decoded(r.key, &r.decoding.ids);
            let Some(stop) = stop else {
                i += 1;
                continue;
            };
            finished = true;
            let r = running.swap_remove(i);
            let looped = stop == StopReason::Repetition;
            if looped && !r.retry {
                // Asked again at once in the same slot, from the prompt
                // the cache still holds.
                running.push(again(model, r)?);
                continue;
            }
            // What a later prompt may reuse stays; the rest goes.
            let kept = caches[r.slot].keep_reusable();
            model.select(r.slot)?;
            model.trim(kept)?;
            free.push(r.slot);
            let g = Generated {
                ids: r.decoding.ids,
                stop,
                first_logits: r.first_logits,
                reused: r.reused,
                prefill_secs: r.prefill_secs,
                decode_secs: r.decode_secs,
                beam_score: None,
                alone: r.alone,
            };
            arrivals.answered(r.key, (g, r.retry));
        }
        // A freed slot takes the next call before the others step on.
        if running.is_empty() || (finished && !queue.is_empty()) {
            continue;
        }
        let steps: Vec<(usize, u32, usize)> = running
            .iter()
            .map(|r| {
                let (token, pos) = r.decoding.last();
                (r.slot, token, pos)
            })
            .collect();
        let start = Instant::now();
        let logits = model.forward_slots(&steps)?;
        let secs = start.elapsed().as_secs_f64();
        anyhow::ensure!(logits.len() == running.len(), "one row of logits per slot");
        let alone = running.len() == 1;
        for (r, l) in running.iter_mut().zip(logits) {
            r.logits = l;
            r.fresh = true;
            r.decode_secs += secs;
            if alone {
                r.alone.0 += 1;
                r.alone.1 += secs;
            }
        }
    }
}

/// Starts the second answer of a call whose first answer (`first`, just
/// ended) looped, in its slot, from the prompt the cache still holds and
/// the first answer's first logits (see [`generate_unlooped`]); its times
/// go on from the first's.
fn again(model: &mut dyn Forward, first: Running) -> Result<Running> {
    model.select(first.slot)?;
    model.rewind(first.prompt_len)?;
    let retry = first.decoding.params().for_retry();
    Ok(Running {
        retry: true,
        logits: first.first_logits.clone(),
        fresh: true,
        decoding: Decoding::new(Cow::Owned(retry), first.prompt_len),
        ..first
    })
}

/// Starts call `key` in `slot`: the prompt computed alone, reusing what the
/// slot's cache holds of it, as [`super::generate::generate`] does.
fn join(
    model: &mut dyn Forward,
    cache: &mut CacheState,
    slot: usize,
    key: usize,
    call: Owned,
) -> Result<Running> {
    let prompt = call.prompt();
    anyhow::ensure!(
        !prompt.ids.is_empty(),
        "cannot generate from an empty prompt"
    );
    let start = Instant::now();
    model.select(slot)?;
    let kept = cache.reusable(&prompt);
    *cache = CacheState::default();
    model.rewind(kept)?;
    let logits = prefill(model, prompt, kept)?;
    *cache = CacheState::holding(prompt);
    Ok(Running {
        key,
        retry: false,
        slot,
        prompt_len: call.ids.len(),
        first_logits: logits.clone(),
        logits,
        fresh: true,
        decoding: Decoding::new(Cow::Owned(call.params), call.ids.len()),
        reused: kept,
        prefill_secs: start.elapsed().as_secs_f64(),
        decode_secs: 0.0,
        alone: (0, 0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    /// A model whose logits after a position depend on every id its slot
    /// holds up to there, so a step fed to the wrong slot, a position
    /// skipped or a cache not rewound changes the answer. Prompts that start
    /// with [`LOOPER`] answer a run of three tokens over and over unless
    /// barred, then end.
    #[derive(Default)]
    struct Hashing {
        slots: Vec<Vec<u32>>,
        active: usize,
        /// Rows per call of `forward_slots`.
        widths: Vec<usize>,
    }

    const VOCAB: usize = 32;
    const EOS: u32 = 0;
    const LOOPER: u32 = 31;

    impl Hashing {
        fn logits(seq: &[u32]) -> Vec<f32> {
            let mut logits = vec![0f32; VOCAB];
            if seq.first() == Some(&LOOPER) {
                logits[1 + seq.len() % 3] = 3.0;
                logits[EOS as usize] = 1.0;
                return logits;
            }
            let h = seq.iter().fold(17u64, |h, &t| {
                h.wrapping_mul(31).wrapping_add(u64::from(t) + 1)
            });
            for (i, l) in logits.iter_mut().enumerate() {
                *l = ((h >> (i % 60)) % 97) as f32 + i as f32 * 0.01;
            }
            // Ends now and then, so answers differ in length.
            if h % 7 == 0 {
                logits[EOS as usize] = 1000.0;
            }
            logits
        }

        fn feed(&mut self, slot: usize, ids: &[u32], pos: usize) -> Vec<f32> {
            let seq = &mut self.slots[slot];
            assert_eq!(pos, seq.len(), "positions must follow the slot's cache");
            seq.extend(ids);
            Self::logits(seq)
        }
    }

    impl Forward for Hashing {
        fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Vec<f32>> {
            if self.slots.is_empty() {
                self.slots.push(Vec::new());
            }
            Ok(self.feed(self.active, ids, pos))
        }
        fn rewind(&mut self, len: usize) -> Result<()> {
            if let Some(s) = self.slots.get_mut(self.active) {
                s.truncate(len);
            }
            Ok(())
        }
        fn select(&mut self, slot: usize) -> Result<()> {
            if self.slots.len() <= slot {
                self.slots.resize(slot + 1, Vec::new());
            }
            self.active = slot;
            Ok(())
        }
        fn forward_slots(&mut self, steps: &[(usize, u32, usize)]) -> Result<Vec<Vec<f32>>> {
            self.widths.push(steps.len());
            let mut seen: Vec<usize> = steps.iter().map(|s| s.0).collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), steps.len(), "one row per slot");
            Ok(steps
                .iter()
                .map(|&(slot, id, pos)| self.feed(slot, &[id], pos))
                .collect())
        }
    }

    fn params(max: usize) -> GenParams {
        GenParams {
            max_new_tokens: max,
            eos: vec![EOS],
            sampling: None,
            repeat_guard: true,
            no_repeat_ngram: None,
            beam: None,
        }
    }

    /// Prompts with a shared system part (break at 3) or none, some that
    /// loop, of random lengths.
    fn prompts(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<(Vec<u32>, Vec<usize>)> {
        (0..n)
            .map(|i| {
                let len = rng.random_range(4..30);
                let mut ids: Vec<u32> = (0..len).map(|_| rng.random_range(1..30)).collect();
                match i % 4 {
                    0 => (ids, vec![]),
                    1 => {
                        ids[..3].copy_from_slice(&[5, 6, 7]);
                        (ids, vec![3])
                    }
                    2 => {
                        ids[0] = LOOPER;
                        (ids, vec![])
                    }
                    _ => {
                        ids[..3].copy_from_slice(&[5, 6, 7]);
                        (ids, vec![3, len - 1])
                    }
                }
            })
            .collect()
    }

    /// Each call alone, on a fresh model: the reference.
    fn alone(prompt: Prompt, params: &GenParams) -> (Generated, bool) {
        let mut m = Hashing::default();
        generate_unlooped(
            &mut m,
            &mut CacheState::default(),
            prompt,
            params,
            &mut |_| {},
        )
        .unwrap()
    }

    /// Random calls in random arrival orders, at random widths, each get
    /// what they get alone: ids, stop reason, first logits and whether they
    /// were asked again. Prefixes kept from earlier calls stay correct
    /// across rounds on the same model.
    #[test]
    fn every_call_gets_its_lone_answer_whatever_the_order_and_width() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut model = Hashing::default();
        let mut caches = Vec::new();
        let mut widest = 0;
        for round in 0..40 {
            let n = rng.random_range(1..12);
            let prompts = prompts(&mut rng, n);
            let maxes: Vec<GenParams> = (0..n).map(|_| params(rng.random_range(0..120))).collect();
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut rng);
            let calls: Vec<Call> = order
                .iter()
                .map(|&i| Call {
                    prompt: Prompt {
                        ids: &prompts[i].0,
                        breaks: &prompts[i].1,
                    },
                    params: &maxes[i],
                })
                .collect();
            let width = rng.random_range(1..9);
            // Now and then a budget that holds a few calls at once.
            let positions = match rng.random_bool(0.5) {
                true => usize::MAX,
                false => rng.random_range(30..300),
            };
            let room = Room { width, positions };
            let got = generate_all(&mut model, &mut caches, &calls, room).unwrap();
            for (call, (g, looped)) in calls.iter().zip(&got) {
                let (want, want_looped) = alone(call.prompt, call.params);
                assert_eq!(g.ids, want.ids, "round {round}, width {width}");
                assert_eq!(g.stop, want.stop, "round {round}");
                assert_eq!(*looped, want_looped, "round {round}");
                assert_eq!(g.first_logits, want.first_logits, "round {round}");
            }
            widest = widest.max(model.widths.iter().copied().max().unwrap_or(0));
        }
        // Several calls did share steps, and some answers looped.
        assert!(widest >= 4, "{widest}");
    }

    /// Calls that arrive one by one at random moments, some while others
    /// decode and some while nothing does, each get what they get alone,
    /// on one model serving them all with the prefixes earlier calls left.
    #[test]
    fn calls_arriving_while_others_decode_get_their_lone_answers() {
        /// Releases `calls[i]` at the `at[i]`-th look, or at once when
        /// the scheduler is idle.
        struct Trickle {
            calls: Vec<Owned>,
            at: Vec<usize>,
            next: usize,
            looks: usize,
            done: Vec<Option<Answer>>,
        }
        impl Arrivals for Trickle {
            fn arrived(&mut self, wait: bool) -> Option<Vec<(usize, Owned)>> {
                self.looks += 1;
                if self.next == self.calls.len() {
                    return None;
                }
                let mut out = Vec::new();
                while self.next < self.calls.len()
                    && (self.at[self.next] <= self.looks || (wait && out.is_empty()))
                {
                    out.push((self.next, self.calls[self.next].clone()));
                    self.next += 1;
                }
                Some(out)
            }
            fn answered(&mut self, key: usize, answer: Answer) {
                assert!(self.done[key].is_none(), "answered twice");
                self.done[key] = Some(answer);
            }
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut model = Hashing::default();
        let mut caches = Vec::new();
        for round in 0..30 {
            let n = rng.random_range(1..16);
            let calls: Vec<Owned> = prompts(&mut rng, n)
                .into_iter()
                .map(|(ids, breaks)| Owned {
                    ids,
                    breaks,
                    params: params(rng.random_range(0..80)),
                })
                .collect();
            let mut at: Vec<usize> = (0..n).map(|_| rng.random_range(0..200)).collect();
            at.sort_unstable();
            let mut trickle = Trickle {
                calls,
                at,
                next: 0,
                looks: 0,
                done: vec![None; n],
            };
            let width = rng.random_range(1..7);
            serve(&mut model, &mut caches, Room::width(width), &mut trickle).unwrap();
            for (i, call) in trickle.calls.iter().enumerate() {
                let (g, looped) = trickle.done[i].as_ref().expect("answered");
                let (want, want_looped) = alone(call.prompt(), &call.params);
                assert_eq!(g.ids, want.ids, "round {round}, width {width}, call {i}");
                assert_eq!(g.stop, want.stop, "round {round}");
                assert_eq!(*looped, want_looped, "round {round}");
                assert_eq!(g.first_logits, want.first_logits, "round {round}");
            }
        }
        // Calls joined others already decoding.
        assert!(model.widths.windows(2).any(|w| w[1] > w[0]));
    }

    /// A slot whose call ends is taken at once by the next one waiting:
    /// with two slots and a long call, the short ones pass through the
    /// other slot while it decodes.
    #[test]
    fn a_finished_call_hands_its_slot_to_the_next_at_once() {
        // No end of answer: every answer runs to its cap.
        let long = GenParams {
            eos: vec![],
            ..params(100)
        };
        let short = GenParams {
            eos: vec![],
            ..params(3)
        };
        let ids: Vec<Vec<u32>> = (0..5).map(|i| vec![2, 3, 4 + i]).collect();
        let mut calls = vec![Call {
            prompt: Prompt::plain(&ids[0]),
            params: &long,
        }];
        for p in &ids[1..] {
            calls.push(Call {
                prompt: Prompt::plain(p),
                params: &short,
            });
        }
        let mut model = Hashing::default();
        let got = generate_all(&mut model, &mut Vec::new(), &calls, Room::width(2)).unwrap();
        assert_eq!(got[0].0.ids.len(), 100);
        assert!(got[1..].iter().all(|(g, _)| g.ids.len() == 3));
        // Four short calls of two steps each beside the long one, then the
        // long one alone: no step ran with one row while a call waited.
        let mut want = vec![2; 4 * 2];
        want.resize(99, 1);
        assert_eq!(model.widths, want);
        // The short calls shared every step; the long one decoded its
        // last 91 steps alone (its first token comes from the prompt).
        assert!(got[1..].iter().all(|(g, _)| g.alone.0 == 0));
        assert_eq!(got[0].0.alone.0, 99 - 8);
        // One at a time, every token is decoded alone.
        let one = generate_all(
            &mut Hashing::default(),
            &mut Vec::new(),
            &calls,
            Room::width(1),
        );
        assert!(one.unwrap().iter().all(|(g, _)| g.alone.0 == g.ids.len()));
    }

    /// The watcher hears each call's tokens as they are chosen, and each
    /// answer as soon as its call ends, not when the batch does.
    #[test]
    fn progress_hears_every_token_and_each_answer_as_it_ends() {
        #[derive(Default)]
        struct Heard {
            last: std::collections::HashMap<usize, Vec<u32>>,
            answered: Vec<usize>,
        }
        impl Progress for Heard {
            fn decoded(&mut self, index: usize, ids: &[u32]) {
                let before = self.last.get(&index).map_or(0, Vec::len);
                assert_eq!(ids.len(), before + 1, "one token at a time");
                self.last.insert(index, ids.to_vec());
            }
            fn answered(&mut self, index: usize, answer: &Answer) {
                assert_eq!(self.last[&index], answer.0.ids, "heard all of it");
                self.answered.push(index);
            }
        }
        let long = GenParams {
            eos: vec![],
            ..params(40)
        };
        let short = GenParams {
            eos: vec![],
            ..params(3)
        };
        let ids: Vec<Vec<u32>> = (0..4).map(|i| vec![2, 3, 4 + i]).collect();
        for width in [1, 2] {
            let owned: Vec<Owned> = ids
                .iter()
                .enumerate()
                .map(|(i, p)| Owned {
                    ids: p.clone(),
                    breaks: Vec::new(),
                    params: if i == 0 { long.clone() } else { short.clone() },
                })
                .collect();
            let mut heard = Heard::default();
            let got = generate_watched(
                &mut Hashing::default(),
                &mut Vec::new(),
                owned,
                Room::width(width),
                &mut heard,
            )
            .unwrap();
            assert_eq!(got.len(), 4);
            let want = match width {
                1 => vec![0, 1, 2, 3],
                _ => vec![1, 2, 3, 0],
            };
            assert_eq!(heard.answered, want, "width {width}");
        }
    }

    /// Calls wait for room in the cache positions: with room for two of
    /// them, never three decode at once, whatever the width; a call larger
    /// than the room still runs, alone.
    #[test]
    fn calls_wait_for_room_in_the_cache() {
        let p = GenParams {
            eos: vec![],
            ..params(40)
        };
        let big = GenParams {
            eos: vec![],
            ..params(200)
        };
        let ids: Vec<Vec<u32>> = (0..6).map(|i| vec![2, 3, 4, 5 + i]).collect();
        let mut calls: Vec<Call> = ids
            .iter()
            .map(|p_ids| Call {
                prompt: Prompt::plain(p_ids),
                params: &p,
            })
            .collect();
        calls.push(Call {
            prompt: Prompt::plain(&ids[0]),
            params: &big,
        });
        let mut model = Hashing::default();
        let room = Room {
            width: 8,
            positions: 2 * 44,
        };
        let got = generate_all(&mut model, &mut Vec::new(), &calls, room).unwrap();
        assert_eq!(got[6].0.ids.len(), 200);
        assert_eq!(model.widths.iter().max(), Some(&2));
        for (call, (g, _)) in calls.iter().zip(&got) {
            assert_eq!(g.ids, alone(call.prompt, call.params).0.ids);
        }
    }

    #[test]
    fn beam_searches_and_width_one_run_one_call_at_a_time() {
        let mut model = Hashing::default();
        let p = params(10);
        let ids = [3u32, 4, 5];
        let calls = vec![
            Call {
                prompt: Prompt::plain(&ids),
                params: &p,
            };
            3
        ];
        generate_all(&mut model, &mut Vec::new(), &calls, Room::width(1)).unwrap();
        assert!(model.widths.is_empty());
    }
}
