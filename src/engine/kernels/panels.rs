//! The 32-value block formats rearranged at load into panels of 16 weight
//! rows, so that one vector instruction works on 16 rows at once.
//!
//! In the file's layout every weight row is a run of blocks, and a product
//! with one activation block ends in a horizontal sum per row: most of the
//! instructions of a tile went into gathering, widening and summing rather
//! than multiplying. In a panel, block `b` of 16 rows is one record: their
//! 16 scales side by side, then their values arranged so that 32-bit lane
//! `c` of a 64-byte vector holds four consecutive values of row `c`. One
//! `vpdpbusd` with four activation bytes broadcast to every lane then adds
//! four products to each of the 16 rows, and a block's 16 results come out
//! as one vector, ready for the 16 scales.
//!
//! Values are stored without sign (the file's value plus the format's
//! offset: 128 for Q8_0, 16 for Q5_0, 8 for Q4_0, none for Q4_1 and Q5_1),
//! because the integer product takes one unsigned side. The offset comes
//! back out through the activation block's sum, computed once per block:
//! Σ (u − o)·q = Σ u·q − o·Σ q, exactly, in integers.
//!
//! A panel record has the block size of 16 file blocks, so the rearranged
//! matrix takes no more memory than the file's, and it replaces it.
//!
//! Record of block `b` of a panel, in bytes:
//! - 16 f16 scales (32);
//! - Q4_1, Q5_1: 16 f16 minimums (32);
//! - Q5_0, Q5_1: eight 64-bit masks, bit `4c + j` of mask `g` being the
//!   fifth bit of value `4g + j` of row `c` (64);
//! - Q8_0: eight 64-byte vectors, byte `4c + j` of vector `g` being value
//!   `4g + j` of row `c` (512);
//! - the others: four 64-byte vectors, byte `4c + j` of vector `h` holding
//!   value `4h + j` of row `c` in its low nibble and value `16 + 4h + j` in
//!   its high one (256). This is the file's own byte `4h + j` of row `c`'s
//!   block: the nibbles need no shifting, only the bytes moving.
//!
//! NEON's vectors are 16 bytes: quarter `i` of each 64-byte vector (rows
//! `4i..4i + 4`) is one of them, four values of four rows, and `sdot` adds
//! four products to each of the four rows, as `vpdpbusd` does to sixteen.

use super::acts::Row;
use super::formats::{f16_at, Format, QK};

/// Weight rows per panel.
pub(super) const LANES: usize = 16;

impl Format {
    /// What is added to the file's values to make them unsigned.
    pub(super) fn offset(self) -> i32 {
        match self {
            Format::Q8_0 => 128,
            Format::Q5_0 => 16,
            Format::Q4_0 => 8,
            Format::Q4_1 | Format::Q5_1 => 0,
        }
    }

    fn has_high_bits(self) -> bool {
        matches!(self, Format::Q5_0 | Format::Q5_1)
    }

    /// Where the high-bit masks and the values start in a panel record.
    fn record_layout(self) -> (usize, usize) {
        let high = if self.has_min() { 64 } else { 32 };
        let values = if self.has_high_bits() {
            high + 64
        } else {
            high
        };
        (high, values)
    }
}

/// A matrix of `n` rows (padded with zero rows to whole panels) of `k`
/// values, in panels.
pub(super) struct Panels {
    pub format: Format,
    pub n: usize,
    pub k: usize,
    data: Vec<u8>,
}

impl Panels {
    /// Rearranges `src`, `n` rows of `k` values in the file's layout, the
    /// panels split between the threads.
    pub fn new(format: Format, n: usize, k: usize, src: &[u8]) -> Panels {
        let kb = k / QK;
        let panel_bytes = kb * LANES * format.block_bytes();
        let data = super::pool::filled(n.div_ceil(LANES), panel_bytes, |p, panel| {
            fill_panel(format, kb, src, p, n, panel)
        });
        Panels { format, n, k, data }
    }

    pub fn panels(&self) -> usize {
        self.n.div_ceil(LANES)
    }

