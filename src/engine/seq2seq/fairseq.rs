//! The encoder-decoder transformer of fairseq, as `transformers` computes it
//! for the four families built on it here:
//!
//! - Marian (opus-mt): post-norm layers, sinusoidal positions, embeddings
//!   scaled by √d;
//! - BART (bart-large-cnn): post-norm layers, learned positions two rows
//!   into their table, a layer norm over embeddings and positions, GELU;
//! - M2M100 (NLLB-200): pre-norm layers with a layer norm after each stack,
//!   sinusoidal positions laid out as fairseq's, two rows in, embeddings
//!   scaled by √d, ReLU;
//! - mBART (mBART-50): BART's embedding norm and learned positions with
//!   M2M100's pre-norm layers and norms after each stack.
//!
//! Every attention takes a padding mask, so sentences of different lengths
//! share one batch and get the same result they get alone.

use anyhow::{Context, Result};
use candle_core::{Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm};
use serde_json::Value;

use super::linear::{Lin, Weights};
use super::{additive_mask, split_heads, Activation, DecoderState, EncoderDecoder};
use crate::error::Error;

/// Which of the families' layouts a model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Marian,
    Bart,
    M2m100,
    Mbart,
}

impl Layout {
    /// Norms before each block instead of after, and one after each stack.
    fn pre_norm(self) -> bool {
        matches!(self, Layout::M2m100 | Layout::Mbart)
    }

    /// A norm over embeddings plus positions.
    fn embedding_norm(self) -> bool {
        matches!(self, Layout::Bart | Layout::Mbart)
    }

    /// Rows of the position table before the first position's (fairseq's
    /// tables start two rows in; Marian's does not).
    fn position_offset(self) -> usize {
        match self {
            Layout::Marian => 0,
            Layout::Bart | Layout::M2m100 | Layout::Mbart => 2,
        }
    }
}

/// The shape and special ids of a model (`config.json`).
#[derive(Debug, Clone)]
pub struct FairseqConfig {
    pub layout: Layout,
    pub vocab_size: usize,
    pub decoder_vocab_size: usize,
    pub d_model: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    pub encoder_heads: usize,
    pub decoder_heads: usize,
    pub encoder_ffn: usize,
    pub decoder_ffn: usize,
    pub activation: Activation,
    pub max_positions: usize,
    pub scale_embedding: bool,
    pub share_embeddings: bool,
    pub pad: u32,
    pub eos: u32,
    pub decoder_start: u32,
    pub forced_eos: Option<u32>,
}

impl FairseqConfig {
    pub fn from_json(v: &Value, layout: Layout) -> Result<Self> {
        let int = |key: &str| super::config_int(v, key);
        let size = |key: &str| super::config_size(v, key);
        let flag =
            |key: &str, default: bool| v.get(key).and_then(Value::as_bool).unwrap_or(default);
        match layout {
            Layout::Marian => {
                if flag("normalize_embedding", false) || flag("normalize_before", false) {
                    return Err(Error::model(
                        "this Marian variant (normalize_embedding / normalize_before) is not supported",
                    )
                    .into());
                }
                if !flag("static_position_embeddings", true) {
                    return Err(
                        Error::model("learned position embeddings are not supported").into(),
                    );
                }
            }
            // Keys of older BART configs that transformers no longer reads;
            // only their BART values are.
            Layout::Bart => {
                if flag("normalize_before", false) || flag("add_final_layer_norm", false) {
                    return Err(Error::model(
                        "this BART variant (normalize_before / add_final_layer_norm) is not supported",
                    )
                    .into());
                }
            }
            Layout::M2m100 | Layout::Mbart => {}
        }
        let d_model = size("d_model")?;
        let encoder_heads = size("encoder_attention_heads")?;
        let decoder_heads = size("decoder_attention_heads")?;
        for (key, heads) in [
            ("encoder_attention_heads", encoder_heads),
            ("decoder_attention_heads", decoder_heads),
        ] {
            if !d_model.is_multiple_of(heads) {
                return Err(Error::model(format!(
                    "config.json: `d_model` {d_model} does not split into `{key}` heads"
                ))
                .into());
            }
        }
        let act = v
            .get("activation_function")
            .and_then(Value::as_str)
            .unwrap_or(match layout {
                Layout::Marian => "swish",
                Layout::Bart | Layout::Mbart => "gelu",
                Layout::M2m100 => "relu",
            });
        let vocab_size = size("vocab_size")?;
        let pad = int("pad_token_id")? as u32;
        Ok(FairseqConfig {
            layout,
            vocab_size,
            decoder_vocab_size: int("decoder_vocab_size").unwrap_or(vocab_size),
            d_model,
            encoder_layers: size("encoder_layers")?,
            decoder_layers: size("decoder_layers")?,
            encoder_heads,
            decoder_heads,
            encoder_ffn: size("encoder_ffn_dim")?,
            decoder_ffn: size("decoder_ffn_dim")?,
            activation: Activation::from_name(act)?,
            max_positions: size("max_position_embeddings")?,
            scale_embedding: flag(
                "scale_embedding",
                matches!(layout, Layout::Marian | Layout::M2m100),
            ),
            share_embeddings: flag("share_encoder_decoder_embeddings", true),
            pad,
            eos: int("eos_token_id")? as u32,
            decoder_start: int("decoder_start_token_id").map_or(pad, |x| x as u32),
            forced_eos: int("forced_eos_token_id").ok().map(|x| x as u32),
        })
    }
}

