//! Products with matrices in the 32-value block formats: activations
//! quantized once, panels split between the threads, and each tile of
//! rows sent to the kernel of this CPU.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Module, Tensor};

use super::acts::{Acts, Row, Scheme};
use super::cpu::{isa, Isa};
use super::formats::{Format, QK};
use super::panels::{self, Panels, LANES};
use super::pool::{for_panels, tile_rows};
use super::{forward_rows, lookup};

/// Activation rows that share one decoding of a panel's block.
pub(super) const ROWS: usize = 4;

/// A matrix of `n` rows of `k` values in a block format, rearranged into
/// panels (see [`panels`]). A tied embedding table is both the input
/// lookup ([`BlockMatrix::embedding`]) and this output head.
pub struct BlockMatrix {
    pub(super) panels: Panels,
}

impl BlockMatrix {
    /// The matrix of `t` if it is in one of these formats.
    pub(super) fn of(t: &QTensor) -> Option<BlockMatrix> {
        let (n, k) = t.shape().dims2().ok()?;
        if !t.device().is_cpu() {
            return None;
        }
        BlockMatrix::from_file(t.dtype(), n, k, &t.data().ok()?)
    }

    /// The matrix of `n` rows of `k` values of type `dtype` laid out as in
    /// a GGUF file, `src`, if it is in one of these formats.
    pub(super) fn from_file(dtype: GgmlDType, n: usize, k: usize, src: &[u8]) -> Option<Self> {
        let format = match dtype {
            GgmlDType::Q8_0 => Format::Q8_0,
            GgmlDType::Q5_0 => Format::Q5_0,
            GgmlDType::Q5_1 => Format::Q5_1,
            GgmlDType::Q4_0 => Format::Q4_0,
            GgmlDType::Q4_1 => Format::Q4_1,
            _ => return None,
        };
        if !k.is_multiple_of(QK) || src.len() != n * k / QK * format.block_bytes() {
            return None;
        }
        Some(BlockMatrix {
            panels: Panels::new(format, n, k, src),
        })
    }

    /// Rows `ids` of the matrix as f32: the lookup of an embedding table
    /// that is also the output head.
    pub(super) fn embedding(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        lookup(ids, self.panels.n, self.panels.k, |row, out| {
            self.panels.row(row, out)
        })
    }
}

/// `x · bᵀ` for every matrix `b` of `bs`, all `k` wide, `x` being rows of
/// `k` values given as one slice. The activations are quantized once, and
/// the panels of all the matrices are one range split between the threads:
/// Q, K and V (or gate and up) are one pass, with one wait for the threads.
pub(super) fn products(bs: &[&BlockMatrix], x: &[f32], k: usize) -> Vec<Vec<f32>> {
    let m = x.len() / k;
    let acts = Acts::quantize(Scheme::Q8_0, x, k);
    let mut outs: Vec<Vec<f32>> = bs.iter().map(|b| vec![0f32; m * b.panels.n]).collect();
    let dsts: Vec<usize> = outs.iter_mut().map(|o| o.as_mut_ptr() as usize).collect();
    let panels: Vec<usize> = bs.iter().map(|b| b.panels.panels()).collect();
    let isa = isa();
    #[cfg(glot_x86)]
    let amx = m >= 8 && super::amx::available();
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
            Isa::Vnni if amx => job.run_amx(rows),
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

#[cfg(glot_x86)]
impl Job<'_> {
    /// [`Job::run`] with the tiles ([`super::amx`]): 16 rows at a time,
    /// then 8, and the rows left over as the VNNI path takes them. Each
    /// row's results are the same bits whichever takes it.
    fn run_amx(&self, rows: std::ops::Range<usize>) {
        use super::amx;
        let format = self.matrix.format;
        let panel = self.matrix.panel(self.panel);
        let acts = |r: usize| self.acts.row(r);
        let at = (self.dst, self.matrix.n, self.panel);
        let one = |r: usize| tile(self.isa, format, panel, [acts(r)])[0];
        let sixteens = rows.start + (rows.len() / 16) * 16;
        // SAFETY: `amx::available()` was true (the caller), and the rows
        // are rows of one `Acts`, at one stride.
        tile_rows::<16>(
            rows.start..sixteens,
            at,
            |r| unsafe { amx::tile(format, panel, std::array::from_fn(|i| acts(r + i))) },
            one,
        );
        let mut r = sixteens;
        if rows.end - r >= 8 {
            tile_rows::<8>(
                r..r + 8,
                at,
                |r| unsafe { amx::tile(format, panel, std::array::from_fn(|i| acts(r + i))) },
                one,
            );
            r += 8;
        }
        self.run::<ROWS>(r..rows.end);
    }
}

/// Products of one panel with `R` activation rows, on the path `isa`.
pub(super) fn tile<const R: usize>(
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

impl Module for BlockMatrix {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, k) = (self.panels.n, self.panels.k);
        forward_rows(x, n, k, |data| Ok(products(&[self], data, k).remove(0)))
    }
}