    fn record_bytes(&self) -> usize {
        LANES * self.format.block_bytes()
    }

    /// Panel `p`'s records, one per block.
    pub fn panel(&self, p: usize) -> &[u8] {
        let len = self.k / QK * self.record_bytes();
        &self.data[p * len..(p + 1) * len]
    }

    /// Row `row` as f32 values (a row of an embedding table).
    pub fn row(&self, row: usize, out: &mut [f32]) {
        let record = self.record_bytes();
        let panel = self.panel(row / LANES);
        let c = row % LANES;
        let offset = self.format.offset();
        for (rec, out) in panel.chunks_exact(record).zip(out.chunks_exact_mut(QK)) {
            let (d, m) = scale_and_min(self.format, rec, c);
            for (o, &u) in out.iter_mut().zip(&values(self.format, rec, c)) {
                *o = d * (u as i32 - offset) as f32 + m;
            }
        }
    }
}

/// Writes panel `p` of the `n` rows of `kb` blocks in `src`.
fn fill_panel(format: Format, kb: usize, src: &[u8], p: usize, n: usize, panel: &mut [u8]) {
    let bb = format.block_bytes();
    let record = LANES * bb;
    let (high_at, values_at) = format.record_layout();
    let rows = LANES.min(n - p * LANES);
    let row_bytes = kb * bb;
    let src = &src[p * LANES * row_bytes..][..rows * row_bytes];
    // One record whole while it is in the cache. Q8_0 and the 4-bit
    // formats move four bytes at a time: Q8_0's values become unsigned by
    // flipping their top bit (v + 128), and a 4-bit block's bytes are the
    // record's as they are.
    let words = match format {
        Format::Q8_0 => Some((2, 0x8080_8080u32)),
        Format::Q4_0 | Format::Q4_1 => Some((bb - QK / 2, 0)),
        Format::Q5_0 | Format::Q5_1 => None,
    };
    for (b, rec) in panel.chunks_exact_mut(record).enumerate() {
        for c in 0..rows {
            let block = &src[c * row_bytes + b * bb..][..bb];
            rec[2 * c..2 * c + 2].copy_from_slice(&block[..2]);
            if format.has_min() {
                rec[32 + 2 * c..34 + 2 * c].copy_from_slice(&block[2..4]);
            }
            if let Some((quants_at, flip)) = words {
                for (g, word) in block[quants_at..].chunks_exact(4).enumerate() {
                    let word = u32::from_le_bytes(word.try_into().unwrap()) ^ flip;
                    rec[values_at + 64 * g + 4 * c..][..4].copy_from_slice(&word.to_le_bytes());
                }
                continue;
            }
            let u = unsigned(format, block);
            for (i, &u) in u.iter().enumerate() {
                let at = 4 * c + i % 4;
                rec[high_at + 8 * (i / 4) + at / 8] |= ((u >> 4) & 1) << (at % 8);
            }
            for i in 0..QK / 2 {
                rec[values_at + 64 * (i / 4) + 4 * c + i % 4] =
                    (u[i] & 0x0f) | (u[i + QK / 2] & 0x0f) << 4;
            }
        }
    }
}

/// A file block's values plus the format's offset.
fn unsigned(format: Format, block: &[u8]) -> [u8; QK] {
    format
        .values(block)
        .map(|v| (v as i32 + format.offset()) as u8)
}

/// Row `c`'s scale and minimum (0 for formats without) in a record.
fn scale_and_min(format: Format, rec: &[u8], c: usize) -> (f32, f32) {
    let m = if format.has_min() {
        f16_at(&rec[32 + 2 * c..])
    } else {
        0.0
    };
    (f16_at(&rec[2 * c..]), m)
}

