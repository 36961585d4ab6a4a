//! Summaries of any length of article: map each chunk to a partial summary,
//! then reduce partial summaries in groups until one remains.
//!
//! Termination does not depend on the model behaving: partial summaries are
//! capped so that at least two always fit in one combine prompt, so every
//! reduce round at least halves their number, even when the model answers
//! at its length cap every time.

use anyhow::Result;
use serde::Serialize;

use super::{wrong_language, Usage, SLACK};
use crate::engine::ChatModel;
use crate::error::Error;
use crate::prompt::Prompts;
use crate::text::chunk;

/// How long the summary should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Length {
    pub words: usize,
}

impl Length {
    /// Most tokens the final summary may take: generous for languages that
    /// need several tokens a word, and still a hard cap.
    pub fn max_tokens(self) -> usize {
        self.words * 2 + 16
    }
}

/// What to summarize into.
#[derive(Debug, Clone)]
pub struct Request {
    /// Language name for the summary; `None` keeps the article's.
    pub language: Option<String>,
    /// Its code, to check what the model wrote; `None` checks nothing.
    pub language_code: Option<String>,
    pub length: Length,
}

/// The result and how it was reached.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub text: String,
    /// Chunks the article was split into.
    pub chunks: usize,
    /// Reduce rounds after the map step (0 when the article fit one chunk).
    pub rounds: usize,
    /// Tokens of the final summary.
    pub summary_tokens: usize,
    /// Whether the summary is still in another language than requested
    /// after being asked again.
    pub wrong_language: bool,
    pub usage: Usage,
}

/// Smallest partial summary worth asking for.
const MIN_PARTIAL_TOKENS: usize = 16;
/// Smallest chunk of article worth a model call.
const MIN_CHUNK_TOKENS: usize = 32;

/// The sizes every call of a summary is planned with.
struct Budgets {
    ctx: usize,
    final_cap: usize,
    partial_cap: usize,
    chunk_budget: usize,
}

fn budgets(model: &dyn ChatModel, prompts: &Prompts, req: &Request) -> Result<Budgets> {
    let lang = req.language.as_deref();
    let words = req.length.words;
    let ctx = model.context_length();
    let final_cap = req.length.max_tokens();
    let combine_overhead = model.prompt_tokens(&prompts.combine(&[], lang, words, false)?)?;
    let map_overhead = model.prompt_tokens(&prompts.summarize("", lang, words, false)?)?;
    // Room for the parts of one combine prompt; two parts must always fit.
    let combine_room = room(ctx, combine_overhead + final_cap)?;
    let part_sep = model
        .prompt_tokens(&prompts.combine(&["".into(), "".into()], lang, words, false)?)?
        .saturating_sub(combine_overhead);
    let partial_cap = (combine_room / 2).saturating_sub(part_sep).min(final_cap);
    if partial_cap < MIN_PARTIAL_TOKENS {
        return Err(too_small(ctx, words).into());
    }
    let chunk_budget = room(ctx, map_overhead + partial_cap)?;
    if chunk_budget < MIN_CHUNK_TOKENS {
        return Err(too_small(ctx, words).into());
    }
    Ok(Budgets {
        ctx,
        final_cap,
        partial_cap,
        chunk_budget,
    })
}

/// The calls a summary of `text` starts with, exactly as [`summarize`]
/// makes them: one call when the article fits, else one per chunk, then
/// combine calls whose number depends on the answers.
pub fn plan(
    model: &dyn ChatModel,
    prompts: &Prompts,
    text: &str,
    req: &Request,
) -> Result<super::Plan> {
    let b = budgets(model, prompts, req)?;
    let (lang, words) = (req.language.as_deref(), req.length.words);
    let single = prompts.summarize(text.trim(), lang, words, false)?;
    let single_tokens = model.prompt_tokens(&single)?;
    if single_tokens + b.final_cap + SLACK <= b.ctx {
        return Ok(super::Plan {
            context: b.ctx,
            calls: vec![super::PlannedCall {
                line: None,
                text_tokens: model.count_tokens(text.trim())?,
                prompt_tokens: single_tokens,
                answer_cap: b.final_cap,
                partial: false,
            }],
            combine_calls_at_least: 0,
        });
    }
    let counter = |s: &str| model.count_tokens(s);
    let chunks = chunk::plan(text, b.chunk_budget, &counter)?.chunks;
    let calls = chunks
        .iter()
        .map(|c| {
            let m = prompts.summarize(&text[c.content.clone()], lang, words, false)?;
            Ok(super::PlannedCall {
                line: None,
                text_tokens: c.tokens,
                prompt_tokens: model.prompt_tokens(&m)?,
                answer_cap: b.partial_cap,
                partial: c.partial,
            })
        })
        .collect::<Result<_>>()?;
    Ok(super::Plan {
        context: b.ctx,
        calls,
        combine_calls_at_least: 1,
    })
}

