//! The engine: a loaded model and the one interface tasks talk to.
//!
//! Tasks see [`ChatModel`]: count tokens, measure a prompt, complete a
//! conversation. Everything about formats, architectures, tokenizers and
//! chat templates stays behind it.

pub mod beam;
pub mod choice;
pub mod config;
pub mod decoder;
pub mod device;
pub mod generate;
pub mod gguf_vocab;
pub mod kernels;
pub mod parallel;
pub mod sentencepiece;
pub mod seq2seq;
pub mod shared;

pub mod tokenizer;
pub mod weights;

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::quantized::gguf_file;
use candle_core::Device;
use serde::Serialize;
use serde_json::Value;

use crate::error::Error;
use crate::hub::{read_json, snapshot_of, ModelFiles, WeightsFormat};
use crate::prompt::chat::{ChatTemplate, Message, Part};
use choice::StopReason;
use config::DecoderConfig;
use decoder::Decoder;
use generate::{GenParams, Generated, Sampling};
use tokenizer::Tokenizer;
use weights::Weights;

/// What tasks need from a model.
pub trait ChatModel {
    /// Positions the model may use for prompt and answer together.
    fn context_length(&self) -> usize;
    /// Tokens `text` takes on its own.
    fn count_tokens(&self, text: &str) -> Result<usize>;
    /// Tokens the rendered conversation takes, template included.
    fn prompt_tokens(&self, messages: &[Message]) -> Result<usize>;
    /// The longest prefix of `text` that takes at most `max` tokens.
    fn truncate_to_tokens(&self, text: &str, max: usize) -> Result<String>;
    /// The assistant's reply to `messages`, at most `max_new_tokens` long.
    fn complete(&mut self, messages: &[Message], max_new_tokens: usize) -> Result<Completion>;
    /// The replies to independent conversations, `calls[i]` = (messages, at
    /// most this many new tokens): each exactly what [`ChatModel::complete`]
    /// gives it alone. A model that decodes several sequences at once
    /// (`--parallel`) does so here.
    fn complete_all(&mut self, calls: &[(Vec<Message>, usize)]) -> Result<Vec<Completion>> {
        self.complete_all_watched(calls, &mut Unwatched)
    }
    /// [`ChatModel::complete_all`], telling `watch` how each call goes as
    /// it goes: its answer so far, token by token where the model decodes
    /// so, and its completion as soon as it ends. By default each call in
    /// turn, heard of when it ends.
    fn complete_all_watched(
        &mut self,
        calls: &[(Vec<Message>, usize)],
        watch: &mut dyn Watch,
    ) -> Result<Vec<Completion>> {
        calls
            .iter()
            .enumerate()
            .map(|(i, (m, max))| {
                let c = self.complete(m, *max)?;
                watch.answered(i, &c);
                Ok(c)
            })
            .collect()
    }
    /// Another handle on the same model that measures prompts as this one
    /// does, for a task to look at its answers while this one is busy
    /// answering: `None` where the model has no such handle.
    fn twin(&self) -> Option<Box<dyn ChatModel + '_>> {
        None
    }
    /// Whether the model's chat template writes its own translation
    /// instruction from language codes (TranslateGemma), so a translation
    /// is asked for with [`Message::translation`] and no prompt of glot's.
    fn writes_translation_prompt(&self) -> bool;
    /// Calls that are sure to be asked next, each once, one after another:
    /// a model that gathers calls to decode them together may take note
    /// of them now. Nothing by default.
    fn foresee(&mut self, _calls: &[(Vec<Message>, usize)]) {}
    /// Whether [`ChatModel::complete_all`] decodes several calls at once,
    /// so that a task gains by gathering calls it could ask one by one.
    fn decodes_together(&self) -> bool {
        false
    }
}

/// Hears how the calls of [`ChatModel::complete_all_watched`] go, by their
/// index in the batch.
pub trait Watch {
    /// Whether [`Watch::decoded`] should be called at all.
    fn wants_tokens(&self) -> bool {
        false
    }
    /// Whether [`Watch::decoded`] should be given call `index`'s text.
    fn wants_text(&self, _index: usize) -> bool {
        false
    }
    /// Call `index` has `tokens` tokens of its answer so far (fewer than
    /// the last time when an answer that looped is asked again), and,
    /// where [`Watch::wants_text`] says so, their text.
    fn decoded(&mut self, _index: usize, _tokens: usize, _text: Option<&str>) {}
    /// Call `index` is answered.
    fn answered(&mut self, _index: usize, _c: &Completion) {}
}

