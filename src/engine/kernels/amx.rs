//! Intel's Advanced Matrix Extensions for the 32-value block formats: one
//! `tdpbssd` multiplies a tile of 16 (or 8) activation rows by a panel's
//! block of 16 weight rows, 32 values deep, into 16 × 16 integer sums.
//!
//! A panel's block is already the layout the instruction wants for its
//! second operand: row `g` of the tile is the record's vector `g`, four
//! consecutive values of each of the 16 weight rows (see [`super::panels`]).
//! Its values only lose the format's offset on the way (the tile product
//! takes signed bytes on both sides), which leaves the same integer sums.
//! The activations are rows of signed bytes with a fixed stride, the first
//! operand as they lie. So the AVX-512 VNNI kernel's integer sums come out
//! of one instruction per block instead of eight `vpdpbusd` per activation
//! row, and the rest (the scales, the minimums) is the VNNI kernel's own
//! arithmetic in its own order: a row's results are the same bits on
//! either path, so a row computed in a tile of 16 equals the same row
//! computed alone, as batch invariance requires.
//!
//! Linux hands out the tile registers' state only on request
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), once per process. Each thread loads
//! the tile configuration once, before its first product.

use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::Cell;
use std::sync::OnceLock;

use super::acts::Row;
use super::formats::{Format, QK};
use super::panels::{x86::unsigned_values, LANES};

/// Whether this CPU and kernel let glot use the tiles, found once. The
/// request for the tile state is made here, so every thread may use them
/// after a `true`.
pub(super) fn available() -> bool {
    static AMX: OnceLock<bool> = OnceLock::new();
    *AMX.get_or_init(|| super::cpu::isa() == super::cpu::Isa::Vnni && request())
}

#[cfg(target_os = "linux")]
fn request() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    let leaf7 = __cpuid_count(7, 0);
    let tile = leaf7.edx & (1 << 24) != 0;
    let int8 = leaf7.edx & (1 << 25) != 0;
    if !(tile && int8) {
        return false;
    }
    // SAFETY: the call only asks the kernel for permission; a kernel that
    // lacks it answers an error, which means no tiles.
    let granted = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    granted == 0
}

#[cfg(not(target_os = "linux"))]
fn request() -> bool {
    false
}

/// The tile configuration: tiles 0 and 1 are the sums and activations of
/// 16 rows, tile 2 a panel's block; 5, 6 and 7 the same for a second
/// block; 3 and 4 the sums and activations of 8 rows.
#[repr(C, align(64))]
struct Config([u8; 64]);

static CONFIG: Config = {
    let mut c = [0u8; 64];
    // Palette 1; then per tile (number, rows, bytes per row).
    c[0] = 1;
    let tiles = [
        (0, 16, 64),
        (1, 16, QK),
        (2, QK / 4, 64),
        (3, 8, 64),
        (4, 8, QK),
        (5, 16, 64),
        (6, 16, QK),
        (7, QK / 4, 64),
    ];
    let mut i = 0;
    while i < tiles.len() {
        let (t, rows, bytes) = tiles[i];
        c[16 + 2 * t] = bytes as u8;
        c[48 + t] = rows as u8;
        i += 1;
    }
    Config(c)
};

thread_local! {
    static CONFIGURED: Cell<bool> = const { Cell::new(false) };
}

