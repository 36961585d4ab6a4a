//! `glot translate` with translation models through the real binary: local
//! Marian and T5 folders, `--model opus-mt` choosing pairs from the
//! registry on a local hub (conversion-PR revisions, routes through
//! English), `--quantize`, and the errors around them.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::hubserver::{Hub, Repo};
use crate::util::{fixtures, glot, model_dir, run, stderr, stdout};

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "stderr: {}", stderr(o));
    stdout(o)
}

fn fails_with(o: &std::process::Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Download progress may come first; the error is one line, the last.
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(last.contains(needle), "expected `{needle}` in: {err}");
}

fn json(o: &std::process::Output) -> Value {
    serde_json::from_str(&ok(o)).unwrap()
}

const ARTICLE: &str = "# The tram\n\nThe new tram line opened on Monday. It runs every ten minutes, even at night.\n\n```\nkeep = true\n```\n\n- First stop\n- Second stop\n";

fn article(dir: &Path) -> String {
    let p = dir.join("article.md");
    std::fs::write(&p, ARTICLE).unwrap();
    p.to_str().unwrap().to_string()
}

fn translate(home: &Path, args: &[&str]) -> std::process::Output {
    let mut c = glot(home);
    c.arg("translate").args(args);
    run(c, None)
}

/// The JSON report of translating `doc` into `to` with `model` and `extra` flags.
fn report(home: &Path, doc: &str, to: &str, model: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        doc,
        "--to",
        to,
        "--model",
        model.to_str().unwrap(),
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    json(&translate(home, &args))
}

#[test]
fn a_marian_folder_translates_sentences_and_keeps_the_structure() {
    let home = tempfile::tempdir().unwrap();
    let doc = article(home.path());
    let model = model_dir("marian");
    let r = report(home.path(), &doc, "de", &model, &[]);
    assert_eq!(r["model"]["architecture"], "marian");
    let text = r["text"].as_str().unwrap();
    assert!(text.starts_with("# "), "{text}");
    assert!(text.contains("\n```\nkeep = true\n```\n"), "{text}");
    assert_eq!(text.matches("\n- ").count(), 2, "{text}");
    assert_ne!(text, ARTICLE);
    // Four units, five sentences, one batch of them.
    assert_eq!(r["paragraphs"], 4);
    assert_eq!(r["usage"]["calls"], 1);
    // A smaller batch size takes more calls and gives the same text.
    let small = report(home.path(), &doc, "de", &model, &["--batch-size", "2"]);
    assert_eq!(small["usage"]["calls"], 3);
    assert_eq!(small["text"], r["text"]);
}

#[test]
fn q8_0_quantization_is_reported() {
    let home = tempfile::tempdir().unwrap();
    let doc = article(home.path());
    let r = report(
        home.path(),
        &doc,
        "de",
        &model_dir("marian"),
        &["--quantize", "q8_0"],
    );
    assert!(
        r["model"]["format"].as_str().unwrap().contains("Q8_0"),
        "{r}"
    );
}

#[test]
fn a_t5_folder_is_told_the_target_with_its_language_tag() {
    let home = tempfile::tempdir().unwrap();
    let doc = article(home.path());
    let model = model_dir("t5");
    let yo = report(home.path(), &doc, "yo", &model, &[]);
    let fr = report(home.path(), &doc, "fr", &model, &[]);
    assert_eq!(yo["model"]["architecture"], "t5");
    assert_ne!(yo["text"], fr["text"], "the tag changes the output");
    let o = translate(
        home.path(),
        &[&doc, "--to", "pl", "--model", model.to_str().unwrap()],
    );
    fails_with(&o, "has no <2pl> token");
}

