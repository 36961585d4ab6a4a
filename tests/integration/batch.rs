//! `glot batch` end to end: reruns, failures, signals, shards and escapes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{glot, model_dir, run, run_into_closed_pipe, stderr, stdout};

fn model() -> String {
    model_dir("qwen3").to_str().unwrap().to_string()
}

/// A folder of small documents, with things a walk must pass over.
pub(crate) fn articles(dir: &Path, n: usize) -> PathBuf {
    let root = dir.join("articles");
    for i in 0..n {
        let sub = if i % 2 == 0 { "news" } else { "sport" };
        let p = root.join(sub).join(format!("a{i}.txt"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            format!("The council met on day {i}. It voted on the new tram line.\n"),
        )
        .unwrap();
    }
    std::fs::write(
        root.join("page.html"),
        "<p>A page about <b>trams</b>.</p>\n",
    )
    .unwrap();
    std::fs::write(root.join("notes.md"), "# Notes\n\nThe *tram* is `fast`.\n").unwrap();
    std::fs::write(root.join(".hidden.txt"), "hidden").unwrap();
    std::fs::write(root.join("picture.png"), [0u8, 1, 2]).unwrap();
    root
}

fn batch(home: &Path, args: &[&str]) -> Command {
    let mut cmd = glot(home);
    cmd.args(["batch", "--model", &model(), "--words", "5"]);
    cmd.args(args);
    cmd
}

/// Every output file under `out` (not the manifest or `.glot`), by path.
pub(crate) fn outputs(out: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for e in walk(out) {
        let rel = e.strip_prefix(out).unwrap().to_string_lossy().into_owned();
        if !rel.starts_with(".glot") && !rel.starts_with("manifest") {
            files.insert(rel, std::fs::read(&e).unwrap());
        }
    }
    files
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Manifest records of every manifest file in `out`.
fn records(out: &Path) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(out).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("manifest") {
            for line in std::fs::read_to_string(&p).unwrap().lines() {
                if let Ok(v) = serde_json::from_str(line) {
                    all.push(v);
                }
            }
        }
    }
    all
}

fn count(records: &[serde_json::Value], status: &str) -> usize {
    records.iter().filter(|r| r["status"] == status).count()
}

