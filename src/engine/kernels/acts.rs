//! Activations quantized to signed bytes, as llama.cpp quantizes them for
//! integer dot products with weight blocks: Q8_0 for the 32-value block
//! formats, Q8_K for the k-quants. One type holds either, so that every
//! kernel reads a row of activations the same way.

use half::f16;

use super::cpu::{isa, Isa};
use super::pool::share;

/// How the activations are quantized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Scheme {
    /// A scale per 32 values, max|x| / 127 in f16 precision, with the
    /// scaled sums (`s`) that a weight block's minimum multiplies.
    Q8_0,
    /// A scale per 256 values, the value of largest magnitude mapped to
    /// -127, with sums per 16 values (what Q6_K's offset multiplies).
    #[cfg_attr(not(glot_x86), allow(dead_code))]
    Q8K,
}

impl Scheme {
    /// Values per scale.
    fn block(self) -> usize {
        match self {
            Scheme::Q8_0 => 32,
            Scheme::Q8K => 256,
        }
    }
}

/// Rows of `k` activations, quantized.
pub(super) struct Acts {
    k: usize,
    scheme: Scheme,
    pub(super) qs: Vec<i8>,
    /// Per block of the scheme, the scale.
    pub(super) d: Vec<f32>,
    /// Per 32 values, the scale times the sum of the quantized values: for
    /// Q8_0 in f16 precision (llama.cpp's Q8_1 `s`), for Q8_K in f32 (what a
    /// Q4_K sub-block's minimum multiplies, ready for a float product).
    pub(super) s: Vec<f32>,
    /// Per 32 values, the sum of the quantized values: what takes a
    /// format's offset or a sub-block's minimum back out of the products.
    pub(super) sums: Vec<i32>,
    /// Q8_K only: per 16 values, the sum of the quantized values.
    pub(super) sums16: Vec<i32>,
}

/// One row of [`Acts`].
#[derive(Clone, Copy)]
pub(super) struct Row<'a> {
    pub(super) qs: &'a [i8],
    pub(super) d: &'a [f32],
    pub(super) s: &'a [f32],
    pub(super) sums: &'a [i32],
    #[cfg_attr(not(glot_x86), allow(dead_code))]
    pub(super) sums16: &'a [i32],
}

impl Acts {
    /// Quantizes rows of `k` values (a multiple of the scheme's block),
    /// the rows split between the threads.
    pub(super) fn quantize(scheme: Scheme, x: &[f32], k: usize) -> Acts {
        let (blocks, q8_0) = (x.len() / scheme.block(), scheme == Scheme::Q8_0);
        let mut acts = Acts {
            k,
            scheme,
            qs: vec![0; x.len()],
            d: vec![0.0; blocks],
            s: vec![0.0; x.len() / 32],
            sums: vec![0; x.len() / 32],
            sums16: vec![0; if q8_0 { 0 } else { x.len() / 16 }],
        };
        let isa = isa();
        let rows = x.len() / k;
        let lens = acts.lens();
        let ptrs = (
            acts.qs.as_mut_ptr() as usize,
            acts.d.as_mut_ptr() as usize,
            acts.s.as_mut_ptr() as usize,
            acts.sums.as_mut_ptr() as usize,
            acts.sums16.as_mut_ptr() as usize,
        );
        let run = |r: std::ops::Range<usize>| {
            // SAFETY: each range of rows is one worker's alone, inside the
            // vectors (an empty vector has a zero length per row), and the
            // vectors outlive the pool call.
            let row = unsafe {
                RowMut {
                    qs: share(ptrs.0, r.start * lens[0], r.len() * lens[0]),
                    d: share(ptrs.1, r.start * lens[1], r.len() * lens[1]),
                    s: share(ptrs.2, r.start * lens[2], r.len() * lens[2]),
                    sums: share(ptrs.3, r.start * lens[3], r.len() * lens[3]),
                    sums16: share(ptrs.4, r.start * lens[4], r.len() * lens[4]),
                }
            };
            let x = &x[r.start * k..r.end * k];
            match isa {
                // SAFETY: the CPU has AVX2, FMA and F16C.
                #[cfg(glot_x86)]
                Isa::Avx2 | Isa::Vnni => unsafe { x86::quantize(scheme, x, row) },
                // NEON is the compiler's baseline on aarch64: the plain
                // loop is already vector code there.
                #[cfg(glot_neon)]
                Isa::Neon | Isa::NeonDot => quantize_rows(scheme, x, row),
                Isa::Scalar => quantize_rows(scheme, x, row),
            }
        };
        if rows == 1 {
            run(0..1);
        } else {
            candle_core::utils::barrier_pool().execute_chunked(rows, run);
        }
        acts
    }

