//! Matrix products for the 32-value block formats Q8_0, Q5_0, Q5_1, Q4_0
//! and Q4_1.
//!
//! llama.cpp's Q4_K_M files store every matrix whose rows are not a multiple
//! of 256 values as Q5_0 (and Q6_K ones as Q8_0): for Qwen2.5-0.5B (width
//! 896) that is every projection but `ffn_down`. candle has only a scalar
//! Q5_0 product on x86, which spent 93% of a profiled Q4_K_M run, and its
//! faster repacked kernels need rows of 256; its Q4_0, Q4_1 and Q5_1
//! products are slower than llama.cpp's too. These kernels quantize the
//! activations to 8 bits per block of 32 as llama.cpp does and take integer
//! dot products with AVX-512 VNNI where the CPU has it, AVX2 otherwise, so
//! the numbers are candle's and llama.cpp's up to summation order. The
//! formats with a minimum (Q4_1, Q5_1: value = d·q + m) add m times the
//! activation block's sum, which is kept with the quantized activations as
//! llama.cpp's Q8_1 keeps it.

pub mod attention;
mod half_precision;
mod kquants;

use std::sync::{Arc, OnceLock};

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};
use half::f16;

/// Values per block in both formats.
const QK: usize = 32;
/// Activation rows that share one pass over a weight block.
const ROWS: usize = 4;
/// Weight rows that share one pass over an activation block.
const C: usize = 4;
/// Weight rows per unit of work when there are several activation rows.
const COLS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    /// f16 scale, 32 × i8.
    Q8_0,
    /// f16 scale, 32 high bits, 16 bytes of nibbles; value = 5 bits − 16.
    Q5_0,
    /// f16 scale, f16 minimum, 32 high bits, 16 bytes of nibbles; value =
    /// scale · 5 bits + minimum.
    Q5_1,
    /// f16 scale, 16 bytes of nibbles; value = nibble − 8.
    Q4_0,
    /// f16 scale, f16 minimum, 16 bytes of nibbles; value = scale · nibble
    /// + minimum.
    Q4_1,
}

impl Format {
    fn block_bytes(self) -> usize {
        match self {
            Format::Q8_0 => 34,
            Format::Q5_0 => 22,
            Format::Q5_1 => 24,
            Format::Q4_0 => 18,
            Format::Q4_1 => 20,
        }
    }

    /// Whether blocks carry a minimum after the scale.
    fn has_min(self) -> bool {
        matches!(self, Format::Q5_1 | Format::Q4_1)
    }

    /// The 32 values of one block, without the scale.
    fn values(self, block: &[u8]) -> [i8; QK] {
        let mut v = [0i8; QK];
        match self {
            Format::Q8_0 => {
                for (o, &b) in v.iter_mut().zip(&block[2..34]) {
                    *o = b as i8;
                }
            }
            Format::Q5_0 | Format::Q5_1 => {
                let (at, offset) = match self {
                    Format::Q5_0 => (2, 16),
                    _ => (4, 0),
                };
                let qh =
                    u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]);
                for j in 0..QK / 2 {
                    let q = block[at + 4 + j];
                    let lo = (q & 0x0f) | ((((qh >> j) & 1) as u8) << 4);
                    let hi = (q >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
                    v[j] = lo as i8 - offset;
                    v[j + QK / 2] = hi as i8 - offset;
                }
            }
            Format::Q4_0 | Format::Q4_1 => {
                let (at, offset) = match self {
                    Format::Q4_0 => (2, 8),
                    _ => (4, 0),
                };
                for j in 0..QK / 2 {
                    let q = block[at + j];
                    v[j] = (q & 0x0f) as i8 - offset;
                    v[j + QK / 2] = (q >> 4) as i8 - offset;
                }
            }
        }
        v
    }
}

/// The minimum of a Q4_1 or Q5_1 block.
fn min(block: &[u8]) -> f32 {
    f16::from_le_bytes([block[2], block[3]]).to_f32()
}

fn scale(block: &[u8]) -> f32 {
    f16::from_le_bytes([block[0], block[1]]).to_f32()
}

/// A matrix of `n` rows of `k` values in a block format, as the GGUF file
/// holds it (the tensor is shared, not copied: a tied embedding table is
/// both the input lookup and this output head).
pub struct BlockMatrix {
    format: Format,
    n: usize,
    k: usize,
    tensor: Arc<QTensor>,
}