#[test]
fn jobs_run_once_and_reruns_skip_what_is_done() {
    let home = tempfile::tempdir().unwrap();
    let root = articles(home.path(), 3);
    let out = home.path().join("out");
    let (root_s, out_s) = (root.to_str().unwrap(), out.to_str().unwrap());
    let o = run(
        batch(
            home.path(),
            &[
                root_s,
                "--summarize",
                "--translate",
                "fr,de",
                "--out",
                out_s,
            ],
        ),
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Every line records the glot and the model files that made it, and
    // what its translation lost, by line (the fixture model writes noise:
    // some translations lose the day's number or the language).
    let flagged: Vec<serde_json::Value> = records(&out)
        .into_iter()
        .filter(|r| r.get("flags").is_some())
        .collect();
    assert!(!flagged.is_empty());
    for r in &flagged {
        assert!(r["task"].as_str().unwrap().starts_with("translate"), "{r}");
        for f in r["flags"].as_array().unwrap() {
            assert!(
                f["line"].as_u64().unwrap() >= 1 && f["kind"].is_string(),
                "{r}"
            );
        }
    }
    for r in records(&out) {
        assert_eq!(r["glot_version"], env!("CARGO_PKG_VERSION"), "{r}");
        let files = r["files"].as_array().unwrap();
        assert!(
            files.iter().any(|f| f["file"] == "model.safetensors"
                && f["sha256"].as_str().is_some_and(|h| h.len() == 64)),
            "{r}"
        );
    }
    let files = outputs(&out);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "news/a0.de.txt",
            "news/a0.fr.txt",
            "news/a0.summary.md",
            "news/a2.de.txt",
            "news/a2.fr.txt",
            "news/a2.summary.md",
            "notes.de.md",
            "notes.fr.md",
            "notes.summary.md",
            "page.de.html",
            "page.fr.html",
            "page.summary.md",
            "sport/a1.de.txt",
            "sport/a1.fr.txt",
            "sport/a1.summary.md",
        ]
    );
    // Code and markup are kept in translated documents.
    let notes = String::from_utf8(files["notes.fr.md"].clone()).unwrap();
    assert!(
        notes.starts_with("# ") && notes.contains("`fast`"),
        "{notes}"
    );
    let r = records(&out);
    assert_eq!(r.len(), 15);
    assert_eq!(count(&r, "done") + count(&r, "copied"), 15);
    // What a translation left untranslated is in its record, as
    // `glot translate` reports it for the same document.
    let mut single = glot(home.path());
    single.args([
        "translate",
        root.join("notes.md").to_str().unwrap(),
        "--to",
        "fr",
    ]);
    single.args(["--model", &model(), "--format", "json"]);
    let one = run(single, None);
    assert!(one.status.success(), "{}", stderr(&one));
    let alone: serde_json::Value = serde_json::from_str(&stdout(&one)).unwrap();
    let record = r
        .iter()
        .find(|x| x["input"] == "notes.md" && x["task"] == "translate:fr")
        .unwrap();
    assert_eq!(
        record["untranslated"].as_u64().unwrap_or(0),
        alone["untranslated"].as_u64().unwrap(),
        "{record}"
    );
    assert_eq!(
        files["notes.fr.md"],
        alone["text"].as_str().unwrap().as_bytes()
    );
    let first = &r[0];
    for field in [
        "input",
        "sha256",
        "task",
        "settings",
        "settings_hash",
        "model",
        "output",
        "tokens",
        "seconds",
    ] {
        assert!(!first[field].is_null(), "{field} in {first}");
    }
    assert!(stdout(&o).contains("summarize"), "{}", stdout(&o));

    // Run again: nothing to do, and the model is not even loaded.
    let again = batch(
        home.path(),
        &[
            root_s,
            "--summarize",
            "--translate",
            "fr,de",
            "--out",
            out_s,
            "-v",
        ],
    );
    let o = run(again, None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("loading model"), "{}", stderr(&o));
    assert_eq!(records(&out).len(), 15);
    let table = stdout(&o);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("summarize") && l.split_whitespace().nth(3) == Some("5")),
        "{table}"
    );

    // A changed document is redone, the rest is not.
    std::fs::write(root.join("sport/a1.txt"), "Changed text about the tram.\n").unwrap();
    let o = run(
        batch(home.path(), &[root_s, "--summarize", "--out", out_s]),
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = records(&out);
    assert_eq!(r.len(), 16);
    assert_eq!(r[15]["input"], "sport/a1.txt");
    // --force redoes everything asked for.
    let o = run(
        batch(
            home.path(),
            &[root_s, "--summarize", "--out", out_s, "--force"],
        ),
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(records(&out).len(), 21);

    // --status tells it all; --dry-run plans without a model.
    let mut st = glot(home.path());
    st.args(["batch", "--status", out_s]);
    let o = run(st, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = |o: &std::process::Output| {
        stdout(o)
            .lines()
            .find(|l| l.starts_with("summarize"))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    // DONE COPIED FAILED PENDING
    assert_eq!(line(&o), "5 0 0 0", "{}", stdout(&o));
    std::fs::write(root.join("news/a0.txt"), "Changed again.\n").unwrap();
    std::fs::remove_file(out.join("notes.summary.md")).unwrap();
    let mut st = glot(home.path());
    st.args(["batch", "--status", out_s]);
    let o = run(st, None);
    assert_eq!(line(&o), "3 0 0 2", "{}", stdout(&o));
    // The same in JSON, and into a closed pipe (`| head`) quietly.
    let mut st = glot(home.path());
    st.args(["batch", "--status", out_s, "--format", "json"]);
    let o = run(st, None);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let job = &v["jobs"][0];
    assert_eq!(job["job"], "summarize", "{v}");
    let counts = ["done", "copied", "failed", "pending"].map(|k| job[k].as_u64().unwrap());
    assert_eq!(counts, [3, 0, 0, 2], "{v}");
    let mut st = glot(home.path());
    st.args(["batch", "--status", out_s]);
    let o = run_into_closed_pipe(st);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    let mut dry = glot(home.path());
    dry.args([
        "batch",
        root_s,
        "--translate",
        "es",
        "--out",
        out_s,
        "--dry-run",
    ]);
    dry.args(["--model", "not-loaded"]);
    let o = run(dry, None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("WOULD RUN"), "{}", stdout(&o));
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with("translate:es") && l.contains(" 5 ")),
        "{}",
        stdout(&o)
    );
    assert!(!outputs(&out).keys().any(|k| k.contains(".es.")));
}

#[test]
fn bad_documents_fail_alone_and_retry_failed_retries_them() {
    let home = tempfile::tempdir().unwrap();
    let root = articles(home.path(), 2);
    std::fs::write(root.join("latin1.txt"), b"caf\xe9 au lait\n").unwrap();
    std::fs::write(root.join("empty.txt"), b"  \n").unwrap();
    std::fs::write(root.join("binary.txt"), b"\x00\x01\x02").unwrap();
    std::fs::write(root.join("big.txt"), "word ".repeat(400)).unwrap();
    let out = home.path().join("out");
    let (root_s, out_s) = (root.to_str().unwrap(), out.to_str().unwrap());
    let o = run(
        batch(
            home.path(),
            &[root_s, "--summarize", "--out", out_s, "--max-bytes", "1000"],
        ),
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = records(&out);
    assert_eq!((count(&r, "done"), count(&r, "failed")), (4, 4));
    let reason = |input: &str| {
        r.iter().find(|x| x["input"] == input).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(reason("latin1.txt").contains("not valid UTF-8"));
    assert!(reason("empty.txt").contains("empty"));
    assert!(reason("binary.txt").contains("binary"));
    assert!(reason("big.txt").contains("--max-bytes"));
    assert!(
        stdout(&o).contains("failed: latin1.txt (summarize)"),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("4 item(s) failed"), "{}", stderr(&o));
    // Only the failures run again, and with --lossy one of them succeeds.
    let o = run(
        batch(
            home.path(),
            &[
                root_s,
                "--summarize",
                "--out",
                out_s,
                "--retry-failed",
                "--lossy",
                "--max-bytes",
                "1000",
            ],
        ),
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let r = records(&out);
    assert_eq!(r.len(), 12);
    assert!(outputs(&out).contains_key("latin1.summary.md"));
}

/// Starts a batch of `n` documents and waits until its manifest has a
/// record, so a signal lands in the middle of the run.
fn start_and_wait(home: &Path, root: &Path, out: &Path) -> Child {
    let mut cmd = batch(
        home,
        &[
            root.to_str().unwrap(),
            "--summarize",
            "--translate",
            "fr",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while records_exist(out) == 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn records_exist(out: &Path) -> usize {
    if out.join("manifest.jsonl").exists() {
        records(out).len()
    } else {
        0
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Every output file has a record. After a graceful stop the scratch space
/// is gone too; after `kill -9` it may hold a half-written file, which is no
/// output and goes on the next run.
fn consistent(out: &Path, graceful: bool) {
    let r = records(out);
    for name in outputs(out).keys() {
        assert!(
            r.iter().any(|x| x["output"] == name.as_str()),
            "{name} has no record"
        );
    }
    if graceful {
        assert_eq!(std::fs::read_dir(out.join(".glot/tmp")).unwrap().count(), 0);
    }
}

#[test]
fn interrupted_runs_resume_to_the_same_outputs() {
    let home = tempfile::tempdir().unwrap();
    let root = articles(home.path(), 8);
    let reference = home.path().join("reference");
    let both_jobs = |out: &Path| {
        let (root, out) = (root.to_str().unwrap(), out.to_str().unwrap());
        batch(
            home.path(),
            &[root, "--summarize", "--translate", "fr", "--out", out],
        )
    };
    let o = run(both_jobs(&reference), None);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = outputs(&reference);
    assert_eq!(expected.len(), 20);

    for (sig, code) in [("-INT", Some(130)), ("-TERM", Some(130)), ("-KILL", None)] {
        let out = home.path().join(format!("out{sig}"));
        let mut child = start_and_wait(home.path(), &root, &out);
        signal(&child, sig);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), code, "{sig}");
        let done = records(&out).len();
        assert!(
            done < 20,
            "{sig}: the run finished before the signal ({done})"
        );
        consistent(&out, code.is_some());
        // Resume: every output ends up as in the uninterrupted run.
        let o = run(both_jobs(&out), None);
        assert!(o.status.success(), "{sig}: {}", stderr(&o));
        assert_eq!(outputs(&out), expected, "{sig}");
        // The killed run's scratch folder was cleared by the next one.
        assert_eq!(
            std::fs::read_dir(out.join(".glot/tmp")).unwrap().count(),
            0,
            "{sig}"
        );
    }
}

#[test]
fn a_second_signal_stops_at_once() {
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("long");
    std::fs::create_dir_all(&root).unwrap();
    // The first document takes seconds to translate; the second is short.
    let long = "The council met again and talked about the budget for the year. ".repeat(60);
    std::fs::write(root.join("a.txt"), long).unwrap();
    std::fs::write(root.join("b.txt"), "A short one.\n").unwrap();
    for (signals, records_after) in [(1, 1), (2, 0)] {
        let out = home.path().join(format!("out{signals}"));
        let mut child = glot(home.path())
            .args(["batch", root.to_str().unwrap(), "--translate", "fr"])
            .args(["--out", out.to_str().unwrap(), "--model", &model()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The first document is in hand once its item lock exists (and it
        // takes seconds to translate).
        let locks = out.join(".glot/locks");
        let start = Instant::now();
        while std::fs::read_dir(&locks).map_or(true, |d| d.count() == 0) {
            assert!(start.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(10));
        }
        for _ in 0..signals {
            signal(&child, "-INT");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(child.wait().unwrap().code(), Some(130));
        // One signal: the document in hand is finished, the next not begun.
        // Two: not even the document in hand, and nothing half-written.
        assert_eq!(records(&out).len(), records_after, "{signals} signal(s)");
        assert_eq!(outputs(&out).len(), records_after, "{signals} signal(s)");
    }
}

#[test]
fn documents_sharing_an_output_name_do_not_overwrite_each_other() {
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("in");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a.html"), "<p>The tram is new.</p>\n").unwrap();
    std::fs::write(root.join("a.md"), "The *tram* is new.\n").unwrap();
    let out = home.path().join("out");
    let args = [
        root.to_str().unwrap(),
        "--summarize",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = run(batch(home.path(), &args), None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o)
            .contains("failed: a.md (summarize): its output a.summary.md is written from a.html"),
        "{}",
        stdout(&o)
    );
    // Once the other document is gone, its claim goes with it.
    std::fs::remove_file(root.join("a.html")).unwrap();
    let o = run(batch(home.path(), &args), None);
    assert!(o.status.success(), "{}", stdout(&o));
}

#[test]
fn four_concurrent_shards_equal_one_run() {
    let home = tempfile::tempdir().unwrap();
    let root = articles(home.path(), 10);
    let whole = home.path().join("whole");
    let root_s = root.to_str().unwrap();
    let o = run(
        batch(
            home.path(),
            &[root_s, "--summarize", "--out", whole.to_str().unwrap()],
        ),
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let sharded = home.path().join("sharded");
    let children: Vec<Child> = (1..=4)
        .map(|k| {
            let mut cmd = batch(
                home.path(),
                &[
                    root_s,
                    "--summarize",
                    "--out",
                    sharded.to_str().unwrap(),
                    "--shard",
                    &format!("{k}/4"),
                ],
            );
            cmd.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(outputs(&sharded), outputs(&whole));
    let r = records(&sharded);
    assert_eq!(r.len(), 12, "each document exactly once");
    let shards: std::collections::BTreeSet<String> = r
        .iter()
        .map(|x| x["shard"].as_str().unwrap().to_string())
        .collect();
    assert!(shards.len() > 1, "{shards:?}");
    // An unsharded rerun sees the shards' manifests: nothing left to do.
    let o = run(
        batch(
            home.path(),
            &[root_s, "--summarize", "--out", sharded.to_str().unwrap()],
        ),
        None,
    );
    assert!(o.status.success());
    assert_eq!(records(&sharded).len(), 12);
}

#[test]
fn two_runs_on_one_folder_do_each_item_once() {
    let home = tempfile::tempdir().unwrap();
    let root = articles(home.path(), 10);
    let out = home.path().join("out");
    let args = [
        root.to_str().unwrap(),
        "--summarize",
        "--out",
        out.to_str().unwrap(),
    ];
    let children: Vec<Child> = (0..2)
        .map(|_| {
            batch(home.path(), &args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let r = records(&out);
    let inputs: std::collections::BTreeSet<&str> =
        r.iter().map(|x| x["input"].as_str().unwrap()).collect();
    assert_eq!((r.len(), inputs.len()), (12, 12));
}

#[cfg(unix)]
#[test]
fn nothing_is_written_outside_the_output_folder() {
    let home = tempfile::tempdir().unwrap();
    let root = articles(home.path(), 2);
    let out = home.path().join("out");
    let elsewhere = home.path().join("elsewhere");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    // A folder of the output tree that is a link to somewhere else.
    std::os::unix::fs::symlink(&elsewhere, out.join("news")).unwrap();
    // An input link pointing outside the input folder, followed (--follow):
    // read, and its output still goes under --out.
    std::os::unix::fs::symlink(home.path().join("outside.txt"), root.join("link.txt")).unwrap();
    std::fs::write(
        home.path().join("outside.txt"),
        "Text outside the folder.\n",
    )
    .unwrap();
    let o = run(
        batch(
            home.path(),
            &[
                root.to_str().unwrap(),
                "--summarize",
                "--out",
                out.to_str().unwrap(),
                "--follow",
            ],
        ),
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    let r = records(&out);
    let escaped = r.iter().find(|x| x["input"] == "news/a0.txt").unwrap();
    assert!(
        escaped["error"]
            .as_str()
            .unwrap()
            .contains("outside the output folder"),
        "{escaped}"
    );
    assert!(out.join("link.summary.md").is_file());
    assert!(!home.path().join("outside.summary.md").exists());
}

/// A glossary is part of a translation's settings: the same one leaves
/// done work alone, another one redoes it.
#[test]
fn another_glossary_redoes_translations() {
    let home = tempfile::tempdir().unwrap();
    let root = articles(home.path(), 2);
    let out = home.path().join("out");
    let (root_s, out_s) = (root.to_str().unwrap(), out.to_str().unwrap());
    let terms = home.path().join("terms.tsv");
    let go = |glossary: &str| {
        std::fs::write(&terms, glossary).unwrap();
        let args = [
            root_s,
            "--translate",
            "de",
            "--out",
            out_s,
            "--glossary",
            terms.to_str().unwrap(),
        ];
        let mut cmd = glot(home.path());
        cmd.args(["batch", "--model", &model()]).args(args);
        let o = run(cmd, None);
        assert!(o.status.success(), "{}", stderr(&o));
        records(&out).len()
    };
    let first = go("tram\tStraßenbahn\n");
    assert!(first > 0);
    assert_eq!(go("tram\tStraßenbahn\n"), first, "nothing to redo");
    assert!(
        go("tram\tTram\n") > first,
        "another glossary redoes the work"
    );
    let last = records(&out).pop().unwrap();
    assert_eq!(last["settings"]["job"]["glossary"][0][1], "Tram", "{last}");
}

/// `--plan` plans every job on every document from the tokenizer alone and
/// adds them up; nothing is written.
#[test]
fn a_folder_is_planned_without_weights() {
    let home = tempfile::tempdir().unwrap();
    let root = articles(home.path(), 3);
    let out = home.path().join("out");
    let broken = crate::util::broken_model(home.path());
    let mut cmd = glot(home.path());
    cmd.args([
        "batch",
        root.to_str().unwrap(),
        "--summarize",
        "--translate",
        "de",
    ]);
    cmd.args(["--out", out.to_str().unwrap(), "--plan", "--format", "json"]);
    cmd.args(["--model", broken.to_str().unwrap(), "--max-context", "1024"]);
    cmd.args(["--words", "20"]);
    let o = run(cmd, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let items = v["items"].as_array().unwrap();
    assert_eq!(v["documents"], 5, "{v}");
    assert_eq!(items.len(), 10, "two jobs per document");
    let calls: u64 = items
        .iter()
        .map(|i| i["calls"].as_u64().unwrap() + i["combine_calls_at_least"].as_u64().unwrap())
        .sum();
    assert_eq!(v["calls"].as_u64().unwrap(), calls);
    assert!(calls >= 10);
    assert!(v["peak"].as_u64().unwrap() <= 1024);
    assert!(v["estimate"].is_null(), "the model never ran here: {v}");
    assert!(!out.exists(), "a plan writes nothing");
    // A context too small for the summaries: the plan says which items a
    // run would fail, and exits non-zero.
    let mut cmd = glot(home.path());
    cmd.args(["batch", root.to_str().unwrap(), "--summarize", "--out"]);
    cmd.args([
        out.to_str().unwrap(),
        "--plan",
        "--model",
        broken.to_str().unwrap(),
    ]);
    cmd.args(["--max-context", "512"]);
    let o = run(cmd, None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("cannot be planned"), "{}", stdout(&o));
    assert!(stdout(&o).contains("no estimated time"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("a run would fail them"),
        "{}",
        stderr(&o)
    );
}

/// Links out of the input folder are passed over unless --follow; a link
/// loop fails in the table, the manifest and the exit code alike; a dry run
/// says what would fail without pointing to a manifest it does not write.
#[cfg(unix)]
#[test]
fn links_out_of_the_folder_and_loops() {
    let home = tempfile::tempdir().unwrap();
    let root = articles(home.path(), 2);
    let elsewhere = home.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("secret.txt"), "Not for the model.\n").unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("etc")).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("secret.txt"), root.join("passwd.txt")).unwrap();
    std::os::unix::fs::symlink(&root, root.join("news/loop")).unwrap();
    let out = home.path().join("out");
    let (root_s, out_s) = (root.to_str().unwrap(), out.to_str().unwrap());

    let dry = run(
        batch(
            home.path(),
            &[root_s, "--summarize", "--out", out_s, "--dry-run"],
        ),
        None,
    );
    assert_eq!(dry.status.code(), Some(1), "{}", stderr(&dry));
    assert!(
        stderr(&dry).contains("1 item(s) would fail"),
        "{}",
        stderr(&dry)
    );
    assert!(!stderr(&dry).contains("manifest"), "{}", stderr(&dry));

    let o = run(
        batch(home.path(), &[root_s, "--summarize", "--out", out_s]),
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let row = stdout(&o)
        .lines()
        .find(|l| l.starts_with("summarize"))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    // DONE COPIED UP-TO-DATE FAILED: four documents, one loop.
    assert_eq!(row, "4 0 0 1", "{}", stdout(&o));
    assert!(stdout(&o).contains("loops back"), "{}", stdout(&o));
    let r = records(&out);
    assert_eq!((count(&r, "done"), count(&r, "failed")), (4, 1));
    let written: Vec<String> = outputs(&out).into_keys().collect();
    assert!(
        !written
            .iter()
            .any(|w| w.starts_with("etc/") || w.starts_with("passwd")),
        "{written:?}"
    );

    let o = run(
        batch(
            home.path(),
            &[root_s, "--summarize", "--out", out_s, "--follow"],
        ),
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let written: Vec<String> = outputs(&out).into_keys().collect();
    assert!(
        written.contains(&"etc/secret.summary.md".to_string()),
        "{written:?}"
    );
    assert!(
        written.contains(&"passwd.summary.md".to_string()),
        "{written:?}"
    );
}

/// Records by (document, job), without the times.
fn records_by_item(out: &Path) -> BTreeMap<(String, String), serde_json::Value> {
    records(out)
        .into_iter()
        .map(|mut r| {
            let key = (
                r["input"].as_str().unwrap().to_string(),
                r["task"].as_str().unwrap().to_string(),
            );
            let o = r.as_object_mut().unwrap();
            for varying in ["seconds", "finished"] {
                o.remove(varying);
            }
            (key, r)
        })
        .collect()
}

/// At `--parallel 4` several documents decode together: the outputs and
/// the records are those of one document at a time, with a long document
/// (many calls) and a failing one among them, and without any output that
/// lacks its record.
#[test]
fn documents_decoded_together_give_the_outputs_of_one_at_a_time() {
    let home = tempfile::tempdir().unwrap();
    let root = articles(home.path(), 7);
    std::fs::write(root.join("long.txt"), crate::parallel::long_article()).unwrap();
    std::fs::write(root.join("empty.txt"), "  \n\n").unwrap();
    // Two documents with one output name: the second fails, as one at a time.
    std::fs::write(root.join("twin.md"), "The twin of the tram line.\n").unwrap();
    std::fs::write(root.join("twin.txt"), "The tram line's twin.\n").unwrap();
    let run_at = |parallel: &str| {
        let out = home.path().join(format!("out{parallel}"));
        let (root, out_s) = (root.to_str().unwrap(), out.to_str().unwrap());
        let args = [
            root,
            "--summarize",
            "--translate",
            "de",
            "--max-context",
            "512",
            "--parallel",
            parallel,
            "--out",
            out_s,
        ];
        let o = run(batch(home.path(), &args), None);
        assert_eq!(o.status.code(), Some(1), "{parallel}: {}", stderr(&o));
        consistent(&out, true);
        out
    };
    let one = run_at("1");
    let four = run_at("4");
    let expected = outputs(&one);
    assert_eq!(expected.len(), 23, "{:?}", expected.keys());
    assert_eq!(outputs(&four), expected);
    let (a, b) = (records_by_item(&one), records_by_item(&four));
    assert_eq!(a.len(), 26);
    assert_eq!(count(&a.values().cloned().collect::<Vec<_>>(), "failed"), 3);
    assert_eq!(a, b);
}

/// A signal during a run at `--parallel 4` lets the documents begun end
/// and record, takes no new one, and the next run finishes the rest.
#[test]
fn documents_decoded_together_stop_cleanly_and_resume() {
    let home = tempfile::tempdir().unwrap();
    let root = articles(home.path(), 12);
    let both = |out: &Path, parallel: &str| {
        let (root, out) = (root.to_str().unwrap(), out.to_str().unwrap());
        let args = [root, "--summarize", "--translate", "fr", "--out", out];
        let mut cmd = batch(home.path(), &args);
        cmd.args(["--parallel", parallel]);
        cmd
    };
    let reference = home.path().join("reference");
    let o = run(both(&reference, "1"), None);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = outputs(&reference);
    let out = home.path().join("out");
    let mut child = both(&out, "4")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while records_exist(&out) == 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "-INT");
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let done = records(&out).len();
    assert!(done < expected.len(), "the run finished before the signal");
    consistent(&out, true);
    let o = run(both(&out, "4"), None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(outputs(&out), expected);
}
