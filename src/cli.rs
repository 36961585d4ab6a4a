//! Command-line flags (clap derive only). `settings` turns them into plain
//! settings; nothing below the commands sees these types.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

/// Summarize and translate articles offline with local transformer models.
#[derive(Debug, Parser)]
#[command(name = "glot", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Print only results and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Report progress on stderr (model loading, chunks, speed).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// Report speed on stderr: every model call, and at the end load time,
    /// tokens, prefill and decode rates and peak memory.
    #[arg(long, global = true, conflicts_with = "quiet")]
    pub stats: bool,

    /// Threads used for model computation [default: one per physical core].
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<NonZeroUsize>,

    /// Where models run: cpu, cuda, cuda:N (the GPU's number) or auto
    /// (CUDA when this glot is built with it and the machine has a GPU,
    /// else the CPU).
    #[arg(long, global = true, value_name = "DEVICE", default_value = "auto")]
    pub device: glot::engine::device::DeviceChoice,

    /// Never touch the network: use only models already in the cache.
    ///
    /// Setting HF_HUB_OFFLINE=1 does the same.
    #[arg(long, global = true)]
    pub offline: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Summarize an article, in its own language or another.
    Summarize(SummarizeArgs),
    /// Translate a whole article, keeping its paragraphs.
    Translate(TranslateArgs),
    /// Summarize and translate every document of folders, resumably.
    ///
    /// Outputs mirror the input tree under --out: NAME.summary.md for
    /// summaries, NAME.LANG.EXT for translations. A manifest in --out
    /// (manifest*.jsonl, one JSON line per document and job) records what
    /// was done with which settings; a rerun skips what is done and
    /// unchanged. Ctrl-C stops after the current document (a second one at
    /// once); nothing half-written is ever left. --shard splits the work
    /// across processes or machines (Slurm job arrays, Kubernetes Indexed
    /// Jobs).
    Batch(BatchArgs),
    /// Run the model on a raw prompt (for checking a model).
    ///
    /// Decoding is pure greedy, with no repeat guard, unless sampling flags
    /// are given. `--format json` reports prompt and output token ids.
    Generate(GenerateArgs),
    /// The language names and codes glot understands, and which the models claim.
    Languages {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// List, inspect, download and remove models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Score translations or summaries against references.
    ///
    /// chrF and BLEU are computed as sacreBLEU computes them with its
    /// defaults (chrF2, BLEU with the 13a tokenizer, corpus statistics),
    /// ROUGE-1/2/L as Google's rouge-score does (no stemming; its tokenizer
    /// keeps only ASCII letters and digits, so it suits English summaries).
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Serve LibreTranslate's HTTP API, and /summarize, with the model
    /// loaded once.
    ///
    /// POST /translate, /detect, /translate_file and /summarize; GET
    /// /languages, /frontend/settings and /download_file/NAME. Bodies are
    /// JSON or forms; errors are {"error": "..."}. GET / is a page where a
    /// text is pasted or a file dropped, and the result appears as it comes
    /// (POST /stream, Server-Sent Events). Requests that arrive together
    /// decode together (--parallel). SIGTERM or Ctrl-C finishes the
    /// requests in flight and takes no new ones.
    Serve(ServeArgs),
    /// Print the completion script for a shell.
    ///
    /// For example, for bash: `glot completions bash >
    /// ~/.local/share/bash-completion/completions/glot`; for zsh, into a
    /// file `_glot` in a folder of `$fpath`; for fish:
    /// `~/.config/fish/completions/glot.fish`.
    Completions {
        /// bash, zsh, fish, powershell or elvish.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the settings the config file gives, and where each comes from.
    ///
    /// The file is $GLOT_CONFIG, else $XDG_CONFIG_HOME/glot/config.toml,
    /// else ~/.config/glot/config.toml. Its keys: model, threads, to,
    /// length, max_context, glossary (relative to the file's folder). A
    /// command's flags beat the environment (GLOT_MODEL), which beats the
    /// file, which beats glot's own defaults.
    Config,
    /// Print the manual page glot(1), or write every command's page.
    ///
    /// For example `glot man --dir ~/.local/share/man/man1` writes glot.1,
    /// glot-summarize.1, glot-models-download.1 and the others there.
    Man {
        /// Write one page per command into this folder instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// chrF and BLEU of translations, line by line against references.
    ///
    /// Two files whose lines correspond one to one, or two folders whose
    /// files pair by relative path (the corpus is all their lines; each
    /// file is also scored on its own).
    ///
    /// With --src and --to instead of --hyp, the model translates the
    /// source lines first (each non-empty line one paragraph, the model
    /// loaded once), then they are scored.
    Translate {
        /// The translations: a file, or a folder of files.
        #[arg(
            long,
            value_name = "PATH",
            required_unless_present = "src",
            conflicts_with = "src"
        )]
        hyp: Option<PathBuf>,
        /// Source lines to translate with the model first: a file, or a folder of files.
        #[arg(long, value_name = "PATH", requires = "to")]
        src: Option<PathBuf>,
        /// The reference translations: a file, or a folder of files.
        #[arg(long = "ref", visible_alias = "refs", value_name = "PATH")]
        reference: PathBuf,
        /// The language to translate --src into.
        #[arg(long, value_name = "LANG")]
        to: Option<String>,
        /// The language of --src [default: detected].
        #[arg(long, value_name = "LANG")]
        from: Option<String>,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        sampling: SamplingArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// ROUGE-1/2/L of summaries against reference summaries.
    ///
    /// Two files, or two folders whose files pair by relative path or by
    /// name up to the first dot (report.summary.md, as glot batch writes
    /// it, pairs with report.txt). Scores are the mean over documents.
    ///
    /// With --docs instead of --hyp, the model summarizes the documents
    /// first (loaded once), in each document's language unless --lang says
    /// otherwise.
    Summarize {
        /// The summaries: a file, or a folder of files.
        #[arg(
            long,
            value_name = "PATH",
            required_unless_present = "docs",
            conflicts_with = "docs"
        )]
        hyp: Option<PathBuf>,
        /// Documents to summarize with the model first: a file, or a folder of files.
        #[arg(long, value_name = "PATH")]
        docs: Option<PathBuf>,
        /// Write the summaries in this language.
        #[arg(long, value_name = "LANG")]
        lang: Option<String>,
        /// At most this many words per summary.
        #[arg(long, value_name = "N", default_value_t = 150)]
        words: u32,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// The reference summaries: a file, or a folder of files.
        #[arg(long = "ref", visible_alias = "refs", value_name = "PATH")]
        reference: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// The known models (built-in and your own manifests) and whether they are cached.
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// A model's files, repositories, revision, context length and cache location.
    Info {
        /// Model id or alias (see `glot models list`).
        #[arg(value_name = "MODEL")]
        model: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The opus-mt language pairs `--model opus-mt` chooses from.
    ///
    /// With a language, the models from and into it; pairs without a model
    /// go through English when both halves exist.
    Pairs {
        /// A language code or name.
        #[arg(value_name = "LANG")]
        language: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Download a model ahead of time (the default model if none is named).
    ///
    /// Also takes hub repositories as hf:OWNER/NAME[@REVISION][:FILE], and
    /// opus-mt pairs as opus-mt:SRC-TGT (both models when the pair goes
    /// through English).
    Download {
        #[arg(value_name = "MODEL")]
        model: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Delete a model's files from the cache (files other models use are kept).
    Remove {
        #[arg(value_name = "MODEL")]
        model: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// Which model to run.
#[derive(Debug, Args)]
#[command(next_help_heading = "Model")]
pub struct ModelArgs {
    /// Model: an id from `glot models list`, opus-mt, hf:OWNER/NAME[@REV][:FILE], a folder or a .gguf file [default: qwen3-4b].
    ///
    /// Ids and hf: repositories are downloaded into the Hugging Face cache
    /// on first use. A local folder holds config.json, *.safetensors,
    /// tokenizer.json and usually tokenizer_config.json and
    /// generation_config.json. A .gguf file is a whole model: its metadata
    /// holds the tokenizer and chat template (a tokenizer.json beside it, or
    /// --tokenizer, is taken instead). For translation, `opus-mt` picks the
    /// Helsinki-NLP model of the language pair (through English when there
    /// is no direct one: `glot models pairs`), and Marian (opus-mt) and T5
    /// (MADLAD-400) models are taken as folders, ids and hf: repositories.
    #[arg(short, long, env = "GLOT_MODEL", value_name = "MODEL")]
    pub model: Option<String>,

    /// tokenizer.json (or its folder), or hf:OWNER/NAME, instead of a GGUF file's own tokenizer.
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<String>,

    /// Use at most N tokens of context (prompt plus answer) [default: 16384 with an f16 cache, 8192 with f32, 30720 with q8_0, or the model's, if less].
    ///
    /// Lower values make glot split articles into more, smaller chunks and
    /// use less memory; higher ones (up to the model's context) fewer, larger
    /// chunks. The defaults take the same memory for the key/value cache.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(16..))]
    pub max_context: Option<u32>,

    /// Quantize a model's safetensors weights in memory at load (GGUF files
    /// are already quantized).
    ///
    /// Q8_0 reads a quarter of the bytes per token of f32 and takes about a
    /// quarter of the memory, at a small cost in exactness.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub quantize: Option<Quantize>,

    /// What a chat model's key/value cache keeps. By default f16 for
    /// quantized and half-precision weights (as llama.cpp keeps it), f32
    /// for f32 weights (as transformers computes).
    ///
    /// f16 takes half the memory of f32 and half the reading per token. On
    /// the test models it moves the logits by under 0.1% of their range
    /// from f32 weights, and by half what Q8_0 weights do from Q8_0 ones.
    /// q8_0 (blocks of 32 values with one scale, as llama.cpp's) takes about
    /// half the memory of f16 and moves the logits some thirty times more;
    /// it needs heads of a multiple of 32 values.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub cache_type: Option<CacheTypeArg>,

    /// Sentences a translation model (Marian, T5) translates at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch_size: u32,

    /// Independent calls a chat model decodes together on the CPU: the
    /// parts of a long summary, the chunks of a translation, the documents
    /// of `glot batch` (`glot generate`: N copies of the prompt, to measure
    /// it).
    ///
    /// Each decoding step reads the weights once for all of them, so N
    /// calls take little more time per step than one. Every output is the
    /// same, bit for bit, whatever N; only the time changes. Each call
    /// keeps its own key/value cache, within half the free memory.
    /// Default: 8 (1 for `glot generate`); 1 is one call at a time.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: Option<u32>,
}

/// Key/value cache types for `--cache-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CacheTypeArg {
    F32,
    F16,
    /// 8-bit blocks of 32 values with one scale (llama.cpp's Q8_0).
    #[value(name = "q8_0")]
    Q8_0,
}

/// In-memory weight formats for `--quantize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Quantize {
    /// 8-bit blocks of 32 weights with one scale (llama.cpp's Q8_0).
    #[value(name = "q8_0")]
    Q8_0,
}

/// Opt-in sampling or beam search; decoding is greedy and reproducible
/// without these.
#[derive(Debug, Args)]
#[command(next_help_heading = "Decoding")]
pub struct SamplingArgs {
    /// Sample with this temperature instead of decoding greedily.
    #[arg(long, value_name = "T")]
    pub temperature: Option<f64>,

    /// Nucleus sampling: keep the most likely tokens up to this mass.
    #[arg(long, value_name = "P")]
    pub top_p: Option<f64>,

    /// Seed for sampling (the same seed gives the same output) [default: 0].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Beam search with N beams; 1 is greedy.
    ///
    /// Keeps the N most likely partial outputs at each step rather than
    /// one, as `transformers`' `num_beams` does: often a little better for
    /// translation models (opus-mt models are published with 4), and N
    /// times the decoding work. Chat models take it too.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=32),
          conflicts_with_all = ["temperature", "top_p", "seed"])]
    pub beam: Option<u32>,

    /// Beam search: a finished output's score is its log-probability over
    /// length^F; above 0 favours longer ones [default: a translation model's, else 1].
    #[arg(
        long,
        value_name = "F",
        requires = "beam",
        allow_negative_numbers = true
    )]
    pub length_penalty: Option<f64>,
}

