//! One file per subcommand; shared steps live here.

pub mod batch;
pub mod eval;
pub mod generate;
pub mod languages;
pub mod models;
pub mod serve;
pub mod shell;
pub mod summarize;
pub mod translate;

use anyhow::Result;
use glot::task::Article;
use serde::Serialize;

use crate::printer::Printer;
use crate::settings::{DocumentSettings, ModelSettings, OutputSettings};
use crate::speed;

/// A document read and understood, before any model is chosen.
pub struct Read {
    pub doc: glot::input::Document,
    pub article: Article,
    pub prompts: glot::prompt::Prompts,
}

/// Reads the document, its structure and language, and the prompts.
pub fn read(s: &DocumentSettings, printer: &Printer) -> Result<Read> {
    let doc = glot::input::read(&s.input, s.lossy, s.max_bytes)?;
    if doc.replaced > 0 {
        printer.warn(format!(
            "{}: {} undecodable byte sequence(s) replaced by U+FFFD",
            doc.name, doc.replaced
        ));
    }
    let article = Article::parse(&doc.name, doc.text.clone(), s.format)?;
    printer.info(format!(
        "{}: {} text unit(s), read as {}",
        doc.name,
        article.markup.units().len(),
        s.format.name()
    ));
    if let Some(d) = &article.detected {
        printer.info(format!(
            "article language: {} ({:.0}% confident{})",
            d.language.name,
            d.confidence * 100.0,
            if d.reliable { "" } else { ", unreliable" }
        ));
    }
    let prompts = glot::prompt::Prompts::load(s.prompts.as_deref())?;
    Ok(Read {
        doc,
        article,
        prompts,
    })
}

/// Says on stderr how many answers fell into a loop: asked again without
/// it, and how many looped even so and were kept cut at the loop (beam
/// search, which is not asked again, only cuts).
pub fn warn_loops(printer: &Printer, usage: &glot::task::Usage) {
    if usage.looped_calls > 0 {
        printer.warn(format!(
            "{} model answer(s) fell into a loop and were asked again barred from repeating themselves; {} looped again and were cut at the loop",
            usage.looped_calls, usage.loops_cut
        ));
    } else if usage.loops_cut > 0 {
        printer.warn(format!(
            "{} model answer(s) fell into a loop and were cut at the loop",
            usage.loops_cut
        ));
    }
}

/// Writes the text, or the JSON report, where the user asked.
pub fn emit<T: Serialize>(out: &OutputSettings, text: &str, report: &T) -> Result<()> {
    if out.json {
        let mut json = serde_json::to_string_pretty(report)?;
        json.push('\n');
        glot::output::emit(out.path.as_deref(), &json)
    } else {
        let mut text = text.to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        glot::output::emit(out.path.as_deref(), &text)
    }
}

/// [`emit`], through `live` where the result was streamed.
pub fn emit_live<T: Serialize>(
    out: &OutputSettings,
    live: Option<crate::live::Live>,
    text: &str,
    report: &T,
    printer: &Printer,
) -> Result<()> {
    match live {
        Some(live) => {
            let mut text = text.to_string();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            live.finish(&text, printer)
        }
        None => emit(out, text, report),
    }
}

/// What it takes to make an output again, exactly: the program, the
/// model's files by content, the task prompts and every decoding choice.
/// Decoding is deterministic (greedy, or sampling with a seed), so the same
/// record and input give the same output.
#[derive(Debug, Serialize)]
pub struct Provenance {
    pub glot_version: &'static str,
    pub model: String,
    pub revision: Option<String>,
    /// SHA-256 of each file the model was built from.
    pub files: Vec<glot::hub::FileDigest>,
    /// Digest of the task prompt templates (`--prompts` changes it).
    pub prompts: Option<String>,
    pub decoding: Decoding,
    pub compute: Compute,
}

/// Where the numbers were computed. Kernel paths and thread counts split
/// sums differently, so a record regenerates its output bit for bit only
/// where these match too.
#[derive(Debug, Serialize)]
pub struct Compute {
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// The CPU kernels (`avx512-vnni`, `avx2`, `neon-dotprod`, `neon`,
    /// `scalar`); none on a GPU.
    pub kernels: Option<&'static str>,
    /// The CPU threads; none on a GPU.
    pub threads: Option<usize>,
}

