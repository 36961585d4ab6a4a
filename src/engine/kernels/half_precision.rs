//! Products with F16 and BF16 matrices as GGUF files store them: two bytes
//! a weight.
//!
//! candle widens such matrices to f32 when it loads them: twice the memory,
//! and twice the bytes each decode step reads, which on a CPU is what a
//! decode step costs. Here the weights stay in half precision, rearranged
//! at load into panels of 16 rows as the block formats are ([`super::panels`]):
//! one vector holds value `i` of 16 rows (F16), or values `2j` and `2j + 1`
//! of 16 rows side by side (BF16), and meets activation `i` (or the pair
//! `2j`, `2j + 1`) broadcast to every lane. The 16 results of a panel come
//! out as one vector, without horizontal sums.
//!
//! F16 weights are widened to f32 as they are read and meet f32
//! activations: the exact weights' products up to summation order. BF16
//! products round the activations to BF16 as llama.cpp does, so that CPUs
//! with AVX-512 BF16 take `vdpbf16ps`, 32 products per instruction, twice
//! what f32 multiply-adds give; every other path widens the same rounded
//! values, and all paths give the same numbers up to summation order.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Module, Tensor};
use half::{bf16, f16};

use super::blocks::ROWS;
use super::panels::LANES;
use super::pool::{filled, for_panels, tile_rows};
use super::{forward_rows, isa, lookup, Isa};

/// An `n × k` matrix of F16 or BF16 weights in panels of 16 rows.
pub struct HalfMatrix {
    bf16: bool,
    n: usize,
    k: usize,
    data: Vec<u8>,
}

/// Which code computes the products: [`Isa`], plus `vdpbf16ps` for BF16.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Path {
    Isa(Isa),
    #[cfg(glot_x86)]
    DotBf16,
}

fn path(bf16: bool) -> Path {
    #[cfg(glot_x86)]
    if bf16 && isa() == Isa::Vnni && std::is_x86_feature_detected!("avx512bf16") {
        return Path::DotBf16;
    }
    let _ = bf16;
    Path::Isa(isa())
}

impl HalfMatrix {
    /// The matrix of `t` if it is F16 or BF16 on the CPU.
    pub(super) fn of(t: &QTensor) -> Option<HalfMatrix> {
        let bf16 = match t.dtype() {
            GgmlDType::F16 => false,
            GgmlDType::BF16 => true,
            _ => return None,
        };
        let (n, k) = t.shape().dims2().ok()?;
        if !t.device().is_cpu() {
            return None;
        }
        let src = t.data().ok()?;
        let panel_bytes = words(bf16, k) * word_bytes(bf16);
        let data = filled(n.div_ceil(LANES), panel_bytes, |p, panel| {
            for c in 0..LANES.min(n - p * LANES) {
                let row = &src[(p * LANES + c) * k * 2..][..k * 2];
                for (i, w) in row.chunks_exact(2).enumerate() {
                    let at = 2 * slot(bf16, i, c);
                    panel[at..at + 2].copy_from_slice(w);
                }
            }
        });
        Some(HalfMatrix { bf16, n, k, data })
    }

    /// Whether [`products`] can take `self` with `other`: the same width
    /// and kind, so that the activations are converted once for both.
    pub(super) fn pairs_with(&self, other: &HalfMatrix) -> bool {
        self.k == other.k && self.bf16 == other.bf16
    }

    pub(super) fn k(&self) -> usize {
        self.k
    }

    pub(super) fn n(&self) -> usize {
        self.n
    }
}

