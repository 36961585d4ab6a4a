//! One decoder-only transformer for the Llama, Qwen2 and Qwen3 families.
//!
//! Written in the project rather than taken from candle-transformers so that
//! every numeric choice matches `transformers`: RoPE tables are computed in
//! f32 the way `transformers` computes them (candle's quantized Qwen3 builds
//! them in f16, which drifts by a tenth of a radian at 1K positions), the same
//! code serves dense and quantized weights, and Q/K norms, QKV biases and
//! tied heads are switches rather than separate copies of the model.

use anyhow::Result;
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::kv_cache::KvCache;

use super::config::{DecoderConfig, RopeStyle};
use super::kernels::{self, Matmul};
use super::weights::{Role, Shapes, Weights};
use super::CacheType;

struct Linear {
    weight: Matmul,
    bias: Option<Tensor>,
}

impl Linear {
    fn load(w: &mut Weights, role: Role, bias: Option<Role>, layer: usize) -> Result<Self> {
        let weight = w.matrix(role, layer)?;
        let bias = match bias {
            Some(b) => Some(w.dense(b, layer)?),
            None => None,
        };
        Ok(Linear { weight, bias })
    }

    /// `x`'s projection; with `step`, each row of `x` is one token of its
    /// own sequence (see [`Matmul::forward_step`]).
    fn forward(&self, x: &Tensor, step: bool) -> Result<Tensor> {
        self.add_bias(match step {
            true => self.weight.forward_step(x)?,
            false => self.weight.forward(x)?,
        })
    }

    fn add_bias(&self, y: Tensor) -> Result<Tensor> {
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// The projections of one input by several layers, in one pass where
    /// the kernels allow.
    fn forward_all<const N: usize>(
        ls: [&Linear; N],
        x: &Tensor,
        step: bool,
    ) -> Result<[Tensor; N]> {
        let ys = kernels::forward_all(&ls.map(|l| &l.weight), x, step)?;
        let mut out = Vec::with_capacity(N);
        for (l, y) in ls.iter().zip(ys) {
            out.push(l.add_bias(y)?);
        }
        out.try_into()
            .map_err(|_| anyhow::anyhow!("projection count"))
    }
}

struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    /// The norm of `role`, its weight plus `offset` (Gemma's 1 + w).
    fn load(w: &mut Weights, role: Role, layer: usize, eps: f64, offset: f32) -> Result<Self> {
        let weight = w.dense(role, layer)?;
        Ok(RmsNorm {
            weight: match offset {
                0.0 => weight,
                o => (weight + f64::from(o))?,
            },
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(
            &x.contiguous()?,
            &self.weight,
            self.eps,
        )?)
    }
}

/// Cosine and sine tables for every position the model may see.
struct Rope {
    cos: Tensor,
    sin: Tensor,
    style: RopeStyle,
}

impl Rope {
    fn new(cfg: &DecoderConfig, len: usize, device: &Device) -> Result<Self> {
        Self::with_base(
            cfg,
            cfg.rope_theta,
            cfg.rope_freq_factors.as_deref(),
            len,
            device,
        )
    }

