//! `glot eval` and its metrics against the numbers sacreBLEU and
//! rouge-score compute (tests/fixtures/metrics.json, written by
//! tests/fixtures/metrics.py).

use glot::eval::{bleu, chrf, rouge};
use serde::Deserialize;
use serde_json::Value;

use crate::util::{fixtures, glot, run, run_into_closed_pipe, stderr, stdout};

#[derive(Deserialize)]
struct Reference {
    pairs: Vec<PairRef>,
    tokens_13a: Vec<Vec<String>>,
    corpus: Corpus,
    subsets: Vec<Subset>,
    rouge: Vec<Value>,
}

#[derive(Deserialize)]
struct PairRef {
    hyp: String,
    #[serde(rename = "ref")]
    reference: String,
}

#[derive(Deserialize)]
struct Corpus {
    bleu: BleuRef,
    chrf: f64,
}

#[derive(Deserialize)]
struct BleuRef {
    score: f64,
    precisions: Vec<f64>,
    brevity_penalty: f64,
    hyp_len: usize,
    ref_len: usize,
}

#[derive(Deserialize)]
struct Subset {
    pairs: Vec<usize>,
    bleu: f64,
    chrf: f64,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(fixtures().join("metrics.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// sacreBLEU and glot do the same float operations in the same order, up
/// to summation order of a few terms.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + b.abs())
}

#[test]
fn tokens_13a_equal_sacrebleus() {
    let r = reference();
    let lines = r.pairs.iter().flat_map(|p| [&p.hyp, &p.reference]);
    for (line, want) in lines.zip(&r.tokens_13a) {
        assert_eq!(&bleu::tokenize_13a(line), want, "{line:?}");
    }
}

#[test]
fn corpus_bleu_and_chrf_equal_sacrebleus() {
    let r = reference();
    let hyps: Vec<&str> = r.pairs.iter().map(|p| p.hyp.as_str()).collect();
    let refs: Vec<&str> = r.pairs.iter().map(|p| p.reference.as_str()).collect();
    let b = bleu::corpus_bleu(&hyps, &refs);
    let want = &r.corpus.bleu;
    assert!(close(b.score, want.score), "{} vs {}", b.score, want.score);
    for (p, w) in b.precisions.iter().zip(&want.precisions) {
        assert!(close(*p, *w), "{:?} vs {:?}", b.precisions, want.precisions);
    }
    assert!(close(b.brevity_penalty, want.brevity_penalty));
    assert_eq!((b.hyp_len, b.ref_len), (want.hyp_len, want.ref_len));
    let c = chrf::corpus_chrf(&hyps, &refs);
    assert!(
        close(c.score, r.corpus.chrf),
        "{} vs {}",
        c.score,
        r.corpus.chrf
    );
    assert!(!r.subsets.is_empty());
    for s in &r.subsets {
        let h: Vec<&str> = s.pairs.iter().map(|&i| hyps[i]).collect();
        let rf: Vec<&str> = s.pairs.iter().map(|&i| refs[i]).collect();
        let (b, c) = (bleu::corpus_bleu(&h, &rf), chrf::corpus_chrf(&h, &rf));
        assert!(
            close(b.score, s.bleu),
            "{:?}: {} vs {}",
            s.pairs,
            b.score,
            s.bleu
        );
        assert!(
            close(c.score, s.chrf),
            "{:?}: {} vs {}",
            s.pairs,
            c.score,
            s.chrf
        );
    }
}

#[test]
fn rouge_equals_rouge_scores() {
    let r = reference();
    for (p, want) in r.pairs.iter().zip(&r.rouge) {
        let got = serde_json::to_value(rouge::score(&p.hyp, &p.reference)).unwrap();
        for metric in ["rouge1", "rouge2", "rougeL"] {
            for part in ["precision", "recall", "f1"] {
                let (g, w) = (
                    got[metric][part].as_f64().unwrap(),
                    want[metric][part].as_f64().unwrap(),
                );
                assert!(close(g, w), "{:?} {metric} {part}: {g} vs {w}", p.hyp);
            }
        }
    }
}

#[test]
fn eval_commands_score_files_and_folders() {
    let r = reference();
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    let write = |path: &str, lines: Vec<&str>| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    };
    let hyps: Vec<&str> = r.pairs.iter().map(|p| p.hyp.as_str()).collect();
    let refs: Vec<&str> = r.pairs.iter().map(|p| p.reference.as_str()).collect();
    write("hyp.txt", hyps.clone());
    write("ref.txt", refs.clone());
    let mut cmd = glot(dir);
    cmd.args(["eval", "translate", "--hyp", "hyp.txt", "--ref", "ref.txt"]);
    cmd.args(["--format", "json"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["segments"], r.pairs.len());
    assert!(close(
        v["bleu"]["score"].as_f64().unwrap(),
        r.corpus.bleu.score
    ));
    assert!(close(v["chrf"]["score"].as_f64().unwrap(), r.corpus.chrf));

    // Folders: the corpus is every line of every file, and each file is
    // scored on its own.
    write("hyps/a.txt", hyps[..6].to_vec());
    write("hyps/b/c.txt", hyps[6..].to_vec());
    write("refs/a.txt", refs[..6].to_vec());
    write("refs/b/c.txt", refs[6..].to_vec());
    let mut cmd = glot(dir);
    cmd.args(["eval", "translate", "--hyp", "hyps", "--ref", "refs"]);
    cmd.args(["--format", "json"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(close(
        v["bleu"]["score"].as_f64().unwrap(),
        r.corpus.bleu.score
    ));
    let first = &r.subsets[0];
    assert_eq!(first.pairs, (0..6).collect::<Vec<_>>());
    assert_eq!(v["files"][0]["file"], "a.txt");
    assert!(close(v["files"][0]["bleu"].as_f64().unwrap(), first.bleu));
    assert!(close(v["files"][0]["chrf"].as_f64().unwrap(), first.chrf));

    // Summaries named as glot batch names them pair with their references.
    for (i, p) in r.pairs.iter().enumerate().take(3) {
        write(&format!("sums/doc{i}.summary.md"), vec![p.hyp.as_str()]);
        write(&format!("gold/doc{i}.txt"), vec![p.reference.as_str()]);
    }
    let mut cmd = glot(dir);
    cmd.args(["eval", "summarize", "--hyp", "sums", "--ref", "gold"]);
    cmd.args(["--format", "json"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["documents"], 3);
    let mean: f64 = r.rouge[..3]
        .iter()
        .map(|s| s["rougeL"]["f1"].as_f64().unwrap())
        .sum::<f64>()
        / 3.0;
    assert!(close(v["mean"]["rougeL"]["f1"].as_f64().unwrap(), mean));
    // The text report names the three scores (`--refs` is `--ref`).
    let mut cmd = glot(dir);
    cmd.args(["eval", "summarize", "--hyp", "sums", "--refs", "gold"]);
    let out = run(cmd, None);
    let text = stdout(&out);
    assert!(
        text.contains("ROUGE-1") && text.contains("ROUGE-L"),
        "{text}"
    );

    // Reports into a pipe that is closed (`glot eval … | head -1`) end
    // quietly with success, as `cat` does, in every format.
    for args in [
        ["eval", "translate", "--hyp", "hyp.txt", "--ref", "ref.txt"],
        ["eval", "summarize", "--hyp", "sums", "--ref", "gold"],
    ] {
        for format in ["text", "json"] {
            let mut cmd = glot(dir);
            cmd.args(args).args(["--format", format]);
            let out = run_into_closed_pipe(cmd);
            assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
            assert_eq!(stderr(&out), "", "{args:?}");
        }
    }
}

#[test]
fn eval_refuses_what_it_cannot_pair() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    std::fs::write(dir.join("h.txt"), "one\ntwo\n").unwrap();
    std::fs::write(dir.join("r.txt"), "one\n").unwrap();
    std::fs::create_dir(dir.join("d")).unwrap();
    std::fs::write(dir.join("d/x.txt"), "one\n").unwrap();
    std::fs::create_dir(dir.join("e")).unwrap();
    std::fs::write(dir.join("bin"), b"\xff\xfe\xfa").unwrap();
    for (args, needle) in [
        (vec!["--hyp", "h.txt", "--ref", "r.txt"], "2 line(s)"),
        (
            vec!["--hyp", "h.txt", "--ref", "d"],
            "not a file with a folder",
        ),
        (
            vec!["--hyp", "d", "--ref", "e"],
            "no reference of that name",
        ),
        (
            vec!["--hyp", "h.txt", "--ref", "missing.txt"],
            "no such file",
        ),
        (vec!["--hyp", "bin", "--ref", "r.txt"], "not UTF-8"),
    ] {
        let mut cmd = glot(dir);
        cmd.args(["eval", "translate"]).args(&args);
        let out = run(cmd, None);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// With --src, the model translates the lines first; the scores are those
/// of its translations, one per source line, empty lines kept in place.
#[test]
fn eval_translates_with_the_model_then_scores() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    std::fs::write(
        dir.join("src.txt"),
        "The city opened a tram line.\n\nIt cost 410 million euros.\nCritics disagree.\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("ref.txt"),
        "Die Stadt eröffnete eine Straßenbahnlinie.\n\nSie kostete 410 Millionen Euro.\nKritiker widersprechen.\n",
    )
    .unwrap();
    for family in ["marian", "qwen2"] {
        let model = crate::util::model_dir(family);
        let mut cmd = glot(dir);
        cmd.args(["eval", "translate", "--src", "src.txt", "--ref", "ref.txt"]);
        cmd.args(["--to", "de", "--from", "en", "--format", "json"]);
        cmd.args(["--model", model.to_str().unwrap()]);
        let out = run(cmd, None);
        assert!(out.status.success(), "{family}: {}", stderr(&out));
        let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
        let made: Vec<&str> = v["run"]["translations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(made.len(), 4, "{family}: {made:?}");
        assert_eq!(made[1], "", "{family}: the empty line stays empty");
        assert!(made
            .iter()
            .enumerate()
            .all(|(i, t)| i == 1 || !t.is_empty()));
        // The scores are those of these translations.
        let refs = std::fs::read_to_string(dir.join("ref.txt")).unwrap();
        let refs: Vec<&str> = refs.lines().collect();
        let flat: Vec<String> = made.iter().map(|t| t.replace('\n', " ")).collect();
        let flat: Vec<&str> = flat.iter().map(String::as_str).collect();
        let b = bleu::corpus_bleu(&flat, &refs);
        assert!(
            close(v["bleu"]["score"].as_f64().unwrap(), b.score),
            "{family}"
        );
        let c = chrf::corpus_chrf(&flat, &refs);
        assert!(
            close(v["chrf"]["score"].as_f64().unwrap(), c.score),
            "{family}"
        );
    }
}

/// With --docs, the model writes each summary first; the scores are those
/// of its summaries.
#[test]
fn eval_summarizes_with_the_model_then_scores() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    for (name, doc, gold) in [
        (
            "a",
            "The council approved the budget on Monday. Taxes stay the same.",
            "The council approved the budget; taxes unchanged.",
        ),
        (
            "b",
            "The new tram line opened. Thousands rode it on the first day.",
            "A tram line opened and thousands rode it.",
        ),
    ] {
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        std::fs::create_dir_all(dir.join("gold")).unwrap();
        std::fs::write(dir.join(format!("docs/{name}.txt")), doc).unwrap();
        std::fs::write(dir.join(format!("gold/{name}.summary.md")), gold).unwrap();
    }
    let model = crate::util::model_dir("qwen3");
    let mut cmd = glot(dir);
    cmd.args([
        "eval",
        "summarize",
        "--docs",
        "docs",
        "--ref",
        "gold",
        "--words",
        "12",
    ]);
    cmd.args(["--model", model.to_str().unwrap(), "--format", "json"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["documents"], 2);
    let mut f1 = 0.0;
    for f in v["files"].as_array().unwrap() {
        let summary = f["summary"].as_str().unwrap();
        let name = f["file"].as_str().unwrap().replace(".txt", ".summary.md");
        let gold = std::fs::read_to_string(dir.join("gold").join(name)).unwrap();
        let want = rouge::score(summary, &gold);
        assert!(
            close(f["rouge1"]["f1"].as_f64().unwrap(), want.rouge1.f1),
            "{f}"
        );
        f1 += want.rouge_l.f1 / 2.0;
    }
    assert!(close(v["mean"]["rougeL"]["f1"].as_f64().unwrap(), f1));
}

/// A document without text among those summarized is scored as an empty
/// summary: the evaluation goes on and counts it.
#[test]
fn eval_scores_a_document_without_text_and_goes_on() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    std::fs::create_dir_all(dir.join("gold")).unwrap();
    std::fs::write(
        dir.join("docs/a.txt"),
        "The new tram line opened on Monday.",
    )
    .unwrap();
    std::fs::write(dir.join("docs/b.txt"), "").unwrap();
    std::fs::write(dir.join("gold/a.summary.md"), "A tram line opened.").unwrap();
    std::fs::write(dir.join("gold/b.summary.md"), "Nothing.").unwrap();
    let model = crate::util::model_dir("qwen3");
    let mut cmd = glot(dir);
    cmd.args(["eval", "summarize", "--docs", "docs", "--ref", "gold"]);
    cmd.args(["--model", model.to_str().unwrap(), "--format", "json"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["documents"], 2, "{v}");
}