    /// Elements per row of `qs`, `d`, `s`, `sums` and `sums16`.
    fn lens(&self) -> [usize; 5] {
        let q8_0 = self.scheme == Scheme::Q8_0;
        let k = self.k;
        [
            k,
            k / self.scheme.block(),
            k / 32,
            k / 32,
            if q8_0 { 0 } else { k / 16 },
        ]
    }

    pub(super) fn row(&self, r: usize) -> Row<'_> {
        fn part<T>(v: &[T], r: usize, len: usize) -> &[T] {
            &v[r * len..(r + 1) * len]
        }
        let [qs, d, s, sums, sums16] = self.lens();
        Row {
            qs: part(&self.qs, r, qs),
            d: part(&self.d, r, d),
            s: part(&self.s, r, s),
            sums: part(&self.sums, r, sums),
            sums16: part(&self.sums16, r, sums16),
        }
    }
}

/// One worker's rows of [`Acts`], to write.
struct RowMut<'a> {
    qs: &'a mut [i8],
    d: &'a mut [f32],
    s: &'a mut [f32],
    sums: &'a mut [i32],
    sums16: &'a mut [i32],
}

#[inline(always)]
fn quantize_rows(scheme: Scheme, x: &[f32], row: RowMut) {
    match scheme {
        Scheme::Q8_0 => q8_0(x, row),
        Scheme::Q8K => q8_k(x, row),
    }
}

/// Rounds each block of 32 values to bytes with the scale max|x| / 127,
/// kept in f16 precision as llama.cpp's Q8_0 keeps it.
#[inline(always)]
fn q8_0(x: &[f32], row: RowMut) {
    let blocks = x.chunks_exact(32).zip(row.qs.chunks_exact_mut(32));
    let scales = row.d.iter_mut().zip(row.s).zip(row.sums);
    for ((xs, qs), ((d, s), block_sum)) in blocks.zip(scales) {
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in qs.iter_mut().zip(xs) {
            *q = (v * inv).round() as i8;
            sum += *q as i32;
        }
        *d = f16::from_f32(scale).to_f32();
        *s = f16::from_f32(scale * sum as f32).to_f32();
        *block_sum = sum;
    }
}

/// Rounds each block of 256 values to bytes as llama.cpp's Q8_K does: the
/// value of largest magnitude maps to -127 (llama.cpp's sign).
#[inline(always)]
fn q8_k(x: &[f32], mut row: RowMut) {
    const QK: usize = 256;
    for (b, xs) in x.chunks_exact(QK).enumerate() {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in xs {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            continue;
        }
        let iscale = -127.0 / max;
        let qs = &mut row.qs[b * QK..(b + 1) * QK];
        for (q, &v) in qs.iter_mut().zip(xs) {
            *q = (iscale * v).round().clamp(-128.0, 127.0) as i8;
        }
        q8_k_sums(&mut row, b, iscale);
    }
}

/// Block `b` of a Q8_K row, its bytes written: the sums per 16 and per 32
/// bytes, and the scale, the inverse of `iscale`.
#[inline(always)]
fn q8_k_sums(row: &mut RowMut, b: usize, iscale: f32) {
    let qs = &row.qs[b * 256..(b + 1) * 256];
    let sums16 = &mut row.sums16[b * 16..(b + 1) * 16];
    for (j, s) in sums16.iter_mut().enumerate() {
        *s = qs[j * 16..(j + 1) * 16].iter().map(|&q| q as i32).sum();
    }
    let d = 1.0 / iscale;
    for j in 0..8 {
        let sum = sums16[2 * j] + sums16[2 * j + 1];
        row.sums[b * 8 + j] = sum;
        row.s[b * 8 + j] = d * sum as f32;
    }
    row.d[b] = d;
}

#[cfg(glot_x86)]
mod x86 {
    use super::{f16, RowMut, Scheme};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn quantize(scheme: Scheme, x: &[f32], row: RowMut) {
        match scheme {
            // SAFETY: the caller's CPU has AVX2, FMA and F16C.
            Scheme::Q8_0 => unsafe { q8_0(x, row) },
            // SAFETY: as above.
            Scheme::Q8K => unsafe { q8_k(x, row) },
        }
    }

