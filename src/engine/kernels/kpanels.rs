//! Q4_K and Q6_K matrices rearranged at load into panels of 16 weight
//! rows, for CPUs with AVX-512 VNNI, as [`super::panels`] does for the
//! 32-value formats.
//!
//! In the file's layout a 512-bit `vpdpbusd` takes 64 values of one weight
//! row, whose lanes then need the scales of their sub-blocks multiplied in
//! (`vpmulld`, two micro-operations on the same port as the products on
//! Intel's cores) and, at the end of the row, a horizontal sum: a profiled
//! Qwen3-1.7B Q4_K_M prefill spent 72% of its time there, at 0.61× llama.cpp
//! on an Intel Xeon. In a panel, 32-bit lane `c` of every vector belongs to
//! weight row `c`: one `vpdpbusd` with four activation bytes broadcast adds
//! four products to each of 16 rows, and one `vpmulld` applies a sub-block's
//! 16 scales after eight (Q4_K) or four (Q6_K) products instead of one.
//!
//! Record of block `b` (256 values) of a Q4_K panel, in bytes:
//! - 16 f16 scales (32) and 16 f16 minimum scales (32);
//! - the sub-blocks' six-bit scales as bytes, byte `16s + c` for
//!   sub-block `s` of row `c` (128);
//! - their six-bit minimums as bytes, in pairs: byte `32t + 2c + e` for
//!   sub-block `2t + e` (128), which `vpdpwssd` takes against two
//!   activation sums at once;
//! - 32 vectors of nibbles, vector `8j + h` holding in byte `4c + i` the
//!   file's byte `32j + 4h + i` of row `c`: values `64j + 4h + i` (low
//!   nibble) and `64j + 32 + 4h + i` (high nibble) (2048).
//!
//! The scales and minimums take 64 bytes more than the file's twelve packed
//! bytes per row: a record is 2,368 bytes against 2,304, 2.8% more.
//!
//! Record of a Q6_K panel (the file's size, 3,360 bytes), values `u` taken
//! from 0..64 (the file's value plus 32):
//! - 16 f16 scales (32);
//! - the 16 signed sub-block scales in pairs, byte `32t + 2c + e` for
//!   sub-block `2t + e` of row `c` (256);
//! - 32 vectors of low nibbles laid out as Q4_K's (2048);
//! - 16 vectors of high bit pairs: vector `4j + t` holds in bits `2e, 2e + 1`
//!   of byte `4c + i` the high bits of value `64j + 4(t + 4e) + i` (1024).

use super::acts::Row;
use super::formats::f16_at;
use super::kquants::{scales, BLOCK, BLOCK6, QK};
use super::panels::LANES;

/// Where each part of a record starts.
const Q4_DMIN: usize = 32;
const Q4_SCALES: usize = 64;
const Q4_MINS: usize = 192;
const Q4_VALUES: usize = 320;
const Q4_RECORD: usize = Q4_VALUES + 2048;
const Q6_SCALES: usize = 32;
const Q6_LOW: usize = 288;
const Q6_HIGH: usize = Q6_LOW + 2048;
const Q6_RECORD: usize = Q6_HIGH + 1024;

/// The two k-quant formats.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Kind {
    Q4K,
    Q6K,
}

impl Kind {
    fn file_block(self) -> usize {
        match self {
            Kind::Q4K => BLOCK,
            Kind::Q6K => BLOCK6,
        }
    }

    fn record(self) -> usize {
        match self {
            Kind::Q4K => Q4_RECORD,
            Kind::Q6K => Q6_RECORD,
        }
    }
}