    /// The tables for base `theta`, each frequency divided by its factor.
    fn with_base(
        cfg: &DecoderConfig,
        theta: f64,
        factors: Option<&[f32]>,
        len: usize,
        device: &Device,
    ) -> Result<Self> {
        let half = cfg.head_dim / 2;
        // `transformers` computes inv_freq as float32 `1 / theta ** (2i / d)` and
        // the angles as float32 products; doing the same keeps long prompts exact.
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                let exponent = (2 * i) as f32 / cfg.head_dim as f32;
                let inv = 1.0f32 / (theta as f32).powf(exponent);
                match factors {
                    Some(f) => inv / f[i],
                    None => inv,
                }
            })
            .collect();
        let len = len.max(1);
        let mut angles = Vec::with_capacity(len * half);
        for pos in 0..len {
            angles.extend(inv_freq.iter().map(|f| pos as f32 * f));
        }
        let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
        let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
        Ok(Rope {
            cos: Tensor::from_vec(cos, (len, half), device)?,
            sin: Tensor::from_vec(sin, (len, half), device)?,
            style: cfg.rope_style,
        })
    }

    fn apply(&self, x: &Tensor, pos: usize) -> Result<Tensor> {
        let seq = x.dim(2)?;
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        let x = x.contiguous()?;
        Ok(match self.style {
            RopeStyle::Half => candle_nn::rotary_emb::rope(&x, &cos, &sin)?,
            RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&x, &cos, &sin)?,
        })
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    /// What multiplies the query-key products.
    scale: f64,
    /// Gemma 3's windowed layers: how far back a query sees.
    window: Option<usize>,
    /// One cache per slot: the sequences decoded side by side
    /// ([`Decoder::forward_slots`]) each keep their own.
    caches: Vec<KvCache>,
    /// What the cache keeps: f16 for quantized and half-precision weights,
    /// as llama.cpp keeps it (half the bytes to read per token, and the
    /// values llama.cpp attends to); f32 for f32 weights, as transformers
    /// computes; Q8_0 when asked.
    cache_type: CacheType,
}

impl Attention {
    fn load(
        w: &mut Weights,
        cfg: &DecoderConfig,
        layer: usize,
        cache: Option<CacheType>,
    ) -> Result<Self> {
        let bias = |r: Role| cfg.qkv_bias.then_some(r);
        let offset = cfg.gemma.as_ref().map_or(0.0, |g| g.norm_offset);
        let norm = |w: &mut Weights, r: Role| -> Result<Option<RmsNorm>> {
            if cfg.qk_norm {
                Ok(Some(RmsNorm::load(w, r, layer, cfg.rms_norm_eps, offset)?))
            } else {
                Ok(None)
            }
        };
        let q = Linear::load(w, Role::Q, bias(Role::QBias), layer)?;
        let cache_type = match cache {
            Some(c) => c,
            None if q.weight.is_dense() => CacheType::F32,
            None => CacheType::F16,
        };
        if cache_type == CacheType::Q8_0 && kernels::kv_q8::row_bytes(cfg.head_dim).is_none() {
            anyhow::bail!(
                "--cache-type q8_0 needs heads of a multiple of 32 values; this model's have {}",
                cfg.head_dim
            );
        }
        Ok(Attention {
            q,
            k: Linear::load(w, Role::K, bias(Role::KBias), layer)?,
            v: Linear::load(w, Role::V, bias(Role::VBias), layer)?,
            o: Linear::load(w, Role::O, None, layer)?,
            q_norm: norm(w, Role::QNorm)?,
            k_norm: norm(w, Role::KNorm)?,
            num_heads: cfg.num_heads,
            num_kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
            scale: cfg
                .gemma
                .as_ref()
                .map_or(1.0 / (cfg.head_dim as f64).sqrt(), |g| g.query_scale),
            window: cfg
                .gemma
                .as_ref()
                .filter(|g| g.sliding[layer])
                .map(|g| g.sliding_window),
            caches: vec![new_cache()],
            cache_type,
        })
    }

    fn heads(&self, x: &Tensor, n: usize, norm: Option<&RmsNorm>) -> Result<Tensor> {
        let (b, seq, _) = x.dims3()?;
        let x = x.reshape((b, seq, n, self.head_dim))?;
        let x = match norm {
            Some(norm) => norm.forward(&x)?,
            None => x,
        };
        Ok(x.transpose(1, 2)?)
    }

    /// The attention of `x`'s rows, placed as `at` says.
    fn forward(&mut self, x: &Tensor, rope: &Rope, at: At) -> Result<Tensor> {
        let step = x.dim(1)? == 1;
        let [q, k, v] = Linear::forward_all([&self.q, &self.k, &self.v], x, step)?;
        let out = match at {
            At::Slot(slot, pos) => self.attend(&q, &k, &v, rope, slot, pos)?,
            At::Slots(steps) => {
                let mut outs = Vec::with_capacity(steps.len());
                for (i, &(slot, pos)) in steps.iter().enumerate() {
                    let row = |t: &Tensor| t.narrow(0, i, 1);
                    outs.push(self.attend(&row(&q)?, &row(&k)?, &row(&v)?, rope, slot, pos)?);
                }
                Tensor::cat(&outs, 0)?
            }
        };
        self.o.forward(&out, step)
    }

