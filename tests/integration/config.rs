//! The config file: defaults beneath the flags and the environment.

use std::path::Path;

use crate::util::{glot, model_dir, run, stderr, stdout};

const ARTICLE: &str = "The city opened its new tram line on Monday. Thousands rode it.\n\n\
The mayor called it a good day for the city.\n";

fn model() -> String {
    model_dir("qwen3").to_str().unwrap().to_string()
}

/// `glot` with `$GLOT_CONFIG` holding `config`.
fn with_config(home: &Path, config: &str) -> std::process::Command {
    let path = home.join("glot.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = glot(home);
    cmd.env("GLOT_CONFIG", &path);
    cmd
}

/// The file's model, target language, length and context serve a command
/// that does not give them: its output is the flags' own, byte for byte.
#[test]
fn the_file_fills_what_the_flags_leave_out() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("a.txt"), ARTICLE).unwrap();
    let flags = |task: &[&str]| {
        let mut cmd = glot(home.path());
        cmd.args(task)
            .args(["--model", &model(), "--max-context", "512"]);
        let out = run(cmd, None);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let config = format!(
        "model = {:?}\nto = \"de\"\nlength = \"short\"\nmax_context = 512\nthreads = 2\n",
        model()
    );
    let from_file = |task: &[&str]| {
        let mut cmd = with_config(home.path(), &config);
        cmd.args(task);
        let out = run(cmd, None);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    assert_eq!(
        from_file(&["translate", "a.txt"]),
        flags(&["translate", "a.txt", "--to", "de"])
    );
    assert_eq!(
        from_file(&["summarize", "a.txt"]),
        flags(&["summarize", "a.txt", "--length", "short"])
    );
}

/// A flag beats the environment, which beats the file; without any, a
/// translation is refused in one line that says where a default can go.
#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("a.txt"), ARTICLE).unwrap();
    let bad = home.path().join("no-such-model").display().to_string();
    // The environment's model over the file's missing one.
    let mut cmd = with_config(home.path(), &format!("model = {bad:?}\nto = \"fr\"\n"));
    cmd.env("GLOT_MODEL", model()).args(["translate", "a.txt"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    // The flag's model over the environment's missing one.
    let mut cmd = with_config(home.path(), "to = \"fr\"\n");
    cmd.env("GLOT_MODEL", &bad)
        .args(["translate", "a.txt", "--model", &model()]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    // The file's model is used when nothing else names one.
    let mut cmd = with_config(home.path(), &format!("model = {bad:?}\nto = \"fr\"\n"));
    cmd.args(["translate", "a.txt"]);
    let out = run(cmd, None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no-such-model"), "{}", stderr(&out));
    // No target language anywhere.
    let mut cmd = glot(home.path());
    cmd.args(["translate", "a.txt", "--model", &model()]);
    let out = run(cmd, None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("--to"), "{}", stderr(&out));
}

/// `glot config` says where each setting comes from, and finds the file
/// under `$XDG_CONFIG_HOME`.
#[test]
fn glot_config_shows_each_settings_source() {
    let home = tempfile::tempdir().unwrap();
    let xdg = home.path().join("xdg");
    std::fs::create_dir_all(xdg.join("glot")).unwrap();
    let file = xdg.join("glot").join("config.toml");
    std::fs::write(&file, "to = \"de\"\nglossary = \"terms.tsv\"\n").unwrap();
    let mut cmd = glot(home.path());
    cmd.env("XDG_CONFIG_HOME", &xdg)
        .env("GLOT_MODEL", "env-model")
        .arg("config");
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_string()
    };
    assert!(
        text.starts_with(&format!("config file: {}", file.display())),
        "{text}"
    );
    assert!(line("model").contains("env-model"), "{text}");
    assert!(line("model").contains("environment (GLOT_MODEL)"), "{text}");
    assert!(line("to").contains("de"), "{text}");
    assert!(line("to").contains(&file.display().to_string()), "{text}");
    let beside = xdg.join("glot").join("terms.tsv");
    assert!(
        line("glossary").contains(&beside.display().to_string()),
        "{text}"
    );
    assert!(line("threads").contains("built-in"), "{text}");
    assert!(line("length").contains("medium"), "{text}");
}

/// A file glot cannot use stops every command with one line naming it and
/// the line at fault; a `$GLOT_CONFIG` that is missing too.
#[test]
fn bad_config_files_are_refused_in_one_line() {
    let home = tempfile::tempdir().unwrap();
    for (config, says) in [
        ("modle = \"x\"\n", "line 1"),
        ("threads = 2\nlength = \"huge\"\n", "short, medium, long"),
        ("max_context = 8\n", "below 16"),
        ("to = \n", "line 1"),
    ] {
        let mut cmd = with_config(home.path(), config);
        cmd.arg("config");
        let out = run(cmd, None);
        assert_eq!(out.status.code(), Some(1), "{config}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{config}: {err}");
        assert!(
            err.contains("glot.toml") && err.contains(says),
            "{config}: {err}"
        );
    }
    let mut cmd = glot(home.path());
    cmd.env("GLOT_CONFIG", home.path().join("missing.toml"))
        .arg("config");
    let out = run(cmd, None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing.toml"), "{}", stderr(&out));
}
