//! `glot batch --plan`: every call the batch would make, from the model's
//! tokenizer and chat template alone, with the totals for the folder.

use anyhow::Result;
use glot::batch::walk::{walk, Entry};
use glot::batch::Job;
use glot::markup::{Format, Markup};
use glot::prompt::Prompts;
use glot::task::{summarize, translate, Plan};
use glot::text::lang;
use serde::Serialize;

use super::super::speed;
use crate::printer::Printer;
use crate::settings::BatchSettings;

#[derive(Serialize)]
struct Item {
    input: String,
    job: String,
    calls: usize,
    prompt_tokens: usize,
    /// Most positions one call uses, prompt and answer.
    peak: usize,
    /// Summaries of several chunks: combine calls come on top.
    combine_calls_at_least: usize,
    /// Why the document cannot be planned (unreadable, no text).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct Report {
    context: usize,
    documents: usize,
    calls: usize,
    prompt_tokens: usize,
    peak: usize,
    /// From this machine's last measured speed with the model, if any.
    estimate: Option<super::super::speed::Estimate>,
    items: Vec<Item>,
}

/// Plans every job on every document of this shard, whatever the manifest
/// says is done: the whole of the work the folder stands for.
pub fn run(s: &BatchSettings, printer: &Printer, json: bool) -> Result<()> {
    if super::mt::choose(&s.model, s.model.offline, printer)?.is_some() {
        return Err(glot::Error::Usage(
            "batch --plan covers chat models; plan a document for a translation model with `glot translate FILE --plan`".into(),
        )
        .into());
    }
    let llm = super::super::load_planner(&s.model, printer)?;
    let prompts = Prompts::load(s.prompts.as_deref())?;
    let mut items = Vec::new();
    let mut plans: Vec<(Plan, speed::Answer)> = Vec::new();
    let mut documents = 0;
    for entry in walk(&s.selection)? {
        let found = match entry {
            Entry::Document(f) if s.shard.owns(&f.relative) => f,
            _ => continue,
        };
        documents += 1;
        let doc = super::read(&found, s.max_bytes)
            .map_err(|e| anyhow::anyhow!(e))
            .and_then(|b| Ok(glot::input::decode(&found.relative, &b, s.lossy)?.0));
        for job in &s.jobs {
            let plan = doc.as_ref().map_err(|e| format!("{e:#}")).and_then(|text| {
                plan_job(s, &llm, &prompts, &found.relative, text, job)
                    .map_err(|e| format!("{e:#}"))
            });
            items.push(match plan {
                Ok(p) => {
                    let item = Item {
                        input: found.relative.clone(),
                        job: job.key(),
                        calls: p.calls.len(),
                        prompt_tokens: p.calls.iter().map(|c| c.prompt_tokens).sum(),
                        peak: p.peak(),
                        combine_calls_at_least: p.combine_calls_at_least,
                        error: None,
                    };
                    plans.push((
                        p,
                        match job {
                            Job::Summarize { .. } => speed::summary_answer,
                            Job::Translate { .. } => speed::translation_answer,
                        },
                    ));
                    item
                }
                Err(e) => Item {
                    input: found.relative.clone(),
                    job: job.key(),
                    calls: 0,
                    prompt_tokens: 0,
                    peak: 0,
                    combine_calls_at_least: 0,
                    error: Some(e),
                },
            });
        }
    }
    let report = Report {
        context: glot::engine::ChatModel::context_length(&llm),
        documents,
        calls: items
            .iter()
            .map(|i| i.calls + i.combine_calls_at_least)
            .sum(),
        prompt_tokens: items.iter().map(|i| i.prompt_tokens).sum(),
        peak: items.iter().map(|i| i.peak).max().unwrap_or(0),
        estimate: speed::recall(llm.info()).map(|v| {
            let plans: Vec<(&Plan, speed::Answer)> = plans.iter().map(|(p, a)| (p, *a)).collect();
            speed::Estimate::of(&plans, v)
        }),
        items,
    };
    let failing = report.items.iter().filter(|i| i.error.is_some()).count();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
        let more = report.items.iter().any(|i| i.combine_calls_at_least > 0);
        println!(
            "{}",
            match &report.estimate {
                Some(e) => e.describe(more),
                None => speed::unknown(llm.info()),
            }
        );
    }
    if failing > 0 {
        // As a run would fail them, so scripts notice before running.
        return Err(glot::Error::Usage(format!(
            "{failing} item(s) cannot be planned: a run would fail them"
        ))
        .into());
    }
    Ok(())
}

fn print_table(report: &Report) {
    println!(
        "{:<40} {:<14} {:>6} {:>13} {:>6}",
        "DOCUMENT", "JOB", "CALLS", "PROMPT TOKENS", "PEAK"
    );
    for i in &report.items {
        match &i.error {
            Some(e) => println!("{:<40} {:<14} cannot be planned: {e}", i.input, i.job),
            None => println!(
                "{:<40} {:<14} {:>6} {:>13} {:>6}",
                i.input,
                i.job,
                if i.combine_calls_at_least > 0 {
                    format!("{}+", i.calls + i.combine_calls_at_least)
                } else {
                    i.calls.to_string()
                },
                i.prompt_tokens,
                i.peak
            ),
        }
    }
    println!(
        "{} document(s): at least {} call(s), {} prompt tokens for the first calls; at most {} of the {} positions of the context used by one call: nothing planned is cut",
        report.documents, report.calls, report.prompt_tokens, report.peak, report.context
    );
}

/// The plan of one job on one document's text, read as the run reads it.
fn plan_job(
    s: &BatchSettings,
    llm: &glot::engine::Llm,
    prompts: &Prompts,
    name: &str,
    text: &str,
    job: &Job,
) -> Result<Plan> {
    let format = s.format.unwrap_or_else(|| Format::from_path(name));
    let mut markup = Markup::parse(text.to_string(), format);
    let main_text = markup.prose(true);
    let detected = lang::detect(&main_text);
    let reliable = detected.as_ref().and_then(|d| d.reliable_language());
    match job {
        Job::Summarize { language, words } => {
            let language = language.as_ref().or(reliable);
            let req = summarize::Request {
                language: language.map(|l| l.name.clone()),
                language_code: language.map(|l| l.code.clone()),
                length: summarize::Length { words: *words },
                cite: false,
            };
            summarize::plan(llm, prompts, &main_text, &req)
        }
        Job::Translate { target } => {
            let source = s.source.clone().or(reliable.cloned());
            if source
                .as_ref()
                .is_some_and(|l| lang::same_language(&l.code, &target.code))
            {
                // Already in the target language: the run copies it.
                return Ok(Plan {
                    context: glot::engine::ChatModel::context_length(llm),
                    ..Plan::default()
                });
            }
            markup.protect_terms(&s.glossary);
            let req = translate::Request {
                target: target.name.clone(),
                target_code: Some(target.code.clone()),
                source: source.map(|l| l.name),
            };
            translate::plan(llm, prompts, &markup, &req)
        }
    }
}