/// Activations quantized as llama.cpp's Q8_0: per block of 32 a scale and
/// 32 signed bytes.
struct Acts {
    k: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    /// Per block, the scale times the sum of the quantized values, in f16
    /// precision (llama.cpp's Q8_1 `s`): what a weight block's minimum
    /// multiplies.
    s: Vec<f32>,
}

impl Acts {
    fn quantize(x: &[f32], k: usize) -> Acts {
        let mut qs = vec![0; x.len()];
        let mut d = vec![0.0; x.len() / QK];
        let mut s = vec![0.0; x.len() / QK];
        match isa() {
            // SAFETY: the CPU has AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Vnni => unsafe { x86::quantize(x, &mut qs, &mut d, &mut s) },
            _ => quantize_blocks(x, &mut qs, &mut d, &mut s),
        }
        Acts { k, qs, d, s }
    }

    fn row(&self, r: usize) -> Row<'_> {
        let kb = self.k / QK;
        Row {
            qs: &self.qs[r * self.k..(r + 1) * self.k],
            d: &self.d[r * kb..(r + 1) * kb],
            s: &self.s[r * kb..(r + 1) * kb],
        }
    }
}

/// Rounds each block of 32 values to bytes with the scale max|x| / 127,
/// kept in f16 precision as llama.cpp's Q8_0 keeps it.
#[inline(always)]
fn quantize_blocks(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    let blocks = x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK));
    for ((xs, qs), (d, s)) in blocks.zip(d.iter_mut().zip(s)) {
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
    }
}

#[derive(Clone, Copy)]
struct Row<'a> {
    qs: &'a [i8],
    d: &'a [f32],
    s: &'a [f32],
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Isa {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Vnni,
}

fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            if avx2
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
            {
                return Isa::Vnni;
            }
            if avx2 {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    })
}

/// Dot products of `C` weight rows with `R` activation rows: `out[r][c]`.
/// Tiles give the CPU independent accumulators to overlap, and load each
/// block of either side once for the whole tile.
fn tile<const R: usize, const C: usize>(
    isa: Isa,
    format: Format,
    w: [&[u8]; C],
    rows: [Row; R],
) -> [[f32; C]; R] {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa()` chose these paths only where the CPU has the features.
        Isa::Vnni => unsafe { x86::tile_vnni(format, w, rows) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::tile_avx2(format, w, rows) },
        Isa::Scalar => tile_scalar(format, w, rows),
    }
}

/// `out[col] = w[col] · row` for `cols`, `w` holding every weight row.
///
/// # Safety
/// `out` must be valid for writes at `cols`, and no one else may touch them.
unsafe fn gemv(
    isa: Isa,
    format: Format,
    w: &[u8],
    cols: std::ops::Range<usize>,
    row: Row,
    out: *mut f32,
) {
    assert!(w.len() >= cols.end * row.d.len() * format.block_bytes());
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa()` chose these paths only where the CPU has the
        // features; the weights' bounds were checked above.
        Isa::Vnni => unsafe { x86::gemv_vnni(format, w, cols, row, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::gemv_avx2(format, w, cols, row, out) },
        Isa::Scalar => {
            let rb = row.d.len() * format.block_bytes();
            for col in cols {
                let v = tile_scalar(format, [&w[col * rb..(col + 1) * rb]], [row])[0][0];
                unsafe { *out.add(col) = v };
            }
        }
    }
}

