//! `glot generate`: one prompt in, one completion out, token ids included,
//! so a model can be checked against other implementations.

use std::time::Instant;

use anyhow::Result;
use glot::engine::generate::{GenParams, Prompt, StopReason};
use glot::engine::ModelInfo;
use glot::prompt::chat::Message;
use serde::Serialize;

use super::{emit, load_model, Provenance, Timings};
use crate::printer::Printer;
use crate::settings::{GenerateSettings, PromptSource};

#[derive(Serialize)]
struct Report<'a> {
    model: &'a ModelInfo,
    prompt: &'a str,
    prompt_ids: &'a [u32],
    output_ids: &'a [u32],
    text: &'a str,
    stop: StopReason,
    seed: Option<u64>,
    timings: Timings,
    /// With `--format json` only: hashing local model files takes a read.
    #[serde(skip_serializing_if = "Option::is_none")]
    reproduce: Option<Provenance>,
}

pub fn run(s: GenerateSettings, printer: &Printer) -> Result<()> {
    let start = Instant::now();
    let raw = match &s.prompt {
        PromptSource::File(f) => glot::input::read(f, false)?.text,
        PromptSource::Text(t) if t.is_empty() => {
            return Err(glot::Error::Usage("the prompt is empty".into()).into())
        }
        PromptSource::Text(t) => t.clone(),
    };
    let mut llm = load_model(&s.model, printer, false)?;
    // A chat prompt is rendered by the template, which adds its own special
    // tokens; a raw prompt gets what the tokenizer adds (BOS for Llama 3).
    let (prompt, ids) = if s.chat {
        let rendered = llm.render(&[Message::new("user", raw)])?;
        let ids = llm.tokenizer().encode(&rendered, false)?;
        (rendered, ids)
    } else {
        let ids = llm.tokenizer().encode(&raw, true)?;
        (raw, ids)
    };
    let params = GenParams {
        max_new_tokens: s.max_new_tokens,
        eos: if s.ignore_eos {
            Vec::new()
        } else {
            llm.eos().to_vec()
        },
        sampling: s.model.sampling,
        repeat_guard: s.model.sampling.is_some(),
        no_repeat_ngram: None,
        beam: s.model.beam.map(|b| b.for_chat_model()),
    };
    let g = llm.generate(Prompt::plain(&ids), &params, &mut |_| {})?;
    let text = glot::engine::strip_think(&llm.tokenizer().decode(&g.ids)?);
    printer.info(format!(
        "{} prompt tokens, {} new tokens, {:.1} tokens/s decode",
        ids.len(),
        g.ids.len(),
        g.ids.len() as f64 / g.decode_secs.max(1e-9)
    ));
    let usage = glot::task::Usage {
        calls: 1,
        prompt_tokens: ids.len(),
        reused_tokens: g.reused,
        generated_tokens: g.ids.len(),
        prefill_secs: g.prefill_secs,
        decode_secs: g.decode_secs,
        capped_calls: usize::from(g.stop == glot::engine::generate::StopReason::Length),
        ..Default::default()
    };
    let report = Report {
        model: llm.info(),
        prompt: &prompt,
        prompt_ids: &ids,
        output_ids: &g.ids,
        text: &text,
        stop: g.stop,
        seed: s.model.sampling.map(|x| x.seed),
        timings: Timings::of(llm.info(), &usage, start),
        reproduce: s
            .output
            .json
            .then(|| Provenance::of(llm.info(), None, &s.model, false, false))
            .transpose()?,
    };
    report.timings.report(printer);
    super::speed::remember(llm.info(), &usage, &s.model, printer);
    emit(&s.output, &text, &report)
}