    /// Attention of projected rows `q`, `k`, `v` (b, seq, ·) at positions
    /// `pos..` of `slot`'s cache, which they join; (b, seq, heads·d).
    fn attend(
        &mut self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        rope: &Rope,
        slot: usize,
        pos: usize,
    ) -> Result<Tensor> {
        let (b, seq, _) = q.dims3()?;
        let q = self.heads(q, self.num_heads, self.q_norm.as_ref())?;
        let k = self.heads(k, self.num_kv_heads, self.k_norm.as_ref())?;
        let v = self.heads(v, self.num_kv_heads, None)?;
        let q = rope.apply(&q, pos)?;
        let k = rope.apply(&k, pos)?;
        let (k, v) = match self.cache_type {
            CacheType::F32 => (k.to_dtype(DType::F32)?, v.to_dtype(DType::F32)?),
            CacheType::F16 => (k.to_dtype(DType::F16)?, v.to_dtype(DType::F16)?),
            CacheType::Q8_0 => (kernels::kv_q8::quantize(&k)?, kernels::kv_q8::quantize(&v)?),
        };
        let (k, v) = self.caches[slot].append(&k, &v.contiguous()?)?;
        // Grouped-query attention without copying keys and values once per
        // query head: the query heads that share a key/value head become
        // more rows of one product, (b, kv, rep·seq, d) · (b, kv, d, total).
        let (kv, d) = (self.num_kv_heads, self.head_dim);
        let rep = self.num_heads / kv;
        let q = q.contiguous()?.reshape((b, kv, rep * seq, d))?;
        let scale = self.scale;
        let total = k.dim(2)?;
        // A window that reaches back past the first key changes nothing.
        let window = self.window.filter(|&w| total > w);
        let fast = match window {
            None => kernels::attention::attend(&q, &k, &v, seq, scale as f32)?,
            Some(_) => None,
        };
        let out = match fast {
            Some(out) => out,
            None => {
                let widen = |t: Tensor| match self.cache_type {
                    CacheType::Q8_0 => kernels::kv_q8::dequantize(&t),
                    _ => t.to_dtype(DType::F32),
                };
                let (k, v) = (widen(k)?, widen(v)?);
                let scores = (q.matmul(&k.t()?)? * scale)?;
                let scores = if seq > 1 || window.is_some() {
                    scores
                        .reshape((b, kv, rep, seq, total))?
                        .broadcast_add(&causal_mask(seq, total, window, q.device())?)?
                        .reshape((b, kv, rep * seq, total))?
                } else {
                    scores
                };
                candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?
            }
        };
        Ok(out
            .reshape((b, self.num_heads, seq, d))?
            .transpose(1, 2)?
            .reshape((b, seq, self.num_heads * d))?)
    }
}

/// A cache for one sequence (or the beams of one search): it grows as
/// positions come.
fn new_cache() -> KvCache {
    KvCache::new(2, 512)
}

/// Where the rows of a forward pass go.
#[derive(Clone, Copy)]
enum At<'a> {
    /// All rows into one slot's cache, from position `pos`: a prompt's
    /// positions, or one position of every beam.
    Slot(usize, usize),
    /// Row `i` is one token of slot `steps[i].0` at position `steps[i].1`.
    Slots(&'a [(usize, usize)]),
}

