//! This machine's measured speed with each model, kept between runs so that
//! `--plan` can say how long a run would take without loading any weights.
//!
//! Every summarize, translate, generate or batch run with a chat model
//! records its load time and prefill and decode rates in
//! `$XDG_CACHE_HOME/glot/speeds.json` (else `~/.cache/glot/speeds.json`),
//! under the model, its revision and format, and the thread count. The
//! latest run of the same kind wins. Recording is best effort: a cache
//! that cannot be written never fails a run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use glot::engine::ModelInfo;
use glot::task::{Plan, PlannedCall, Usage};
use serde::{Deserialize, Serialize};

use crate::printer::Printer;
use crate::settings::ModelSettings;

/// Fewer prompt or generated tokens than these time the fixed costs of a
/// call more than its rate.
const MIN_PREFILL_TOKENS: usize = 64;
const MIN_DECODE_TOKENS: usize = 16;

/// One model's measured speed on this machine.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Speed {
    pub load_secs: f64,
    pub prefill_tokens_per_sec: f64,
    pub decode_tokens_per_sec: f64,
    /// When it was measured (seconds since the Unix epoch).
    pub measured_at: u64,
}

fn path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("glot").join("speeds.json"))
}

/// The model as measured: the same files, read the same way, on the same
/// device (on as many threads, for the CPU). CPU records keep the key they
/// had before devices could be chosen.
fn key(info: &ModelInfo) -> String {
    let place = match info.device.as_str() {
        "cpu" => format!("{} threads", candle_core::utils::get_num_threads()),
        gpu => gpu.to_string(),
    };
    format!(
        "{} @{} ({}), {place}",
        info.id,
        info.revision.as_deref().unwrap_or("local"),
        info.format,
    )
}

fn load_all() -> BTreeMap<String, Speed> {
    path().map(|p| read_records(&p)).unwrap_or_default()
}

/// The records in `path`; none where it is missing or unreadable (the
/// cache is rebuilt by the next runs).
fn read_records(path: &Path) -> BTreeMap<String, Speed> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The speed last measured with the model `info` describes, if any.
pub fn recall(info: &ModelInfo) -> Option<Speed> {
    load_all().remove(&key(info))
}

/// Records the speed of a run that used `usage`, when it was long enough
/// to measure and decoded as plans assume, one sequence at a time: a beam
/// search decodes several hypotheses a token, so it records nothing, and
/// calls decoded together (`--parallel`) share steps, so the decoding rate
/// comes from the steps that computed one call alone (prompts are always
/// computed one call at a time), see [`decode_rate`]. Says at `-v` why it
/// could not.
pub fn remember(info: &ModelInfo, usage: &Usage, m: &ModelSettings, printer: &Printer) {
    if m.beam.is_some() {
        return;
    }
    if let Err(e) = store(info, usage) {
        printer.info(format!("speed not recorded: {e:#}"));
    }
}

fn store(info: &ModelInfo, usage: &Usage) -> Result<()> {
    let computed = usage.prompt_tokens.saturating_sub(usage.reused_tokens);
    let Some(decode) = decode_rate(usage) else {
        return Ok(());
    };
    if computed < MIN_PREFILL_TOKENS || usage.prefill_secs <= 0.0 {
        return Ok(());
    }
    let Some(path) = path() else {
        return Ok(());
    };
    let speed = Speed {
        load_secs: info.load_secs,
        prefill_tokens_per_sec: computed as f64 / usage.prefill_secs,
        decode_tokens_per_sec: decode,
        measured_at: glot::folder::manifest::now() / 1000,
    };
    store_at(&path, key(info), speed)
}

/// One call's decoding rate in a run, if enough was decoded to measure it:
/// from the steps that computed one call alone, else, where every step was
/// shared (`--parallel`, with calls that all end together), from the rate
/// each call saw in the shared steps. A shared step costs more than a step
/// of one call, so that rate is the lower: an estimate made from it errs on
/// the long side rather than leaving the plan without one.
fn decode_rate(usage: &Usage) -> Option<f64> {
    let (tokens, secs) = match usage.alone_tokens >= MIN_DECODE_TOKENS {
        true => (usage.alone_tokens, usage.alone_decode_secs),
        false => (usage.generated_tokens, usage.decode_secs),
    };
    (tokens >= MIN_DECODE_TOKENS && secs > 0.0).then(|| tokens as f64 / secs)
}

