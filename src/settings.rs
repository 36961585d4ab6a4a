//! Flags resolved into plain settings before any model loads: languages
//! are looked up, the model's files located and output paths checked, so a
//! typo fails in milliseconds rather than after a model load.

use std::path::{Path, PathBuf};

use anyhow::Result;
use glot::engine::generate::Sampling;
use glot::engine::LoadOptions;
use glot::task::summarize::Length;
use glot::text::lang::{self, Language};
use glot::Error;

use crate::cli::{
    BatchArgs, Cli, Command, DocumentArgs, Format, GenerateArgs, InputFormatArg, LengthArg,
    ModelArgs, ModelsCommand, OutputArgs, SamplingArgs, SummarizeArgs, TranslateArgs,
};
use crate::printer::Printer;

/// Everything a command needs.
pub struct Settings {
    pub printer: Printer,
    pub task: Task,
}

pub enum Task {
    Summarize(SummarizeSettings),
    Batch(BatchSettings),
    BatchStatus { dir: PathBuf, json: bool },
    Translate(TranslateSettings),
    Generate(GenerateSettings),
    Models(ModelsSettings),
    Languages { json: bool },
    EvalTranslate(EvalTranslate),
    EvalSummarize(EvalSummarize),
    Completions(clap_complete::Shell),
    Man { dir: Option<PathBuf> },
    Config,
    Serve(ServeSettings),
}

/// `glot serve`.
pub struct ServeSettings {
    pub host: std::net::IpAddr,
    pub port: u16,
    pub api_keys: Option<PathBuf>,
    /// 0: no limit.
    pub char_limit: usize,
    pub body_limit: usize,
    pub queue: usize,
    pub timeout: std::time::Duration,
    pub cors: Option<String>,
    pub glossary: Vec<(String, String)>,
    pub prompts: Option<PathBuf>,
    pub model: ModelSettings,
}

/// `glot eval summarize`: score `hyp`, or summarize `docs` first.
pub struct EvalSummarize {
    pub hyp: Option<PathBuf>,
    pub docs: Option<PathBuf>,
    pub reference: PathBuf,
    pub language: Option<Language>,
    pub length: Length,
    pub model: ModelSettings,
    pub json: bool,
}

/// `glot eval translate`: score `hyp`, or translate `src` first.
pub struct EvalTranslate {
    pub hyp: Option<PathBuf>,
    pub src: Option<PathBuf>,
    pub reference: PathBuf,
    pub target: Option<Language>,
    pub source: Option<Language>,
    pub model: ModelSettings,
    pub json: bool,
}

/// `glot models …`: the subcommand needs no further resolution.
pub struct ModelsSettings {
    pub command: ModelsCommand,
    pub offline: bool,
}

/// The model as named; it is resolved (and fetched if need be) only after
/// the input has been read, so bad input never waits on a download.
pub struct ModelSettings {
    pub spec: Option<String>,
    pub tokenizer: Option<String>,
    pub offline: bool,
    pub load: LoadOptions,
    pub sampling: Option<Sampling>,
    /// Sentences per batch for translation models.
    pub batch_size: usize,
    /// Beam search (`--beam`, `--length-penalty`).
    pub beam: Option<BeamRequest>,
    /// Independent chat calls decoded together (`--parallel`).
    pub parallel: usize,
}

/// Independent chat calls decoded together unless `--parallel` says
/// otherwise. Measured on two 2-core CPUs (`docs/benchmarks.md`): on an
/// AMD EPYC with AVX2, 4 gave a 20-document batch 1.42× and a four-chunk
/// translation 1.64× the speed of one call at a time, and 8 about 5% more
/// on the batch (a long summary 2% less); on an Intel Xeon with AVX-512
/// VNNI, whose panels serve four rows a pass, 8 gave the batch 1.79–1.87×
/// against 1.54× at 4, and the summary 1.63× against 1.44×. Outputs are the
/// same at every width, and the calls' caches take at most half the free
/// memory.
pub const DEFAULT_PARALLEL: usize = 8;