/// Summarizes `text`, never dropping any of it.
pub fn summarize(
    model: &mut dyn ChatModel,
    prompts: &Prompts,
    text: &str,
    req: &Request,
) -> Result<Summary> {
    let lang = req.language.as_deref();
    let words = req.length.words;
    let Budgets {
        ctx,
        final_cap,
        partial_cap,
        chunk_budget,
    } = budgets(model, prompts, req)?;
    let mut usage = Usage::default();

    // An article that fits one prompt with room for the full-length answer
    // is summarized in one call.
    let single = prompts.summarize(text.trim(), lang, words, false)?;
    if model.prompt_tokens(&single)? + final_cap + SLACK <= ctx {
        let (c, wrong_language) = last_call(model, req, final_cap, &mut usage, |firm| {
            prompts.summarize(text.trim(), lang, words, firm)
        })?;
        return Ok(Summary {
            summary_tokens: c.generated_tokens,
            text: c.text,
            chunks: 1,
            rounds: 0,
            wrong_language,
            usage,
        });
    }

    let counter = |s: &str| model.count_tokens(s);
    let plan = chunk::plan(text, chunk_budget, &counter)?;
    let mut parts = Vec::with_capacity(plan.chunks.len());
    for chunk in &plan.chunks {
        let c = model.complete(
            &prompts.summarize(&text[chunk.content.clone()], lang, words, false)?,
            partial_cap,
        )?;
        usage.add(&c);
        parts.push(clip(model, c.text, partial_cap)?);
    }
    let mut rounds = 0;
    loop {
        rounds += 1;
        let all = prompts.combine(&parts, lang, words, false)?;
        if model.prompt_tokens(&all)? + final_cap + SLACK <= ctx {
            let (c, wrong_language) = last_call(model, req, final_cap, &mut usage, |firm| {
                prompts.combine(&parts, lang, words, firm)
            })?;
            return Ok(Summary {
                summary_tokens: c.generated_tokens,
                text: c.text,
                chunks: plan.chunks.len(),
                rounds,
                wrong_language,
                usage,
            });
        }
        let groups = group(model, prompts, &parts, lang, words, ctx - final_cap - SLACK)?;
        anyhow::ensure!(
            groups.len() < parts.len(),
            "combining {} partial summaries made no progress",
            parts.len()
        );
        let mut next = Vec::with_capacity(groups.len());
        for g in groups {
            if let [single] = g.as_slice() {
                // A lone leftover part goes on as it is.
                next.push(single.clone());
                continue;
            }
            let c = model.complete(&prompts.combine(&g, lang, words, false)?, partial_cap)?;
            usage.add(&c);
            next.push(clip(model, c.text, partial_cap)?);
        }
        parts = next;
    }
}

/// The call that writes the summary: asked again, firmly, when the answer
/// is reliably in another language than the one requested. The second
/// answer replaces the first only when it is in the right language and not
/// empty. Returns the answer and whether it is in the wrong language.
fn last_call(
    model: &mut dyn ChatModel,
    req: &Request,
    cap: usize,
    usage: &mut Usage,
    messages: impl Fn(bool) -> Result<Vec<crate::prompt::chat::Message>>,
) -> Result<(crate::engine::Completion, bool)> {
    let c = model.complete(&messages(false)?, cap)?;
    usage.add(&c);
    let code = req.language_code.as_deref();
    if !wrong_language(&c.text, code) {
        return Ok((c, false));
    }
    let firm = messages(true)?;
    let room = model
        .context_length()
        .saturating_sub(model.prompt_tokens(&firm)? + SLACK);
    let again = model.complete(&firm, cap.min(room))?;
    usage.add(&again);
    if again.text.trim().is_empty() || wrong_language(&again.text, code) {
        Ok((c, true))
    } else {
        Ok((again, false))
    }
}