    /// Rounds eight values half away from zero and truncates them to
    /// integers, as Rust's `round` then `as` do for values in range.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn rounded(y: __m256) -> __m256i {
        let sign = _mm256_set1_ps(-0.0);
        let away = _mm256_or_ps(_mm256_and_ps(y, sign), _mm256_set1_ps(0.499_999_97));
        _mm256_cvttps_epi32(_mm256_add_ps(y, away))
    }

    /// 32 integers packed to saturated bytes in order.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn packed(ints: [__m256i; 4]) -> __m256i {
        let words = [
            _mm256_packs_epi32(ints[0], ints[1]),
            _mm256_packs_epi32(ints[2], ints[3]),
        ];
        let bytes = _mm256_packs_epi16(words[0], words[1]);
        _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }

    /// [`super::q8_k`] eight values at a time, with the same bits: the
    /// largest magnitude is found in vectors, then its first value, which
    /// is the one the plain loop keeps; rounding as in [`q8_0`]; the
    /// clamp to [-128, 127] is the packing's saturation.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn q8_k(x: &[f32], mut row: RowMut) {
        const QK: usize = 256;
        let sign = _mm256_set1_ps(-0.0);
        for (b, xs) in x.chunks_exact(QK).enumerate() {
            // SAFETY: a block holds 256 values; the row's parts hold the
            // block's bytes and sums.
            unsafe {
                let mut m = _mm256_setzero_ps();
                for i in 0..QK / 8 {
                    let v = _mm256_loadu_ps(xs.as_ptr().add(8 * i));
                    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
                }
                let amax = super::super::lanes::max8(m);
                if amax == 0.0 {
                    continue;
                }
                let max = *xs.iter().find(|v| v.abs() == amax).expect("the largest");
                let iscale = -127.0 / max;
                let scale = _mm256_set1_ps(iscale);
                let qs = &mut row.qs[b * QK..(b + 1) * QK];
                for (xs, qs) in xs.chunks_exact(32).zip(qs.chunks_exact_mut(32)) {
                    let ints: [__m256i; 4] = std::array::from_fn(|i| {
                        rounded(_mm256_mul_ps(
                            scale,
                            _mm256_loadu_ps(xs.as_ptr().add(8 * i)),
                        ))
                    });
                    _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, packed(ints));
                }
                super::q8_k_sums(&mut row, b, iscale);
            }
        }
    }

    /// [`super::q8_0`] eight values at a time, with the same bits: the
    /// largest magnitude is exact in any order, the product with the
    /// inverse scale is the same product, and rounding half away from
    /// zero (Rust's `round`, a library call per value in the plain loop)
    /// is truncation after adding the largest float below one half, with
    /// the value's sign. Bytes saturate as `as i8` does.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn q8_0(x: &[f32], row: RowMut) {
        let sign = _mm256_set1_ps(-0.0);
        let blocks = x.chunks_exact(32).zip(row.qs.chunks_exact_mut(32));
        let scales = row.d.iter_mut().zip(row.s).zip(row.sums);
        for ((xs, qs), ((d, s), block_sum)) in blocks.zip(scales) {
            // SAFETY: a block holds 32 values and 32 bytes.
            unsafe {
                let v: [__m256; 4] =
                    std::array::from_fn(|i| _mm256_loadu_ps(xs.as_ptr().add(8 * i)));
                let mut m = _mm256_andnot_ps(sign, v[0]);
                for v in &v[1..] {
                    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, *v));
                }
                let amax = super::super::lanes::max8(m);
                let scale = amax / 127.0;
                let inv = _mm256_set1_ps(if scale != 0.0 { 1.0 / scale } else { 0.0 });
                let ints = v.map(|v| rounded(_mm256_mul_ps(v, inv)));
                _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, packed(ints));
                let sum: i32 = qs.iter().map(|&q| q as i32).sum();
                *d = f16::from_f32(scale).to_f32();
                *s = f16::from_f32(scale * sum as f32).to_f32();
                *block_sum = sum;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The activation sums a block minimum multiplies are llama.cpp's Q8_1
    /// `s`: the exact scale times the sum of the rounded values, in f16.
    #[test]
    fn activation_sums_are_llama_cpps() {
        let x: Vec<f32> = (0..32).map(|i| (i as f32 - 10.3) * 0.37).collect();
        let acts = Acts::quantize(Scheme::Q8_0, &x, 32);
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        let sum: i32 = acts.qs.iter().map(|&q| q as i32).sum();
        assert_eq!(acts.sums[0], sum);
        assert_eq!(acts.s[0], f16::from_f32(scale * sum as f32).to_f32());
        assert_eq!(acts.d[0], f16::from_f32(scale).to_f32());
    }

    /// The vector Q8_0 quantizer gives the plain loop's bytes, scales and
    /// sums, halves rounded away from zero included.
    #[cfg(glot_x86)]
    #[test]
    fn the_vector_q8_0_equals_the_plain_loop() {
        let blocks = 4 * 9;
        let mut x: Vec<f32> = (0..32 * blocks)
            .map(|i| ((i * 7919 % 2003) as f32 - 1001.0) * 0.013)
            .collect();
        // Two blocks whose largest value, 127, makes the inverse scale 1,
        // so that their halves tie; a block of zeros; a tiny value.
        for (i, v) in x[..64].iter_mut().enumerate() {
            *v = if i % 32 == 0 { 127.0 } else { i as f32 - 40.5 };
        }
        x[64..96].fill(0.0);
        x[96] = -1e-30;
        let quantized = |vector: bool| {
            let (mut qs, mut d, mut s, mut sums) = (
                vec![0i8; x.len()],
                vec![0f32; blocks],
                vec![0f32; blocks],
                vec![0i32; blocks],
            );
            let row = RowMut {
                qs: &mut qs,
                d: &mut d,
                s: &mut s,
                sums: &mut sums,
                sums16: &mut [],
            };
            match vector {
                // SAFETY: only where the CPU has AVX2.
                true => unsafe { x86::q8_0(&x, row) },
                false => q8_0(&x, row),
            }
            let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
            (qs, bits(d), bits(s), sums)
        };
        let want = quantized(false);
        assert!(want.0[1..32].iter().any(|&q| q % 2 != 0), "halves tie");
        if isa() != Isa::Scalar {
            assert_eq!(quantized(true), want);
        }
    }

    /// The vector Q8_K quantizer gives the plain loop's bytes, scales and
    /// sums: the largest magnitude's first value sets the scale when its
    /// negation comes too, halves tie, and a block of zeros stays zero.
    #[cfg(glot_x86)]
    #[test]
    fn the_vector_q8_k_equals_the_plain_loop() {
        let blocks = 4;
        let mut x: Vec<f32> = (0..256 * blocks)
            .map(|i| ((i * 7919 % 2003) as f32 - 1001.0) * 0.013)
            .collect();
        // Block 0: -127 first, then 127; the scale maps them to ±127 and
        // the halves in between tie. Block 1: zeros.
        for (i, v) in x[..256].iter_mut().enumerate() {
            *v = (i % 200) as f32 - 90.5;
        }
        x[3] = -127.0;
        x[7] = 127.0;
        x[256..512].fill(0.0);
        let quantized = |vector: bool| {
            let (mut qs, mut d, mut s, mut sums, mut sums16) = (
                vec![0i8; x.len()],
                vec![0f32; blocks],
                vec![0f32; 8 * blocks],
                vec![0i32; 8 * blocks],
                vec![0i32; 16 * blocks],
            );
            let row = RowMut {
                qs: &mut qs,
                d: &mut d,
                s: &mut s,
                sums: &mut sums,
                sums16: &mut sums16,
            };
            match vector {
                // SAFETY: only where the CPU has AVX2.
                true => unsafe { x86::q8_k(&x, row) },
                false => q8_k(&x, row),
            }
            let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
            (qs, bits(d), bits(s), sums, sums16)
        };
        let want = quantized(false);
        // -127 came first: the scale is -127 / -127, and d its inverse.
        assert_eq!(want.1[0], 1.0f32.to_bits(), "first of ±127");
        if isa() != Isa::Scalar {
            assert_eq!(quantized(true), want);
        }
    }

    /// Q8_K's sums per 16 and per 32 values are those of its bytes, row by
    /// row, whether the rows are quantized alone or together.
    #[test]
    fn q8_k_sums_are_those_of_the_bytes_in_every_row() {
        let k = 512;
        let x: Vec<f32> = (0..3 * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.1)
            .collect();
        let all = Acts::quantize(Scheme::Q8K, &x, k);
        for r in 0..3 {
            let alone = Acts::quantize(Scheme::Q8K, &x[r * k..(r + 1) * k], k);
            let (a, b) = (all.row(r), alone.row(0));
            assert_eq!((a.qs, a.d, a.sums, a.sums16), (b.qs, b.d, b.sums, b.sums16));
            for (j, s) in a.sums16.iter().enumerate() {
                let want: i32 = a.qs[j * 16..(j + 1) * 16].iter().map(|&q| q as i32).sum();
                assert_eq!(*s, want);
            }
            for (j, s) in a.sums.iter().enumerate() {
                assert_eq!(*s, a.sums16[2 * j] + a.sums16[2 * j + 1]);
            }
        }
    }
}
