//! Dedicated translation models: encoder-decoders that take source text and
//! return its translation, one sentence per input, many sentences per batch.
//!
//! Unlike the chat models there is no prompt: the task layer hands over
//! sentences and gets sentences back.

pub mod linear;
pub mod marian;
pub mod t5;
pub mod vocab;

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};

use crate::engine::beam::{Beam, EarlyStopping, Rules, Search};
use crate::engine::device::DeviceChoice;
use crate::engine::generate::translation_room;
use crate::engine::stop::StopReason;
use crate::engine::ModelInfo;
use crate::error::Error;
use crate::hub::seq2seq_files::{Family, Seq2SeqFiles};
use crate::hub::{read_json, snapshot_of};
use candle_core::quantized::GgmlDType;
use linear::Weights;
use marian::{Marian, MarianConfig};
use t5::{T5Config, T5};
use vocab::{MarianVocab, T5Vocab};

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
    /// Positions the decoder can use.
    fn max_positions(&self) -> usize;
    /// Runs the encoder on (B, S) ids with a (B, S) mask of 1 (token) / 0 (padding).
    fn encode(&self, ids: &Tensor, mask: &Tensor) -> Result<DecoderState>;
    /// Logits (B, V) for the next token after `tokens` (B).
    fn step(&self, state: &mut DecoderState, tokens: &Tensor) -> Result<Tensor>;
}

/// What the decoder keeps between steps for one batch.
pub struct DecoderState {
    /// The encoder output's keys and values for each decoder layer's
    /// cross-attention, computed once.
    pub(crate) cross: Vec<(Tensor, Tensor)>,
    /// Self-attention keys and values of the tokens so far, per layer.
    past: Vec<Option<(Tensor, Tensor)>>,
    /// (B, 1, 1, S): 0 for source tokens, -inf for padding.
    pub(crate) source_mask: Tensor,
    /// Decoder positions used so far.
    pub(crate) pos: usize,
}

impl DecoderState {
    pub(crate) fn new(cross: Vec<(Tensor, Tensor)>, source_mask: Tensor) -> Self {
        DecoderState {
            past: vec![None; cross.len()],
            cross,
            source_mask,
            pos: 0,
        }
    }

    /// Adds this step's keys and values to layer `layer`'s cache and
    /// returns all of them.
    pub(crate) fn extend(
        &mut self,
        layer: usize,
        k: Tensor,
        v: Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (k, v) = match self.past[layer].take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        self.past[layer] = Some((k.clone(), v.clone()));
        Ok((k, v))
    }

    /// Keeps the batch rows `rows`, in that order: the sentences still
    /// being translated, or each beam's row copied from the beam it extends.
    fn retain(&mut self, rows: &[usize]) -> Result<()> {
        let idx = self.rows(rows)?;
        for (k, v) in self.cross.iter_mut() {
            *k = k.index_select(&idx, 0)?;
            *v = v.index_select(&idx, 0)?;
        }
        self.source_mask = self.source_mask.index_select(&idx, 0)?;
        self.reorder_past_by(&idx)
    }

    /// As [`DecoderState::retain`], for rows whose source is the same as
    /// before (beams of the same sentences): only the decoder's own cache
    /// moves.
    fn reorder_past(&mut self, rows: &[usize]) -> Result<()> {
        let idx = self.rows(rows)?;
        self.reorder_past_by(&idx)
    }

    fn reorder_past_by(&mut self, idx: &Tensor) -> Result<()> {
        for (k, v) in self.past.iter_mut().flatten() {
            *k = k.index_select(idx, 0)?;
            *v = v.index_select(idx, 0)?;
        }
        Ok(())
    }

    fn rows(&self, rows: &[usize]) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
            rows.len(),
            self.source_mask.device(),
        )?)
    }
}

/// (B, T, H·Dh) → (B, H, T, Dh).
pub(crate) fn split_heads(x: &Tensor, heads: usize, head_dim: usize) -> Result<Tensor> {
    let (b, t, _) = x.dims3()?;
    Ok(x.reshape((b, t, heads, head_dim))?
        .transpose(1, 2)?
        .contiguous()?)
}

