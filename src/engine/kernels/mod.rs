//! Matrix products for the 32-value block formats Q8_0, Q5_0, Q5_1, Q4_0
//! and Q4_1.
//!
//! llama.cpp's Q4_K_M files store every matrix whose rows are not a multiple
//! of 256 values as Q5_0 (and Q6_K ones as Q8_0): for Qwen2.5-0.5B (width
//! 896) that is every projection but `ffn_down`. candle has only a scalar
//! Q5_0 product on x86, which spent 93% of a profiled Q4_K_M run, and its
//! faster repacked kernels need rows of 256; its Q4_0, Q4_1 and Q5_1
//! products are slower than llama.cpp's too. These kernels quantize the
//! activations to 8 bits per block of 32 as llama.cpp does, rearrange the
//! weights at load into panels of 16 rows ([`panels`]), and take integer
//! dot products with AVX-512 VNNI where the CPU has it, AVX2 otherwise, so
//! the numbers are candle's and llama.cpp's up to summation order. The
//! formats with a minimum (Q4_1, Q5_1: value = d·q + m) add m times the
//! activation block's sum, which is kept with the quantized activations as
//! llama.cpp's Q8_1 keeps it. On aarch64 the same panels meet NEON's
//! `sdot` (or widening byte products where the CPU lacks it): one
//! 16-byte vector holds four values of four rows, a quarter of what an
//! AVX-512 vector holds. Where the CPU has Intel's AMX tiles, tiles of 16
//! or 8 activation rows take one tile product per block ([`amx`]), with
//! the same integer sums and the same float arithmetic as the VNNI kernel,
//! so every row gets the same bits on either path.

mod acts;
#[cfg(glot_x86)]
mod amx;
pub mod attention;
mod blocks;
mod cpu;
mod dense;
mod formats;
mod half_precision;
#[cfg(glot_x86)]
mod kpanels;
#[cfg(glot_x86)]
mod kquants;
pub mod kv_q8;
#[cfg(glot_neon)]
mod neon;
mod panels;
mod pool;

/// Folds of 256-bit vectors that the AVX2 kernels end with, and their
/// exponential.
#[cfg(glot_x86)]
mod lanes {
    use std::arch::x86_64::*;

    /// The sum of the eight lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn sum8(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    /// The largest of the eight lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn max8(v: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)))
    }

    /// `eˣ` of eight values, to about one unit in the last place: `x =
    /// n·ln 2 + r` with |r| ≤ ln 2 / 2, a degree-6 polynomial for `eʳ` and
    /// `2ⁿ` from the exponent bits (Cephes' `expf`). Values below −87.3
    /// give zero or a denormal-sized result; the caller masks what must be
    /// zero.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn exp(x: __m256) -> __m256 {
        let x = _mm256_min_ps(x, _mm256_set1_ps(88.37626));
        let x = _mm256_max_ps(x, _mm256_set1_ps(-87.33654));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        // r = x − n·ln 2, ln 2 in two parts so that the product is exact.
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut y = _mm256_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            0.166_666_65,
            0.5,
        ] {
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c));
        }
        let y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.)));
        let pow2 = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        ));
        _mm256_mul_ps(y, _mm256_castsi256_ps(pow2))
    }

    #[cfg(test)]
    mod tests {
        use std::arch::x86_64::*;

        /// The vector exponential against the library's, over the range the
        /// softmax takes (scores less their maximum: zero and below).
        #[test]
        fn the_vector_exponential_is_within_two_units_in_the_last_place() {
            if crate::engine::kernels::isa() == crate::engine::kernels::Isa::Scalar {
                panic!("this test needs a CPU with AVX2");
            }
            let mut worst = 0f32;
            let mut x = -87.0f32;
            while x <= 0.0 {
                let xs: [f32; 8] = std::array::from_fn(|i| x + i as f32 * 1e-3);
                let mut got = [0f32; 8];
                // SAFETY: the CPU has AVX2, FMA and F16C.
                unsafe {
                    _mm256_storeu_ps(got.as_mut_ptr(), super::exp(_mm256_loadu_ps(xs.as_ptr())))
                };
                for (g, x) in got.iter().zip(xs) {
                    let want = x.exp();
                    worst = worst.max((g - want).abs() / (want * f32::EPSILON));
                }
                x += 0.0371;
            }
            assert!(worst <= 2.0, "{worst} units");
        }
    }
}

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul};
use candle_core::{DType, Module, Tensor};

