//! A projection whose weight is dense f32 or quantized in memory at load
//! (`--quantize q8_0`): safetensors checkpoints are published in f32/f16,
//! and Q8_0 matmuls read a quarter of the bytes.

use std::sync::Arc;

use anyhow::Result;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

/// Weight (out × in) and optional bias of one projection.
pub struct Lin {
    weight: QMatMul,
    bias: Option<Tensor>,
}

impl Lin {
    /// Loads `{prefix}.weight` (and `{prefix}.bias` when `bias`); quantizes
    /// the weight when asked and its rows fit the format's blocks.
    pub fn load(
        vb: &VarBuilder,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        quant: Option<GgmlDType>,
    ) -> Result<Self> {
        let w = vb.get((out_dim, in_dim), "weight")?;
        let b = if bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        Self::new(w, b, quant)
    }

    pub fn new(weight: Tensor, bias: Option<Tensor>, quant: Option<GgmlDType>) -> Result<Self> {
        let in_dim = weight.dim(1)?;
        let weight = match quant {
            Some(q) if in_dim % q.block_size() == 0 => {
                QMatMul::from_arc(Arc::new(QTensor::quantize(&weight, q)?))?
            }
            _ => QMatMul::Tensor(weight),
        };
        Ok(Lin { weight, bias })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.weight.forward(x)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}