/// Hears nothing.
pub struct Unwatched;
impl Watch for Unwatched {}

/// One reply and what it cost.
#[derive(Debug, Clone)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: usize,
    /// Prompt tokens whose computation an earlier call left in the cache.
    pub reused_tokens: usize,
    pub generated_tokens: usize,
    pub stop: StopReason,
    /// The first answer fell into a loop and the call was asked again
    /// ([`StopReason::Repetition`] says the second answer looped too).
    pub looped: bool,
    pub prefill_secs: f64,
    pub decode_secs: f64,
    /// Tokens decoded, and their seconds, in steps of this call alone (see
    /// [`generate::Generated::alone`]).
    pub alone: (usize, f64),
}

/// Describes the loaded model in outputs.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub id: String,
    /// The hub commit the files come from, when they are in the hub cache.
    pub revision: Option<String>,
    pub architecture: &'static str,
    pub format: String,
    pub context_length: usize,
    /// Where the model runs: `cpu`, `cuda:N`.
    pub device: String,
    pub load_secs: f64,
    /// Every file the model was built from, for [`crate::hub::digest`].
    #[serde(skip)]
    pub files: Vec<std::path::PathBuf>,
}

/// How to load and decode.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Cap on the context, below the model's own.
    pub max_context: Option<usize>,
    /// Block format that float (safetensors) matrices are quantized to at
    /// load: f32 reads four bytes per weight and token, Q8_0 about one.
    pub quantize: Option<candle_core::quantized::GgmlDType>,
    /// Where the weights go.
    pub device: device::DeviceChoice,
    /// What the key/value cache keeps; `None`: f32 for f32 weights (as
    /// transformers computes), f16 for quantized and half-precision ones
    /// (as llama.cpp keeps it).
    pub cache: Option<CacheType>,
}

/// The number type of a chat model's key/value cache (`--cache-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheType {
    F32,
    F16,
    /// Blocks of 32 values with one f16 scale, as llama.cpp's Q8_0.
    Q8_0,
}

impl CacheType {
    /// Bytes per 32 values.
    fn block_bytes(self) -> usize {
        match self {
            CacheType::F32 => 128,
            CacheType::F16 => 64,
            CacheType::Q8_0 => kernels::kv_q8::BLOCK_BYTES,
        }
    }
}

/// Decoding choices that hold for every completion of a run.
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions {
    pub sampling: Option<Sampling>,
    pub repeat_guard: bool,
    pub beam: Option<beam::Beam>,
    /// Independent calls decoded together ([`ChatModel::complete_all`]);
    /// 1 decodes one at a time.
    pub parallel: usize,
}

/// A decoder-only chat model ready to generate.
pub struct Llm {
    /// `None` when loaded for planning only: tokenizer, template and
    /// context, no weights.
    decoder: Option<Decoder>,
    tokenizer: std::sync::Arc<Tokenizer>,
    chat: Option<ChatTemplate>,
    eos: Vec<u32>,
    info: ModelInfo,
    decode: DecodeOptions,
    /// What each slot of the decoder's key/value cache holds from the last
    /// call there; slot 0 serves calls one at a time.
    caches: Vec<generate::CacheState>,
}

/// The context used when the user does not ask for more (`--max-context`),
/// with an f32 cache: long articles are chunked to fit it. The key/value
/// cache grows with it (about 2.4 GB at 8K positions for a 4B model in
/// f32), and summaries of 8K-token chunks are better than of whole books at
/// once. An f16 cache (the default for quantized weights) holds twice the
/// positions in the same memory, so its default is twice this; a Q8_0 one
/// (`--cache-type q8_0`) 30,720.
const DEFAULT_CONTEXT_CAP: usize = 8192;

/// Text of a prompt tokenized in one go, with the byte offsets of its
/// breaks.
struct Segment {
    text: String,
    /// Read special-token strings as plain text.
    literal: bool,
    marks: Vec<usize>,
}

impl Llm {
    /// Loads weights, tokenizer, chat template and stop tokens.
    pub fn load(files: &ModelFiles, opts: &LoadOptions) -> Result<Self> {
        Self::load_with(files, opts, true)
    }

    /// Loads what measuring prompts takes (tokenizer, chat template, stop
    /// tokens, context length) and no weights: enough to plan a run
    /// exactly, in a fraction of the time and memory. It cannot generate.
    pub fn load_for_planning(files: &ModelFiles, opts: &LoadOptions) -> Result<Self> {
        Self::load_with(files, opts, false)
    }

