//! A key/value cache kept as Q8_0 (`--cache-type q8_0`): each row of a
//! head's keys or values in blocks of 32 values, an f16 scale and 32
//! signed bytes, as llama.cpp's `--cache-type-k/v q8_0` keep them. A
//! position takes 34 bytes per 32 values against 64 for f16: about half
//! the memory and half the reading per token of an f16 cache.
//!
//! The cache is a candle tensor of bytes, (1, kv, positions, row bytes),
//! so that it grows, is cut and reordered (beams) as an f16 one is. The
//! attention kernel reads it as it is ([`dot`], [`axpy`]); the general
//! computation (long prompts, windowed layers, beams) widens it first.

use candle_core::{DType, Result, Tensor};

use super::formats::{f16_at, QK};

/// Bytes of one block: the f16 scale, then the 32 values.
pub const BLOCK_BYTES: usize = 34;

/// Bytes of a row of `d` values, or `None` when `d` is not a whole number
/// of blocks.
pub fn row_bytes(d: usize) -> Option<usize> {
    (d > 0 && d.is_multiple_of(QK)).then_some(d / QK * BLOCK_BYTES)
}

/// `x` (…, d) as Q8_0 rows (…, d / 32 · 34), rounded as llama.cpp's
/// reference quantization rounds: scale = largest magnitude / 127, values
/// `round(x / scale)`, the scale kept as f16.
pub fn quantize(x: &Tensor) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let d = *dims.last().unwrap_or(&0);
    let Some(rb) = row_bytes(d) else {
        candle_core::bail!("a Q8_0 cache needs rows of a multiple of {QK} values, not {d}");
    };
    let values = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0u8; values.len() / QK * BLOCK_BYTES];
    for (block, out) in values
        .chunks_exact(QK)
        .zip(out.chunks_exact_mut(BLOCK_BYTES))
    {
        quantize_block(block, out);
    }
    *dims.last_mut().unwrap() = rb;
    Tensor::from_vec(out, dims, x.device())
}

fn quantize_block(x: &[f32], out: &mut [u8]) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out[..2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
    for (o, &v) in out[2..].iter_mut().zip(x) {
        *o = (v * id).round() as i8 as u8;
    }
}

/// Q8_0 rows (…, row bytes) widened to f32 (…, d).
pub fn dequantize(q: &Tensor) -> Result<Tensor> {
    let mut dims = q.dims().to_vec();
    let rb = *dims.last().unwrap_or(&0);
    if rb == 0 || !rb.is_multiple_of(BLOCK_BYTES) {
        candle_core::bail!("{rb} bytes are not a row of Q8_0 blocks");
    }
    let bytes = q.flatten_all()?.to_vec1::<u8>()?;
    let mut out = vec![0f32; bytes.len() / BLOCK_BYTES * QK];
    widen(&bytes, &mut out);
    *dims.last_mut().unwrap() = rb / BLOCK_BYTES * QK;
    Tensor::from_vec(out, dims, q.device())
}

/// Q8_0 blocks `q` as f32 values `out`.
pub fn widen(q: &[u8], out: &mut [f32]) {
    for (block, out) in q.chunks_exact(BLOCK_BYTES).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(block);
        for (o, &v) in out.iter_mut().zip(&block[2..]) {
            *o = d * v as i8 as f32;
        }
    }
}

/// `a · b` for a row `b` of Q8_0 blocks: each block's sum of products,
/// eight partial sums wide, times its scale.
pub fn dot(a: &[f32], b: &[u8]) -> f32 {
    let mut total = 0f32;
    for (a, block) in a.chunks_exact(QK).zip(b.chunks_exact(BLOCK_BYTES)) {
        let mut acc = [0f32; 8];
        for (a, q) in a.chunks_exact(8).zip(block[2..].chunks_exact(8)) {
            for l in 0..8 {
                acc[l] += a[l] * q[l] as i8 as f32;
            }
        }
        total += f16_at(block) * acc.iter().sum::<f32>();
    }
    total
}

/// `y += a · x` for a row `x` of Q8_0 blocks.
pub fn axpy(a: f32, x: &[u8], y: &mut [f32]) {
    for (y, block) in y.chunks_exact_mut(QK).zip(x.chunks_exact(BLOCK_BYTES)) {
        let s = a * f16_at(block);
        for (y, &q) in y.iter_mut().zip(&block[2..]) {
            *y += s * q as i8 as f32;
        }
    }
}

