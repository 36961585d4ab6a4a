//! The `glot` binary end to end on the tiny fixture models.

use std::path::Path;

use serde::Deserialize;

use crate::util::{gguf, glot, model_dir, reference, run, stderr, stdout};

const ARTICLE: &str = "The city opened its new tram line on Monday. Thousands of people rode it on the first day.\n\n\
The line is twelve kilometres long and has twenty stops. It cost 410 million euros.\n\n\
Critics say the money should have gone to buses. The mayor disagrees.\n";

/// An article long enough to need many chunks at a small context.
fn long_article() -> String {
    (0..40)
        .map(|i| {
            format!(
                "Paragraph {i}: the council met again to discuss the budget, the new library and the \
                 repairs of the old bridge. Residents asked questions about taxes and parking."
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn model() -> String {
    model_dir("qwen3").to_str().unwrap().to_string()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p.to_str().unwrap().to_string()
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct ModelJson {
    id: String,
    architecture: String,
    format: String,
    context_length: usize,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct UsageJson {
    calls: usize,
    prompt_tokens: usize,
    generated_tokens: usize,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct TimingsJson {
    load_secs: f64,
    prefill_secs: f64,
    decode_secs: f64,
    total_secs: f64,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct SummaryJson {
    task: String,
    input: String,
    text: String,
    model: ModelJson,
    source_language: Option<serde_json::Value>,
    language: Option<serde_json::Value>,
    words: usize,
    max_tokens: usize,
    chunks: usize,
    rounds: usize,
    summary_tokens: usize,
    usage: UsageJson,
    timings: TimingsJson,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct TranslationJson {
    task: String,
    source_language: Option<serde_json::Value>,
    text: String,
    model: ModelJson,
    target_language: serde_json::Value,
    chunks: usize,
    paragraphs: usize,
    usage: UsageJson,
    timings: TimingsJson,
}

#[derive(Deserialize)]
struct GenerateJson {
    prompt_ids: Vec<u32>,
    output_ids: Vec<u32>,
    text: String,
}

fn paragraphs(text: &str) -> usize {
    glot::text::segment::paragraphs(text).len()
}

#[test]
fn summarize_writes_a_summary_to_stdout() {
    let home = tempfile::tempdir().unwrap();
    let article = write(home.path(), "a.txt", ARTICLE.as_bytes());
    let mut cmd = glot(home.path());
    cmd.args([
        "summarize",
        &article,
        "--model",
        &model(),
        "--length",
        "short",
    ]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).trim().is_empty());
    // The random-weight model writes until its cap: the one thing said.
    assert_eq!(
        stderr(&out),
        "glot: warning: the summary did not end on its own (length cap or a loop): it was cut back to its last full sentence\n"
    );
}

#[test]
fn long_input_is_map_reduced_within_the_requested_length() {
    let home = tempfile::tempdir().unwrap();
    let article = write(home.path(), "long.txt", long_article().as_bytes());
    let mut cmd = glot(home.path());
    cmd.args([
        "summarize",
        &article,
        "--model",
        &model(),
        "--max-context",
        "512",
        "--words",
        "20",
        "--format",
        "json",
        "--lang",
        "fr",
    ]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: SummaryJson = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(s.task, "summarize");
    assert!(s.chunks > 4, "chunks: {}", s.chunks);
    assert!(s.rounds >= 2, "rounds: {}", s.rounds);
    assert_eq!(s.max_tokens, 56);
    assert!(
        s.summary_tokens <= s.max_tokens,
        "{} tokens",
        s.summary_tokens
    );
    assert_eq!(s.model.context_length, 512);
    assert_eq!(s.language.unwrap()["code"], "fr");
    let source = s.source_language.unwrap();
    assert_eq!(
        (source["code"].as_str(), source["reliable"].as_bool()),
        (Some("en"), Some(true))
    );
    assert!(s.usage.calls > s.chunks);
}

#[test]
fn translate_keeps_every_paragraph() {
    let home = tempfile::tempdir().unwrap();
    let article = write(home.path(), "a.txt", ARTICLE.as_bytes());
    let mut cmd = glot(home.path());
    cmd.args(["translate", &article, "--to", "de", "--model", &model()]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(paragraphs(&stdout(&out)), 3, "{}", stdout(&out));
}

#[test]
fn translate_reads_stdin_and_splits_long_paragraphs() {
    let home = tempfile::tempdir().unwrap();
    let text = long_article();
    let mut cmd = glot(home.path());
    cmd.args([
        "translate",
        "-",
        "--to",
        "Spanish",
        "--model",
        &model(),
        "--max-context",
        "600",
        "--format",
        "json",
    ]);
    let out = run(cmd, Some(&text));
    assert!(out.status.success(), "{}", stderr(&out));
    let t: TranslationJson = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(t.paragraphs, 40);
    assert_eq!(paragraphs(&t.text), 40);
    assert!(t.chunks > 1);
    assert_eq!(t.target_language["name"], "Spanish");
    assert_eq!(t.source_language.unwrap()["name"], "English");
}

#[test]
fn output_file_is_written_and_stdout_stays_empty() {
    let home = tempfile::tempdir().unwrap();
    let article = write(home.path(), "a.txt", ARTICLE.as_bytes());
    let target = home.path().join("a.ja.txt");
    let mut cmd = glot(home.path());
    cmd.args([
        "translate",
        &article,
        "--to",
        "ja",
        "--model",
        &model(),
        "-o",
    ])
    .arg(&target);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    let written = std::fs::read_to_string(&target).unwrap();
    assert_eq!(paragraphs(&written), 3);
    let names: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

/// `glot generate --beam 2` gives the ids transformers' `num_beams=2` gives
/// (a case where they differ from greedy), and a summary can be asked for
/// with beams too.
#[test]
fn generate_with_beams_equals_the_reference() {
    let home = tempfile::tempdir().unwrap();
    let beams: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model_dir("qwen2").join("beams.json")).unwrap(),
    )
    .unwrap();
    let case = beams["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "raw-short" && c["num_beams"] == 2)
        .unwrap();
    assert_ne!(case["output_ids"], case["greedy_ids"]);
    let r = reference("qwen2");
    let prompt = r.cases.iter().find(|c| c.name == "raw-short").unwrap();
    let file = write(
        home.path(),
        "p.txt",
        prompt.prompt.as_ref().unwrap().as_bytes(),
    );
    let mut cmd = glot(home.path());
    cmd.args([
        "generate",
        "--prompt-file",
        &file,
        "--format",
        "json",
        "--beam",
        "2",
    ])
    .arg("--model")
    .arg(model_dir("qwen2"))
    .args(["--max-new-tokens", &case["max_new_tokens"].to_string()]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let g: GenerateJson = serde_json::from_str(&stdout(&out)).unwrap();
    let want: Vec<u32> = serde_json::from_value(case["output_ids"].clone()).unwrap();
    assert_eq!(g.output_ids, want);

    let doc = write(home.path(), "a.txt", ARTICLE.as_bytes());
    let mut cmd = glot(home.path());
    cmd.args([
        "summarize",
        &doc,
        "--model",
        &model(),
        "--beam",
        "3",
        "--format",
        "json",
    ]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(j["reproduce"]["decoding"]["method"], "beam");
    assert_eq!(j["reproduce"]["decoding"]["beams"], 3);
}

#[test]
fn generate_json_ids_equal_the_reference() {
    for (family, source) in [("qwen3", "dir"), ("llama", "q8_0"), ("qwen2", "f32")] {
        let r = reference(family);
        let home = tempfile::tempdir().unwrap();
        for case in r.cases.iter().filter(|c| c.name != "long") {
            let prompt = match &case.messages {
                Some(m) if case.chat => {
                    // The CLI's --chat sends one user message.
                    if m.len() != 1 {
                        continue;
                    }
                    m[0].content.clone()
                }
                _ => case.prompt.clone().unwrap(),
            };
            let file = write(home.path(), "p.txt", prompt.as_bytes());
            let model = if source == "dir" {
                model_dir(family)
            } else {
                gguf(family, source)
            };
            let mut cmd = glot(home.path());
            cmd.args(["generate", "--prompt-file", &file, "--format", "json"])
                .arg("--model")
                .arg(&model)
                .arg("--tokenizer")
                .arg(model_dir(family))
                .args(["--max-new-tokens", &case.max_new_tokens.to_string()]);
            if case.chat {
                cmd.arg("--chat");
            }
            let out = run(cmd, None);
            assert!(out.status.success(), "{}", stderr(&out));
            let g: GenerateJson = serde_json::from_str(&stdout(&out)).unwrap();
            assert_eq!(g.prompt_ids, case.prompt_ids, "{family} {}", case.name);
            if source != "q8_0" {
                assert_eq!(g.output_ids, case.output_ids, "{family} {}", case.name);
            }
            assert!(!g.text.contains("<think>"));
        }
    }
}

#[test]
fn ignore_eos_generates_exactly_the_tokens_asked_for() {
    let r = reference("qwen3");
    let case = r.cases.iter().find(|c| c.name == "raw-short").unwrap();
    // The reference answer ends on its own, with an end-of-text token.
    assert!(case.output_ids.len() < 10);
    let home = tempfile::tempdir().unwrap();
    let file = write(
        home.path(),
        "p.txt",
        case.prompt.as_ref().unwrap().as_bytes(),
    );
    let mut cmd = glot(home.path());
    cmd.args(["generate", "--prompt-file", &file, "--format", "json"])
        .arg("--model")
        .arg(model_dir("qwen3"))
        .args(["--max-new-tokens", "10", "--ignore-eos"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let g: GenerateJson = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(g.output_ids.len(), 10);
    assert_eq!(g.output_ids[..case.output_ids.len()], case.output_ids[..]);
}

#[test]
fn sampling_with_a_seed_is_reproducible() {
    let home = tempfile::tempdir().unwrap();
    let run_once = |sampling: &[&str]| {
        let mut cmd = glot(home.path());
        cmd.args(["generate", "--prompt", "Hello world", "--model", &model()]);
        cmd.args(["--max-new-tokens", "16", "--format", "json"]);
        cmd.args(sampling);
        let out = run(cmd, None);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str::<GenerateJson>(&stdout(&out))
            .unwrap()
            .output_ids
    };
    let seeded = |seed: &str| run_once(&["--temperature", "0.9", "--seed", seed]);
    assert_eq!(seeded("7"), seeded("7"));
    // It samples: other seeds give other tokens, and not greedy's.
    let greedy = run_once(&[]);
    let others: Vec<Vec<u32>> = ["1", "2", "3"].map(seeded).into();
    assert!(others.iter().any(|o| *o != others[0]), "{others:?}");
    assert!(others.iter().any(|o| *o != greedy), "{others:?}");
}

/// Runs glot expecting a user error: exit 1, one line on stderr naming the
/// problem, nothing on stdout, no panic.
fn expect_error(home: &Path, args: &[&str], stdin: Option<&str>, needle: &str) {
    let mut cmd = glot(home);
    cmd.args(args);
    let out = run(cmd, stdin);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.starts_with("glot: "), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected `{needle}` in {err}"
    );
    assert!(!err.contains("panicked"));
    assert!(stdout(&out).is_empty());
}

#[test]
fn bad_input_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let m = model();
    let empty = write(h, "empty.txt", b"");
    let blank = write(h, "blank.txt", b"  \n\n\t\n");
    let binary = write(h, "bin.txt", b"PK\x03\x04\x00\x00binary");
    let latin1 = write(h, "latin1.txt", b"caf\xe9 cr\xe8me");
    let good = write(h, "good.txt", ARTICLE.as_bytes());
    let dir = h.join("folder");
    std::fs::create_dir(&dir).unwrap();
    let dir = dir.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["summarize", "missing.txt", "--model", &m],
            "missing.txt: no such file",
        ),
        (vec!["summarize", dir, "--model", &m], "is a directory"),
        (vec!["summarize", &empty, "--model", &m], "is empty"),
        (
            vec!["translate", &blank, "--to", "de", "--model", &m],
            "is empty",
        ),
        (vec!["summarize", &binary, "--model", &m], "binary"),
        (vec!["summarize", &latin1, "--model", &m], "not valid UTF-8"),
        (
            vec!["translate", &good, "--to", "Klingonish", "--model", &m],
            "unknown language",
        ),
        (
            vec!["summarize", &good, "--lang", "frnch", "--model", &m],
            "did you mean French",
        ),
        (
            vec!["summarize", &good],
            "run `glot models download qwen3-4b`",
        ),
        (
            vec!["summarize", &good, "--model", "no/such/model"],
            "not found",
        ),
        (
            vec!["summarize", &good, "--model", &m, "--max-context", "64"],
            "--max-context",
        ),
        (
            vec![
                "translate",
                &good,
                "--to",
                "de",
                "--model",
                &m,
                "--max-context",
                "40",
            ],
            "--max-context",
        ),
        (
            vec![
                "summarize",
                &good,
                "--model",
                &m,
                "-o",
                "no/such/dir/out.txt",
            ],
            "does not exist",
        ),
        (
            vec!["summarize", &good, "--model", &m, "-o", &good],
            "is the input",
        ),
    ] {
        expect_error(h, &args, None, needle);
    }
    expect_error(
        h,
        &["summarize", "-", "--model", &m],
        Some("   \n"),
        "stdin: is empty",
    );
    assert_eq!(std::fs::read_to_string(&good).unwrap(), ARTICLE);
}

#[test]
fn bad_model_folders_are_clear_errors() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let article = write(h, "a.txt", ARTICLE.as_bytes());
    let copy = |name: &str, skip: &str| -> String {
        let dst = h.join(name);
        std::fs::create_dir(&dst).unwrap();
        for e in std::fs::read_dir(model_dir("qwen3")).unwrap() {
            let e = e.unwrap();
            if e.path().is_file() && e.file_name() != skip {
                std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
            }
        }
        dst.to_str().unwrap().to_string()
    };
    let no_tok = copy("no-tok", "tokenizer.json");
    let no_weights = copy("no-weights", "model.safetensors");
    let gpt2 = copy("gpt2", "");
    let cfg = std::path::Path::new(&gpt2).join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("\"qwen3\"", "\"gpt2\"")).unwrap();
    let out_file = h.join("out.txt");
    for (model, needle) in [
        (no_tok.as_str(), "missing tokenizer.json"),
        (no_weights.as_str(), "missing *.safetensors"),
        (
            gpt2.as_str(),
            "unsupported model architecture `gpt2` (supported: llama, qwen2, qwen3, gemma3)",
        ),
    ] {
        expect_error(
            h,
            &[
                "summarize",
                &article,
                "--model",
                model,
                "-o",
                out_file.to_str().unwrap(),
            ],
            None,
            needle,
        );
        assert!(!out_file.exists(), "no output file on error");
    }
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = glot(home.path());
    cmd.args(["translate", "a.txt"]);
    let out = run(cmd, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--to"));
    let mut cmd = glot(home.path());
    cmd.arg("--help");
    let out = run(cmd, None);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("summarize"));
}

#[test]
fn verbose_logs_go_to_stderr_and_threads_are_honoured() {
    let home = tempfile::tempdir().unwrap();
    let article = write(home.path(), "a.txt", ARTICLE.as_bytes());
    let mut quiet = glot(home.path());
    quiet.args([
        "summarize",
        &article,
        "--model",
        &model(),
        "--words",
        "10",
        "-q",
    ]);
    let quiet = run(quiet, None);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    assert!(stderr(&quiet).is_empty());
    let mut verbose = glot(home.path());
    verbose.args([
        "summarize",
        &article,
        "--model",
        &model(),
        "--words",
        "10",
        "-v",
        "--threads",
        "1",
    ]);
    let verbose = run(verbose, None);
    assert!(verbose.status.success(), "{}", stderr(&verbose));
    let log = stderr(&verbose);
    assert!(log.contains("glot: loaded"), "{log}");
    assert!(log.lines().all(|l| l.starts_with("glot: ")), "{log}");
    // Greedy decoding: same summary whatever the thread count or verbosity.
    assert_eq!(stdout(&verbose), stdout(&quiet));
    assert!(!stdout(&verbose).contains("glot:"));
}

#[test]
fn languages_lists_codes_names_and_models() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = glot(home.path());
    cmd.args(["languages", "--format", "json"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let de = rows.iter().find(|r| r["code"] == "de").unwrap();
    assert_eq!(
        (de["code3"].as_str(), de["native"].as_str()),
        (Some("deu"), Some("Deutsch"))
    );
    assert!(de["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m == "qwen3-4b"));
    assert!(rows.len() > 50);
}

/// `--format json` records what regenerates the output: glot's version,
/// the model's files by SHA-256, the prompts' digest and the decoding; a
/// second run with the same record and input gives the same output.
#[test]
fn json_output_carries_what_makes_it_again() {
    use sha2::Digest;
    let home = tempfile::tempdir().unwrap();
    let article = write(home.path(), "a.txt", ARTICLE.as_bytes());
    let once = || {
        let mut cmd = glot(home.path());
        cmd.args(["summarize", &article, "--model", &model(), "--words", "8"]);
        cmd.args(["--format", "json"]);
        let out = run(cmd, None);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()
    };
    let (a, b) = (once(), once());
    assert_eq!(a["text"], b["text"]);
    assert_eq!(a["reproduce"], b["reproduce"]);
    let r = &a["reproduce"];
    assert_eq!(r["glot_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["decoding"]["method"], "greedy");
    assert_eq!(r["decoding"]["repeat_guard"], true);
    assert_eq!(r["prompts"].as_str().unwrap().len(), 16);
    // Where it ran: kernel paths and thread counts add in different orders.
    assert_eq!(r["compute"]["device"], "cpu");
    let kernels = ["avx512-vnni", "avx2", "neon-dotprod", "neon", "scalar"];
    assert!(
        kernels.contains(&r["compute"]["kernels"].as_str().unwrap()),
        "{r}"
    );
    assert!(r["compute"]["threads"].as_u64().unwrap() >= 1, "{r}");
    let files = r["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["file"].as_str().unwrap()).collect();
    assert!(names.contains(&"model.safetensors") && names.contains(&"tokenizer.json"));
    for f in files {
        let name = f["file"].as_str().unwrap();
        let bytes = std::fs::read(model_dir("qwen3").join(name)).unwrap();
        let want: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(f["sha256"], want, "{name}");
    }
    // Text output does not pay for hashing, and has no record.
    let mut cmd = glot(home.path());
    cmd.args(["summarize", &article, "--model", &model(), "--words", "8"]);
    assert!(run(cmd, None).status.success());
}

/// A translation that loses a number says so by line, in the warnings and
/// in `--format json` (the fixture model writes noise, so the figures of
/// line 3 never come back).
#[test]
fn translation_problems_are_reported_by_line() {
    let home = tempfile::tempdir().unwrap();
    let article = write(home.path(), "a.txt", ARTICLE.as_bytes());
    let mut cmd = glot(home.path());
    cmd.args(["translate", &article, "--to", "de", "--model", &model()]);
    cmd.args(["--format", "json"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let flags = v["flags"].as_array().unwrap();
    let at3: Vec<&serde_json::Value> = flags.iter().filter(|f| f["line"] == 3).collect();
    assert_eq!(at3.len(), 1, "{flags:?}");
    let kind = at3[0]["kind"].as_str().unwrap();
    assert!(["numbers", "untranslated"].contains(&kind), "{flags:?}");
    for f in flags {
        assert!([1, 3, 5].contains(&f["line"].as_u64().unwrap()), "{f}");
    }
    if kind == "numbers" {
        assert!(at3[0]["detail"].as_str().unwrap().contains("410"));
        assert!(
            stderr(&out).contains("line 3: number(s)"),
            "{}",
            stderr(&out)
        );
    }
}

/// A paragraph whose answer loses the placeholders of its glossary terms
/// and addresses comes back as the source, byte for byte, and is flagged by
/// line. The fixture models answer noise, so every paragraph takes this
/// path; `real.rs` shows the glossary applied by a model that keeps them.
#[test]
fn a_noisy_model_leaves_glossary_paragraphs_in_the_source_flagged_by_line() {
    let home = tempfile::tempdir().unwrap();
    let glossary = write(
        home.path(),
        "terms.tsv",
        b"# term\ttranslation\nKremlin\tKreml\n",
    );
    let source = "The Kremlin spoke today. Mail press@kremlin.ru or see https://example.org/a.\n\n\
                  The Kremlin agreed on Monday.\n";
    let article = write(home.path(), "a.txt", source.as_bytes());
    for family in ["qwen2", "qwen3", "llama"] {
        let mut cmd = glot(home.path());
        cmd.args(["translate", &article, "--to", "de", "--glossary", &glossary]);
        cmd.args([
            "--model",
            model_dir(family).to_str().unwrap(),
            "--format",
            "json",
        ]);
        let out = run(cmd, None);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(v["text"], source, "{family}");
        let flags: Vec<(u64, &str)> = v["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["line"].as_u64().unwrap(), f["kind"].as_str().unwrap()))
            .collect();
        assert_eq!(
            flags,
            [(1, "untranslated"), (3, "untranslated")],
            "{family}"
        );
    }
}

/// `--plan` computes the calls without the weights, and the run then makes
/// exactly those chunks.
#[test]
fn plans_need_no_weights_and_match_the_run() {
    let home = tempfile::tempdir().unwrap();
    let article = write(home.path(), "long.txt", long_article().as_bytes());
    let broken = crate::util::broken_model(home.path());
    let json = |args: &[&str]| -> serde_json::Value {
        let mut cmd = glot(home.path());
        cmd.args(args)
            .args(["--max-context", "512", "--format", "json"]);
        let out = run(cmd, None);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let broken = broken.to_str().unwrap();
    let model = model();
    for task in [
        vec!["translate", &article, "--to", "de"],
        vec!["summarize", &article, "--words", "20"],
    ] {
        let mut planned = task.clone();
        planned.extend(["--model", broken, "--plan"]);
        let plan = json(&planned);
        let calls = plan["calls"].as_array().unwrap();
        assert!(calls.len() > 1, "{plan}");
        for c in calls {
            let used = c["prompt_tokens"].as_u64().unwrap() + c["answer_cap"].as_u64().unwrap();
            assert!(used <= plan["context"].as_u64().unwrap(), "{c}");
        }
        let mut real = task.clone();
        real.extend(["--model", &model]);
        let done = json(&real);
        assert_eq!(
            done["chunks"].as_u64().unwrap() as usize,
            calls.len(),
            "{task:?}"
        );
        // Without --plan the broken weights are found at once.
        let mut cmd = glot(home.path());
        cmd.args(&task).args(["--model", broken]);
        assert_eq!(run(cmd, None).status.code(), Some(1));
    }
}

/// A plan says how long the run would take once the model has run on this
/// machine: every run records its speed, and a damaged record is rewritten
/// rather than failing the run.
#[test]
fn plans_estimate_the_time_from_the_last_run() {
    let home = tempfile::tempdir().unwrap();
    let article = write(home.path(), "long.txt", long_article().as_bytes());
    let model = model();
    let task = [
        "translate",
        &article,
        "--to",
        "de",
        "--model",
        &model,
        "--max-context",
        "512",
    ];
    let plan = |json: bool| {
        let mut cmd = glot(home.path());
        cmd.args(task).arg("--plan");
        if json {
            cmd.args(["--format", "json"]);
        }
        let out = run(cmd, None);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    assert!(plan(false).contains("no estimated time"), "{}", plan(false));
    let record = home.path().join(".cache/glot/speeds.json");
    std::fs::create_dir_all(record.parent().unwrap()).unwrap();
    std::fs::write(&record, "{ not json").unwrap();
    let mut cmd = glot(home.path());
    cmd.args(task);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let speeds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert_eq!(speeds.as_object().unwrap().len(), 1, "{speeds}");

    let text = plan(false);
    assert!(
        text.contains("estimated time on this machine: about "),
        "{text}"
    );
    let j: serde_json::Value = serde_json::from_str(&plan(true)).unwrap();
    let e = &j["estimate"];
    let (likely, most) = (
        e["seconds"].as_f64().unwrap(),
        e["at_most_seconds"].as_f64().unwrap(),
    );
    assert!(likely > 0.0 && most >= likely, "{e}");
    assert!(
        e["speed"]["decode_tokens_per_sec"].as_f64().unwrap() > 0.0,
        "{e}"
    );
}

/// `--cite` names the parts of the article every bullet comes from, and
/// lists the parts' lines under the summary.
#[test]
fn cited_summaries_list_their_parts() {
    let home = tempfile::tempdir().unwrap();
    let article = write(home.path(), "long.txt", long_article().as_bytes());
    let mut cmd = glot(home.path());
    cmd.args(["summarize", &article, "--model", &model(), "--cite"]);
    cmd.args(["--words", "20", "--max-context", "1024", "--format", "json"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let parts = v["citations"]["parts"].as_array().unwrap();
    assert_eq!(parts.len() as u64, v["chunks"].as_u64().unwrap());
    assert!(parts.len() > 1);
    assert_eq!(parts[0][0], 1);
    let bullets = v["citations"]["bullets"].as_array().unwrap();
    let uncited = bullets
        .iter()
        .filter(|b| b["parts"].as_array().unwrap().is_empty());
    assert_eq!(
        uncited.count() as u64,
        v["citations"]["uncited"].as_u64().unwrap()
    );
    let mut cmd = glot(home.path());
    cmd.args(["summarize", &article, "--model", &model(), "--cite"]);
    cmd.args(["--words", "20", "--max-context", "1024"]);
    let out = run(cmd, None);
    let text = stdout(&out);
    assert!(
        text.contains("Parts of the article: [1] lines 1–"),
        "{text}"
    );
}

/// `--top-logits` reports the logits that chose each output token, and
/// `--follow-ids` reads along given ids and reports the same logits where
/// the path is the same.
#[test]
fn top_logits_along_the_greedy_path_and_a_followed_one() {
    #[derive(serde::Deserialize)]
    struct Top {
        ids: Vec<u32>,
        logits: Vec<f32>,
    }
    #[derive(serde::Deserialize)]
    struct Json {
        output_ids: Vec<u32>,
        top_logits: Vec<Top>,
    }
    let r = reference("qwen3");
    let case = r.cases.iter().find(|c| c.name == "raw-short").unwrap();
    let home = tempfile::tempdir().unwrap();
    let prompt = write(
        home.path(),
        "p.txt",
        case.prompt.as_ref().unwrap().as_bytes(),
    );
    let go = |extra: &[&str]| -> Json {
        let mut cmd = glot(home.path());
        cmd.args([
            "generate",
            "--prompt-file",
            &prompt,
            "--format",
            "json",
            "--top-logits",
            "3",
        ])
        .arg("--model")
        .arg(model_dir("qwen3"))
        .args(extra);
        let out = run(cmd, None);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let greedy = go(&[]);
    assert_eq!(greedy.output_ids, case.output_ids);
    assert_eq!(greedy.top_logits.len(), greedy.output_ids.len());
    for (top, &id) in greedy.top_logits.iter().zip(&greedy.output_ids) {
        assert_eq!(top.ids.len(), 3);
        assert_eq!(top.ids[0], id);
        assert!(top.logits.windows(2).all(|w| w[0] >= w[1]));
    }
    // The same path followed, then another one that parts after one step.
    let mut other = greedy.output_ids.clone();
    other[1] = greedy.top_logits[1].ids[1];
    for path in [&greedy.output_ids, &other] {
        let ids = write(
            home.path(),
            "ids.json",
            serde_json::to_string(path).unwrap().as_bytes(),
        );
        let followed = go(&["--follow-ids", &ids]);
        assert_eq!(&followed.output_ids, path);
        let same = if path == &other { 2 } else { path.len() };
        for (a, b) in followed
            .top_logits
            .iter()
            .zip(&greedy.top_logits)
            .take(same)
        {
            assert_eq!(a.ids, b.ids);
            assert_eq!(a.logits, b.logits);
        }
        if path == &other {
            assert_ne!(followed.top_logits[2].logits, greedy.top_logits[2].logits);
        }
    }
    let home = home.path();
    std::fs::write(home.join("bad.txt"), "1 two").unwrap();
    let bad = home.join("bad.txt");
    let m = model_dir("qwen3");
    let bad = bad.to_str().unwrap();
    for (flag, value, needle) in [
        ("--follow-ids", bad, "expected token ids"),
        ("--top-logits", "2", "--format json"),
    ] {
        let args = [
            "generate",
            "--prompt",
            "x",
            "--model",
            m.to_str().unwrap(),
            flag,
            value,
        ];
        expect_error(home, &args, None, needle);
    }
}

/// `--device`: the CPU by name or by `auto` in a build without CUDA, a
/// clear one-line error for CUDA there and for what is no device, and the
/// device named in the JSON model record and the `--stats` line.
#[test]
fn device_choices_run_on_the_cpu_or_say_why_not() {
    let home = tempfile::tempdir().unwrap();
    let article = write(home.path(), "a.txt", ARTICLE.as_bytes());
    let summarize = |device: &str| {
        let mut cmd = glot(home.path());
        cmd.args(["summarize", &article, "--model", &model(), "--words", "20"])
            .args(["--format", "json", "--stats", "--device", device]);
        run(cmd, None)
    };
    for device in ["cpu", "auto"] {
        let out = summarize(device);
        assert!(out.status.success(), "{device}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(json["model"]["device"], "cpu", "{device}");
        assert_eq!(json["timings"]["device"], "cpu", "{device}");
        assert!(
            stderr(&out).contains("glot: stats: cpu: load "),
            "{}",
            stderr(&out)
        );
    }
    for (device, says) in [
        ("cuda", "--device cuda:0: this glot was built without CUDA"),
        (
            "cuda:1",
            "--device cuda:1: this glot was built without CUDA",
        ),
        ("tpu", "`tpu` is not a device: use cpu, cuda, cuda:N"),
    ] {
        let out = summarize(device);
        assert!(!out.status.success(), "{device}");
        // The flag's parser words the last one, with its hint below.
        let err = stderr(&out);
        let first = err.lines().next().unwrap_or_default();
        assert!(first.contains(says), "{device}: {err}");
        assert!(!err.contains("panicked"), "{device}: {err}");
        assert!(stdout(&out).is_empty(), "{device}");
    }
}

/// The thread count: `--threads`, else `CANDLE_NUM_THREADS`, else
/// `RAYON_NUM_THREADS`, one count for candle's pool and for the speed
/// records; counts far beyond the CPUs, and variables that are no count,
/// are refused in one line before anything runs.
#[test]
fn thread_counts_come_from_one_place_and_absurd_ones_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let article = write(home.path(), "a.txt", ARTICLE.as_bytes());
    let plan = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = glot(home.path());
        cmd.args(["summarize", &article, "--model", &model(), "--plan"])
            .args(args)
            .envs(env.iter().copied());
        run(cmd, None)
    };
    // util::glot sets RAYON_NUM_THREADS=2.
    for (args, env, threads) in [
        (&[][..], &[][..], 2),
        (&[][..], &[("CANDLE_NUM_THREADS", "1")][..], 1),
        (
            &["--threads", "3"][..],
            &[("CANDLE_NUM_THREADS", "1")][..],
            3,
        ),
    ] {
        let out = plan(args, env);
        assert!(out.status.success(), "{}", stderr(&out));
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            said.contains(&format!("on this machine with {threads} threads")),
            "{args:?} {env:?}: {said}"
        );
    }
    let cpus = std::thread::available_parallelism().unwrap().get();
    let many = (4 * cpus + 1).to_string();
    for (args, env, says) in [
        (
            vec!["--threads", many.as_str()],
            vec![],
            "only wait for each other",
        ),
        (
            vec![],
            vec![("CANDLE_NUM_THREADS", many.as_str())],
            "only wait for each other",
        ),
        (
            vec![],
            vec![("RAYON_NUM_THREADS", "lots")],
            "is not a thread count",
        ),
    ] {
        let out = plan(&args, &env);
        assert_eq!(out.status.code(), Some(1), "{args:?} {env:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("glot: ") && err.contains(says), "{err}");
    }
}

/// A copy of the `family` fixture (its files, not its `gguf` folder) in
/// `dir/name` with `edit` applied to its config.json.
fn with_config(
    dir: &Path,
    family: &str,
    name: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> String {
    let copy = dir.join(name);
    std::fs::create_dir(&copy).unwrap();
    for f in std::fs::read_dir(model_dir(family)).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, copy.join(f.file_name().unwrap())).unwrap();
        }
    }
    let path = copy.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
    copy.to_str().unwrap().to_string()
}

/// A config that describes another model than its weights hold (fewer
/// key/value heads, another feed-forward or vocabulary size) is refused in
/// one line naming the weights file and the first tensor that does not fit,
/// with exit 1: not a bare shape error from the middle of a product.
#[test]
fn configs_that_do_not_fit_their_tensors_are_refused_naming_the_tensor() {
    let home = tempfile::tempdir().unwrap();
    let cases: [(&str, serde_json::Value, &str); 4] = [
        (
            "num_key_value_heads",
            1.into(),
            "tensor `model.layers.0.self_attn.k_proj.weight` is [128, 256], but the model's configuration describes [64, 256]",
        ),
        (
            "intermediate_size",
            384.into(),
            "tensor `model.layers.0.mlp.gate_proj.weight` is [512, 256], but the model's configuration describes [384, 256]",
        ),
        (
            "vocab_size",
            1000.into(),
            "tensor `model.embed_tokens.weight` is [1002, 256], but the model's configuration describes [1000, 256]",
        ),
        (
            "head_dim",
            32.into(),
            "tensor `model.layers.0.self_attn.q_proj.weight` is [512, 256], but the model's configuration describes [256, 256]",
        ),
    ];
    for (i, (key, value, says)) in cases.into_iter().enumerate() {
        let model = with_config(home.path(), "qwen3", &format!("m{i}"), |c| c[key] = value);
        let mut cmd = glot(home.path());
        cmd.args(["generate", "--model", &model, "--prompt", "hello"]);
        refused_naming(
            &run(cmd, None),
            key,
            says,
            &format!("{model}/model.safetensors"),
        );
    }
}

/// Asserts the error of a model refused for its `key`: exit 1, one line
/// that `says` why and names the `file`.
fn refused_naming(out: &std::process::Output, key: &str, says: &str, file: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{key}: {err}");
    assert_eq!(err.lines().count(), 1, "{key}: {err}");
    assert!(err.contains(says), "{key}: {err}");
    assert!(err.contains(file), "{key}: {err}");
}

/// Configs that describe no possible model (zero sizes, heads that do not
/// share out, a rope base that is no positive number) are refused in one
/// line naming the file, with exit 1, never a panic.
#[test]
fn impossible_model_shapes_are_refused_naming_the_config() {
    let home = tempfile::tempdir().unwrap();
    let article = write(home.path(), "a.txt", ARTICLE.as_bytes());
    let chat: [(&str, serde_json::Value, &str); 5] = [
        ("num_attention_heads", 0.into(), "attention heads is 0"),
        ("hidden_size", 0.into(), "hidden size is 0"),
        ("num_hidden_layers", 0.into(), "layers is 0"),
        (
            "num_key_value_heads",
            3.into(),
            "do not share out over 3 key/value heads",
        ),
        (
            "rope_theta",
            (-1.0).into(),
            "rope base -1 is not a positive number",
        ),
    ];
    let mt: [(&str, serde_json::Value, &str); 2] = [
        (
            "encoder_attention_heads",
            0.into(),
            "gives `encoder_attention_heads` as 0",
        ),
        ("d_model", 0.into(), "gives `d_model` as 0"),
    ];
    let cases = chat
        .into_iter()
        .map(|c| ("qwen3", c))
        .chain(mt.into_iter().map(|c| ("marian", c)));
    for (i, (family, (key, value, says))) in cases.enumerate() {
        let model = with_config(home.path(), family, &format!("m{i}"), |c| {
            // transformers 5 also spells the rope base inside this block.
            let rope = c.get_mut("rope_parameters").filter(|_| key == "rope_theta");
            if let Some(rope) = rope.filter(|r| r.is_object()) {
                rope[key] = value.clone();
            }
            c[key] = value;
        });
        let mut cmd = glot(home.path());
        match family {
            "qwen3" => cmd.args(["summarize", &article, "--model", &model]),
            _ => cmd.args(["translate", &article, "--to", "de", "--model", &model]),
        };
        refused_naming(&run(cmd, None), key, says, &format!("{model}/config.json"));
    }
}

/// Broken model files are the user's to fix: exit 1, one line naming the
/// file (not 2, "unexpected").
#[test]
fn broken_model_files_exit_1_naming_the_file() {
    let home = tempfile::tempdir().unwrap();
    let article = write(home.path(), "a.txt", ARTICLE.as_bytes());
    let not_json = with_config(home.path(), "qwen3", "tok", |_| {});
    std::fs::write(Path::new(&not_json).join("tokenizer.json"), "not json").unwrap();
    let template = with_config(home.path(), "qwen3", "tmpl", |_| {});
    let config = Path::new(&template).join("tokenizer_config.json");
    let mut tc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    tc["chat_template"] = "{% for m in %}".into();
    std::fs::write(&config, tc.to_string()).unwrap();
    let weights = with_config(home.path(), "qwen3", "cut", |_| {});
    let st = Path::new(&weights).join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 3]).unwrap();
    let gguf_bytes = std::fs::read(gguf("qwen3", "q8_0")).unwrap();
    let cut_gguf = home.path().join("cut.gguf");
    std::fs::write(&cut_gguf, &gguf_bytes[..gguf_bytes.len() / 3]).unwrap();
    let cut_gguf = cut_gguf.to_str().unwrap().to_string();
    for (model, names) in [
        (&not_json, format!("{not_json}/tokenizer.json")),
        (&template, format!("{template}/tokenizer_config.json")),
        (&weights, format!("{weights}/model.safetensors")),
        (&cut_gguf, cut_gguf.clone()),
    ] {
        let mut cmd = glot(home.path());
        cmd.args(["summarize", &article, "--model", model]);
        let out = run(cmd, None);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{model}: {err}");
        assert_eq!(err.lines().count(), 1, "{model}: {err}");
        assert!(err.contains(&names), "{model}: {err}");
    }
}

/// One broken manifest among the user's is left out with a warning naming
/// it; every command still runs, and the good manifests still count.
#[test]
fn a_broken_user_manifest_is_left_out_with_a_warning() {
    let home = tempfile::tempdir().unwrap();
    let article = write(home.path(), "a.txt", ARTICLE.as_bytes());
    let models = home.path().join("config/glot/models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("broken.toml"), "id = [unclosed").unwrap();
    // A good manifest: a built-in one under another id, without aliases.
    let builtin = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/qwen3-1.7b.toml"),
    )
    .unwrap();
    let mine: String = builtin
        .lines()
        .map(|l| match l {
            l if l.starts_with("id = ") => "id = \"mine\"",
            l if l.starts_with("aliases = ") => "aliases = []",
            l => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(models.join("mine.toml"), mine).unwrap();
    let glot_in = || {
        let mut cmd = glot(home.path());
        cmd.env("XDG_CONFIG_HOME", home.path().join("config"));
        cmd
    };
    let mut cmd = glot_in();
    cmd.args(["summarize", &article, "--model", &model(), "--words", "20"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let warned = |err: &str| {
        err.lines()
            .filter(|l| {
                l.starts_with("glot: warning: left out: manifest") && l.contains("broken.toml")
            })
            .count()
    };
    assert_eq!(warned(&stderr(&out)), 1, "{}", stderr(&out));
    let mut cmd = glot_in();
    cmd.args(["models", "list", "--format", "json"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(warned(&stderr(&out)), 1, "{}", stderr(&out));
    assert!(stdout(&out).contains("\"mine\""), "{}", stdout(&out));
}

/// `-o -` is stdout, and no file named `-` is made.
#[test]
fn output_dash_is_stdout() {
    let home = tempfile::tempdir().unwrap();
    let article = write(home.path(), "a.txt", ARTICLE.as_bytes());
    let mut cmd = glot(home.path());
    cmd.args(["summarize", &article, "--model", &model(), "--words", "20"])
        .args(["-o", "-"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).trim().is_empty());
    assert!(!home.path().join("-").exists());
}

/// Input and model files that would take the machine's memory or time are
/// refused in one line with exit 1: an endless device, a document or stdin
/// over `--max-bytes`, a chat template that loops without end or writes
/// without end, and a prompt template that does not compile.
#[test]
fn endless_inputs_and_templates_are_bounded() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let m = model();
    let good = write(h, "good.txt", ARTICLE.as_bytes());
    let big = "x".repeat(200);
    for (args, stdin, needle) in [
        (
            vec!["summarize", "/dev/zero", "--model", &m],
            None,
            "/dev/zero: is larger than 10000000 bytes",
        ),
        (
            vec!["summarize", &good, "--model", &m, "--max-bytes", "100"],
            None,
            "is larger than 100 bytes",
        ),
        (
            vec![
                "translate",
                "-",
                "--to",
                "de",
                "--model",
                &m,
                "--max-bytes",
                "100",
            ],
            Some(big.as_str()),
            "stdin: is larger than 100 bytes",
        ),
    ] {
        expect_error(h, &args, stdin, needle);
    }

    let template = |name: &str, source: &str| {
        let dir = with_config(h, "qwen3", name, |_| {});
        let config = Path::new(&dir).join("tokenizer_config.json");
        let mut tc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        tc["chat_template"] = source.into();
        std::fs::write(&config, tc.to_string()).unwrap();
        dir
    };
    let looping = template(
        "looping",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    );
    let growing = template(
        "growing",
        "{% for i in range(100000) %}{{ messages[0].content * 10 }}{% endfor %}",
    );
    for (dir, needle) in [(&looping, "steps"), (&growing, "wrote more than")] {
        let origin = format!("{dir}/tokenizer_config.json");
        for needle in [needle, origin.as_str()] {
            expect_error(h, &["summarize", &good, "--model", dir], None, needle);
        }
    }

    let prompts = h.join("prompts");
    std::fs::create_dir(&prompts).unwrap();
    std::fs::write(prompts.join("summarize.j2"), "{% if %}").unwrap();
    let prompts = prompts.to_str().unwrap();
    expect_error(
        h,
        &["summarize", &good, "--model", &m, "--prompts", prompts],
        None,
        &format!("{prompts}/summarize.j2: the prompt template does not compile"),
    );

    // Files a model or the user's folders hand over are read with a
    // ceiling too: a prompt template, a config.json.
    let endless = h.join("endless");
    std::fs::create_dir(&endless).unwrap();
    std::os::unix::fs::symlink("/dev/zero", endless.join("translate.j2")).unwrap();
    let endless = endless.to_str().unwrap();
    expect_error(
        h,
        &["summarize", &good, "--model", &m, "--prompts", endless],
        None,
        &format!("{endless}/translate.j2: is larger than 1048576 bytes"),
    );
    let zero_config = with_config(h, "qwen3", "zero-config", |_| {});
    let config = Path::new(&zero_config).join("config.json");
    // Sparse: it takes no disk, only a reader's patience.
    let file = std::fs::File::create(&config).unwrap();
    file.set_len((64 << 20) + 1).unwrap();
    expect_error(
        h,
        &["summarize", &good, "--model", &zero_config],
        None,
        &format!("{zero_config}/config.json: is larger than 67108864 bytes"),
    );
}