    fn load_with(files: &ModelFiles, opts: &LoadOptions, with_weights: bool) -> Result<Self> {
        let start = Instant::now();
        // Planning reads no weights, and needs no GPU.
        let device = match with_weights {
            true => opts.device.open()?,
            false => Device::Cpu,
        };
        let tok_config = read_json_opt(files.tokenizer_config.as_deref())?;
        let gen_config = read_json_opt(files.generation_config.as_deref())?;
        // Whether the matrices are f32 in memory, which gives an f32 cache
        // by default (see `CacheType`): from the files, not the device,
        // so that a plan and its run agree.
        let (mut weights, mut config, gguf_meta, format, f32_weights) = match &files.weights {
            WeightsFormat::Safetensors(paths) => {
                let cfg_path = files
                    .config
                    .as_ref()
                    .ok_or_else(|| Error::ModelFileMissing {
                        path: paths[0].parent().unwrap_or(Path::new(".")).to_path_buf(),
                        what: "config.json".into(),
                    })?;
                let json = read_json(cfg_path)?;
                let cfg = DecoderConfig::from_hf_json(&json)
                    .with_context(|| format!("in {}", cfg_path.display()))?;
                let w = match with_weights {
                    true => Some(Weights::safetensors(paths, &device)?.quantized(opts.quantize)),
                    false => None,
                };
                let format = match opts.quantize {
                    Some(q) => {
                        format!("safetensors, {} in memory", format!("{q:?}").to_lowercase())
                    }
                    None => "safetensors".to_string(),
                };
                (w, cfg, None, format, opts.quantize.is_none())
            }
            WeightsFormat::Gguf(path) => {
                let file = weights::GgufFile::open(path)?;
                let content = &file.content;
                let names: Vec<&str> = content.tensor_infos.keys().map(String::as_str).collect();
                let cfg = DecoderConfig::from_gguf(&content.metadata, &names)
                    .with_context(|| format!("in {}", path.display()))?;
                let format = format!("gguf {}", gguf_weight_type(content));
                let f32_weights = content
                    .tensor_infos
                    .get(&weights::gguf_name(weights::Role::Q, 0))
                    .is_some_and(|t| t.ggml_dtype == candle_core::quantized::GgmlDType::F32);
                let meta = content.metadata.clone();
                let w = match with_weights {
                    true => Some(Weights::gguf(file, &device)?),
                    false => None,
                };
                (w, cfg, Some(meta), format, f32_weights)
            }
        };
        let tokenizer = match (&files.tokenizer, &gguf_meta, &files.weights) {
            (Some(path), _, _) => Tokenizer::from_file(path)?,
            (None, Some(meta), WeightsFormat::Gguf(path)) => Tokenizer::from_gguf(meta, path)?,
            _ => {
                return Err(Error::model(format!("{}: no tokenizer.json", files.id)).into());
            }
        };
        if let Some(weights) = weights.as_mut().filter(|w| w.has_name("rope_freqs.weight")) {
            if gguf_meta.is_some() {
                let f = weights
                    .dense_by_name("rope_freqs.weight")?
                    .to_vec1::<f32>()?;
                config.rope_freq_factors = Some(f);
            }
        }
        let cache = opts.cache.unwrap_or(match f32_weights {
            true => CacheType::F32,
            false => CacheType::F16,
        });
        let context_length =
            effective_context(config.max_position_embeddings, opts.max_context, cache);
        // On the CPU, the cache the context was sized for. A GPU keeps half
        // precision matrices as they are and, unless asked, the cache their
        // products give (f16 beside them), as before `--cache-type`.
        let cache_kept = match device.is_cpu() {
            true => Some(cache),
            false => opts.cache,
        };
        let eos = stop_tokens(
            &tokenizer,
            tok_config.as_ref(),
            gen_config.as_ref(),
            gguf_meta.as_ref(),
        );
        if eos.is_empty() {
            return Err(Error::model(format!(
                "{}: no end-of-sequence token found (generation_config.json `eos_token_id` or tokenizer_config.json `eos_token`)",
                files.id
            ))
            .into());
        }
        let chat = chat_template(files, &tokenizer, tok_config.as_ref(), gguf_meta.as_ref())?;
        let arch = config.arch.name();
        let decoder = match weights.as_mut() {
            Some(w) => Some(
                Decoder::load(w, &config, context_length, cache_kept, &device)
                    .with_context(|| format!("cannot load model {}", files.id))?,
            ),
            None => None,
        };
        Ok(Llm {
            decoder,
            tokenizer: std::sync::Arc::new(tokenizer),
            chat,
            eos,
            info: ModelInfo {
                id: files.id.clone(),
                revision: snapshot_of(
                    files
                        .tokenizer
                        .as_deref()
                        .unwrap_or(&files.weights.paths()[0]),
                ),
                architecture: arch,
                format,
                context_length,
                device: device::name(&device),
                load_secs: start.elapsed().as_secs_f64(),
                files: files.all(),
            },
            decode: DecodeOptions {
                sampling: None,
                repeat_guard: true,
                beam: None,
                parallel: 1,
            },
            caches: vec![generate::CacheState::default()],
        })
    }