/// Where and how to write the result.
#[derive(Debug, Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Write the result to this file instead of stdout (replaced atomically).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The text alone.
    Text,
    /// A JSON object with the text and metadata (model, languages, chunks, tokens, timings).
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: only this machine unless asked.
    #[arg(long, default_value = "127.0.0.1", help_heading = "Server")]
    pub host: std::net::IpAddr,

    /// Port to listen on (0: any free one, printed at start).
    #[arg(long, default_value_t = 5000, help_heading = "Server")]
    pub port: u16,

    /// File of API keys, one a line: requests without one of them get 403.
    #[arg(long, value_name = "FILE", help_heading = "Server")]
    pub api_keys: Option<PathBuf>,

    /// Most characters of text one request may send (0: no limit).
    #[arg(long, default_value_t = 100_000, help_heading = "Server")]
    pub char_limit: usize,

    /// Most bytes of one request's body.
    #[arg(long, default_value_t = 10 << 20, value_name = "BYTES", help_heading = "Server")]
    pub body_limit: usize,

    /// Requests that may wait for the model beyond those it is working on;
    /// more get 429.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=4096), help_heading = "Server")]
    pub queue: u16,

    /// Seconds a request may take, waiting included; a longer one gets 500.
    #[arg(long, default_value_t = 600, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Server")]
    pub timeout: u64,

    /// Let web pages from ORIGIN (or * for any) call the API.
    #[arg(long, value_name = "ORIGIN", help_heading = "Server")]
    pub cors: Option<String>,

    /// Fixed translations of terms: one `term<TAB>translation` a line.
    #[arg(long, value_name = "FILE")]
    pub glossary: Option<String>,

    /// Folder of prompt templates replacing the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub prompts: Option<PathBuf>,

    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Folders (walked recursively) and files to process.
    #[arg(value_name = "INPUT", required_unless_present = "status")]
    pub inputs: Vec<PathBuf>,

    /// Folder for outputs and the manifest (created if need be).
    #[arg(long, value_name = "DIR", required_unless_present = "status")]
    pub out: Option<PathBuf>,

    /// Show what the manifests in DIR say (done, copied, failed, pending) and exit.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["inputs", "out"])]
    pub status: Option<PathBuf>,

    /// Write a summary of each document.
    #[arg(long, help_heading = "Jobs")]
    pub summarize: bool,

    /// Translate each document into these languages (comma-separated codes or names).
    #[arg(
        long,
        value_name = "LANGS",
        value_delimiter = ',',
        help_heading = "Jobs"
    )]
    pub translate: Vec<String>,

    /// Write summaries in this language [default: each document's].
    #[arg(long, value_name = "LANG", help_heading = "Jobs")]
    pub lang: Option<String>,

    /// The documents' language for translation, or `auto` [default: auto, detected per document].
    #[arg(long, value_name = "LANG", help_heading = "Jobs")]
    pub from: Option<String>,

    /// Terms with a fixed translation, one `TERM<TAB>TRANSLATION` per line (see `glot translate --help`).
    #[arg(long, value_name = "FILE", help_heading = "Jobs")]
    pub glossary: Option<String>,

    /// How long summaries should be [default: medium].
    #[arg(long, value_enum, help_heading = "Jobs")]
    pub length: Option<LengthArg>,

    /// Summaries of at most this many words (overrides --length).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=5000), help_heading = "Jobs")]
    pub words: Option<u32>,

    /// Only documents whose path (relative to its folder) matches this glob; repeatable.
    #[arg(long, value_name = "GLOB", help_heading = "Selection")]
    pub include: Vec<String>,

    /// Leave out documents whose relative path matches this glob (e.g. 'drafts/**'); repeatable.
    #[arg(long, value_name = "GLOB", help_heading = "Selection")]
    pub exclude: Vec<String>,

    /// Follow symbolic links that lead out of the input folders too
    /// (links within them are always followed).
    #[arg(short = 'L', long, help_heading = "Selection")]
    pub follow: bool,

    /// Do this share of the documents: K/N (3/8 is the third of eight), or `auto`.
    ///
    /// `auto` reads SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and
    /// SLURM_ARRAY_TASK_COUNT (a Slurm job array), or JOB_COMPLETION_INDEX
    /// and GLOT_SHARD_COUNT (a Kubernetes Indexed Job). Documents are split
    /// by a hash of their relative path, so N shards do each exactly once.
    #[arg(long, value_name = "K/N", help_heading = "Selection")]
    pub shard: Option<String>,

    /// Redo every document, done or not.
    #[arg(long, conflicts_with = "retry_failed")]
    pub force: bool,

    /// Redo only documents whose last run failed.
    #[arg(long)]
    pub retry_failed: bool,

    /// Walk, hash and check the manifest, then say what a run would do, without loading a model.
    #[arg(long)]
    pub dry_run: bool,

    /// Every model call the jobs would make on every document, with the
    /// totals for the folder, from the model's tokenizer and template (no
    /// weights). For translation models, the batches of sentences.
    #[arg(long, conflicts_with = "dry_run")]
    pub plan: bool,

    /// How --plan and --status report.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// The same as --format json.
    #[arg(long, hide = true)]
    pub json: bool,

    #[command(flatten)]
    pub reading: ReadingArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormatArg {
    /// Plain text: paragraphs separated by blank lines.
    Text,
    /// CommonMark with GFM tables, task lists and front matter.
    #[value(alias = "md")]
    Markdown,
    /// An HTML page or fragment.
    #[value(alias = "htm")]
    Html,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LengthArg {
    /// About 60 words.
    Short,
    /// About 150 words.
    #[default]
    Medium,
    /// About 300 words.
    Long,
}

/// The article and everything about running the model on it.
#[derive(Debug, Args)]
pub struct DocumentArgs {
    /// The article: a text, Markdown or HTML file, or - for stdin.
    #[arg(value_name = "ARTICLE")]
    pub input: String,

    /// Show the run without making it: every model call with its tokens
    /// and answer cap, and the context used.
    ///
    /// Loads the model's tokenizer and chat template, not its weights, and
    /// computes the chunks exactly as the run does: it proves that nothing
    /// is cut. For translation models, the batches of sentences and the
    /// longest sentence's source tokens.
    #[arg(long)]
    pub plan: bool,

    /// Write the result as it is produced, even when stdout is not a
    /// terminal (on a terminal this is the default): a translation
    /// paragraph by paragraph, a summary sentence by sentence.
    ///
    /// With -o FILE or --format json the result is written whole at the
    /// end, as ever. A summary whose model is asked again after its first
    /// sentences were written is written again in full after them, with a
    /// warning (on a terminal, the first attempt is erased).
    #[arg(long, help_heading = "Output")]
    pub stream: bool,

    #[command(flatten)]
    pub reading: ReadingArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// How documents are read and what the model is asked.
#[derive(Debug, Args)]
pub struct ReadingArgs {
    /// How documents are written [default: from the extension; text for stdin].
    ///
    /// Markdown and HTML keep their structure: code, URLs, link targets,
    /// front matter, tags and attributes are never sent to the model, and a
    /// translation comes back with the same markup. Summaries of HTML use
    /// the page's main text, without menus and footers.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub input_format: Option<InputFormatArg>,

    /// Replace bytes that are not valid UTF-8 (or UTF-16) by U+FFFD instead of refusing them.
    #[arg(long)]
    pub lossy: bool,

    /// Refuse documents larger than this many bytes (in a batch, each one
    /// fails and the others run): a device or a stray archive is not an
    /// article.
    #[arg(long, value_name = "BYTES", default_value_t = 10_000_000)]
    pub max_bytes: u64,

    /// Folder with prompt templates that replace the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub prompts: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SummarizeArgs {
    /// Write the summary in this language (code or name) [default: the article's].
    #[arg(long, value_name = "LANG")]
    pub lang: Option<String>,

    /// How long the summary should be [default: medium].
    #[arg(long, value_enum)]
    pub length: Option<LengthArg>,

    /// At most this many words (overrides --length).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub words: Option<u32>,

    /// Write the summary as bullet points, each ending with the numbers of
    /// the article's parts it comes from; the parts' lines are listed below.
    #[arg(long)]
    pub cite: bool,

    #[command(flatten)]
    pub doc: DocumentArgs,
}

#[derive(Debug, Args)]
pub struct TranslateArgs {
    /// Target language: a code (de, pt-BR) or a name (German, Deutsch) [default: the config file's `to`].
    #[arg(long, value_name = "LANG")]
    pub to: Option<String>,

    /// The article's language, or `auto` to detect it [default: auto].
    #[arg(long, value_name = "LANG")]
    pub from: Option<String>,

    /// Terms with a fixed translation: one `TERM<TAB>TRANSLATION` per line.
    ///
    /// Each whole-word occurrence of a term (case as written) reaches the
    /// model as a placeholder and comes back as the given translation, so
    /// names and technical terms are never altered. Blank lines and lines
    /// starting with # are skipped.
    #[arg(long, value_name = "FILE")]
    pub glossary: Option<String>,

    #[command(flatten)]
    pub doc: DocumentArgs,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// File holding the prompt (- for stdin).
    #[arg(long, value_name = "FILE", required_unless_present = "prompt")]
    pub prompt_file: Option<String>,

    /// The prompt as an argument.
    #[arg(long, value_name = "TEXT", conflicts_with = "prompt_file")]
    pub prompt: Option<String>,

    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    pub chat: bool,

    /// Stop after this many new tokens.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_new_tokens: usize,

    /// Keep going past end-of-text tokens, so that every run generates
    /// exactly --max-new-tokens (for timing against other engines).
    #[arg(long)]
    pub ignore_eos: bool,

    /// Read along these token ids (a JSON list, or numbers separated by
    /// spaces) instead of choosing the output: another engine's output, to
    /// compare logits step by step with --top-logits. Chat models only.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["max_new_tokens", "ignore_eos"])]
    pub follow_ids: Option<String>,

    /// With --format json: the N best logits of every step that chose an
    /// output token, as `top_logits`. Chat models only.
    #[arg(long, value_name = "N")]
    pub top_logits: Option<usize>,

    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}