/// (B, S) of 1/0 → additive (B, 1, 1, S) of 0/-inf.
pub(crate) fn additive_mask(mask: &Tensor) -> Result<Tensor> {
    let (b, s) = mask.dims2()?;
    let zeros = Tensor::zeros((b, s), DType::F32, mask.device())?;
    let neg = Tensor::full(f32::NEG_INFINITY, (b, s), mask.device())?;
    Ok(mask
        .ne(0u32)?
        .where_cond(&zeros, &neg)?
        .reshape((b, 1, 1, s))?)
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
    /// Beam search settings the model's generation config sets
    /// (`transformers` defaults: 1.0 and `false`).
    pub length_penalty: f32,
    pub early_stopping: EarlyStopping,
}

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
            let chosen = argmax(&l);
            let token = match special.forced_eos {
                Some(eos) if last => eos,
                _ => chosen,
            };
            let out = &mut outputs[sentence];
            out.ids.push(token);
            // An end the model chose itself, not one forced at the cap.
            if token == special.eos && chosen == special.eos {
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
    let rules = Rules {
        eos: &eos,
        banned: &special.banned,
        forced_eos: special.forced_eos,
    };
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

/// A model's vocabulary: text to ids and back.
pub enum Vocab {
    Marian(Box<MarianVocab>),
    T5(Box<T5Vocab>),
}

impl Vocab {
    /// Ids of `text` with the model's target-language token, if any
    /// (`>>deu<<` for multilingual Marian models, `<2de>` for MADLAD).
    pub fn encode(&self, text: &str, target: Option<&str>) -> Result<Vec<u32>> {
        match self {
            Vocab::Marian(v) => v.encode(text, target),
            Vocab::T5(v) => v.encode(text, target),
        }
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Vocab::Marian(v) => Ok(v.decode(ids)),
            Vocab::T5(v) => v.decode(ids),
        }
    }

    /// Whether the model knows the target token `token`.
    pub fn has(&self, token: &str) -> bool {
        match self {
            Vocab::Marian(v) => v.target_tokens().contains(&token),
            Vocab::T5(v) => v.has(token),
        }
    }
}

enum Net {
    Marian(Marian),
    T5(T5),
}

/// A translation model ready to run.
pub struct Seq2Seq {
    /// `None` when loaded for planning only: vocabulary and limits, no
    /// weights.
    net: Option<Net>,
    vocab: Vocab,
    special: Special,
    /// Beam search settings; greedy decoding when `None`.
    beam: Option<Beam>,
    device: Device,
    info: ModelInfo,
}

/// An integer of a model's `config.json`.
fn config_int(v: &serde_json::Value, key: &str) -> Result<usize> {
    v.get(key)
        .and_then(serde_json::Value::as_u64)
        .map(|x| x as usize)
        .ok_or_else(|| Error::model(format!("config.json has no `{key}`")).into())
}

/// A size in a model's `config.json`: a zero would divide by zero or build
/// empty layers, so it is refused.
fn config_size(v: &serde_json::Value, key: &str) -> Result<usize> {
    match config_int(v, key)? {
        0 => Err(Error::model(format!("config.json gives `{key}` as 0")).into()),
        n => Ok(n),
    }
}

impl Seq2Seq {
    /// Loads the model in f32, or with its matrices quantized to `quant`,
    /// on `device`.
    pub fn load(
        files: &Seq2SeqFiles,
        quant: Option<GgmlDType>,
        device: DeviceChoice,
    ) -> Result<Self> {
        Self::load_with(files, quant, Some(device))
    }

    /// Loads what planning a translation takes: the vocabulary, the target
    /// tokens and the model's limits; no weights are read.
    pub fn load_for_planning(files: &Seq2SeqFiles) -> Result<Self> {
        Self::load_with(files, None, None)
    }

