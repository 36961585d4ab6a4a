//! Products with F16 and BF16 matrices as GGUF files store them: two bytes
//! a weight, kept as they are.
//!
//! candle widens such matrices to f32 when it loads them: twice the memory,
//! and twice the bytes each decode step reads, which on a CPU is what a
//! decode step costs. Here the half-precision rows stay in the file's
//! layout. One activation row (decode) takes dot products that widen the
//! weights to f32 as they are read; several rows (prefill) widen the whole
//! matrix for one f32 product, a small cost next to the product itself, and
//! the same numbers candle computed before. The activations stay f32, so
//! the results are the exact weights' up to summation order.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Module, Tensor};

use super::{forward_rows, isa, Isa};

/// An `n × k` matrix of F16 or BF16 weights.
pub struct HalfMatrix {
    bf16: bool,
    n: usize,
    k: usize,
    tensor: Arc<QTensor>,
}

impl HalfMatrix {
    /// The matrix of `t` if it is F16 or BF16 on the CPU.
    pub(super) fn of(t: &Arc<QTensor>) -> Option<HalfMatrix> {
        let bf16 = match t.dtype() {
            GgmlDType::F16 => false,
            GgmlDType::BF16 => true,
            _ => return None,
        };
        let (n, k) = t.shape().dims2().ok()?;
        if !t.device().is_cpu() {
            return None;
        }
        Some(HalfMatrix {
            bf16,
            n,
            k,
            tensor: t.clone(),
        })
    }

    fn matmul(&self, x: &[f32]) -> candle_core::Result<Vec<f32>> {
        let (n, k) = (self.n, self.k);
        let m = x.len() / k;
        if m > 1 {
            let w = self.tensor.dequantize(&Device::Cpu)?;
            let x = Tensor::from_slice(x, (m, k), &Device::Cpu)?;
            return x.matmul(&w.t()?)?.flatten_all()?.to_vec1();
        }
        let data = self.tensor.data()?;
        assert!(data.len() >= n * k * 2);
        let mut out = vec![0f32; n];
        let dst = out.as_mut_ptr() as usize;
        let (isa, bf16) = (isa(), self.bf16);
        candle_core::utils::barrier_pool().execute_chunked(n, |cols| {
            for col in cols {
                let row = &data[col * k * 2..(col + 1) * k * 2];
                let v = dot(isa, bf16, row, x);
                // SAFETY: each column is one worker's alone, and `out`
                // outlives the pool call.
                unsafe { *(dst as *mut f32).add(col) = v };
            }
        });
        Ok(out)
    }
}

impl Module for HalfMatrix {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        forward_rows(x, self.n, self.k, |data| self.matmul(data))
    }
}

/// The dot product of one row of half-precision weights (`row`, two bytes
/// each, little-endian) with `x`.
fn dot(isa: Isa, bf16: bool, row: &[u8], x: &[f32]) -> f32 {
    match isa {
        // SAFETY: `isa()` chose these paths only where the CPU has the
        // features; both read `x.len()` weights, which `row` holds.
        #[cfg(target_arch = "x86_64")]
        Isa::Vnni => unsafe { x86::dot512(bf16, row, x) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::dot256(bf16, row, x) },
        Isa::Scalar => dot_scalar(bf16, row, x),
    }
}

fn widen(bf16: bool, bytes: [u8; 2]) -> f32 {
    match bf16 {
        true => half::bf16::from_le_bytes(bytes).to_f32(),
        false => half::f16::from_le_bytes(bytes).to_f32(),
    }
}

fn dot_scalar(bf16: bool, row: &[u8], x: &[f32]) -> f32 {
    row.chunks_exact(2)
        .zip(x)
        .map(|(w, &x)| widen(bf16, [w[0], w[1]]) * x)
        .sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// 16 weights at a time, in four accumulators.
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    pub(super) unsafe fn dot512(bf16: bool, row: &[u8], x: &[f32]) -> f32 {
        let k = x.len();
        let (w, xp) = (row.as_ptr(), x.as_ptr());
        let load = |i: usize| -> __m512 {
            let h = _mm256_loadu_si256(w.add(2 * i) as *const __m256i);
            match bf16 {
                true => _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)),
                false => _mm512_cvtph_ps(h),
            }
        };
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= k {
            for (a, acc) in acc.iter_mut().enumerate() {
                let j = i + 16 * a;
                *acc = _mm512_fmadd_ps(load(j), _mm512_loadu_ps(xp.add(j)), *acc);
            }
            i += 64;
        }
        while i + 16 <= k {
            acc[0] = _mm512_fmadd_ps(load(i), _mm512_loadu_ps(xp.add(i)), acc[0]);
            i += 16;
        }
        let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        _mm512_reduce_add_ps(sum) + super::dot_scalar(bf16, &row[2 * i..], &x[i..])
    }

    /// 8 weights at a time, in four accumulators.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot256(bf16: bool, row: &[u8], x: &[f32]) -> f32 {
        let k = x.len();
        let (w, xp) = (row.as_ptr(), x.as_ptr());
        let load = |i: usize| -> __m256 {
            let h = _mm_loadu_si128(w.add(2 * i) as *const __m128i);
            match bf16 {
                true => _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)),
                false => _mm256_cvtph_ps(h),
            }
        };
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= k {
            for (a, acc) in acc.iter_mut().enumerate() {
                let j = i + 8 * a;
                *acc = _mm256_fmadd_ps(load(j), _mm256_loadu_ps(xp.add(j)), *acc);
            }
            i += 32;
        }
        while i + 8 <= k {
            acc[0] = _mm256_fmadd_ps(load(i), _mm256_loadu_ps(xp.add(i)), acc[0]);
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        crate::engine::kernels::x86::hsum(s) + super::dot_scalar(bf16, &row[2 * i..], &x[i..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::tests::{flat, random, vector_paths};
    use candle_core::quantized::QMatMul;

    /// Decode and prefill products equal the f32 product with the widened
    /// weights (what candle computed for these files), on every path this
    /// CPU has, with rows that are not a multiple of the vector width.
    #[test]
    fn half_products_equal_the_widened_matrix_product() {
        for dtype in [GgmlDType::F16, GgmlDType::BF16] {
            for k in [16 * 9 + 8 + 3, 576] {
                let n = 7;
                let w = Tensor::from_vec(random(n * k, 1), (n, k), &Device::Cpu).unwrap();
                let q = Arc::new(QTensor::quantize(&w, dtype).unwrap());
                let h = HalfMatrix::of(&q).unwrap();
                let widened = QMatMul::from_arc(q.clone()).unwrap();
                for m in [1, 3] {
                    let x = Tensor::from_vec(random(m * k, 2), (m, k), &Device::Cpu).unwrap();
                    let want = flat(widened.forward(&x));
                    let got = flat(h.forward(&x));
                    for (a, b) in got.iter().zip(&want) {
                        assert!(
                            (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                            "{dtype:?} k={k} m={m}: {a} vs {b}"
                        );
                    }
                }
                let data = q.data().unwrap();
                let x = random(k, 3);
                let scalar = dot_scalar(dtype == GgmlDType::BF16, &data[..2 * k], &x);
                for p in std::iter::once(Isa::Scalar).chain(vector_paths()) {
                    let v = dot(p, dtype == GgmlDType::BF16, &data[..2 * k], &x);
                    assert!(
                        (v - scalar).abs() <= 1e-4 * (1.0 + scalar.abs()),
                        "{dtype:?} {p:?}"
                    );
                }
            }
        }
    }
}