/// The choices that shape an output besides the input and the model.
#[derive(Debug, Serialize)]
pub struct Decoding {
    /// `greedy`, `beam` or `sampling`, with its settings.
    pub method: &'static str,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub seed: Option<u64>,
    /// Beams of a beam search.
    pub beams: Option<usize>,
    /// A beam search's length penalty, when set by `--length-penalty`
    /// (otherwise the model's generation config gives it).
    pub length_penalty: Option<f32>,
    pub repeat_guard: bool,
    pub max_context: Option<usize>,
    /// In-memory quantization (`--quantize`).
    pub quantize: Option<String>,
    /// The key/value cache's type when set (`--cache-type`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_type: Option<String>,
    /// Sentences per batch, for translation models.
    pub batch_size: Option<usize>,
}

impl Provenance {
    /// The record of a run of the model `info` describes, loaded and
    /// decoding as `m` says. Files in the hub cache cost nothing to
    /// identify; local files are read once to hash them.
    pub fn of(
        info: &glot::engine::ModelInfo,
        prompts: Option<&glot::prompt::Prompts>,
        m: &ModelSettings,
        repeat_guard: bool,
        batch: bool,
    ) -> Result<Self> {
        let files = glot::hub::digests(&info.files)?;
        Ok(Provenance {
            glot_version: env!("CARGO_PKG_VERSION"),
            model: info.id.clone(),
            revision: info.revision.clone(),
            files,
            prompts: prompts.map(|p| p.fingerprint().to_string()),
            decoding: Decoding {
                method: match (m.sampling, m.beam) {
                    (Some(_), _) => "sampling",
                    (None, Some(_)) => "beam",
                    (None, None) => "greedy",
                },
                temperature: m.sampling.map(|s| s.temperature),
                top_p: m.sampling.map(|s| s.top_p),
                seed: m.sampling.map(|s| s.seed),
                beams: m.beam.map(|b| b.beams),
                length_penalty: m.beam.and_then(|b| b.length_penalty),
                repeat_guard: repeat_guard || m.sampling.is_some(),
                max_context: m.load.max_context,
                quantize: m.load.quantize.map(|q| format!("{q:?}").to_lowercase()),
                cache_type: m.load.cache.map(|c| format!("{c:?}").to_lowercase()),
                batch_size: batch.then_some(m.batch_size),
            },
            compute: {
                let cpu = info.device == "cpu";
                Compute {
                    device: info.device.clone(),
                    kernels: cpu.then(glot::engine::kernels::path_name),
                    threads: cpu.then(candle_core::utils::get_num_threads),
                }
            },
        })
    }
}

/// `--plan --format json`.
#[derive(Serialize)]
pub struct PlanReport<'a> {
    pub task: &'static str,
    pub input: &'a str,
    pub model: &'a glot::engine::ModelInfo,
    #[serde(flatten)]
    pub plan: &'a glot::task::Plan,
    /// From this machine's last measured speed with the model, if any.
    pub estimate: Option<speed::Estimate>,
}

impl<'a> PlanReport<'a> {
    /// The report of `plan`, with the time it should take where this
    /// machine has run the model before, answers being as long as
    /// `answer` expects of the task.
    pub fn new(
        task: &'static str,
        input: &'a str,
        model: &'a glot::engine::ModelInfo,
        plan: &'a glot::task::Plan,
        answer: speed::Answer,
        parallel: usize,
    ) -> Self {
        PlanReport {
            task,
            input,
            model,
            plan,
            estimate: speed::recall(model)
                .map(|v| speed::Estimate::of(&[(plan, answer)], v).with_parallel(parallel)),
        }
    }
}