    /// Sets sampling and the repeat guard for later completions.
    pub fn set_decode(&mut self, decode: DecodeOptions) {
        self.decode = decode;
    }

    /// Metadata for outputs.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Ids that end a reply.
    pub fn eos(&self) -> &[u32] {
        &self.eos
    }

    /// The prompt the chat template makes of `messages`.
    pub fn render(&self, messages: &[Message]) -> Result<String> {
        match &self.chat {
            Some(t) => t.render(messages),
            None => Err(self.no_template()),
        }
    }

    /// Token ids of a conversation whose contents are untrusted (articles):
    /// the template's own special tokens count, strings in the contents
    /// that look like special tokens are plain text.
    pub fn encode_chat(&self, messages: &[Message]) -> Result<Vec<u32>> {
        Ok(self.encode_prompt(messages)?.0)
    }

    /// [`Llm::encode_chat`]'s ids, with the [`generate::Prompt`] breaks
    /// where prompts of a run part: where each message after the first
    /// starts, and where a message's lead ends.
    pub fn encode_prompt(&self, messages: &[Message]) -> Result<(Vec<u32>, Vec<usize>)> {
        let template = self.chat.as_ref().ok_or_else(|| self.no_template())?;
        let Some(parts) = template.render_parts(messages)? else {
            // The template rewrites contents: tokenize the whole rendering.
            let ids = self.tokenizer.encode(&template.render(messages)?, false)?;
            return Ok((ids, Vec::new()));
        };
        // Contents free of special-token strings are tokenized together
        // with the template around them, as the whole rendering is: a
        // tokenizer without a pre-tokenizer (Gemma's) merges across the
        // seams. Only a content that holds such a string is tokenized on
        // its own, as plain text.
        let mut segments: Vec<Segment> = Vec::new();
        for part in parts {
            let (text, literal, marks) = match part {
                Part::Template(t) => (t, false, Vec::new()),
                Part::Content(i) => {
                    let m = &messages[i];
                    let mut marks = Vec::new();
                    if i > 0 {
                        marks.push(0);
                    }
                    if m.lead > 0 {
                        marks.push(m.lead);
                    }
                    let literal = self.tokenizer.holds_special_tokens(&m.content);
                    (m.content.clone(), literal, marks)
                }
            };
            match segments.last_mut() {
                Some(last) if !last.literal && !literal => {
                    let at = last.text.len();
                    last.marks.extend(marks.iter().map(|m| at + m));
                    last.text.push_str(&text);
                }
                _ => segments.push(Segment {
                    text,
                    literal,
                    marks,
                }),
            }
        }
        let mut ids = Vec::new();
        let mut breaks = Vec::new();
        for seg in segments {
            let after = self.tokenizer.ends_with_token(&ids);
            let encode = |text: &str| match seg.literal {
                true => self.tokenizer.encode_literal_part(text, after),
                false => self.tokenizer.encode_part(text, false, after),
            };
            let seg_ids = encode(&seg.text)?;
            for &m in &seg.marks {
                // The tokens before the mark: as far as the whole segment
                // starts with the tokens of its text up to there.
                let before = if m == 0 {
                    0
                } else {
                    let head = encode(&seg.text[..m])?;
                    head.iter()
                        .zip(&seg_ids)
                        .take_while(|(a, b)| a == b)
                        .count()
                };
                breaks.push(ids.len() + before);
            }
            ids.extend(seg_ids);
        }
        breaks.dedup();
        breaks.retain(|&b| b > 0);
        Ok((ids, breaks))
    }

    fn no_template(&self) -> anyhow::Error {
        Error::model(format!(
            "{}: the model has no chat template (tokenizer_config.json `chat_template`, chat_template.jinja or GGUF `tokenizer.chat_template`)",
            self.info.id
        ))
        .into()
    }

