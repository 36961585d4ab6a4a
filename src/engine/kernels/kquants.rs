//! Q4_K and Q6_K matrix products (llama.cpp's k-quants of 4 and 6 bits in
//! blocks of 256, the two formats of a Q4_K_M file besides Q5_0/Q8_0).
//!
//! candle's fast x86 path for these repacks every matrix into a second,
//! larger copy on first use and keeps both: a Q4_K_M model then takes 2.4
//! times its file in memory. Here the activations are quantized to 8 bits
//! per 256 values as llama.cpp's Q8_K, and the weights are kept once: CPUs
//! with AVX-512 VNNI rearrange them at load into panels of 16 rows that
//! replace the file's layout ([`kpanels`]); CPUs with AVX2 only read the
//! file's layout with 256-bit kernels (byte products into 16-bit pairs,
//! which 4- and 6-bit values cannot overflow); others keep candle's.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Module, Tensor};

use super::acts::{Acts, Row, Scheme};
#[cfg(test)]
use super::formats::f16_at;
use super::kpanels::{self, KPanels, Kind};
use super::pool::{for_panels, tile_rows};

/// Values per block.
pub(super) const QK: usize = 256;
/// Bytes per Q4_K block: f16 scale and min scale, 12 bytes of 6-bit
/// sub-block scales and mins, 128 bytes of nibbles.
pub(super) const BLOCK: usize = 144;
/// Bytes per Q6_K block: 128 bytes of low nibbles, 64 of high bit pairs,
/// 16 signed scales (one per 16 values), f16 scale.
pub(super) const BLOCK6: usize = 210;
/// Activation rows that share one pass over a weight row (and its unpacked
/// scales).
const ROWS: usize = 8;
/// Activation rows that share one decoding of a panel's quarter block.
const PANEL_ROWS: usize = 4;
/// Weight rows per unit of work when there are several activation rows.
const COLS: usize = 16;

