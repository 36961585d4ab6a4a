//! Weight access that hides whether tensors come from safetensors or GGUF.
//!
//! The decoder asks for tensors by role ("layer 3, key projection"); this
//! module knows how each format names them and turns them into either dense
//! f32 tensors or quantized matmuls.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
#[cfg(unix)]
use memmap2::UncheckedAdvice;

use crate::engine::kernels::Matmul;
use crate::error::Error;

/// A tensor of the decoder, independent of any file format's naming.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    TokenEmbedding,
    OutputNorm,
    Output,
    AttnNorm,
    Q,
    K,
    V,
    O,
    QBias,
    KBias,
    VBias,
    QNorm,
    KNorm,
    FfnNorm,
    /// Gemma 3: the norms of the attention's and the MLP's outputs.
    PostAttnNorm,
    PostFfnNorm,
    Gate,
    Up,
    Down,
}

/// The name transformers gives a tensor. Gemma 3's norms: its
/// `post_attention_layernorm` follows the attention, and the MLP's input
/// norm is `pre_feedforward_layernorm`, where Llama's and Qwen's
/// `post_attention_layernorm` is the MLP's input norm.
fn hf_name(role: Role, layer: usize, gemma: bool, prefix: &Prefix) -> String {
    let global = match role {
        Role::TokenEmbedding => Some("embed_tokens.weight"),
        Role::OutputNorm => Some("norm.weight"),
        Role::Output => return prefix.head.to_string(),
        _ => None,
    };
    if let Some(name) = global {
        return format!("{}{name}", prefix.model);
    }
    let local = match role {
        Role::AttnNorm => "input_layernorm.weight",
        Role::Q => "self_attn.q_proj.weight",
        Role::K => "self_attn.k_proj.weight",
        Role::V => "self_attn.v_proj.weight",
        Role::O => "self_attn.o_proj.weight",
        Role::QBias => "self_attn.q_proj.bias",
        Role::KBias => "self_attn.k_proj.bias",
        Role::VBias => "self_attn.v_proj.bias",
        Role::QNorm => "self_attn.q_norm.weight",
        Role::KNorm => "self_attn.k_norm.weight",
        Role::FfnNorm if gemma => "pre_feedforward_layernorm.weight",
        Role::FfnNorm => "post_attention_layernorm.weight",
        Role::PostAttnNorm => "post_attention_layernorm.weight",
        Role::PostFfnNorm => "post_feedforward_layernorm.weight",
        Role::Gate => "mlp.gate_proj.weight",
        Role::Up => "mlp.up_proj.weight",
        Role::Down => "mlp.down_proj.weight",
        Role::TokenEmbedding | Role::OutputNorm | Role::Output => unreachable!(),
    };
    format!("{}layers.{layer}.{local}", prefix.model)
}

/// Where a checkpoint keeps its decoder: `model.` for a causal LM, inside
/// the language model of a multimodal one (Gemma 3, TranslateGemma) as
/// transformers saves it now or did before.
#[derive(Debug, Clone, Copy)]
struct Prefix {
    model: &'static str,
    head: &'static str,
}

const PREFIXES: [Prefix; 3] = [
    Prefix {
        model: "model.",
        head: "lm_head.weight",
    },
    Prefix {
        model: "model.language_model.",
        head: "lm_head.weight",
    },
    Prefix {
        model: "language_model.model.",
        head: "language_model.lm_head.weight",
    },
];

pub(crate) fn gguf_name(role: Role, layer: usize) -> String {
    let global = match role {
        Role::TokenEmbedding => Some("token_embd.weight"),
        Role::OutputNorm => Some("output_norm.weight"),
        Role::Output => Some("output.weight"),
        _ => None,
    };
    if let Some(name) = global {
        return name.to_string();
    }
    let local = match role {
        Role::AttnNorm => "attn_norm.weight",
        Role::Q => "attn_q.weight",
        Role::K => "attn_k.weight",
        Role::V => "attn_v.weight",
        Role::O => "attn_output.weight",
        Role::QBias => "attn_q.bias",
        Role::KBias => "attn_k.bias",
        Role::VBias => "attn_v.bias",
        Role::QNorm => "attn_q_norm.weight",
        Role::KNorm => "attn_k_norm.weight",
        Role::FfnNorm => "ffn_norm.weight",
        Role::PostAttnNorm => "post_attention_norm.weight",
        Role::PostFfnNorm => "post_ffw_norm.weight",
        Role::Gate => "ffn_gate.weight",
        Role::Up => "ffn_up.weight",
        Role::Down => "ffn_down.weight",
        Role::TokenEmbedding | Role::OutputNorm | Role::Output => unreachable!(),
    };
    format!("blk.{layer}.{local}")
}

