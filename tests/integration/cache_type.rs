//! `--cache-type`: what an f16 and a Q8_0 key/value cache change in the
//! logits against an f32 one, on every fixture family, from f32 weights and
//! from Q8_0 ones, along the reference outputs.

use glot::engine::{CacheType, Llm, LoadOptions};
use glot::hub;

use crate::util::{gguf, glot, model_dir, reference, run, stderr, stdout, FAMILIES};

/// The largest logit difference an f16 cache may make from f32 weights, as
/// a fraction of the largest logit. Measured on these fixtures (logits up
/// to 77, and 195 for Gemma 3): 4.9e-4 to 8.4e-4.
const F16_CACHE_TOL: f32 = 3e-3;

fn load(family: &str, format: &str, cache: CacheType) -> Llm {
    let files = match format {
        "safetensors" => hub::resolve_local(model_dir(family).to_str().unwrap(), None),
        ty => hub::resolve_local(gguf(family, ty).to_str().unwrap(), Some(&model_dir(family))),
    }
    .unwrap();
    let opts = LoadOptions {
        cache: Some(cache),
        ..LoadOptions::default()
    };
    Llm::load(&files, &opts).unwrap()
}

/// Every step's logits along every reference case.
fn logits(llm: &mut Llm, family: &str) -> Vec<f32> {
    let cases = reference(family).cases;
    cases
        .iter()
        .flat_map(|c| llm.logits_along(&c.prompt_ids, &c.output_ids).unwrap())
        .flatten()
        .collect()
}

fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0., f32::max)
}

/// The same for a Q8_0 cache. Measured on these fixtures: 1.1e-2 to
/// 2.3e-2, some thirty times what an f16 cache makes.
const Q8_CACHE_TOL: f32 = 4e-2;

/// From f32 weights, an f16 cache stays within [`F16_CACHE_TOL`] of the
/// largest logit, a Q8_0 one within [`Q8_CACHE_TOL`]. From Q8_0 weights
/// (whose activations are rounded to 8 bits too), an f16 cache moves the
/// logits less than the weights' format itself does: Q8_0 with an f32
/// cache against the f32 weights. (A Q8_0 cache measured less than the
/// weights too, but on one family within 6% of them: too close to hold on
/// every CPU's order of sums.)
#[test]
fn f16_and_q8_0_caches_change_the_logits_less_than_their_tolerances() {
    for family in FAMILIES {
        let exact = logits(&mut load(family, "safetensors", CacheType::F32), family);
        let scale = exact.iter().map(|x| x.abs()).fold(0., f32::max);
        for (cache, tol) in [
            (CacheType::F16, F16_CACHE_TOL),
            (CacheType::Q8_0, Q8_CACHE_TOL),
        ] {
            let got = logits(&mut load(family, "safetensors", cache), family);
            let worst = largest_difference(&exact, &got);
            eprintln!(
                "{family} f32 weights: {cache:?} cache {worst:e} = {:e} of the largest logit {scale}",
                worst / scale
            );
            assert!(
                worst > 0.0,
                "{family}: the same bits with {cache:?} and f32"
            );
            assert!(worst <= tol * scale, "{family} {cache:?}: {worst}");
        }

        let q8 = logits(&mut load(family, "q8_0", CacheType::F32), family);
        let weights = largest_difference(&q8, &exact);
        for cache in [CacheType::F16, CacheType::Q8_0] {
            let got = logits(&mut load(family, "q8_0", cache), family);
            let moved = largest_difference(&q8, &got);
            eprintln!("{family} q8_0: {cache:?} cache {moved:e}, q8_0 weights {weights:e}");
            assert!(
                moved > 0.0,
                "{family} q8_0: the same bits with {cache:?} and f32"
            );
            if cache == CacheType::F16 {
                assert!(moved < weights, "{family} q8_0: {moved} against {weights}");
            }
        }
    }
}

/// The binary takes `--cache-type`, records it with the output, and
/// refuses a type it does not have.
#[test]
fn the_cache_type_is_a_flag_recorded_with_the_output() {
    let home = tempfile::tempdir().unwrap();
    let model = model_dir("qwen3");
    let ask = |cache: &str| {
        let mut cmd = glot(home.path());
        cmd.args(["generate", "--model", model.to_str().unwrap()])
            .args(["--prompt", "The committee met", "--max-new-tokens", "4"])
            .args(["--format", "json", "--cache-type", cache]);
        run(cmd, None)
    };
    let out = ask("f16");
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["reproduce"]["decoding"]["cache_type"], "f16");
    let out = ask("q8_0");
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["reproduce"]["decoding"]["cache_type"], "q8_0");
    let out = ask("q4");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--cache-type"), "{}", stderr(&out));
}