    /// Greedy or sampled continuation of `prompt` ids.
    pub fn generate(
        &mut self,
        prompt: generate::Prompt,
        params: &GenParams,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Generated> {
        self.check_room(prompt.ids.len(), params.max_new_tokens)?;
        let (decoder, caches) = self.decoder_and_caches()?;
        generate::generate(decoder, &mut caches[0], prompt, params, on_token)
    }

    /// What [`generate::generate_unlooped`] gives each of `calls` alone, up
    /// to `width` of them decoded together ([`parallel::generate_all`]) in
    /// the memory [`Llm::room`] allows.
    pub fn generate_all(
        &mut self,
        calls: &[parallel::Call],
        width: usize,
    ) -> Result<Vec<(Generated, bool)>> {
        for c in calls {
            self.check_room(c.prompt.ids.len(), c.params.max_new_tokens)?;
        }
        let owned = calls.iter().map(parallel::Owned::of).collect();
        self.generate_owned(owned, width, &mut parallel::Unheard)
    }

    /// [`Llm::generate_all`] of calls already checked to fit the context.
    fn generate_owned(
        &mut self,
        calls: Vec<parallel::Owned>,
        width: usize,
        progress: &mut dyn parallel::Progress,
    ) -> Result<Vec<(Generated, bool)>> {
        // A model on a GPU decodes one call at a time: its products are
        // not made to add up each row alike whatever the rows beside it.
        let width = match self.decoder.as_ref().is_some_and(|d| d.on_cpu()) {
            true => width,
            false => 1,
        };
        let room = self.room(width);
        let (decoder, caches) = self.decoder_and_caches()?;
        parallel::generate_watched(decoder, caches, calls, room, progress)
    }

    /// `width` calls at a time, whose caches take together at most half
    /// the memory the system has free, and never less than one call at the
    /// model's context: calls that are long for the memory wait for room
    /// rather than take it.
    fn room(&self, width: usize) -> parallel::Room {
        let per_position = self
            .decoder
            .as_ref()
            .map_or(0, |d| d.cache_bytes_per_position())
            .max(1);
        let ctx = self.info.context_length;
        let most = ctx.saturating_mul(width);
        let positions = match device::available_memory() {
            Some(free) => (free / 2 / per_position as u64)
                .try_into()
                .unwrap_or(usize::MAX)
                .clamp(ctx, most.max(ctx)),
            None => most,
        };
        parallel::Room { width, positions }
    }

    /// The settings of a chat call of at most `max_new_tokens`.
    fn params(&self, max_new_tokens: usize) -> GenParams {
        GenParams {
            max_new_tokens,
            eos: self.eos.clone(),
            sampling: self.decode.sampling,
            repeat_guard: self.decode.repeat_guard,
            no_repeat_ngram: None,
            beam: self.decode.beam,
        }
    }

    /// [`Llm::logits_along`] for several prompts and continuations at
    /// once: each prompt computed alone in a slot of its own, then one
    /// forced token of every read that still has one per step, all in one
    /// pass ([`decoder::Decoder::forward_slots`]). Each read's logits are
    /// the bits [`Llm::logits_along`] gives it.
    pub fn logits_along_all(&mut self, reads: &[(&[u32], &[u32])]) -> Result<Vec<Vec<Vec<f32>>>> {
        for (prompt, forced) in reads {
            anyhow::ensure!(!prompt.is_empty(), "cannot read along an empty prompt");
            self.check_room(prompt.len(), forced.len())?;
        }
        let (decoder, caches) = self.decoder_and_caches()?;
        // Every slot is to hold other ids than its state says.
        caches.iter_mut().for_each(|c| *c = Default::default());
        let mut out = Vec::with_capacity(reads.len());
        for (slot, (prompt, _)) in reads.iter().enumerate() {
            decoder.select(slot);
            decoder.rewind(0)?;
            out.push(vec![decoder.forward(prompt, 0)?]);
        }
        for step in 0.. {
            let steps: Vec<(usize, u32, usize)> = reads
                .iter()
                .enumerate()
                .filter_map(|(slot, (prompt, forced))| {
                    forced.get(step).map(|&t| (slot, t, prompt.len() + step))
                })
                .collect();
            if steps.is_empty() {
                break;
            }
            for (&(slot, ..), logits) in steps.iter().zip(decoder.forward_slots(&steps)?) {
                out[slot].push(logits);
            }
        }
        decoder.select(0);
        Ok(out)
    }

    /// Next-token logits after `prompt`, then after each token of `forced`
    /// in turn: the model read along a given continuation (another
    /// implementation's), to compare logits step by step.
    pub fn logits_along(&mut self, prompt: &[u32], forced: &[u32]) -> Result<Vec<Vec<f32>>> {
        anyhow::ensure!(!prompt.is_empty(), "cannot read along an empty prompt");
        self.check_room(prompt.len(), forced.len())?;
        let (decoder, caches) = self.decoder_and_caches()?;
        caches[0] = generate::CacheState::default();
        decoder.rewind(0)?;
        let mut out = Vec::with_capacity(forced.len() + 1);
        out.push(decoder.forward(prompt, 0)?);
        for (i, &t) in forced.iter().enumerate() {
            out.push(decoder.forward(&[t], prompt.len() + i)?);
        }
        Ok(out)
    }

    /// Fails when a prompt and its answer cannot fit the context.
    fn check_room(&self, prompt: usize, answer: usize) -> Result<()> {
        let room = self.info.context_length;
        if prompt + answer > room {
            return Err(Error::Context(format!(
                "prompt of {prompt} tokens plus {answer} new tokens does not fit the context of {room} tokens"
            ))
            .into());
        }
        Ok(())
    }

    /// The decoder, which a model loaded for planning lacks, with slot 0
    /// (calls one at a time) selected, and what each slot of its cache
    /// holds.
    fn decoder_and_caches(&mut self) -> Result<(&mut Decoder, &mut Vec<generate::CacheState>)> {
        match self.decoder.as_mut() {
            Some(d) => {
                d.select(0);
                Ok((d, &mut self.caches))
            }
            None => anyhow::bail!(
                "{}: loaded for planning only, without weights",
                self.info.id
            ),
        }
    }
}

impl ChatModel for Llm {
    fn context_length(&self) -> usize {
        self.info.context_length
    }