enum Source {
    Safetensors(MmapedSafetensors),
    Gguf(GgufFile),
}

/// Tensors of one model, read lazily by role.
pub struct Weights {
    source: Source,
    origin: PathBuf,
    device: Device,
    /// Block format for float matrices (see `LoadOptions::quantize`).
    quantize: Option<GgmlDType>,
    /// The shapes the model's config describes, once known: every tensor
    /// is checked against them as it loads, so that a config that does not
    /// fit its weights is an error naming both, not a failed product later.
    shapes: Option<Shapes>,
    /// Gemma 3's names for the norms (see [`hf_name`]).
    gemma: bool,
    prefix: Prefix,
}

/// The sizes a decoder's tensors have, from its config.
#[derive(Debug, Clone, Copy)]
pub struct Shapes {
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub vocab: usize,
}

impl Shapes {
    /// The shape of the tensor that plays `role`, as candle orders
    /// dimensions (a matrix is rows × columns, `x @ Wᵀ`).
    fn of(&self, role: Role) -> Vec<usize> {
        let (q, kv) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
        match role {
            Role::TokenEmbedding | Role::Output => vec![self.vocab, self.hidden],
            Role::OutputNorm
            | Role::AttnNorm
            | Role::FfnNorm
            | Role::PostAttnNorm
            | Role::PostFfnNorm => vec![self.hidden],
            Role::Q => vec![q, self.hidden],
            Role::K | Role::V => vec![kv, self.hidden],
            Role::O => vec![self.hidden, q],
            Role::QBias => vec![q],
            Role::KBias | Role::VBias => vec![kv],
            Role::QNorm | Role::KNorm => vec![self.head_dim],
            Role::Gate | Role::Up => vec![self.ffn, self.hidden],
            Role::Down => vec![self.hidden, self.ffn],
        }
    }
}

/// A float matrix as the product on `device` takes it. A GPU keeps f16
/// and bf16 matrices in their precision: cuBLAS multiplies them at full
/// speed from half the memory ([`crate::engine::kernels::Matmul`] converts
/// the activations). The CPU widens them to f32, as transformers computes.
pub(crate) fn float_matrix(t: Tensor, device: &Device) -> Result<QMatMul> {
    Ok(match t.dtype() {
        DType::F16 | DType::BF16 if !device.is_cpu() => QMatMul::Tensor(t),
        _ => QMatMul::Tensor(t.to_dtype(DType::F32)?),
    })
}

/// A GGUF matrix on `device`. On the CPU it stays as the file has it
/// (glot's kernels widen half precision as they read). On a GPU, half
/// precision becomes a dense half tensor for cuBLAS, converted once here,
/// and quantized formats go to candle's quantized CUDA products.
fn gguf_matrix(q: QTensor, device: &Device) -> Result<QMatMul> {
    let half = match q.dtype() {
        GgmlDType::F16 => DType::F16,
        GgmlDType::BF16 => DType::BF16,
        _ => return Ok(QMatMul::from_arc(Arc::new(q))?),
    };
    Ok(match device.is_cpu() {
        true => QMatMul::QTensor(Arc::new(q)),
        // candle's CUDA dequantization has no kernel for half precision
        // and passes through the CPU: once, at load.
        false => QMatMul::Tensor(q.dequantize(device)?.to_dtype(half)?),
    })
}

/// Memory-maps safetensors files (one, or the shards of an index). An
/// unreadable file is the user's to replace: a model error, not a failure
/// of glot's.
pub(crate) fn map_safetensors(paths: &[PathBuf]) -> Result<MmapedSafetensors> {
    // SAFETY: the files are opened read-only; like every mmap-based loader we
    // rely on nobody truncating them while the model runs.
    Ok(unsafe { MmapedSafetensors::multi(paths) }.map_err(|e| {
        Error::model(format!(
            "{}: not a readable safetensors file ({e})",
            paths[0].display()
        ))
    })?)
}