fn tile_scalar<const R: usize, const C: usize>(
    format: Format,
    w: [&[u8]; C],
    rows: [Row; R],
) -> [[f32; C]; R] {
    let bb = format.block_bytes();
    let mut acc = [[0f32; C]; R];
    for b in 0..w[0].len() / bb {
        for (c, w) in w.iter().enumerate() {
            let block = &w[b * bb..(b + 1) * bb];
            let dw = scale(block);
            let v = format.values(block);
            for (r, row) in rows.iter().enumerate() {
                let q = &row.qs[b * QK..(b + 1) * QK];
                let s: i32 = v.iter().zip(q).map(|(&x, &y)| x as i32 * y as i32).sum();
                acc[r][c] += dw * row.d[b] * s as f32;
                if format.has_min() {
                    acc[r][c] += min(block) * row.s[b];
                }
            }
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Format, Row, QK};
    use std::arch::x86_64::*;

    /// The sum of a vector's eight lanes.
    #[inline(always)]
    pub(in crate::engine::kernels) unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// The 32 low nibbles then the 32 high ones of 16 bytes, as 32 bytes
    /// (elements 0–15, then 16–31).
    #[inline(always)]
    unsafe fn nibbles(p: *const u8) -> __m256i {
        let x = _mm_loadu_si128(p as *const __m128i);
        let both = _mm256_set_m128i(_mm_srli_epi16(x, 4), x);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
    }

    /// Bytes of 0xff where bit i of `bits` is set (AVX2 only).
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

    /// [`super::quantize_blocks`] compiled for AVX2, where rounding and the
    /// block maximum are vector instructions rather than calls.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn quantize(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
        super::quantize_blocks(x, qs, d, s)
    }

    /// Adds what weight block `b` of column `c` (at `block`) adds through
    /// its minimum to each row's product (nothing for formats without one).
    #[inline(always)]
    unsafe fn add_min<const R: usize, const C: usize>(
        format: Format,
        block: *const u8,
        b: usize,
        rows: &[Row; R],
        mins: &mut [[f32; C]; R],
        c: usize,
    ) {
        if format.has_min() {
            let m = scale16(block.add(2));
            for r in 0..R {
                mins[r][c] += m * *rows[r].s.get_unchecked(b);
            }
        }
    }

    /// What a weight row's block minimums add to its product with `row`
    /// (nothing for formats without them).
    #[inline(always)]
    unsafe fn min_terms(format: Format, row_start: *const u8, row: Row) -> f32 {
        if !format.has_min() {
            return 0.0;
        }
        let bb = format.block_bytes();
        let mut m = 0f32;
        for (b, &s) in row.s.iter().enumerate() {
            m += scale16(row_start.add(b * bb + 2)) * s;
        }
        m
    }

    /// How far ahead of the block in use the next weights are fetched.
    const PREFETCH: usize = 1024;

    /// A block's f16 scale, converted by the F16C instruction.
    #[inline(always)]
    unsafe fn scale16(block: *const u8) -> f32 {
        let bits = u16::from_le_bytes(*(block as *const [u8; 2]));
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    /// One block's values as signed bytes. Q5_0's are the nibbles with 0xf0
    /// where the fifth bit is clear (the nibble minus 16).
    #[inline(always)]
    unsafe fn values_vnni(format: Format, block: *const u8) -> __m256i {
        match format {
            Format::Q8_0 => _mm256_loadu_si256(block.add(2) as *const __m256i),
            Format::Q5_0 => {
                let qh = u32::from_le_bytes(*(block.add(2) as *const [u8; 4]));
                _mm256_or_si256(nibbles(block.add(6)), _mm256_maskz_set1_epi8(!qh, -16))
            }
            Format::Q5_1 => {
                let qh = u32::from_le_bytes(*(block.add(4) as *const [u8; 4]));
                _mm256_or_si256(nibbles(block.add(8)), _mm256_maskz_set1_epi8(qh, 16))
            }
            Format::Q4_0 => _mm256_sub_epi8(nibbles(block.add(2)), _mm256_set1_epi8(8)),
            Format::Q4_1 => nibbles(block.add(4)),
        }
    }

    #[inline(always)]
    unsafe fn values_avx2(format: Format, block: *const u8) -> __m256i {
        match format {
            Format::Q8_0 => _mm256_loadu_si256(block.add(2) as *const __m256i),
            Format::Q5_0 => {
                let qh = u32::from_le_bytes(*(block.add(2) as *const [u8; 4]));
                let low = _mm256_andnot_si256(bytes_of_bits(qh), _mm256_set1_epi8(-16));
                _mm256_or_si256(nibbles(block.add(6)), low)
            }
            Format::Q5_1 => {
                let qh = u32::from_le_bytes(*(block.add(4) as *const [u8; 4]));
                let high = _mm256_and_si256(bytes_of_bits(qh), _mm256_set1_epi8(16));
                _mm256_or_si256(nibbles(block.add(8)), high)
            }
            Format::Q4_0 => _mm256_sub_epi8(nibbles(block.add(2)), _mm256_set1_epi8(8)),
            Format::Q4_1 => nibbles(block.add(4)),
        }
    }

    // Both products multiply |x| (unsigned) by y carrying x's sign, so that
    // the unsigned-by-signed instructions give x·y without an offset; the
    // AVX2 pairwise sums cannot saturate (at most 2 × 128 × 127).

    /// Two blocks per 512-bit register; an odd last block goes through
    /// [`tile_vnni256`]. AVX-512 has no byte sign instruction: y is negated
    /// under the mask of x's sign bits instead.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512dq")]
    pub(super) unsafe fn tile_vnni<const R: usize, const C: usize>(
        format: Format,
        w: [&[u8]; C],
        rows: [Row; R],
    ) -> [[f32; C]; R] {
        let bb = format.block_bytes();
        let kb = w[0].len() / bb;
        let pair = |a: f32, b: f32| {
            _mm512_insertf32x8(
                _mm512_castps256_ps512(_mm256_set1_ps(a)),
                _mm256_set1_ps(b),
                1,
            )
        };
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        let mut mins = [[0f32; C]; R];
        let mut b = 0;
        while b + 2 <= kb {
            let mut ax = [_mm512_setzero_si512(); C];
            let mut neg = [0u64; C];
            let mut dw = [_mm512_setzero_ps(); C];
            for c in 0..C {
                let p0 = w[c].as_ptr().add(b * bb);
                let p1 = p0.add(bb);
                if format.has_min() {
                    let (m0, m1) = (scale16(p0.add(2)), scale16(p1.add(2)));
                    for r in 0..R {
                        let s = rows[r].s;
                        mins[r][c] += m0 * *s.get_unchecked(b) + m1 * *s.get_unchecked(b + 1);
                    }
                }
                let x = _mm512_inserti64x4(
                    _mm512_castsi256_si512(values_vnni(format, p0)),
                    values_vnni(format, p1),
                    1,
                );
                ax[c] = _mm512_abs_epi8(x);
                neg[c] = _mm512_movepi8_mask(x);
                dw[c] = pair(scale16(p0), scale16(p1));
            }
            for r in 0..R {
                let row = rows[r];
                let q = _mm512_loadu_si512(row.qs.as_ptr().add(b * QK) as *const _);
                let da = pair(*row.d.get_unchecked(b), *row.d.get_unchecked(b + 1));
                for c in 0..C {
                    let y = _mm512_mask_sub_epi8(q, neg[c], _mm512_setzero_si512(), q);
                    let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ax[c], y);
                    acc[r][c] =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw[c], da), acc[r][c]);
                }
            }
            b += 2;
        }
        let mut out = [[0f32; C]; R];
        if b < kb {
            let w = std::array::from_fn(|c| &w[c][b * bb..]);
            let rows = rows.map(|r| Row {
                qs: &r.qs[b * QK..],
                d: &r.d[b..],
                s: &r.s[b..],
            });
            out = tile_vnni256(format, w, rows);
        }
        for r in 0..R {
            for c in 0..C {
                out[r][c] += _mm512_reduce_add_ps(acc[r][c]) + mins[r][c];
            }
        }
        out
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn tile_vnni256<const R: usize, const C: usize>(
        format: Format,
        w: [&[u8]; C],
        rows: [Row; R],
    ) -> [[f32; C]; R] {
        let bb = format.block_bytes();
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let mut mins = [[0f32; C]; R];
        for b in 0..w[0].len() / bb {
            let mut x = [_mm256_setzero_si256(); C];
            let mut ax = [_mm256_setzero_si256(); C];
            let mut dw = [_mm256_setzero_ps(); C];
            for c in 0..C {
                let block = w[c].as_ptr().add(b * bb);
                add_min(format, block, b, &rows, &mut mins, c);
                _mm_prefetch::<_MM_HINT_T0>(block.add(PREFETCH) as *const i8);
                x[c] = values_vnni(format, block);
                ax[c] = _mm256_abs_epi8(x[c]);
                dw[c] = _mm256_set1_ps(scale16(block));
            }
            for r in 0..R {
                let row = rows[r];
                let q = _mm256_loadu_si256(row.qs.as_ptr().add(b * QK) as *const __m256i);
                let da = _mm256_set1_ps(*row.d.get_unchecked(b));
                for c in 0..C {
                    let p = _mm256_dpbusd_epi32(
                        _mm256_setzero_si256(),
                        ax[c],
                        _mm256_sign_epi8(q, x[c]),
                    );
                    acc[r][c] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw[c], da), acc[r][c]);
                }
            }
        }
        let mut out = [[0f32; C]; R];
        for r in 0..R {
            for c in 0..C {
                out[r][c] = hsum(acc[r][c]) + mins[r][c];
            }
        }
        out
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn tile_avx2<const R: usize, const C: usize>(
        format: Format,
        w: [&[u8]; C],
        rows: [Row; R],
    ) -> [[f32; C]; R] {
        let bb = format.block_bytes();
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let mut mins = [[0f32; C]; R];
        for b in 0..w[0].len() / bb {
            let mut x = [_mm256_setzero_si256(); C];
            let mut ax = [_mm256_setzero_si256(); C];
            let mut dw = [_mm256_setzero_ps(); C];
            for c in 0..C {
                let block = w[c].as_ptr().add(b * bb);
                add_min(format, block, b, &rows, &mut mins, c);
                x[c] = values_avx2(format, block);
                ax[c] = _mm256_sign_epi8(x[c], x[c]);
                dw[c] = _mm256_set1_ps(scale16(block));
            }
            for r in 0..R {
                let row = rows[r];
                let q = _mm256_loadu_si256(row.qs.as_ptr().add(b * QK) as *const __m256i);
                let da = _mm256_set1_ps(*row.d.get_unchecked(b));
                for c in 0..C {
                    let p = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(ax[c], _mm256_sign_epi8(q, x[c])),
                        ones,
                    );
                    acc[r][c] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw[c], da), acc[r][c]);
                }
            }
        }
        let mut out = [[0f32; C]; R];
        for r in 0..R {
            for c in 0..C {
                out[r][c] = hsum(acc[r][c]) + mins[r][c];
            }
        }
        out
    }

    /// `out[col] = w[col] · row` for `cols`: the decode product, one weight
    /// row at a time in storage order (one stream the prefetcher follows),
    /// two blocks per step into two accumulators.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn gemv_vnni(
        format: Format,
        w: &[u8],
        cols: std::ops::Range<usize>,
        row: Row,
        out: *mut f32,
    ) {
        let bb = format.block_bytes();
        let kb = row.d.len();
        let step = |acc: __m256, block: *const u8, b: usize| {
            let x = values_vnni(format, block);
            let q = _mm256_loadu_si256(row.qs.as_ptr().add(b * QK) as *const __m256i);
            let p = _mm256_dpbusd_epi32(
                _mm256_setzero_si256(),
                _mm256_abs_epi8(x),
                _mm256_sign_epi8(q, x),
            );
            let d = _mm256_set1_ps(scale16(block) * *row.d.get_unchecked(b));
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), d, acc)
        };
        for col in cols {
            let base = w.as_ptr().add(col * kb * bb);
            let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut b = 0;
            while b + 2 <= kb {
                a0 = step(a0, base.add(b * bb), b);
                a1 = step(a1, base.add((b + 1) * bb), b + 1);
                b += 2;
            }
            if b < kb {
                a0 = step(a0, base.add(b * bb), b);
            }
            *out.add(col) = hsum(_mm256_add_ps(a0, a1)) + min_terms(format, base, row);
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn gemv_avx2(
        format: Format,
        w: &[u8],
        cols: std::ops::Range<usize>,
        row: Row,
        out: *mut f32,
    ) {
        let bb = format.block_bytes();
        let kb = row.d.len();
        let ones = _mm256_set1_epi16(1);
        let step = |acc: __m256, block: *const u8, b: usize| {
            let x = values_avx2(format, block);
            let q = _mm256_loadu_si256(row.qs.as_ptr().add(b * QK) as *const __m256i);
            let p = _mm256_madd_epi16(
                _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(q, x)),
                ones,
            );
            let d = _mm256_set1_ps(scale16(block) * *row.d.get_unchecked(b));
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), d, acc)
        };
        for col in cols {
            let base = w.as_ptr().add(col * kb * bb);
            let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut b = 0;
            while b + 2 <= kb {
                a0 = step(a0, base.add(b * bb), b);
                a1 = step(a1, base.add((b + 1) * bb), b + 1);
                b += 2;
            }
            if b < kb {
                a0 = step(a0, base.add(b * bb), b);
            }
            *out.add(col) = hsum(_mm256_add_ps(a0, a1)) + min_terms(format, base, row);
        }
    }
}