/// Row `c`'s unsigned values in a record.
fn values(format: Format, rec: &[u8], c: usize) -> [u8; QK] {
    let (high_at, values_at) = format.record_layout();
    let mut u = [0u8; QK];
    for (i, u) in u.iter_mut().enumerate() {
        let (g, j) = (i / 4, i % 4);
        *u = if format == Format::Q8_0 {
            rec[values_at + 64 * g + 4 * c + j]
        } else {
            let byte = rec[values_at + 64 * (g % 4) + 4 * c + j];
            let nibble = if g < 4 { byte & 0x0f } else { byte >> 4 };
            let high = if format.has_high_bits() {
                (rec[high_at + 8 * g + (4 * c + j) / 8] >> ((4 * c + j) % 8)) & 1
            } else {
                0
            };
            nibble | high << 4
        };
    }
    u
}

/// Products of panel `panel` (records of `kb` blocks) with `R` activation
/// rows: `out[r][c]` for the panel's row `c`. The reference for the vector
/// versions, with the same integer sums.
pub(super) fn tile_scalar<const R: usize>(
    format: Format,
    panel: &[u8],
    rows: [Row; R],
) -> [[f32; LANES]; R] {
    let record = LANES * format.block_bytes();
    let offset = format.offset();
    let mut acc = [[0f32; LANES]; R];
    for (b, rec) in panel.chunks_exact(record).enumerate() {
        for c in 0..LANES {
            let (d, m) = scale_and_min(format, rec, c);
            let u = values(format, rec, c);
            for (acc, row) in acc.iter_mut().zip(&rows) {
                let q = &row.qs[b * QK..(b + 1) * QK];
                let dot: i32 = u.iter().zip(q).map(|(&u, &q)| u as i32 * q as i32).sum();
                let p = dot - offset * row.sums[b];
                acc[c] += d * row.d[b] * p as f32 + m * row.s[b];
            }
        }
    }
    acc
}

/// A panel's record size and blocks, after checking that every row has
/// as many: what the vector kernels index without bounds checks.
#[cfg(any(glot_x86, glot_neon))]
fn blocks_of(format: Format, panel: &[u8], rows: &[Row]) -> (usize, usize) {
    let record = LANES * format.block_bytes();
    let kb = panel.len() / record;
    for row in rows {
        assert!(row.qs.len() >= kb * QK && row.d.len() >= kb);
        assert!(row.s.len() >= kb && row.sums.len() >= kb);
    }
    (record, kb)
}

#[cfg(glot_x86)]
pub(super) mod x86 {
    use super::{Format, Row, LANES, QK};
    use std::arch::x86_64::*;

    /// A record's unsigned values as eight 64-byte vectors, vector `g`
    /// holding values `4g..4g + 4` of each of the 16 rows (see the record
    /// layout above): Q8_0's as they lie, the others' nibbles split and
    /// their fifth bits added.
    ///
    /// # Safety
    /// `rec` is a whole panel record of `format`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
    pub(in crate::engine::kernels) unsafe fn unsigned_values(
        format: Format,
        rec: *const u8,
    ) -> [__m512i; 8] {
        let (high_at, values_at) = format.record_layout();
        let mut w = [_mm512_setzero_si512(); 8];
        // SAFETY: the caller's record holds the bytes read.
        unsafe {
            let v = rec.add(values_at);
            if format == Format::Q8_0 {
                for (g, w) in w.iter_mut().enumerate() {
                    *w = _mm512_loadu_si512(v.add(64 * g) as *const _);
                }
                return w;
            }
            let low = _mm512_set1_epi8(0x0f);
            for h in 0..4 {
                let bytes = _mm512_loadu_si512(v.add(64 * h) as *const _);
                w[h] = _mm512_and_si512(bytes, low);
                w[h + 4] = _mm512_and_si512(_mm512_srli_epi16::<4>(bytes), low);
            }
            if format.has_high_bits() {
                let sixteen = _mm512_set1_epi8(16);
                for (g, w) in w.iter_mut().enumerate() {
                    let bits = (rec.add(high_at + 8 * g) as *const u64).read_unaligned();
                    *w = _mm512_mask_add_epi8(*w, bits, *w, sixteen);
                }
            }
        }
        w
    }

