//! Whole-document translation, chunk by chunk, with every paragraph kept.
//!
//! A chunk of several paragraphs must come back with as many paragraphs;
//! when the model merges or splits them, each paragraph of that chunk is
//! translated on its own, so the output always has exactly the input's
//! paragraphs, in order.

use anyhow::Result;
use serde::Serialize;

use super::{Usage, SLACK};
use crate::engine::ChatModel;
use crate::error::Error;
use crate::prompt::Prompts;
use crate::text::chunk;
use crate::text::segment::paragraphs;

/// What to translate into.
#[derive(Debug, Clone)]
pub struct Request {
    /// Target language name, as used in prompts.
    pub target: String,
    /// Source language name when known.
    pub source: Option<String>,
}

/// The translated document.
#[derive(Debug, Clone, Serialize)]
pub struct Translation {
    pub text: String,
    pub chunks: usize,
    pub paragraphs: usize,
    /// Chunks whose paragraphs had to be translated one by one.
    pub retried_chunks: usize,
    /// Paragraphs or parts the model answered with nothing: they are kept
    /// in the source language rather than dropped.
    pub untranslated: usize,
    pub usage: Usage,
}

/// A translation may be longer than its source: room for twice the tokens.
fn answer_cap(source_tokens: usize) -> usize {
    source_tokens * 2 + 16
}

/// Translates `text` paragraph-faithfully.
pub fn translate(
    model: &mut dyn ChatModel,
    prompts: &Prompts,
    text: &str,
    req: &Request,
) -> Result<Translation> {
    let ctx = model.context_length();
    let target = req.target.as_str();
    let source = req.source.as_deref();
    let overhead = model.prompt_tokens(&prompts.translate("", target, source, 2)?)?;
    // overhead + budget + answer_cap(budget) + slack <= ctx
    let budget = ctx
        .checked_sub(overhead + answer_cap(0) + SLACK)
        .map(|free| free / 3)
        .filter(|&b| b > 0)
        .ok_or_else(|| {
            Error::Context(format!(
                "the translation prompt alone needs {overhead} tokens, too many for the context of {ctx}: raise --max-context"
            ))
        })?;
    let counter = |s: &str| model.count_tokens(s);
    let plan = chunk::plan(text, budget, &counter)?;
    let mut usage = Usage::default();
    let mut out: Vec<String> = vec![String::new(); plan.paragraphs.len()];
    let mut retried = 0;
    let mut untranslated = 0;
    for c in &plan.chunks {
        let content = &text[c.content.clone()];
        if c.partial {
            // A piece of a long paragraph: pieces are joined back into it.
            let reply = run(model, prompts, req, content, 1, c.tokens, &mut usage)?;
            let piece = or_source(one_paragraph(&reply), content, &mut untranslated);
            let para = &mut out[c.paragraphs.start];
            if !para.is_empty() && !piece.is_empty() {
                para.push(' ');
            }
            para.push_str(&piece);
            continue;
        }
        let n = c.paragraphs.len();
        let reply = run(model, prompts, req, content, n, c.tokens, &mut usage)?;
        let got = paragraphs(&reply);
        if got.len() == n || n == 1 {
            if n == 1 {
                out[c.paragraphs.start] =
                    or_source(one_paragraph(&reply), content, &mut untranslated);
            } else {
                for (i, r) in got.iter().enumerate() {
                    out[c.paragraphs.start + i] = reply[r.clone()].to_string();
                }
            }
            continue;
        }
        retried += 1;
        for p in c.paragraphs.clone() {
            let src = &text[plan.paragraphs[p].clone()];
            let tokens = model.count_tokens(src)?;
            let reply = run(model, prompts, req, src, 1, tokens, &mut usage)?;
            out[p] = or_source(one_paragraph(&reply), src, &mut untranslated);
        }
    }
    let mut joined = out.join("\n\n");
    if !joined.is_empty() {
        joined.push('\n');
    }
    Ok(Translation {
        text: joined,
        chunks: plan.chunks.len(),
        paragraphs: plan.paragraphs.len(),
        retried_chunks: retried,
        untranslated,
        usage,
    })
}

fn run(
    model: &mut dyn ChatModel,
    prompts: &Prompts,
    req: &Request,
    text: &str,
    paragraphs: usize,
    tokens: usize,
    usage: &mut Usage,
) -> Result<String> {
    let messages = prompts.translate(text, &req.target, req.source.as_deref(), paragraphs)?;
    let prompt = model.prompt_tokens(&messages)?;
    let cap = answer_cap(tokens).min(model.context_length().saturating_sub(prompt + SLACK));
    let c = model.complete(&messages, cap)?;
    usage.add(&c);
    Ok(c.text)
}

/// An empty reply would silently drop text (and a paragraph): keep the
/// source instead, and count it.
fn or_source(translated: String, source: &str, untranslated: &mut usize) -> String {
    if translated.trim().is_empty() {
        *untranslated += 1;
        source.to_string()
    } else {
        translated
    }
}

/// Makes a reply one paragraph: blank lines inside become single breaks.
fn one_paragraph(reply: &str) -> String {
    let paras: Vec<&str> = paragraphs(reply).into_iter().map(|r| &reply[r]).collect();
    paras.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::fake::{Fake, Reply};

    fn doc() -> String {
        let long = "This sentence is rather long. ".repeat(30);
        format!("First one.\n\nSecond one here.\n\n{long}\n\nLast paragraph.")
    }

    fn req() -> Request {
        Request {
            target: "German".into(),
            source: None,
        }
    }

    #[test]
    fn paragraphs_are_kept_in_order() {
        let mut m = Fake {
            context: 300,
            reply: Reply::Echo,
            calls: vec![],
        };
        let p = Prompts::load(None).unwrap();
        let t = translate(&mut m, &p, &doc(), &req()).unwrap();
        assert_eq!(t.paragraphs, 4);
        let out = paragraphs(&t.text);
        assert_eq!(out.len(), 4);
        assert_eq!(&t.text[out[0].clone()], "FIRST ONE.");
        assert_eq!(&t.text[out[3].clone()], "LAST PARAGRAPH.");
        assert!(t.chunks > 2, "the long paragraph is split: {}", t.chunks);
        assert_eq!(t.retried_chunks, 0);
    }

    #[test]
    fn empty_replies_keep_the_source_text() {
        let mut m = Fake {
            context: 300,
            reply: Reply::Empty,
            calls: vec![],
        };
        let p = Prompts::load(None).unwrap();
        let t = translate(&mut m, &p, &doc(), &req()).unwrap();
        assert_eq!(paragraphs(&t.text).len(), 4);
        assert!(t.text.starts_with("First one.\n\nSecond one here."));
        assert!(t.untranslated >= 4, "{}", t.untranslated);
    }

    #[test]
    fn merged_paragraphs_are_retried_one_by_one() {
        let mut m = Fake {
            context: 300,
            reply: Reply::Merge,
            calls: vec![],
        };
        let p = Prompts::load(None).unwrap();
        let t = translate(&mut m, &p, &doc(), &req()).unwrap();
        assert_eq!(paragraphs(&t.text).len(), 4);
        assert!(t.retried_chunks >= 1);
    }
}