pub use blocks::BlockMatrix;
pub use cpu::path_name;
use cpu::{isa, Isa};

/// Rows `ids` of an `n × k` matrix whose row `i` `row(i, out)` writes: the
/// tensor handling of embedding lookups.
pub(super) fn lookup(
    ids: &Tensor,
    n: usize,
    k: usize,
    row: impl Fn(usize, &mut [f32]),
) -> candle_core::Result<Tensor> {
    let flat = ids.flatten_all()?.to_vec1::<u32>()?;
    let mut out = vec![0f32; flat.len() * k];
    for (&id, out) in flat.iter().zip(out.chunks_exact_mut(k)) {
        if id as usize >= n {
            candle_core::bail!("embedding id {id} is out of range for {n} rows");
        }
        row(id as usize, out);
    }
    let mut dims = ids.dims().to_vec();
    dims.push(k);
    Tensor::from_vec(out, dims, ids.device())
}

/// `x · wᵀ` for an `n × k` matrix `w` whose product with rows given as one
/// slice is `matmul`: the tensor handling every kernel family shares.
pub(super) fn forward_rows(
    x: &Tensor,
    n: usize,
    k: usize,
    matmul: impl FnOnce(&[f32]) -> candle_core::Result<Vec<f32>>,
) -> candle_core::Result<Tensor> {
    let mut dims = x.dims().to_vec();
    if dims.last() != Some(&k) {
        candle_core::bail!("matmul of {:?} by a {}×{} matrix", dims, n, k);
    }
    let data = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let out = matmul(&data)?;
    *dims.last_mut().unwrap() = n;
    Tensor::from_vec(out, dims, x.device())
}

/// A weight matrix: these kernels for the 32-value block formats (and Q4_K and Q6_K on
/// x86 CPUs with AVX2), candle's for the rest.
#[derive(Clone)]
pub enum Matmul {
    Blocks(Arc<BlockMatrix>),
    #[cfg(glot_x86)]
    KQuant(Arc<kquants::KMatrix>),
    Half(Arc<half_precision::HalfMatrix>),
    Candle(QMatMul),
}

impl Matmul {
    /// Whether the matrix is a plain f32 tensor (safetensors, or an F32
    /// GGUF file), rather than quantized or half-precision weights.
    pub fn is_dense(&self) -> bool {
        matches!(self, Matmul::Candle(QMatMul::Tensor(t)) if t.dtype() == DType::F32)
    }

    /// Whether [`Matmul::embedding`] can look rows up in this matrix, so
    /// that a tied embedding table need not be kept a second time.
    pub fn has_rows(&self) -> bool {
        match self {
            Matmul::Blocks(_) | Matmul::Half(_) => true,
            #[cfg(glot_x86)]
            Matmul::KQuant(k) => k.has_rows(),
            Matmul::Candle(_) => false,
        }
    }

