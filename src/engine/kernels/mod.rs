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
//! AVX-512 vector holds.

pub mod attention;
mod half_precision;
// Q4_K and Q6_K kernels exist for AVX-512 VNNI only; elsewhere candle's
// serve those formats.
#[cfg(glot_x86)]
mod kquants;
#[cfg(glot_neon)]
mod neon;
mod panels;

use std::sync::{Arc, OnceLock};

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};
use half::f16;
use panels::{Panels, LANES};

/// Values per block in every format.
const QK: usize = 32;
/// Activation rows that share one decoding of a panel's block.
const ROWS: usize = 4;
/// Activation rows whose quantized values stay in the cache while a
/// thread's panels pass over them.
const ROW_BLOCK: usize = 64;

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

/// A matrix of `n` rows of `k` values in a block format, rearranged into
/// panels (see [`panels`]). A tied embedding table is both the input
/// lookup ([`BlockMatrix::embedding`]) and this output head.
pub struct BlockMatrix {
    panels: Panels,
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
    /// Per block, the sum of the quantized values: what takes a format's
    /// offset back out of the products with unsigned weights.
    sums: Vec<i32>,
}

impl Acts {
    /// Quantizes rows of `k` values, the rows split between the threads.
    fn quantize(x: &[f32], k: usize) -> Acts {
        let blocks = x.len() / QK;
        let mut acts = Acts {
            k,
            qs: vec![0; x.len()],
            d: vec![0.0; blocks],
            s: vec![0.0; blocks],
            sums: vec![0; blocks],
        };
        let isa = isa();
        let rows = x.len() / k;
        let kb = k / QK;
        let ptrs = (
            acts.qs.as_mut_ptr() as usize,
            acts.d.as_mut_ptr() as usize,
            acts.s.as_mut_ptr() as usize,
            acts.sums.as_mut_ptr() as usize,
        );
        let run = |r: std::ops::Range<usize>| {
            // SAFETY: each range of rows is one worker's alone, and the
            // vectors outlive the pool call.
            let (qs, d, s, sums) = unsafe {
                (
                    share(ptrs.0, r.start * k, r.len() * k),
                    share(ptrs.1, r.start * kb, r.len() * kb),
                    share(ptrs.2, r.start * kb, r.len() * kb),
                    share(ptrs.3, r.start * kb, r.len() * kb),
                )
            };
            let x = &x[r.start * k..r.end * k];
            match isa {
                // SAFETY: the CPU has AVX2 and FMA.
                #[cfg(glot_x86)]
                Isa::Avx2 | Isa::Vnni => unsafe { x86::quantize(x, qs, d, s, sums) },
                // NEON is the compiler's baseline on aarch64: the plain
                // loop is already vector code there.
                #[cfg(glot_neon)]
                Isa::Neon | Isa::NeonDot => quantize_blocks(x, qs, d, s, sums),
                Isa::Scalar => quantize_blocks(x, qs, d, s, sums),
            }
        };
        if rows == 1 {
            run(0..1);
        } else {
            candle_core::utils::barrier_pool().execute_chunked(rows, run);
        }
        acts
    }

    fn row(&self, r: usize) -> Row<'_> {
        let kb = self.k / QK;
        Row {
            qs: &self.qs[r * self.k..(r + 1) * self.k],
            d: &self.d[r * kb..(r + 1) * kb],
            s: &self.s[r * kb..(r + 1) * kb],
            sums: &self.sums[r * kb..(r + 1) * kb],
        }
    }
}

/// `len` elements from element `start` of the vector at address `base`:
/// one worker's share of an output that all the workers write.
///
/// # Safety
/// The range lies in the vector, the vector outlives the slice, and no one
/// else touches the range while the slice lives.
unsafe fn share<'a, T>(base: usize, start: usize, len: usize) -> &'a mut [T] {
    unsafe { std::slice::from_raw_parts_mut((base as *mut T).add(start), len) }
}

