//! Marian (opus-mt) against `transformers`: the tokenizer converted from
//! SentencePiece in Rust encodes and decodes as `MarianTokenizer`, and greedy
//! ids equal the reference token for token, alone and in padded batches.

use candle_core::quantized::GgmlDType;
use glot::engine::beam::{Beam, EarlyStopping};
use glot::engine::choice::StopReason;
use glot::engine::sentencepiece::SpModel;
use glot::engine::seq2seq::t5::relative_bucket;
use glot::engine::seq2seq::{Output, Seq2Seq};
use glot::hub::seq2seq_files::Seq2SeqFiles;
use serde_json::Value;

use crate::util::{max_abs_diff, model_dir};

const F32_LOGIT_TOL: f32 = 1e-3;
/// Largest first-step logit error with Q8_0 weights (and, as candle's
/// kernels do, Q8_0 activations), as the RMS of the change over the standard
/// deviation of the f32 logits. The fixtures' random weights are scaled to
/// make outputs vary, which also amplifies any perturbation: they measure
/// about 8% (weights alone about 3.6%).
const Q8_LOGIT_TOL: f32 = 0.12;

fn relative_rms(got: &[f32], want: &[f32]) -> f32 {
    let n = want.len() as f32;
    let mean = want.iter().sum::<f32>() / n;
    let sd = (want.iter().map(|w| (w - mean).powi(2)).sum::<f32>() / n).sqrt();
    let rms = (got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).powi(2))
        .sum::<f32>()
        / n)
        .sqrt();
    rms / sd
}

fn reference() -> Value {
    reference_of("marian")
}

fn reference_of(family: &str) -> Value {
    crate::util::reference_json(family)
}

fn load() -> Seq2Seq {
    load_family("marian")
}

fn load_family(family: &str) -> Seq2Seq {
    crate::util::load_seq2seq(family)
}

use crate::util::json_ids as ids;

/// The ids as `transformers` reports them: EOS included, natural or forced.
fn reported(o: &Output) -> Vec<u32> {
    o.ids.clone()
}

#[test]
fn converted_tokenizer_encodes_and_decodes_as_marian_tokenizer() {
    crate::util::check_seq2seq_tokenizer(&load(), &reference(), 12);
}

/// Source ids as glot builds them: a leading `<2xx>` tag is the target
/// token, the rest is text.
fn encode(m: &Seq2Seq, text: &str) -> Vec<u32> {
    match text.strip_prefix("<2").and_then(|t| t.split_once('>')) {
        Some((lang, rest)) => m.vocab().encode(rest, Some(&format!("<2{lang}>"))),
        None => m.vocab().encode(text, None),
    }
    .unwrap()
}

fn check_greedy(family: &str) {
    let m = load_family(family);
    let r = reference_of(family);
    let max_new = r["max_new_tokens"].as_u64().unwrap() as usize;
    let mut ended = 0;
    for case in r["greedy"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let input = encode(&m, text);
        assert_eq!(input, ids(&case["input_ids"]), "{family}: {text}");
        let logits = m.first_logits(&input).unwrap();
        let want = crate::util::json_floats(&case["first_logits"]);
        let diff = max_abs_diff(&logits, &want);
        assert!(
            diff < F32_LOGIT_TOL,
            "{family}: {text}: first logits differ by {diff}"
        );
        let out = &m.generate_ids(&[input], &[max_new]).unwrap()[0];
        assert_eq!(reported(out), ids(&case["output_ids"]), "{family}: {text}");
        assert_eq!(
            m.vocab().decode(&out.ids).unwrap(),
            case["output_text"].as_str().unwrap()
        );
        if out.stop == StopReason::Eos {
            ended += 1;
        }
    }
    // The fixtures have sentences that end on their own and ones cut at the cap.
    assert!(ended >= 1 && ended < r["greedy"].as_array().unwrap().len());
}

