//! T5 (MADLAD-400, flan-t5): a pre-norm encoder-decoder with learned
//! relative-position biases, as `transformers`' `T5ForConditionalGeneration`
//! computes it.
//!
//! The decoder's self-attention buckets relative positions in one direction
//! only (a token never sees later ones); using the encoder's two-way buckets
//! there changes every distance past the exact range.

use anyhow::{Context, Result};
use candle_core::{Device, Module, Tensor};
use candle_nn::{Embedding, RmsNorm};
use serde_json::Value;

use super::linear::{Lin, Weights};
use super::{additive_mask, split_heads, Activation, DecoderState, EncoderDecoder};

/// Relative positions have no table to run out of; this bounds the work a
/// single sentence may ask for.
pub const MAX_POSITIONS: usize = 1024;

/// The shape and special ids of a T5 model (`config.json`).
#[derive(Debug, Clone)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    pub heads: usize,
    pub num_buckets: usize,
    pub max_distance: usize,
    pub eps: f64,
    pub gated: bool,
    pub activation: Activation,
    /// Whether the decoder output is scaled by d_model^-0.5 before the head
    /// (the original T5 with its tied head; not T5 v1.1, flan-t5, MADLAD).
    pub scale_output: bool,
    pub pad: u32,
    pub eos: u32,
    pub decoder_start: u32,
}

impl T5Config {
    pub fn from_json(v: &Value) -> Result<Self> {
        let int = |key: &str| super::config_int(v, key);
        let size = |key: &str| super::config_size(v, key);
        let proj = v
            .get("feed_forward_proj")
            .and_then(Value::as_str)
            .unwrap_or("relu");
        let (gated, act_name) = match proj.strip_prefix("gated-") {
            Some(a) => (true, a),
            None => (false, proj),
        };
        // transformers runs "gated-gelu" with the tanh approximation.
        let act = match v.get("dense_act_fn").and_then(Value::as_str) {
            Some(a) => Activation::from_name(a)?,
            None if act_name == "gelu" && gated => Activation::GeluTanh,
            None => Activation::from_name(act_name)?,
        };
        let layers = size("num_layers")?;
        let pad = int("pad_token_id").unwrap_or(0) as u32;
        Ok(T5Config {
            vocab_size: size("vocab_size")?,
            d_model: size("d_model")?,
            d_kv: size("d_kv")?,
            d_ff: size("d_ff")?,
            encoder_layers: layers,
            decoder_layers: int("num_decoder_layers").unwrap_or(layers),
            heads: size("num_heads")?,
            num_buckets: int("relative_attention_num_buckets").unwrap_or(32),
            max_distance: int("relative_attention_max_distance").unwrap_or(128),
            eps: v
                .get("layer_norm_epsilon")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6),
            gated,
            activation: act,
            // Configs saved by transformers 5 spell it out; hub configs say
            // whether the head is tied, which meant the same.
            scale_output: v
                .get("scale_decoder_outputs")
                .and_then(Value::as_bool)
                .or_else(|| v.get("tie_word_embeddings").and_then(Value::as_bool))
                .unwrap_or(true),
            pad,
            eos: int("eos_token_id").unwrap_or(1) as u32,
            decoder_start: int("decoder_start_token_id").map_or(pad, |x| x as u32),
        })
    }
}

/// The bucket of a relative position (key position − query position), as
/// Mesh TensorFlow and `transformers` compute it, in f32 like they do so
/// that values on a bucket edge land on the same side.
pub fn relative_bucket(
    relative: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let mut buckets = num_buckets as i64;
    let mut base = 0i64;
    let distance = if bidirectional {
        buckets /= 2;
        if relative > 0 {
            base = buckets;
        }
        relative.abs()
    } else {
        (-relative).max(0)
    };
    let max_exact = buckets / 2;
    let bucket = if distance < max_exact {
        distance
    } else {
        let scaled = (distance as f32 / max_exact as f32).ln()
            / ((max_distance as f64 / max_exact as f64).ln() as f32)
            * (buckets - max_exact) as f32;
        (max_exact + scaled as i64).min(buckets - 1)
    };
    (base + bucket) as usize
}

struct Attention {
    q: Lin,
    k: Lin,
    v: Lin,
    o: Lin,
    heads: usize,
    d_kv: usize,
    /// (buckets, heads), in the first layer of each stack only.
    bias: Option<Embedding>,
}

impl Attention {
    fn load(vb: &Weights, cfg: &T5Config, relative: bool) -> Result<Self> {
        let inner = cfg.heads * cfg.d_kv;
        let bias = if relative {
            let w = vb.get(
                (cfg.num_buckets, cfg.heads),
                "relative_attention_bias.weight",
            )?;
            Some(Embedding::new(w, cfg.heads))
        } else {
            None
        };
        Ok(Attention {
            q: vb.lin("q", cfg.d_model, inner, false)?,
            k: vb.lin("k", cfg.d_model, inner, false)?,
            v: vb.lin("v", cfg.d_model, inner, false)?,
            o: vb.lin("o", inner, cfg.d_model, false)?,
            heads: cfg.heads,
            d_kv: cfg.d_kv,
            bias,
        })
    }