/// The eight sub-block scales and mins of a block (6 bits each, packed in
/// 12 bytes as llama.cpp packs them).
pub(super) fn scales(q: &[u8]) -> ([i32; 8], [i32; 8]) {
    let (mut sc, mut mn) = ([0i32; 8], [0i32; 8]);
    for j in 0..8 {
        let (s, m) = if j < 4 {
            (q[j] & 63, q[j + 4] & 63)
        } else {
            (
                (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
                (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
            )
        };
        sc[j] = s as i32;
        mn[j] = m as i32;
    }
    (sc, mn)
}

/// Dot products of one weight row with `R` activation rows: the reference
/// the vector kernel is tested against.
#[cfg(test)]
fn dot_scalar<const R: usize>(w: &[u8], rows: [Row; R]) -> [f32; R] {
    let mut acc = [0f32; R];
    for (i, block) in w.chunks_exact(BLOCK).enumerate() {
        let (d, dmin) = (f16_at(&block[0..2]), f16_at(&block[2..4]));
        let (sc, mn) = scales(&block[4..16]);
        let qs = &block[16..];
        for (a, row) in acc.iter_mut().zip(&rows) {
            let act = &row.qs[i * QK..(i + 1) * QK];
            let mut sumi = 0i32;
            for j in 0..4 {
                for l in 0..32 {
                    let q = qs[32 * j + l];
                    sumi += sc[2 * j] * (q & 0xf) as i32 * act[64 * j + l] as i32;
                    sumi += sc[2 * j + 1] * (q >> 4) as i32 * act[64 * j + 32 + l] as i32;
                }
            }
            let summ: i32 = (0..8).map(|j| mn[j] * row.sums[i * 8 + j]).sum();
            *a += d * row.d[i] * sumi as f32 - dmin * row.d[i] * summ as f32;
        }
    }
    acc
}

#[cfg(test)]
fn dot6_scalar<const R: usize>(w: &[u8], rows: [Row; R]) -> [f32; R] {
    let mut acc = [0f32; R];
    for (i, block) in w.chunks_exact(BLOCK6).enumerate() {
        let d = f16_at(&block[208..210]);
        let v = super::kpanels::q6k_values(block).map(i32::from);
        for (a, row) in acc.iter_mut().zip(&rows) {
            let act = &row.qs[i * QK..(i + 1) * QK];
            let mut sumi = 0i32;
            for g in 0..16 {
                let sc = block[192 + g] as i8 as i32;
                let s: i32 = (0..16)
                    .map(|l| (v[16 * g + l] - 32) * act[16 * g + l] as i32)
                    .sum();
                sumi += sc * s;
            }
            *a += d * row.d[i] * sumi as f32;
        }
    }
    acc
}

mod x86 {
    use super::super::lanes::sum8;
    use super::{scales, Row, BLOCK, BLOCK6, QK};
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn f16_at(p: *const u8) -> f32 {
        let bits = u16::from_le_bytes(*(p as *const [u8; 2]));
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    /// Adds to each row's 32-bit sums the products of the 32 unsigned
    /// values `w` with its activations `at..at + 32`: byte products into
    /// 16-bit pairs, then the pairs times `scale` (16-bit lanes) into the
    /// sums. Inlined into the AVX2 kernels, which enable the instructions.
    #[inline(always)]
    unsafe fn add_run<const R: usize>(
        mut sumi: [__m256i; R],
        rows: [Row; R],
        at: usize,
        w: __m256i,
        scale: __m256i,
    ) -> [__m256i; R] {
        for r in 0..R {
            let y = _mm256_loadu_si256(rows[r].qs.as_ptr().add(at) as *const __m256i);
            let p = _mm256_maddubs_epi16(w, y);
            sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(p, scale));
        }
        sumi
    }

    /// `out[r * n + col] = w[col] · rows[r]` for `cols`, on CPUs with AVX2
    /// (those with AVX-512 VNNI take panels instead): each 32-byte run of
    /// nibbles gives two sub-blocks of 32 values (low halves, high halves);
    /// `vpmaddubsw` multiplies them by the activation bytes into pairs of
    /// 16-bit sums (at most 2·15·128, so nothing saturates), and
    /// `vpmaddwd` by the sub-block's scale adds the pairs into 32-bit sums,
    /// exactly. The loop goes sub-block by sub-block with every row inside,
    /// so the rows' sums stay in registers and each run of activations is
    /// loaded once; with the weights in registers for all rows instead,
    /// AVX2's sixteen registers spilled and a profiled prefill spent its
    /// time on loads. The minimums come off as floats against the
    /// activations' scaled sums. Every row is computed alike whatever `R`.
    ///
    /// # Safety
    /// AVX2, FMA and F16C; `w` holds every row in `cols`; `out` is valid
    /// for the writes and no one else touches them.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn rows_avx2<const R: usize>(
        w: &[u8],
        cols: std::ops::Range<usize>,
        rows: [Row; R],
        out: *mut f32,
        n: usize,
    ) {
        let kb = rows[0].d.len();
        let low = _mm256_set1_epi8(0x0f);
        for col in cols {
            let base = w.as_ptr().add(col * kb * BLOCK);
            let mut acc = [_mm256_setzero_ps(); R];
            for i in 0..kb {
                let block = base.add(i * BLOCK);
                let (d, dmin) = (f16_at(block), f16_at(block.add(2)));
                let (sc, mn) = scales(std::slice::from_raw_parts(block.add(4), 12));
                // Each sub-block's minimum, exactly: an f16 times six bits.
                let mins = _mm256_mul_ps(
                    _mm256_cvtepi32_ps(_mm256_loadu_si256(mn.as_ptr() as *const __m256i)),
                    _mm256_set1_ps(dmin),
                );
                let d = _mm256_set1_ps(d);
                // Sub-block by sub-block, every row at once: the eight sums
                // stay in registers, and each activation run is loaded once.
                let mut sumi = [_mm256_setzero_si256(); R];
                for j in 0..4 {
                    let bytes = _mm256_loadu_si256(block.add(16 + 32 * j) as *const __m256i);
                    for half in 0..2 {
                        let s = 2 * j + half;
                        let q = match half {
                            0 => _mm256_and_si256(bytes, low),
                            _ => _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low),
                        };
                        let scale = _mm256_set1_epi16(sc[s] as i16);
                        sumi = add_run(sumi, rows, i * QK + 32 * s, q, scale);
                    }
                }
                for r in 0..R {
                    let row = rows[r];
                    let dd = _mm256_mul_ps(_mm256_broadcast_ss(row.d.get_unchecked(i)), d);
                    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[r]), dd, acc[r]);
                    // The activations' scaled sums, per sub-block.
                    let s = _mm256_loadu_ps(row.s.as_ptr().add(i * 8));
                    acc[r] = _mm256_fnmadd_ps(mins, s, acc[r]);
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                *out.add(r * n + col) = sum8(*acc);
            }
        }
    }

    /// The Q6_K counterpart of [`rows_avx2`]. A run of 32 six-bit
    /// values spans two scales: `vpmaddubsw` gives 16-bit pair sums (at most
    /// 2·63·128), and `vpmaddwd` by the two scales, each over its half of
    /// the register, adds them into 32-bit sums. The offset of 32 comes off
    /// in integers through the activation sums of each 16, so a block's sum
    /// is the scalar reference's exactly.
    ///
    /// # Safety
    /// As for [`rows_avx2`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn rows6_avx2<const R: usize>(
        w: &[u8],
        cols: std::ops::Range<usize>,
        rows: [Row; R],
        out: *mut f32,
        n: usize,
    ) {
        let kb = rows[0].d.len();
        let m4 = _mm256_set1_epi8(0x0f);
        let m2 = _mm256_set1_epi8(3);
        for col in cols {
            let base = w.as_ptr().add(col * kb * BLOCK6);
            let mut acc = [_mm256_setzero_ps(); R];
            for i in 0..kb {
                let block = base.add(i * BLOCK6);
                let d = f16_at(block.add(208));
                let sc = block.add(192) as *const i8;
                let sc_lo = _mm256_cvtepi8_epi32(_mm_loadl_epi64(sc as *const __m128i));
                let sc_hi = _mm256_cvtepi8_epi32(_mm_loadl_epi64(sc.add(8) as *const __m128i));
                // Run by run of 32 values (and the scales of its two 16s),
                // every row at once: the sums stay in registers, and each
                // activation run is loaded once.
                let mut sumi = [_mm256_setzero_si256(); R];
                for h in 0..2 {
                    let ql0 = _mm256_loadu_si256(block.add(64 * h) as *const __m256i);
                    let ql1 = _mm256_loadu_si256(block.add(64 * h + 32) as *const __m256i);
                    let qh = _mm256_loadu_si256(block.add(128 + 32 * h) as *const __m256i);
                    let high = |bits: __m256i| _mm256_slli_epi16(_mm256_and_si256(bits, m2), 4);
                    for u in 0..4 {
                        let v = match u {
                            0 => _mm256_or_si256(_mm256_and_si256(ql0, m4), high(qh)),
                            1 => _mm256_or_si256(
                                _mm256_and_si256(ql1, m4),
                                high(_mm256_srli_epi16(qh, 2)),
                            ),
                            2 => _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                high(_mm256_srli_epi16(qh, 4)),
                            ),
                            _ => _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                high(_mm256_srli_epi16(qh, 6)),
                            ),
                        };
                        let t = 4 * h + u;
                        let (a, b) = (*sc.add(2 * t) as i16, *sc.add(2 * t + 1) as i16);
                        let scale = _mm256_setr_m128i(_mm_set1_epi16(a), _mm_set1_epi16(b));
                        sumi = add_run(sumi, rows, i * QK + 32 * t, v, scale);
                    }
                }
                for r in 0..R {
                    let row = rows[r];
                    let sums = row.sums16.as_ptr().add(i * 16);
                    let off = _mm256_add_epi32(
                        _mm256_mullo_epi32(sc_lo, _mm256_loadu_si256(sums as *const __m256i)),
                        _mm256_mullo_epi32(
                            sc_hi,
                            _mm256_loadu_si256(sums.add(8) as *const __m256i),
                        ),
                    );
                    let sumi = _mm256_sub_epi32(sumi[r], _mm256_slli_epi32(off, 5));
                    let dd = d * *row.d.get_unchecked(i);
                    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(dd), acc[r]);
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                *out.add(r * n + col) = sum8(*acc);
            }
        }
    }
}

