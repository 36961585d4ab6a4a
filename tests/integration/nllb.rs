//! The many-to-many translation models, NLLB-200 (M2M100) and mBART-50,
//! against `transformers`: the tokenizer with its language tokens, greedy
//! decoding with the target language forced first, alone and in padded
//! batches, beam search with its scores; glot's language codes mapped to
//! the models' tokens; and `glot translate` with such a model.

use glot::engine::seq2seq::{Seq2Seq, Vocab};
use serde_json::Value;

use crate::util::{glot, json_ids as ids, max_abs_diff, model_dir, run};

const F32_LOGIT_TOL: f32 = 1e-3;

/// The fixtures: NLLB-200's layout and mBART-50's.
const FAMILIES: [&str; 2] = ["nllb", "mbart"];

fn reference(family: &str) -> Value {
    crate::util::reference_json(family)
}

fn load(family: &str) -> Seq2Seq {
    crate::util::load_seq2seq(family)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

/// The inputs of a reference batch: its texts in its source language.
fn batch_inputs(m: &Seq2Seq, b: &Value) -> Vec<Vec<u32>> {
    b["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| m.vocab().encode(s(t), Some(s(&b["source"]))).unwrap())
        .collect()
}

#[test]
fn nllb_and_mbart_tokenizers_encode_and_decode_as_transformers() {
    for family in FAMILIES {
        crate::util::check_seq2seq_tokenizer(&load(family), &reference(family), 30);
    }
}

/// glot's language codes name NLLB's tokens: scripts from the code or the
/// language's usual one, and macrolanguages by the variety NLLB has.
#[test]
fn language_codes_map_to_nllb_and_mbart_tokens() {
    let m = load("nllb");
    let Vocab::Multilingual(v) = m.vocab() else {
        panic!("not NLLB")
    };
    for (code, code3, want) in [
        ("de", "deu", Some("deu_Latn")),
        ("zh", "zho", Some("zho_Hans")),
        ("zh-Hant", "zho", Some("zho_Hant")),
        ("zh-TW", "zho", Some("zho_Hans")),
        ("ar", "ara", Some("arb_Arab")),
        ("fa", "fas", Some("pes_Arab")),
        ("no", "nor", Some("nob_Latn")),
        ("ms", "msa", Some("zsm_Latn")),
        ("sr", "srp", Some("srp_Cyrl")),
        ("pt-BR", "por", Some("por_Latn")),
        ("tlh", "tlh", None),
    ] {
        assert_eq!(v.language_token(code, code3).as_deref(), want, "{code}");
    }
    let m = load("mbart");
    let Vocab::Multilingual(v) = m.vocab() else {
        panic!("not mBART")
    };
    for (code, code3, want) in [
        ("de", "deu", Some("de_DE")),
        ("en", "eng", Some("en_XX")),
        ("zh", "zho", Some("zh_CN")),
        ("pt-BR", "por", Some("pt_XX")),
        ("yo", "yor", None),
    ] {
        assert_eq!(v.language_token(code, code3).as_deref(), want, "{code}");
    }
}

/// Greedy ids equal `generate(forced_bos_token_id=<target>)`'s for every
/// language pair of the fixture, alone and as one padded batch.
#[test]
fn nllb_and_mbart_greedy_ids_equal_transformers_with_the_target_forced_first() {
    for family in FAMILIES {
        check_greedy(family);
    }
}

fn check_greedy(family: &str) {
    let r = reference(family);
    let max_new = r["max_new_tokens"].as_u64().unwrap() as usize;
    let mut ended = 0;
    for case in r["greedy"].as_array().unwrap() {
        let mut m = load(family);
        let input = m
            .vocab()
            .encode(s(&case["text"]), Some(s(&case["source"])))
            .unwrap();
        assert_eq!(input, ids(&case["input_ids"]), "{case}");
        let want = crate::util::json_floats(&case["first_logits"]);
        let diff = max_abs_diff(&m.first_logits(&input).unwrap(), &want);
        println!(
            "{family} {}→{}: first-step logits max |diff| {diff:.2e}",
            case["source"], case["target"]
        );
        assert!(
            diff < F32_LOGIT_TOL,
            "{}: first logits differ by {diff}",
            case["text"]
        );
        m.force_first(s(&case["target"])).unwrap();
        let out = &m.generate_ids(&[input], &[max_new]).unwrap()[0];
        assert_eq!(out.ids, ids(&case["output_ids"]), "{}", case["text"]);
        ended += usize::from(out.ids.len() < max_new);
    }
    assert!(ended >= 2);
    let b = &r["batched"];
    let mut m = load(family);
    m.force_first(s(&b["target"])).unwrap();
    let inputs = batch_inputs(&m, b);
    let got = m
        .generate_ids(&inputs, &vec![max_new; inputs.len()])
        .unwrap();
    let want: Vec<Vec<u32>> = b["output_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect();
    assert_eq!(got.iter().map(|o| o.ids.clone()).collect::<Vec<_>>(), want);
}

/// Beam search (4 beams) finds `generate(num_beams=4)`'s hypotheses with
/// its scores, alone and batched.
#[test]
fn nllb_and_mbart_beam_search_equals_generate() {
    for family in FAMILIES {
        check_beams(family);
    }
}

fn check_beams(family: &str) {
    let r = reference(family);
    let max_new = r["max_new_tokens"].as_u64().unwrap() as usize;
    let check = |m: &Seq2Seq, inputs: &[Vec<u32>], want: &[Value]| {
        let got = m
            .generate_ids(inputs, &vec![max_new; inputs.len()])
            .unwrap();
        crate::util::assert_beam_outputs(&got, want, family);
    };
    for case in r["beams"].as_array().unwrap() {
        let mut m = load(family);
        m.use_beams(4, None);
        m.force_first(s(&case["target"])).unwrap();
        let input = m
            .vocab()
            .encode(s(&case["text"]), Some(s(&case["source"])))
            .unwrap();
        check(&m, &[input], std::slice::from_ref(case));
    }
    let b = &r["beams_batched"];
    let mut m = load(family);
    m.use_beams(4, None);
    m.force_first(s(&b["target"])).unwrap();
    let inputs = batch_inputs(&m, b);
    check(&m, &inputs, b["outputs"].as_array().unwrap());
}

/// `glot translate` with an NLLB or mBART-50 model: the source language
/// given or detected picks the input's token, the target's leads the
/// output.
#[test]
fn glot_translates_with_nllb_and_mbart_models() {
    let home = tempfile::tempdir().unwrap();
    let doc = home.path().join("a.txt");
    std::fs::write(
        &doc,
        "The new tram line opened on Monday.\n\nThe library opens at nine in the morning and closes late in the evening.",
    )
    .unwrap();
    let doc = doc.to_str().unwrap();
    for (family, from) in [
        ("nllb", &["--from", "en"][..]),
        ("nllb", &[]),
        ("mbart", &[]),
    ] {
        let model = model_dir(family);
        let model = model.to_str().unwrap();
        let mut c = glot(home.path());
        c.args([
            "translate",
            doc,
            "--to",
            "de",
            "--model",
            model,
            "--format",
            "json",
        ])
        .args(from);
        let out = run(c, None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        let arch = if family == "nllb" { "m2m_100" } else { "mbart" };
        assert_eq!(r["model"]["architecture"], arch);
        assert_eq!(r["paragraphs"], 2);
    }
    let model = model_dir("nllb");
    let mut c = glot(home.path());
    c.args(["summarize", doc, "--model", model.to_str().unwrap()]);
    let out = run(c, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("only translate"), "{err}");
}

/// The catalog's NLLB models say their non-commercial license.
#[test]
fn models_list_shows_nllb_s_non_commercial_license() {
    let home = tempfile::tempdir().unwrap();
    let mut c = glot(home.path());
    c.args(["models", "list"]);
    let out = run(c, None);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("nllb-200")).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows.iter().all(|r| r.contains("cc-by-nc-4.0")), "{text}");
}