impl BlockMatrix {
    /// The matrix of `t` if it is in one of these formats.
    fn of(t: &Arc<QTensor>) -> Option<BlockMatrix> {
        let format = match t.dtype() {
            GgmlDType::Q8_0 => Format::Q8_0,
            GgmlDType::Q5_0 => Format::Q5_0,
            GgmlDType::Q5_1 => Format::Q5_1,
            GgmlDType::Q4_0 => Format::Q4_0,
            GgmlDType::Q4_1 => Format::Q4_1,
            _ => return None,
        };
        let (n, k) = t.shape().dims2().ok()?;
        if k % QK != 0 || !t.device().is_cpu() {
            return None;
        }
        Some(BlockMatrix {
            format,
            n,
            k,
            tensor: t.clone(),
        })
    }

    /// `x · selfᵀ` for rows of `x` given as one slice.
    fn matmul(&self, x: &[f32]) -> candle_core::Result<Vec<f32>> {
        let (n, k) = (self.n, self.k);
        let m = x.len() / k;
        let acts = Acts::quantize(x, k);
        let data = self.tensor.data()?;
        let row_bytes = k / QK * self.format.block_bytes();
        let weights = |col: usize| &data[col * row_bytes..(col + 1) * row_bytes];
        let mut out = vec![0f32; m * n];
        let dst = out.as_mut_ptr() as usize;
        let isa = isa();
        let format = self.format;
        let pool = candle_core::utils::barrier_pool();
        // SAFETY (the raw writes below): every (row, column) of `out` is
        // written by exactly one unit of work, and `out` outlives the pool call.
        let put = |r: usize, col: usize, v: f32| unsafe { *(dst as *mut f32).add(r * n + col) = v };
        // Weight rows `cols` against activation rows `r..r + R`.
        let run = |r: usize, cols: std::ops::Range<usize>| {
            let mut col = cols.start;
            while col + C <= cols.end {
                let w = std::array::from_fn(|i| weights(col + i));
                if r + ROWS <= m {
                    let v: [[f32; C]; ROWS] =
                        tile(isa, format, w, std::array::from_fn(|i| acts.row(r + i)));
                    for (i, v) in v.iter().enumerate() {
                        for (j, &v) in v.iter().enumerate() {
                            put(r + i, col + j, v);
                        }
                    }
                } else {
                    for i in r..m {
                        let [v] = tile(isa, format, w, [acts.row(i)]);
                        for (j, &v) in v.iter().enumerate() {
                            put(i, col + j, v);
                        }
                    }
                }
                col += C;
            }
            for col in col..cols.end {
                for i in r..m.min(r + ROWS) {
                    put(
                        i,
                        col,
                        tile(isa, format, [weights(col)], [acts.row(i)])[0][0],
                    );
                }
            }
        };
        if m == 1 {
            let row = acts.row(0);
            // SAFETY: each range of columns is one worker's alone.
            pool.execute_chunked(n, |cols| unsafe {
                gemv(isa, format, &data, cols, row, dst as *mut f32)
            });
        } else {
            // A unit is COLS weight rows, kept in L1 while every tile of
            // activation rows passes over them.
            pool.execute_chunked(n.div_ceil(COLS), |units| {
                for unit in units {
                    for r in (0..m).step_by(ROWS) {
                        run(r, unit * COLS..n.min((unit + 1) * COLS));
                    }
                }
            });
        }
        Ok(out)
    }
}