/// How a [`KMatrix`] keeps its values.
enum Layout {
    /// The file's blocks, for the AVX2 kernels here.
    File(Arc<QTensor>),
    /// Panels of 16 rows, for AVX-512 VNNI ([`kpanels`]).
    Panels(KPanels),
}

/// A Q4_K or Q6_K matrix of `n` rows of `k` values: in panels on CPUs with
/// AVX-512 VNNI, as the file holds it on those with AVX2 only.
pub struct KMatrix {
    kind: Kind,
    n: usize,
    k: usize,
    layout: Layout,
}

impl KMatrix {
    pub(super) fn of(t: &Arc<QTensor>) -> Option<KMatrix> {
        let (n, k) = t.shape().dims2().ok()?;
        if !t.device().is_cpu() {
            return None;
        }
        match super::isa() {
            super::Isa::Vnni => KMatrix::from_file(t.dtype(), n, k, &t.data().ok()?),
            super::Isa::Avx2 => {
                let kind = kind_of(t.dtype())?;
                k.is_multiple_of(QK).then(|| KMatrix {
                    kind,
                    n,
                    k,
                    layout: Layout::File(t.clone()),
                })
            }
            _ => None,
        }
    }

    /// On CPUs with AVX-512 VNNI, the matrix of `n` rows of `k` values of
    /// type `dtype` laid out as in a GGUF file, `src`, in panels.
    pub(super) fn from_file(dtype: GgmlDType, n: usize, k: usize, src: &[u8]) -> Option<KMatrix> {
        if super::isa() != super::Isa::Vnni {
            return None;
        }
        let kind = kind_of(dtype)?;
        let panels = KPanels::new(kind, n, k, src)?;
        Some(KMatrix {
            kind,
            n,
            k,
            layout: Layout::Panels(panels),
        })
    }

