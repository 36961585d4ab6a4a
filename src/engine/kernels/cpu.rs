//! Which kernels this CPU runs, found once: the instruction sets glot has
//! vector kernels for, else the scalar path.

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Isa {
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
pub(super) fn isa() -> Isa {
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