/// Additive mask letting query `i` (at absolute position `total - seq + i`)
/// see keys up to its own position, and within a sliding `window` no
/// further back than `window - 1` positions.
fn causal_mask(seq: usize, total: usize, window: Option<usize>, device: &Device) -> Result<Tensor> {
    let offset = total - seq;
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| {
            (0..total).map(move |j| {
                let at = offset + i;
                let seen = j <= at && window.is_none_or(|w| at - j < w);
                if seen {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (seq, total), device)?)
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
    /// Gemma's GELU (tanh approximation) instead of SiLU.
    gelu: bool,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let step = x.dim(1)? == 1;
        let [gate, up] = Linear::forward_all([&self.gate, &self.up], x, step)?;
        let gate = match self.gelu {
            true => gate.gelu()?,
            false => candle_nn::ops::silu(&gate)?,
        };
        self.down.forward(&(gate * up)?, step)
    }
}

struct Layer {
    attn_norm: RmsNorm,
    attn: Attention,
    ffn_norm: RmsNorm,
    mlp: Mlp,
    /// Gemma 3: norms of the attention's and the MLP's outputs.
    post_norms: Option<(RmsNorm, RmsNorm)>,
    /// Gemma 3: a windowed layer, with rope of its own.
    sliding: bool,
}

/// A loaded decoder with its key/value cache.
pub struct Decoder {
    /// The embedding table, or `None` where it is the output head's matrix
    /// and the head can look rows up (one copy serves both).
    embed: Option<QMatMul>,
    layers: Vec<Layer>,
    norm: RmsNorm,
    head: Matmul,
    rope: Rope,
    /// Gemma 3's windowed layers' rope.
    local_rope: Option<Rope>,
    /// Gemma multiplies the embeddings by √hidden.
    embed_scale: Option<f64>,
    /// The slot whose cache [`Decoder::forward`], [`Decoder::rewind`] and
    /// the beam methods use.
    active: usize,
}

impl Decoder {
    /// Builds the model from weights whose shape `config` describes, ready for
    /// sequences of up to `max_len` positions, with a key/value cache of
    /// type `cache` (by default, the weights' kind: see `cache_dtype`).
    pub fn load(
        w: &mut Weights,
        config: &DecoderConfig,
        max_len: usize,
        cache: Option<CacheType>,
        device: &Device,
    ) -> Result<Self> {
        let eps = config.rms_norm_eps;
        if config.gemma.is_some() {
            w.gemma_names();
        }
        w.expect(Shapes {
            hidden: config.hidden_size,
            heads: config.num_heads,
            kv_heads: config.num_kv_heads,
            head_dim: config.head_dim,
            ffn: config.intermediate_size,
            vocab: config.vocab_size,
        });
        let (embed, head) = if w.has(Role::Output, 0) {
            let embed = w.matmul(Role::TokenEmbedding, 0)?;
            (Some(embed), w.matrix(Role::Output, 0)?)
        } else {
            // A tied table is loaded once: the head, which either looks its
            // rows up itself or shares candle's tensor with the lookup.
            let head = w.matrix(Role::TokenEmbedding, 0)?;
            (head.as_candle(), head)
        };
        let gemma = config.gemma.as_ref();
        let offset = gemma.map_or(0.0, |g| g.norm_offset);
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let post_norms = match gemma {
                Some(_) => Some((
                    RmsNorm::load(w, Role::PostAttnNorm, i, eps, offset)?,
                    RmsNorm::load(w, Role::PostFfnNorm, i, eps, offset)?,
                )),
                None => None,
            };
            layers.push(Layer {
                attn_norm: RmsNorm::load(w, Role::AttnNorm, i, eps, offset)?,
                attn: Attention::load(w, config, i, cache)?,
                ffn_norm: RmsNorm::load(w, Role::FfnNorm, i, eps, offset)?,
                mlp: Mlp {
                    gate: Linear::load(w, Role::Gate, None, i)?,
                    up: Linear::load(w, Role::Up, None, i)?,
                    down: Linear::load(w, Role::Down, None, i)?,
                    gelu: gemma.is_some(),
                },
                post_norms,
                sliding: gemma.is_some_and(|g| g.sliding[i]),
            });
        }
        let local_rope = match gemma {
            Some(g) => Some(Rope::with_base(
                config,
                g.local_rope_theta,
                None,
                max_len,
                device,
            )?),
            None => None,
        };
        Ok(Decoder {
            embed,
            layers,
            norm: RmsNorm::load(w, Role::OutputNorm, 0, eps, offset)?,
            head,
            rope: Rope::new(config, max_len, device)?,
            local_rope,
            // transformers multiplies by √hidden rounded to the weights'
            // float type: f32 here.
            embed_scale: gemma.map(|_| f64::from((config.hidden_size as f32).sqrt())),
            active: 0,
        })
    }

    /// Runs `ids` placed at positions `pos..` and returns the logits of the
    /// last one; earlier positions must already be in the cache.
    pub fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Vec<f32>> {
        let input = Tensor::new(ids, self.rope.cos.device())?.unsqueeze(0)?;
        let at = At::Slot(self.active, pos);
        Ok(self.run(&input, at)?.squeeze(0)?.to_vec1()?)
    }

    /// Whether the model runs on the CPU, where [`Decoder::forward_slots`]
    /// gives each row the bits it gets alone.
    pub fn on_cpu(&self) -> bool {
        self.rope.cos.device().is_cpu()
    }

    /// Makes `slot` the cache that [`Decoder::forward`], [`Decoder::rewind`]
    /// and the beam methods use, making room for it first.
    pub fn select(&mut self, slot: usize) {
        for layer in &mut self.layers {
            let caches = &mut layer.attn.caches;
            if caches.len() <= slot {
                caches.resize_with(slot + 1, new_cache);
            }
        }
        self.active = slot;
    }

    /// One token for each of several sequences, each in its own slot's
    /// cache at its own position (`steps[i]` = (slot, id, position)), as one
    /// pass: the weights are read once for all of them. Returns each row's
    /// logits, every one the same bits as [`Decoder::forward`] gives that
    /// token alone: the products add up each row alike whatever the rows
    /// beside it ([`Matmul::forward_step`]), and attention reads each slot
    /// apart.
    pub fn forward_slots(&mut self, steps: &[(usize, u32, usize)]) -> Result<Vec<Vec<f32>>> {
        let ids: Vec<u32> = steps.iter().map(|s| s.1).collect();
        let at: Vec<(usize, usize)> = steps.iter().map(|s| (s.0, s.2)).collect();
        for &(slot, _) in &at {
            anyhow::ensure!(
                self.layers
                    .first()
                    .is_none_or(|l| slot < l.attn.caches.len()),
                "slot {slot} was never selected"
            );
        }
        let input = Tensor::new(ids.as_slice(), self.rope.cos.device())?.unsqueeze(1)?;
        Ok(self.run(&input, At::Slots(&at))?.to_vec2()?)
    }

    /// Runs one token per row of the cache, all at position `pos` (the
    /// beams of a beam search), and returns each row's logits.
    pub fn forward_rows(&mut self, ids: &[u32], pos: usize) -> Result<Vec<Vec<f32>>> {
        let input = Tensor::new(ids, self.rope.cos.device())?.unsqueeze(1)?;
        Ok(self.run(&input, At::Slot(self.active, pos))?.to_vec2()?)
    }

    /// Makes row `i` of every layer's cache a copy of row `rows[i]`: beams
    /// follow the beams they continue, and one row can become many.
    pub fn reorder(&mut self, rows: &[usize]) -> Result<()> {
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::from_vec(idx, rows.len(), self.rope.cos.device())?;
        for layer in &mut self.layers {
            let cache = &mut layer.attn.caches[self.active];
            if let (Some(k), Some(v)) = (cache.k()?, cache.v()?) {
                let k = k.contiguous()?.index_select(&idx, 0)?;
                let v = v.contiguous()?.index_select(&idx, 0)?;
                cache.reset();
                cache.append(&k, &v)?;
            }
        }
        Ok(())
    }

    /// The logits (B, V) after the last of the (B, T) `input` ids, placed
    /// as `at` says.
    fn run(&mut self, input: &Tensor, at: At) -> Result<Tensor> {
        let seq = input.dim(1)?;
        let limit = self.rope.cos.dim(0)?;
        let end = match at {
            At::Slot(_, pos) => pos + seq,
            At::Slots(steps) => steps.iter().map(|s| s.1 + 1).max().unwrap_or(0),
        };
        if end > limit {
            anyhow::bail!(
                "sequence of {end} positions exceeds the {limit} this model was loaded for"
            );
        }
        let x = match &self.embed {
            Some(table) => table.embedding(input)?,
            None => self.head.embedding(input)?,
        };
        let mut x = x.to_dtype(DType::F32)?;
        if let Some(scale) = self.embed_scale {
            x = (x * scale)?;
        }
        for layer in &mut self.layers {
            let rope = match (&self.local_rope, layer.sliding) {
                (Some(local), true) => local,
                _ => &self.rope,
            };
            let mut h = layer
                .attn
                .forward(&layer.attn_norm.forward(&x)?, rope, at)?;
            if let Some((post_attn, _)) = &layer.post_norms {
                h = post_attn.forward(&h)?;
            }
            x = (x + h)?;
            let mut h = layer.mlp.forward(&layer.ffn_norm.forward(&x)?)?;
            if let Some((_, post_ffn)) = &layer.post_norms {
                h = post_ffn.forward(&h)?;
            }
            x = (x + h)?;
        }
        let last = self.norm.forward(&x.narrow(1, seq - 1, 1)?)?;
        let logits = match seq {
            1 => self.head.forward_step(&last)?,
            _ => self.head.forward(&last)?,
        };
        Ok(logits.squeeze(1)?.to_dtype(DType::F32)?)
    }

    /// Keeps the first `len` cached positions, so a prompt that starts the
    /// same way can go on from there; 0 starts afresh.
    pub fn rewind(&mut self, len: usize) -> Result<()> {
        self.keep(len, false)
    }

    /// The active slot's first `len` positions kept in every layer; with
    /// `release`, in a cache of their size, else in the one it has grown
    /// to (a cache that is reset keeps its size for what comes next).
    fn keep(&mut self, len: usize, release: bool) -> Result<()> {
        for layer in &mut self.layers {
            let cache = &mut layer.attn.caches[self.active];
            if len >= cache.current_seq_len() && !release {
                continue;
            }
            let kept = match (len.min(cache.current_seq_len()), cache.k()?, cache.v()?) {
                (len @ 1.., Some(k), Some(v)) => Some((
                    k.narrow(2, 0, len)?.contiguous()?,
                    v.narrow(2, 0, len)?.contiguous()?,
                )),
                _ => None,
            };
            match release {
                true => *cache = new_cache(),
                false => cache.reset(),
            }
            if let Some((k, v)) = kept {
                cache.append(&k, &v)?;
            }
        }
        Ok(())
    }
}

