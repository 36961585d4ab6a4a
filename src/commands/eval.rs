//! `glot eval`: scores of translations (chrF, BLEU) and summaries (ROUGE)
//! against references, computed as sacreBLEU and rouge-score compute them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use glot::eval::{bleu, chrf, rouge};
use glot::Error;
use serde::Serialize;

use crate::printer::Printer;
use crate::settings::{EvalSummarize, EvalTranslate};

/// One hypothesis file and its reference.
struct Pair {
    /// Relative to the folders, or the hypothesis path for two files.
    name: String,
    hyp: String,
    reference: String,
}

#[derive(Serialize)]
struct TranslationScores {
    segments: usize,
    chrf: chrf::Chrf,
    bleu: bleu::Bleu,
    /// Per file, when folders were compared.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    files: Vec<FileScores>,
    /// When the translations were made by the model here.
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<ModelRun>,
}

#[derive(Serialize)]
struct FileScores {
    file: String,
    segments: usize,
    chrf: f64,
    bleu: f64,
}

/// `glot eval translate`: scores the lines of `--hyp`, or first translates
/// the lines of `--src` with the model.
pub fn translate(s: EvalTranslate, printer: &Printer) -> Result<()> {
    match &s.src {
        Some(src) => translate_and_score(&s, src, printer),
        None => {
            let pairs = pairs(
                s.hyp.as_deref().unwrap_or(Path::new("")),
                &s.reference,
                false,
            )?;
            let lined: Vec<(String, Vec<String>, Vec<&str>)> = pairs
                .iter()
                .map(|p| {
                    let h = lines(&p.hyp).into_iter().map(str::to_string).collect();
                    (p.name.clone(), h, lines(&p.reference))
                })
                .collect();
            score_translations(&lined, s.json, None, printer)
        }
    }
}

/// Translates every line of the `src` files (each non-empty line one
/// paragraph of one document, so the model is loaded once) and scores the
/// translations against the references.
fn translate_and_score(s: &EvalTranslate, src: &Path, printer: &Printer) -> Result<()> {
    let target = s
        .target
        .as_ref()
        .ok_or_else(|| Error::Usage("--src needs --to".into()))?;
    let pairs = pairs(src, &s.reference, false)?;
    let mut text = Vec::new();
    for p in &pairs {
        let (h, r) = (lines(&p.hyp), lines(&p.reference));
        check_counts(&p.name, h.len(), r.len())?;
        text.extend(
            h.into_iter()
                .filter(|l| !l.trim().is_empty())
                .map(str::trim),
        );
    }
    if text.is_empty() {
        return Err(Error::Usage("the source holds no text to translate".into()).into());
    }
    let markup = glot::markup::Markup::parse(text.join("\n\n"), glot::markup::Format::Text);
    if markup.units().len() != text.len() {
        return Err(Error::Usage(
            "a source line reads as more than one paragraph; give one segment per line".into(),
        )
        .into());
    }
    let detected = glot::text::lang::detect(&text.join("\n"));
    let source = s
        .source
        .as_ref()
        .or(detected.as_ref().and_then(|d| d.reliable_language()));
    let prompts = glot::prompt::Prompts::load(None)?;
    let model = crate::model::Resolved::new(
        &s.model,
        crate::model::Need::Translations,
        s.model.offline,
        printer,
    )?;
    let (t, info) = super::translate::with_engine(
        &model, &s.model, &prompts, &markup, source, target, printer, None,
    )?;
    let mut out = t.text.trim_end().split("\n\n");
    let mut lined = Vec::new();
    for p in &pairs {
        let h: Vec<String> = lines(&p.hyp)
            .into_iter()
            .map(|l| match l.trim().is_empty() {
                true => String::new(),
                false => out.next().unwrap_or_default().to_string(),
            })
            .collect();
        lined.push((p.name.clone(), h, lines(&p.reference)));
    }
    if out.next().is_some() {
        anyhow::bail!("the translation has more paragraphs than the source has lines");
    }
    let run = ModelRun {
        model: info.id.clone(),
        flags: t.flags.len(),
        untranslated: t.untranslated,
        translations: lined.iter().flat_map(|(_, h, _)| h.clone()).collect(),
    };
    score_translations(&lined, s.json, Some(run), printer)
}

/// What the model did when `glot eval` ran it.
#[derive(Serialize)]
struct ModelRun {
    model: String,
    /// Paragraphs flagged (numbers, sentences, language, kept untranslated).
    flags: usize,
    untranslated: usize,
    /// The translations, one per source line.
    translations: Vec<String>,
}

fn check_counts(name: &str, hyp: usize, reference: usize) -> Result<()> {
    if hyp != reference {
        return Err(Error::Usage(format!(
            "{name}: {hyp} line(s) against {reference} of reference; lines must match one to one"
        ))
        .into());
    }
    Ok(())
}

