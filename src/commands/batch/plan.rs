//! `glot batch --plan`: every call the batch would make, from the model's
//! tokenizer and chat template alone, with the totals for the folder.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::Result;
use glot::folder::walk::{walk, Entry};
use glot::folder::Job;
use glot::markup::Format;
use glot::prompt::Prompts;
use glot::task::{summarize, translate, Article, Plan};
use glot::text::lang;
use serde::Serialize;

use crate::model::{Chat, Resolved, Translator};
use crate::printer::Printer;
use crate::settings::BatchSettings;
use crate::speed;

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
    /// Positions of a chat model's context, or the most source tokens a
    /// translation model takes.
    context: usize,
    /// Translation models: calls are batches of sentences, prompt tokens
    /// the sentences' source ids, the peak the longest sentence's.
    sentences: bool,
    documents: usize,
    calls: usize,
    prompt_tokens: usize,
    peak: usize,
    /// From this machine's last measured speed with the model, if any.
    estimate: Option<speed::Estimate>,
    items: Vec<Item>,
}

/// What plans the jobs: a chat model's tokenizer and template, or the
/// vocabularies of the translation models the run would pick per pair.
enum Planner {
    Chat {
        llm: Chat,
        prompts: Prompts,
    },
    Sentences {
        model: Resolved,
        /// By language pair, as the run keys them; with the order they
        /// were first used in.
        translators: HashMap<String, Translator>,
        order: Vec<String>,
    },
}

impl Planner {
    fn plan(
        &mut self,
        s: &BatchSettings,
        printer: &Printer,
        name: &str,
        text: &str,
        job: &Job,
    ) -> Result<Plan> {
        let format = s.format.unwrap_or_else(|| Format::from_path(name));
        let mut article = Article::parse(name, text.to_string(), format)?;
        match self {
            Planner::Chat { llm, prompts } => plan_job(s, llm.get(), prompts, &mut article, job),
            Planner::Sentences {
                model,
                translators,
                order,
            } => {
                let Job::Translate { target } = job else {
                    unreachable!("summaries are refused with translation models")
                };
                let source = article.source(s.source.as_ref()).cloned();
                if source
                    .as_ref()
                    .is_some_and(|l| lang::same_language(&l.code, &target.code))
                {
                    return Ok(Plan::default());
                }
                article.markup.protect_terms(&s.glossary);
                let key = model.translator_key(source.as_ref(), target);
                if !translators.contains_key(&key) {
                    let legs = model
                        .legs(source.as_ref(), target, printer)?
                        .expect("a model that translates sentences");
                    let loaded = Translator::load_for_planning(legs, target, &s.model)?;
                    translators.insert(key.clone(), loaded);
                    order.push(key.clone());
                }
                Ok(translators[&key].plan(&article.markup)?.0)
            }
        }
    }

    /// Model calls of a plan: chat calls, or batches of sentences.
    fn calls(&self, plan: &Plan, batch_size: usize) -> usize {
        match self {
            Planner::Chat { .. } => plan.calls.len(),
            Planner::Sentences { .. } => plan.calls.len().div_ceil(batch_size.max(1)),
        }
    }

    /// Most positions one call uses: prompt and answer of a chat call, or
    /// the source ids of a sentence.
    fn peak(&self, plan: &Plan) -> usize {
        match self {
            Planner::Chat { .. } => plan.peak(),
            Planner::Sentences { .. } => plan
                .calls
                .iter()
                .map(|c| c.prompt_tokens)
                .max()
                .unwrap_or(0),
        }
    }

    /// The time the plans would take, when one model's speed here is known.
    fn estimate(
        &self,
        plans: &[(Plan, speed::Answer)],
        parallel: usize,
    ) -> Result<speed::Estimate, String> {
        let plans: Vec<(&Plan, speed::Answer)> = plans.iter().map(|(p, a)| (p, *a)).collect();
        match self {
            Planner::Chat { llm, .. } => speed::recall(llm.info())
                .map(|v| speed::Estimate::of(&plans, v).with_parallel(parallel))
                .ok_or_else(|| speed::unknown(llm.info())),
            Planner::Sentences {
                translators, order, ..
            } => match order.as_slice() {
                [one] => {
                    translators[one].estimate(&plans.iter().map(|(p, _)| *p).collect::<Vec<_>>())
                }
                [] => Err("no estimated time: nothing to translate".into()),
                many => Err(format!(
                    "no estimated time: the documents go through {} translation models",
                    many.len()
                )),
            },
        }
    }
}