    fn split(&self, x: &Tensor) -> Result<Tensor> {
        split_heads(x, self.heads, self.d_kv)
    }

    fn keys_values(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.split(&self.k.forward(x)?)?,
            self.split(&self.v.forward(x)?)?,
        ))
    }

    /// (1, H, T, S) biases for queries at `q_pos` over keys at `0..keys`.
    fn position_bias(
        &self,
        q_pos: &[usize],
        keys: usize,
        bidirectional: bool,
        cfg: &T5Config,
        device: &Device,
    ) -> Result<Option<Tensor>> {
        let Some(emb) = &self.bias else {
            return Ok(None);
        };
        let mut idx = Vec::with_capacity(q_pos.len() * keys);
        for &q in q_pos {
            for k in 0..keys {
                idx.push(relative_bucket(
                    k as i64 - q as i64,
                    bidirectional,
                    cfg.num_buckets,
                    cfg.max_distance,
                ) as u32);
            }
        }
        let idx = Tensor::from_vec(idx, (q_pos.len(), keys), device)?;
        let bias = emb.forward(&idx)?; // (T, S, H)
        Ok(Some(bias.permute((2, 0, 1))?.unsqueeze(0)?))
    }

    /// Unscaled attention (T5 folds the scale into its weights) with an
    /// additive bias (position bias plus padding mask).
    fn attend(&self, x: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let q = self.split(&self.q.forward(x)?)?;
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(bias) = bias {
            scores = scores.broadcast_add(bias)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs
            .matmul(v)?
            .transpose(1, 2)?
            .reshape((b, t, self.heads * self.d_kv))?;
        self.o.forward(&out)
    }
}

enum FeedForward {
    Plain {
        wi: Lin,
        wo: Lin,
        act: Activation,
    },
    Gated {
        wi_0: Lin,
        wi_1: Lin,
        wo: Lin,
        act: Activation,
    },
}

impl FeedForward {
    fn load(vb: &Weights, cfg: &T5Config) -> Result<Self> {
        let (d, f) = (cfg.d_model, cfg.d_ff);
        Ok(if cfg.gated {
            FeedForward::Gated {
                wi_0: vb.lin("wi_0", d, f, false)?,
                wi_1: vb.lin("wi_1", d, f, false)?,
                wo: vb.lin("wo", f, d, false)?,
                act: cfg.activation,
            }
        } else {
            FeedForward::Plain {
                wi: vb.lin("wi", d, f, false)?,
                wo: vb.lin("wo", f, d, false)?,
                act: cfg.activation,
            }
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            FeedForward::Plain { wi, wo, act } => wo.forward(&act.apply(&wi.forward(x)?)?),
            FeedForward::Gated {
                wi_0,
                wi_1,
                wo,
                act,
            } => {
                let h = (act.apply(&wi_0.forward(x)?)? * wi_1.forward(x)?)?;
                wo.forward(&h)
            }
        }
    }
}

fn norm(vb: &Weights, cfg: &T5Config) -> Result<RmsNorm> {
    Ok(RmsNorm::new(
        vb.get(cfg.d_model, "layer_norm.weight")?,
        cfg.eps,
    ))
}

struct EncoderBlock {
    attn: Attention,
    attn_norm: RmsNorm,
    ffn: FeedForward,
    ffn_norm: RmsNorm,
}

struct DecoderBlock {
    attn: Attention,
    attn_norm: RmsNorm,
    cross: Attention,
    cross_norm: RmsNorm,
    ffn: FeedForward,
    ffn_norm: RmsNorm,
}

/// A loaded T5 model.
pub struct T5 {
    config: T5Config,
    embed: Embedding,
    lm_head: Lin,
    head_scale: f64,
    encoder: Vec<EncoderBlock>,
    encoder_norm: RmsNorm,
    decoder: Vec<DecoderBlock>,
    decoder_norm: RmsNorm,
}

impl T5 {
    pub fn load(vb: &Weights, config: T5Config) -> Result<Self> {
        let d = config.d_model;
        let shared = vb
            .get((config.vocab_size, d), "shared.weight")
            .context("loading shared.weight")?;
        // A head of its own when the checkpoint has one, else the embeddings.
        let lm_head = if vb.contains("lm_head.weight") {
            vb.lin("lm_head", d, config.vocab_size, false)?
        } else {
            Lin::new(shared.clone(), None, vb.quant())?
        };
        let head_scale = if config.scale_output {
            (d as f64).powf(-0.5)
        } else {
            1.0
        };
        let mut encoder = Vec::new();
        for i in 0..config.encoder_layers {
            let b = vb.pp(format!("encoder.block.{i}.layer"));
            encoder.push(EncoderBlock {
                attn: Attention::load(&b.pp("0.SelfAttention"), &config, i == 0)?,
                attn_norm: norm(&b.pp("0"), &config)?,
                ffn: FeedForward::load(&b.pp("1.DenseReluDense"), &config)?,
                ffn_norm: norm(&b.pp("1"), &config)?,
            });
        }
        let mut decoder = Vec::new();
        for i in 0..config.decoder_layers {
            let b = vb.pp(format!("decoder.block.{i}.layer"));
            decoder.push(DecoderBlock {
                attn: Attention::load(&b.pp("0.SelfAttention"), &config, i == 0)?,
                attn_norm: norm(&b.pp("0"), &config)?,
                cross: Attention::load(&b.pp("1.EncDecAttention"), &config, false)?,
                cross_norm: norm(&b.pp("1"), &config)?,
                ffn: FeedForward::load(&b.pp("2.DenseReluDense"), &config)?,
                ffn_norm: norm(&b.pp("2"), &config)?,
            });
        }
        let final_norm = |side: &str| -> Result<RmsNorm> {
            Ok(RmsNorm::new(
                vb.get(d, &format!("{side}.final_layer_norm.weight"))?,
                config.eps,
            ))
        };
        Ok(T5 {
            embed: Embedding::new(shared, d),
            lm_head,
            head_scale,
            encoder,
            encoder_norm: final_norm("encoder")?,
            decoder,
            decoder_norm: final_norm("decoder")?,
            config,
        })
    }