/// chrF and BLEU of hypothesis lines against reference lines, per file and
/// over all.
fn score_translations(
    pairs: &[(String, Vec<String>, Vec<&str>)],
    json: bool,
    run: Option<ModelRun>,
    printer: &Printer,
) -> Result<()> {
    let mut all_h: Vec<&str> = Vec::new();
    let mut all_r: Vec<&str> = Vec::new();
    let mut files = Vec::new();
    for (name, h, r) in pairs {
        check_counts(name, h.len(), r.len())?;
        let h: Vec<&str> = h.iter().map(String::as_str).collect();
        if pairs.len() > 1 {
            files.push(FileScores {
                file: name.clone(),
                segments: h.len(),
                chrf: chrf::corpus_chrf(&h, r).score,
                bleu: bleu::corpus_bleu(&h, r).score,
            });
        }
        all_h.extend(h);
        all_r.extend(r.iter().copied());
    }
    let scores = TranslationScores {
        segments: all_h.len(),
        chrf: chrf::corpus_chrf(&all_h, &all_r),
        bleu: bleu::corpus_bleu(&all_h, &all_r),
        files,
        run,
    };
    if let Some(r) = scores.run.as_ref().filter(|r| r.flags > 0) {
        printer.warn(format!(
            "{} translated line(s) were flagged ({} kept untranslated); --format json lists the translations",
            r.flags, r.untranslated
        ));
    }
    if json {
        return glot::output::emit(
            None,
            &format!("{}\n", serde_json::to_string_pretty(&scores)?),
        );
    }
    let mut out = String::new();
    for f in &scores.files {
        writeln!(
            out,
            "{:<40} {:>6} segments  chrF2 {:>6.2}  BLEU {:>6.2}",
            f.file, f.segments, f.chrf, f.bleu
        )?;
    }
    let b = &scores.bleu;
    let p = b.precisions.map(|p| format!("{p:.1}")).join("/");
    writeln!(
        out,
        "chrF2 = {:.2}  BLEU = {:.2} ({p}, BP {:.3}, ratio {:.3}, hyp {} / ref {} tokens)  over {} segment(s)",
        scores.chrf.score,
        b.score,
        b.brevity_penalty,
        b.hyp_len as f64 / b.ref_len.max(1) as f64,
        b.hyp_len,
        b.ref_len,
        scores.segments
    )?;
    glot::output::emit(None, &out)
}

#[derive(Serialize)]
struct SummaryScores {
    documents: usize,
    /// Mean of the per-document scores.
    mean: rouge::Rouge,
    files: Vec<SummaryFile>,
}

#[derive(Serialize)]
struct SummaryFile {
    file: String,
    #[serde(flatten)]
    scores: rouge::Rouge,
    /// The summary the model wrote, with --docs.
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
}

/// ROUGE-1/2/L of summaries against references (files, or folders whose
/// files pair by name); with `docs`, the model writes the summaries first.
pub fn summarize(s: EvalSummarize, printer: &Printer) -> Result<()> {
    let json = s.json;
    let (pairs, made) = match &s.docs {
        Some(docs) => {
            let mut pairs = pairs(docs, &s.reference, true)?;
            let model = crate::model::Resolved::new(
                &s.model,
                crate::model::Need::Answers,
                s.model.offline,
                printer,
            )?;
            let mut chat = model.chat(&s.model, printer, true)?;
            let prompts = glot::prompt::Prompts::load(None)?;
            let mut made = Vec::new();
            for p in &mut pairs {
                printer.info(format!("summarizing {}", p.name));
                let format = glot::markup::Format::from_path(&p.name);
                // A document without text is scored as such, not an error
                // that would lose the summaries already made.
                let text =
                    glot::markup::Markup::parse(std::mem::take(&mut p.hyp), format).prose(true);
                let detected = glot::text::lang::detect(&text);
                let language = s
                    .language
                    .as_ref()
                    .or(detected.as_ref().and_then(|d| d.reliable_language()));
                let req = glot::task::summarize::Request::new(language, s.length, false);
                let summary = glot::task::summarize::summarize(chat.model(), &prompts, &text, &req)
                    .map_err(|e| e.context(format!("{}: cannot summarize", p.name)))?;
                p.hyp = summary.text.clone();
                made.push(summary.text);
            }
            (pairs, Some(made))
        }
        None => (
            pairs(
                s.hyp.as_deref().unwrap_or(Path::new("")),
                &s.reference,
                true,
            )?,
            None,
        ),
    };
    let files: Vec<SummaryFile> = pairs
        .iter()
        .zip(
            made.iter()
                .flatten()
                .map(Some)
                .chain(std::iter::repeat(None)),
        )
        .map(|(p, summary)| SummaryFile {
            file: p.name.clone(),
            scores: rouge::score(&p.hyp, &p.reference),
            summary: summary.cloned(),
        })
        .collect();
    let scores = SummaryScores {
        documents: files.len(),
        mean: rouge::Rouge::mean(&files.iter().map(|f| f.scores).collect::<Vec<_>>()),
        files,
    };
    if json {
        return glot::output::emit(
            None,
            &format!("{}\n", serde_json::to_string_pretty(&scores)?),
        );
    }
    let mut out = String::new();
    writeln!(
        out,
        "{:<8} {:>9} {:>9} {:>9}",
        "", "PRECISION", "RECALL", "F1"
    )?;
    let m = &scores.mean;
    for (name, s) in [
        ("ROUGE-1", m.rouge1),
        ("ROUGE-2", m.rouge2),
        ("ROUGE-L", m.rouge_l),
    ] {
        writeln!(
            out,
            "{name:<8} {:>9.2} {:>9.2} {:>9.2}",
            100.0 * s.precision,
            100.0 * s.recall,
            100.0 * s.f1
        )?;
    }
    writeln!(out, "mean over {} document(s)", scores.documents)?;
    glot::output::emit(None, &out)
}