    /// Rows `ids` of the matrix as f32 (an embedding lookup).
    pub fn embedding(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Matmul::Blocks(b) => b.embedding(ids),
            Matmul::Half(h) => h.embedding(ids),
            Matmul::Candle(m) => m.embedding(ids),
            #[cfg(glot_x86)]
            Matmul::KQuant(k) => k.embedding(ids),
        }
    }

    /// The product for one decoding step: each row of `x` is one token of
    /// its own sequence, and gets the same bits whatever the other rows
    /// (see [`dense`]). glot's kernels are so already, reading each panel
    /// once for all the rows; f32 matrices take [`dense::product`] on the
    /// CPU; the types left to candle (Q4_K and Q6_K without AVX2,
    /// Q2_K, Q3_K, Q5_K) go one row at a time.
    pub fn forward_step(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Matmul::Candle(QMatMul::Tensor(w))
                if w.dtype() == DType::F32 && w.device().is_cpu() =>
            {
                let (n, k) = w.dims2()?;
                let w = w.contiguous()?;
                let (storage, layout) = w.storage_and_layout();
                let candle_core::Storage::Cpu(cpu) = &*storage else {
                    candle_core::bail!("an f32 matrix on the CPU has its values elsewhere");
                };
                let values = &cpu.as_slice::<f32>()?[layout.start_offset()..][..n * k];
                forward_rows(x, n, k, |data| Ok(dense::product(values, n, k, data)))
            }
            Matmul::Candle(m @ QMatMul::QTensor(t)) => {
                // candle picks its kernels by the number of rows (a
                // repacked product for several, another for one): each row
                // goes alone, as it would in a step of its own.
                let (n, k) = t.shape().dims2()?;
                let mut dims = x.dims().to_vec();
                let flat = x.reshape((rows(x), k))?;
                let parts = (0..flat.dim(0)?)
                    .map(|r| m.forward(&flat.narrow(0, r, 1)?))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                *dims.last_mut().unwrap() = n;
                Tensor::cat(&parts, 0)?.reshape(dims)
            }
            _ => self.forward(x),
        }
    }

    pub fn new(m: QMatMul) -> Matmul {
        if let QMatMul::QTensor(t) = &m {
            // Without vector kernels of glot's for this CPU (x86 without
            // AVX2, other architectures, the portable build), candle's own
            // serve the block formats better than the scalar tile: the
            // panels are not even built.
            if isa() != Isa::Scalar {
                if let Some(b) = BlockMatrix::of(t) {
                    return Matmul::Blocks(Arc::new(b));
                }
            }
            #[cfg(glot_x86)]
            if let Some(b) = kquants::KMatrix::of(t) {
                return Matmul::KQuant(Arc::new(b));
            }
            if let Some(h) = half_precision::HalfMatrix::of(t) {
                return Matmul::Half(Arc::new(h));
            }
        }
        Matmul::Candle(m)
    }

    /// A matrix of `n` rows of `k` values in one of the 32-value block
    /// formats (or Q4_K and Q6_K on CPUs with AVX-512 VNNI), from its bytes
    /// as a GGUF file lays them out: the panels are built straight from
    /// them (see [`Matmul::new`] for when they are).
    pub fn of_file_blocks(dtype: GgmlDType, n: usize, k: usize, bytes: &[u8]) -> Option<Matmul> {
        if isa() == Isa::Scalar {
            return None;
        }
        #[cfg(glot_x86)]
        if let Some(m) = kquants::KMatrix::from_file(dtype, n, k, bytes) {
            return Some(Matmul::KQuant(Arc::new(m)));
        }
        BlockMatrix::from_file(dtype, n, k, bytes).map(|b| Matmul::Blocks(Arc::new(b)))
    }

    /// The matrix as candle's quantized product, where it is kept so (for
    /// an embedding table that is also the output head).
    pub fn as_candle(&self) -> Option<QMatMul> {
        match self {
            Matmul::Candle(m) => Some(m.clone()),
            #[cfg(glot_x86)]
            Matmul::KQuant(k) => k.tensor().map(QMatMul::QTensor),
            Matmul::Blocks(_) | Matmul::Half(_) => None,
        }
    }
}

impl Module for Matmul {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Matmul::Blocks(b) => b.forward(x),
            #[cfg(glot_x86)]
            Matmul::KQuant(b) => b.forward(x),
            Matmul::Half(h) => h.forward(x),
            Matmul::Candle(QMatMul::QTensor(t)) if rows(x) >= WIDEN_ROWS && x.device().is_cpu() => {
                // candle's products for the types without kernels here take
                // one weight row and one activation row at a time. For a
                // prompt, one f32 copy of the matrix and a blocked f32
                // product cost less. The copy lives for this call only.
                let w = t.dequantize(x.device())?;
                let (n, k) = w.dims2()?;
                forward_rows(x, n, k, |data| {
                    let x = Tensor::from_slice(data, (data.len() / k, k), x.device())?;
                    x.matmul(&w.t()?)?.flatten_all()?.to_vec1()
                })
            }
            Matmul::Candle(QMatMul::Tensor(w)) if w.dtype() != x.dtype() => {
                // A half-precision matrix on a GPU: the product runs in its
                // precision, the rest of the model in the activations'.
                let m = QMatMul::Tensor(w.clone());
                m.forward(&x.to_dtype(w.dtype())?)?.to_dtype(x.dtype())
            }
            Matmul::Candle(m) => m.forward(x),
        }
    }
}