/// Beam search as asked; a translation model's generation config fills in
/// the rest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeamRequest {
    pub beams: usize,
    pub length_penalty: Option<f32>,
}

impl BeamRequest {
    /// The search for a chat model, with `transformers`' defaults where the
    /// user set nothing (chat models' generation configs are for sampling).
    pub fn for_chat_model(&self) -> glot::engine::beam::Beam {
        glot::engine::beam::Beam {
            beams: self.beams,
            length_penalty: self.length_penalty.unwrap_or(1.0),
            early_stopping: glot::engine::beam::EarlyStopping::Heuristic,
        }
    }
}

pub struct OutputSettings {
    pub path: Option<PathBuf>,
    pub json: bool,
}

/// One article to run a task on.
pub struct DocumentSettings {
    pub input: String,
    pub format: glot::markup::Format,
    pub lossy: bool,
    pub max_bytes: u64,
    /// `--plan`: show the calls, do not make them.
    pub plan: bool,
    /// `--stream`: write the result as it comes, even to a pipe.
    pub stream: bool,
    pub prompts: Option<PathBuf>,
    pub model: ModelSettings,
    pub output: OutputSettings,
}

pub struct SummarizeSettings {
    pub language: Option<Language>,
    pub length: Length,
    /// `--cite`: bullets that name the chunks they come from.
    pub cite: bool,
    pub doc: DocumentSettings,
}

pub struct TranslateSettings {
    pub target: Language,
    pub source: Option<Language>,
    /// Terms and their fixed translations (`--glossary`).
    pub glossary: Vec<(String, String)>,
    pub doc: DocumentSettings,
}

pub enum PromptSource {
    File(String),
    Text(String),
}

pub struct GenerateSettings {
    pub prompt: PromptSource,
    pub chat: bool,
    pub max_new_tokens: usize,
    pub ignore_eos: bool,
    /// Ids to read along instead of generating.
    pub follow: Option<Vec<u32>>,
    /// How many of the best logits to report per step (0: none).
    pub top_logits: usize,
    pub model: ModelSettings,
    pub output: OutputSettings,
}

/// Words for each `--length`.
fn words(length: LengthArg) -> usize {
    match length {
        LengthArg::Short => 60,
        LengthArg::Medium => 150,
        LengthArg::Long => 300,
    }
}

/// Resolves parsed flags into settings.
pub fn resolve(cli: Cli) -> Result<Settings> {
    let printer = Printer::new(cli.quiet, cli.verbose).with_stats(cli.stats);
    let reach = Reach {
        offline: cli.offline,
        device: cli.device,
    };
    let task = match cli.command {
        Command::Summarize(a) => Task::Summarize(summarize(a, reach)?),
        Command::Translate(a) => Task::Translate(translate(a, reach)?),
        Command::Batch(a) => match a.status {
            Some(dir) => Task::BatchStatus {
                json: a.json || a.format == Format::Json,
                dir,
            },
            None => Task::Batch(batch(a, reach)?),
        },
        Command::Generate(a) => Task::Generate(generate(a, reach)?),
        Command::Completions { shell } => Task::Completions(shell),
        Command::Serve(a) => Task::Serve(ServeSettings {
            host: a.host,
            port: a.port,
            api_keys: a.api_keys,
            char_limit: a.char_limit,
            body_limit: a.body_limit,
            queue: usize::from(a.queue),
            timeout: std::time::Duration::from_secs(a.timeout),
            cors: a.cors,
            glossary: match &a.glossary {
                Some(path) => glot::input::glossary(path)?,
                None => Vec::new(),
            },
            prompts: a.prompts,
            model: model(&a.model, &a.sampling, reach)?,
        }),
        Command::Man { dir } => Task::Man { dir },
        Command::Config => Task::Config,
        Command::Languages { format } => Task::Languages {
            json: format == Format::Json,
        },
        Command::Eval(crate::cli::EvalCommand::Translate {
            hyp,
            src,
            reference,
            to,
            from,
            model: m,
            sampling,
            format,
        }) => Task::EvalTranslate(EvalTranslate {
            target: to.as_deref().map(lang::resolve).transpose()?,
            source: source_language(from.as_deref())?,
            model: model(&m, &sampling, reach)?,
            hyp,
            src,
            reference,
            json: format == Format::Json,
        }),
        Command::Eval(crate::cli::EvalCommand::Summarize {
            hyp,
            docs,
            reference,
            lang: language,
            words,
            model: m,
            sampling,
            format,
        }) => Task::EvalSummarize(EvalSummarize {
            language: language.as_deref().map(lang::resolve).transpose()?,
            length: Length {
                words: words.max(1) as usize,
            },
            model: model(&m, &sampling, reach)?,
            hyp,
            docs,
            reference,
            json: format == Format::Json,
        }),
        Command::Models(c) => Task::Models(ModelsSettings {
            command: c,
            offline: cli.offline,
        }),
    };
    Ok(Settings { printer, task })
}