/// A GGUF file mapped into memory, its header parsed.
///
/// Tensors are read from the mapping rather than copied out with `read`:
/// each is turned once into the layout its product takes (glot's panels,
/// or candle's blocks), straight from the page cache, and its pages are
/// then handed back ([`GgufFile::release`]). The process so holds the
/// weights once, and a warm load costs one pass over them rather than a
/// read, a copy into candle's blocks and a rearrangement.
pub struct GgufFile {
    pub content: gguf_file::Content,
    map: Mmap,
    path: PathBuf,
}

impl GgufFile {
    /// Maps `path` and reads its header: metadata and tensor list. A file
    /// that is not GGUF, or whose tensors are of a type glot cannot compute
    /// with (the IQ types, ternary and MXFP4 blocks), is a one-line model
    /// error that names the type.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: the file is opened read-only; like every mmap-based loader
        // we rely on nobody truncating it while its tensors are read.
        let map = unsafe { Mmap::map(&file) }
            .with_context(|| format!("cannot map {}", path.display()))?;
        let content = read_header(path, &map)?;
        Ok(GgufFile {
            content,
            map,
            path: path.to_path_buf(),
        })
    }

    /// Tensor `name`'s description and bytes, inside the mapping.
    pub fn bytes(&self, name: &str) -> Result<(&gguf_file::TensorInfo, &[u8])> {
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| Error::ModelFileMissing {
                path: self.path.clone(),
                what: format!("tensor `{name}`"),
            })?;
        let (elems, block) = (info.shape.elem_count(), info.ggml_dtype.block_size());
        if !elems.is_multiple_of(block) {
            return Err(Error::model(format!(
                "{}: tensor `{name}` has {elems} values, not whole blocks of {block}",
                self.path.display()
            ))
            .into());
        }
        // `open` checked that every tensor lies inside the file.
        let bytes = data_range(&self.content, info)
            .and_then(|r| self.map.get(r.start as usize..r.end as usize))
            .ok_or_else(|| {
                Error::model(format!(
                    "{}: tensor `{name}` lies past the end of the file",
                    self.path.display()
                ))
            })?;
        Ok((info, bytes))
    }

    /// Tensor `name` as candle's quantized tensor: one copy out of the
    /// mapping, whose pages are then handed back.
    pub fn qtensor(&self, name: &str, device: &Device) -> Result<QTensor> {
        let (info, bytes) = self.bytes(name)?;
        let dims = info.shape.dims().to_vec();
        let q = if (bytes.as_ptr() as usize).is_multiple_of(ALIGN) {
            qtensor_from_ggml(info.ggml_dtype, bytes, dims, device)
        } else {
            // candle reads the bytes as f32, f16 or blocks in place: a file
            // whose tensors are not aligned goes through an aligned copy.
            let mut words = vec![0u64; bytes.len().div_ceil(ALIGN)];
            // SAFETY: `words` holds at least `bytes.len()` bytes.
            let aligned = unsafe {
                std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, bytes.len())
            };
            aligned.copy_from_slice(bytes);
            qtensor_from_ggml(info.ggml_dtype, aligned, dims, device)
        }
        .map_err(|e| Error::model(format!("{}: {name}: {e}", self.path.display())))?;
        self.release(bytes);
        Ok(q)
    }

    /// Hands the pages of `bytes`, a tensor read and converted, back to
    /// the page cache: without this, every page read would stay counted in
    /// the process beside the converted copy until the file is unmapped.
    pub fn release(&self, bytes: &[u8]) {
        #[cfg(unix)]
        {
            let offset = bytes.as_ptr() as usize - self.map.as_ptr() as usize;
            // SAFETY: the mapping is read-only file memory: pages dropped
            // are read again from the file if touched, never lost or zeroed.
            // The advice is a hint; its failure changes nothing.
            let _ = unsafe {
                self.map
                    .unchecked_advise_range(UncheckedAdvice::DontNeed, offset, bytes.len())
            };
        }
        #[cfg(not(unix))]
        let _ = bytes;
    }
}