/// `x · hᵀ` for every matrix `h` of `hs` (all [`HalfMatrix::pairs_with`]
/// the first), `x` being rows of their width given as one slice: the
/// activations converted once, and the panels of all the matrices one
/// range split between the threads (Q, K and V in one pass).
pub(super) fn products(hs: &[&HalfMatrix], x: &[f32]) -> Vec<Vec<f32>> {
    let (k, bf16) = (hs[0].k, hs[0].bf16);
    assert!(hs.iter().all(|h| h.pairs_with(hs[0])));
    let m = x.len() / k;
    let words = words(bf16, k);
    let xs = filled(m, words, |r, dst: &mut [u32]| {
        let src = &x[r * k..(r + 1) * k];
        if bf16 {
            for (d, pair) in dst.iter_mut().zip(src.chunks(2)) {
                let hi = pair.get(1).map_or(0, |&x| round_bf16(x));
                *d = round_bf16(pair[0]) | hi << 16;
            }
        } else {
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = x.to_bits();
            }
        }
    });
    let path = path(bf16);
    let panel_bytes = words * word_bytes(bf16);
    let mut outs: Vec<Vec<f32>> = hs.iter().map(|h| vec![0f32; m * h.n]).collect();
    let dsts: Vec<usize> = outs.iter_mut().map(|o| o.as_mut_ptr() as usize).collect();
    let panels: Vec<usize> = hs.iter().map(|h| h.n.div_ceil(LANES)).collect();
    let xs = &xs;
    let rows = |r: usize| &xs[r * words..(r + 1) * words];
    for_panels(&panels, m, |at, p, range| {
        let (h, dst) = (hs[at], dsts[at]);
        let panel = &h.data[p * panel_bytes..(p + 1) * panel_bytes];
        tile_rows::<ROWS>(
            range,
            (dst, h.n, p),
            |r| tile(path, bf16, panel, std::array::from_fn(|i| rows(r + i))),
            |r| tile(path, bf16, panel, [rows(r)])[0],
        );
    });
    outs
}

impl HalfMatrix {
    /// Rows `ids` as f32 (the lookup of an embedding table that is also
    /// the output head).
    pub(super) fn embedding(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let bytes = words(self.bf16, self.k) * word_bytes(self.bf16);
        lookup(ids, self.n, self.k, |row, out| {
            let panel = &self.data[row / LANES * bytes..][..bytes];
            for (i, o) in out.iter_mut().enumerate() {
                *o = widen(self.bf16, panel, slot(self.bf16, i, row % LANES));
            }
        })
    }
}

impl Module for HalfMatrix {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        forward_rows(x, self.n, self.k, |data| {
            Ok(products(&[self], data).remove(0))
        })
    }
}

/// 32-bit words per row of activations, and per lane of a panel: an f32
/// activation meets one F16 weight, a pair of BF16 activations (the first
/// in the low half) meets two BF16 weights. Odd BF16 rows end in a zero.
fn words(bf16: bool, k: usize) -> usize {
    if bf16 {
        k.div_ceil(2)
    } else {
        k
    }
}

/// Bytes of a panel per word of activations: one F16 weight or two BF16
/// ones for each of the panel's rows.
fn word_bytes(bf16: bool) -> usize {
    LANES * if bf16 { 4 } else { 2 }
}

/// Where value `i` of a panel's row `c` sits, in values from the panel's
/// start.
fn slot(bf16: bool, i: usize, c: usize) -> usize {
    if bf16 {
        (i / 2 * LANES + c) * 2 + i % 2
    } else {
        i * LANES + c
    }
}

fn widen(bf16: bool, panel: &[u8], at: usize) -> f32 {
    let bytes = [panel[2 * at], panel[2 * at + 1]];
    match bf16 {
        true => bf16::from_le_bytes(bytes).to_f32(),
        false => f16::from_le_bytes(bytes).to_f32(),
    }
}

/// The bits of `x` rounded to BF16, to nearest even as llama.cpp and the
/// `half` crate round (a NaN stays a NaN).
#[inline(always)]
fn round_bf16(x: f32) -> u32 {
    let bits = x.to_bits();
    if x.is_nan() {
        return (bits >> 16) | 0x40;
    }
    (bits + 0x7fff + ((bits >> 16) & 1)) >> 16
}

/// The two BF16 values of a word, widened.
fn pair(word: u32) -> (f32, f32) {
    (
        f32::from_bits(word << 16),
        f32::from_bits(word & 0xffff_0000),
    )
}