impl Decoder {
    /// [`Decoder::rewind`], and the active slot's cache takes no more
    /// memory than the positions kept: a cache that grew for a long call
    /// stays that large through rewinds.
    pub fn trim(&mut self, len: usize) -> Result<()> {
        self.keep(len, true)
    }

    /// Bytes of key/value cache one position takes, over every layer.
    pub fn cache_bytes_per_position(&self) -> usize {
        self.layers
            .iter()
            // Exact for every type: a Q8_0 cache's heads are whole blocks.
            .map(|l| {
                2 * l.attn.num_kv_heads * l.attn.head_dim * l.attn.cache_type.block_bytes() / 32
            })
            .sum()
    }
}

impl super::generate::Forward for Decoder {
    fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Vec<f32>> {
        Decoder::forward(self, ids, pos)
    }
    fn trim(&mut self, len: usize) -> Result<()> {
        Decoder::trim(self, len)
    }
    fn rewind(&mut self, len: usize) -> Result<()> {
        Decoder::rewind(self, len)
    }
    fn forward_rows(&mut self, ids: &[u32], pos: usize) -> Result<Vec<Vec<f32>>> {
        Decoder::forward_rows(self, ids, pos)
    }
    fn reorder(&mut self, rows: &[usize]) -> Result<()> {
        Decoder::reorder(self, rows)
    }
    fn select(&mut self, slot: usize) -> Result<()> {
        Decoder::select(self, slot);
        Ok(())
    }
    fn forward_slots(&mut self, steps: &[(usize, u32, usize)]) -> Result<Vec<Vec<f32>>> {
        Decoder::forward_slots(self, steps)
    }
}
