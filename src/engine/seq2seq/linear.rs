//! Where a translation model's tensors come from, and its projections.
//!
//! Weights are read by their Hugging Face names from safetensors or from a
//! GGUF file that keeps those names (as candle's `tensor-tools quantize`
//! writes them, e.g. MADLAD-400's `model-q4k.gguf`). A projection's weight
//! stays quantized when the file has it so, and can be quantized in memory
//! at load (`--quantize q8_0`): checkpoints are published in f32/f16, and
//! Q8_0 matmuls read a quarter of the bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Module, Shape, Tensor};

use crate::engine::kernels::Matmul;
use crate::engine::weights::{float_matrix, GgufFile};
use crate::error::Error;

enum Store {
    Safetensors(MmapedSafetensors),
    Gguf(GgufFile),
}

/// Tensors of one model under a name prefix (`model.encoder.layers.0`).
#[derive(Clone)]
pub struct Weights {
    store: Arc<Store>,
    prefix: String,
    device: Device,
    /// In-memory format for projections read as floats.
    quant: Option<GgmlDType>,
}

impl Weights {
    /// Memory-maps safetensors files (one, or the shards of an index).
    pub fn safetensors(
        paths: &[PathBuf],
        quant: Option<GgmlDType>,
        device: &Device,
    ) -> Result<Self> {
        let st = crate::engine::weights::map_safetensors(paths)?;
        Ok(Self::new(Store::Safetensors(st), quant, device))
    }

    /// Opens a GGUF file whose tensors carry Hugging Face names.
    pub fn gguf(path: &Path, quant: Option<GgmlDType>, device: &Device) -> Result<Self> {
        let file = GgufFile::open(path)?;
        Ok(Self::new(Store::Gguf(file), quant, device))
    }

    fn new(store: Store, quant: Option<GgmlDType>, device: &Device) -> Self {
        Weights {
            store: Arc::new(store),
            prefix: String::new(),
            device: device.clone(),
            quant,
        }
    }

    /// The same tensors under `prefix.name`.
    pub fn pp(&self, name: impl AsRef<str>) -> Self {
        let mut w = self.clone();
        w.prefix = self.full(name.as_ref());
        w
    }

    fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The in-memory format asked for projections.
    pub fn quant(&self) -> Option<GgmlDType> {
        self.quant
    }

    /// Whether the file has `name` (under this prefix).
    pub fn contains(&self, name: &str) -> bool {
        let full = self.full(name);
        match &*self.store {
            Store::Safetensors(st) => st.get(&full).is_ok(),
            Store::Gguf(g) => g.content.tensor_infos.contains_key(&full),
        }
    }

    fn check(&self, full: &str, got: &Shape, want: &Shape) -> Result<()> {
        if got != want {
            return Err(Error::model(format!(
                "tensor {full} has shape {got:?}, the config implies {want:?}"
            ))
            .into());
        }
        Ok(())
    }

    fn qtensor(&self, full: &str) -> Result<QTensor> {
        match &*self.store {
            Store::Gguf(g) => g.qtensor(full, &self.device),
            Store::Safetensors(_) => unreachable!("only GGUF holds quantized tensors"),
        }
    }

    /// A tensor as f32, dequantized if the file holds it quantized.
    pub fn get(&self, shape: impl Into<Shape>, name: &str) -> Result<Tensor> {
        Ok(self.float(shape, name)?.to_dtype(DType::F32)?)
    }

    /// A tensor in the file's float precision (f32, f16 or bf16 from
    /// safetensors), or as f32 if the file holds it quantized.
    fn float(&self, shape: impl Into<Shape>, name: &str) -> Result<Tensor> {
        let full = self.full(name);
        let want = shape.into();
        let t = match &*self.store {
            Store::Safetensors(st) => st
                .load(&full, &self.device)
                .map_err(|e| Error::model(format!("weights: {full}: {e}")))?,
            Store::Gguf(_) => self.qtensor(&full)?.dequantize(&self.device)?,
        };
        self.check(&full, t.shape(), &want)?;
        Ok(t)
    }

    /// `name.weight` (out × in) and, when `bias`, `name.bias`, as a projection.
    pub fn lin(&self, name: &str, in_dim: usize, out_dim: usize, bias: bool) -> Result<Lin> {
        let w = self.pp(name);
        let b = if bias {
            Some(w.get(out_dim, "bias")?)
        } else {
            None
        };
        let full = w.full("weight");
        if let Store::Gguf(_) = &*self.store {
            let q = self.qtensor(&full)?;
            self.check(&full, q.shape(), &Shape::from((out_dim, in_dim)))?;
            if !matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) {
                return Ok(Lin {
                    weight: Matmul::new(QMatMul::from_arc(Arc::new(q))?),
                    bias: b,
                });
            }
        }
        Lin::new(w.float((out_dim, in_dim), "weight")?, b, self.quant)
    }
}

/// Weight (out × in) and optional bias of one projection.
pub struct Lin {
    weight: Matmul,
    bias: Option<Tensor>,
}

impl Lin {
    /// A projection from a float weight, quantized to `quant` when its rows
    /// fit the format's blocks, else kept as its device takes it (see
    /// [`float_matrix`]).
    pub fn new(weight: Tensor, bias: Option<Tensor>, quant: Option<GgmlDType>) -> Result<Self> {
        let in_dim = weight.dim(1)?;
        let weight = Matmul::new(match quant {
            Some(q) if in_dim % q.block_size() == 0 => {
                let weight = weight.to_dtype(DType::F32)?;
                QMatMul::from_arc(Arc::new(QTensor::quantize(&weight, q)?))?
            }
            _ => {
                let device = weight.device().clone();
                float_matrix(weight, &device)?
            }
        });
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