fn summarize(a: SummarizeArgs, reach: Reach) -> Result<SummarizeSettings> {
    Ok(SummarizeSettings {
        language: a.lang.as_deref().map(lang::resolve).transpose()?,
        length: Length {
            words: a
                .words
                .map_or(words(a.length.unwrap_or_default()), |w| w as usize),
        },
        cite: a.cite,
        doc: document(a.doc, reach)?,
    })
}

fn translate(a: TranslateArgs, reach: Reach) -> Result<TranslateSettings> {
    Ok(TranslateSettings {
        target: lang::resolve(a.to.as_deref().ok_or_else(|| {
            glot::error::Error::Usage(
                "no target language: give --to LANG, or `to` in the config file (`glot config` shows where)".into(),
            )
        })?)?,
        source: source_language(a.from.as_deref())?,
        glossary: match &a.glossary {
            Some(path) => glot::input::glossary(path)?,
            None => Vec::new(),
        },
        doc: document(a.doc, reach)?,
    })
}

/// `glot batch`: what to do with each document of a selection.
pub struct BatchSettings {
    pub selection: glot::folder::walk::Selection,
    pub jobs: Vec<glot::folder::Job>,
    pub source: Option<Language>,
    /// Terms and their fixed translations (`--glossary`).
    pub glossary: Vec<(String, String)>,
    /// `--plan`, and whether as JSON.
    pub plan: Option<bool>,
    pub shard: glot::folder::shard::Shard,
    pub max_bytes: u64,
    pub force: bool,
    pub retry_failed: bool,
    pub dry_run: bool,
    pub format: Option<glot::markup::Format>,
    pub lossy: bool,
    pub prompts: Option<PathBuf>,
    pub model: ModelSettings,
}

fn batch(a: BatchArgs, reach: Reach) -> Result<BatchSettings> {
    let out = a
        .out
        .ok_or_else(|| Error::Usage("give --out DIR for the outputs".into()))?;
    let mut jobs = Vec::new();
    if a.summarize {
        jobs.push(glot::folder::Job::Summarize {
            language: a.lang.as_deref().map(lang::resolve).transpose()?,
            words: a
                .words
                .map_or(words(a.length.unwrap_or_default()), |w| w as usize),
        });
    } else if a.lang.is_some() || a.words.is_some() {
        return Err(
            Error::Usage("--lang and --words set the summary: add --summarize".into()).into(),
        );
    }
    for t in a.translate.iter().filter(|t| !t.trim().is_empty()) {
        let job = glot::folder::Job::Translate {
            target: lang::resolve(t)?,
        };
        if !jobs.contains(&job) {
            jobs.push(job);
        }
    }
    if jobs.is_empty() {
        return Err(
            Error::Usage("say what to do: --summarize and/or --translate LANGS".into()).into(),
        );
    }
    if out.exists() && !out.is_dir() {
        return Err(
            Error::Usage(format!("--out {} is a file, not a folder", out.display())).into(),
        );
    }
    let shard = match &a.shard {
        Some(spec) => glot::folder::shard::Shard::parse(spec, |k| std::env::var(k).ok())?,
        None => glot::folder::shard::Shard::ALL,
    };
    Ok(BatchSettings {
        selection: glot::folder::walk::Selection {
            roots: a.inputs,
            include: a.include,
            exclude: a.exclude,
            out,
            follow: a.follow,
        },
        jobs,
        source: source_language(a.from.as_deref())?,
        glossary: match &a.glossary {
            Some(path) => glot::input::glossary(path)?,
            None => Vec::new(),
        },
        shard,
        max_bytes: a.reading.max_bytes,
        force: a.force,
        retry_failed: a.retry_failed,
        dry_run: a.dry_run,
        plan: a.plan.then_some(a.json || a.format == Format::Json),
        format: a.reading.input_format.map(input_format),
        lossy: a.reading.lossy,
        prompts: a.reading.prompts,
        model: model(&a.model, &a.sampling, reach)?,
    })
}