/// Products of one panel with `R` rows of activations (as [`words`]):
/// `out[r][c]` for the panel's row `c`.
fn tile<const R: usize>(
    path: Path,
    bf16: bool,
    panel: &[u8],
    rows: [&[u32]; R],
) -> [[f32; LANES]; R] {
    let words = panel.len() / word_bytes(bf16);
    for row in &rows {
        assert_eq!(row.len(), words);
    }
    match path {
        // SAFETY: `path()` chose these paths only where the CPU has the
        // features; every row holds the panel's number of words.
        #[cfg(glot_x86)]
        Path::DotBf16 => unsafe { x86::tile_dot_bf16(panel, rows) },
        #[cfg(glot_x86)]
        Path::Isa(Isa::Vnni) => unsafe { x86::tile512(bf16, panel, rows) },
        #[cfg(glot_x86)]
        Path::Isa(Isa::Avx2) => unsafe { x86::tile256(bf16, panel, rows) },
        #[cfg(glot_neon)]
        Path::Isa(Isa::Neon | Isa::NeonDot) => neon::tile(bf16, panel, rows),
        Path::Isa(Isa::Scalar) => tile_scalar(bf16, panel, rows),
    }
}

fn tile_scalar<const R: usize>(bf16: bool, panel: &[u8], rows: [&[u32]; R]) -> [[f32; LANES]; R] {
    let mut out = [[0f32; LANES]; R];
    for (out, row) in out.iter_mut().zip(rows) {
        for (c, out) in out.iter_mut().enumerate() {
            for (i, &word) in row.iter().enumerate() {
                if bf16 {
                    let (lo, hi) = pair(word);
                    *out += widen(true, panel, slot(true, 2 * i, c)) * lo
                        + widen(true, panel, slot(true, 2 * i + 1, c)) * hi;
                } else {
                    *out += widen(false, panel, slot(false, i, c)) * f32::from_bits(word);
                }
            }
        }
    }
    out
}

#[cfg(glot_x86)]
mod x86 {
    use super::{pair, LANES};
    use std::arch::x86_64::*;

    /// BF16 pairs: each lane of a 64-byte vector holds two consecutive
    /// values of one row, and `vdpbf16ps` adds both products to the lane.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bf16")]
    pub(super) unsafe fn tile_dot_bf16<const R: usize>(
        panel: &[u8],
        rows: [&[u32]; R],
    ) -> [[f32; LANES]; R] {
        let pairs = rows[0].len();
        let w = panel.as_ptr();
        let step = |acc: &mut [__m512; R], j: usize| {
            let v: __m512bh = std::mem::transmute(_mm512_loadu_si512(w.add(64 * j) as *const _));
            for r in 0..R {
                let x = _mm512_set1_epi32(*rows[r].get_unchecked(j) as i32);
                acc[r] = _mm512_dpbf16_ps(acc[r], v, std::mem::transmute::<__m512i, __m512bh>(x));
            }
        };
        // Four sets of accumulators, for four independent chains per row:
        // one row alone (decode) would otherwise wait on the instruction's
        // latency.
        let mut a = [[_mm512_setzero_ps(); R]; 4];
        let mut j = 0;
        while j + 4 <= pairs {
            let [a0, a1, a2, a3] = &mut a;
            step(a0, j);
            step(a1, j + 1);
            step(a2, j + 2);
            step(a3, j + 3);
            j += 4;
        }
        for j in j..pairs {
            step(&mut a[0], j);
        }
        let mut out = [[0f32; LANES]; R];
        for (r, o) in out.iter_mut().enumerate() {
            let sum = _mm512_add_ps(
                _mm512_add_ps(a[0][r], a[1][r]),
                _mm512_add_ps(a[2][r], a[3][r]),
            );
            _mm512_storeu_ps(o.as_mut_ptr(), sum);
        }
        out
    }