    /// The matrix as the file has it, where it is kept so.
    pub(super) fn tensor(&self) -> Option<Arc<QTensor>> {
        match &self.layout {
            Layout::File(t) => Some(t.clone()),
            Layout::Panels(_) => None,
        }
    }

    /// Whether rows can be looked up in the matrix (panels can).
    pub(super) fn has_rows(&self) -> bool {
        matches!(self.layout, Layout::Panels(_))
    }

    /// Rows `ids` of the matrix as f32: the lookup of an embedding table
    /// that is also the output head.
    pub(super) fn embedding(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match &self.layout {
            Layout::Panels(p) => super::lookup(ids, self.n, self.k, |row, out| p.row(row, out)),
            Layout::File(_) => {
                candle_core::bail!("this matrix does not serve as an embedding table")
            }
        }
    }

    /// The panels, where the matrix is kept so.
    pub(super) fn panels(&self) -> Option<&KPanels> {
        match &self.layout {
            Layout::Panels(p) => Some(p),
            Layout::File(_) => None,
        }
    }

    fn matmul(&self, x: &[f32]) -> candle_core::Result<Vec<f32>> {
        let (n, k) = (self.n, self.k);
        let m = x.len() / k;
        let tensor = match &self.layout {
            Layout::Panels(panels) => return Ok(products(&[panels], x, k).remove(0)),
            Layout::File(t) => t,
        };
        let acts = Acts::quantize(Scheme::Q8K, x, k);
        let mut out = vec![0f32; m * n];
        let dst = out.as_mut_ptr() as usize;
        let data = tensor.data()?;
        let six = self.kind == Kind::Q6K;
        /// One kernel of the two, by format.
        macro_rules! tile {
            ($r:expr, $cols:expr, $rows:expr, $out:expr) => {
                match six {
                    false => x86::rows_avx2::<$r>(&data, $cols, $rows, $out, n),
                    true => x86::rows6_avx2::<$r>(&data, $cols, $rows, $out, n),
                }
            };
        }
        // Weight rows `cols` against activation rows `r..r + R`.
        let run = |r: usize, cols: std::ops::Range<usize>| {
            let out = (dst as *mut f32).wrapping_add(r * n);
            // SAFETY: `of` kept the file's layout only where `isa()` found
            // AVX2; each (row, column) of `out` is in one unit of work
            // only, and `data` holds all `n` rows.
            unsafe {
                if r + ROWS <= m {
                    let rows = std::array::from_fn(|i| acts.row(r + i));
                    tile!(ROWS, cols, rows, out);
                } else {
                    for i in 0..m - r {
                        let (rows, out) = ([acts.row(r + i)], out.wrapping_add(i * n));
                        tile!(1, cols.clone(), rows, out);
                    }
                }
            }
        };
        let pool = candle_core::utils::barrier_pool();
        if m == 1 {
            pool.execute_chunked(n, |cols| run(0, cols));
        } else {
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

/// `x · bᵀ` for every matrix `b` of `bs`, in panels and all `k` wide, `x`
/// being rows of `k` values given as one slice: the activations are
/// quantized once, and the panels of all the matrices are one range split
/// between the threads (Q, K and V, or gate and up, in one pass), as
/// [`super::blocks::products`] does for the 32-value formats.
pub(super) fn products(bs: &[&KPanels], x: &[f32], k: usize) -> Vec<Vec<f32>> {
    let m = x.len() / k;
    let acts = Acts::quantize(Scheme::Q8K, x, k);
    let mut outs: Vec<Vec<f32>> = bs.iter().map(|b| vec![0f32; m * b.n]).collect();
    let dsts: Vec<usize> = outs.iter_mut().map(|o| o.as_mut_ptr() as usize).collect();
    let panels: Vec<usize> = bs.iter().map(|b| b.panels()).collect();
    for_panels(&panels, m, |at, p, rows| {
        let (b, dst) = (bs[at], dsts[at]);
        let (kind, panel) = (b.kind, b.panel(p));
        // SAFETY (both): panels are built only where `isa()` found AVX-512
        // VNNI; the kernel checks the rows' lengths against the panel.
        tile_rows::<PANEL_ROWS>(
            rows,
            (dst, b.n, p),
            |r| {
                let rows = std::array::from_fn(|i| acts.row(r + i));
                unsafe { kpanels::x86::tile_vnni(kind, panel, rows) }
            },
            |r| unsafe { kpanels::x86::tile_vnni(kind, panel, [acts.row(r)])[0] },
        );
    });
    outs
}

/// The k-quant format of a ggml type, if it is Q4_K or Q6_K.
fn kind_of(dtype: GgmlDType) -> Option<Kind> {
    match dtype {
        GgmlDType::Q4K => Some(Kind::Q4K),
        GgmlDType::Q6K => Some(Kind::Q6K),
        _ => None,
    }
}

impl Module for KMatrix {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        super::forward_rows(x, self.n, self.k, |data| self.matmul(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::tests::random;
    use candle_core::quantized::QMatMul;
    use candle_core::Device;

    /// The scalar references give candle's products, and the vector paths
    /// (where the CPU has them) the scalar ones', for one row and for tiles.
    #[test]
    fn products_equal_candles_and_the_scalar_ones() {
        for dtype in [GgmlDType::Q4K, GgmlDType::Q6K] {
            let (n, k) = (21, 512);
            let w = Tensor::from_vec(random(n * k, 3), (n, k), &Device::Cpu).unwrap();
            let q = Arc::new(QTensor::quantize(&w, dtype).unwrap());
            let reference = QMatMul::from_arc(q.clone()).unwrap();
            let data = q.data().unwrap();
            let bytes = if dtype == GgmlDType::Q4K {
                BLOCK
            } else {
                BLOCK6
            } * (k / QK);
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-3 * (1.0 + b.abs());
            for m in [1, 6, 9, 17] {
                let xs = random(m * k, 10 + m as u64);
                let x = Tensor::from_vec(xs.clone(), (m, k), &Device::Cpu).unwrap();
                let want: Vec<f32> = reference
                    .forward(&x)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let acts = Acts::quantize(Scheme::Q8K, &xs, k);
                for r in 0..m {
                    for col in 0..n {
                        let w = &data[col * bytes..(col + 1) * bytes];
                        let s = if dtype == GgmlDType::Q4K {
                            dot_scalar(w, [acts.row(r)])[0]
                        } else {
                            dot6_scalar(w, [acts.row(r)])[0]
                        };
                        let want = want[r * n + col];
                        assert!(
                            close(s, want),
                            "{dtype:?} m={m} ({r}, {col}): {s} vs {want}"
                        );
                    }
                }
                if let Some(b) = KMatrix::of(&q) {
                    let got: Vec<f32> = b
                        .forward(&x)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap();
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(close(*g, *w), "{dtype:?} m={m} at {i}: {g} vs {w}");
                    }
                }
            }
        }
    }

    #[test]
    fn sub_block_scales_unpack_as_llama_cpp_packs_them() {
        // Scales 0..8 = 1..8 and mins = 9..16, six bits each.
        let (sc, mn): ([u8; 8], [u8; 8]) =
            ([1, 2, 3, 40, 5, 6, 7, 63], [9, 10, 11, 12, 13, 50, 15, 16]);
        let mut q = [0u8; 12];
        for j in 0..4 {
            q[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            q[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
            q[j + 8] = (sc[j + 4] & 0xf) | ((mn[j + 4] & 0xf) << 4);
        }
        let (s, m) = scales(&q);
        assert_eq!(s.map(|v| v as u8), sc);
        assert_eq!(m.map(|v| v as u8), mn);
    }
}