/// Sinusoids as fairseq lays them out for M2M100, from the first position
/// on (row `2 + t` of its table): frequencies `exp(-i ln(10000) / (half -
/// 1))`, all sines then all cosines, computed in f32 as transformers does.
fn fairseq_sinusoids(n: usize, dim: usize, device: &Device) -> Result<Tensor> {
    let half = dim / 2;
    let step = (10000f64.ln() / (half.max(2) - 1) as f64) as f32;
    let freqs: Vec<f32> = (0..half).map(|i| (i as f32 * -step).exp()).collect();
    let mut data = vec![0f32; n * dim];
    for t in 0..n {
        let pos = (t + Layout::M2m100.position_offset()) as f32;
        for (i, f) in freqs.iter().enumerate() {
            let angle = pos * f;
            data[t * dim + i] = angle.sin();
            data[t * dim + half + i] = angle.cos();
        }
    }
    Ok(Tensor::from_vec(data, (n, dim), device)?)
}

/// Sinusoids as Marian lays them out: all sines, then all cosines.
fn sinusoids(n: usize, dim: usize, device: &Device) -> Result<Tensor> {
    let half = dim.div_ceil(2);
    let mut data = vec![0f32; n * dim];
    for pos in 0..n {
        for j in 0..dim {
            // Column j of the interleaved table has frequency 10000^(-2⌊j/2⌋/dim);
            // even columns become sines, odd ones cosines.
            let angle = pos as f64 / 10000f64.powf((2 * (j / 2)) as f64 / dim as f64);
            let (col, value) = if j % 2 == 0 {
                (j / 2, angle.sin())
            } else {
                (half + j / 2, angle.cos())
            };
            data[pos * dim + col] = value as f32;
        }
    }
    Ok(Tensor::from_vec(data, (n, dim), device)?)
}

struct Attention {
    q: Lin,
    k: Lin,
    v: Lin,
    o: Lin,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(w: &Weights, d: usize, heads: usize) -> Result<Self> {
        let lin = |name: &str| w.lin(name, d, d, true);
        Ok(Attention {
            q: lin("q_proj")?,
            k: lin("k_proj")?,
            v: lin("v_proj")?,
            o: lin("out_proj")?,
            heads,
            head_dim: d / heads,
        })
    }

    /// (B, T, D) → (B, H, T, Dh)
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        split_heads(x, self.heads, self.head_dim)
    }

    fn keys_values(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.split(&self.k.forward(x)?)?,
            self.split(&self.v.forward(x)?)?,
        ))
    }

    /// Attention of `x` over `k`/`v`, with an additive `mask` broadcast to
    /// (B, H, T, S).
    fn attend(&self, x: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let q = self.split(&self.q.forward(x)?)?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
        if let Some(m) = mask {
            scores = scores.broadcast_add(m)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(v)?.transpose(1, 2)?.reshape((b, t, d))?;
        self.o.forward(&out)
    }
}

struct FeedForward {
    fc1: Lin,
    fc2: Lin,
    act: Activation,
}