fn check_batched(family: &str) {
    let m = load_family(family);
    let r = reference_of(family);
    let max_new = r["max_new_tokens"].as_u64().unwrap() as usize;
    let inputs: Vec<Vec<u32>> = r["batched"]["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| encode(&m, t.as_str().unwrap()))
        .collect();
    let lengths: Vec<usize> = inputs.iter().map(Vec::len).collect();
    assert!(
        lengths.iter().min() < lengths.iter().max(),
        "uneven lengths"
    );
    let want: Vec<Vec<u32>> = r["batched"]["output_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect();
    let got = m
        .generate_ids(&inputs, &vec![max_new; inputs.len()])
        .unwrap();
    assert_eq!(
        got.iter().map(reported).collect::<Vec<_>>(),
        want,
        "{family}"
    );
    // Any order gives the same result.
    let mut rev = inputs.clone();
    rev.reverse();
    let mut got_rev = m.generate_ids(&rev, &vec![max_new; rev.len()]).unwrap();
    got_rev.reverse();
    assert_eq!(
        got_rev.iter().map(reported).collect::<Vec<_>>(),
        want,
        "{family}"
    );
}

#[test]
fn marian_greedy_ids_equal_transformers_one_sentence_at_a_time() {
    check_greedy("marian");
}

#[test]
fn marian_padded_batches_give_the_same_ids_as_single_sentences() {
    check_batched("marian");
}

#[test]
fn t5_greedy_ids_equal_transformers_one_sentence_at_a_time() {
    check_greedy("t5");
}

#[test]
fn t5_padded_batches_give_the_same_ids_as_single_sentences() {
    check_batched("t5");
}

/// Beam search: every case of `beams.json` (beam counts, length penalties,
/// the three `early_stopping` modes, a short cap, a padded batch) gives the
/// ids transformers' `generate(num_beams=N)` gives, and the same score.
fn check_beams(family: &str) {
    let mut m = load_family(family);
    let path = model_dir(family).join("beams.json");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = r["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    let (mut ended, mut differ) = (0, 0);
    for case in cases {
        let beam = Beam {
            beams: case["num_beams"].as_u64().unwrap() as usize,
            length_penalty: case["length_penalty"].as_f64().unwrap() as f32,
            early_stopping: EarlyStopping::from_json(&case["early_stopping"]).unwrap(),
        };
        m.set_beam(Some(beam));
        let max_new = case["max_new_tokens"].as_u64().unwrap() as usize;
        let texts = case["texts"].as_array().unwrap();
        let inputs: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| encode(&m, t.as_str().unwrap()))
            .collect();
        let got = if case["batched"].as_bool().unwrap() {
            m.generate_ids(&inputs, &vec![max_new; inputs.len()])
                .unwrap()
        } else {
            inputs
                .iter()
                .map(|i| m.generate_ids(std::slice::from_ref(i), &[max_new]).unwrap()[0].clone())
                .collect()
        };
        for ((out, want), text) in got
            .iter()
            .zip(case["outputs"].as_array().unwrap())
            .zip(texts)
        {
            let label = format!("{family} {beam:?} max {max_new}: {text}");
            assert_eq!(out.ids, ids(&want["output_ids"]), "{label}");
            let score = want["score"].as_f64().unwrap() as f32;
            let ours = out.score.unwrap();
            assert!(
                (ours - score).abs() < 1e-4 * score.abs().max(1.0),
                "{label}: score {ours}, transformers {score}"
            );
            ended += usize::from(out.stop == StopReason::Eos);
        }
        // Beam search finds something other than the greedy path somewhere.
        m.set_beam(None);
        for (input, want) in inputs.iter().zip(case["outputs"].as_array().unwrap()) {
            let greedy = &m
                .generate_ids(std::slice::from_ref(input), &[max_new])
                .unwrap()[0];
            differ += usize::from(greedy.ids != ids(&want["output_ids"]));
        }
    }
    assert!(differ > 0, "{family}: every beam output equals greedy");
    assert!(ended > 0, "{family}: no hypothesis ended on its own");
}

#[test]
fn marian_beam_search_equals_transformers() {
    check_beams("marian");
}

#[test]
fn t5_beam_search_equals_transformers() {
    check_beams("t5");
}

#[test]
fn t5_relative_position_buckets_equal_transformers() {
    let r = reference_of("t5");
    let rp = &r["relative_position"];
    let first = rp["first"].as_i64().unwrap();
    for (name, bidirectional) in [("bidirectional", true), ("unidirectional", false)] {
        let want = ids(&rp[name]);
        let got: Vec<u32> = (0..want.len() as i64)
            .map(|i| relative_bucket(first + i, bidirectional, 32, 128) as u32)
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

/// The tokenizer built in Rust from `spiece.model` alone, and the
/// repository's `tokenizer.json`, both encode and decode as `T5Tokenizer`.
#[test]
fn t5_tokenizers_encode_and_decode_as_t5_tokenizer() {
    let dir = model_dir("t5");
    let r = reference_of("t5");
    let converted = SpModel::from_file(&dir.join("spiece.model"))
        .unwrap()
        .to_t5_tokenizer(100)
        .unwrap();
    let published = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    for (name, tok) in [("converted", &converted), ("tokenizer.json", &published)] {
        for case in r["tokenizer"]["encode"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let mut got = tok.encode(text, false).unwrap().get_ids().to_vec();
            got.push(1);
            assert_eq!(got, ids(&case["ids"]), "{name}: encoding {text:?}");
        }
        for case in r["tokenizer"]["decode"].as_array().unwrap() {
            let got = tok.decode(&ids(&case["ids"]), true).unwrap();
            assert_eq!(
                got,
                case["text"].as_str().unwrap(),
                "{name}: decoding {:?}",
                case["ids"]
            );
        }
    }
}

/// Q8_0 in memory moves logits by a bounded amount.
#[test]
fn q8_0_stays_within_tolerance() {
    for family in ["marian", "t5"] {
        let files = Seq2SeqFiles::in_dir(family, &model_dir(family))
            .unwrap()
            .unwrap();
        let q = Seq2Seq::load(&files, Some(GgmlDType::Q8_0), crate::util::device()).unwrap();
        assert!(q.info().format.contains("Q8_0"));
        let r = reference_of(family);
        let max_new = r["max_new_tokens"].as_u64().unwrap() as usize;
        let (mut worst, mut same, mut total) = (0f32, 0, 0);
        for case in r["greedy"].as_array().unwrap() {
            let input = encode(&q, case["text"].as_str().unwrap());
            let want = crate::util::json_floats(&case["first_logits"]);
            let got = q.first_logits(&input).unwrap();
            worst = worst.max(relative_rms(&got, &want));
            let got = &q.generate_ids(&[input], &[max_new]).unwrap()[0].ids;
            let want_ids = ids(&case["output_ids"]);
            same += got
                .iter()
                .zip(&want_ids)
                .take_while(|(a, b)| a == b)
                .count();
            total += want_ids.len();
        }
        eprintln!(
            "{family} q8_0: first-logit error {:.2}% of their spread, greedy prefix agreement {same}/{total}",
            worst * 100.0
        );
        assert!(worst < Q8_LOGIT_TOL, "{family}: {worst}");
    }
}

fn load_t5_gguf(kind: &str) -> Seq2Seq {
    let path = model_dir("t5").join(format!("gguf/t5-{kind}.gguf"));
    let mut files = Seq2SeqFiles::in_dir("t5", &model_dir("t5"))
        .unwrap()
        .unwrap();
    files.weights = vec![path];
    Seq2Seq::load(&files, None, crate::util::device()).unwrap()
}

/// T5 weights from GGUF files in candle's layout: F32 gives the reference's
/// greedy ids; Q8_0, which here also holds the embeddings and head in Q8_0
/// (in-memory quantization keeps the embeddings in f32), stays within a
/// wider bound.
#[test]
fn t5_gguf_f32_is_exact_and_q8_0_within_tolerance() {
    let r = reference_of("t5");
    let max_new = r["max_new_tokens"].as_u64().unwrap() as usize;
    let f32 = load_t5_gguf("f32");
    assert!(f32.info().format.contains("gguf"), "{}", f32.info().format);
    let q8 = load_t5_gguf("q8_0");
    let mut worst = 0f32;
    for case in r["greedy"].as_array().unwrap() {
        let input = encode(&f32, case["text"].as_str().unwrap());
        let out = &f32
            .generate_ids(std::slice::from_ref(&input), &[max_new])
            .unwrap()[0];
        assert_eq!(out.ids, ids(&case["output_ids"]));
        let want = crate::util::json_floats(&case["first_logits"]);
        worst = worst.max(relative_rms(&q8.first_logits(&input).unwrap(), &want));
    }
    eprintln!(
        "t5 gguf q8_0: first-logit error {:.2}% of their spread",
        worst * 100.0
    );
    assert!(worst < Q8_GGUF_LOGIT_TOL, "{worst}");
}

/// Bound for GGUF Q8_0 files, embeddings quantized too (measured: about 15%).
const Q8_GGUF_LOGIT_TOL: f32 = 0.2;

/// An article that says `</s>` or `<pad>` does not end or pad its sentence.
#[test]
fn control_tokens_typed_in_text_are_text() {
    for family in ["marian", "t5"] {
        let m = load_family(family);
        let eos = m.special().eos;
        let pad = m.special().pad;
        let ids = m.vocab().encode("before </s> <pad> after", None).unwrap();
        let (last, body) = ids.split_last().unwrap();
        assert_eq!(*last, eos, "{family}");
        assert!(
            !body.contains(&eos) && !body.contains(&pad),
            "{family}: {ids:?}"
        );
    }
}

/// `glot generate` runs translation models too: the prompt is the encoder
/// input, and the JSON has transformers' ids.
#[test]
fn generate_runs_translation_models_with_transformers_ids() {
    let r = reference();
    let home = tempfile::tempdir().unwrap();
    let max = r["max_new_tokens"].to_string();
    for case in r["greedy"].as_array().unwrap() {
        let mut cmd = crate::util::glot(home.path());
        cmd.args(["generate", "--model"])
            .arg(model_dir("marian"))
            .args(["--prompt", case["text"].as_str().unwrap()])
            .args(["--max-new-tokens", &max, "--format", "json"]);
        let out = crate::util::run(cmd, None);
        assert!(out.status.success(), "{}", crate::util::stderr(&out));
        let json: Value = serde_json::from_str(&crate::util::stdout(&out)).unwrap();
        assert_eq!(json["prompt_ids"], case["input_ids"], "{}", case["text"]);
        assert_eq!(json["output_ids"], case["output_ids"], "{}", case["text"]);
    }
    let mut cmd = crate::util::glot(home.path());
    cmd.args(["generate", "--chat", "--prompt", "Hi", "--model"])
        .arg(model_dir("marian"));
    let out = crate::util::run(cmd, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(crate::util::stderr(&out).contains("--chat works with chat models only"));
}