/// Adds `speed` under `key` to the records in `path`. Shards of a batch
/// finish together: each takes the lock beside the file before it reads,
/// so none writes back a copy that lacks another's record.
fn store_at(path: &Path, key: String, speed: Speed) -> Result<()> {
    let dir = path.parent().expect("a file in a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let lock_path = path.with_extension("json.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let mut all = read_records(path);
    all.insert(key, speed);
    // Written whole and renamed, so a reader never sees half a file.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer_pretty(&mut tmp, &all)?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// How long a planned run should take at a measured speed.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// Loading, every prompt, and answers of their expected length.
    pub seconds: f64,
    /// The same with every answer as long as its cap allows.
    pub at_most_seconds: f64,
    pub speed: Speed,
    /// Calls that may decode together (`--parallel`): the estimate is for
    /// one at a time, which takes longer when there are several.
    pub parallel: usize,
    /// The planned calls.
    #[serde(skip)]
    calls: usize,
}

impl Estimate {
    /// Plans, each with the answer tokens its calls are likely to produce
    /// ([`translation_answer`], [`summary_answer`]), run after one load.
    /// Prompts count whole: the shared prefixes a run takes from the cache
    /// only make it faster.
    pub fn of(plans: &[(&Plan, Answer)], speed: Speed) -> Self {
        let calls = || {
            plans
                .iter()
                .flat_map(|(p, expected)| p.calls.iter().map(move |c| (c, expected)))
        };
        let prompt: usize = calls().map(|(c, _)| c.prompt_tokens).sum();
        let likely: usize = calls().map(|(c, e)| e(c).min(c.answer_cap)).sum();
        let most: usize = calls().map(|(c, _)| c.answer_cap).sum();
        let at = |answers: usize| {
            speed.load_secs
                + prompt as f64 / speed.prefill_tokens_per_sec.max(1e-9)
                + answers as f64 / speed.decode_tokens_per_sec.max(1e-9)
        };
        Estimate {
            seconds: at(likely),
            at_most_seconds: at(most),
            speed,
            parallel: 1,
            calls: calls().count(),
        }
    }

    /// The estimate for a run that decodes up to `parallel` calls together.
    pub fn with_parallel(self, parallel: usize) -> Self {
        Estimate { parallel, ..self }
    }

    /// The plan's closing line about time.
    pub fn describe(&self, more_calls: bool) -> String {
        format!(
            "estimated time on this machine: about {}, at most {} if every answer reaches its cap{}; answers asked again come on top (at {:.0} prompt tokens/s and {:.1} tokens/s decoding, measured on {})",
            duration(self.seconds),
            duration(self.at_most_seconds),
            if more_calls { ", plus the combining calls" } else { "" },
            self.speed.prefill_tokens_per_sec,
            self.speed.decode_tokens_per_sec,
            glot::prompt::chat::iso_date(self.speed.measured_at)
        ) + &match self.parallel.min(self.calls) {
            0 | 1 => String::new(),
            n => format!(
                "; that is one call at a time: with up to {n} independent calls decoded together (--parallel), it takes less"
            ),
        }
    }
}

/// The answer tokens a planned call is likely to produce.
pub type Answer = fn(&PlannedCall) -> usize;

/// A translation is about as long as its source.
pub fn translation_answer(c: &PlannedCall) -> usize {
    c.text_tokens
}

/// A summary is asked for in words, and its cap allows two tokens a word
/// and some: a word takes about 1.3 tokens in the languages most read.
pub fn summary_answer(c: &PlannedCall) -> usize {
    c.answer_cap.saturating_sub(16) * 2 / 3
}

/// Why there is no estimate.
pub fn unknown(info: &ModelInfo) -> String {
    format!(
        "no estimated time: {} has not run on this machine with {} threads yet (any run of it records its speed)",
        info.id,
        candle_core::utils::get_num_threads()
    )
}

/// "45 s", "3 min 20 s", "2 h 05 min".
fn duration(secs: f64) -> String {
    let s = secs.round().max(0.0) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writers at once, as the shards of a batch finishing together: no
    /// record is lost.
    #[test]
    fn concurrent_records_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("glot").join("speeds.json");
        let speed = Speed {
            load_secs: 1.0,
            prefill_tokens_per_sec: 2.0,
            decode_tokens_per_sec: 3.0,
            measured_at: 4,
        };
        std::thread::scope(|s| {
            for t in 0..8 {
                let path = &path;
                s.spawn(move || {
                    for i in 0..25 {
                        store_at(path, format!("model {t}/{i}"), speed).unwrap();
                    }
                });
            }
        });
        let all: BTreeMap<String, Speed> =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(all.len(), 200);
    }

    /// One call's rate comes from the steps it had alone; where it had
    /// none, from the shared ones, which each call saw whole; where too
    /// little was decoded, from nothing.
    #[test]
    fn the_decoding_rate_prefers_steps_of_one_call() {
        let usage = |alone_tokens, alone_decode_secs, generated_tokens, decode_secs| Usage {
            alone_tokens,
            alone_decode_secs,
            generated_tokens,
            decode_secs,
            ..Usage::default()
        };
        assert_eq!(decode_rate(&usage(40, 2.0, 400, 50.0)), Some(20.0));
        assert_eq!(decode_rate(&usage(0, 0.0, 400, 50.0)), Some(8.0));
        assert_eq!(decode_rate(&usage(3, 0.1, 400, 50.0)), Some(8.0));
        assert_eq!(decode_rate(&usage(0, 0.0, 10, 1.0)), None);
        assert_eq!(decode_rate(&usage(0, 0.0, 400, 0.0)), None);
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(44.6), "45 s");
        assert_eq!(duration(200.0), "3 min 20 s");
        assert_eq!(duration(7500.0), "2 h 05 min");
    }

    #[test]
    fn estimates_add_load_prompts_and_answers() {
        let call = |prompt, cap| PlannedCall {
            line: None,
            text_tokens: 10,
            prompt_tokens: prompt,
            answer_cap: cap,
            partial: false,
        };
        let plan = Plan {
            context: 1000,
            calls: vec![call(100, 50), call(300, 50)],
            combine_calls_at_least: 0,
        };
        let speed = Speed {
            load_secs: 1.0,
            prefill_tokens_per_sec: 100.0,
            decode_tokens_per_sec: 10.0,
            measured_at: 0,
        };
        let e = Estimate::of(&[(&plan, translation_answer)], speed);
        assert!((e.seconds - (1.0 + 4.0 + 2.0)).abs() < 1e-9);
        assert!((e.at_most_seconds - (1.0 + 4.0 + 10.0)).abs() < 1e-9);
        // Decoding together is said to shorten it only where there are
        // calls to decode together.
        assert!(!e.describe(false).contains("--parallel"));
        let together = e.clone().with_parallel(4).describe(false);
        assert!(
            together.contains("with up to 2 independent calls"),
            "{together}"
        );
        let one = Plan {
            calls: vec![call(100, 50)],
            ..plan
        };
        let e = Estimate::of(&[(&one, translation_answer)], speed).with_parallel(4);
        assert!(!e.describe(false).contains("--parallel"));
    }
}