impl FeedForward {
    fn load(w: &Weights, d: usize, ffn: usize, act: Activation) -> Result<Self> {
        Ok(FeedForward {
            fc1: w.lin("fc1", d, ffn, true)?,
            fc2: w.lin("fc2", ffn, d, true)?,
            act,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.act.apply(&self.fc1.forward(x)?)?)
    }
}

fn layer_norm(w: &Weights, d: usize) -> Result<LayerNorm> {
    Ok(LayerNorm::new(w.get(d, "weight")?, w.get(d, "bias")?, 1e-5))
}

struct EncoderLayer {
    attn: Attention,
    attn_norm: LayerNorm,
    ffn: FeedForward,
    ffn_norm: LayerNorm,
}

struct DecoderLayer {
    attn: Attention,
    attn_norm: LayerNorm,
    cross: Attention,
    cross_norm: LayerNorm,
    ffn: FeedForward,
    ffn_norm: LayerNorm,
}

/// A loaded model.
pub struct Fairseq {
    config: FairseqConfig,
    enc_embed: Embedding,
    dec_embed: Embedding,
    lm_head: Lin,
    logits_bias: Option<Tensor>,
    /// Position tables, from the first position on.
    enc_pos: Tensor,
    dec_pos: Tensor,
    /// The norms over embeddings plus positions (BART, mBART).
    enc_embed_norm: Option<LayerNorm>,
    dec_embed_norm: Option<LayerNorm>,
    /// The norms after each stack of pre-norm layers (M2M100, mBART).
    enc_final_norm: Option<LayerNorm>,
    dec_final_norm: Option<LayerNorm>,
    encoder: Vec<EncoderLayer>,
    decoder: Vec<DecoderLayer>,
    embed_scale: f64,
}

impl Fairseq {
    /// Loads the weights (projections as `vb` keeps or quantizes them).
    pub fn load(vb: &Weights, config: FairseqConfig) -> Result<Self> {
        let d = config.d_model;
        let device = vb.device().clone();
        let shared_name = if vb.contains("model.shared.weight") {
            "model.shared.weight"
        } else {
            "model.encoder.embed_tokens.weight"
        };
        let shared = vb
            .get((config.vocab_size, d), shared_name)
            .with_context(|| format!("loading {shared_name}"))?;
        let dec_weights =
            if !config.share_embeddings && vb.contains("model.decoder.embed_tokens.weight") {
                vb.get(
                    (config.decoder_vocab_size, d),
                    "model.decoder.embed_tokens.weight",
                )?
            } else {
                shared.clone()
            };
        let lm_head = if vb.contains("lm_head.weight") {
            vb.lin("lm_head", d, config.decoder_vocab_size, false)?
        } else {
            Lin::new(dec_weights.clone(), None, vb.quant())?
        };
        let logits_bias = if vb.contains("final_logits_bias") {
            Some(
                vb.get((1, config.decoder_vocab_size), "final_logits_bias")?
                    .squeeze(0)?,
            )
        } else {
            None
        };
        let offset = config.layout.position_offset();
        let positions = |side: &str| -> Result<Tensor> {
            let name = format!("model.{side}.embed_positions.weight");
            if vb.contains(&name) {
                let rows = config.max_positions + offset;
                Ok(vb
                    .get((rows, d), &name)?
                    .narrow(0, offset, config.max_positions)?)
            } else if config.layout == Layout::Marian {
                sinusoids(config.max_positions, d, &device)
            } else if config.layout == Layout::M2m100 {
                fairseq_sinusoids(config.max_positions, d, &device)
            } else {
                Err(Error::model(format!("the weights have no {name}")).into())
            }
        };
        let norm = |has: bool, name: String| -> Result<Option<LayerNorm>> {
            has.then(|| layer_norm(&vb.pp(name), d)).transpose()
        };
        let embed_norm = |side: &str| {
            norm(
                config.layout.embedding_norm(),
                format!("model.{side}.layernorm_embedding"),
            )
        };
        let final_norm =
            |side: &str| norm(config.layout.pre_norm(), format!("model.{side}.layer_norm"));
        let mut encoder = Vec::new();
        for i in 0..config.encoder_layers {
            let l = vb.pp(format!("model.encoder.layers.{i}"));
            encoder.push(EncoderLayer {
                attn: Attention::load(&l.pp("self_attn"), d, config.encoder_heads)?,
                attn_norm: layer_norm(&l.pp("self_attn_layer_norm"), d)?,
                ffn: FeedForward::load(&l, d, config.encoder_ffn, config.activation)?,
                ffn_norm: layer_norm(&l.pp("final_layer_norm"), d)?,
            });
        }
        let mut decoder = Vec::new();
        for i in 0..config.decoder_layers {
            let l = vb.pp(format!("model.decoder.layers.{i}"));
            decoder.push(DecoderLayer {
                attn: Attention::load(&l.pp("self_attn"), d, config.decoder_heads)?,
                attn_norm: layer_norm(&l.pp("self_attn_layer_norm"), d)?,
                cross: Attention::load(&l.pp("encoder_attn"), d, config.decoder_heads)?,
                cross_norm: layer_norm(&l.pp("encoder_attn_layer_norm"), d)?,
                ffn: FeedForward::load(&l, d, config.decoder_ffn, config.activation)?,
                ffn_norm: layer_norm(&l.pp("final_layer_norm"), d)?,
            });
        }
        Ok(Fairseq {
            enc_embed: Embedding::new(shared, d),
            dec_embed: Embedding::new(dec_weights, d),
            lm_head,
            logits_bias,
            enc_pos: positions("encoder")?,
            dec_pos: positions("decoder")?,
            enc_embed_norm: embed_norm("encoder")?,
            dec_embed_norm: embed_norm("decoder")?,
            enc_final_norm: final_norm("encoder")?,
            dec_final_norm: final_norm("decoder")?,
            encoder,
            decoder,
            embed_scale: if config.scale_embedding {
                (d as f64).sqrt()
            } else {
                1.0
            },
            config,
        })
    }

