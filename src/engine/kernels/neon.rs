//! The aarch64 instructions the NEON kernels share that Rust's stable
//! intrinsics lack: widening f16 to f32 (the intrinsics take the unstable
//! `f16` type) and the signed dot product `sdot` (an unstable intrinsic),
//! as one instruction each.
//!
//! NEON itself is part of every aarch64 CPU, so only `sdot` needs a check
//! at run time (ARMv8.2's optional dot-product extension, present on Apple
//! M1 and later, Graviton 2 and later, Cortex-A76 and later).

use std::arch::aarch64::*;
use std::arch::asm;

/// Four f16 values from `p` (any alignment), widened to f32.
///
/// # Safety
/// Eight bytes are readable at `p`.
#[inline(always)]
pub(super) unsafe fn f16x4(p: *const u8) -> float32x4_t {
    // SAFETY: as the caller promises.
    let halves = vcreate_u16(unsafe { (p as *const u64).read_unaligned() });
    let out: float32x4_t;
    // SAFETY: `fcvtl` (half to single precision) is in every aarch64
    // CPU's Advanced SIMD; it reads and writes registers only.
    unsafe {
        asm!(
            "fcvtl {out:v}.4s, {halves:v}.4h",
            out = lateout(vreg) out,
            halves = in(vreg) halves,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// `acc` plus, in each 32-bit lane `i`, the sum of the products of bytes
/// `4i..4i + 4` of `a` and `b`, with `sdot`.
///
/// # Safety
/// The CPU has the dot-product extension (`dotprod`).
#[inline]
#[target_feature(enable = "dotprod")]
pub(super) unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: as the caller promises; registers only.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// [`sdot`] without the extension: byte products widened to 16 bits,
/// summed in pairs, then the pairs' pairs added into the 32-bit lanes.
/// The pair sums fit 16 bits as long as no product of two bytes is
/// -128 · -128, which the activations (never below -127) rule out.
#[inline(always)]
pub(super) fn sdot_widening(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: plain Advanced SIMD, which every aarch64 CPU has.
    unsafe {
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(acc, vpaddq_s16(lo, hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_widen_as_the_half_crate_does() {
        let values = [1.5f32, -0.0, 65504.0, 6.1e-5];
        let bytes: Vec<u8> = values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let mut out = [0f32; 4];
        // SAFETY: eight bytes; four lanes stored.
        unsafe { vst1q_f32(out.as_mut_ptr(), f16x4(bytes.as_ptr())) };
        let want = values.map(|v| half::f16::from_f32(v).to_f32());
        assert_eq!(out.map(f32::to_bits), want.map(f32::to_bits));
    }

    #[test]
    fn both_dot_products_sum_four_bytes_a_lane() {
        let a: [i8; 16] = std::array::from_fn(|i| ((i as i32 - 8) * 16) as i8);
        let b: [i8; 16] = std::array::from_fn(|i| (127 - 16 * i as i32) as i8);
        let want: [i32; 4] = std::array::from_fn(|l| {
            100 * l as i32
                + (0..4)
                    .map(|j| a[4 * l + j] as i32 * b[4 * l + j] as i32)
                    .sum::<i32>()
        });
        let mut out = [0i32; 4];
        // SAFETY: sixteen bytes each; four lanes stored.
        unsafe {
            let (va, vb) = (vld1q_s8(a.as_ptr()), vld1q_s8(b.as_ptr()));
            let acc = vld1q_s32([0, 100, 200, 300].as_ptr());
            vst1q_s32(out.as_mut_ptr(), sdot_widening(acc, va, vb));
            assert_eq!(out, want);
            if std::arch::is_aarch64_feature_detected!("dotprod") {
                vst1q_s32(out.as_mut_ptr(), sdot(acc, va, vb));
                assert_eq!(out, want);
            }
        }
    }
}