/// Loads the tile configuration on this thread, once.
///
/// # Safety
/// [`available`] returned `true`.
unsafe fn configure() {
    if !CONFIGURED.get() {
        // SAFETY: the permission was granted (caller), and the
        // configuration is a valid palette-1 layout.
        unsafe { asm!("ldtilecfg [{0}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly)) };
        CONFIGURED.set(true);
    }
}

/// A block's integer sums as the tile stores them: 16 per activation row,
/// row `r`'s at `[16 r..]`.
#[repr(C, align(64))]
struct Sums([i32; 16 * LANES]);

/// A block's values as the tile takes them.
#[repr(C, align(64))]
struct Values([u8; 8 * 64]);

/// Writes a record's values into `values` as the tile's 8 rows of 64
/// bytes, signed: the panel's unsigned values less the format's offset,
/// so that the product needs no correction (it is the same integer).
///
/// # Safety
/// `rec` is a whole panel record of `format`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
unsafe fn signed_values(format: Format, rec: *const u8, values: &mut Values) {
    let offset = _mm512_set1_epi8(format.offset() as u8 as i8);
    // SAFETY: the caller's record is whole.
    let w = unsafe { unsigned_values(format, rec) };
    for (g, w) in w.iter().enumerate() {
        let signed = _mm512_sub_epi8(*w, offset);
        // SAFETY: `values` holds 8 vectors of 64 bytes, aligned.
        unsafe { _mm512_store_si512(values.0.as_mut_ptr().add(64 * g) as *mut _, signed) };
    }
}

/// [`super::panels::x86::tile_vnni`] for `R` = 16 or 8 rows, with the
/// integer sums from the tiles.
///
/// # Safety
/// [`available`] returned `true`; the rows lie at one stride from each
/// other (rows of one [`super::acts::Acts`]), as the kernel checks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn tile<const R: usize>(
    format: Format,
    panel: &[u8],
    rows: [Row; R],
) -> [[f32; LANES]; R] {
    const { assert!(R == 16 || R == 8) };
    let record = LANES * format.block_bytes();
    let kb = panel.len() / record;
    let base = rows[0].qs.as_ptr();
    let stride = rows
        .get(1)
        .map_or(0, |r| r.qs.as_ptr() as usize - base as usize);
    for (i, row) in rows.iter().enumerate() {
        assert!(row.qs.len() >= kb * QK && row.d.len() >= kb);
        assert!(row.s.len() >= kb && row.sums.len() >= kb);
        assert_eq!(row.qs.as_ptr() as usize, base as usize + i * stride);
    }
    // SAFETY: the rows were checked above; `available` (caller).
    unsafe {
        match format.has_min() {
            true => products::<R, true>(format, panel, &rows, kb, stride),
            false => products::<R, false>(format, panel, &rows, kb, stride),
        }
    }
}

/// One block's product into the sums tile `$c` from the activations tile
/// `$a` (the configuration gives each its rows) and tile 2, stored at
/// `$out`.
macro_rules! one_block {
    ($c:literal, $a:literal, $acts:expr, $stride:expr, $w:expr, $out:expr) => {
        asm!(
            concat!("tilezero tmm", $c),
            concat!("tileloadd tmm", $a, ", [{a} + {sa}*1]"),
            "tileloadd tmm2, [{w} + {sw}*1]",
            concat!("tdpbssd tmm", $c, ", tmm", $a, ", tmm2"),
            concat!("tilestored [{out} + {sw}*1], tmm", $c),
            a = in(reg) $acts,
            sa = in(reg) $stride,
            w = in(reg) $w,
            sw = in(reg) 64usize,
            out = in(reg) $out,
            options(nostack),
        )
    };
}

/// [`tile`]'s loop, with or without the minimums.
///
/// # Safety
/// As [`tile`], with the rows checked to hold `kb` blocks at `stride`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
unsafe fn products<const R: usize, const MIN: bool>(
    format: Format,
    panel: &[u8],
    rows: &[Row; R],
    kb: usize,
    stride: usize,
) -> [[f32; LANES]; R] {
    let record = LANES * format.block_bytes();
    let base = rows[0].qs.as_ptr();
    let ds: [*const f32; R] = std::array::from_fn(|r| rows[r].d.as_ptr());
    let ss: [*const f32; R] = std::array::from_fn(|r| rows[r].s.as_ptr());
    let mut acc = [_mm512_setzero_ps(); R];
    // Blocks go in groups: two at a time for 16 rows, in tiles of their
    // own, so that the second block's product does not wait for the
    // first's. Each buffer is read a group after it is written: the
    // values of group j + 1 are prepared, and the sums of group j - 1
    // scaled, while the tiles work on group j.
    let group = if R == 16 { 2 } else { 1 };
    let groups = kb.div_ceil(group);
    let mut sums = [
        [Sums([0; 16 * LANES]), Sums([0; 16 * LANES])],
        [Sums([0; 16 * LANES]), Sums([0; 16 * LANES])],
    ];
    let mut values = [
        [Values([0; 8 * 64]), Values([0; 8 * 64])],
        [Values([0; 8 * 64]), Values([0; 8 * 64])],
    ];
    let blocks = |j: usize| j * group..kb.min(j * group + group);
    // SAFETY (closures below): the caller checked every row to hold `kb`
    // blocks; the records lie in the panel.
    let rec = |b: usize| unsafe { panel.as_ptr().add(b * record) };
    let prepare = |j: usize, values: &mut [Values; 2]| {
        for (b, v) in blocks(j).zip(values.iter_mut()) {
            unsafe { signed_values(format, rec(b), v) };
        }
    };
    // SAFETY: `available` (caller).
    unsafe { configure() };
    prepare(0, &mut values[0]);
    for j in 0..=groups {
        let slot = j % 2;
        if j + 1 < groups {
            prepare(j + 1, &mut values[1 - slot]);
        }
        if j < groups {
            let first = blocks(j).start;
            // SAFETY: as `rec`.
            unsafe {
                let a0 = base.add(first * QK);
                let [s0, s1] = &mut sums[slot];
                let (s0, s1) = (s0.0.as_mut_ptr(), s1.0.as_mut_ptr());
                let [w0, w1] = &values[slot];
                let (w0, w1) = (w0.0.as_ptr(), w1.0.as_ptr());
                if blocks(j).len() == 2 {
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm5",
                        "tileloadd tmm1, [{a0} + {sa}*1]",
                        "tileloadd tmm2, [{w0} + {sw}*1]",
                        "tileloadd tmm6, [{a1} + {sa}*1]",
                        "tileloadd tmm7, [{w1} + {sw}*1]",
                        "tdpbssd tmm0, tmm1, tmm2",
                        "tdpbssd tmm5, tmm6, tmm7",
                        "tilestored [{s0} + {sw}*1], tmm0",
                        "tilestored [{s1} + {sw}*1], tmm5",
                        a0 = in(reg) a0,
                        a1 = in(reg) a0.add(QK),
                        sa = in(reg) stride,
                        w0 = in(reg) w0,
                        w1 = in(reg) w1,
                        sw = in(reg) 64usize,
                        s0 = in(reg) s0,
                        s1 = in(reg) s1,
                        options(nostack),
                    );
                } else if R == 16 {
                    one_block!("0", "1", a0, stride, w0, s0);
                } else {
                    one_block!("3", "4", a0, stride, w0, s0);
                }
            }
        }
        if j == 0 {
            continue;
        }
        // The VNNI kernel's arithmetic, in its order, for group j - 1.
        for (b, out) in blocks(j - 1).zip(&sums[1 - slot]) {
            // SAFETY: as `rec`; the sums hold R rows of 16.
            unsafe {
                let rec = rec(b);
                let d = _mm512_cvtph_ps(_mm256_loadu_si256(rec as *const __m256i));
                let m = match MIN {
                    true => _mm512_cvtph_ps(_mm256_loadu_si256(rec.add(32) as *const __m256i)),
                    false => _mm512_setzero_ps(),
                };
                for r in 0..R {
                    let dot = _mm512_load_si512(out.0.as_ptr().add(LANES * r) as *const _);
                    let p = _mm512_cvtepi32_ps(dot);
                    let scale = _mm512_mul_ps(d, _mm512_set1_ps(*ds[r].add(b)));
                    acc[r] = _mm512_fmadd_ps(p, scale, acc[r]);
                    if MIN {
                        acc[r] = _mm512_fmadd_ps(m, _mm512_set1_ps(*ss[r].add(b)), acc[r]);
                    }
                }
            }
        }
    }
    let mut out = [[0f32; LANES]; R];
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: `o` holds 16 floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::acts::{Acts, Scheme};
    use super::super::panels::{x86::tile_vnni, Panels};
    use super::super::tests::random;
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    const FORMATS: [(GgmlDType, Format); 5] = [
        (GgmlDType::Q8_0, Format::Q8_0),
        (GgmlDType::Q5_0, Format::Q5_0),
        (GgmlDType::Q5_1, Format::Q5_1),
        (GgmlDType::Q4_0, Format::Q4_0),
        (GgmlDType::Q4_1, Format::Q4_1),
    ];

    /// On a CPU with the tiles, a tile of 16 or 8 rows gives every row the
    /// bits the VNNI kernel gives it alone, in every format, from several
    /// first rows and over panels that end short of a group of two blocks
    /// (7 blocks).
    #[test]
    fn tiles_give_each_row_the_bits_it_gets_alone() {
        // The tiles are only ever taken beside the VNNI kernel; where the
        // CPU or its kernel lacks them there is nothing more to compare,
        // and `kernels::tests` checks the path taken instead.
        if !available() {
            return;
        }
        let (n, k, m) = (40, 32 * 7, 24);
        for (dtype, format) in FORMATS {
            let w = Tensor::from_vec(random(n * k, 5), (n, k), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let panels = Panels::new(format, n, k, &q.data().unwrap());
            let acts = Acts::quantize(Scheme::Q8_0, &random(m * k, 6), k);
            for p in 0..panels.panels() {
                let panel = panels.panel(p);
                for r0 in [0, 3, 8] {
                    let rows16: [Row; 16] = std::array::from_fn(|i| acts.row(r0 + i));
                    let got16 = unsafe { tile::<16>(format, panel, rows16) };
                    let rows8: [Row; 8] = std::array::from_fn(|i| acts.row(r0 + i));
                    let got8 = unsafe { tile::<8>(format, panel, rows8) };
                    for i in 0..16 {
                        let [alone] = unsafe { tile_vnni(format, panel, [acts.row(r0 + i)]) };
                        let bits = |v: &[f32; LANES]| v.map(f32::to_bits);
                        assert_eq!(
                            bits(&got16[i]),
                            bits(&alone),
                            "{format:?} panel {p} row {i}"
                        );
                        if i < 8 {
                            assert_eq!(bits(&got8[i]), bits(&alone), "{format:?} 8 rows, {i}");
                        }
                    }
                }
            }
        }
    }
}
