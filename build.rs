//! Chooses the instruction-set kernels to compile.
//!
//! `glot_x86` marks glot's own x86_64 kernels (AVX2, AVX-512) and
//! `glot_neon` its aarch64 ones (NEON, with the dot-product instructions
//! where the CPU has them). The `portable` feature compiles neither: only
//! the scalar code and candle's kernels, the fallback every target has, so
//! that it is built and tested on any machine.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(glot_x86)");
    println!("cargo::rustc-check-cfg=cfg(glot_neon)");
    println!("cargo::rerun-if-changed=build.rs");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let portable = std::env::var_os("CARGO_FEATURE_PORTABLE").is_some();
    match arch.as_str() {
        _ if portable => {}
        "x86_64" => println!("cargo::rustc-cfg=glot_x86"),
        "aarch64" => println!("cargo::rustc-cfg=glot_neon"),
        _ => {}
    }
}
