//! Marian (opus-mt) against `transformers`: the tokenizer converted from
//! SentencePiece in Rust encodes and decodes as `MarianTokenizer`, and greedy
//! ids equal the reference token for token, alone and in padded batches.

use glot::engine::generate::StopReason;
use glot::engine::seq2seq::{MarianFiles, Output, Seq2Seq};
use serde_json::Value;

use crate::util::{max_abs_diff, model_dir};

const F32_LOGIT_TOL: f32 = 1e-3;

fn reference() -> Value {
    let path = model_dir("marian").join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn load() -> Seq2Seq {
    let files = MarianFiles::in_dir(&model_dir("marian")).unwrap();
    Seq2Seq::load_marian("marian", &files).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The ids as `transformers` reports them: EOS included, natural or forced.
fn reported(o: &Output) -> Vec<u32> {
    o.ids.clone()
}

#[test]
fn converted_tokenizer_encodes_and_decodes_as_marian_tokenizer() {
    let m = load();
    let r = reference();
    let cases = r["tokenizer"]["encode"].as_array().unwrap();
    assert!(cases.len() >= 12);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let got = m.vocab().encode(text, None).unwrap();
        assert_eq!(got, ids(&case["ids"]), "encoding {text:?}");
    }
    for case in r["tokenizer"]["decode"].as_array().unwrap() {
        let got = m.vocab().decode(&ids(&case["ids"]));
        assert_eq!(
            got,
            case["text"].as_str().unwrap(),
            "decoding {:?}",
            case["ids"]
        );
    }
}

#[test]
fn greedy_ids_equal_transformers_one_sentence_at_a_time() {
    let m = load();
    let r = reference();
    let max_new = r["max_new_tokens"].as_u64().unwrap() as usize;
    let mut ended = 0;
    for case in r["greedy"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let input = m.vocab().encode(text, None).unwrap();
        assert_eq!(input, ids(&case["input_ids"]), "{text}");
        let logits = m.first_logits(&input).unwrap();
        let want: Vec<f32> = case["first_logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let diff = max_abs_diff(&logits, &want);
        assert!(
            diff < F32_LOGIT_TOL,
            "{text}: first logits differ by {diff}"
        );
        let out = &m.generate_ids(&[input], &[max_new]).unwrap()[0];
        assert_eq!(reported(out), ids(&case["output_ids"]), "{text}");
        assert_eq!(
            m.vocab().decode(&out.ids),
            case["output_text"].as_str().unwrap()
        );
        if out.stop == StopReason::Eos {
            ended += 1;
        }
    }
    // The fixture has sentences that end on their own and ones cut at the cap.
    assert!(ended >= 1 && ended < r["greedy"].as_array().unwrap().len());
}

#[test]
fn padded_batches_give_the_same_ids_as_single_sentences() {
    let m = load();
    let r = reference();
    let max_new = r["max_new_tokens"].as_u64().unwrap() as usize;
    let texts: Vec<&str> = r["batched"]["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let inputs: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| m.vocab().encode(t, None).unwrap())
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
    assert_eq!(got.iter().map(reported).collect::<Vec<_>>(), want);
    // Any order and grouping gives the same result.
    let mut rev = inputs.clone();
    rev.reverse();
    let mut got_rev = m.generate_ids(&rev, &vec![max_new; rev.len()]).unwrap();
    got_rev.reverse();
    assert_eq!(got_rev.iter().map(reported).collect::<Vec<_>>(), want);
}