/// `parts × len` values, part `i` written by `fill(i, part)`, the parts
/// split between the threads.
fn filled<T: Copy + Default + Send>(
    parts: usize,
    len: usize,
    fill: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    let mut data = vec![T::default(); parts * len];
    if parts == 1 {
        fill(0, &mut data);
        return data;
    }
    let base = data.as_mut_ptr() as usize;
    candle_core::utils::barrier_pool().execute_chunked(parts, |range| {
        for i in range {
            // SAFETY: each part is one worker's alone, inside `data`, which
            // outlives the pool call.
            fill(i, unsafe { share(base, i * len, len) });
        }
    });
    data
}

/// Rounds each block of 32 values to bytes with the scale max|x| / 127,
/// kept in f16 precision as llama.cpp's Q8_0 keeps it.
#[inline(always)]
fn quantize_blocks(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], sums: &mut [i32]) {
    let blocks = x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK));
    let scales = d.iter_mut().zip(s).zip(sums);
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

#[derive(Clone, Copy)]
struct Row<'a> {
    qs: &'a [i8],
    d: &'a [f32],
    s: &'a [f32],
    sums: &'a [i32],
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Isa {
    Scalar,
    #[cfg(glot_x86)]
    Avx2,
    #[cfg(glot_x86)]
    Vnni,
    /// aarch64's Advanced SIMD, which every such CPU has.
    #[cfg(glot_neon)]
    Neon,
    /// NEON with the dot-product extension (`sdot`).
    #[cfg(glot_neon)]
    NeonDot,
}

/// The name of the CPU kernels this machine runs, for records of a run:
/// each path adds in its own order, so outputs match bit for bit only on
/// the same path (and thread count).
pub fn path_name() -> &'static str {
    match isa() {
        Isa::Scalar => "scalar",
        #[cfg(glot_x86)]
        Isa::Avx2 => "avx2",
        #[cfg(glot_x86)]
        Isa::Vnni => "avx512-vnni",
        #[cfg(glot_neon)]
        Isa::Neon => "neon",
        #[cfg(glot_neon)]
        Isa::NeonDot => "neon-dotprod",
    }
}

/// The kernels this CPU runs, found once.
fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(detect)
}

#[cfg(glot_neon)]
fn detect() -> Isa {
    match std::arch::is_aarch64_feature_detected!("dotprod") {
        true => Isa::NeonDot,
        false => Isa::Neon,
    }
}

#[cfg(not(glot_neon))]
fn detect() -> Isa {
    #[cfg(glot_x86)]
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
}

/// Products of one panel with `R` activation rows, on the path `isa`.
fn tile<const R: usize>(
    isa: Isa,
    format: Format,
    panel: &[u8],
    rows: [Row; R],
) -> [[f32; LANES]; R] {
    match isa {
        #[cfg(glot_x86)]
        // SAFETY: `isa()` chose these paths only where the CPU has the
        // features; the kernels check the rows' lengths against the panel.
        Isa::Vnni => unsafe { panels::x86::tile_vnni(format, panel, rows) },
        #[cfg(glot_x86)]
        Isa::Avx2 => unsafe { panels::x86::tile_avx2(format, panel, rows) },
        #[cfg(glot_neon)]
        Isa::NeonDot => unsafe { panels::neon::tile_dot(format, panel, rows) },
        #[cfg(glot_neon)]
        Isa::Neon => panels::neon::tile_widening(format, panel, rows),
        Isa::Scalar => panels::tile_scalar(format, panel, rows),
    }
}

#[cfg(glot_x86)]
mod x86 {
    /// [`super::quantize_blocks`] compiled for AVX2, where rounding and the
    /// block maximum are vector instructions rather than calls.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn quantize(
        x: &[f32],
        qs: &mut [i8],
        d: &mut [f32],
        s: &mut [f32],
        sums: &mut [i32],
    ) {
        super::quantize_blocks(x, qs, d, s, sums)
    }
}

impl BlockMatrix {
    /// The matrix of `t` if it is in one of these formats.
    fn of(t: &QTensor) -> Option<BlockMatrix> {
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
        let data = t.data().ok()?;
        Some(BlockMatrix {
            panels: Panels::new(format, n, k, &data),
        })
    }

    /// Rows `ids` of the matrix as f32: the lookup of an embedding table
    /// that is also the output head.
    fn embedding(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        lookup(ids, self.panels.n, self.panels.k, |row, out| {
            self.panels.row(row, out)
        })
    }
}