    /// Loads the weights on `device` when given; without, only what
    /// planning takes.
    fn load_with(
        files: &Seq2SeqFiles,
        quant: Option<GgmlDType>,
        device: Option<DeviceChoice>,
    ) -> Result<Self> {
        let start = Instant::now();
        let id = files.id.as_str();
        let weights = device.is_some();
        let device = match device {
            Some(d) => d.open()?,
            None => Device::Cpu,
        };
        let json = read_json(&files.config)?;
        let gen = match &files.generation_config {
            Some(p) => Some(read_json(p)?),
            None => None,
        };
        let vb = match files.weights.as_slice() {
            _ if !weights => None,
            [one] if one.extension().is_some_and(|e| e == "gguf") => {
                Some(Weights::gguf(one, quant, &device)?)
            }
            paths => Some(Weights::safetensors(paths, quant, &device)?),
        };
        let cannot = || format!("cannot load model {id}");
        let in_config = |e: anyhow::Error| e.context(format!("in {}", files.config.display()));
        let (net, vocab, special, positions) = match files.family {
            Family::Marian => {
                let config = MarianConfig::from_json(&json).map_err(in_config)?;
                let (spm, vocab_json) = (
                    files.source_spm.as_deref().expect("in_dir checks"),
                    files.vocab.as_deref().expect("in_dir checks"),
                );
                let vocab = MarianVocab::load(spm, vocab_json)?;
                if vocab.len() > config.vocab_size {
                    return Err(Error::model(format!(
                        "{}: {} entries, but the model has {}",
                        vocab_json.display(),
                        vocab.len(),
                        config.vocab_size
                    ))
                    .into());
                }
                let special = Special {
                    pad: config.pad,
                    eos: config.eos,
                    start: generation_id(gen.as_ref(), "decoder_start_token_id")
                        .unwrap_or(config.decoder_start),
                    forced_eos: generation_id(gen.as_ref(), "forced_eos_token_id")
                        .or(config.forced_eos),
                    banned: banned_ids(&json, gen.as_ref(), Some(config.pad)),
                    length_penalty: length_penalty(&json, gen.as_ref()),
                    early_stopping: early_stopping(&json, gen.as_ref()),
                };
                let positions = config.max_positions;
                let net = match &vb {
                    Some(vb) => Some(Net::Marian(Marian::load(vb, config).with_context(cannot)?)),
                    None => None,
                };
                (net, Vocab::Marian(Box::new(vocab)), special, positions)
            }
            Family::T5 => {
                let config = T5Config::from_json(&json).map_err(in_config)?;
                let vocab = T5Vocab::load(
                    files.tokenizer.as_deref(),
                    files.spiece.as_deref(),
                    config.eos,
                    config.pad,
                )?;
                let special = Special {
                    pad: config.pad,
                    eos: config.eos,
                    start: generation_id(gen.as_ref(), "decoder_start_token_id")
                        .unwrap_or(config.decoder_start),
                    forced_eos: generation_id(gen.as_ref(), "forced_eos_token_id"),
                    banned: banned_ids(&json, gen.as_ref(), None),
                    length_penalty: length_penalty(&json, gen.as_ref()),
                    early_stopping: early_stopping(&json, gen.as_ref()),
                };
                let net = match &vb {
                    Some(vb) => Some(Net::T5(T5::load(vb, config).with_context(cannot)?)),
                    None => None,
                };
                let positions = t5::MAX_POSITIONS;
                (net, Vocab::T5(Box::new(vocab)), special, positions)
            }
        };
        let stored = match files.weights.as_slice() {
            [one] if one.extension().is_some_and(|e| e == "gguf") => "gguf",
            _ => "safetensors",
        };
        let format = match quant {
            Some(q) => format!("{stored}, {q:?} in memory"),
            None => stored.into(),
        };
        let device_name = crate::engine::device::name(&device);
        Ok(Seq2Seq {
            net,
            vocab,
            special,
            beam: None,
            device,
            info: ModelInfo {
                id: id.to_string(),
                revision: snapshot_of(&files.config),
                architecture: match files.family {
                    Family::Marian => "marian",
                    Family::T5 => "t5",
                },
                format,
                context_length: positions,
                device: device_name,
                load_secs: start.elapsed().as_secs_f64(),
                files: files.all(),
            },
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    pub fn special(&self) -> &Special {
        &self.special
    }

    /// Decodes with beam search from now on (`None`: greedily).
    pub fn set_beam(&mut self, beam: Option<Beam>) {
        self.beam = beam;
    }

    /// Beam search with `beams` beams (1: greedy), with the model's own
    /// length penalty unless `length_penalty` overrides it, and its own
    /// `early_stopping`.
    pub fn use_beams(&mut self, beams: usize, length_penalty: Option<f32>) {
        self.beam = (beams > 1).then(|| Beam {
            beams,
            length_penalty: length_penalty.unwrap_or(self.special.length_penalty),
            early_stopping: self.special.early_stopping,
        });
    }

    /// Outputs for already-encoded sentences, as one batch.
    pub fn generate_ids(&self, inputs: &[Vec<u32>], max_new: &[usize]) -> Result<Vec<Output>> {
        Ok(self.generate(inputs, max_new)?.outputs)
    }

    /// Outputs and timings for already-encoded sentences, as one batch.
    pub fn generate(&self, inputs: &[Vec<u32>], max_new: &[usize]) -> Result<Generation> {
        let (special, device) = (&self.special, &self.device);
        match (self.net()?, &self.beam) {
            (Net::Marian(m), None) => greedy(m, inputs, max_new, special, device),
            (Net::T5(m), None) => greedy(m, inputs, max_new, special, device),
            (Net::Marian(m), Some(b)) => beam_search(m, inputs, max_new, special, b, device),
            (Net::T5(m), Some(b)) => beam_search(m, inputs, max_new, special, b, device),
        }
    }

    /// The most tokens the translation of a sentence of `ids` source ids
    /// may take.
    pub fn answer_cap(&self, ids: usize) -> usize {
        translation_room(ids)
            .min(self.info.context_length.saturating_sub(1))
            .max(1)
    }

    /// Source tokens `text` takes, without the end token.
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.vocab.encode(text, None)?.len().saturating_sub(1))
    }

    /// The most source tokens one sentence may take, end and target tokens
    /// included.
    pub fn max_source_tokens(&self) -> usize {
        match &self.vocab {
            Vocab::Marian(_) => self.info.context_length,
            // T5 has no position table; MADLAD was trained on 256-token
            // inputs, so longer ones are split rather than risked.
            Vocab::T5(_) => 256,
        }
    }

    /// Translations of `texts` (into `target`, a model token such as
    /// `>>deu<<` or `<2de>`, when the model needs one), `batch_size`
    /// sentences at a time, similar lengths together so that little of a
    /// batch is padding.
    pub fn translate(
        &self,
        texts: &[String],
        target: Option<&str>,
        batch_size: usize,
    ) -> Result<(Vec<Translated>, BatchStats)> {
        let inputs: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.vocab.encode(t, target))
            .collect::<Result<_>>()?;
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].len()));
        let mut out: Vec<Option<Translated>> = vec![None; inputs.len()];
        let mut stats = BatchStats::default();
        for group in order.chunks(batch_size.max(1)) {
            let batch: Vec<Vec<u32>> = group.iter().map(|&i| inputs[i].clone()).collect();
            let caps: Vec<usize> = batch
                .iter()
                .map(|ids| translation_room(ids.len()))
                .collect();
            let g = self.generate(&batch, &caps)?;
            stats.batches += 1;
            stats.encode_secs += g.encode_secs;
            stats.decode_secs += g.decode_secs;
            for ((&i, ids), o) in group.iter().zip(&batch).zip(g.outputs) {
                stats.source_tokens += ids.len();
                stats.generated_tokens += o.ids.len();
                let capped = o.stop == StopReason::Length;
                stats.capped += usize::from(capped);
                out[i] = Some(Translated {
                    text: self.vocab.decode(&o.ids)?,
                    capped,
                });
            }
        }
        Ok((
            out.into_iter()
                .map(|t| t.expect("every sentence is in a batch"))
                .collect(),
            stats,
        ))
    }

    fn net(&self) -> Result<&Net> {
        self.net
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("model {} was loaded for planning only", self.info.id))
    }

    /// Logits of the first decoder step for one encoded sentence.
    pub fn first_logits(&self, input: &[u32]) -> Result<Vec<f32>> {
        match self.net()? {
            Net::Marian(m) => self.first(m, input),
            Net::T5(m) => self.first(m, input),
        }
    }

    fn first<M: EncoderDecoder>(&self, m: &M, input: &[u32]) -> Result<Vec<f32>> {
        let ids = Tensor::from_vec(input.to_vec(), (1, input.len()), &self.device)?;
        let mask = Tensor::ones((1, input.len()), DType::U32, &self.device)?;
        let mut state = m.encode(&ids, &mask)?;
        let start = Tensor::from_vec(vec![self.special.start], 1, &self.device)?;
        Ok(m.step(&mut state, &start)?.squeeze(0)?.to_vec1()?)
    }
}