/// The 256 values of a Q6_K block, 0..64 (the offset of 32 not yet taken
/// off), in the order of the activations.
pub(super) fn q6k_values(block: &[u8]) -> [u8; QK] {
    let (ql, qh) = (&block[..128], &block[128..192]);
    let mut v = [0u8; QK];
    for h in 0..2 {
        let (ql, qh) = (&ql[64 * h..], &qh[32 * h..]);
        let y = &mut v[128 * h..];
        for l in 0..32 {
            y[l] = (ql[l] & 0xf) | ((qh[l] & 3) << 4);
            y[l + 32] = (ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4);
            y[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            y[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    v
}

/// A Q4_K or Q6_K matrix of `n` rows (padded with zero rows to whole
/// panels) of `k` values, in panels.
pub(super) struct KPanels {
    pub kind: Kind,
    pub n: usize,
    pub k: usize,
    data: Vec<u8>,
}

impl KPanels {
    /// Rearranges `src`, `n` rows of `k` values in the file's layout, if
    /// it has that many bytes; the panels are split between the threads.
    pub fn new(kind: Kind, n: usize, k: usize, src: &[u8]) -> Option<KPanels> {
        let kb = k / QK;
        if !k.is_multiple_of(QK) || src.len() != n * kb * kind.file_block() {
            return None;
        }
        let data = super::pool::filled(n.div_ceil(LANES), kb * kind.record(), |p, panel| {
            let rows = LANES.min(n - p * LANES);
            let row_bytes = kb * kind.file_block();
            let src = &src[p * LANES * row_bytes..][..rows * row_bytes];
            for (b, rec) in panel.chunks_exact_mut(kind.record()).enumerate() {
                for c in 0..rows {
                    let block = &src[c * row_bytes + b * kind.file_block()..][..kind.file_block()];
                    match kind {
                        Kind::Q4K => fill_q4k(block, c, rec),
                        Kind::Q6K => fill_q6k(block, c, rec),
                    }
                }
            }
        });
        Some(KPanels { kind, n, k, data })
    }

    pub fn panels(&self) -> usize {
        self.n.div_ceil(LANES)
    }

    /// Panel `p`'s records, one per block.
    pub fn panel(&self, p: usize) -> &[u8] {
        let len = self.k / QK * self.kind.record();
        &self.data[p * len..(p + 1) * len]
    }

    /// Row `row` as f32 values (a row of an embedding table), computed as
    /// candle dequantizes the file's blocks.
    pub fn row(&self, row: usize, out: &mut [f32]) {
        let panel = self.panel(row / LANES);
        let c = row % LANES;
        for (rec, out) in panel
            .chunks_exact(self.kind.record())
            .zip(out.chunks_exact_mut(QK))
        {
            let u = values(self.kind, rec, c);
            let d = f16_at(&rec[2 * c..]);
            match self.kind {
                Kind::Q4K => {
                    let dmin = f16_at(&rec[Q4_DMIN + 2 * c..]);
                    for (s, out) in out.chunks_exact_mut(32).enumerate() {
                        let (sc, mn) = q4k_scale(rec, c, s);
                        let (d1, m1) = (d * sc as f32, dmin * mn as f32);
                        for (o, &u) in out.iter_mut().zip(&u[32 * s..]) {
                            *o = d1 * u as f32 - m1;
                        }
                    }
                }
                Kind::Q6K => {
                    for (s, out) in out.chunks_exact_mut(16).enumerate() {
                        let sc = q6k_scale(rec, c, s);
                        for (o, &u) in out.iter_mut().zip(&u[16 * s..]) {
                            *o = d * sc as f32 * (u as i32 - 32) as f32;
                        }
                    }
                }
            }
        }
    }
}

/// Writes row `c` of a Q4_K block into its record.
fn fill_q4k(block: &[u8], c: usize, rec: &mut [u8]) {
    rec[2 * c..2 * c + 2].copy_from_slice(&block[0..2]);
    rec[Q4_DMIN + 2 * c..Q4_DMIN + 2 * c + 2].copy_from_slice(&block[2..4]);
    let (sc, mn) = scales(&block[4..16]);
    for s in 0..8 {
        rec[Q4_SCALES + 16 * s + c] = sc[s] as u8;
        rec[Q4_MINS + 32 * (s / 2) + 2 * c + s % 2] = mn[s] as u8;
    }
    // The nibbles need no shifting, only the bytes moving, four at a time.
    for (v, word) in block[16..].chunks_exact(4).enumerate() {
        rec[Q4_VALUES + 64 * v + 4 * c..][..4].copy_from_slice(word);
    }
}

/// Writes row `c` of a Q6_K block into its record.
fn fill_q6k(block: &[u8], c: usize, rec: &mut [u8]) {
    rec[2 * c..2 * c + 2].copy_from_slice(&block[208..210]);
    for s in 0..16 {
        rec[Q6_SCALES + 32 * (s / 2) + 2 * c + s % 2] = block[192 + s];
    }
    let u = q6k_values(block);
    for j in 0..4 {
        for h in 0..8 {
            for i in 0..4 {
                let (lo, hi) = (u[64 * j + 4 * h + i], u[64 * j + 32 + 4 * h + i]);
                rec[Q6_LOW + 64 * (8 * j + h) + 4 * c + i] = (lo & 0xf) | (hi & 0xf) << 4;
            }
        }
        for t in 0..4 {
            for i in 0..4 {
                let byte = (0..4).fold(0u8, |byte, e| {
                    byte | (u[64 * j + 4 * (t + 4 * e) + i] >> 4) << (2 * e)
                });
                rec[Q6_HIGH + 64 * (4 * j + t) + 4 * c + i] = byte;
            }
        }
    }
}

/// Sub-block `s`'s scale and minimum of row `c` in a Q4_K record.
fn q4k_scale(rec: &[u8], c: usize, s: usize) -> (u8, u8) {
    (
        rec[Q4_SCALES + 16 * s + c],
        rec[Q4_MINS + 32 * (s / 2) + 2 * c + s % 2],
    )
}

/// Sub-block `s`'s scale of row `c` in a Q6_K record.
fn q6k_scale(rec: &[u8], c: usize, s: usize) -> i8 {
    rec[Q6_SCALES + 32 * (s / 2) + 2 * c + s % 2] as i8
}

/// Row `c`'s values in a record: Q4_K's nibbles, Q6_K's six bits (0..64).
fn values(kind: Kind, rec: &[u8], c: usize) -> [u8; QK] {
    let mut u = [0u8; QK];
    let low = match kind {
        Kind::Q4K => Q4_VALUES,
        Kind::Q6K => Q6_LOW,
    };
    for j in 0..4 {
        for h in 0..8 {
            for i in 0..4 {
                let byte = rec[low + 64 * (8 * j + h) + 4 * c + i];
                u[64 * j + 4 * h + i] = byte & 0xf;
                u[64 * j + 32 + 4 * h + i] = byte >> 4;
            }
        }
        if kind == Kind::Q6K {
            for t in 0..4 {
                for i in 0..4 {
                    let byte = rec[Q6_HIGH + 64 * (4 * j + t) + 4 * c + i];
                    for e in 0..4 {
                        u[64 * j + 4 * (t + 4 * e) + i] |= ((byte >> (2 * e)) & 3) << 4;
                    }
                }
            }
        }
    }
    u
}

/// Products of one panel with `R` activation rows (Q8_K): `out[r][c]` for
/// the panel's row `c`. The reference for the vector version, with the
/// same integer sums and the same rounding steps, so the two agree bit for
/// bit: per block, Q4_K's minimums come off first (`−Σ m·S` times the
/// minimum scale), then the scaled products go on; Q6_K's offset of 32
/// comes off in integers.
#[cfg(test)]
pub(super) fn tile_scalar<const R: usize>(
    kind: Kind,
    panel: &[u8],
    rows: [Row; R],
) -> [[f32; LANES]; R] {
    let mut acc = [[0f32; LANES]; R];
    for (b, rec) in panel.chunks_exact(kind.record()).enumerate() {
        for c in 0..LANES {
            let u = values(kind, rec, c);
            let d = f16_at(&rec[2 * c..]);
            for (acc, row) in acc.iter_mut().zip(&rows) {
                let q = &row.qs[b * QK..(b + 1) * QK];
                let da = row.d[b];
                let dot = |at: usize, len: usize| -> i32 {
                    (at..at + len).map(|v| u[v] as i32 * q[v] as i32).sum()
                };
                match kind {
                    Kind::Q4K => {
                        let dmin = f16_at(&rec[Q4_DMIN + 2 * c..]);
                        let (mut sumi, mut summ) = (0i32, 0i32);
                        for s in 0..8 {
                            let (sc, mn) = q4k_scale(rec, c, s);
                            sumi += sc as i32 * dot(32 * s, 32);
                            summ += mn as i32 * row.sums[b * 8 + s];
                        }
                        acc[c] = (-(summ as f32)).mul_add(dmin * da, acc[c]);
                        acc[c] = (sumi as f32).mul_add(d * da, acc[c]);
                    }
                    Kind::Q6K => {
                        let (mut sumi, mut off) = (0i32, 0i32);
                        for s in 0..16 {
                            let sc = q6k_scale(rec, c, s) as i32;
                            sumi += sc * dot(16 * s, 16);
                            off += sc * row.sums16[b * 16 + s];
                        }
                        acc[c] = ((sumi - 32 * off) as f32).mul_add(d * da, acc[c]);
                    }
                }
            }
        }
    }
    acc
}

#[cfg(glot_x86)]
pub(super) mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// Two activation sums as the 16-bit pair that `vpdpwssd` multiplies
    /// with a pair of sub-blocks' scales or minimums, in every lane. The
    /// sums fit: at most 32 × 127 in magnitude.
    #[inline(always)]
    unsafe fn pair(sums: *const i32) -> __m512i {
        let (a, b) = (*sums, *sums.add(1));
        _mm512_set1_epi32((a & 0xffff) | (b << 16))
    }

    /// Four activation bytes `at..at + 4` of a row, in every lane.
    #[inline(always)]
    unsafe fn four(q: *const i8, at: usize) -> __m512i {
        _mm512_set1_epi32((q.add(at) as *const i32).read_unaligned())
    }

    /// [`super::tile_scalar`] with AVX-512 VNNI. A block goes a quarter
    /// (64 values of each weight row) at a time: its values are decoded
    /// into sixteen vectors once for all `R` rows, and each row takes
    /// sixteen `vpdpbusd` into one chain per sub-block, each chain then
    /// multiplied by its sub-block's sixteen scales.
    ///
    /// # Safety
    /// AVX-512 F, BW and VNNI with AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
    pub(in crate::engine::kernels) unsafe fn tile_vnni<const R: usize>(
        kind: Kind,
        panel: &[u8],
        rows: [Row; R],
    ) -> [[f32; LANES]; R] {
        let record = kind.record();
        let kb = panel.len() / record;
        for row in &rows {
            assert!(row.qs.len() >= kb * QK && row.d.len() >= kb);
            assert!(row.sums.len() >= kb * 8 && row.sums16.len() >= kb * 16);
        }
        let low = _mm512_set1_epi8(0x0f);
        let two = _mm512_set1_epi8(0x30);
        let mut acc = [_mm512_setzero_ps(); R];
        for b in 0..kb {
            let rec = panel.as_ptr().add(b * record);
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(rec as *const __m256i));
            let mut sumi = [_mm512_setzero_si512(); R];
            // The pairs of scales (Q6_K) or minimums (Q4_K) as 16 bits, and
            // where the low nibbles start.
            let (pairs_at, low_at) = match kind {
                Kind::Q4K => (Q4_MINS, Q4_VALUES),
                Kind::Q6K => (Q6_SCALES, Q6_LOW),
            };
            let pairs: [__m512i; 8] = std::array::from_fn(|t| match kind {
                Kind::Q4K if t >= 4 => _mm512_setzero_si512(),
                Kind::Q4K => _mm512_cvtepu8_epi16(_mm256_loadu_si256(
                    rec.add(pairs_at + 32 * t) as *const __m256i
                )),
                Kind::Q6K => _mm512_cvtepi8_epi16(_mm256_loadu_si256(
                    rec.add(pairs_at + 32 * t) as *const __m256i
                )),
            });
            let dmin = match kind {
                Kind::Q4K => {
                    _mm512_cvtph_ps(_mm256_loadu_si256(rec.add(Q4_DMIN) as *const __m256i))
                }
                Kind::Q6K => _mm512_setzero_ps(),
            };
            for r in 0..R {
                let row = rows[r];
                let da = *row.d.get_unchecked(b);
                match kind {
                    Kind::Q4K => {
                        let sums = row.sums.as_ptr().add(b * 8);
                        let mut m = _mm512_setzero_si512();
                        for (t, &p) in pairs[..4].iter().enumerate() {
                            m = _mm512_dpwssd_epi32(m, p, pair(sums.add(2 * t)));
                        }
                        let scale = _mm512_mul_ps(dmin, _mm512_set1_ps(da));
                        acc[r] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), scale, acc[r]);
                    }
                    Kind::Q6K => {
                        let sums = row.sums16.as_ptr().add(b * 16);
                        let mut off = _mm512_setzero_si512();
                        for (t, &p) in pairs.iter().enumerate() {
                            off = _mm512_dpwssd_epi32(off, p, pair(sums.add(2 * t)));
                        }
                        sumi[r] = _mm512_sub_epi32(sumi[r], _mm512_slli_epi32::<5>(off));
                    }
                }
            }
            for j in 0..4 {
                // The quarter's sixteen groups of four values per row.
                let mut w = [_mm512_setzero_si512(); 16];
                for h in 0..8 {
                    let v = _mm512_loadu_si512(rec.add(low_at + 64 * (8 * j + h)) as *const _);
                    w[h] = _mm512_and_si512(v, low);
                    w[h + 8] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
                }
                if kind == Kind::Q6K {
                    for t in 0..4 {
                        let v = _mm512_loadu_si512(rec.add(Q6_HIGH + 64 * (4 * j + t)) as *const _);
                        let parts = [
                            _mm512_slli_epi16::<4>(v),
                            _mm512_slli_epi16::<2>(v),
                            v,
                            _mm512_srli_epi16::<2>(v),
                        ];
                        for (e, part) in parts.into_iter().enumerate() {
                            let g = t + 4 * e;
                            w[g] = _mm512_or_si512(w[g], _mm512_and_si512(part, two));
                        }
                    }
                }
                // Each sub-block's sixteen scales as 32-bit lanes.
                let scale: [__m512i; 4] = match kind {
                    Kind::Q4K => std::array::from_fn(|s| match s {
                        0 | 1 => {
                            let at = rec.add(Q4_SCALES + 16 * (2 * j + s));
                            _mm512_cvtepu8_epi32(_mm_loadu_si128(at as *const __m128i))
                        }
                        _ => _mm512_setzero_si512(),
                    }),
                    Kind::Q6K => std::array::from_fn(|s| {
                        let p = pairs[2 * j + s / 2];
                        match s % 2 {
                            0 => _mm512_srai_epi32::<16>(_mm512_slli_epi32::<16>(p)),
                            _ => _mm512_srai_epi32::<16>(p),
                        }
                    }),
                };
                for r in 0..R {
                    let q = rows[r].qs.as_ptr().add(b * QK + 64 * j);
                    let mut s = sumi[r];
                    match kind {
                        Kind::Q4K => {
                            // Sub-block 2j: the low nibbles, values 0..32
                            // of the quarter; 2j + 1: the high ones.
                            for half in 0..2 {
                                let mut p = _mm512_setzero_si512();
                                for h in 0..8 {
                                    p = _mm512_dpbusd_epi32(
                                        p,
                                        w[8 * half + h],
                                        four(q, 32 * half + 4 * h),
                                    );
                                }
                                s = _mm512_add_epi32(s, _mm512_mullo_epi32(p, scale[half]));
                            }
                        }
                        Kind::Q6K => {
                            // Group g holds values 4g..4g + 4 of the quarter;
                            // sub-block 4j + u is groups 4u..4u + 4.
                            for (u, (w, &scale)) in w.chunks_exact(4).zip(&scale).enumerate() {
                                let mut p = _mm512_setzero_si512();
                                for (i, &w) in w.iter().enumerate() {
                                    p = _mm512_dpbusd_epi32(p, w, four(q, 16 * u + 4 * i));
                                }
                                s = _mm512_add_epi32(s, _mm512_mullo_epi32(p, scale));
                            }
                        }
                    }
                    sumi[r] = s;
                }
            }
            for r in 0..R {
                let scale = _mm512_mul_ps(d, _mm512_set1_ps(*rows[r].d.get_unchecked(b)));
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[r]), scale, acc[r]);
            }
        }
        let mut out = [[0f32; LANES]; R];
        for (o, a) in out.iter_mut().zip(acc) {
            _mm512_storeu_ps(o.as_mut_ptr(), a);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::acts::{Acts, Scheme};
    use crate::engine::kernels::cpu::{isa, Isa};
    use crate::engine::kernels::tests::{flat, random};
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    const KINDS: [(Kind, GgmlDType); 2] =
        [(Kind::Q4K, GgmlDType::Q4K), (Kind::Q6K, GgmlDType::Q6K)];

    /// A random `n × k` matrix quantized by candle, and its panels.
    fn matrix(dtype: GgmlDType, kind: Kind, n: usize, k: usize) -> (QTensor, KPanels) {
        let w = Tensor::from_vec(random(n * k, 7), (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let panels = KPanels::new(kind, n, k, &q.data().unwrap()).unwrap();
        (q, panels)
    }

    /// The panels' scalar products are candle's products from the file's
    /// blocks, up to summation order, in every panel (the last one padded):
    /// the layout loses nothing.
    #[test]
    fn scalar_products_from_panels_equal_candles() {
        for (kind, dtype) in KINDS {
            let (n, k, m) = (37, 512, 3);
            let (q, panels) = matrix(dtype, kind, n, k);
            let xs = random(m * k, 11);
            let x = Tensor::from_vec(xs.clone(), (m, k), &Device::Cpu).unwrap();
            let want = flat(
                QMatMul::from_arc(std::sync::Arc::new(q))
                    .unwrap()
                    .forward(&x),
            );
            let acts = Acts::quantize(Scheme::Q8K, &xs, k);
            for p in 0..panels.panels() {
                let got: [[f32; LANES]; 3] =
                    tile_scalar(kind, panels.panel(p), std::array::from_fn(|r| acts.row(r)));
                for (r, got) in got.iter().enumerate() {
                    for (c, g) in got.iter().enumerate() {
                        let col = p * LANES + c;
                        if col >= n {
                            assert_eq!(*g, 0.0, "{kind:?} padding row {col}");
                            continue;
                        }
                        let w = want[r * n + col];
                        assert!(
                            (g - w).abs() <= 1e-3 * (1.0 + w.abs()),
                            "{kind:?} ({r}, {col}): {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    /// The AVX-512 VNNI kernel gives the scalar products bit for bit, in
    /// tiles of four rows and one row alone; other CPUs have no vector
    /// kernel for panels to test.
    #[test]
    fn the_vector_kernel_equals_the_scalar_one_bit_for_bit() {
        if isa() != Isa::Vnni {
            assert!(matches!(isa(), Isa::Avx2 | Isa::Scalar));
            return;
        }
        for (kind, dtype) in KINDS {
            for k in [256, 768] {
                let (_, panels) = matrix(dtype, kind, 37, k);
                let acts = Acts::quantize(Scheme::Q8K, &random(3 * k, 5), k);
                for p in 0..panels.panels() {
                    let panel = panels.panel(p);
                    let rows = std::array::from_fn(|i| acts.row(i % 3));
                    let want: [[f32; LANES]; 4] = tile_scalar(kind, panel, rows);
                    // SAFETY: `isa()` found AVX-512 VNNI.
                    let got = unsafe { x86::tile_vnni(kind, panel, rows) };
                    let [one] = unsafe { x86::tile_vnni(kind, panel, [acts.row(1)]) };
                    assert_eq!(got, want, "{kind:?} k={k} panel {p}");
                    assert_eq!(one, want[1], "{kind:?} k={k} panel {p}, one row");
                }
            }
        }
    }

    /// Rows looked up in the panels are candle's dequantized rows, exactly.
    #[test]
    fn rows_equal_the_dequantized_matrix() {
        for (kind, dtype) in KINDS {
            let (n, k) = (19, 512);
            let (q, panels) = matrix(dtype, kind, n, k);
            let want = flat(q.dequantize(&Device::Cpu));
            let mut row = vec![0f32; k];
            for r in 0..n {
                panels.row(r, &mut row);
                assert_eq!(row, want[r * k..(r + 1) * k], "{kind:?} row {r}");
            }
        }
    }

    /// A file of the wrong size, or rows that are not whole blocks, is
    /// refused rather than read out of bounds.
    #[test]
    fn misfit_bytes_are_refused() {
        let src = vec![0u8; 2 * BLOCK];
        assert!(KPanels::new(Kind::Q4K, 2, 256, &src).is_some());
        assert!(KPanels::new(Kind::Q4K, 3, 256, &src).is_none());
        assert!(KPanels::new(Kind::Q4K, 1, 512 + 32, &src).is_none());
        assert!(KPanels::new(Kind::Q6K, 2, 256, &src).is_none());
    }
}
