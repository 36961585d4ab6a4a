//! `glot summarize`.

use std::time::Instant;

use anyhow::Result;
use glot::engine::ModelInfo;
use glot::task::summarize::{self, Request, Summary};
use glot::text::lang::{Detected, Language};
use serde::Serialize;

use super::{emit_live, read, show_plan, warn_loops, PlanReport, Provenance, Read, Timings};
use crate::live::Live;
use crate::model::{Logged, Need, Resolved};
use crate::printer::Printer;
use crate::progress::Parts;
use crate::settings::SummarizeSettings;
use crate::speed;

#[derive(Serialize)]
struct Report<'a> {
    task: &'static str,
    input: &'a str,
    input_format: glot::markup::Format,
    model: &'a ModelInfo,
    /// Detected from the whole article.
    source_language: Option<&'a Detected>,
    /// The summary's language: asked for, or the article's when detected reliably.
    language: Option<&'a Language>,
    words: usize,
    max_tokens: usize,
    #[serde(flatten)]
    summary: &'a Summary,
    timings: Timings,
    /// With `--format json` only: hashing local model files takes a read.
    #[serde(skip_serializing_if = "Option::is_none")]
    reproduce: Option<Provenance>,
}

pub fn run(s: SummarizeSettings, printer: &Printer) -> Result<()> {
    let start = Instant::now();
    let Read {
        doc,
        article,
        prompts,
    } = read(&s.doc, printer)?;
    // Naming the article's language beats "the same language as the
    // article", but only when the detector vouches for it.
    let language = s.language.as_ref().or(article.language());
    let main_text = &article.main_text;
    let req = Request::new(language, s.length, s.cite);
    let model = Resolved::new(&s.doc.model, Need::Answers, s.doc.model.offline, printer)?;
    model.check_summary_options(s.language.as_ref(), s.cite)?;
    let prompts = model.prompts(prompts)?;
    if s.doc.plan {
        let planner = model.planner(&s.doc.model)?;
        let plan = summarize::plan(planner.get(), &prompts, main_text, &req)?;
        let report = PlanReport::new(
            "summarize",
            &doc.name,
            planner.info(),
            &plan,
            speed::summary_answer,
            s.doc.model.parallel,
        );
        return show_plan(&s.doc.output, &report);
    }
    let mut llm = model.chat(&s.doc.model, printer, true)?;
    let parts = Parts::new(printer, "part");
    if let Some(p) = &parts {
        let plan = summarize::plan(llm.get(), &prompts, main_text, &req)?;
        p.expect(plan.calls.len() + plan.combine_calls_at_least, None);
    }
    let out = &s.doc.output;
    let mut live = Live::new(s.doc.stream, out.path.is_none() && !out.json, parts.clone());
    let mut logged = Logged::new(llm.model(), printer).with_parts(parts.clone());
    let summary = match &mut live {
        Some(live) => summarize::summarize_live(&mut logged, &prompts, main_text, &req, &mut |t| {
            live.show(t)
        }),
        None => summarize::summarize(&mut logged, &prompts, main_text, &req),
    };
    if let Some(p) = &parts {
        p.clear();
    }
    let summary = summary?;
    printer.info(format!(
        "{} chunk(s), {} reduce round(s), {} model call(s), {} tokens generated",
        summary.chunks, summary.rounds, summary.usage.calls, summary.usage.generated_tokens
    ));
    if summary.text.trim().is_empty() {
        printer.warn("the model returned an empty summary");
    }
    warn_loops(printer, &summary.usage);
    if summary.repeated_sentences > 0 {
        printer.warn(format!(
            "the model wrote {} sentence(s) of the summary a second time: the copies were dropped",
            summary.repeated_sentences
        ));
    }
    if summary.prompt_lines > 0 {
        printer.warn(format!(
            "the model repeated the prompt's own words in {} line(s) of the summary, even when asked again: those lines were dropped",
            summary.prompt_lines
        ));
    }
    if summary.cut {
        printer.warn(
            "the summary did not end on its own (length cap or a loop): it was cut back to its last full sentence",
        );
    }
    if let Some(l) = language.filter(|_| summary.wrong_language) {
        printer.warn(format!(
            "the summary does not seem to be in {}, even when asked again",
            l.name
        ));
    }
    let mut text = summary.text.clone();
    if let Some(c) = &summary.citations {
        if c.uncited > 0 {
            printer.warn(format!(
                "{} of {} bullet point(s) name no part of the article they come from",
                c.uncited,
                c.bullets.len()
            ));
        }
        let legend: Vec<String> = c
            .parts
            .iter()
            .enumerate()
            .map(|(i, [a, b])| format!("[{}] lines {a}–{b}", i + 1))
            .collect();
        text = format!(
            "{}\n\nParts of the article: {}",
            text.trim_end(),
            legend.join("; ")
        );
    }
    let report = Report {
        task: "summarize",
        input: &doc.name,
        input_format: article.markup.format(),
        model: llm.info(),
        source_language: article.detected.as_ref(),
        language,
        words: s.length.words,
        max_tokens: s.length.max_tokens(),
        summary: &summary,
        timings: Timings::of(llm.info(), &summary.usage, start),
        reproduce: s
            .doc
            .output
            .json
            .then(|| Provenance::of(llm.info(), Some(&prompts), &s.doc.model, true, false))
            .transpose()?,
    };
    report.timings.report(printer);
    speed::remember(llm.info(), &summary.usage, &s.doc.model, printer);
    emit_live(&s.doc.output, live, &text, &report, printer)
}