/// Rows of activations from which a quantized matrix without kernels here
/// is widened to f32 for the product.
const WIDEN_ROWS: usize = 16;

/// Rows of `x`: all its dimensions but the last.
fn rows(x: &Tensor) -> usize {
    x.elem_count() / x.dims().last().copied().unwrap_or(1).max(1)
}

/// `x · mᵀ` for every matrix of `ms`, all taking the same input (Q, K and V;
/// gate and up). Where all are in block formats, all Q4_K or Q6_K panels,
/// or all in the same half precision, the input is quantized or converted
/// once and all the products are one parallel pass (see
/// [`blocks::products`]): a decode step would otherwise wait for the
/// threads once per matrix.
///
/// With `step`, each row of `x` is one token of its own sequence, and the
/// products are [`Matmul::forward_step`]'s.
pub fn forward_all(ms: &[&Matmul], x: &Tensor, step: bool) -> candle_core::Result<Vec<Tensor>> {
    let one = |m: &Matmul| match step {
        true => m.forward_step(x),
        false => m.forward(x),
    };
    let dims = x.dims();
    let k = dims.last().copied().unwrap_or(0);
    let blocks: Option<Vec<&BlockMatrix>> = ms
        .iter()
        .map(|m| match m {
            Matmul::Blocks(b) if b.panels.k == k => Some(&**b),
            _ => None,
        })
        .collect();
    let halves: Option<Vec<&half_precision::HalfMatrix>> = ms
        .iter()
        .map(|m| match m {
            Matmul::Half(h) if h.k() == k => Some(&**h),
            _ => None,
        })
        .collect();
    #[cfg(glot_x86)]
    let kpanels: Option<Vec<&kpanels::KPanels>> = ms
        .iter()
        .map(|m| match m {
            Matmul::KQuant(q) => q.panels().filter(|p| p.k == k),
            _ => None,
        })
        .collect();
    #[cfg(not(glot_x86))]
    let kpanels: Option<Vec<&Matmul>> = None;
    let data = || x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>();
    let (outs, widths): (Vec<Vec<f32>>, Vec<usize>) = match (blocks, halves, kpanels) {
        _ if k == 0 || ms.is_empty() => return ms.iter().map(|m| one(m)).collect(),
        (Some(bs), _, _) => (
            blocks::products(&bs, &data()?, k),
            bs.iter().map(|b| b.panels.n).collect(),
        ),
        #[cfg(glot_x86)]
        (_, _, Some(ks)) => (
            kquants::products(&ks, &data()?, k),
            ks.iter().map(|b| b.n).collect(),
        ),
        (_, Some(hs), _) if hs.iter().all(|h| h.pairs_with(hs[0])) => (
            half_precision::products(&hs, &data()?),
            hs.iter().map(|h| h.n()).collect(),
        ),
        _ => return ms.iter().map(|m| one(m)).collect(),
    };
    outs.into_iter()
        .zip(widths)
        .map(|(out, n)| {
            let mut shape = dims.to_vec();
            *shape.last_mut().unwrap() = n;
            Tensor::from_vec(out, shape, x.device())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::acts::{Acts, Scheme};
    use super::blocks::tile;
    use super::panels::LANES;
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::Device;

    /// A tensor's values, flattened.
    pub(super) fn flat(t: candle_core::Result<Tensor>) -> Vec<f32> {
        t.unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }

    /// The vector code paths this CPU can run.
    pub(super) fn vector_paths() -> Vec<Isa> {
        #[cfg(glot_x86)]
        return match isa() {
            Isa::Scalar => vec![],
            Isa::Avx2 => vec![Isa::Avx2],
            Isa::Vnni => vec![Isa::Avx2, Isa::Vnni],
        };
        #[cfg(glot_neon)]
        return match isa() {
            Isa::NeonDot => vec![Isa::Neon, Isa::NeonDot],
            _ => vec![Isa::Neon],
        };
        #[cfg(not(any(glot_x86, glot_neon)))]
        vec![]
    }

    /// Values in [-1, 1), the same for the same seed.
    pub(super) fn random(len: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// The portable build compiles none of glot's vector kernels: the
    /// scalar paths run, and the block and k-quant formats are candle's.
    #[cfg(feature = "portable")]
    #[test]
    fn the_portable_build_takes_the_portable_paths() {
        assert_eq!(isa(), Isa::Scalar);
        assert!(vector_paths().is_empty());
        for dtype in BLOCK_TYPES
            .into_iter()
            .chain([GgmlDType::Q4K, GgmlDType::Q6K])
        {
            let m = Matmul::new(QMatMul::QTensor(quantized(dtype, 32, 256)));
            assert!(matches!(m, Matmul::Candle(_)), "{dtype:?}");
        }
    }

    /// An aarch64 build runs glot's NEON kernels for the block formats
    /// (with `sdot` where the CPU has it) and candle's for the k-quants.
    #[cfg(glot_neon)]
    #[test]
    fn aarch64_builds_take_the_neon_paths() {
        let dot = std::arch::is_aarch64_feature_detected!("dotprod");
        assert_eq!(isa(), if dot { Isa::NeonDot } else { Isa::Neon });
        for dtype in BLOCK_TYPES {
            let m = Matmul::new(QMatMul::QTensor(quantized(dtype, 32, 256)));
            assert!(matches!(m, Matmul::Blocks(_)), "{dtype:?}");
        }
        for dtype in [GgmlDType::Q4K, GgmlDType::Q6K] {
            let m = Matmul::new(QMatMul::QTensor(quantized(dtype, 32, 256)));
            assert!(matches!(m, Matmul::Candle(_)), "{dtype:?}");
        }
    }

    const BLOCK_TYPES: [GgmlDType; 5] = [
        GgmlDType::Q8_0,
        GgmlDType::Q5_0,
        GgmlDType::Q5_1,
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
    ];

    fn quantized(dtype: GgmlDType, n: usize, k: usize) -> Arc<QTensor> {
        let w = Tensor::from_vec(random(n * k, 1), (n, k), &Device::Cpu).unwrap();
        Arc::new(QTensor::quantize(&w, dtype).unwrap())
    }

    /// The same products as candle's own kernels for one row (decode),
    /// tiles of four rows and leftover rows.
    #[test]
    fn products_equal_candles() {
        for dtype in BLOCK_TYPES {
            // candle's Q5_0 product needs an even number of blocks.
            let (n, k) = (37, 128);
            let q = quantized(dtype, n, k);
            let b = BlockMatrix::of(&q).unwrap();
            let reference = QMatMul::from_arc(q.clone()).unwrap();
            for m in [1, 4, 7] {
                let x =
                    Tensor::from_vec(random(m * k, 2 + m as u64), (m, k), &Device::Cpu).unwrap();
                let want: Vec<f32> = reference
                    .forward(&x)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let got: Vec<f32> = b
                    .forward(&x)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                // candle rounds a block's activation sum to f16 from the
                // f16 scale, llama.cpp (and glot) from the exact one: one
                // f16 step of a sum (up to 32 × 127 × scale) per block,
                // times the block's minimum.
                let slack = if b.panels.format.has_min() { 0.02 } else { 0.0 };
                let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * (1.0 + b.abs()) + slack;
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    got.iter().zip(&want).all(|(a, b)| close(*a, *b)),
                    "{dtype:?} m={m}: {worst}"
                );
            }
        }
    }

    /// Every code path this CPU has gives the scalar path's products, for
    /// one row and tiles of rows, in every panel (the last one padded).
    #[test]
    fn vector_paths_equal_the_scalar_one() {
        let paths = vector_paths();
        assert!(!paths.is_empty() || isa() == Isa::Scalar);
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * (1.0 + b.abs());
        for dtype in BLOCK_TYPES {
            for k in [96, 128] {
                let n = 37;
                let b = BlockMatrix::of(&quantized(dtype, n, k)).unwrap();
                let format = b.panels.format;
                let acts = Acts::quantize(Scheme::Q8_0, &random(3 * k, 5), k);
                for p in 0..b.panels.panels() {
                    let panel = b.panels.panel(p);
                    let rows = std::array::from_fn(|i| acts.row(i % 3));
                    let want: [[f32; LANES]; 4] = panels::tile_scalar(format, panel, rows);
                    for &path in &paths {
                        let got: [[f32; LANES]; 4] = tile(path, format, panel, rows);
                        let [one] = tile(path, format, panel, [acts.row(1)]);
                        for (r, (g, w)) in got.iter().zip(&want).enumerate() {
                            for (c, (g, w)) in g.iter().zip(w).enumerate() {
                                assert!(close(*g, *w), "{dtype:?} k={k} {path:?} panel {p} row {r} col {c}: {g} vs {w}");
                            }
                        }
                        for (c, (g, w)) in one.iter().zip(&want[1]).enumerate() {
                            assert!(
                                close(*g, *w),
                                "{dtype:?} k={k} {path:?} panel {p} one row, col {c}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The matrix in these kernels' panels, whatever the CPU: the portable
    /// build's [`Matmul::new`] leaves the block formats to candle, and the
    /// panels' logic is tested there all the same.
    fn in_panels(q: Arc<QTensor>) -> Matmul {
        match BlockMatrix::of(&q) {
            Some(b) => Matmul::Blocks(Arc::new(b)),
            None => Matmul::new(QMatMul::QTensor(q)),
        }
    }

    /// Rows looked up in the panels are the file's rows, dequantized.
    #[test]
    fn embedding_rows_equal_the_dequantized_matrix() {
        for dtype in BLOCK_TYPES
            .into_iter()
            .chain([GgmlDType::F16, GgmlDType::BF16])
        {
            let (n, k) = (37, 64);
            let q = quantized(dtype, n, k);
            let want = flat(q.dequantize(&Device::Cpu));
            // As the weights reader gives them: F16 and BF16 not widened.
            let m = in_panels(q);
            assert!(m.has_rows(), "{dtype:?}");
            let ids = Tensor::new(&[[36u32, 0, 17], [16, 15, 2]], &Device::Cpu).unwrap();
            let got = m.embedding(&ids).unwrap();
            assert_eq!(got.dims(), &[2, 3, k]);
            let got = flat(Ok(got));
            for (i, id) in [36, 0, 17, 16, 15, 2].into_iter().enumerate() {
                assert_eq!(
                    got[i * k..(i + 1) * k],
                    want[id * k..(id + 1) * k],
                    "{dtype:?} row {id}"
                );
            }
            let beyond = Tensor::new(&[37u32], &Device::Cpu).unwrap();
            assert!(m.embedding(&beyond).is_err());
        }
    }

    /// One pass over several matrices gives each matrix's own product.
    #[test]
    fn products_of_several_matrices_equal_each_alone() {
        let sets = [
            vec![
                (GgmlDType::Q8_0, 40),
                (GgmlDType::Q5_0, 9),
                (GgmlDType::Q4_1, 5),
                (GgmlDType::Q8_0, 3),
            ],
            vec![(GgmlDType::F16, 40), (GgmlDType::F16, 9)],
            vec![(GgmlDType::BF16, 17), (GgmlDType::BF16, 3)],
            // Q4_K and Q6_K panels, where the CPU has them.
            vec![
                (GgmlDType::Q4K, 40),
                (GgmlDType::Q6K, 9),
                (GgmlDType::Q4K, 3),
            ],
        ];
        for set in sets {
            let k = if set[0].0 == GgmlDType::Q4K { 512 } else { 64 };
            let ms: Vec<Matmul> = set
                .into_iter()
                .map(|(dt, n)| in_panels(quantized(dt, n, k)))
                .collect();
            // Only a CPU with AVX-512 VNNI keeps K-quants in panels.
            let vnni = path_name() == "avx512-vnni";
            assert!(ms.iter().all(|m| match m {
                Matmul::Blocks(_) | Matmul::Half(_) => true,
                #[cfg(glot_x86)]
                Matmul::KQuant(q) => q.panels().is_some() || !vnni,
                Matmul::Candle(_) => !vnni,
            }));
            for rows in [1, 6] {
                let x = Tensor::from_vec(random(k * rows, 9), (1, rows, k), &Device::Cpu).unwrap();
                let all = forward_all(&ms.iter().collect::<Vec<_>>(), &x, false).unwrap();
                for (m, y) in ms.iter().zip(all) {
                    let alone = m.forward(&x).unwrap();
                    assert_eq!(y.dims(), alone.dims());
                    assert_eq!(flat(Ok(y)), flat(Ok(alone)));
                }
            }
        }
    }

    /// Batch invariance: a decoding step's row gets the same bits beside
    /// other rows as alone, in every kind of matrix (glot's panels, its
    /// k-quant and half-precision kernels, candle's quantized products, f32),
    /// for one matrix and for several sharing the input, at every row count
    /// a step of `--parallel` decoding can have.
    #[test]
    fn a_step_row_gets_the_same_bits_beside_other_rows_as_alone() {
        for (n, k) in [(40, 256), (256, 512), (37, 768)] {
            step_rows_alike(n, k);
        }
    }

    fn step_rows_alike(n: usize, k: usize) {
        let mut kinds: Vec<(String, Matmul)> = BLOCK_TYPES
            .into_iter()
            .chain([
                GgmlDType::Q4K,
                GgmlDType::Q6K,
                GgmlDType::Q2K,
                GgmlDType::Q3K,
                GgmlDType::Q5K,
                GgmlDType::F16,
                GgmlDType::BF16,
            ])
            .map(|dt| (format!("{dt:?}"), in_panels(quantized(dt, n, k))))
            .collect();
        let dense = Tensor::from_vec(random(n * k, 3), (n, k), &Device::Cpu).unwrap();
        kinds.push(("f32".into(), Matmul::new(QMatMul::Tensor(dense))));
        let rows = 20;
        let x = random(rows * k, 4);
        let alone = |m: &Matmul, r: usize| {
            let xr = Tensor::from_slice(&x[r * k..(r + 1) * k], (1, 1, k), &Device::Cpu).unwrap();
            flat(m.forward_step(&xr))
        };
        for (name, m) in &kinds {
            let each: Vec<Vec<f32>> = (0..rows).map(|r| alone(m, r)).collect();
            for count in [2, 3, 4, 5, 8, 16, 20] {
                let xs = Tensor::from_slice(&x[..count * k], (count, 1, k), &Device::Cpu).unwrap();
                let together = flat(m.forward_step(&xs));
                let pair = flat(
                    forward_all(&[m, m], &xs, true)
                        .unwrap()
                        .remove(1)
                        .flatten_all(),
                );
                for r in 0..count {
                    let at = format!("{name}, {n}×{k}, {count} rows, row {r}");
                    assert_eq!(together[r * n..(r + 1) * n], each[r], "{at}");
                    assert_eq!(pair[r * n..(r + 1) * n], each[r], "{at}");
                }
            }
        }
    }

    /// A prompt's rows meet a type without kernels here (Q3_K) as the f32
    /// product with the widened matrix, close to candle's quantized one.
    #[test]
    fn prompts_widen_types_without_kernels() {
        let (n, k) = (8, 512);
        let q = quantized(GgmlDType::Q3K, n, k);
        let widened = q.dequantize(&Device::Cpu).unwrap();
        let m = Matmul::new(QMatMul::from_arc(q.clone()).unwrap());
        assert!(matches!(m, Matmul::Candle(_)));
        for rows in [WIDEN_ROWS - 1, WIDEN_ROWS + 4] {
            let x = Tensor::from_vec(random(rows * k, 7), (1, rows, k), &Device::Cpu).unwrap();
            let got = flat(m.forward(&x));
            let exact = flat(x.squeeze(0).unwrap().matmul(&widened.t().unwrap()));
            let quantized = flat(QMatMul::from_arc(q.clone()).unwrap().forward(&x));
            let scale = exact.iter().fold(0f32, |a, v| a.max(v.abs()));
            for ((g, e), q) in got.iter().zip(&exact).zip(&quantized) {
                assert!(
                    (g - q).abs() <= 0.02 * scale,
                    "{rows} rows: {g} vs candle's {q}"
                );
                if rows >= WIDEN_ROWS {
                    assert!((g - e).abs() <= 1e-5 * scale, "{rows} rows: {g} vs {e}");
                }
            }
        }
    }
}
