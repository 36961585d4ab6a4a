//! Results written as they are produced (`--stream`, or stdout a
//! terminal): the same bytes as a run that writes them at the end.

use std::path::Path;

use crate::util::{gguf, glot, model_dir, run, stderr, stdout};

fn article() -> String {
    (1..=8)
        .map(|i| {
            format!(
                "Paragraph {i}: the council met again to discuss the budget and the bridge. \
                 Residents asked about taxes."
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn glot_out(home: &Path, args: &[&str]) -> String {
    let mut cmd = glot(home);
    cmd.args(args);
    let out = run(cmd, None);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    assert!(
        !stderr(&out).contains("asked again after"),
        "{}",
        stderr(&out)
    );
    stdout(&out)
}

/// Streamed to a pipe, summaries and translations are the bytes written
/// whole, from a chat model one call at a time or several together, and
/// from a translation model.
#[test]
fn a_streamed_result_is_the_whole_result_byte_for_byte() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("article.txt");
    std::fs::write(&file, article()).unwrap();
    let file = file.to_str().unwrap();
    let q8 = gguf("qwen3", "q8_0");
    let chat = q8.to_str().unwrap();
    for task in [
        &["summarize", "--words", "20"][..],
        &["translate", "--to", "de"],
    ] {
        for parallel in ["1", "4"] {
            let mut args = task.to_vec();
            args.extend([file, "--model", chat, "--max-context", "512"]);
            args.extend(["--parallel", parallel]);
            let whole = glot_out(home.path(), &args);
            assert!(!whole.trim().is_empty());
            args.push("--stream");
            assert_eq!(
                glot_out(home.path(), &args),
                whole,
                "{task:?} at {parallel}"
            );
        }
    }
    let marian = model_dir("marian");
    let args = [
        "translate",
        file,
        "--to",
        "de",
        "--model",
        marian.to_str().unwrap(),
    ];
    let whole = glot_out(home.path(), &args);
    let mut streamed = args.to_vec();
    streamed.push("--stream");
    assert_eq!(glot_out(home.path(), &streamed), whole);
}

/// With `-o FILE` the result is written whole to the file, streaming or
/// not, and nothing goes to stdout.
#[test]
fn a_file_output_is_written_whole_even_with_stream() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("article.txt");
    std::fs::write(&file, article()).unwrap();
    let marian = model_dir("marian");
    let out_file = home.path().join("out.txt");
    let m = marian.to_str().unwrap();
    let f = file.to_str().unwrap();
    let whole = glot_out(home.path(), &["translate", f, "--to", "de", "--model", m]);
    let o = out_file.to_str().unwrap();
    let args = [
        "translate",
        f,
        "--to",
        "de",
        "--model",
        m,
        "--stream",
        "-o",
        o,
    ];
    assert_eq!(glot_out(home.path(), &args), "");
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), whole);
}

/// On a terminal (`script` gives the run one), a translation is written
/// as it comes without being asked, and stderr shows a progress line that
/// counts the parts, then goes.
#[test]
fn a_terminal_gets_the_result_as_it_comes_and_a_progress_line() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("article.txt");
    std::fs::write(&file, article()).unwrap();
    let q8 = gguf("qwen3", "q8_0");
    let glot_args = [
        "translate",
        file.to_str().unwrap(),
        "--to",
        "de",
        "--parallel",
        "1",
        "--model",
        q8.to_str().unwrap(),
        "--max-context",
        "512",
    ];
    let whole = glot_out(home.path(), &glot_args);
    let line = std::iter::once(env!("CARGO_BIN_EXE_glot"))
        .chain(glot_args)
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = glot(home.path());
    // `script` runs the command line in a terminal of its own and copies
    // what it shows to stdout.
    let mut script = std::process::Command::new("script");
    script
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("COLUMNS", "100")
        .env("LINES", "40")
        .current_dir(home.path());
    cmd.env_clear();
    let out = script.output().expect("script (util-linux) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let screen = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    assert!(screen.contains("parts done"), "{screen}");
    // The translation is all there, and its start was written while the
    // progress line still showed: as it came, not at the end.
    // (The progress line is drawn between the paragraphs written.)
    let text = whole.trim_end();
    let screen = screen.replace('\r', "");
    let mut at = 0;
    for paragraph in text.split("\n\n") {
        let found = screen[at..].find(paragraph);
        assert!(found.is_some(), "{screen:?}\n{paragraph:?}");
        at += found.unwrap() + paragraph.len();
    }
    let start: String = text.chars().take(12).collect();
    let written = screen.find(&start).unwrap();
    assert!(screen.rfind("parts done").unwrap() > written, "{screen:?}");
}