impl Module for BlockMatrix {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        forward_rows(x, self.n, self.k, |data| self.matmul(data))
    }
}

/// `x · wᵀ` for an `n × k` matrix `w` whose product with rows given as one
/// slice is `matmul`: the tensor handling every kernel family shares.
fn forward_rows(
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
/// CPUs with AVX-512 VNNI), candle's for the rest.
#[derive(Clone)]
pub enum Matmul {
    Blocks(Arc<BlockMatrix>),
    Q4K(Arc<kquants::KMatrix>),
    Half(Arc<half_precision::HalfMatrix>),
    Candle(QMatMul),
}

impl Matmul {
    pub fn new(m: QMatMul) -> Matmul {
        if let QMatMul::QTensor(t) = &m {
            if let Some(b) = BlockMatrix::of(t) {
                return Matmul::Blocks(Arc::new(b));
            }
            if let Some(b) = kquants::KMatrix::of(t) {
                return Matmul::Q4K(Arc::new(b));
            }
            if let Some(h) = half_precision::HalfMatrix::of(t) {
                return Matmul::Half(Arc::new(h));
            }
        }
        Matmul::Candle(m)
    }
}

impl Module for Matmul {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Matmul::Blocks(b) => b.forward(x),
            Matmul::Q4K(b) => b.forward(x),
            Matmul::Half(h) => h.forward(x),
            Matmul::Candle(m) => m.forward(x),
        }
    }
}