/// Consecutive groups of parts whose combine prompt fits `limit` tokens.
/// Every part is at most `partial_cap` tokens and two such parts fit, so
/// each group but possibly the last holds at least two parts.
fn group(
    model: &dyn ChatModel,
    prompts: &Prompts,
    parts: &[String],
    lang: Option<&str>,
    words: usize,
    limit: usize,
) -> Result<Vec<Vec<String>>> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for part in parts {
        current.push(part.clone());
        let fits = model.prompt_tokens(&prompts.combine(&current, lang, words, false)?)? <= limit;
        if !fits && current.len() > 1 {
            let last = current.pop().expect("non-empty");
            groups.push(std::mem::take(&mut current));
            current.push(last);
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    Ok(groups)
}

/// Bounds a partial summary to `cap` tokens as the reduce arithmetic
/// assumes (re-tokenizing a reply can take more tokens than generating it).
fn clip(model: &dyn ChatModel, text: String, cap: usize) -> Result<String> {
    if model.count_tokens(&text)? <= cap {
        Ok(text)
    } else {
        model.truncate_to_tokens(&text, cap)
    }
}

fn room(ctx: usize, used: usize) -> Result<usize, Error> {
    ctx.checked_sub(used + SLACK).ok_or_else(|| {
        Error::Context(format!(
            "the prompt alone needs {used} tokens, more than the context of {ctx}: raise --max-context"
        ))
    })
}

fn too_small(ctx: usize, words: usize) -> Error {
    Error::Context(format!(
        "a context of {ctx} tokens is too small for a {words}-word summary: raise --max-context or ask for a shorter --length"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::fake::{Fake, Reply};

    fn article(paragraphs: usize) -> String {
        (0..paragraphs)
            .map(|i| {
                format!("Paragraph {i} says something about the city. It has more words here.")
            })
            .collect::<Vec<_>>()
            .join("\n\n")
    }

    #[test]
    fn reduce_terminates_and_respects_length_when_model_answers_at_cap() {
        let mut m = Fake {
            context: 400,
            reply: Reply::AtCap,
            calls: vec![],
        };
        let p = Prompts::load(None).unwrap();
        let req = Request {
            language: None,
            language_code: None,
            length: Length { words: 40 },
        };
        let s = summarize(&mut m, &p, &article(200), &req).unwrap();
        assert!(s.chunks > 10, "{} chunks", s.chunks);
        assert!(s.rounds >= 2, "{} rounds", s.rounds);
        assert!(s.summary_tokens <= req.length.max_tokens());
        assert_eq!(s.text.split_whitespace().count(), req.length.max_tokens());
        // Map calls = chunks; each reduce round at least halves the parts.
        assert!(s.usage.calls < 2 * s.chunks + 1, "{} calls", s.usage.calls);
    }

    #[test]
    fn the_plan_is_what_the_run_sends() {
        let p = Prompts::load(None).unwrap();
        let req = Request {
            language: None,
            language_code: None,
            length: Length { words: 40 },
        };
        for paragraphs in [1, 200] {
            let mut m = Fake {
                context: 400,
                reply: Reply::AtCap,
                calls: vec![],
            };
            let text = article(paragraphs);
            let plan = plan(&m, &p, &text, &req).unwrap();
            let s = summarize(&mut m, &p, &text, &req).unwrap();
            assert_eq!(plan.calls.len(), s.chunks);
            let planned: Vec<(usize, usize)> = plan
                .calls
                .iter()
                .map(|c| (c.prompt_tokens, c.answer_cap))
                .collect();
            assert_eq!(planned, m.calls[..s.chunks]);
            assert_eq!(plan.combine_calls_at_least, usize::from(s.chunks > 1));
        }
    }

    #[test]
    fn short_article_is_one_call() {
        let mut m = Fake {
            context: 4000,
            reply: Reply::AtCap,
            calls: vec![],
        };
        let p = Prompts::load(None).unwrap();
        let req = Request {
            language: Some("French".into()),
            language_code: None,
            length: Length { words: 20 },
        };
        let s = summarize(&mut m, &p, &article(3), &req).unwrap();
        assert_eq!((s.chunks, s.rounds, s.usage.calls), (1, 0, 1));
    }

    #[test]
    fn an_article_too_long_for_one_full_answer_is_map_reduced() {
        // Partial summaries are capped below the final length here, so a
        // text can fit one map chunk yet not one prompt plus the full answer.
        let p = Prompts::load(None).unwrap();
        let req = Request {
            language: None,
            language_code: None,
            length: Length { words: 60 },
        };
        for paragraphs in 1..25 {
            let mut m = Fake {
                context: 420,
                reply: Reply::AtCap,
                calls: vec![],
            };
            let s = summarize(&mut m, &p, &article(paragraphs), &req).unwrap();
            assert!(s.summary_tokens <= req.length.max_tokens());
        }
    }

    #[test]
    fn tiny_context_is_a_clear_error() {
        let mut m = Fake {
            context: 120,
            reply: Reply::AtCap,
            calls: vec![],
        };
        let p = Prompts::load(None).unwrap();
        let req = Request {
            language: None,
            language_code: None,
            length: Length { words: 200 },
        };
        let err = summarize(&mut m, &p, &article(3), &req).unwrap_err();
        assert!(err.to_string().contains("raise --max-context"), "{err}");
    }

    #[test]
    fn a_summary_in_the_wrong_language_is_asked_again() {
        let p = Prompts::load(None).unwrap();
        let req = Request {
            language: Some("German".into()),
            language_code: Some("de".into()),
            length: Length { words: 40 },
        };
        let wrong = "Ceci est toujours une phrase en français, pas en allemand du tout.";
        let right = "Dies ist ein deutscher Satz, lang genug, um erkannt zu werden.";
        let mut m = Fake {
            context: 4000,
            reply: Reply::Language { wrong, right },
            calls: vec![],
        };
        let s = summarize(&mut m, &p, &article(3), &req).unwrap();
        assert_eq!(
            (s.text.as_str(), s.wrong_language, s.usage.calls),
            (right, false, 2)
        );
        let mut m = Fake {
            context: 4000,
            reply: Reply::Language {
                wrong,
                right: wrong,
            },
            calls: vec![],
        };
        let s = summarize(&mut m, &p, &article(3), &req).unwrap();
        assert_eq!(
            (s.text.as_str(), s.wrong_language, s.usage.calls),
            (wrong, true, 2)
        );
    }
}
