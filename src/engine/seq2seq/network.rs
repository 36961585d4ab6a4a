//! What Marian and T5 share as networks: the activations their configs
//! name, the step-by-step interface the decoding drivers use, the decoder's
//! caches, and the tensor shapes of multi-head attention.

use anyhow::Result;
use candle_core::{DType, Tensor};

use crate::error::Error;

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
    pub(super) fn retain(&mut self, rows: &[usize]) -> Result<()> {
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
    pub(super) fn reorder_past(&mut self, rows: &[usize]) -> Result<()> {
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

/// An integer of a model's `config.json`.
pub(crate) fn config_int(v: &serde_json::Value, key: &str) -> Result<usize> {
    v.get(key)
        .and_then(serde_json::Value::as_u64)
        .map(|x| x as usize)
        .ok_or_else(|| Error::model(format!("config.json has no `{key}`")).into())
}

/// A size in a model's `config.json`: a zero would divide by zero or build
/// empty layers, so it is refused.
pub(crate) fn config_size(v: &serde_json::Value, key: &str) -> Result<usize> {
    match config_int(v, key)? {
        0 => Err(Error::model(format!("config.json gives `{key}` as 0")).into()),
        n => Ok(n),
    }
}