/// `x · mᵀ` for every matrix of `ms`, all taking the same input (Q, K and V;
/// gate and up). For one row of weights in block formats the input is quantized
/// once and all the products are one parallel pass: a decode step would
/// otherwise wait for the threads once per matrix.
pub fn forward_all(ms: &[&Matmul], x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
    let blocks: Option<Vec<&BlockMatrix>> = ms
        .iter()
        .map(|m| match m {
            Matmul::Blocks(b) => Some(&**b),
            Matmul::Q4K(_) | Matmul::Half(_) | Matmul::Candle(_) => None,
        })
        .collect();
    let dims = x.dims();
    let k = dims.last().copied().unwrap_or(0);
    let rows = x.elem_count() / k.max(1);
    match blocks {
        Some(bs) if rows == 1 && !bs.is_empty() && bs.iter().all(|b| b.k == k) => {
            let data = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            let outs = gemv_all(&bs, &data)?;
            outs.into_iter()
                .zip(&bs)
                .map(|(out, b)| {
                    let mut shape = dims.to_vec();
                    *shape.last_mut().unwrap() = b.n;
                    Tensor::from_vec(out, shape, x.device())
                })
                .collect()
        }
        _ => ms.iter().map(|m| m.forward(x)).collect(),
    }
}

/// One row times several matrices of the same width, as one range of
/// columns split between the threads.
fn gemv_all(bs: &[&BlockMatrix], x: &[f32]) -> candle_core::Result<Vec<Vec<f32>>> {
    let acts = Acts::quantize(x, bs[0].k);
    let row = acts.row(0);
    let data: Vec<_> = bs
        .iter()
        .map(|b| b.tensor.data())
        .collect::<candle_core::Result<_>>()?;
    let mut outs: Vec<Vec<f32>> = bs.iter().map(|b| vec![0f32; b.n]).collect();
    let dsts: Vec<usize> = outs.iter_mut().map(|o| o.as_mut_ptr() as usize).collect();
    let starts: Vec<usize> = bs
        .iter()
        .scan(0, |acc, b| {
            let s = *acc;
            *acc += b.n;
            Some(s)
        })
        .collect();
    let total = starts.last().unwrap() + bs.last().unwrap().n;
    let isa = isa();
    candle_core::utils::barrier_pool().execute_chunked(total, |range| {
        for (i, b) in bs.iter().enumerate() {
            let lo = range.start.max(starts[i]);
            let hi = range.end.min(starts[i] + b.n);
            if lo < hi {
                // SAFETY: each column of each output is in one range only.
                unsafe {
                    gemv(
                        isa,
                        b.format,
                        &data[i],
                        lo - starts[i]..hi - starts[i],
                        row,
                        dsts[i] as *mut f32,
                    )
                };
            }
        }
    });
    Ok(outs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A tensor's values, flattened.
    pub(super) fn flat(t: candle_core::Result<Tensor>) -> Vec<f32> {
        t.unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }

    /// The vector code paths this CPU can run.
    pub(super) fn vector_paths() -> Vec<Isa> {
        let mut paths = vec![];
        #[cfg(target_arch = "x86_64")]
        {
            if isa() != Isa::Scalar {
                paths.push(Isa::Avx2);
            }
            if isa() == Isa::Vnni {
                paths.push(Isa::Vnni);
            }
        }
        paths
    }

    /// Values in [-1, 1), the same for the same seed.
    pub(super) fn random(len: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
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
                let slack = if b.format.has_min() { 0.02 } else { 0.0 };
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
    /// even and odd numbers of blocks, one row and tiles of rows.
    #[test]
    fn vector_paths_equal_the_scalar_one() {
        let paths = vector_paths();
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * (1.0 + b.abs());
        for dtype in BLOCK_TYPES {
            for k in [96, 128] {
                let n = 9;
                let q = quantized(dtype, n, k);
                let b = BlockMatrix::of(&q).unwrap();
                let acts = Acts::quantize(&random(3 * k, 5), k);
                let data = q.data().unwrap();
                let row_bytes = k / QK * b.format.block_bytes();
                let w = |c: usize| &data[c * row_bytes..(c + 1) * row_bytes];
                for &p in &paths {
                    let mut out = vec![0f32; n];
                    // SAFETY: `out` has a place for every column.
                    unsafe { gemv(p, b.format, &data, 0..n, acts.row(2), out.as_mut_ptr()) };
                    for (col, &v) in out.iter().enumerate() {
                        let s = tile_scalar(b.format, [w(col)], [acts.row(2)])[0][0];
                        assert!(
                            close(v, s),
                            "{dtype:?} k={k} {p:?} gemv col {col}: {v} vs {s}"
                        );
                    }
                    for col in 0..n - 3 {
                        let ws = [w(col), w(col + 1), w(col + 2), w(col + 3)];
                        let rows = std::array::from_fn(|i| acts.row(i % 3));
                        let s: [[f32; 4]; 4] = tile_scalar(b.format, ws, rows);
                        let v: [[f32; 4]; 4] = tile(p, b.format, ws, rows);
                        for (s, v) in s.iter().flatten().zip(v.iter().flatten()) {
                            assert!(close(*v, *s), "{dtype:?} k={k} {p:?} col {col}: {v} vs {s}");
                        }
                    }
                }
            }
        }
    }

    /// One pass over several matrices gives each matrix's own product.
    #[test]
    fn products_of_several_matrices_equal_each_alone() {
        let ms: Vec<Matmul> = [
            (GgmlDType::Q8_0, 40),
            (GgmlDType::Q5_0, 9),
            (GgmlDType::Q4_1, 5),
            (GgmlDType::Q8_0, 3),
        ]
        .into_iter()
        .map(|(dt, n)| Matmul::new(QMatMul::from_arc(quantized(dt, n, 64)).unwrap()))
        .collect();
        assert!(ms.iter().all(|m| matches!(m, Matmul::Blocks(_))));
        let x = Tensor::from_vec(random(64, 9), (1, 1, 64), &Device::Cpu).unwrap();
        let all = forward_all(&ms.iter().collect::<Vec<_>>(), &x).unwrap();
        for (m, y) in ms.iter().zip(all) {
            let alone = m.forward(&x).unwrap();
            assert_eq!(y.dims(), alone.dims());
            let (a, b): (Vec<f32>, Vec<f32>) = (
                y.flatten_all().unwrap().to_vec1().unwrap(),
                alone.flatten_all().unwrap().to_vec1().unwrap(),
            );
            assert_eq!(a, b);
        }
    }

    /// The activation sums a block minimum multiplies are llama.cpp's Q8_1
    /// `s`: the exact scale times the sum of the rounded values, in f16.
    #[test]
    fn activation_sums_are_llama_cpps() {
        let x: Vec<f32> = (0..QK).map(|i| (i as f32 - 10.3) * 0.37).collect();
        let acts = Acts::quantize(&x, QK);
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        let sum: i32 = acts.qs.iter().map(|&q| q as i32).sum();
        assert_eq!(acts.s[0], f16::from_f32(scale * sum as f32).to_f32());
        assert_eq!(acts.d[0], f16::from_f32(scale).to_f32());
    }

    /// The Q5_0 bit layout: the fifth bit of value j is bit j of `qh`, the
    /// nibbles of byte j are values j and j + 16.
    #[test]
    fn q5_0_values_follow_the_layout() {
        let mut block = [0u8; 22];
        block[2..6].copy_from_slice(&(1u32 << 3 | 1 << 20).to_le_bytes());
        block[6 + 3] = 0x2f; // value 3: nibble 15, value 19: nibble 2
        block[6 + 4] = 0x70; // value 4: nibble 0, value 20: nibble 7
        let v = Format::Q5_0.values(&block);
        assert_eq!(v[3], 15 + 16 - 16);
        assert_eq!(v[19], 2 - 16);
        assert_eq!(v[4], -16);
        assert_eq!(v[20], 7 + 16 - 16);
        assert_eq!(v[0], -16);
    }
}