/// The alignment candle's reading of tensor bytes in place needs at most.
const ALIGN: usize = 8;

/// Reads a GGUF header from the mapped file `map` of `path`.
fn read_header(path: &Path, map: &[u8]) -> Result<gguf_file::Content> {
    match gguf_file::Content::read(&mut std::io::Cursor::new(map)) {
        Ok(content) => {
            let len = map.len() as u64;
            if let Some(name) = beyond_end(&content, len) {
                return Err(Error::model(format!(
                    "{}: the file is cut short: tensor {name} lies past its end ({len} bytes)",
                    path.display()
                ))
                .into());
            }
            Ok(content)
        }
        Err(e) => {
            // candle's message may carry a backtrace: its first line says it.
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or_default().trim();
            let unknown = first
                .strip_prefix("unknown dtype for tensor ")
                .and_then(|n| n.trim().parse::<u32>().ok());
            Err(Error::model(match unknown {
                Some(t) => format!(
                    "{}: tensors of type {} are not supported (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K to Q6_K); convert the model with llama-quantize to one of them",
                    path.display(),
                    ggml_type_name(t)
                ),
                None => format!("{}: not a readable GGUF file ({first})", path.display()),
            })
            .into())
        }
    }
}

/// The name of a tensor whose data would lie past the end of a file of
/// `len` bytes: a download cut short, found before any tensor is read.
fn beyond_end(content: &gguf_file::Content, len: u64) -> Option<&str> {
    content.tensor_infos.iter().find_map(|(name, t)| {
        data_range(content, t)
            .is_none_or(|r| r.end > len)
            .then_some(name.as_str())
    })
}

/// Where tensor `t`'s data lies in the file, in bytes; `None` where a
/// header's numbers overflow (a file that is not what it claims).
fn data_range(content: &gguf_file::Content, t: &gguf_file::TensorInfo) -> Option<Range<u64>> {
    let dims = t.shape.dims();
    let elems = dims
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))?;
    let (block, bytes) = (t.ggml_dtype.block_size(), t.ggml_dtype.type_size());
    let size = (elems / block as u64).checked_mul(bytes as u64)?;
    let start = content.tensor_data_offset.checked_add(t.offset)?;
    Some(start..start.checked_add(size)?)
}

/// ggml's name of a tensor type number.
fn ggml_type_name(t: u32) -> String {
    let name = match t {
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return format!("number {t}"),
    };
    name.to_string()
}

impl Weights {
    /// Memory-maps safetensors files (one, or the shards of an index).
    pub fn safetensors(paths: &[PathBuf], device: &Device) -> Result<Self> {
        let st = map_safetensors(paths)?;
        Ok(Weights {
            source: Source::Safetensors(st),
            origin: paths[0].clone(),
            device: device.clone(),
            quantize: None,
            shapes: None,
            gemma: false,
            prefix: PREFIXES[0],
        })
    }

    /// Quantizes float matrices to `q` as they are loaded.
    pub fn quantized(self, q: Option<GgmlDType>) -> Self {
        Weights {
            quantize: q,
            ..self
        }
    }

    /// The tensors of a mapped GGUF file.
    pub fn gguf(file: GgufFile, device: &Device) -> Result<Self> {
        Ok(Weights {
            origin: file.path.clone(),
            source: Source::Gguf(file),
            device: device.clone(),
            quantize: None,
            shapes: None,
            gemma: false,
            prefix: PREFIXES[0],
        })
    }

    /// Reads tensors by Gemma 3's names from now on, from wherever the
    /// checkpoint keeps its language model (the vision tower of a
    /// multimodal one is never read).
    pub fn gemma_names(&mut self) {
        self.gemma = true;
        if let Some(p) = PREFIXES
            .into_iter()
            .find(|p| self.has_name(&format!("{}embed_tokens.weight", p.model)))
        {
            self.prefix = p;
        }
    }

    /// Checks every tensor loaded from now on against `shapes`.
    pub fn expect(&mut self, shapes: Shapes) {
        self.shapes = Some(shapes);
    }