    /// [`super::tile_scalar`] with AVX-512 VNNI: per block, the panel's
    /// values are decoded into eight vectors once for all `R` rows, and
    /// each row takes eight `vpdpbusd` in two chains.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
    pub(in crate::engine::kernels) unsafe fn tile_vnni<const R: usize>(
        format: Format,
        panel: &[u8],
        rows: [Row; R],
    ) -> [[f32; LANES]; R] {
        let (record, kb) = super::blocks_of(format, panel, &rows);
        let offset = format.offset();
        let mut acc = [_mm512_setzero_ps(); R];
        for b in 0..kb {
            let rec = panel.as_ptr().add(b * record);
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(rec as *const __m256i));
            let w = unsigned_values(format, rec);
            let m = format
                .has_min()
                .then(|| _mm512_cvtph_ps(_mm256_loadu_si256(rec.add(32) as *const __m256i)));
            for r in 0..R {
                let row = rows[r];
                let q = row.qs.as_ptr().add(b * QK) as *const i32;
                let q = |g: usize| _mm512_set1_epi32(q.add(g).read_unaligned());
                let mut p0 = _mm512_set1_epi32(-offset * *row.sums.get_unchecked(b));
                let mut p1 = _mm512_setzero_si512();
                for g in (0..8).step_by(2) {
                    p0 = _mm512_dpbusd_epi32(p0, w[g], q(g));
                    p1 = _mm512_dpbusd_epi32(p1, w[g + 1], q(g + 1));
                }
                let p = _mm512_cvtepi32_ps(_mm512_add_epi32(p0, p1));
                let scale = _mm512_mul_ps(d, _mm512_set1_ps(*row.d.get_unchecked(b)));
                acc[r] = _mm512_fmadd_ps(p, scale, acc[r]);
                if let Some(m) = m {
                    acc[r] = _mm512_fmadd_ps(m, _mm512_set1_ps(*row.s.get_unchecked(b)), acc[r]);
                }
            }
        }
        let mut out = [[0f32; LANES]; R];
        for (o, a) in out.iter_mut().zip(acc) {
            _mm512_storeu_ps(o.as_mut_ptr(), a);
        }
        out
    }

    /// Bytes of 0xff where bit i of `bits` is set.
    #[inline(always)]
    unsafe fn bytes_of_bits(bits: u32) -> __m256i {
        // Byte i takes byte i/8 of `bits`, then keeps only its bit i%8.
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(bits as i32),
            _mm256_set_epi64x(
                0x0303030303030303,
                0x0202020202020202,
                0x0101010101010101,
                0x0000000000000000,
            ),
        );
        let select = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
        _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select)
    }

    /// [`super::tile_scalar`] with AVX2: each 64-byte vector of a record is
    /// two halves of eight rows. Byte products are summed in pairs into
    /// 16 bits (`vpmaddubsw`), which Q8_0's unsigned values up to 255 would
    /// overflow: for Q8_0 the sign goes back onto the values and over to the
    /// activations instead, and the offset is not subtracted.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(in crate::engine::kernels) unsafe fn tile_avx2<const R: usize>(
        format: Format,
        panel: &[u8],
        rows: [Row; R],
    ) -> [[f32; LANES]; R] {
        let (record, kb) = super::blocks_of(format, panel, &rows);
        let (high_at, values_at) = format.record_layout();
        let offset = if format == Format::Q8_0 {
            0
        } else {
            format.offset()
        };
        let low = _mm256_set1_epi8(0x0f);
        let sixteen = _mm256_set1_epi8(16);
        let flip = _mm256_set1_epi8(-128);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for b in 0..kb {
            let rec = panel.as_ptr().add(b * record);
            let v = rec.add(values_at);
            let mut p = [[_mm256_setzero_si256(); 2]; R];
            for g in 0..8 {
                for (half, at) in [(0, 0), (1, 32)] {
                    let add = |p: &mut __m256i, prod: __m256i| {
                        *p = _mm256_add_epi32(*p, _mm256_madd_epi16(prod, ones))
                    };
                    if format == Format::Q8_0 {
                        let x = _mm256_xor_si256(
                            _mm256_loadu_si256(v.add(64 * g + at) as *const __m256i),
                            flip,
                        );
                        let ax = _mm256_sign_epi8(x, x);
                        for r in 0..R {
                            let q = rows[r].qs.as_ptr().add(b * QK + 4 * g) as *const i32;
                            let y = _mm256_set1_epi32(q.read_unaligned());
                            add(
                                &mut p[r][half],
                                _mm256_maddubs_epi16(ax, _mm256_sign_epi8(y, x)),
                            );
                        }
                        continue;
                    }
                    let bytes = _mm256_loadu_si256(v.add(64 * (g % 4) + at) as *const __m256i);
                    let mut w = if g < 4 {
                        _mm256_and_si256(bytes, low)
                    } else {
                        _mm256_and_si256(_mm256_srli_epi16::<4>(bytes), low)
                    };
                    if format.has_high_bits() {
                        let bits =
                            (rec.add(high_at + 8 * g + at / 8) as *const u32).read_unaligned();
                        w = _mm256_or_si256(w, _mm256_and_si256(bytes_of_bits(bits), sixteen));
                    }
                    for r in 0..R {
                        let q = rows[r].qs.as_ptr().add(b * QK + 4 * g) as *const i32;
                        let y = _mm256_set1_epi32(q.read_unaligned());
                        add(&mut p[r][half], _mm256_maddubs_epi16(w, y));
                    }
                }
            }
            for half in 0..2 {
                let h = rec.add(16 * half);
                let d = _mm256_cvtph_ps(_mm_loadu_si128(h as *const __m128i));
                let m = format
                    .has_min()
                    .then(|| _mm256_cvtph_ps(_mm_loadu_si128(h.add(32) as *const __m128i)));
                for r in 0..R {
                    let row = rows[r];
                    let shift = _mm256_set1_epi32(offset * *row.sums.get_unchecked(b));
                    let pf = _mm256_cvtepi32_ps(_mm256_sub_epi32(p[r][half], shift));
                    let scale = _mm256_mul_ps(d, _mm256_set1_ps(*row.d.get_unchecked(b)));
                    let a = &mut acc[r][half];
                    *a = _mm256_fmadd_ps(pf, scale, *a);
                    if let Some(m) = m {
                        *a = _mm256_fmadd_ps(m, _mm256_set1_ps(*row.s.get_unchecked(b)), *a);
                    }
                }
            }
        }
        let mut out = [[0f32; LANES]; R];
        for (o, a) in out.iter_mut().zip(acc) {
            _mm256_storeu_ps(o.as_mut_ptr(), a[0]);
            _mm256_storeu_ps(o.as_mut_ptr().add(8), a[1]);
        }
        out
    }
}