/// `--from`: a language, or `auto` (the default) to detect it.
fn source_language(from: Option<&str>) -> Result<Option<Language>> {
    match from {
        None => Ok(None),
        Some(f) if f.trim().eq_ignore_ascii_case("auto") => Ok(None),
        Some(f) => Ok(Some(lang::resolve(f)?)),
    }
}

fn input_format(f: InputFormatArg) -> glot::markup::Format {
    match f {
        InputFormatArg::Text => glot::markup::Format::Text,
        InputFormatArg::Markdown => glot::markup::Format::Markdown,
        InputFormatArg::Html => glot::markup::Format::Html,
    }
}

fn document(a: DocumentArgs, reach: Reach) -> Result<DocumentSettings> {
    Ok(DocumentSettings {
        output: output(&a.output, Some(&a.input))?,
        model: model(&a.model, &a.sampling, reach)?,
        prompts: a.reading.prompts,
        format: a
            .reading
            .input_format
            .map_or_else(|| glot::markup::Format::from_path(&a.input), input_format),
        lossy: a.reading.lossy,
        max_bytes: a.reading.max_bytes,
        plan: a.plan,
        stream: a.stream,
        input: a.input,
    })
}

fn generate(a: GenerateArgs, reach: Reach) -> Result<GenerateSettings> {
    let prompt = match (a.prompt_file, a.prompt) {
        (Some(f), _) => PromptSource::File(f),
        (None, Some(t)) => PromptSource::Text(t),
        (None, None) => return Err(Error::Usage("give --prompt-file or --prompt".into()).into()),
    };
    if a.max_new_tokens == 0 {
        return Err(Error::Usage("--max-new-tokens must be at least 1".into()).into());
    }
    let follow = a.follow_ids.as_deref().map(read_ids).transpose()?;
    let output = output(&a.output, None)?;
    if a.top_logits.is_some() && !output.json {
        return Err(Error::Usage("--top-logits goes with --format json".into()).into());
    }
    Ok(GenerateSettings {
        output,
        prompt,
        chat: a.chat,
        max_new_tokens: follow.as_ref().map_or(a.max_new_tokens, Vec::len),
        ignore_eos: a.ignore_eos,
        follow,
        top_logits: a.top_logits.unwrap_or(0),
        // One copy of the prompt unless asked for more.
        model: ModelSettings {
            parallel: a.model.parallel.map_or(1, |n| n as usize),
            ..model(&a.model, &a.sampling, reach)?
        },
    })
}

/// Token ids from `path`: a JSON list, or numbers separated by white space.
fn read_ids(path: &str) -> Result<Vec<u32>> {
    let text = glot::input::read(path, false, glot::input::MAX_BYTES)?.text;
    let bad = || {
        Error::Usage(format!(
            "{path}: expected token ids, as a JSON list or numbers separated by spaces"
        ))
    };
    let ids: Vec<u32> = match text.trim_start().starts_with('[') {
        true => serde_json::from_str(&text).map_err(|_| bad())?,
        false => text
            .split_whitespace()
            .map(|w| w.parse().map_err(|_| bad()))
            .collect::<std::result::Result<_, _>>()?,
    };
    if ids.is_empty() {
        return Err(Error::Usage(format!("{path}: no token ids")).into());
    }
    Ok(ids)
}

