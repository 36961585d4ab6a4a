//! BART summarizers against `transformers`: the byte-level BPE tokenizer,
//! greedy decoding and beam search as the model's generation_config.json
//! sets them (min_length, no_repeat_ngram_size, forced BOS and EOS, length
//! penalty, early stopping), alone and in padded batches; and `glot
//! summarize` with such a model.

use glot::engine::choice::StopReason;
use glot::engine::seq2seq::Seq2Seq;
use serde_json::Value;

use crate::util::{fixtures, glot, json_ids as ids, max_abs_diff, model_dir, run};

const F32_LOGIT_TOL: f32 = 1e-3;

fn reference() -> Value {
    crate::util::reference_json("bart")
}

fn load() -> Seq2Seq {
    crate::util::load_seq2seq("bart")
}

fn texts(r: &Value) -> Vec<String> {
    r["greedy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect()
}

/// More than `max_length` allows: the model's own cap applies.
const NO_CAP: usize = 1000;

#[test]
fn bart_tokenizer_encodes_and_decodes_as_transformers() {
    crate::util::check_seq2seq_tokenizer(&load(), &reference(), 12);
}

/// Greedy ids equal `generate(num_beams=1)` with the rest of the
/// generation config, alone and batched; without min_length or without
/// no_repeat_ngram_size transformers gives other ids, so both are at work.
#[test]
fn bart_greedy_ids_equal_transformers_with_the_generation_config() {
    let mut m = load();
    m.set_beam(None);
    let r = reference();
    let mut ended = 0;
    let mut inputs = Vec::new();
    for (i, case) in r["greedy"].as_array().unwrap().iter().enumerate() {
        let text = case["text"].as_str().unwrap();
        let input = m.vocab().encode(text, None).unwrap();
        assert_eq!(input, ids(&case["input_ids"]), "{text}");
        let want = crate::util::json_floats(&case["first_logits"]);
        let diff = max_abs_diff(&m.first_logits(&input).unwrap(), &want);
        println!("bart {i}: first-step logits max |diff| {diff:.2e}");
        assert!(
            diff < F32_LOGIT_TOL,
            "{text}: first logits differ by {diff}"
        );
        let out = &m
            .generate_ids(std::slice::from_ref(&input), &[NO_CAP])
            .unwrap()[0];
        let want = ids(&case["output_ids"]);
        assert_eq!(out.ids, want, "{text}");
        // The forced first token, and the end forced at max_length.
        assert_eq!(out.ids[0], 0);
        assert!(out.ids.len() < 40);
        if out.stop == StopReason::Eos {
            ended += 1;
        }
        assert_ne!(want, ids(&r["greedy_without_no_repeat_ngram"][i]));
        inputs.push(input);
    }
    assert!(ended >= 2, "{ended} outputs end on their own");
    let changed_by_min = (0..inputs.len())
        .filter(|&i| r["greedy"][i]["output_ids"] != r["greedy_without_min_length"][i])
        .count();
    assert!(changed_by_min >= 1);
    let batched = m
        .generate_ids(&inputs, &vec![NO_CAP; inputs.len()])
        .unwrap();
    let want: Vec<Vec<u32>> = r["greedy_batched"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect();
    assert_eq!(
        batched.iter().map(|o| o.ids.clone()).collect::<Vec<_>>(),
        want
    );
}

/// A BART model searches as its generation config says (4 beams, length
/// penalty 2, early stopping), and finds `generate()`'s hypotheses with
/// its scores, alone and batched.
#[test]
fn bart_beam_search_equals_generate_with_the_generation_config() {
    let m = load();
    let r = reference();
    let inputs: Vec<Vec<u32>> = texts(&r)
        .iter()
        .map(|t| m.vocab().encode(t, None).unwrap())
        .collect();
    let check = crate::util::assert_beam_outputs;
    let alone: Vec<_> = inputs
        .iter()
        .map(|i| m.generate_ids(std::slice::from_ref(i), &[NO_CAP]).unwrap()[0].clone())
        .collect();
    check(&alone, r["beams"].as_array().unwrap(), "alone");
    let batched = m
        .generate_ids(&inputs, &vec![NO_CAP; inputs.len()])
        .unwrap();
    check(&batched, r["beams_batched"].as_array().unwrap(), "batched");
}

/// `glot summarize` with a BART model: a long article in pieces within its
/// positions, then the pieces' summaries summarized; what it cannot be told
/// (a language, citations) and cannot do (translate) is refused.
#[test]
fn glot_summarizes_long_articles_with_a_bart_model_in_pieces() {
    let home = tempfile::tempdir().unwrap();
    let corpus =
        std::fs::read_to_string(fixtures().join("corpus/en-kim-russia-visit.txt")).unwrap();
    let long = home.path().join("long.txt");
    std::fs::write(&long, [corpus.as_str(); 3].join("\n\n")).unwrap();
    let (long, model) = (long.to_str().unwrap(), model_dir("bart"));
    let model = model.to_str().unwrap();
    let mut c = glot(home.path());
    c.args([
        "summarize",
        long,
        "--model",
        model,
        "--length",
        "short",
        "--format",
        "json",
    ]);
    let out = run(c, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["model"]["architecture"], "bart");
    assert!(r["chunks"].as_u64().unwrap() > 1, "{r}");
    assert!(r["rounds"].as_u64().unwrap() >= 1, "{r}");
    assert!(!r["text"].as_str().unwrap().trim().is_empty());
    for (args, says) in [
        (
            vec!["summarize", long, "--lang", "fr"],
            "cannot be asked for a summary in French",
        ),
        (vec!["summarize", long, "--cite"], "cannot cite"),
        (vec!["translate", long, "--to", "de"], "cannot translate"),
    ] {
        let mut c = glot(home.path());
        c.args(&args).args(["--model", model]);
        let out = run(c, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(says), "{says}: {err}");
    }
}