#[cfg(glot_neon)]
pub(super) mod neon {
    use super::{Format, Row, LANES, QK};
    use crate::engine::kernels::neon::{f16x4, sdot, sdot_widening};
    use std::arch::aarch64::*;

    /// [`super::tile_scalar`] with `sdot`.
    ///
    /// # Safety
    /// The CPU has the dot-product extension.
    #[target_feature(enable = "dotprod")]
    pub(in crate::engine::kernels) unsafe fn tile_dot<const R: usize>(
        format: Format,
        panel: &[u8],
        rows: [Row; R],
    ) -> [[f32; LANES]; R] {
        // SAFETY: the caller promises the extension `sdot` needs.
        tile(format, panel, rows, |acc, a, b| unsafe { sdot(acc, a, b) })
    }

    /// [`super::tile_scalar`] on CPUs without `sdot`.
    pub(in crate::engine::kernels) fn tile_widening<const R: usize>(
        format: Format,
        panel: &[u8],
        rows: [Row; R],
    ) -> [[f32; LANES]; R] {
        tile(format, panel, rows, sdot_widening)
    }

    /// The panel a quarter at a time (four rows, one 16-byte vector of
    /// each group of four values): per block, the quarter's values are
    /// decoded into eight vectors once for all `R` rows, and each row takes
    /// eight `dot`s in two chains, as [`super::x86::tile_vnni`] does for
    /// all sixteen rows. `dot` takes signed bytes on both sides: Q8_0's
    /// values get their sign back (its offset is then not subtracted), the
    /// others are below 32 and stay as they are.
    #[inline(always)]
    fn tile<const R: usize>(
        format: Format,
        panel: &[u8],
        rows: [Row; R],
        dot: impl Fn(int32x4_t, int8x16_t, int8x16_t) -> int32x4_t,
    ) -> [[f32; LANES]; R] {
        let (record, kb) = super::blocks_of(format, panel, &rows);
        let (high_at, values_at) = format.record_layout();
        let offset = if format == Format::Q8_0 {
            0
        } else {
            format.offset()
        };
        let mut out = [[0f32; LANES]; R];
        // SAFETY: plain Advanced SIMD; every read lies in the panel's `kb`
        // records or in the rows' first `kb` blocks, which `blocks_of`
        // checked.
        unsafe {
            let low = vdupq_n_u8(0x0f);
            let sixteen = vdupq_n_u8(16);
            let flip = vdupq_n_u8(0x80);
            // Byte i of a quarter's 16-bit mask, spread: byte i / 8 of the
            // mask, of which `select` keeps bit i % 8.
            let spread = vld1q_u8([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1].as_ptr());
            let select =
                vld1q_u8([1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128].as_ptr());
            for quarter in 0..LANES / 4 {
                let mut acc = [vdupq_n_f32(0.0); R];
                for b in 0..kb {
                    let rec = panel.as_ptr().add(b * record);
                    let v = rec.add(values_at + 16 * quarter);
                    let mut w = [vdupq_n_u8(0); 8];
                    if format == Format::Q8_0 {
                        for (g, w) in w.iter_mut().enumerate() {
                            *w = veorq_u8(vld1q_u8(v.add(64 * g)), flip);
                        }
                    } else {
                        for h in 0..4 {
                            let bytes = vld1q_u8(v.add(64 * h));
                            w[h] = vandq_u8(bytes, low);
                            w[h + 4] = vshrq_n_u8::<4>(bytes);
                        }
                        if format.has_high_bits() {
                            for (g, w) in w.iter_mut().enumerate() {
                                let at = rec.add(high_at + 8 * g + 2 * quarter) as *const u16;
                                let mask = vreinterpretq_u8_u16(vdupq_n_u16(at.read_unaligned()));
                                let set = vtstq_u8(vqtbl1q_u8(mask, spread), select);
                                *w = vorrq_u8(*w, vandq_u8(set, sixteen));
                            }
                        }
                    }
                    let w = w.map(|w| vreinterpretq_s8_u8(w));
                    let d = f16x4(rec.add(8 * quarter));
                    let m = format.has_min().then(|| f16x4(rec.add(32 + 8 * quarter)));
                    for r in 0..R {
                        let row = rows[r];
                        let q = row.qs.as_ptr().add(b * QK) as *const i32;
                        let q =
                            |g: usize| vreinterpretq_s8_s32(vdupq_n_s32(q.add(g).read_unaligned()));
                        let mut p0 = vdupq_n_s32(-offset * *row.sums.get_unchecked(b));
                        let mut p1 = vdupq_n_s32(0);
                        for g in (0..8).step_by(2) {
                            p0 = dot(p0, w[g], q(g));
                            p1 = dot(p1, w[g + 1], q(g + 1));
                        }
                        let p = vcvtq_f32_s32(vaddq_s32(p0, p1));
                        let scale = vmulq_n_f32(d, *row.d.get_unchecked(b));
                        acc[r] = vfmaq_f32(acc[r], p, scale);
                        if let Some(m) = m {
                            acc[r] = vfmaq_n_f32(acc[r], m, *row.s.get_unchecked(b));
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