    fn writes_translation_prompt(&self) -> bool {
        self.chat
            .as_ref()
            .is_some_and(ChatTemplate::writes_translation_prompt)
    }

    fn count_tokens(&self, text: &str) -> Result<usize> {
        self.tokenizer.count(text)
    }

    fn prompt_tokens(&self, messages: &[Message]) -> Result<usize> {
        Ok(self.encode_chat(messages)?.len())
    }

    fn truncate_to_tokens(&self, text: &str, max: usize) -> Result<String> {
        let ids = self.tokenizer.encode(text, false)?;
        self.tokenizer.decode(&ids[..ids.len().min(max)])
    }

    fn complete(&mut self, messages: &[Message], max_new_tokens: usize) -> Result<Completion> {
        Ok(self
            .complete_all(&[(messages.to_vec(), max_new_tokens)])?
            .remove(0))
    }

    fn decodes_together(&self) -> bool {
        self.together_width() > 1
    }
    fn complete_all_watched(
        &mut self,
        calls: &[(Vec<Message>, usize)],
        watch: &mut dyn Watch,
    ) -> Result<Vec<Completion>> {
        let owned = self.prepare(calls)?;
        let lens: Vec<usize> = owned.iter().map(|c| c.ids.len()).collect();
        // The tokenizer is shared (`Arc`) so that answers can be told
        // while the decoder is busy.
        let tokenizer = self.tokenizer.clone();
        let mut heard = Heard {
            tokenizer: &tokenizer,
            lens: &lens,
            watch,
            failed: None,
        };
        let answers = self.generate_owned(owned, self.decode.parallel, &mut heard)?;
        if let Some(e) = heard.failed {
            return Err(e);
        }
        self.completions(&lens, answers)
    }
}

/// A [`Watch`] as [`parallel::generate_watched`] reports to it: ids made
/// text, answers made completions.
struct Heard<'a> {
    tokenizer: &'a Tokenizer,
    lens: &'a [usize],
    watch: &'a mut dyn Watch,
    /// The first answer that could not be made text.
    failed: Option<anyhow::Error>,
}

impl parallel::Progress for Heard<'_> {
    fn decoded(&mut self, index: usize, ids: &[u32]) {
        if !self.watch.wants_tokens() {
            return;
        }
        let text = match self.watch.wants_text(index) {
            true => self.tokenizer.decode(ids).ok().map(|t| strip_think(&t)),
            false => None,
        };
        self.watch.decoded(index, ids.len(), text.as_deref());
    }

    fn answered(&mut self, index: usize, answer: &parallel::Answer) {
        match completion(self.tokenizer, self.lens[index], answer) {
            Ok(c) => self.watch.answered(index, &c),
            Err(e) => {
                self.failed.get_or_insert(e);
            }
        }
    }
}

impl Llm {
    /// The reply to a call of a prompt `prompt_tokens` long, from its
    /// answer.
    pub(crate) fn completion(
        &self,
        prompt_tokens: usize,
        answer: &parallel::Answer,
    ) -> Result<Completion> {
        completion(&self.tokenizer, prompt_tokens, answer)
    }
}