    /// Widened to f32: 16 lanes of one value each (F16), or two vectors per
    /// pair of values (BF16: the low halves of the lanes, then the high).
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    pub(super) unsafe fn tile512<const R: usize>(
        bf16: bool,
        panel: &[u8],
        rows: [&[u32]; R],
    ) -> [[f32; LANES]; R] {
        let w = panel.as_ptr();
        let words = rows[0].len();
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        let high = _mm512_set1_epi32(0xffff_0000u32 as i32);
        if bf16 {
            for j in 0..words {
                let v = _mm512_loadu_si512(w.add(64 * j) as *const _);
                let even = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v));
                let odd = _mm512_castsi512_ps(_mm512_and_si512(v, high));
                for r in 0..R {
                    let (lo, hi) = pair(*rows[r].get_unchecked(j));
                    acc[r][0] = _mm512_fmadd_ps(even, _mm512_set1_ps(lo), acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(odd, _mm512_set1_ps(hi), acc[r][1]);
                }
            }
        } else {
            let step = |acc: &mut [[__m512; 2]; R], i: usize, a: usize| {
                let v = _mm512_cvtph_ps(_mm256_loadu_si256(w.add(32 * i) as *const __m256i));
                for r in 0..R {
                    let x = f32::from_bits(*rows[r].get_unchecked(i));
                    acc[r][a] = _mm512_fmadd_ps(v, _mm512_set1_ps(x), acc[r][a]);
                }
            };
            let mut i = 0;
            while i + 2 <= words {
                step(&mut acc, i, 0);
                step(&mut acc, i + 1, 1);
                i += 2;
            }
            if i < words {
                step(&mut acc, i, 0);
            }
        }
        let mut out = [[0f32; LANES]; R];
        for (o, a) in out.iter_mut().zip(acc) {
            _mm512_storeu_ps(o.as_mut_ptr(), _mm512_add_ps(a[0], a[1]));
        }
        out
    }

    /// [`tile512`] with 256-bit vectors: each panel row is two halves of
    /// eight lanes.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn tile256<const R: usize>(
        bf16: bool,
        panel: &[u8],
        rows: [&[u32]; R],
    ) -> [[f32; LANES]; R] {
        let w = panel.as_ptr();
        let words = rows[0].len();
        let high = _mm256_set1_epi32(0xffff_0000u32 as i32);
        let mut out = [[0f32; LANES]; R];
        for (half, at) in [(0, 0), (1, 8)] {
            let mut acc = [_mm256_setzero_ps(); R];
            if bf16 {
                for j in 0..words {
                    let v = _mm256_loadu_si256(w.add(64 * j + 32 * half) as *const __m256i);
                    let even = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v));
                    let odd = _mm256_castsi256_ps(_mm256_and_si256(v, high));
                    for (a, row) in acc.iter_mut().zip(rows) {
                        let (lo, hi) = pair(*row.get_unchecked(j));
                        *a = _mm256_fmadd_ps(even, _mm256_set1_ps(lo), *a);
                        *a = _mm256_fmadd_ps(odd, _mm256_set1_ps(hi), *a);
                    }
                }
            } else {
                for i in 0..words {
                    let h = _mm_loadu_si128(w.add(32 * i + 16 * half) as *const __m128i);
                    let v = _mm256_cvtph_ps(h);
                    for (a, row) in acc.iter_mut().zip(rows) {
                        let x = f32::from_bits(*row.get_unchecked(i));
                        *a = _mm256_fmadd_ps(v, _mm256_set1_ps(x), *a);
                    }
                }
            }
            for (o, a) in out.iter_mut().zip(acc) {
                _mm256_storeu_ps(o.as_mut_ptr().add(at), a);
            }
        }
        out
    }
}

#[cfg(glot_neon)]
mod neon {
    use super::{pair, LANES};
    use crate::engine::kernels::neon::f16x4;
    use std::arch::aarch64::*;