/// The global flags that say where models come from and run.
#[derive(Clone, Copy)]
struct Reach {
    offline: bool,
    device: glot::engine::device::DeviceChoice,
}

fn model(m: &ModelArgs, s: &SamplingArgs, reach: Reach) -> Result<ModelSettings> {
    let quantize = m.quantize.map(|q| match q {
        crate::cli::Quantize::Q8_0 => candle_core::quantized::GgmlDType::Q8_0,
    });
    Ok(ModelSettings {
        spec: m.model.clone().filter(|s| !s.is_empty()),
        tokenizer: m.tokenizer.clone(),
        offline: reach.offline,
        load: LoadOptions {
            max_context: m.max_context.map(|n| n as usize),
            quantize,
            device: reach.device,
            cache: m.cache_type.map(|c| match c {
                crate::cli::CacheTypeArg::F32 => glot::engine::CacheType::F32,
                crate::cli::CacheTypeArg::F16 => glot::engine::CacheType::F16,
                crate::cli::CacheTypeArg::Q8_0 => glot::engine::CacheType::Q8_0,
            }),
        },
        sampling: sampling(s)?,
        batch_size: m.batch_size as usize,
        beam: beam(s)?,
        parallel: m.parallel.map_or(DEFAULT_PARALLEL, |n| n as usize),
    })
}

fn beam(s: &SamplingArgs) -> Result<Option<BeamRequest>> {
    if let Some(f) = s.length_penalty {
        if !f.is_finite() {
            return Err(Error::Usage(format!("--length-penalty must be a number, not {f}")).into());
        }
    }
    Ok(s.beam.filter(|&n| n > 1).map(|n| BeamRequest {
        beams: n as usize,
        length_penalty: s.length_penalty.map(|f| f as f32),
    }))
}

fn sampling(s: &SamplingArgs) -> Result<Option<Sampling>> {
    if let Some(t) = s.temperature {
        if !(t.is_finite() && t >= 0.0) {
            return Err(Error::Usage(format!("--temperature must be 0 or more, not {t}")).into());
        }
    }
    if let Some(p) = s.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(Error::Usage(format!("--top-p must be in (0, 1], not {p}")).into());
        }
    }
    let wanted = s.temperature.is_some_and(|t| t > 0.0) || s.top_p.is_some() || s.seed.is_some();
    Ok(wanted.then(|| Sampling {
        temperature: s.temperature.unwrap_or(1.0),
        top_p: s.top_p.unwrap_or(1.0),
        seed: s.seed.unwrap_or(0),
    }))
}

fn output(o: &OutputArgs, input: Option<&str>) -> Result<OutputSettings> {
    // `-o -` is stdout, as an input of `-` is stdin.
    let to = o.output.clone().filter(|p| p.as_os_str() != "-");
    if let Some(path) = &to {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(Error::Usage(format!(
                "cannot write {}: folder {} does not exist",
                path.display(),
                dir.display()
            ))
            .into());
        }
        if path.is_dir() {
            return Err(Error::Usage(format!("{} is a folder, not a file", path.display())).into());
        }
        // Found now, before any model call, rather than after all of them.
        let writes_through = std::fs::metadata(path).is_ok_and(|m| !m.is_file());
        if !writes_through {
            if let Err(e) = tempfile::Builder::new().prefix(".glot-").tempfile_in(dir) {
                return Err(Error::Usage(format!(
                    "cannot write {}: folder {} does not take new files ({e})",
                    path.display(),
                    dir.display()
                ))
                .into());
            }
        }
        if let Some(input) = input.filter(|i| *i != "-") {
            let same = std::fs::canonicalize(input)
                .ok()
                .zip(std::fs::canonicalize(path).ok())
                .is_some_and(|(a, b)| a == b);
            if same {
                return Err(Error::Usage(format!(
                    "{} is the input: writing the result there would destroy the article",
                    path.display()
                ))
                .into());
            }
        }
    }
    Ok(OutputSettings {
        path: to,
        json: o.format == Format::Json,
    })
}
