//! `--parallel`: independent calls decoded side by side give each call the
//! bits it gets alone (batch invariance), on every fixture and format.

use std::path::Path;

use glot::engine::generate::{GenParams, Prompt};
use glot::engine::parallel::Call;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::parity::{load_dir, load_gguf};
use crate::util::{glot, model_dir, reference, run, stderr, stdout, FAMILIES, GGUF_TYPES};

/// The formats named in `formats` ("safetensors" or a GGUF type) of every
/// fixture family, loaded one at a time as the iterator is drawn.
fn models<'a>(formats: &'a [&'a str]) -> impl Iterator<Item = (String, glot::engine::Llm)> + 'a {
    FAMILIES.iter().flat_map(move |family| {
        formats.iter().map(move |&format| {
            let llm = match format {
                "safetensors" => load_dir(family),
                ty => load_gguf(family, ty),
            };
            (format!("{family} {format}"), llm)
        })
    })
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The reference cases read along their own outputs, all at once and in
/// another order, give every step of every case the logits it gets alone.
#[test]
fn steps_side_by_side_give_each_sequence_its_lone_logits_bit_for_bit() {
    let formats: Vec<&str> = ["safetensors"]
        .into_iter()
        .chain(GGUF_TYPES.iter().copied())
        .collect();
    for (name, mut llm) in models(&formats) {
        let family = name.split(' ').next().unwrap();
        let cases = reference(family).cases;
        let reads: Vec<(&[u32], &[u32])> = cases
            .iter()
            .map(|c| (c.prompt_ids.as_slice(), c.output_ids.as_slice()))
            .collect();
        let alone: Vec<Vec<Vec<f32>>> = reads
            .iter()
            .map(|(p, f)| llm.logits_along(p, f).unwrap())
            .collect();
        let mut reversed = reads.clone();
        reversed.reverse();
        for (order, reads) in [("in order", reads.clone()), ("reversed", reversed)] {
            let together = llm.logits_along_all(&reads).unwrap();
            for (read, steps) in reads.iter().zip(&together) {
                let i = cases.iter().position(|c| c.prompt_ids == read.0).unwrap();
                assert_eq!(steps.len(), alone[i].len());
                for (s, (a, b)) in steps.iter().zip(&alone[i]).enumerate() {
                    assert!(same_bits(a, b), "{name}, {order}, case {i}, step {s}");
                }
            }
        }
        // More than one sequence did share the steps.
        assert!(
            reads.iter().filter(|r| r.1.len() > 1).count() >= 2,
            "{name}"
        );
    }
}

/// The reference prompts, with caps and order drawn at random and decoded
/// at random widths, get the ids and first logits they get one at a time:
/// f32, a block format and the k-quants.
#[test]
fn calls_in_random_arrival_orders_and_widths_get_their_lone_answers() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    for (name, mut llm) in models(&["safetensors", "q8_0", "q4_k_m"]) {
        let family = name.split(' ').next().unwrap();
        let cases = reference(family).cases;
        let eos = llm.eos().to_vec();
        for round in 0..2 {
            let mut picks: Vec<usize> = (0..cases.len() * 2).map(|i| i % cases.len()).collect();
            picks.shuffle(&mut rng);
            picks.truncate(rng.random_range(2..=picks.len()));
            let params: Vec<GenParams> = picks
                .iter()
                .map(|_| GenParams {
                    max_new_tokens: rng.random_range(1..24),
                    eos: eos.clone(),
                    sampling: None,
                    repeat_guard: true,
                    no_repeat_ngram: None,
                    beam: None,
                })
                .collect();
            let calls: Vec<Call> = picks
                .iter()
                .zip(&params)
                .map(|(&i, params)| Call {
                    prompt: Prompt::plain(&cases[i].prompt_ids),
                    params,
                })
                .collect();
            let alone = llm.generate_all(&calls, 1).unwrap();
            let width = rng.random_range(2..=8);
            let together = llm.generate_all(&calls, width).unwrap();
            for (k, ((a, la), (b, lb))) in alone.iter().zip(&together).enumerate() {
                let at = format!("{name}, round {round}, width {width}, call {k}");
                assert_eq!(a.ids, b.ids, "{at}");
                assert_eq!((a.stop, la), (b.stop, lb), "{at}");
                assert!(same_bits(&a.first_logits, &b.first_logits), "{at}");
            }
        }
    }
}

/// An article long enough for many summary parts and translation chunks.
pub(crate) fn long_article() -> String {
    (0..30)
        .map(|i| {
            format!(
                "Paragraph {i}: the council met again to discuss the budget, the new library and \
                 the repairs of the old bridge. Residents asked questions about taxes and parking."
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// `glot summarize` (map-reduced) and `glot translate` (chunked) write the
/// same bytes at every `--parallel`, from safetensors and from GGUF.
#[test]
fn summaries_and_translations_are_the_same_at_every_parallel_width() {
    let home = tempfile::tempdir().unwrap();
    let article = home.path().join("long.txt");
    std::fs::write(&article, long_article()).unwrap();
    let article = article.to_str().unwrap();
    let dir = model_dir("qwen3");
    let q8 = crate::util::gguf("qwen3", "q8_0");
    for model in [dir.as_path(), q8.as_path()] {
        let out = |task: &[&str], parallel: &str| {
            let mut cmd = glot(home.path());
            cmd.args(task)
                .args([article, "--model", model.to_str().unwrap()])
                .args(["--max-context", "512", "--parallel", parallel]);
            let out = run(cmd, None);
            assert!(out.status.success(), "{}", stderr(&out));
            stdout(&out)
        };
        for task in [
            &["summarize", "--words", "20"][..],
            &["translate", "--to", "de"],
        ] {
            let one = out(task, "1");
            assert!(!one.trim().is_empty());
            assert_eq!(out(task, "4"), one, "{task:?} at 4, {}", name(model));
        }
    }
}

fn name(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn parallel_takes_one_to_sixty_four() {
    let home = tempfile::tempdir().unwrap();
    for bad in ["0", "65", "x"] {
        let mut cmd = glot(home.path());
        // A file, not stdin: glot stops at the flag before it reads any.
        cmd.args(["summarize", "article.txt", "--parallel", bad]);
        let out = run(cmd, None);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(stderr(&out).contains("--parallel"), "{}", stderr(&out));
    }
}

/// `glot generate --parallel N` decodes N copies of the prompt together:
/// the answer is the one decoded alone, and the accounting counts every
/// copy. It decodes greedily only.
#[test]
fn generate_decodes_copies_of_the_prompt_together() {
    let home = tempfile::tempdir().unwrap();
    let model = crate::util::gguf("qwen2", "q8_0");
    let json = |parallel: &str| {
        let mut cmd = glot(home.path());
        cmd.args(["generate", "--prompt", "The council met again to discuss"])
            .args(["--model", model.to_str().unwrap(), "--max-new-tokens", "12"])
            .args(["--ignore-eos", "--format", "json", "--parallel", parallel]);
        let out = run(cmd, None);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()
    };
    let (one, three) = (json("1"), json("3"));
    assert_eq!(one["output_ids"].as_array().unwrap().len(), 12);
    assert_eq!(three["output_ids"], one["output_ids"]);
    assert_eq!(three["timings"]["generated_tokens"], 36);
    assert_eq!(
        three["timings"]["prompt_tokens"].as_u64().unwrap(),
        3 * one["prompt_ids"].as_array().unwrap().len() as u64
    );
    let mut sampled = glot(home.path());
    sampled
        .args([
            "generate",
            "--prompt",
            "x",
            "--model",
            model.to_str().unwrap(),
        ])
        .args(["--temperature", "0.7", "--parallel", "2"]);
    let out = run(sampled, None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--parallel"), "{}", stderr(&out));
}