    /// The tensor `name`'s shape in the file, when it has the tensor.
    fn shape_in_file(&self, name: &str) -> Option<Vec<usize>> {
        match &self.source {
            Source::Safetensors(st) => st.get(name).ok().map(|v| v.shape().to_vec()),
            Source::Gguf(g) => g
                .content
                .tensor_infos
                .get(name)
                .map(|t| t.shape.dims().to_vec()),
        }
    }

    /// An error unless the tensor of `role` has the shape the config
    /// describes (when shapes are expected).
    fn check_shape(&self, role: Role, name: &str) -> Result<()> {
        let (Some(shapes), Some(got)) = (self.shapes, self.shape_in_file(name)) else {
            return Ok(());
        };
        let want = shapes.of(role);
        if got != want {
            return Err(Error::model(format!(
                "{}: tensor `{name}` is {got:?}, but the model's configuration describes {want:?} (hidden size {}, {} heads and {} key/value heads of {}, feed-forward {}, vocabulary {})",
                self.origin.display(),
                shapes.hidden,
                shapes.heads,
                shapes.kv_heads,
                shapes.head_dim,
                shapes.ffn,
                shapes.vocab
            ))
            .into());
        }
        Ok(())
    }

    fn name(&self, role: Role, layer: usize) -> String {
        match self.source {
            Source::Safetensors(_) => hf_name(role, layer, self.gemma, &self.prefix),
            Source::Gguf(_) => gguf_name(role, layer),
        }
    }

    /// Whether the model has this tensor (biases, norms and heads are optional).
    pub fn has(&self, role: Role, layer: usize) -> bool {
        self.has_name(&self.name(role, layer))
    }

    /// Whether a tensor of this file-specific name exists.
    pub fn has_name(&self, name: &str) -> bool {
        match &self.source {
            Source::Safetensors(st) => st.get(name).is_ok(),
            Source::Gguf(g) => g.content.tensor_infos.contains_key(name),
        }
    }

    fn missing(&self, name: &str) -> anyhow::Error {
        Error::ModelFileMissing {
            path: self.origin.clone(),
            what: format!("tensor `{name}`"),
        }
        .into()
    }

    /// A weight matrix ready for `x @ W^T`, kept quantized when the file is.
    pub fn matmul(&mut self, role: Role, layer: usize) -> Result<QMatMul> {
        let name = self.located(role, layer)?;
        self.matmul_named(&name)
    }

    /// The tensor of `role`'s file-specific name, once the file is known to
    /// have it in the shape the config describes.
    fn located(&self, role: Role, layer: usize) -> Result<String> {
        let name = self.name(role, layer);
        if !self.has(role, layer) {
            return Err(self.missing(&name));
        }
        self.check_shape(role, &name)?;
        Ok(name)
    }

    /// [`Weights::matmul`] of a tensor [`Weights::located`].
    fn matmul_named(&mut self, name: &str) -> Result<QMatMul> {
        let m = match &mut self.source {
            Source::Safetensors(st) => {
                let t = st.load(name, &self.device)?;
                match self.quantize {
                    Some(q) if t.dim(1)? % q.block_size() == 0 => {
                        let t = t.to_dtype(DType::F32)?;
                        QMatMul::from_arc(Arc::new(QTensor::quantize(&t, q)?))?
                    }
                    _ => float_matrix(t, &self.device)?,
                }
            }
            Source::Gguf(g) => gguf_matrix(g.qtensor(name, &self.device)?, &self.device)?,
        };
        Ok(m)
    }

    /// A weight matrix as glot's product takes it ([`Matmul::new`]). A
    /// GGUF matrix in a block format goes into panels on the CPU straight
    /// from the mapped file, without passing through candle's blocks.
    pub fn matrix(&mut self, role: Role, layer: usize) -> Result<Matmul> {
        let name = self.located(role, layer)?;
        if let (Source::Gguf(g), true) = (&self.source, self.device.is_cpu()) {
            let (info, bytes) = g.bytes(&name)?;
            if let Ok((n, k)) = info.shape.dims2() {
                if let Some(m) = Matmul::of_file_blocks(info.ggml_dtype, n, k, bytes) {
                    g.release(bytes);
                    return Ok(m);
                }
            }
        }
        Ok(Matmul::new(self.matmul_named(&name)?))
    }

