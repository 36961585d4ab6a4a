//! `glot generate`: one prompt in, one completion out, token ids included,
//! so a model can be checked against other implementations.

use std::time::Instant;

use anyhow::Result;
use glot::engine::choice::StopReason;
use glot::engine::generate::{GenParams, Prompt};
use glot::engine::parallel::Call;
use glot::engine::Llm;
use glot::engine::ModelInfo;
use glot::prompt::chat::Message;
use serde::Serialize;

use glot::task::Usage;

use super::{emit, Provenance, Timings};
use crate::model::{Need, Resolved};
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
    /// With `--top-logits N`: per output token, the N best logits of the
    /// step that chose it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    top_logits: Vec<TopLogits>,
    /// With `--format json` only: hashing local model files takes a read.
    #[serde(skip_serializing_if = "Option::is_none")]
    reproduce: Option<Provenance>,
}

pub fn run(s: GenerateSettings, printer: &Printer) -> Result<()> {
    let start = Instant::now();
    let raw = match &s.prompt {
        PromptSource::File(f) => glot::input::read(f, false, glot::input::MAX_BYTES)?.text,
        PromptSource::Text(t) if t.is_empty() => {
            return Err(glot::Error::Usage("the prompt is empty".into()).into())
        }
        PromptSource::Text(t) => t.clone(),
    };
    let model = Resolved::new(&s.model, Need::Any, s.model.offline, printer)?;
    let done = match model.translates_sentences() {
        true => seq2seq(&s, &model, raw, printer)?,
        false => chat_model(&s, &model, raw, printer)?,
    };
    let Generated {
        info,
        prompt,
        ids,
        output,
        stop,
        text,
        usage,
        top_logits,
    } = done;
    printer.info(format!(
        "{} prompt tokens, {} new tokens, {:.1} tokens/s decode",
        ids.len(),
        output.len(),
        output.len() as f64 / usage.decode_secs.max(1e-9)
    ));
    let report = Report {
        model: &info,
        prompt: &prompt,
        prompt_ids: &ids,
        output_ids: &output,
        text: &text,
        stop,
        seed: s.model.sampling.map(|x| x.seed),
        timings: Timings::of(&info, &usage, start),
        top_logits,
        reproduce: s
            .output
            .json
            .then(|| Provenance::of(&info, None, &s.model, false, false))
            .transpose()?,
    };
    report.timings.report(printer);
    crate::speed::remember(&info, &usage, &s.model, printer);
    emit(&s.output, &text, &report)
}

/// The best logits of one step, best first.
#[derive(Serialize)]
struct TopLogits {
    ids: Vec<u32>,
    logits: Vec<f32>,
}

impl TopLogits {
    fn of(logits: &[f32], n: usize) -> TopLogits {
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        // Stable: equal logits keep the lower id first.
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        order.truncate(n);
        TopLogits {
            logits: order.iter().map(|&i| logits[i as usize]).collect(),
            ids: order,
        }
    }
}

/// What one prompt gave, whichever kind of model ran it.
struct Generated {
    info: ModelInfo,
    prompt: String,
    ids: Vec<u32>,
    output: Vec<u32>,
    stop: StopReason,
    text: String,
    usage: Usage,
    top_logits: Vec<TopLogits>,
}

/// What one answer cost; `alone` is its tokens and seconds decoded in steps
/// of its own (none for copies decoded together, whose steps are shared, so
/// their total rate is never recorded as one call's).
fn usage(
    prompt: usize,
    output: usize,
    stop: StopReason,
    secs: [f64; 2],
    reused: usize,
    alone: (usize, f64),
) -> Usage {
    Usage {
        calls: 1,
        prompt_tokens: prompt,
        reused_tokens: reused,
        generated_tokens: output,
        prefill_secs: secs[0],
        decode_secs: secs[1],
        capped_calls: usize::from(stop == StopReason::Length),
        alone_tokens: alone.0,
        alone_decode_secs: alone.1,
        ..Default::default()
    }
}