    /// [`super::tile_scalar`] with NEON's 128-bit multiply-adds: each
    /// panel row is four quarters of four lanes, as it is two halves of
    /// eight in [`super::x86::tile256`]. The caller has checked that every
    /// row holds the panel's number of words.
    pub(super) fn tile<const R: usize>(
        bf16: bool,
        panel: &[u8],
        rows: [&[u32]; R],
    ) -> [[f32; LANES]; R] {
        let w = panel.as_ptr();
        let words = rows[0].len();
        let mut out = [[0f32; LANES]; R];
        // SAFETY: plain Advanced SIMD; every read lies in the panel, which
        // holds `words` words of 16 rows.
        unsafe {
            let high = vdupq_n_u32(0xffff_0000);
            for quarter in 0..LANES / 4 {
                let mut acc = [vdupq_n_f32(0.0); R];
                if bf16 {
                    for j in 0..words {
                        let v = vreinterpretq_u32_u8(vld1q_u8(w.add(64 * j + 16 * quarter)));
                        let even = vreinterpretq_f32_u32(vshlq_n_u32::<16>(v));
                        let odd = vreinterpretq_f32_u32(vandq_u32(v, high));
                        for (a, row) in acc.iter_mut().zip(rows) {
                            let (lo, hi) = pair(*row.get_unchecked(j));
                            *a = vfmaq_n_f32(*a, even, lo);
                            *a = vfmaq_n_f32(*a, odd, hi);
                        }
                    }
                } else {
                    for i in 0..words {
                        let v = f16x4(w.add(32 * i + 8 * quarter));
                        for (a, row) in acc.iter_mut().zip(rows) {
                            let x = f32::from_bits(*row.get_unchecked(i));
                            *a = vfmaq_n_f32(*a, v, x);
                        }
                    }
                }
                for (o, a) in out.iter_mut().zip(acc) {
                    vst1q_f32(o.as_mut_ptr().add(4 * quarter), a);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::tests::{flat, random, vector_paths};
    use candle_core::quantized::QMatMul;
    use candle_core::Device;
    use std::sync::Arc;

    /// Decode and prefill products equal the f32 product with the widened
    /// weights (for BF16, with activations rounded to BF16), with rows that
    /// are not a multiple of the vector width and a padded last panel; and
    /// every path this CPU has gives the scalar path's products.
    #[test]
    fn half_products_equal_the_widened_matrix_product() {
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * (1.0 + b.abs());
        for dtype in [GgmlDType::F16, GgmlDType::BF16] {
            let is_bf16 = dtype == GgmlDType::BF16;
            for k in [16 * 9 + 8 + 3, 576] {
                let n = 19;
                let w = Tensor::from_vec(random(n * k, 1), (n, k), &Device::Cpu).unwrap();
                let q = Arc::new(QTensor::quantize(&w, dtype).unwrap());
                let h = HalfMatrix::of(&q).unwrap();
                let widened = QMatMul::from_arc(q.clone()).unwrap();
                for m in [1, 3, 6] {
                    let mut xs = random(m * k, 2);
                    if is_bf16 {
                        xs.iter_mut().for_each(|x| *x = bf16::from_f32(*x).to_f32());
                    }
                    let x = Tensor::from_vec(xs, (m, k), &Device::Cpu).unwrap();
                    let want = flat(widened.forward(&x));
                    let got = flat(h.forward(&x));
                    for (a, b) in got.iter().zip(&want) {
                        assert!(close(*a, *b), "{dtype:?} k={k} m={m}: {a} vs {b}");
                    }
                }
                let words = words(is_bf16, k);
                for x in random(1000, 4)
                    .into_iter()
                    .chain([0.0, -0.0, 1e38, f32::MAX])
                {
                    assert_eq!(round_bf16(x), bf16::from_f32(x).to_bits() as u32, "{x}");
                }
                let x: Vec<u32> = random(2 * words, 3)
                    .into_iter()
                    .map(|x| match is_bf16 {
                        true => bf16::from_f32(x).to_bits() as u32 * 0x1_0001,
                        false => x.to_bits(),
                    })
                    .collect();
                let rows = [&x[..words], &x[words..]];
                let bytes = words * word_bytes(is_bf16);
                let panel = &h.data[bytes..2 * bytes];
                let want = tile_scalar(is_bf16, panel, rows);
                let paths = vector_paths().into_iter().map(Path::Isa);
                #[cfg(glot_x86)]
                let paths = paths.chain((path(is_bf16) == Path::DotBf16).then_some(Path::DotBf16));
                let paths: Vec<Path> = paths.collect();
                for p in paths {
                    let got = tile(p, is_bf16, panel, rows);
                    for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                        assert!(close(*g, *w), "{dtype:?} {p:?}: {g} vs {w}");
                    }
                }
            }
        }
    }
}