    pub fn config(&self) -> &FairseqConfig {
        &self.config
    }
}

impl EncoderDecoder for Fairseq {
    fn max_positions(&self) -> usize {
        self.config.max_positions
    }

    fn encode(&self, ids: &Tensor, mask: &Tensor) -> Result<DecoderState> {
        let (_, s) = ids.dims2()?;
        let add_mask = additive_mask(mask)?;
        let pos = self.enc_pos.narrow(0, 0, s)?;
        let mut x = (self.enc_embed.forward(ids)? * self.embed_scale)?.broadcast_add(&pos)?;
        if let Some(norm) = &self.enc_embed_norm {
            x = norm.forward(&x)?;
        }
        for l in &self.encoder {
            if self.config.layout.pre_norm() {
                let n = l.attn_norm.forward(&x)?;
                let (k, v) = l.attn.keys_values(&n)?;
                x = (&x + l.attn.attend(&n, &k, &v, Some(&add_mask))?)?;
                x = (&x + l.ffn.forward(&l.ffn_norm.forward(&x)?)?)?;
                continue;
            }
            let (k, v) = l.attn.keys_values(&x)?;
            let h = l.attn.attend(&x, &k, &v, Some(&add_mask))?;
            x = l.attn_norm.forward(&(x + h)?)?;
            let h = l.ffn.forward(&x)?;
            x = l.ffn_norm.forward(&(x + h)?)?;
        }
        if let Some(norm) = &self.enc_final_norm {
            x = norm.forward(&x)?;
        }
        let cross = self
            .decoder
            .iter()
            .map(|l| l.cross.keys_values(&x))
            .collect::<Result<Vec<_>>>()?;
        Ok(DecoderState::new(cross, add_mask))
    }

    fn step(&self, state: &mut DecoderState, tokens: &Tensor) -> Result<Tensor> {
        if state.pos >= self.config.max_positions {
            return Err(Error::Context(format!(
                "the translation is longer than the model's {} positions",
                self.config.max_positions
            ))
            .into());
        }
        let pos = self.dec_pos.narrow(0, state.pos, 1)?;
        let ids = tokens.unsqueeze(1)?;
        let mut x = (self.dec_embed.forward(&ids)? * self.embed_scale)?.broadcast_add(&pos)?;
        if let Some(norm) = &self.dec_embed_norm {
            x = norm.forward(&x)?;
        }
        for (i, l) in self.decoder.iter().enumerate() {
            if self.config.layout.pre_norm() {
                let n = l.attn_norm.forward(&x)?;
                let (k, v) = l.attn.keys_values(&n)?;
                let (k, v) = state.extend(i, k, v)?;
                x = (&x + l.attn.attend(&n, &k, &v, None)?)?;
                let (ck, cv) = &state.cross[i];
                let n = l.cross_norm.forward(&x)?;
                x = (&x + l.cross.attend(&n, ck, cv, Some(&state.source_mask))?)?;
                x = (&x + l.ffn.forward(&l.ffn_norm.forward(&x)?)?)?;
                continue;
            }
            let (k, v) = l.attn.keys_values(&x)?;
            let (k, v) = state.extend(i, k, v)?;
            let h = l.attn.attend(&x, &k, &v, None)?;
            x = l.attn_norm.forward(&(x + h)?)?;
            let (ck, cv) = &state.cross[i];
            let h = l.cross.attend(&x, ck, cv, Some(&state.source_mask))?;
            x = l.cross_norm.forward(&(x + h)?)?;
            let h = l.ffn.forward(&x)?;
            x = l.ffn_norm.forward(&(x + h)?)?;
        }
        if let Some(norm) = &self.dec_final_norm {
            x = norm.forward(&x)?;
        }
        state.pos += 1;
        let logits = self.lm_head.forward(&x.squeeze(1)?)?;
        Ok(match &self.logits_bias {
            Some(b) => logits.broadcast_add(b)?,
            None => logits,
        })
    }
}
