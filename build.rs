//! Chooses the instruction-set kernels to compile.
//!
//! `glot_x86` marks glot's own x86_64 kernels (AVX2, AVX-512): compiled on
//! x86_64 unless the `portable` feature asks for exactly the code that
//! other targets (ARM) compile, so that it is built and tested here too.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(glot_x86)");
    println!("cargo::rerun-if-changed=build.rs");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let portable = std::env::var_os("CARGO_FEATURE_PORTABLE").is_some();
    if arch == "x86_64" && !portable {
        println!("cargo::rustc-cfg=glot_x86");
    }
}
