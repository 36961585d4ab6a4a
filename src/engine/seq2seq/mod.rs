//! Dedicated translation models: encoder-decoders that take source text and
//! return its translation, one sentence per input, many sentences per batch.
//!
//! Unlike the chat models there is no prompt: the task layer hands over
//! sentences and gets sentences back.

pub mod marian;
pub mod vocab;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::engine::generate::StopReason;
use crate::engine::{read_json, snapshot_of, ModelInfo};
use crate::error::Error;
use marian::{Marian, MarianConfig};
use vocab::MarianVocab;

/// Feed-forward activations used by the supported configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    Relu,
    GeluErf,
    GeluTanh,
}

impl Activation {
    /// The `activation_function` / `dense_act_fn` names of `transformers`.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "swish" | "silu" => Activation::Silu,
            "relu" => Activation::Relu,
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            other => {
                return Err(
                    Error::model(format!("unsupported activation function `{other}`")).into(),
                )
            }
        })
    }

    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Silu => candle_nn::ops::silu(x)?,
            Activation::Relu => x.relu()?,
            Activation::GeluErf => x.gelu_erf()?,
            Activation::GeluTanh => x.gelu()?,
        })
    }
}

/// An encoder-decoder network, driven one decoder step at a time.
pub trait EncoderDecoder {
    /// What the decoder keeps between steps for one batch.
    type State;
    /// Positions the decoder can use.
    fn max_positions(&self) -> usize;
    /// Runs the encoder on (B, S) ids with a (B, S) mask of 1 (token) / 0 (padding).
    fn encode(&self, ids: &Tensor, mask: &Tensor) -> Result<Self::State>;
    /// Logits (B, V) for the next token after `tokens` (B).
    fn step(&self, state: &mut Self::State, tokens: &Tensor) -> Result<Tensor>;
    /// Keeps only the batch rows `rows` (sentences still being translated).
    fn retain(&self, state: &mut Self::State, rows: &[usize]) -> Result<()>;
}

/// Decoding settings of a model, from its config files.
#[derive(Debug, Clone)]
pub struct Special {
    pub pad: u32,
    pub eos: u32,
    pub start: u32,
    /// Forced at the last allowed step, as `transformers` does.
    pub forced_eos: Option<u32>,
    /// Never generated (Marian: the pad id).
    pub banned: Vec<u32>,
}

/// One sentence's output ids (ending with EOS when one was produced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub ids: Vec<u32>,
    pub stop: StopReason,
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
) -> Result<Vec<Output>> {
    let b = inputs.len();
    if b == 0 {
        return Ok(Vec::new());
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
    let mut state = model.encode(&ids, &mask)?;

    let limit = model.max_positions();
    let caps: Vec<usize> = max_new.iter().map(|&m| m.min(limit).max(1)).collect();
    let mut outputs: Vec<Output> = (0..b)
        .map(|_| Output {
            ids: Vec::new(),
            stop: StopReason::Length,
        })
        .collect();
    let mut active: Vec<usize> = (0..b).collect();
    let mut tokens = vec![special.start; b];
    for step in 0.. {
        let input = Tensor::from_vec(tokens.clone(), tokens.len(), device)?;
        let logits = model.step(&mut state, &input)?.to_vec2::<f32>()?;
        let mut keep = Vec::with_capacity(active.len());
        let mut next = Vec::with_capacity(active.len());
        for (row, (&sentence, mut l)) in active.iter().zip(logits).enumerate() {
            for &banned in &special.banned {
                if let Some(x) = l.get_mut(banned as usize) {
                    *x = f32::NEG_INFINITY;
                }
            }
            let last = step + 1 >= caps[sentence];
            let token = match special.forced_eos {
                Some(eos) if last => eos,
                _ => argmax(&l),
            };
            let out = &mut outputs[sentence];
            out.ids.push(token);
            if token == special.eos && !(last && special.forced_eos.is_some()) {
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
            model.retain(&mut state, &keep)?;
            active = keep.iter().map(|&r| active[r]).collect();
        }
        tokens = next;
    }
    Ok(outputs)
}

/// Index of the first largest value, as `torch.argmax` picks it.
fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// The files of a Marian model as Helsinki-NLP publishes them.
#[derive(Debug, Clone)]
pub struct MarianFiles {
    pub config: PathBuf,
    pub weights: Vec<PathBuf>,
    pub source_spm: PathBuf,
    pub vocab: PathBuf,
    pub generation_config: Option<PathBuf>,
}

impl MarianFiles {
    /// The files in a local folder.
    pub fn in_dir(dir: &Path) -> Result<Self> {
        let need = |name: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::ModelFileMissing {
                    path: dir.to_path_buf(),
                    what: name.to_string(),
                }
                .into())
            }
        };
        let gen = dir.join("generation_config.json");
        Ok(MarianFiles {
            config: need("config.json")?,
            weights: vec![need("model.safetensors")?],
            source_spm: need("source.spm")?,
            vocab: need("vocab.json")?,
            generation_config: gen.is_file().then_some(gen),
        })
    }
}