/// The reply to a call of a prompt `prompt_tokens` long, from its answer.
fn completion(
    tokenizer: &Tokenizer,
    prompt_tokens: usize,
    (g, looped): &parallel::Answer,
) -> Result<Completion> {
    let text = strip_think(&tokenizer.decode(&g.ids)?);
    Ok(Completion {
        text: text.trim().to_string(),
        prompt_tokens,
        reused_tokens: g.reused,
        generated_tokens: g.ids.len(),
        stop: g.stop,
        looped: *looped,
        prefill_secs: g.prefill_secs,
        decode_secs: g.decode_secs,
        alone: g.alone,
    })
}

impl Llm {
    /// Calls decoded at once: `--parallel` on the CPU; one at a time on a
    /// GPU, whose products are not made to add up each row alike whatever
    /// the rows beside it, and with beam search.
    pub(crate) fn together_width(&self) -> usize {
        let on_cpu = self.decoder.as_ref().is_some_and(|d| d.on_cpu());
        match on_cpu && self.decode.beam.is_none() {
            true => self.decode.parallel.max(1),
            false => 1,
        }
    }

    /// Chat calls as prompts and settings, each checked to fit the context.
    fn prepare(&self, calls: &[(Vec<Message>, usize)]) -> Result<Vec<parallel::Owned>> {
        calls
            .iter()
            .map(|(messages, max)| {
                let (ids, breaks) = self.encode_prompt(messages)?;
                anyhow::ensure!(!ids.is_empty(), "cannot generate from an empty prompt");
                self.check_room(ids.len(), *max)?;
                Ok(parallel::Owned {
                    ids,
                    breaks,
                    params: self.params(*max),
                })
            })
            .collect()
    }

    /// The replies to calls of prompts `prompt_lens` long, from their
    /// answers.
    fn completions(
        &self,
        prompt_lens: &[usize],
        answers: Vec<parallel::Answer>,
    ) -> Result<Vec<Completion>> {
        answers
            .iter()
            .zip(prompt_lens)
            .map(|(a, &prompt_tokens)| completion(&self.tokenizer, prompt_tokens, a))
            .collect()
    }
}

/// Removes reasoning blocks: `<think>…</think>`, and an unclosed `<think>`
/// with everything after it (a reply cut at its length cap mid-thought).
pub fn strip_think(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        match rest.find("<think>") {
            Some(open) => {
                out.push_str(&rest[..open]);
                match rest[open..].find("</think>") {
                    Some(close) => rest = &rest[open + close + "</think>".len()..],
                    None => break,
                }
            }
            None => {
                out.push_str(rest);
                break;
            }
        }
    }
    // A reply may also begin inside a thought whose opening tag was in the prompt.
    match out.find("</think>") {
        Some(close) => out[close + "</think>".len()..].to_string(),
        None => out,
    }
}

/// The context a run is loaded for: the user's, within the model's; by
/// default the model's, within what an f32 cache of
/// [`DEFAULT_CONTEXT_CAP`] positions takes, rounded down to a multiple of
/// 1,024 positions (30,720 for a Q8_0 cache).
fn effective_context(model: usize, user: Option<usize>, cache: CacheType) -> usize {
    let positions = DEFAULT_CONTEXT_CAP * CacheType::F32.block_bytes() / cache.block_bytes();
    let cap = model.min(positions / 1024 * 1024);
    match user {
        Some(u) => u.min(model),
        None => cap,
    }
}

fn read_json_opt(path: Option<&Path>) -> Result<Option<Value>> {
    path.map(read_json).transpose()
}

/// A special token as tokenizer_config.json spells it: a string or `{"content": …}`.
fn special_token(config: Option<&Value>, key: &str) -> Option<String> {
    let v = config?.get(key)?;
    v.as_str()
        .or_else(|| v.get("content").and_then(Value::as_str))
        .map(str::to_string)
}

