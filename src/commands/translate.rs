//! `glot translate`.

use std::time::Instant;

use anyhow::Result;
use glot::engine::ModelInfo;
use glot::task::translate::{self, Request, Translation};
use glot::text::lang::{Detected, Language};
use serde::Serialize;

use super::{emit, emit_live, read, show_plan, PlanReport, Provenance, Read, Timings};
use crate::live::Live;
use crate::model::{Leg, Logged, Need, Resolved, Translator};
use crate::printer::Printer;
use crate::progress::Parts;
use crate::settings::{ModelSettings, TranslateSettings};
use crate::speed;
use glot::markup::Markup;
use glot::prompt::Prompts;

/// "line 3" or "lines 3, 7, 12" of the flags of one kind.
fn lines(flags: &[glot::task::translate::Flag], kind: &str) -> String {
    let at: Vec<String> = flags
        .iter()
        .filter(|f| f.kind == kind)
        .map(|f| f.line.to_string())
        .collect();
    match at.len() {
        1 => format!("line {}", at[0]),
        _ => format!("lines {}", at.join(", ")),
    }
}

#[derive(Serialize)]
struct Report<'a> {
    task: &'static str,
    input: &'a str,
    input_format: glot::markup::Format,
    model: &'a ModelInfo,
    /// As given with --from, else as detected from the whole article.
    source_language: Option<&'a Language>,
    detected_language: Option<&'a Detected>,
    target_language: &'a Language,
    #[serde(flatten)]
    translation: &'a Translation,
    timings: Timings,
    /// With `--format json` only: hashing local model files takes a read.
    #[serde(skip_serializing_if = "Option::is_none")]
    reproduce: Option<Provenance>,
}

/// Translates `markup` with a translation model sentence by sentence, or
/// with a chat model chunk by chunk.
#[allow(clippy::too_many_arguments)]
pub fn with_engine(
    model: &Resolved,
    m: &ModelSettings,
    prompts: &Prompts,
    markup: &Markup,
    source: Option<&Language>,
    target: &Language,
    printer: &Printer,
    live: Option<&mut Live>,
) -> Result<(Translation, ModelInfo)> {
    let (t, info, parts) = match model.legs(source, target, printer)? {
        Some(legs) => {
            let mut engine = Translator::load(legs, target, m, printer)?;
            let parts = Parts::new(printer, "sentence");
            if let Some(p) = &parts {
                let (plan, _) = engine.plan(markup)?;
                let tokens = plan.calls.iter().map(|c| c.text_tokens).sum();
                p.expect(plan.calls.len(), Some(tokens));
            }
            let t = match live {
                Some(l) => {
                    l.set_parts(parts.clone());
                    let show: &mut dyn FnMut(&str) = &mut |t| l.show(t);
                    engine.translate_live(markup, target, printer, parts.clone(), Some(show))
                }
                None => engine.translate_live(markup, target, printer, parts.clone(), None),
            };
            (t, engine.info(), parts)
        }
        None => {
            let mut llm = model.llm(m, printer, true)?;
            let req = Request::new(source, target);
            let parts = Parts::new(printer, "part");
            if let Some(p) = &parts {
                let plan = translate::plan(&llm, prompts, markup, &req)?;
                let tokens = plan.calls.iter().map(|c| c.text_tokens).sum();
                p.expect(plan.calls.len(), Some(tokens));
            }
            let together = glot::engine::ChatModel::decodes_together(&llm);
            let t = match live {
                // Calls decoded together are looked at as each is
                // answered, through a second handle on the model: the
                // model goes to a thread of its own meanwhile.
                Some(l) if together => {
                    l.set_parts(parts.clone());
                    llm.serve(|hub| {
                        let mut client = hub.client();
                        let mut logged =
                            Logged::new(&mut client, printer).with_parts(parts.clone());
                        translate::translate_live(&mut logged, prompts, markup, &req, &mut |t| {
                            l.show(t)
                        })
                    })
                    .and_then(|t| t)
                }
                Some(l) => {
                    l.set_parts(parts.clone());
                    let mut logged = Logged::new(&mut llm, printer).with_parts(parts.clone());
                    translate::translate_live(&mut logged, prompts, markup, &req, &mut |t| {
                        l.show(t)
                    })
                }
                None => {
                    let mut logged = Logged::new(&mut llm, printer).with_parts(parts.clone());
                    translate::translate(&mut logged, prompts, markup, &req)
                }
            };
            (t, llm.info().clone(), parts)
        }
    };
    if let Some(p) = &parts {
        p.clear();
    }
    Ok((t?, info))
}

/// What `--plan` reports for a translation model.
#[derive(Serialize)]
struct SentencePlan<'a> {
    task: &'static str,
    input: &'a str,
    /// The model, or the chain of models.
    model: &'a ModelInfo,
    /// Every sentence (or piece of one) the first model is sent; `context`
    /// is the most source tokens it takes.
    #[serde(flatten)]
    plan: &'a glot::task::Plan,
    batch_size: usize,
    batches: usize,
    /// The model that then translates the first one's English, if any.
    then: Option<&'a str>,
    estimate: Option<speed::Estimate>,
}

