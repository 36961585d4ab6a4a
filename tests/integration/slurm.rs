//! `glot batch --shard auto` under a real Slurm: the README's job-array
//! script as written, a stepped array and a partial resubmission, each
//! compared with one unsharded run. It needs a Slurm cluster that takes
//! jobs from this user (`.ci/slurm` starts a one-node one on this machine);
//! without `sbatch`, or without a cluster, the test fails.

use std::path::Path;
use std::process::Command;

use crate::batch::{articles, outputs};
use crate::util::{glot, model_dir, run, stderr};

/// The job script of the README, with its folders replaced by these.
fn readme_script(articles: &Path, out: &Path) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let script = readme
        .split("```bash\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .find(|block| block.contains("#SBATCH --array"))
        .expect("a job-array script in the README");
    assert!(script.contains("/shared/articles") && script.contains("/shared/out"));
    script
        .replace("/shared/articles", articles.to_str().unwrap())
        .replace("/shared/out", out.to_str().unwrap())
}

/// Submits `script` with `args` and waits for every task; the tasks run
/// glot from this build, on the fixture model.
fn sbatch(home: &Path, script: &str, args: &[&str], shards: Option<&str>) -> bool {
    let path = home.join(format!("job-{}.sh", std::process::id()));
    std::fs::write(&path, script).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_glot")).parent().unwrap();
    let path_var = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let logs = home.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut cmd = Command::new("timeout");
    cmd.args(["600", "sbatch", "--wait", "--quiet"])
        .arg(format!("--chdir={}", home.display()))
        .arg(format!("--output={}/%A_%a.out", logs.display()))
        // One thread a task: eight tasks of eight threads each would crowd
        // a small machine's cores far beyond what the test needs.
        .arg("--cpus-per-task=1")
        .args(args)
        .arg(&path)
        .env_clear()
        .env("PATH", path_var)
        .env("HOME", home)
        .env("HF_HOME", home.join("hf"))
        .env("GLOT_MODEL", model_dir("qwen3"))
        .env("NO_COLOR", "1");
    if let Some(n) = shards {
        cmd.env("GLOT_SHARD_COUNT", n);
    }
    let out = cmd.output().expect("sbatch runs (see .ci/slurm)");
    let ok = out.status.success();
    if !ok {
        eprintln!("sbatch {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        for log in std::fs::read_dir(&logs).unwrap() {
            let log = log.unwrap().path();
            eprintln!(
                "{}: {}",
                log.display(),
                std::fs::read_to_string(&log).unwrap()
            );
        }
    }
    ok
}

#[test]
fn job_arrays_do_every_document_once() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let root = articles(h, 12);
    // One unsharded run, on more threads than each task of the arrays.
    let reference = h.join("reference");
    let mut one = glot(h);
    one.args([
        "batch",
        root.to_str().unwrap(),
        "--summarize",
        "--translate",
        "fr",
    ]);
    one.args(["--out", reference.to_str().unwrap(), "--threads", "2"]);
    one.env("GLOT_MODEL", model_dir("qwen3"));
    let o = run(one, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = outputs(&reference);
    // Twelve texts, a Markdown file and an HTML page, each summarized and
    // translated.
    assert_eq!(want.len(), 28, "{:?}", want.keys());

    // The README's script as written: `--array=0-7`.
    let out = h.join("readme");
    assert!(sbatch(h, &readme_script(&root, &out), &[], None));
    assert_eq!(outputs(&out), want);

    // A stepped array: tasks 0, 2, …, 14 are the eight shards, with or
    // without GLOT_SHARD_COUNT.
    for shards in [None, Some("8")] {
        let out = h.join(format!("stepped-{}", shards.unwrap_or("none")));
        let script = readme_script(&root, &out);
        assert!(sbatch(h, &script, &["--array=0-14:2"], shards));
        assert_eq!(outputs(&out), want, "GLOT_SHARD_COUNT={shards:?}");
    }

    // Shards 3 and 5 of eight never ran; resubmitting them as the README
    // says finishes the run. Without GLOT_SHARD_COUNT, such an array is
    // refused rather than guessed at.
    let out = h.join("partial");
    let script = readme_script(&root, &out);
    assert!(sbatch(h, &script, &["--array=0-2,4,6-7"], Some("8")));
    let before = outputs(&out);
    assert!(before.len() < want.len(), "shards 3 and 5 have documents");
    assert!(!sbatch(h, &script, &["--array=3,5"], None));
    assert_eq!(outputs(&out), before);
    assert!(sbatch(h, &script, &["--array=3,5"], Some("8")));
    assert_eq!(outputs(&out), want);
}