/// A plan's calls as a table. `names` are what a row is (a call, a
/// sentence) and what its prompt tokens are; `partial` notes a piece cut
/// from something too long.
pub fn plan_table(plan: &glot::task::Plan, names: [&str; 2], partial: &str) -> String {
    let [row, given] = names;
    let (w, g) = (row.len().max(4), given.len().max(10));
    let mut t = format!(
        "{row:>w$}  {:>6}  {:>11}  {given:>g$}  {:>10}  NOTE\n",
        "LINE", "TEXT TOKENS", "ANSWER CAP"
    );
    for (i, c) in plan.calls.iter().enumerate() {
        let row = format!(
            "{:>w$}  {:>6}  {:>11}  {:>g$}  {:>10}  {}",
            i + 1,
            c.line.map_or_else(|| "-".to_string(), |l| l.to_string()),
            c.text_tokens,
            c.prompt_tokens,
            c.answer_cap,
            if c.partial { partial } else { "" }
        );
        t.push_str(row.trim_end());
        t.push('\n');
    }
    t
}

/// Prints the plan of `report` (or the JSON report) and what it proves.
pub fn show_plan(out: &OutputSettings, report: &PlanReport) -> Result<()> {
    let plan = report.plan;
    let mut t = plan_table(
        plan,
        ["CALL", "PROMPT TOKENS"],
        "part of a long paragraph, cut between sentences",
    );
    if plan.combine_calls_at_least > 0 {
        t.push_str(&format!(
            "then at least {} call(s) combining the partial summaries (how many depends on the answers)\n",
            plan.combine_calls_at_least
        ));
    }
    t.push_str(&format!(
        "{} call(s); at most {} of the {} positions of the context used by one call: nothing is cut\n",
        plan.calls.len(),
        plan.peak(),
        plan.context
    ));
    t.push_str(&match &report.estimate {
        Some(e) => e.describe(plan.combine_calls_at_least > 0),
        None => speed::unknown(report.model),
    });
    emit(out, &t, report)
}

/// Time, tokens and memory of a run.
#[derive(Debug, Serialize)]
pub struct Timings {
    /// Where the model ran: `cpu`, `cuda:N`.
    pub device: String,
    pub load_secs: f64,
    pub prefill_secs: f64,
    pub decode_secs: f64,
    pub total_secs: f64,
    pub prompt_tokens: usize,
    /// Prompt tokens taken from the cache of an earlier call (the system
    /// message and instructions that prompts of a run share).
    pub reused_prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Prompt (or source) tokens computed per second of prefill.
    pub prefill_tokens_per_sec: f64,
    /// Tokens generated per second of decoding.
    pub decode_tokens_per_sec: f64,
    /// The process's peak resident memory, where the system tells it.
    pub peak_rss_bytes: Option<u64>,
}

impl Timings {
    /// What a run that started at `start` with the model `info` describes
    /// spent, as `usage` adds it up.
    pub fn of(
        info: &glot::engine::ModelInfo,
        usage: &glot::task::Usage,
        start: std::time::Instant,
    ) -> Self {
        let rate = |n: usize, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        Timings {
            device: info.device.clone(),
            load_secs: info.load_secs,
            prefill_secs: usage.prefill_secs,
            decode_secs: usage.decode_secs,
            total_secs: start.elapsed().as_secs_f64(),
            prompt_tokens: usage.prompt_tokens,
            reused_prompt_tokens: usage.reused_tokens,
            generated_tokens: usage.generated_tokens,
            prefill_tokens_per_sec: rate(
                usage.prompt_tokens - usage.reused_tokens,
                usage.prefill_secs,
            ),
            decode_tokens_per_sec: rate(usage.generated_tokens, usage.decode_secs),
            peak_rss_bytes: peak_rss(),
        }
    }

    /// The `--stats` line.
    pub fn report(&self, printer: &Printer) {
        let memory = self.peak_rss_bytes.map_or_else(
            || "unknown".to_string(),
            |b| indicatif::HumanBytes(b).to_string(),
        );
        printer.stats(format!(
            "{}: load {:.2} s; {} prompt tokens ({} from cache), {:.0} tok/s prefill; {} new tokens, {:.1} tok/s decode; peak memory {memory}; total {:.2} s",
            self.device,
            self.load_secs,
            self.prompt_tokens,
            self.reused_prompt_tokens,
            self.prefill_tokens_per_sec,
            self.generated_tokens,
            self.decode_tokens_per_sec,
            self.total_secs
        ));
    }
}

/// Peak resident memory (`VmHWM` of /proc/self/status on Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