/// `--plan` with a translation model: the sentences it will be sent, from
/// its vocabulary alone.
fn plan_sentences(
    s: &TranslateSettings,
    legs: Vec<Leg>,
    input: &str,
    markup: &Markup,
) -> Result<()> {
    let engine = Translator::load_for_planning(legs, &s.target, &s.doc.model)?;
    let (plan, batches) = engine.plan(markup)?;
    let info = engine.info();
    let models: Vec<&ModelInfo> = engine.models().collect();
    let estimate = engine.estimate(&[&plan]);
    let report = SentencePlan {
        task: "translate",
        input,
        model: &info,
        plan: &plan,
        batch_size: s.doc.model.batch_size,
        batches,
        then: models.get(1).map(|m| m.id.as_str()),
        estimate: estimate.as_ref().ok().cloned(),
    };
    let mut t = super::plan_table(
        &plan,
        ["SENTENCE", "SOURCE IDS"],
        "part of a sentence too long for the model, cut between words",
    );
    let longest = plan
        .calls
        .iter()
        .map(|c| c.prompt_tokens)
        .max()
        .unwrap_or(0);
    t.push_str(&format!(
        "{} sentence(s) in {batches} batch(es) of up to {}; the longest is given {longest} of the {} source tokens {} takes: nothing is cut\n",
        plan.calls.len(),
        s.doc.model.batch_size,
        plan.context,
        models[0].id
    ));
    if let Some(then) = report.then {
        t.push_str(&format!(
            "then {then} translates the English of each sentence (what it is given depends on the first model's answers)\n"
        ));
    }
    t.push_str(&match &estimate {
        Ok(e) => e.describe(false),
        Err(why) => why.clone(),
    });
    emit(&s.doc.output, &t, &report)
}

pub fn run(s: TranslateSettings, printer: &Printer) -> Result<()> {
    let start = Instant::now();
    let Read {
        doc,
        mut article,
        prompts,
    } = read(&s.doc, printer)?;
    article.markup.protect_terms(&s.glossary);
    let source = article.source(s.source.as_ref());
    let markup = &article.markup;
    let detected = &article.detected;
    if let Some(d) = detected.as_ref().filter(|d| d.reliable) {
        if glot::text::lang::same_language(&d.language.code, &s.target.code) && s.source.is_none() {
            printer.warn(format!(
                "the article already seems to be in {}",
                d.language.name
            ));
        }
    }
    let model = Resolved::new(
        &s.doc.model,
        Need::Translations,
        s.doc.model.offline,
        printer,
    )?;
    let prompts = model.prompts(prompts)?;
    if s.doc.plan {
        if let Some(legs) = model.legs(source, &s.target, printer)? {
            return plan_sentences(&s, legs, &doc.name, markup);
        }
        let planner = model.planner(&s.doc.model)?;
        let req = Request::new(source, &s.target);
        let plan = translate::plan(planner.get(), &prompts, markup, &req)?;
        let report = PlanReport::new(
            "translate",
            &doc.name,
            planner.info(),
            &plan,
            speed::translation_answer,
            s.doc.model.parallel,
        );
        return show_plan(&s.doc.output, &report);
    }
    let sentences = model.translates_sentences();
    let out = &s.doc.output;
    let mut live = Live::new(s.doc.stream, out.path.is_none() && !out.json, None);
    let (t, info) = with_engine(
        &model,
        &s.doc.model,
        &prompts,
        markup,
        source,
        &s.target,
        printer,
        live.as_mut(),
    )?;
    if t.retried_chunks > 0 {
        printer.info(format!(
            "{} chunk(s) came back with the wrong number of paragraphs and were redone paragraph by paragraph",
            t.retried_chunks
        ));
    }
    if t.untranslated > 0 {
        printer.warn(format!(
            "{} paragraph(s) or part(s) are left untranslated: the model's answers were empty or repeated the prompt's own words{}; {}",
            t.untranslated,
            if t.broken_markup > 0 {
                format!(
                    ", or lost the placeholders of their formatting, links or code ({})",
                    t.broken_markup
                )
            } else {
                String::new()
            },
            lines(&t.flags, "untranslated")
        ));
    }
    if t.wrong_language > 0 {
        printer.warn(format!(
            "{} answer(s) do not seem to be in {}, even when asked again; {}",
            t.wrong_language,
            s.target.name,
            lines(&t.flags, "wrong_language")
        ));
    }
    for f in t
        .flags
        .iter()
        .filter(|f| !matches!(f.kind.as_str(), "untranslated" | "wrong_language"))
    {
        printer.warn(format!("line {}: {}", f.line, f.detail));
    }
    super::warn_loops(printer, &t.usage);
    if t.usage.capped_calls > 0 {
        printer.warn(if sentences {
            format!(
                "{} sentence(s) reached their length cap: parts of the translation may be incomplete",
                t.usage.capped_calls
            )
        } else {
            format!(
                "{} of {} model call(s) reached their length cap: parts of the translation may be incomplete",
                t.usage.capped_calls, t.usage.calls
            )
        });
    }
    printer.info(format!(
        "{} unit(s) of text in {} chunk(s) or batch(es), {} model call(s)",
        t.paragraphs, t.chunks, t.usage.calls
    ));
    let report = Report {
        task: "translate",
        input: &doc.name,
        input_format: markup.format(),
        model: &info,
        source_language: source,
        detected_language: detected.as_ref(),
        target_language: &s.target,
        translation: &t,
        timings: Timings::of(&info, &t.usage, start),
        reproduce: s
            .doc
            .output
            .json
            .then(|| {
                Provenance::of(
                    &info,
                    (!sentences).then_some(&prompts),
                    &s.doc.model,
                    true,
                    sentences,
                )
            })
            .transpose()?,
    };
    report.timings.report(printer);
    speed::remember(&info, &t.usage, &s.doc.model, printer);
    emit_live(&s.doc.output, live, &t.text, &report, printer)
}
