//! Models from a hub: downloads into the Hugging Face cache through a local
//! test hub, cache-only runs, offline mode, integrity, hub errors, tokens,
//! concurrency and removal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::hubserver::{sha256, Fault, Hub, Repo};
use crate::util::{glot, model_dir, reference, run, stderr, stdout};

const TOKEN: &str = "hf_testtoken_5f2b9c";

fn read(family: &str, file: &str) -> Vec<u8> {
    std::fs::read(model_dir(family).join(file)).unwrap()
}

fn tokenizer_files(family: &str) -> HashMap<String, Vec<u8>> {
    [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ]
    .iter()
    .map(|f| (f.to_string(), read(family, f)))
    .collect()
}

/// Repositories as published: a safetensors repo with its tokenizer, a GGUF
/// repo without one, a gated copy, and a second model sharing nothing.
fn repos() -> HashMap<String, Repo> {
    let mut base = tokenizer_files("qwen3");
    base.insert("config.json".into(), read("qwen3", "config.json"));
    base.insert(
        "model.safetensors".into(),
        read("qwen3", "model.safetensors"),
    );
    let gguf: HashMap<String, Vec<u8>> = [(
        "tiny-q8_0.gguf".to_string(),
        read("qwen3", "gguf/qwen3-q8_0.gguf"),
    )]
    .into();
    let llama: HashMap<String, Vec<u8>> = {
        let mut m = tokenizer_files("llama");
        m.insert(
            "llama-q8_0.gguf".into(),
            read("llama", "gguf/llama-q8_0.gguf"),
        );
        m
    };
    HashMap::from([
        (
            "test/qwen3-tiny".into(),
            Repo {
                files: base.clone(),
                token: None,
                ..Repo::default()
            },
        ),
        (
            "test/qwen3-tiny-GGUF".into(),
            Repo {
                files: gguf.clone(),
                token: None,
                ..Repo::default()
            },
        ),
        (
            "test/gated-tiny-GGUF".into(),
            Repo {
                files: gguf,
                token: Some(TOKEN.into()),
                ..Repo::default()
            },
        ),
        (
            "test/gated-tiny".into(),
            Repo {
                files: base,
                token: Some(TOKEN.into()),
                ..Repo::default()
            },
        ),
        (
            "test/llama-tiny".into(),
            Repo {
                files: llama,
                token: None,
                ..Repo::default()
            },
        ),
    ])
}

const MANIFEST: &str = r#"
id = "ID"
name = "tiny test model"
family = "qwen3"
architecture = "qwen3"
context_length = 4096
size_bytes = 2000000
license = "apache-2.0"
tasks = ["summarize", "translate"]
languages = ["en"]

[weights]
repo = "WREPO"
files = ["WFILE"]

[tokenizer]
repo = "TREPO"
files = ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]
"#;

struct Env {
    home: tempfile::TempDir,
    hub: Hub,
}

impl Env {
    fn new() -> Env {
        let home = tempfile::tempdir().unwrap();
        let models = home.path().join("config/glot/models");
        std::fs::create_dir_all(&models).unwrap();
        for (id, wrepo, wfile, trepo) in [
            (
                "tiny",
                "test/qwen3-tiny-GGUF",
                "tiny-q8_0.gguf",
                "test/qwen3-tiny",
            ),
            (
                "gated",
                "test/gated-tiny-GGUF",
                "tiny-q8_0.gguf",
                "test/gated-tiny",
            ),
            (
                "llama-tiny",
                "test/llama-tiny",
                "llama-q8_0.gguf",
                "test/llama-tiny",
            ),
            (
                "broken",
                "test/qwen3-tiny-GGUF",
                "no-such-file.gguf",
                "test/qwen3-tiny",
            ),
        ] {
            let m = MANIFEST
                .replace("ID", id)
                .replace("WREPO", wrepo)
                .replace("WFILE", wfile)
                .replace("TREPO", trepo);
            std::fs::write(models.join(format!("{id}.toml")), m).unwrap();
        }
        Env {
            hub: Hub::start(repos()),
            home,
        }
    }