fn chat_model(
    s: &GenerateSettings,
    model: &Resolved,
    raw: String,
    printer: &Printer,
) -> Result<Generated> {
    let mut llm = model.llm(&s.model, printer, false)?;
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
    let top = |logits: Vec<Vec<f32>>| -> Vec<TopLogits> {
        logits
            .iter()
            .map(|l| TopLogits::of(l, s.top_logits))
            .collect()
    };
    let copies = s.model.parallel;
    if copies > 1 && (s.follow.is_some() || s.top_logits > 0) {
        return Err(glot::Error::Usage(
            "generate --parallel above 1 decodes copies of the answer: not with --follow-ids or --top-logits"
                .into(),
        )
        .into());
    }
    let (g, top_logits) = match &s.follow {
        None if copies > 1 => (
            copies_together(&mut llm, &ids, &params, copies)?,
            Vec::new(),
        ),
        None => {
            let g = llm.generate(Prompt::plain(&ids), &params, &mut |_| {})?;
            // The logits that chose each output token, read again along
            // the output.
            let top_logits = match (s.top_logits, g.ids.split_last()) {
                (1.., Some((_, forced))) => top(llm.logits_along(&ids, forced)?),
                _ => Vec::new(),
            };
            (g, top_logits)
        }
        Some(follow) => {
            let t = Instant::now();
            let logits = llm.logits_along(&ids, &follow[..follow.len() - 1])?;
            let g = glot::engine::generate::Generated {
                ids: follow.clone(),
                stop: StopReason::Length,
                first_logits: Vec::new(),
                reused: 0,
                prefill_secs: 0.0,
                decode_secs: t.elapsed().as_secs_f64(),
                beam_score: None,
                alone: (follow.len(), t.elapsed().as_secs_f64()),
            };
            (
                g,
                if s.top_logits > 0 {
                    top(logits)
                } else {
                    Vec::new()
                },
            )
        }
    };
    let text = glot::engine::strip_think(&llm.tokenizer().decode(&g.ids)?);
    let mut usage = usage(
        ids.len(),
        g.ids.len(),
        g.stop,
        [g.prefill_secs, g.decode_secs],
        g.reused,
        g.alone,
    );
    if copies > 1 {
        usage.calls = copies;
        usage.prompt_tokens *= copies;
        usage.generated_tokens *= copies;
        usage.capped_calls *= copies;
    }
    Ok(Generated {
        top_logits,
        info: llm.info().clone(),
        usage,
        prompt,
        ids,
        output: g.ids,
        stop: g.stop,
        text,
    })
}

/// `--parallel N`: the prompt's answer decoded N times side by side, a
/// measure of what decoding together gains (as llama.cpp's
/// `llama-batched-bench`). The answer is checked to be the same in every
/// copy; its prefill time is the copies' (each prompt is computed alone),
/// its decode time the rest of the wall time.
fn copies_together(
    llm: &mut Llm,
    ids: &[u32],
    params: &GenParams,
    copies: usize,
) -> Result<glot::engine::generate::Generated> {
    if params.beam.is_some() || params.sampling.is_some() {
        return Err(glot::Error::Usage(
            "generate --parallel above 1 decodes greedily: not with --beam or sampling".into(),
        )
        .into());
    }
    let call = Call {
        prompt: Prompt::plain(ids),
        params,
    };
    let start = Instant::now();
    let mut answers = llm.generate_all(&vec![call; copies], copies)?;
    let wall = start.elapsed().as_secs_f64();
    let prefill: f64 = answers.iter().map(|(g, _)| g.prefill_secs).sum();
    let (mut g, _) = answers.remove(0);
    anyhow::ensure!(
        answers.iter().all(|(other, _)| other.ids == g.ids),
        "internal error: the copies decoded together differ"
    );
    g.prefill_secs = prefill;
    g.decode_secs = (wall - prefill).max(0.0);
    Ok(g)
}

/// A translation model (Marian, T5): the prompt is the encoder's input, as
/// the model's tokenizer makes it (end token included).
fn seq2seq(
    s: &GenerateSettings,
    model: &Resolved,
    raw: String,
    printer: &Printer,
) -> Result<Generated> {
    let refuse = |what: &str| -> Result<Generated> {
        Err(glot::Error::Usage(format!(
            "{what} works with chat models only; {} is a translation model",
            model.id()
        ))
        .into())
    };
    if s.chat {
        return refuse("--chat");
    }
    if s.ignore_eos {
        return refuse("--ignore-eos");
    }
    if s.model.sampling.is_some() {
        return refuse("sampling");
    }
    if s.follow.is_some() {
        return refuse("--follow-ids");
    }
    if s.model.parallel > 1 {
        return refuse("--parallel");
    }
    if s.top_logits > 0 {
        return refuse("--top-logits");
    }
    let model = model.seq2seq(&s.model, printer)?;
    let ids = model.vocab().encode(&raw, None)?;
    let g = model.generate(std::slice::from_ref(&ids), &[s.max_new_tokens])?;
    let out = g
        .outputs
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("the model gave no output"))?;
    let text = model.vocab().decode(&out.ids)?;
    Ok(Generated {
        info: model.info().clone(),
        usage: usage(
            ids.len(),
            out.ids.len(),
            out.stop,
            [g.encode_secs, g.decode_secs],
            0,
            (out.ids.len(), g.decode_secs),
        ),
        prompt: raw,
        ids,
        output: out.ids,
        stop: out.stop,
        text,
        top_logits: Vec::new(),
    })
}