/// A T5 model that follows instructions (flan-t5) does what a chat model
/// does for summaries: the conversation becomes its input text, the reply
/// its output. Input and output have positions of their own, so the
/// "context" is the model's positions, shared by the task's arithmetic.
impl crate::engine::ChatModel for Seq2Seq {
    fn context_length(&self) -> usize {
        self.info.context_length
    }

    fn count_tokens(&self, text: &str) -> Result<usize> {
        Seq2Seq::count_tokens(self, text)
    }

    fn prompt_tokens(&self, messages: &[crate::prompt::chat::Message]) -> Result<usize> {
        Ok(self.vocab.encode(&flatten(messages), None)?.len())
    }

    fn truncate_to_tokens(&self, text: &str, max: usize) -> Result<String> {
        let ids = self.vocab.encode(text, None)?;
        let body = &ids[..ids.len().saturating_sub(1)];
        self.vocab.decode(&body[..body.len().min(max)])
    }

    fn complete(
        &mut self,
        messages: &[crate::prompt::chat::Message],
        max_new_tokens: usize,
    ) -> Result<crate::engine::Completion> {
        let input = self.vocab.encode(&flatten(messages), None)?;
        let g = self.generate(std::slice::from_ref(&input), &[max_new_tokens])?;
        let out = &g.outputs[0];
        Ok(crate::engine::Completion {
            text: self.vocab.decode(&out.ids)?.trim().to_string(),
            prompt_tokens: input.len(),
            reused_tokens: 0,
            generated_tokens: out.ids.len(),
            stop: out.stop,
            looped: false,
            prefill_secs: g.encode_secs,
            decode_secs: g.decode_secs,
        })
    }
}