/// Rows `ids` of an `n × k` matrix whose row `i` `row(i, out)` writes: the
/// tensor handling of embedding lookups.
fn lookup(
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

/// Calls `job(matrix, panel, rows)` for every panel of matrices that have
/// `panels[matrix]` panels, against every row of `0..m`: the panels of all
/// the matrices are one range split between the threads, and a block of
/// rows stays in the cache while a worker's panels pass over it.
fn for_panels(
    panels: &[usize],
    m: usize,
    job: impl Fn(usize, usize, std::ops::Range<usize>) + Sync,
) {
    let starts: Vec<usize> = panels
        .iter()
        .scan(0, |acc, &p| {
            let s = *acc;
            *acc += p;
            Some(s)
        })
        .collect();
    let total = panels.iter().sum();
    candle_core::utils::barrier_pool().execute_chunked(total, |range| {
        for r0 in (0..m).step_by(ROW_BLOCK) {
            let rows = r0..m.min(r0 + ROW_BLOCK);
            for i in range.clone() {
                let at = starts.partition_point(|&s| s <= i) - 1;
                job(at, i - starts[at], rows.clone());
            }
        }
    });
}

/// Writes a panel's 16 results for row `r` (fewer in a last panel that
/// passes `n`) into the `rows × n` output at address `dst`.
fn put_row(dst: usize, n: usize, panel: usize, r: usize, v: &[f32; LANES]) {
    let col = panel * LANES;
    // SAFETY: callers give each (row, panel) of an output to one job, which
    // writes it once, and the output outlives the pool call.
    unsafe {
        let at = (dst as *mut f32).add(r * n + col);
        std::ptr::copy_nonoverlapping(v.as_ptr(), at, LANES.min(n - col));
    }
}

/// `x · bᵀ` for every matrix `b` of `bs`, all `k` wide, `x` being rows of
/// `k` values given as one slice. The activations are quantized once, and
/// the panels of all the matrices are one range split between the threads:
/// Q, K and V (or gate and up) are one pass, with one wait for the threads.
fn products(bs: &[&BlockMatrix], x: &[f32], k: usize) -> Vec<Vec<f32>> {
    let m = x.len() / k;
    let acts = Acts::quantize(x, k);
    let mut outs: Vec<Vec<f32>> = bs.iter().map(|b| vec![0f32; m * b.panels.n]).collect();
    let dsts: Vec<usize> = outs.iter_mut().map(|o| o.as_mut_ptr() as usize).collect();
    let panels: Vec<usize> = bs.iter().map(|b| b.panels.panels()).collect();
    let isa = isa();
    for_panels(&panels, m, |at, panel, rows| {
        let job = Job {
            isa,
            matrix: &bs[at].panels,
            panel,
            acts: &acts,
            dst: dsts[at],
        };
        // Each panel is decoded once per tile of rows.
        match isa {
            #[cfg(glot_x86)]
            Isa::Vnni => job.run::<ROWS>(rows),
            #[cfg(glot_x86)]
            Isa::Avx2 => job.run::<2>(rows),
            #[cfg(glot_neon)]
            Isa::Neon | Isa::NeonDot => job.run::<ROWS>(rows),
            Isa::Scalar => job.run::<1>(rows),
        }
    });
    outs
}

/// One panel of one matrix against rows of the activations.
struct Job<'a> {
    isa: Isa,
    matrix: &'a Panels,
    panel: usize,
    acts: &'a Acts,
    /// The matrix's output, `rows × n` f32, as an address.
    dst: usize,
}

impl Job<'_> {
    fn run<const R: usize>(&self, rows: std::ops::Range<usize>) {
        let (format, isa) = (self.matrix.format, self.isa);
        let panel = self.matrix.panel(self.panel);
        let acts = |r: usize| self.acts.row(r);
        let at = (self.dst, self.matrix.n, self.panel);
        tile_rows::<R>(
            rows,
            at,
            |r| tile(isa, format, panel, std::array::from_fn(|i| acts(r + i))),
            |r| tile(isa, format, panel, [acts(r)])[0],
        );
    }
}