    /// A small tensor (norm weight, bias) as dense f32.
    pub fn dense(&mut self, role: Role, layer: usize) -> Result<Tensor> {
        let name = self.located(role, layer)?;
        self.dense_by_name(&name)
    }

    /// A tensor by its file-specific name, as dense f32.
    pub fn dense_by_name(&mut self, name: &str) -> Result<Tensor> {
        let t = match &mut self.source {
            Source::Safetensors(st) => st.load(name, &self.device)?,
            Source::Gguf(g) => g.qtensor(name, &self.device)?.dequantize(&self.device)?,
        };
        Ok(t.to_dtype(DType::F32)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF header with one tensor `name` of 32 values of ggml type `ty`
    /// at `offset` in the data, and `general.alignment` when given.
    fn gguf_header(alignment: Option<u32>, name: &[u8], ty: u32, offset: u64) -> Vec<u8> {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(3u32.to_le_bytes());
        bytes.extend(1u64.to_le_bytes()); // tensors
        bytes.extend((alignment.is_some() as u64).to_le_bytes()); // metadata entries
        if let Some(a) = alignment {
            let key = b"general.alignment";
            bytes.extend((key.len() as u64).to_le_bytes());
            bytes.extend(key);
            bytes.extend(4u32.to_le_bytes()); // u32
            bytes.extend(a.to_le_bytes());
        }
        bytes.extend((name.len() as u64).to_le_bytes());
        bytes.extend(name);
        bytes.extend(1u32.to_le_bytes());
        bytes.extend(32u64.to_le_bytes());
        bytes.extend(ty.to_le_bytes());
        bytes.extend(offset.to_le_bytes());
        bytes
    }

    /// A GGUF file with one tensor of ggml type `ty` and no metadata.
    fn gguf_with_tensor_type(ty: u32) -> tempfile::NamedTempFile {
        let mut bytes = gguf_header(None, b"blk.0.ffn_up.weight", ty, 0);
        // The data of 32 values of up to four bytes.
        bytes.resize(bytes.len().next_multiple_of(32) + 128, 0);
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), bytes).unwrap();
        f
    }

    /// A tensor that the file does not align is read through a copy, with
    /// the same values as an aligned one.
    #[test]
    fn tensors_at_unaligned_offsets_read_the_same_values() {
        let values: Vec<f32> = (0..32).map(|i| i as f32 * 0.5 - 3.0).collect();
        // F32, one byte into the data, which starts where the header ends.
        let mut bytes = gguf_header(Some(1), b"t", 0, 1);
        bytes.push(0);
        for v in &values {
            bytes.extend(v.to_le_bytes());
        }
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), &bytes).unwrap();
        let g = GgufFile::open(f.path()).unwrap();
        let (_, raw) = g.bytes("t").unwrap();
        assert_ne!(
            raw.as_ptr() as usize % 4,
            0,
            "the test needs an unaligned tensor"
        );
        let q = g.qtensor("t", &Device::Cpu).unwrap();
        let got: Vec<f32> = q.dequantize(&Device::Cpu).unwrap().to_vec1().unwrap();
        assert_eq!(got, values);
    }

    #[test]
    fn unsupported_tensor_types_are_one_line_errors_that_name_the_type() {
        let f = gguf_with_tensor_type(20);
        let e = format!("{:#}", GgufFile::open(f.path()).err().unwrap());
        assert!(
            e.contains("tensors of type IQ4_NL are not supported"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let f = gguf_with_tensor_type(0);
        assert!(GgufFile::open(f.path()).is_ok());
        let bytes = std::fs::read(f.path()).unwrap();
        std::fs::write(f.path(), &bytes[..bytes.len() - 1]).unwrap();
        let e = format!("{:#}", GgufFile::open(f.path()).err().unwrap());
        assert!(
            e.contains("the file is cut short: tensor blk.0.ffn_up.weight lies past its end"),
            "{e}"
        );
        std::fs::write(f.path(), b"not a gguf file").unwrap();
        let e = format!("{:#}", GgufFile::open(f.path()).err().unwrap());
        assert!(
            e.contains("not a readable GGUF file") && !e.contains('\n'),
            "{e}"
        );
    }
}