    pub fn config(&self) -> &T5Config {
        &self.config
    }
}

impl EncoderDecoder for T5 {
    fn max_positions(&self) -> usize {
        MAX_POSITIONS
    }

    fn encode(&self, ids: &Tensor, mask: &Tensor) -> Result<DecoderState> {
        let (_, s) = ids.dims2()?;
        let device = ids.device();
        let source_mask = additive_mask(mask)?;
        let positions: Vec<usize> = (0..s).collect();
        let bias = self.encoder[0]
            .attn
            .position_bias(&positions, s, true, &self.config, device)?
            .map(|b| b.broadcast_add(&source_mask))
            .transpose()?;
        let bias = bias.unwrap_or_else(|| source_mask.clone());
        let mut x = self.embed.forward(ids)?;
        for l in &self.encoder {
            let h = l.attn_norm.forward(&x)?;
            let (k, v) = l.attn.keys_values(&h)?;
            x = (x + l.attn.attend(&h, &k, &v, Some(&bias))?)?;
            let h = l.ffn_norm.forward(&x)?;
            x = (x + l.ffn.forward(&h)?)?;
        }
        let x = self.encoder_norm.forward(&x)?;
        let cross = self
            .decoder
            .iter()
            .map(|l| l.cross.keys_values(&x))
            .collect::<Result<Vec<_>>>()?;
        Ok(DecoderState::new(cross, source_mask))
    }

    fn step(&self, state: &mut DecoderState, tokens: &Tensor) -> Result<Tensor> {
        let device = tokens.device();
        let pos = state.pos;
        let bias =
            self.decoder[0]
                .attn
                .position_bias(&[pos], pos + 1, false, &self.config, device)?;
        let mut x = self.embed.forward(&tokens.unsqueeze(1)?)?;
        for (i, l) in self.decoder.iter().enumerate() {
            let h = l.attn_norm.forward(&x)?;
            let (k, v) = l.attn.keys_values(&h)?;
            let (k, v) = state.extend(i, k, v)?;
            let out = l.attn.attend(&h, &k, &v, bias.as_ref())?;
            x = (x + out)?;
            let h = l.cross_norm.forward(&x)?;
            let (ck, cv) = &state.cross[i];
            x = (x + l.cross.attend(&h, ck, cv, Some(&state.source_mask))?)?;
            let h = l.ffn_norm.forward(&x)?;
            x = (x + l.ffn.forward(&h)?)?;
        }
        state.pos += 1;
        let x = (self.decoder_norm.forward(&x)?.squeeze(1)? * self.head_scale)?;
        self.lm_head.forward(&x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_buckets_look_one_way() {
        // Exact range, then logarithmic, then capped.
        assert_eq!(relative_bucket(-3, false, 32, 128), 3);
        assert_eq!(relative_bucket(5, false, 32, 128), 0);
        assert_eq!(relative_bucket(-500, false, 32, 128), 31);
        // Two-way buckets split the range by direction.
        assert_eq!(relative_bucket(3, true, 32, 128), 19);
        assert_eq!(relative_bucket(-3, true, 32, 128), 3);
        assert_ne!(
            relative_bucket(-12, true, 32, 128),
            relative_bucket(-12, false, 32, 128)
        );
    }
}