#[cfg(glot_x86)]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    use super::{BLOCK_BYTES, QK};

    /// Eight signed bytes at `p` as f32.
    ///
    /// # Safety
    /// Eight bytes are readable at `p`; the CPU has AVX2.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn widen8(p: *const u8) -> __m256 {
        // SAFETY: as the caller promises.
        unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i))) }
    }

    /// A block's f16 scale, widened by F16C into every lane.
    ///
    /// # Safety
    /// Two bytes are readable at `p`; the CPU has AVX2 and F16C.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scale(p: *const u8) -> __m256 {
        // SAFETY: as the caller promises.
        let bits = unsafe { (p as *const u16).read_unaligned() };
        _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    /// [`super::dot`] with 256-bit vectors. A block's four products are
    /// independent and summed as a tree, and the blocks' scaled sums go to
    /// two accumulators in turn: only one fused multiply-add per block
    /// waits for the one before, not five.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn dot(a: &[f32], b: &[u8]) -> f32 {
        let mut total = [_mm256_setzero_ps(); 2];
        for (i, (a, block)) in a
            .chunks_exact(QK)
            .zip(b.chunks_exact(BLOCK_BYTES))
            .enumerate()
        {
            // SAFETY: `a` has 32 values and the block 32 bytes after its
            // 2-byte scale.
            unsafe {
                let p = |j: usize| {
                    _mm256_mul_ps(
                        _mm256_loadu_ps(a.as_ptr().add(j)),
                        widen8(block.as_ptr().add(2 + j)),
                    )
                };
                let s = _mm256_add_ps(_mm256_add_ps(p(0), p(8)), _mm256_add_ps(p(16), p(24)));
                total[i % 2] = _mm256_fmadd_ps(scale(block.as_ptr()), s, total[i % 2]);
            }
        }
        super::super::lanes::sum8(_mm256_add_ps(total[0], total[1]))
    }

    /// [`super::axpy`] with 256-bit fused multiply-adds.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn axpy(a: f32, x: &[u8], y: &mut [f32]) {
        let a = _mm256_set1_ps(a);
        for (y, block) in y.chunks_exact_mut(QK).zip(x.chunks_exact(BLOCK_BYTES)) {
            // SAFETY: `y` has 32 values and the block 32 bytes after its
            // 2-byte scale.
            unsafe {
                let s = _mm256_mul_ps(a, scale(block.as_ptr()));
                for j in (0..QK).step_by(8) {
                    let p = y.as_mut_ptr().add(j);
                    let v = widen8(block.as_ptr().add(2 + j));
                    _mm256_storeu_ps(p, _mm256_fmadd_ps(s, v, _mm256_loadu_ps(p)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::Device;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect()
    }

    /// The blocks are those of a GGUF file's Q8_0 matrices, byte for byte.
    #[test]
    fn rows_are_quantized_as_gguf_q8_0_blocks() {
        let mut v = random(6 * 64, 1);
        v[64..96].iter_mut().for_each(|x| *x = 0.0);
        let t = Tensor::from_vec(v, (1, 2, 3, 64), &Device::Cpu).unwrap();
        let ours = quantize(&t).unwrap();
        assert_eq!(ours.dims(), &[1, 2, 3, 68]);
        let ours = ours.flatten_all().unwrap().to_vec1::<u8>().unwrap();
        let theirs = QTensor::quantize(&t.reshape((6, 64)).unwrap(), GgmlDType::Q8_0).unwrap();
        assert_eq!(ours, theirs.data().unwrap().to_vec());
        let back = dequantize(&quantize(&t).unwrap()).unwrap();
        let want = theirs.dequantize(&Device::Cpu).unwrap();
        assert_eq!(
            back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn rows_not_of_whole_blocks_are_refused() {
        let t = Tensor::zeros((1, 1, 2, 40), DType::F32, &Device::Cpu).unwrap();
        assert!(quantize(&t).unwrap_err().to_string().contains("40"));
        assert_eq!(row_bytes(40), None);
        assert_eq!(row_bytes(128), Some(136));
    }

    /// The products of a row equal those of its widened values.
    #[test]
    fn products_equal_those_of_the_widened_row() {
        let a = random(96, 2);
        let x = Tensor::from_vec(random(96, 3), (1, 96), &Device::Cpu).unwrap();
        let q = quantize(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<u8>()
            .unwrap();
        let w = dequantize(&quantize(&x).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let want: f32 = a.iter().zip(&w).map(|(a, w)| a * w).sum();
        let mut paths: Vec<(&str, f32, Vec<f32>)> = Vec::new();
        let mut y = a.clone();
        axpy(0.5, &q, &mut y);
        paths.push(("scalar", dot(&a, &q), y));
        #[cfg(glot_x86)]
        if super::super::isa() != super::super::Isa::Scalar {
            let mut y = a.clone();
            // SAFETY: the CPU has AVX2, FMA and F16C.
            unsafe { x86::axpy(0.5, &q, &mut y) };
            // SAFETY: as above.
            paths.push(("avx2", unsafe { x86::dot(&a, &q) }, y));
        }
        for (path, got, y) in paths {
            assert!(
                (got - want).abs() < 1e-4 * want.abs().max(1.0),
                "{path}: {got} {want}"
            );
            for ((y, a), w) in y.iter().zip(&a).zip(&w) {
                assert!((y - (a + 0.5 * w)).abs() < 1e-5, "{path}: axpy");
            }
        }
    }
}