/// Every id that ends a reply: generation_config's list (or single id),
/// the tokenizer's EOS token, and GGUF's EOS/EOT ids.
fn stop_tokens(
    tok: &Tokenizer,
    tok_config: Option<&Value>,
    gen_config: Option<&Value>,
    gguf: Option<&std::collections::HashMap<String, gguf_file::Value>>,
) -> Vec<u32> {
    let mut ids = Vec::new();
    if let Some(v) = gen_config.and_then(|g| g.get("eos_token_id")) {
        match v {
            Value::Array(a) => ids.extend(a.iter().filter_map(Value::as_u64).map(|x| x as u32)),
            v => ids.extend(v.as_u64().map(|x| x as u32)),
        }
    }
    if let Some(id) = special_token(tok_config, "eos_token").and_then(|t| tok.token_id(&t)) {
        ids.push(id);
    }
    if let Some(meta) = gguf {
        for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
            if let Some(id) = meta.get(key).and_then(|v| v.to_u32().ok()) {
                ids.push(id);
            }
        }
        // A bare GGUF file often names only one of the tokens that end a
        // turn; llama.cpp also stops on the others it knows by name.
        if tok_config.is_none() && gen_config.is_none() {
            ids.extend(
                gguf_vocab::END_OF_TURN_TOKENS
                    .iter()
                    .filter_map(|t| tok.token_id(t)),
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(*id));
    ids
}

fn chat_template(
    files: &ModelFiles,
    tok: &Tokenizer,
    tok_config: Option<&Value>,
    gguf: Option<&std::collections::HashMap<String, gguf_file::Value>>,
) -> Result<Option<ChatTemplate>> {
    let in_config = tok_config
        .and_then(|c| c.get("chat_template"))
        .and_then(|t| match t {
            Value::String(s) => Some(s.clone()),
            // A list of named templates: the default one is the chat template.
            Value::Array(list) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        });
    // Each source with the file it comes from, which errors name.
    let from_config = in_config.zip(files.tokenizer_config.clone());
    let from_file = match &files.chat_template {
        Some(p) => Some((
            crate::bounded::read_to_string(p, crate::bounded::TEXT)?,
            p.clone(),
        )),
        None => None,
    };
    let from_gguf = gguf
        .and_then(|m| m.get("tokenizer.chat_template"))
        .and_then(|v| v.to_string().ok())
        .cloned()
        .zip(files.weights.paths().first().cloned());
    let Some((source, origin)) = from_config.or(from_file).or(from_gguf) else {
        return Ok(None);
    };
    // Without a tokenizer_config.json, a GGUF's own ids name the tokens.
    let from_gguf_id = |key: &str| -> Option<String> {
        let id = gguf?.get(key)?.to_u32().ok()?;
        tok.id_to_token(id)
    };
    let (bos, eos) = match tok_config {
        Some(_) => (
            special_token(tok_config, "bos_token"),
            special_token(tok_config, "eos_token"),
        ),
        None => (
            from_gguf_id("tokenizer.ggml.bos_token_id"),
            from_gguf_id("tokenizer.ggml.eos_token_id"),
        ),
    };
    let (bos, eos) = (bos.unwrap_or_default(), eos.unwrap_or_default());
    let template = ChatTemplate::new(&origin.display().to_string(), &source, &bos, &eos)?;
    Ok(Some(template))
}

/// The most common weight type of a GGUF's matrices, for display.
fn gguf_weight_type(content: &gguf_file::Content) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for info in content.tensor_infos.values() {
        if info.shape.rank() == 2 {
            *counts
                .entry(format!("{:?}", info.ggml_dtype))
                .or_insert(0usize) += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(t, _)| t)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn think_blocks_are_removed() {
        assert_eq!(strip_think("<think>\n\n</think>\n\nHallo"), "\n\nHallo");
        assert_eq!(strip_think("a<think>x</think>b<think>y</think>c"), "abc");
        assert_eq!(strip_think("ok<think>cut off"), "ok");
        assert_eq!(strip_think("inner</think>answer"), "answer");
        assert_eq!(strip_think("plain"), "plain");
    }

    #[test]
    fn context_is_capped_by_model_and_user() {
        let f32 = CacheType::F32;
        assert_eq!(effective_context(4096, None, f32), 4096);
        assert_eq!(effective_context(262_144, None, f32), DEFAULT_CONTEXT_CAP);
        assert_eq!(effective_context(4096, Some(256), f32), 256);
        assert_eq!(effective_context(4096, Some(100_000), f32), 4096);
        // An f16 cache holds twice the positions in the same memory.
        let f16 = CacheType::F16;
        assert_eq!(
            effective_context(262_144, None, f16),
            2 * DEFAULT_CONTEXT_CAP
        );
        assert_eq!(effective_context(8192, None, f16), 8192);
        assert_eq!(effective_context(262_144, Some(1000), f16), 1000);
        // A Q8_0 cache takes 34 bytes per 32 values, against 128 for f32.
        let q8 = CacheType::Q8_0;
        assert_eq!(effective_context(262_144, None, q8), 30 * 1024);
        assert_eq!(effective_context(32_768, Some(32_768), q8), 32_768);
    }
}
