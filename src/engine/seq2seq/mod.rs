//! Encoder-decoder models (Marian, T5, BART): source text in, its
//! translation (or a flan-t5 answer, or a BART summary) out, one text per
//! input, many texts per batch.
//!
//! Unlike the chat models there is no prompt: the task layer hands over
//! sentences and gets sentences back. The families share their network
//! plumbing (`network`), read how they generate from their config files
//! (`generation`) and decode with one pair of drivers (`decode`: greedy
//! and beam search); this file loads a model and serves it to the tasks.

mod decode;
pub mod fairseq;
mod generation;
pub mod linear;
mod network;
pub mod t5;
pub mod vocab;

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};

use crate::engine::beam::Beam;
use crate::engine::choice::StopReason;
use crate::engine::device::DeviceChoice;
use crate::engine::generate::translation_room;
use crate::engine::ModelInfo;
use crate::error::Error;
use crate::hub::seq2seq_files::{Family, Seq2SeqFiles};
use crate::hub::{read_json, snapshot_of};
use candle_core::quantized::GgmlDType;
use fairseq::{Fairseq, FairseqConfig, Layout};
use linear::Weights;
use t5::{T5Config, T5};

pub use decode::{beam_search, greedy, Generation, Output};
use generation::Ids;
pub use generation::Special;
pub(crate) use network::{additive_mask, config_int, config_size, split_heads};
pub use network::{Activation, DecoderState, EncoderDecoder};
use vocab::{BartVocab, MarianVocab, MultilingualVocab, T5Vocab};

/// A model's vocabulary: text to ids and back.
pub enum Vocab {
    Marian(Box<MarianVocab>),
    T5(Box<T5Vocab>),
    Bart(Box<BartVocab>),
    Multilingual(Box<MultilingualVocab>),
}

impl Vocab {
    /// Ids of `text` with the model's language token before it, if any:
    /// the target's for multilingual Marian models (`>>deu<<`) and MADLAD
    /// (`<2de>`), the source's for NLLB (`eng_Latn`).
    pub fn encode(&self, text: &str, target: Option<&str>) -> Result<Vec<u32>> {
        match self {
            Vocab::Marian(v) => v.encode(text, target),
            Vocab::T5(v) => v.encode(text, target),
            Vocab::Bart(v) => match target {
                None => v.encode(text),
                Some(t) => Err(Error::model(format!(
                    "a BART model has no target-language token `{t}`"
                ))
                .into()),
            },
            Vocab::Multilingual(v) => v.encode(text, target),
        }
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Vocab::Marian(v) => Ok(v.decode(ids)),
            Vocab::T5(v) => v.decode(ids),
            Vocab::Bart(v) => v.decode(ids),
            Vocab::Multilingual(v) => v.decode(ids),
        }
    }

    /// Whether the model knows the target token `token`.
    pub fn has(&self, token: &str) -> bool {
        match self {
            Vocab::Marian(v) => v.target_tokens().contains(&token),
            Vocab::T5(v) => v.has(token),
            Vocab::Bart(_) => false,
            Vocab::Multilingual(v) => v.id(token).is_ok(),
        }
    }
}

enum Net {
    Fairseq(Fairseq),
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
            Family::Marian | Family::Bart | Family::M2m100 | Family::Mbart => {
                let layout = match files.family {
                    Family::Marian => Layout::Marian,
                    Family::Bart => Layout::Bart,
                    Family::M2m100 => Layout::M2m100,
                    _ => Layout::Mbart,
                };
                let config = FairseqConfig::from_json(&json, layout).map_err(in_config)?;
                let tokenizer = || files.tokenizer.as_deref().expect("from_named checks");
                let vocab = match layout {
                    Layout::Marian => Vocab::Marian(Box::new(marian_vocab(files, &config)?)),
                    Layout::Bart => {
                        let bos = config_int(&json, "bos_token_id").map_or(0, |x| x as u32);
                        Vocab::Bart(Box::new(BartVocab::load(tokenizer(), bos, config.eos)?))
                    }
                    Layout::M2m100 | Layout::Mbart => Vocab::Multilingual(Box::new(
                        MultilingualVocab::load(tokenizer(), config.eos)?,
                    )),
                };
                let ids = Ids {
                    pad: config.pad,
                    eos: config.eos,
                    decoder_start: config.decoder_start,
                    forced_eos: config.forced_eos,
                    // Marian's decoder starts from the pad id but never writes it.
                    ban_pad: layout == Layout::Marian,
                };
                let special = Special::read(&json, gen.as_ref(), ids);
                let positions = config.max_positions;
                let net = match &vb {
                    Some(vb) => Some(Net::Fairseq(
                        Fairseq::load(vb, config).with_context(cannot)?,
                    )),
                    None => None,
                };
                (net, vocab, special, positions)
            }
            Family::T5 => {
                let config = T5Config::from_json(&json).map_err(in_config)?;
                let vocab = T5Vocab::load(
                    files.tokenizer.as_deref(),
                    files.spiece.as_deref(),
                    config.eos,
                    config.pad,
                )?;
                let ids = Ids {
                    pad: config.pad,
                    eos: config.eos,
                    decoder_start: config.decoder_start,
                    forced_eos: None,
                    ban_pad: false,
                };
                let special = Special::read(&json, gen.as_ref(), ids);
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
        // A summarizer searches as its generation config says (BART: 4
        // beams); translation models decode greedily unless asked.
        let beam = (files.family == Family::Bart && special.beams > 1).then_some(Beam {
            beams: special.beams,
            length_penalty: special.length_penalty,
            early_stopping: special.early_stopping,
        });
        Ok(Seq2Seq {
            net,
            vocab,
            special,
            beam,
            device,
            info: ModelInfo {
                id: id.to_string(),
                revision: snapshot_of(&files.config),
                architecture: match files.family {
                    Family::Marian => "marian",
                    Family::T5 => "t5",
                    Family::Bart => "bart",
                    Family::M2m100 => "m2m_100",
                    Family::Mbart => "mbart",
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

    /// Makes `token` (the target language's, NLLB's `deu_Latn` or
    /// mBART-50's `de_DE`) the first token
    /// of every output, as transformers' `forced_bos_token_id` does.
    pub fn force_first(&mut self, token: &str) -> Result<()> {
        let Vocab::Multilingual(v) = &self.vocab else {
            return Err(
                Error::model(format!("{} takes no first token to write", self.info.id)).into(),
            );
        };
        self.special.forced_bos = Some(v.id(token)?);
        Ok(())
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
        // generation_config.json's `max_length` caps every output.
        let capped: Vec<usize> = max_new
            .iter()
            .map(|&m| special.max_new.map_or(m, |cap| m.min(cap)))
            .collect();
        let max_new = capped.as_slice();
        match (self.net()?, &self.beam) {
            (Net::Fairseq(m), None) => greedy(m, inputs, max_new, special, device),
            (Net::T5(m), None) => greedy(m, inputs, max_new, special, device),
            (Net::Fairseq(m), Some(b)) => beam_search(m, inputs, max_new, special, b, device),
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
            Vocab::Marian(_) | Vocab::Bart(_) | Vocab::Multilingual(_) => self.info.context_length,
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
            Net::Fairseq(m) => self.first(m, input),
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

    fn writes_translation_prompt(&self) -> bool {
        false
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
            alone: (out.ids.len(), g.decode_secs),
        })
    }
}

/// Marian's vocabulary, which must fit the model's.
fn marian_vocab(files: &Seq2SeqFiles, config: &FairseqConfig) -> Result<MarianVocab> {
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
    Ok(vocab)
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