/// A translation model ready to run.
pub struct Seq2Seq {
    model: Marian,
    vocab: MarianVocab,
    special: Special,
    device: Device,
    info: ModelInfo,
}

impl Seq2Seq {
    /// Loads a Marian model in f32.
    pub fn load_marian(id: &str, files: &MarianFiles) -> Result<Self> {
        let start = Instant::now();
        let device = Device::Cpu;
        let json = read_json(&files.config)?;
        let config = MarianConfig::from_json(&json)
            .with_context(|| format!("in {}", files.config.display()))?;
        let vocab = MarianVocab::load(&files.source_spm, &files.vocab)?;
        if vocab.len() > config.vocab_size {
            return Err(Error::model(format!(
                "{}: {} entries, but the model has {}",
                files.vocab.display(),
                vocab.len(),
                config.vocab_size
            ))
            .into());
        }
        // SAFETY: read-only maps of files nobody should truncate while we run.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&files.weights, DType::F32, &device) }
                .with_context(|| format!("cannot read the weights of {id}"))?;
        let gen = match &files.generation_config {
            Some(p) => Some(read_json(p)?),
            None => None,
        };
        let banned = banned_ids(gen.as_ref().unwrap_or(&json), config.pad);
        let special = Special {
            pad: config.pad,
            eos: config.eos,
            start: config.decoder_start,
            forced_eos: config.forced_eos,
            banned,
        };
        let max_positions = config.max_positions;
        let model = Marian::load(vb, config).with_context(|| format!("cannot load model {id}"))?;
        Ok(Seq2Seq {
            model,
            vocab,
            special,
            device,
            info: ModelInfo {
                id: id.to_string(),
                revision: snapshot_of(&files.config),
                architecture: "marian",
                format: "safetensors".into(),
                context_length: max_positions,
                load_secs: start.elapsed().as_secs_f64(),
            },
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn vocab(&self) -> &MarianVocab {
        &self.vocab
    }

    pub fn special(&self) -> &Special {
        &self.special
    }

    /// Greedy outputs for already-encoded sentences, as one batch.
    pub fn generate_ids(&self, inputs: &[Vec<u32>], max_new: &[usize]) -> Result<Vec<Output>> {
        greedy(&self.model, inputs, max_new, &self.special, &self.device)
    }

    /// Logits of the first decoder step for one encoded sentence.
    pub fn first_logits(&self, input: &[u32]) -> Result<Vec<f32>> {
        let ids = Tensor::from_vec(input.to_vec(), (1, input.len()), &self.device)?;
        let mask = Tensor::ones((1, input.len()), DType::U32, &self.device)?;
        let mut state = self.model.encode(&ids, &mask)?;
        let start = Tensor::from_vec(vec![self.special.start], 1, &self.device)?;
        Ok(self.model.step(&mut state, &start)?.squeeze(0)?.to_vec1()?)
    }
}

/// Ids the model must never produce: `bad_words_ids` entries of one token,
/// and the pad id, which Marian's decoder starts from but never emits.
fn banned_ids(config: &serde_json::Value, pad: u32) -> Vec<u32> {
    let mut out = vec![pad];
    if let Some(list) = config.get("bad_words_ids").and_then(|v| v.as_array()) {
        for seq in list {
            if let Some([single]) = seq.as_array().map(Vec::as_slice) {
                if let Some(id) = single.as_u64() {
                    out.push(id as u32);
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}