/// One panel against `rows`: tiles of `R` rows from `r` (`tile(r)`), then
/// the rows left one at a time (`one(r)`), each row's results written into
/// the output `at` = (address, width, panel) with [`put_row`]. Every kernel
/// family decodes a panel once per tile this way.
fn tile_rows<const R: usize>(
    rows: std::ops::Range<usize>,
    (dst, n, panel): (usize, usize, usize),
    tile: impl Fn(usize) -> [[f32; LANES]; R],
    one: impl Fn(usize) -> [f32; LANES],
) {
    let mut r = rows.start;
    while r + R <= rows.end {
        for (i, v) in tile(r).iter().enumerate() {
            put_row(dst, n, panel, r + i, v);
        }
        r += R;
    }
    for r in r..rows.end {
        put_row(dst, n, panel, r, &one(r));
    }
}

impl Module for BlockMatrix {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, k) = (self.panels.n, self.panels.k);
        forward_rows(x, n, k, |data| Ok(products(&[self], data, k).remove(0)))
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
    #[cfg(glot_x86)]
    Q4K(Arc<kquants::KMatrix>),
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
        matches!(self, Matmul::Blocks(_) | Matmul::Half(_))
    }

    /// Rows `ids` of the matrix as f32 (an embedding lookup).
    pub fn embedding(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Matmul::Blocks(b) => b.embedding(ids),
            Matmul::Half(h) => h.embedding(ids),
            Matmul::Candle(m) => m.embedding(ids),
            #[cfg(glot_x86)]
            Matmul::Q4K(_) => {
                candle_core::bail!("this matrix does not serve as an embedding table")
            }
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
            #[cfg(glot_x86)]
            Matmul::Q4K(b) => b.forward(x),
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
/// gate and up). Where all are in block formats, or all in the same half
/// precision, the input is quantized or converted once and all the
/// products are one parallel pass (see [`products`]): a decode step would
/// otherwise wait for the threads once per matrix.
pub fn forward_all(ms: &[&Matmul], x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
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
    let data = || x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>();
    let (outs, widths): (Vec<Vec<f32>>, Vec<usize>) = match (blocks, halves) {
        _ if k == 0 || ms.is_empty() => return ms.iter().map(|m| m.forward(x)).collect(),
        (Some(bs), _) => (
            products(&bs, &data()?, k),
            bs.iter().map(|b| b.panels.n).collect(),
        ),
        (_, Some(hs)) if hs.iter().all(|h| h.pairs_with(hs[0])) => (
            half_precision::products(&hs, &data()?),
            hs.iter().map(|h| h.n()).collect(),
        ),
        _ => return ms.iter().map(|m| m.forward(x)).collect(),
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
    use super::*;
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
                let acts = Acts::quantize(&random(3 * k, 5), k);
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
        ];
        for set in sets {
            let ms: Vec<Matmul> = set
                .into_iter()
                .map(|(dt, n)| in_panels(quantized(dt, n, 64)))
                .collect();
            assert!(ms
                .iter()
                .all(|m| matches!(m, Matmul::Blocks(_) | Matmul::Half(_))));
            for rows in [1, 6] {
                let x =
                    Tensor::from_vec(random(64 * rows, 9), (1, rows, 64), &Device::Cpu).unwrap();
                let all = forward_all(&ms.iter().collect::<Vec<_>>(), &x).unwrap();
                for (m, y) in ms.iter().zip(all) {
                    let alone = m.forward(&x).unwrap();
                    assert_eq!(y.dims(), alone.dims());
                    assert_eq!(flat(Ok(y)), flat(Ok(alone)));
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

    /// The activation sums a block minimum multiplies are llama.cpp's Q8_1
    /// `s`: the exact scale times the sum of the rounded values, in f16.
    #[test]
    fn activation_sums_are_llama_cpps() {
        let x: Vec<f32> = (0..QK).map(|i| (i as f32 - 10.3) * 0.37).collect();
        let acts = Acts::quantize(&x, QK);
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        let sum: i32 = acts.qs.iter().map(|&q| q as i32).sum();
        assert_eq!(acts.sums[0], sum);
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