    fn cmd(&self) -> Command {
        let mut c = glot(self.home.path());
        c.env("HF_ENDPOINT", &self.hub.url)
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .env_remove("HF_HUB_OFFLINE")
            .env("GLOT_HUB_TIMEOUT", "3");
        c
    }

    fn glot(&self, args: &[&str]) -> std::process::Output {
        let mut c = self.cmd();
        c.args(args);
        run(c, None)
    }

    fn cache(&self) -> PathBuf {
        self.home.path().join("hf/hub")
    }

    fn blobs(&self, repo: &str) -> Vec<String> {
        let dir = self
            .cache()
            .join(format!("models--{}", repo.replace('/', "--")))
            .join("blobs");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

fn ok(o: &std::process::Output) {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
}

fn fails_with(o: &std::process::Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn gguf_sha() -> String {
    sha256(&read("qwen3", "gguf/qwen3-q8_0.gguf"))
}

#[test]
fn download_then_run_from_the_cache_with_the_hub_gone() {
    let mut env = Env::new();
    let o = env.glot(&["models", "download", "tiny"]);
    ok(&o);
    assert!(stdout(&o).starts_with("tiny: 4 file(s)"), "{}", stdout(&o));
    assert!(stderr(&o).contains("downloading tiny-q8_0.gguf from test/qwen3-tiny-GGUF"));
    assert_eq!(env.blobs("test/qwen3-tiny-GGUF"), vec![gguf_sha()]);
    let o = env.glot(&["models", "list"]);
    ok(&o);
    let line = stdout(&o)
        .lines()
        .find(|l| l.starts_with("tiny "))
        .unwrap()
        .to_string();
    assert!(line.ends_with("yes"), "{line}");
    let requests = env.hub.log().len();
    // Cached: no request at all, even with the hub up.
    let o = env.glot(&[
        "generate",
        "--model",
        "tiny",
        "--prompt",
        "Hello",
        "--max-new-tokens",
        "4",
    ]);
    ok(&o);
    assert_eq!(
        env.hub.log().len(),
        requests,
        "a cached model must not touch the network"
    );
    env.hub.stop();
    // Refreshing with the hub gone falls back to the cache, and says so.
    let o = env.glot(&["models", "download", "tiny"]);
    ok(&o);
    assert!(
        stderr(&o).contains("cannot reach the hub"),
        "{}",
        stderr(&o)
    );
    let o = env.glot(&["-q", "models", "download", "tiny"]);
    ok(&o);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let started = std::time::Instant::now();
    let o = env.glot(&[
        "generate",
        "--model",
        "tiny",
        "--prompt",
        "Hello",
        "--max-new-tokens",
        "4",
    ]);
    ok(&o);
    assert!(started.elapsed().as_secs() < 20);
}

#[test]
fn hub_repos_by_name_fetch_what_the_architecture_needs() {
    let env = Env::new();
    let r = reference("qwen3");
    let case = r.cases.iter().find(|c| c.name == "raw-short").unwrap();
    let max = case.max_new_tokens.to_string();
    let prompt = case.prompt.as_ref().unwrap();
    // Safetensors repo: config, tokenizer files and weights.
    let o = env.glot(&[
        "generate",
        "--model",
        "hf:test/qwen3-tiny",
        "--prompt",
        prompt,
        "--max-new-tokens",
        &max,
        "--format",
        "json",
    ]);
    ok(&o);
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let ids: Vec<u32> = serde_json::from_value(json["output_ids"].clone()).unwrap();
    assert_eq!(ids, case.output_ids);
    // A GGUF file is a whole model: its tokenizer is in its metadata, and
    // nothing comes from the base repository.
    let base_before = env.blobs("test/qwen3-tiny");
    let o = env.glot(&[
        "generate",
        "--model",
        "hf:test/qwen3-tiny-GGUF@main:tiny-q8_0.gguf",
        "--prompt",
        "Hi",
        "--max-new-tokens",
        "3",
    ]);
    ok(&o);
    assert_eq!(env.blobs("test/qwen3-tiny"), base_before);
    let o = env.glot(&[
        "generate",
        "--model",
        "hf:test/qwen3-tiny:pytorch_model.bin",
        "--prompt",
        "Hi",
    ]);
    fails_with(&o, "pickled");
}

#[test]
fn offline_misses_say_what_to_download() {
    let env = Env::new();
    let mut c = env.cmd();
    c.env("HF_HUB_OFFLINE", "1")
        .args(["generate", "--model", "tiny", "--prompt", "Hi"]);
    fails_with(&run(c, None), "run `glot models download tiny`");
    let o = env.glot(&["--offline", "generate", "--model", "tiny", "--prompt", "Hi"]);
    fails_with(&o, "offline");
    assert!(
        env.hub.log().is_empty(),
        "offline runs sent {:?}",
        env.hub.log()
    );
}

#[test]
fn corrupt_downloads_are_deleted() {
    let env = Env::new();
    env.hub.fault("tiny-q8_0.gguf", Some(Fault::Corrupt));
    let o = env.glot(&["models", "download", "tiny"]);
    fails_with(&o, "failed its integrity check");
    assert!(stderr(&o).contains(&gguf_sha()));
    assert!(
        env.blobs("test/qwen3-tiny-GGUF").is_empty(),
        "{:?}",
        env.blobs("test/qwen3-tiny-GGUF")
    );
    env.hub.fault("tiny-q8_0.gguf", None);
    ok(&env.glot(&["models", "download", "tiny"]));
}

#[test]
fn an_interrupted_download_leaves_nothing_under_a_final_name() {
    let env = Env::new();
    env.hub.fault("tiny-q8_0.gguf", Some(Fault::Drop));
    let o = env.glot(&["models", "download", "tiny"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(!env.blobs("test/qwen3-tiny-GGUF").contains(&gguf_sha()));
    env.hub.fault("tiny-q8_0.gguf", None);
    ok(&env.glot(&["models", "download", "tiny"]));
    assert!(env.blobs("test/qwen3-tiny-GGUF").contains(&gguf_sha()));
}

#[test]
fn a_silent_hub_is_given_up_on() {
    let env = Env::new();
    env.hub.fault("tiny-q8_0.gguf", Some(Fault::Hang));
    let started = std::time::Instant::now();
    let o = env.glot(&["models", "download", "tiny"]);
    fails_with(&o, "sent nothing for 3s");
    assert!(started.elapsed().as_secs() < 30);
}

#[test]
fn hub_errors_name_repo_file_and_manifest() {
    let env = Env::new();
    let o = env.glot(&["models", "download", "broken"]);
    fails_with(
        &o,
        "no-such-file.gguf (revision main) of test/qwen3-tiny-GGUF not found",
    );
    assert!(stderr(&o).contains("broken.toml"), "{}", stderr(&o));
    let o = env.glot(&[
        "generate",
        "--model",
        "hf:test/nothing-here",
        "--prompt",
        "Hi",
    ]);
    fails_with(&o, "gated or private");
    let o = env.glot(&[
        "generate",
        "--model",
        "hf:test/qwen3-tiny@v9",
        "--prompt",
        "Hi",
    ]);
    fails_with(&o, "(revision v9) of test/qwen3-tiny not found");
}

#[test]
fn gated_repos_need_a_token_that_is_never_shown() {
    let env = Env::new();
    let o = env.glot(&["models", "download", "gated"]);
    fails_with(&o, "set HF_TOKEN");
    let mut c = env.cmd();
    c.env("HF_TOKEN", "hf_wrong")
        .args(["models", "download", "gated"]);
    let o = run(c, None);
    fails_with(&o, "gated or private");
    assert!(!stderr(&o).contains("hf_wrong"));
    let mut c = env.cmd();
    c.env("HF_TOKEN", TOKEN)
        .args(["-v", "models", "download", "gated"]);
    let o = run(c, None);
    ok(&o);
    assert!(!stdout(&o).contains(TOKEN) && !stderr(&o).contains(TOKEN));
    assert!(env
        .hub
        .log()
        .iter()
        .any(|l| l.contains("gated-tiny-GGUF") && l.ends_with(&format!("Bearer {TOKEN}"))));
}

#[test]
fn concurrent_downloads_of_one_model_both_succeed() {
    let env = Env::new();
    let spawn = || {
        let mut c = env.cmd();
        c.args(["models", "download", "tiny"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        ok(&child.wait_with_output().unwrap());
    }
    assert_eq!(env.blobs("test/qwen3-tiny-GGUF"), vec![gguf_sha()]);
    ok(&env.glot(&[
        "generate",
        "--model",
        "tiny",
        "--prompt",
        "Hi",
        "--max-new-tokens",
        "2",
    ]));
}

#[test]
fn remove_frees_only_the_models_own_blobs() {
    let env = Env::new();
    ok(&env.glot(&["models", "download", "tiny"]));
    ok(&env.glot(&["models", "download", "llama-tiny"]));
    let llama_before = env.blobs("test/llama-tiny");
    assert_eq!(llama_before.len(), 4);
    let tokenizer_before = env.blobs("test/qwen3-tiny");
    let o = env.glot(&["models", "remove", "tiny"]);
    ok(&o);
    // The weights go; the tokenizer files stay, as the `broken` manifest lists them too.
    assert!(
        stdout(&o).starts_with("tiny: freed 2") && stdout(&o).contains("3 file(s) kept"),
        "{}",
        stdout(&o)
    );
    assert!(env.blobs("test/qwen3-tiny-GGUF").is_empty());
    assert_eq!(env.blobs("test/qwen3-tiny"), tokenizer_before);
    assert_eq!(env.blobs("test/llama-tiny"), llama_before);
    let line = stdout(&env.glot(&["models", "list"]))
        .lines()
        .find(|l| l.starts_with("tiny "))
        .unwrap()
        .to_string();
    assert!(line.ends_with("partly"), "{line}");
    ok(&env.glot(&[
        "generate",
        "--model",
        "llama-tiny",
        "--prompt",
        "Hi",
        "--max-new-tokens",
        "2",
    ]));
}

/// A model fetched by its hub name keeps the files it shares with a catalog
/// model that is removed, and still runs offline; the catalog model's own
/// weights go.
#[test]
fn remove_keeps_the_files_a_hub_model_in_the_cache_uses() {
    let env = Env::new();
    // No other catalog model lists the tokenizer files here.
    std::fs::remove_file(env.home.path().join("config/glot/models/broken.toml")).unwrap();
    ok(&env.glot(&["models", "download", "tiny"]));
    let o = env.glot(&[
        "models",
        "download",
        "hf:test/qwen3-tiny",
        "--format",
        "json",
    ]);
    ok(&o);
    let ready: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let model = &ready["models"][0];
    assert_eq!(model["id"], "hf:test/qwen3-tiny", "{ready}");
    let files = model["files"].as_array().unwrap();
    assert!(files
        .iter()
        .any(|f| f.as_str().unwrap().ends_with("/model.safetensors")));
    assert!(model["bytes"].as_u64().unwrap() > 0, "{ready}");
    assert!(
        ready["cache"].as_str().unwrap().ends_with("hf/hub"),
        "{ready}"
    );
    let shared_before = env.blobs("test/qwen3-tiny");
    let o = env.glot(&["models", "remove", "tiny", "--format", "json"]);
    ok(&o);
    let removed: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(removed["id"], "tiny");
    assert_eq!(removed["kept_files"], 3, "{removed}");
    let gguf = std::fs::metadata(model_dir("qwen3").join("gguf/qwen3-q8_0.gguf")).unwrap();
    assert_eq!(
        removed["freed_bytes"].as_u64(),
        Some(gguf.len()),
        "{removed}"
    );
    assert!(env.blobs("test/qwen3-tiny-GGUF").is_empty());
    assert_eq!(env.blobs("test/qwen3-tiny"), shared_before);
    ok(&env.glot(&[
        "generate",
        "--offline",
        "--model",
        "hf:test/qwen3-tiny",
        "--prompt",
        "Hi",
        "--max-new-tokens",
        "2",
    ]));
}

/// The cache follows the Hugging Face layout: refs name the commit, snapshot
/// entries are links into blobs named by their hash.
#[test]
fn the_cache_uses_the_hugging_face_layout() {
    let env = Env::new();
    ok(&env.glot(&["models", "download", "tiny"]));
    let repo = env.cache().join("models--test--qwen3-tiny-GGUF");
    let commit = std::fs::read_to_string(repo.join("refs/main")).unwrap();
    assert_eq!(commit.trim(), crate::hubserver::COMMIT);
    let link = repo
        .join("snapshots")
        .join(commit.trim())
        .join("tiny-q8_0.gguf");
    assert!(link.is_symlink());
    let target = std::fs::canonicalize(&link).unwrap();
    assert_eq!(
        target,
        std::fs::canonicalize(repo.join("blobs").join(gguf_sha())).unwrap()
    );
    assert!(Path::new(&target).is_file());
    // tests/fixtures/check_hf_cache.py reads a kept copy with huggingface_hub.
    if let Some(dst) = std::env::var_os("GLOT_TEST_KEEP_CACHE") {
        let status = Command::new("cp")
            .arg("-a")
            .arg(env.cache())
            .arg(dst)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// A manifest can give the model prompts of its own: its template replaces
/// glot's (a file beside the manifest), the user's `--prompts` folder
/// still wins, and a template name glot does not have is refused.
#[test]
fn a_manifest_names_the_model_s_own_prompt_templates() {
    let env = Env::new();
    let models = env.home.path().join("config/glot/models");
    let tiny = std::fs::read_to_string(models.join("tiny.toml")).unwrap();
    let with = |id: &str, name: &str, file: &str| {
        let m = tiny.replace("id = \"tiny\"", &format!("id = \"{id}\""));
        std::fs::write(
            models.join(format!("{id}.toml")),
            format!("{m}\n[prompts]\n{name} = \"{file}\"\n"),
        )
        .unwrap();
    };
    let preamble = "You translate for a newsroom. ".repeat(12);
    std::fs::write(
        models.join("wordy.j2"),
        format!("{preamble}Translate into {{{{ target }}}}:\n\n{{{{ text }}}}"),
    )
    .unwrap();
    std::fs::write(models.join("broken.j2"), "{{ text | no_such_filter }}").unwrap();
    with("wordy", "translate", "wordy.j2");
    with("broken-prompt", "translate", "broken.j2");
    with("unknown-prompt", "headline", "wordy.j2");
    let article = env.home.path().join("a.txt");
    std::fs::write(&article, "The tram line opened on Monday.").unwrap();
    let article = article.to_str().unwrap();
    let plan = |model: &str, extra: &[&str]| {
        let mut args = vec![
            "translate",
            article,
            "--to",
            "de",
            "--plan",
            "--format",
            "json",
            "--model",
            model,
        ];
        args.extend(extra);
        let o = env.glot(&args);
        ok(&o);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        v["calls"][0]["prompt_tokens"].as_u64().unwrap()
    };
    let (plain, wordy) = (plan("tiny", &[]), plan("wordy", &[]));
    assert!(
        wordy > plain + 30,
        "tiny {plain}, wordy {wordy} prompt tokens"
    );

    let o = env.glot(&[
        "translate",
        article,
        "--to",
        "de",
        "--plan",
        "--model",
        "broken-prompt",
    ]);
    fails_with(&o, "broken.j2");
    fails_with(&o, "cannot render the prompt template");
    // The user's folder beats the model's file.
    let mine = env.home.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("translate.j2"), "Into {{ target }}: {{ text }}").unwrap();
    let mine = mine.to_str().unwrap();
    assert!(plan("broken-prompt", &["--prompts", mine]) < plain);

    let o = env.glot(&[
        "translate",
        article,
        "--to",
        "de",
        "--plan",
        "--model",
        "unknown-prompt",
    ]);
    fails_with(&o, "no prompt template `headline`");
}
