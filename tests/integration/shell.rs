//! `glot completions` and `glot man`: scripts and pages made from the
//! parser's own definitions.

use std::process::Command;

use crate::util::{glot, run, stderr, stdout};

/// Every shell's script names the commands and their flags; bash loads its
/// own and completes a command and a flag with it.
#[test]
fn completion_scripts_complete_commands_and_flags() {
    let home = tempfile::tempdir().unwrap();
    let script = |shell: &str| {
        let mut cmd = glot(home.path());
        cmd.args(["completions", shell]);
        let out = run(cmd, None);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        stdout(&out)
    };
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let text = script(shell);
        // fish names a long flag `-l parallel`.
        let long = |flag: &str| match shell {
            "fish" => format!("-l {flag}"),
            _ => format!("--{flag}"),
        };
        let words = ["summarize", "translate", "batch"].map(String::from);
        for word in words
            .into_iter()
            .chain([long("parallel"), long("cache-type")])
        {
            assert!(text.contains(&word), "{shell}'s script lacks {word}");
        }
    }
    let path = home.path().join("glot.bash");
    std::fs::write(&path, script("bash")).unwrap();
    let complete = |words: &str| {
        let probe = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _glot glot \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             echo \"${{COMPREPLY[*]}}\"",
            path.display()
        );
        let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    assert_eq!(complete("glot tr"), "translate");
    assert_eq!(complete("glot summarize --paral"), "--parallel");
    assert_eq!(
        complete("glot summarize --cache-type q"),
        "q8_0",
        "the values of a flag"
    );
}

/// A shell glot has no script for is refused in one line, naming the ones
/// it has.
#[test]
fn unknown_shells_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = glot(home.path());
    cmd.args(["completions", "tcsh"]);
    let out = run(cmd, None);
    assert!(!out.status.success());
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("possible values: bash"),
        "{}",
        stderr(&out)
    );
}

/// `glot man` prints glot(1); `--dir` writes a page for every command,
/// nested ones named after their path, and refuses a folder that is not.
#[test]
fn manual_pages_cover_every_command() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = glot(home.path());
    cmd.arg("man");
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH glot 1"), "{page}");
    for word in ["summarize", "translate", "batch", "completions"] {
        assert!(page.contains(word), "glot(1) lacks {word}");
    }

    let dir = home.path().join("man1");
    std::fs::create_dir(&dir).unwrap();
    let mut cmd = glot(home.path());
    cmd.args(["man", "--dir"]).arg(&dir);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in [
        "glot",
        "glot-summarize",
        "glot-translate",
        "glot-batch",
        "glot-models-download",
        "glot-eval-translate",
    ] {
        let page = std::fs::read_to_string(dir.join(format!("{name}.1"))).unwrap();
        assert!(page.contains(&format!(".TH {name} 1")), "{name}: {page}");
    }
    let summarize = std::fs::read_to_string(dir.join("glot-summarize.1")).unwrap();
    assert!(summarize.contains("parallel"), "{summarize}");

    let mut cmd = glot(home.path());
    cmd.args(["man", "--dir", "missing"]);
    let out = run(cmd, None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("missing is not a folder"),
        "{}",
        stderr(&out)
    );
}