/// Plans every job on every document of this shard, whatever the manifest
/// says is done: the whole of the work the folder stands for.
pub fn run(s: &BatchSettings, printer: &Printer, json: bool) -> Result<()> {
    let model = Resolved::new(&s.model, super::need(s), s.model.offline, printer)?;
    super::check_jobs(s, &model)?;
    let mut planner = match model.translates_sentences() {
        true => {
            super::refuse_summaries(s)?;
            Planner::Sentences {
                model,
                translators: HashMap::new(),
                order: Vec::new(),
            }
        }
        false => Planner::Chat {
            llm: model.planner(&s.model)?,
            prompts: model.prompts(Prompts::load(s.prompts.as_deref())?)?,
        },
    };
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
                planner
                    .plan(s, printer, &found.relative, text, job)
                    .map_err(|e| format!("{e:#}"))
            });
            items.push(match plan {
                Ok(p) => {
                    let item = Item {
                        input: found.relative.clone(),
                        job: job.key(),
                        calls: planner.calls(&p, s.model.batch_size),
                        prompt_tokens: p.calls.iter().map(|c| c.prompt_tokens).sum(),
                        peak: planner.peak(&p),
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
    let estimate = planner.estimate(&plans, s.model.parallel);
    let report = Report {
        context: match &planner {
            Planner::Chat { llm, .. } => llm.get().context_length(),
            Planner::Sentences { .. } => plans.iter().map(|(p, _)| p.context).max().unwrap_or(0),
        },
        sentences: matches!(planner, Planner::Sentences { .. }),
        documents,
        calls: items
            .iter()
            .map(|i| i.calls + i.combine_calls_at_least)
            .sum(),
        prompt_tokens: items.iter().map(|i| i.prompt_tokens).sum(),
        peak: items.iter().map(|i| i.peak).max().unwrap_or(0),
        estimate: estimate.as_ref().ok().cloned(),
        items,
    };
    let failing = report.items.iter().filter(|i| i.error.is_some()).count();
    if json {
        let text = format!("{}\n", serde_json::to_string_pretty(&report)?);
        glot::output::emit(None, &text)?;
    } else {
        let more = report.items.iter().any(|i| i.combine_calls_at_least > 0);
        let estimate = match &estimate {
            Ok(e) => e.describe(more),
            Err(why) => why.clone(),
        };
        glot::output::emit(None, &format!("{}{estimate}\n", table(&report)?))?;
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

/// The plan as a table, one line per item and a total.
fn table(report: &Report) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    let (calls, tokens, peak) = match report.sentences {
        true => ("BATCHES", "SOURCE IDS", "LONGEST"),
        false => ("CALLS", "PROMPT TOKENS", "PEAK"),
    };
    writeln!(
        out,
        "{:<40} {:<14} {:>7} {:>13} {:>7}",
        "DOCUMENT", "JOB", calls, tokens, peak
    )?;
    for i in &report.items {
        match &i.error {
            Some(e) => writeln!(out, "{:<40} {:<14} cannot be planned: {e}", i.input, i.job),
            None => writeln!(
                out,
                "{:<40} {:<14} {:>7} {:>13} {:>7}",
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
        }?;
    }
    if report.sentences {
        writeln!(
            out,
            "{} document(s): {} batch(es) of sentences, {} source ids; the longest sentence is given {} of the {} source tokens a model takes: nothing planned is cut",
            report.documents, report.calls, report.prompt_tokens, report.peak, report.context
        )?;
    } else {
        writeln!(
            out,
            "{} document(s): at least {} call(s), {} prompt tokens for the first calls; at most {} of the {} positions of the context used by one call: nothing planned is cut",
            report.documents, report.calls, report.prompt_tokens, report.peak, report.context
        )?;
    }
    Ok(out)
}

/// The plan of one job on one document's text, read as the run reads it.
fn plan_job(
    s: &BatchSettings,
    llm: &dyn glot::engine::ChatModel,
    prompts: &Prompts,
    article: &mut Article,
    job: &Job,
) -> Result<Plan> {
    match job {
        Job::Summarize { language, words } => {
            let language = language.as_ref().or(article.language());
            let length = summarize::Length { words: *words };
            let req = summarize::Request::new(language, length, false);
            summarize::plan(llm, prompts, &article.main_text, &req)
        }
        Job::Translate { target } => {
            let source = article.source(s.source.as_ref()).cloned();
            if source
                .as_ref()
                .is_some_and(|l| lang::same_language(&l.code, &target.code))
            {
                // Already in the target language: the run copies it.
                return Ok(Plan {
                    context: llm.context_length(),
                    ..Plan::default()
                });
            }
            article.markup.protect_terms(&s.glossary);
            let req = translate::Request::new(source.as_ref(), target);
            translate::plan(llm, prompts, &article.markup, &req)
        }
    }
}