/// Lines of a file's text; a final newline ends the last line rather than
/// starting an empty one.
fn lines(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect()
}

/// Two files, or two folders whose files pair by relative path. With
/// `by_stem`, a file also pairs with the one whose name agrees up to the
/// first dot (`report.summary.md` with `report.txt`), as `glot batch`
/// names summaries.
fn pairs(hyp: &Path, reference: &Path, by_stem: bool) -> Result<Vec<Pair>> {
    match (hyp.is_dir(), reference.is_dir()) {
        (false, false) => Ok(vec![Pair {
            name: hyp.display().to_string(),
            hyp: read(hyp)?,
            reference: read(reference)?,
        }]),
        (true, true) => {
            let refs = files(reference)?;
            let mut pairs = Vec::new();
            for rel in files(hyp)? {
                let found = if refs.contains(&rel) {
                    Some(rel.clone())
                } else if by_stem {
                    let same: Vec<&PathBuf> = refs.iter().filter(|r| same_stem(r, &rel)).collect();
                    match same.as_slice() {
                        [one] => Some((*one).clone()),
                        [] => None,
                        _ => {
                            return Err(Error::Usage(format!(
                                "{}: several references could be its own in {}",
                                rel.display(),
                                reference.display()
                            ))
                            .into())
                        }
                    }
                } else {
                    None
                };
                let Some(r) = found else {
                    return Err(Error::Usage(format!(
                        "{}: no reference of that name in {}",
                        rel.display(),
                        reference.display()
                    ))
                    .into());
                };
                pairs.push(Pair {
                    name: rel.display().to_string(),
                    hyp: read(&hyp.join(&rel))?,
                    reference: read(&reference.join(&r))?,
                });
            }
            if pairs.is_empty() {
                return Err(Error::Usage(format!("{} holds no files", hyp.display())).into());
            }
            Ok(pairs)
        }
        _ => Err(
            Error::Usage("compare two files or two folders, not a file with a folder".into())
                .into(),
        ),
    }
}

/// Whether two relative paths are in the same folder and agree up to the
/// first dot of their names.
fn same_stem(a: &Path, b: &Path) -> bool {
    let stem = |p: &Path| {
        p.file_name().map(|n| {
            n.to_string_lossy()
                .split('.')
                .next()
                .unwrap_or("")
                .to_string()
        })
    };
    a.parent() == b.parent() && stem(a) == stem(b)
}

/// Files under `dir`, relative to it, sorted; hidden files left out.
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| Error::input(dir.display().to_string(), e.to_string()))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if entry.file_type().is_file() && !hidden {
            out.push(entry.path().strip_prefix(dir)?.to_path_buf());
        }
    }
    Ok(out)
}

/// A file's text: UTF-8, a byte-order mark dropped. Empty files are
/// allowed: a model may have produced nothing.
fn read(path: &Path) -> Result<String> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        Error::input(
            &name,
            match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                _ => format!("cannot read: {e}"),
            },
        )
    })?;
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::input(&name, "is not UTF-8 text").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_final_newline_ends_the_last_line() {
        assert_eq!(lines("a\nb\n"), ["a", "b"]);
        assert_eq!(lines("a\r\n\nb"), ["a", "", "b"]);
        assert!(lines("").is_empty());
        assert_eq!(lines("\n"), [""]);
        assert_eq!(lines("\n\n"), ["", ""]);
    }

    #[test]
    fn summaries_pair_with_references_by_stem() {
        assert!(same_stem(
            Path::new("a/report.summary.md"),
            Path::new("a/report.txt")
        ));
        assert!(!same_stem(
            Path::new("a/report.md"),
            Path::new("b/report.md")
        ));
    }
}