/// A conversation as one input text: its messages' contents, in order.
fn flatten(messages: &[crate::prompt::chat::Message]) -> String {
    messages
        .iter()
        .map(|m| m.content.trim())
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// One sentence's translation.
#[derive(Debug, Clone)]
pub struct Translated {
    pub text: String,
    /// Cut at its length cap rather than ended by the model.
    pub capped: bool,
}

/// What a call to [`Seq2Seq::translate`] cost.
#[derive(Debug, Clone, Default)]
pub struct BatchStats {
    pub batches: usize,
    pub source_tokens: usize,
    pub generated_tokens: usize,
    pub encode_secs: f64,
    pub decode_secs: f64,
    /// Sentences cut at their length cap.
    pub capped: usize,
}

/// A token id `generation_config.json` sets, which wins over config.json.
fn generation_id(gen: Option<&serde_json::Value>, key: &str) -> Option<u32> {
    gen?.get(key)?.as_u64().map(|x| x as u32)
}

/// A generation setting from generation_config.json, else config.json
/// (where older repositories keep them).
fn generation_setting<'a>(
    config: &'a serde_json::Value,
    gen: Option<&'a serde_json::Value>,
    key: &str,
) -> Option<&'a serde_json::Value> {
    gen.and_then(|g| g.get(key))
        .or_else(|| config.get(key))
        .filter(|v| !v.is_null())
}

fn length_penalty(config: &serde_json::Value, gen: Option<&serde_json::Value>) -> f32 {
    generation_setting(config, gen, "length_penalty")
        .and_then(|v| v.as_f64())
        .unwrap_or(1.0) as f32
}

fn early_stopping(config: &serde_json::Value, gen: Option<&serde_json::Value>) -> EarlyStopping {
    generation_setting(config, gen, "early_stopping")
        .and_then(EarlyStopping::from_json)
        .unwrap_or(EarlyStopping::Heuristic)
}

/// Ids the model must never produce: `bad_words_ids` entries of one token
/// (from generation_config.json when it has them, else config.json), and
/// for Marian the pad id, which its decoder starts from but never emits.
fn banned_ids(
    config: &serde_json::Value,
    gen: Option<&serde_json::Value>,
    pad: Option<u32>,
) -> Vec<u32> {
    let mut out: Vec<u32> = pad.into_iter().collect();
    let source = gen
        .filter(|g| g.get("bad_words_ids").is_some())
        .unwrap_or(config);
    if let Some(list) = source.get("bad_words_ids").and_then(|v| v.as_array()) {
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