/// `--beam 4` translates as transformers' `num_beams=4` does: a sentence
/// the fixture answers greedily with nothing gets the reference beam
/// translation, and the record says how it was decoded.
#[test]
fn beam_search_translates_as_transformers_num_beams() {
    let home = tempfile::tempdir().unwrap();
    let model = model_dir("marian");
    let beams: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("beams.json")).unwrap()).unwrap();
    let case = beams["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["num_beams"] == 4
                && c["length_penalty"] == 1.0
                && c["early_stopping"] == false
                && c["batched"] == false
        })
        .unwrap();
    let want: Vec<u32> = case["outputs"][0]["output_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let files = glot::hub::seq2seq_files::Seq2SeqFiles::in_dir("marian", &model)
        .unwrap()
        .unwrap();
    let vocab = glot::engine::seq2seq::Seq2Seq::load(&files, None, crate::util::device()).unwrap();
    let want = vocab.vocab().decode(&want).unwrap();
    assert!(!want.trim().is_empty());

    let doc = home.path().join("one.txt");
    std::fs::write(&doc, format!("{}\n", case["texts"][0].as_str().unwrap())).unwrap();
    let doc = doc.to_str().unwrap();
    let greedy = report(home.path(), doc, "de", &model, &[]);
    let beam = report(home.path(), doc, "de", &model, &["--beam", "4"]);
    assert_eq!(beam["text"].as_str().unwrap().trim(), want.trim());
    assert_ne!(beam["text"], greedy["text"]);
    let decoding = &beam["reproduce"]["decoding"];
    assert_eq!(decoding["method"], "beam", "{decoding}");
    assert_eq!(decoding["beams"], 4, "{decoding}");
    // A length penalty is a setting of the search: it needs --beam.
    let o = translate(
        home.path(),
        &[
            doc,
            "--to",
            "de",
            "--model",
            model.to_str().unwrap(),
            "--length-penalty",
            "2",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--beam"), "{}", stderr(&o));
}

/// `--plan` with a translation model reads its vocabulary, not its
/// weights, and lists the sentences the run then sends: as many source ids
/// in as many batches.
#[test]
fn a_translation_plan_needs_no_weights_and_matches_the_run() {
    let home = tempfile::tempdir().unwrap();
    let long = format!(
        "{ARTICLE}\nOne sentence that goes on {}.\n",
        "and on ".repeat(300)
    );
    let doc = home.path().join("long.md");
    std::fs::write(&doc, long).unwrap();
    let doc = doc.to_str().unwrap();
    for family in ["marian", "t5"] {
        let broken = crate::util::broken_copy(home.path(), family);
        let plan = report(
            home.path(),
            doc,
            "de",
            &broken,
            &["--plan", "--batch-size", "2"],
        );
        let calls = plan["calls"].as_array().unwrap();
        assert!(
            calls.iter().any(|c| c["partial"] == true),
            "{family}: {plan}"
        );
        assert!(
            calls
                .iter()
                .all(|c| c["prompt_tokens"].as_u64() <= plan["context"].as_u64()),
            "{family}: {plan}"
        );
        let run = report(
            home.path(),
            doc,
            "de",
            &model_dir(family),
            &["--batch-size", "2"],
        );
        let ids: u64 = calls
            .iter()
            .map(|c| c["prompt_tokens"].as_u64().unwrap())
            .sum();
        assert_eq!(
            run["usage"]["prompt_tokens"].as_u64().unwrap(),
            ids,
            "{family}"
        );
        assert_eq!(run["usage"]["calls"], plan["batches"], "{family}");
        // Without --plan the broken weights are found at once.
        let o = translate(
            home.path(),
            &[doc, "--to", "de", "--model", broken.to_str().unwrap()],
        );
        assert_eq!(o.status.code(), Some(1), "{family}: {}", stderr(&o));
    }
}

#[test]
fn translation_models_do_not_summarize() {
    let home = tempfile::tempdir().unwrap();
    let doc = article(home.path());
    let mut c = glot(home.path());
    c.args([
        "summarize",
        &doc,
        "--model",
        model_dir("marian").to_str().unwrap(),
    ]);
    fails_with(&run(c, None), "is a translation model (Marian)");
}

/// The Marian fixture published under the registry's names: en→de only on
/// its conversion-PR revision, fi→en on main.
fn opus_hub() -> Hub {
    let files: HashMap<String, Vec<u8>> = [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "source.spm",
        "target.spm",
        "vocab.json",
        "tokenizer_config.json",
    ]
    .iter()
    .map(|f| {
        (
            f.to_string(),
            std::fs::read(model_dir("marian").join(f)).unwrap(),
        )
    })
    .collect();
    let mut main_without_weights = files.clone();
    main_without_weights.remove("model.safetensors");
    Hub::start(HashMap::from([
        (
            "Helsinki-NLP/opus-mt-en-de".to_string(),
            Repo {
                files: files.clone(),
                revision: Some("refs/pr/4".into()),
                ..Repo::default()
            },
        ),
        (
            "Helsinki-NLP/opus-mt-fi-en".to_string(),
            Repo {
                files,
                ..Repo::default()
            },
        ),
        (
            "Helsinki-NLP/opus-mt-en-sv".to_string(),
            Repo {
                files: main_without_weights,
                ..Repo::default()
            },
        ),
    ]))
}

fn online(home: &Path, hub: &Hub, args: &[&str]) -> std::process::Output {
    let mut c = glot(home);
    c.env("HF_ENDPOINT", &hub.url)
        .env_remove("HF_HUB_OFFLINE")
        .env("GLOT_HUB_TIMEOUT", "3")
        .args(args);
    run(c, None)
}

/// A catalog model that lists some of the files of an opus-mt pair keeps
/// them on `glot models remove` while the pair was downloaded too (the
/// cache holds files of the pair the catalog model does not list):
/// `--model opus-mt` still translates offline afterwards.
#[test]
fn remove_keeps_the_files_of_a_cached_opus_mt_pair() {
    let home = tempfile::tempdir().unwrap();
    let hub = opus_hub();
    let models = home.path().join(".config/glot/models");
    std::fs::create_dir_all(&models).unwrap();
    // A catalog model of the en-de pair's repository, listing `files`.
    let manifest = |id: &str, files: &[&str]| {
        let files: Vec<String> = files.iter().map(|f| format!("{f:?}")).collect();
        let text = format!(
            r#"
id = "{id}"
name = "opus-mt en-de, by a catalog name"
family = "marian"
architecture = "marian"
context_length = 512
size_bytes = 1000000
license = "cc-by-4.0"
tasks = ["translate"]
languages = ["en", "de"]

[weights]
repo = "Helsinki-NLP/opus-mt-en-de"
revision = "refs/pr/4"
files = [{}]
"#,
            files.join(", ")
        );
        std::fs::write(models.join(format!("{id}.toml")), text).unwrap();
    };
    let shared = [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "source.spm",
    ];
    manifest("en-de", &shared);
    ok(&online(home.path(), &hub, &["models", "download", "en-de"]));
    ok(&online(
        home.path(),
        &hub,
        &["models", "download", "opus-mt:en-de"],
    ));
    let removed = ok(&online(home.path(), &hub, &["models", "remove", "en-de"]));
    assert!(
        removed.starts_with("en-de: freed 0 B") && removed.contains("4 file(s) kept"),
        "{removed}"
    );
    let doc = article(home.path());
    ok(&online(
        home.path(),
        &hub,
        &[
            "translate",
            &doc,
            "--offline",
            "--from",
            "en",
            "--to",
            "de",
            "--model",
            "opus-mt",
        ],
    ));
    // A catalog model with every file the pair uses is the pair under
    // another name: removing it frees them.
    std::fs::remove_file(models.join("en-de.toml")).unwrap();
    manifest("en-de-all", &[&shared[..], &["vocab.json"]].concat());
    let removed = ok(&online(
        home.path(),
        &hub,
        &["models", "remove", "en-de-all"],
    ));
    assert!(
        removed.starts_with("en-de-all: freed ") && !removed.contains("kept"),
        "{removed}"
    );
    assert!(!removed.starts_with("en-de-all: freed 0 B"), "{removed}");
}

#[test]
fn opus_mt_picks_the_pair_and_goes_through_english_when_it_must() {
    let home = tempfile::tempdir().unwrap();
    let hub = opus_hub();
    let doc = article(home.path());
    let direct = online(
        home.path(),
        &hub,
        &[
            "translate",
            &doc,
            "--from",
            "en",
            "--to",
            "de",
            "--model",
            "opus-mt",
            "--format",
            "json",
        ],
    );
    let direct = json(&direct);
    assert_eq!(direct["model"]["id"], "Helsinki-NLP/opus-mt-en-de");
    assert!(
        hub.log()
            .iter()
            .any(|l| l
                .contains("/Helsinki-NLP/opus-mt-en-de/resolve/refs%2Fpr%2F4/model.safetensors"))
    );

    let o = online(
        home.path(),
        &hub,
        &[
            "translate",
            &doc,
            "--from",
            "fi",
            "--to",
            "de",
            "--model",
            "opus-mt",
            "--format",
            "json",
            "-v",
        ],
    );
    assert!(
        stderr(&o).contains("going through English"),
        "{}",
        stderr(&o)
    );
    let pivot = json(&o);
    assert_eq!(
        pivot["model"]["id"],
        "Helsinki-NLP/opus-mt-fi-en → Helsinki-NLP/opus-mt-en-de"
    );
    // Every sentence went through both models: twice the calls, another text.
    assert_eq!(pivot["usage"]["calls"], 2);
    assert_ne!(pivot["text"], direct["text"]);
    assert!(pivot["text"]
        .as_str()
        .unwrap()
        .contains("```\nkeep = true\n```"));

    // Now both are cached: offline works, and `models download` names pairs.
    let mut c = glot(home.path());
    c.args([
        "translate",
        &doc,
        "--from",
        "fi",
        "--to",
        "de",
        "--model",
        "opus-mt",
    ]);
    ok(&run(c, None));
    let o = online(home.path(), &hub, &["models", "download", "opus-mt:fi-de"]);
    let out = ok(&o);
    assert!(
        out.contains("opus-mt-fi-en") && out.contains("opus-mt-en-de"),
        "{out}"
    );
}

#[test]
fn opus_mt_errors_say_what_exists_and_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    let hub = opus_hub();
    let doc = article(home.path());
    let o = online(
        home.path(),
        &hub,
        &[
            "translate",
            &doc,
            "--from",
            "fi",
            "--to",
            "ko",
            "--model",
            "opus-mt",
        ],
    );
    fails_with(&o, "no opus-mt model translates fi into ko");
    let o = online(
        home.path(),
        &hub,
        &[
            "translate",
            &doc,
            "--from",
            "en",
            "--to",
            "sv",
            "--model",
            "opus-mt",
        ],
    );
    fails_with(&o, "@refs/pr/N");
    let o = translate(
        home.path(),
        &[&doc, "--from", "fi", "--to", "de", "--model", "opus-mt"],
    );
    fails_with(&o, "glot models download opus-mt:fi-en");
    let plain = fixtures().join("documents/notes.txt");
    let o = translate(
        home.path(),
        &[
            plain.to_str().unwrap(),
            "--to",
            "de",
            "--model",
            "opus-mt",
            "--from",
            "auto",
        ],
    );
    // The notes are English: detection gives the pair to fetch.
    fails_with(&o, "glot models download opus-mt:en-de");
}

#[test]
fn the_pair_registry_lists_pairs_by_language() {
    let home = tempfile::tempdir().unwrap();
    let mut c = glot(home.path());
    c.args(["models", "pairs", "Finnish"]);
    let out = ok(&run(c, None));
    assert!(out.contains("Helsinki-NLP/opus-mt-fi-en"), "{out}");
    assert!(out.contains("fi → en"), "{out}");
    let mut c = glot(home.path());
    c.args(["models", "pairs", "--format", "json"]);
    let all: Value = serde_json::from_str(&ok(&run(c, None))).unwrap();
    assert!(all.as_array().unwrap().len() >= 20);
}

const FINNISH: &str = "Uusi raitiotielinja avattiin maanantaina kaupungin keskustassa. Vaunut kulkevat kymmenen minuutin välein myös yöllä, ja matka asemalta torille kestää vain kahdeksan minuuttia.\n";

#[test]
fn batch_picks_a_pair_per_document_and_resumes_without_loading() {
    let home = tempfile::tempdir().unwrap();
    let hub = opus_hub();
    let input = home.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("tram.md"), ARTICLE).unwrap();
    std::fs::write(input.join("raitiotie.txt"), FINNISH).unwrap();
    let out = home.path().join("out");
    let args = [
        "batch",
        input.to_str().unwrap(),
        "--translate",
        "de",
        "--model",
        "opus-mt",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = online(home.path(), &hub, &args);
    ok(&o);
    let records: Vec<Value> = std::fs::read_to_string(out.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let model_of = |input: &str| {
        records
            .iter()
            .find(|r| r["input"] == input)
            .map(|r| (r["status"].clone(), r["model"].clone()))
            .unwrap()
    };
    assert_eq!(
        model_of("tram.md"),
        (
            Value::from("done"),
            Value::from("Helsinki-NLP/opus-mt-en-de")
        )
    );
    assert_eq!(
        model_of("raitiotie.txt"),
        (
            Value::from("done"),
            Value::from("Helsinki-NLP/opus-mt-fi-en → Helsinki-NLP/opus-mt-en-de")
        )
    );
    let md = std::fs::read_to_string(out.join("tram.de.md")).unwrap();
    assert!(md.contains("```\nkeep = true\n```"), "{md}");
    // The plan picks the same models, from their vocabularies, and counts
    // the source ids the run gave the first model of each document.
    let mut planned = args.to_vec();
    planned.extend(["--plan", "--format", "json"]);
    let plan: Value = serde_json::from_str(&ok(&online(home.path(), &hub, &planned))).unwrap();
    assert_eq!(plan["sentences"], true, "{plan}");
    for item in plan["items"].as_array().unwrap() {
        let record = records
            .iter()
            .find(|r| r["input"] == item["input"])
            .unwrap();
        let ids = item["prompt_tokens"].as_u64().unwrap();
        assert!(ids > 0, "{item}");
        if item["input"] == "tram.md" {
            assert_eq!(
                record["tokens"]["prompt"].as_u64().unwrap(),
                ids,
                "{record}"
            );
        } else {
            // Through English, the run also counts what the second model is given.
            assert!(
                record["tokens"]["prompt"].as_u64().unwrap() > ids,
                "{record}"
            );
        }
    }
    // A rerun offline has nothing to do and loads nothing.
    let mut c = glot(home.path());
    c.args(args);
    let o = run(c, None);
    ok(&o);
    assert!(!stderr(&o).contains("loading model"), "{}", stderr(&o));
    // Summaries need a chat model.
    let mut c = glot(home.path());
    c.args([
        "batch",
        input.to_str().unwrap(),
        "--summarize",
        "--model",
        "opus-mt",
        "--out",
        out.to_str().unwrap(),
    ]);
    fails_with(&run(c, None), "opus-mt is a translation model (Marian)");
}

#[test]
fn a_t5_gguf_file_runs_with_the_files_beside_it() {
    let home = tempfile::tempdir().unwrap();
    let doc = article(home.path());
    let dir = home.path().join("madlad");
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(model_dir("t5").join(f), dir.join(f)).unwrap();
    }
    let gguf = dir.join("model-q8_0.gguf");
    std::fs::copy(model_dir("t5").join("gguf/t5-q8_0.gguf"), &gguf).unwrap();
    let r = report(home.path(), &doc, "de", &gguf, &[]);
    assert_eq!(r["model"]["architecture"], "t5");
    assert_eq!(r["model"]["format"], "gguf");
    // The folder alone finds its one GGUF file.
    let r = report(home.path(), &doc, "de", &dir, &[]);
    assert_eq!(r["model"]["format"], "gguf");
}

#[test]
fn an_instruction_following_t5_model_summarizes_long_articles_in_pieces() {
    let home = tempfile::tempdir().unwrap();
    let corpus =
        std::fs::read_to_string(fixtures().join("corpus/en-kim-russia-visit.txt")).unwrap();
    let long = home.path().join("long.txt");
    std::fs::write(&long, [corpus.as_str(); 4].join("\n\n")).unwrap();
    let mut c = glot(home.path());
    c.args([
        "summarize",
        long.to_str().unwrap(),
        "--model",
        model_dir("t5").to_str().unwrap(),
        "--length",
        "short",
        "--format",
        "json",
    ]);
    let r = json(&run(c, None));
    assert_eq!(r["model"]["architecture"], "t5");
    assert!(r["chunks"].as_u64().unwrap() > 1, "{r}");
    assert!(r["usage"]["calls"].as_u64().unwrap() > r["chunks"].as_u64().unwrap());
    // MADLAD only translates: its manifest says so.
    let mut c = glot(home.path());
    c.args([
        "summarize",
        long.to_str().unwrap(),
        "--model",
        "madlad400-3b",
    ]);
    fails_with(&run(c, None), "is a translation model (T5)");
    // So does TranslateGemma's, refused before anything is fetched.
    let mut c = glot(home.path());
    c.args([
        "summarize",
        long.to_str().unwrap(),
        "--model",
        "translategemma-4b",
    ]);
    fails_with(
        &run(c, None),
        "translategemma-4b is a translation model: it can only translate",
    );
}

/// The T5 fixture published as MADLAD-400 is: the built-in manifest's
/// repository, and a GGUF file beside the safetensors.
fn madlad_hub() -> Hub {
    let mut files: HashMap<String, Vec<u8>> = [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "spiece.model",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    .iter()
    .map(|f| {
        (
            f.to_string(),
            std::fs::read(model_dir("t5").join(f)).unwrap(),
        )
    })
    .collect();
    files.insert(
        "model-q8_0.gguf".into(),
        std::fs::read(model_dir("t5").join("gguf/t5-q8_0.gguf")).unwrap(),
    );
    Hub::start(HashMap::from([(
        "google/madlad400-3b-mt".to_string(),
        Repo {
            files,
            ..Repo::default()
        },
    )]))
}

#[test]
fn madlad_loads_by_manifest_by_repository_and_as_a_gguf_file() {
    let home = tempfile::tempdir().unwrap();
    let hub = madlad_hub();
    let doc = article(home.path());
    let into_yoruba = |model: &str| {
        json(&online(
            home.path(),
            &hub,
            &[
                "translate",
                &doc,
                "--to",
                "yo",
                "--model",
                model,
                "--format",
                "json",
            ],
        ))
    };
    let by_manifest = into_yoruba("madlad400-3b");
    let by_repo = into_yoruba("hf:google/madlad400-3b-mt");
    assert_eq!(by_manifest["model"]["architecture"], "t5");
    assert_eq!(by_manifest["text"], by_repo["text"]);
    let gguf = into_yoruba("hf:google/madlad400-3b-mt:model-q8_0.gguf");
    assert_eq!(gguf["model"]["format"], "gguf");
}

#[test]
fn stats_report_calls_rates_and_peak_memory() {
    let home = tempfile::tempdir().unwrap();
    let doc = article(home.path());
    let model = model_dir("marian");
    let o = translate(
        home.path(),
        &[
            &doc,
            "--to",
            "de",
            "--model",
            model.to_str().unwrap(),
            "--stats",
            "--format",
            "json",
        ],
    );
    let err = stderr(&o);
    assert!(err.contains("sentence(s) in 1 batch(es)"), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("glot: stats: cpu: load"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("tok/s decode") && line.contains("peak memory"),
        "{line}"
    );
    let t = &json(&o)["timings"];
    assert_eq!(t["device"], "cpu", "{t}");
    assert!(t["generated_tokens"].as_u64().unwrap() > 0, "{t}");
    assert!(t["decode_tokens_per_sec"].as_f64().unwrap() > 0.0, "{t}");
    assert!(t["peak_rss_bytes"].as_u64().unwrap() > 1 << 20, "{t}");
    // Without --stats, nothing of it on stderr.
    let o = translate(
        home.path(),
        &[&doc, "--to", "de", "--model", model.to_str().unwrap()],
    );
    assert!(!stderr(&o).contains("stats:"), "{}", stderr(&o));
}
