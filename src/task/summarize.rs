//! Summaries of any length of article: map each chunk to a partial summary,
//! then reduce partial summaries in groups until one remains.
//!
//! Termination does not depend on the model behaving: partial summaries are
//! capped so that at least two always fit in one combine prompt, so every
//! reduce round at least halves their number, even when the model answers
//! at its length cap every time.

use anyhow::Result;
use serde::Serialize;

use super::check::Scaffold;
use super::{wrong_language, Usage, SLACK};
use crate::engine::ChatModel;
use crate::error::Error;
use crate::prompt::{Ask, Prompts};
use crate::text::chunk;
use crate::text::lang::Language;

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
    /// Bullet points, each ending with the numbers of the chunks it comes
    /// from.
    pub cite: bool,
}

impl Request {
    /// A summary in `language` (the article's own when `None`), as long as
    /// `length` says, with citations when `cite`.
    pub fn new(language: Option<&Language>, length: Length, cite: bool) -> Self {
        Request {
            language: language.map(|l| l.name.clone()),
            language_code: language.map(|l| l.code.clone()),
            length,
            cite,
        }
    }

    fn ask(&self) -> Ask<'_> {
        Ask {
            language: self.language.as_deref(),
            words: self.length.words,
            cite: self.cite,
        }
    }
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
    /// With `cite`: where each bullet comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub citations: Option<Citations>,
    /// The summary did not end on its own (length cap, or a loop even when
    /// asked again): it was cut back to its last full sentence.
    pub cut: bool,
    /// Sentences the summary said a second time, dropped.
    pub repeated_sentences: usize,
    /// Lines of the summary that repeated the prompt's own words even when
    /// asked again, dropped.
    pub prompt_lines: usize,
    pub usage: Usage,
}

/// The parts of the article a cited summary draws on.
#[derive(Debug, Clone, Serialize)]
pub struct Citations {
    /// Part `n` (from 1) covers these lines of the summarized text.
    pub parts: Vec<[usize; 2]>,
    pub bullets: Vec<Bullet>,
    /// Bullets that cite no part, or a part the article does not have.
    pub uncited: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bullet {
    pub text: String,
    /// Part numbers, from 1.
    pub parts: Vec<usize>,
}

/// Appends ` [n]` to every line of a partial summary that does not already
/// end with a citation: all of it comes from part `n`.
fn tag(text: &str, n: usize) -> String {
    text.lines()
        .map(|l| {
            if l.trim().is_empty() || cited(l).is_some() {
                l.to_string()
            } else {
                format!("{} [{n}]", l.trim_end())
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The part numbers a line ends with (`… [2]`, `… [1, 3]`).
fn cited(line: &str) -> Option<Vec<usize>> {
    let line = line.trim_end().trim_end_matches('.');
    let open = line.strip_suffix(']')?.rfind('[')?;
    let inner = &line[open + 1..line.len() - 1];
    inner
        .split([',', ';'])
        .map(|n| n.trim().parse::<usize>().ok())
        .collect::<Option<Vec<_>>>()
        .filter(|v| !v.is_empty())
}

/// The bullets of a cited summary with their parts; `spans` are the parts'
/// line ranges.
fn citations(text: &str, spans: Vec<[usize; 2]>) -> Citations {
    let mut bullets = Vec::new();
    let mut uncited = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let parts = cited(line)
            .filter(|p| p.iter().all(|&n| (1..=spans.len()).contains(&n)))
            .unwrap_or_default();
        uncited += usize::from(parts.is_empty());
        bullets.push(Bullet {
            text: line.trim().to_string(),
            parts,
        });
    }
    Citations {
        parts: spans,
        bullets,
        uncited,
    }
}

/// First and last line (from 1) of `range` in `text`.
fn lines_of(text: &str, range: &std::ops::Range<usize>) -> [usize; 2] {
    let first = text[..range.start].matches('\n').count() + 1;
    let last = first + text[range.clone()].trim_end().matches('\n').count();
    [first, last]
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
    let ask = req.ask();
    let ctx = model.context_length();
    let final_cap = req.length.max_tokens();
    let combine_overhead = model.prompt_tokens(&prompts.combine(&[], ask, false)?)?;
    let map_overhead = model.prompt_tokens(&prompts.summarize("", ask, false)?)?;
    // Room for the parts of one combine prompt; two parts must always fit.
    let combine_room = room(ctx, combine_overhead + final_cap)?;
    let part_sep = model
        .prompt_tokens(&prompts.combine(&["".into(), "".into()], ask, false)?)?
        .saturating_sub(combine_overhead);
    let partial_cap = (combine_room / 2).saturating_sub(part_sep).min(final_cap);
    if partial_cap < MIN_PARTIAL_TOKENS {
        return Err(too_small(ctx, ask.words).into());
    }
    let chunk_budget = room(ctx, map_overhead + partial_cap)?;
    if chunk_budget < MIN_CHUNK_TOKENS {
        return Err(too_small(ctx, ask.words).into());
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
    let ask = req.ask();
    let single = prompts.summarize(text.trim(), ask, false)?;
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
            let m = prompts.summarize(&text[c.content.clone()], ask, false)?;
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
    summarize_live(model, prompts, text, req, &mut |_| {})
}

/// [`summarize`], showing the summary as it is written: `show` is given the
/// text settled so far (whole sentences and lines, cleaned as the summary
/// is) each time it grows. What it is given last can still differ from
/// the summary returned: the model may be asked again, and the end of the
/// answer settles its last words.
pub fn summarize_live(
    model: &mut dyn ChatModel,
    prompts: &Prompts,
    text: &str,
    req: &Request,
    show: &mut dyn FnMut(&str),
) -> Result<Summary> {
    let ask = req.ask();
    let Budgets {
        ctx,
        final_cap,
        partial_cap,
        chunk_budget,
    } = budgets(model, prompts, req)?;
    let mut usage = Usage::default();

    // An article that fits one prompt with room for the full-length answer
    // is summarized in one call.
    let scaffold = Scaffold::new(&prompts.summary_scaffolding(ask)?);
    let single = prompts.summarize(text.trim(), ask, false)?;
    if model.prompt_tokens(&single)? + final_cap + SLACK <= ctx {
        let last = Last {
            req,
            cap: final_cap,
            scaffold: &scaffold,
            article: text,
        };
        let (mut c, wrong_language, prompt_lines) = last.call(
            model,
            &mut usage,
            |firm| prompts.summarize(text.trim(), ask, firm),
            show,
        )?;
        let repeated_sentences = without_repeats(&mut c);
        // One part, the whole article: every line comes from it.
        let (text_out, citations) = match req.cite {
            true => {
                let tagged = tag(&c.text, 1);
                let span = lines_of(text, &(0..text.len()));
                let cit = citations(&tagged, vec![span]);
                (tagged, Some(cit))
            }
            false => (c.text, None),
        };
        return Ok(Summary {
            summary_tokens: c.generated_tokens,
            text: text_out,
            chunks: 1,
            rounds: 0,
            wrong_language,
            citations,
            cut: c.stop != crate::engine::choice::StopReason::Eos,
            repeated_sentences,
            prompt_lines,
            usage,
        });
    }

    let counter = |s: &str| model.count_tokens(s);
    let plan = chunk::plan(text, chunk_budget, &counter)?;
    let mut parts = Vec::with_capacity(plan.chunks.len());
    // The parts are independent: one batch of calls, which a model may
    // decode together.
    let calls = plan
        .chunks
        .iter()
        .map(|chunk| {
            let messages = prompts.summarize(&text[chunk.content.clone()], ask, false)?;
            Ok((messages, partial_cap))
        })
        .collect::<Result<Vec<_>>>()?;
    for c in model.complete_all(&calls)? {
        usage.add(&c);
        let n = parts.len() + 1;
        let part = clip(model, c.text, partial_cap)?;
        parts.push(match req.cite {
            // The tags count against the cap the reduce arithmetic relies on.
            true => {
                let tagged = tag(&part, n);
                let tagged_tokens = model.count_tokens(&tagged)?;
                let extra = tagged_tokens.saturating_sub(model.count_tokens(&part)?);
                if tagged_tokens > partial_cap {
                    tag(&clip(model, part, partial_cap.saturating_sub(extra))?, n)
                } else {
                    tagged
                }
            }
            false => part,
        });
    }
    let spans: Vec<[usize; 2]> = plan
        .chunks
        .iter()
        .map(|c| lines_of(text, &c.content))
        .collect();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let all = prompts.combine(&parts, ask, false)?;
        if model.prompt_tokens(&all)? + final_cap + SLACK <= ctx {
            let last = Last {
                req,
                cap: final_cap,
                scaffold: &scaffold,
                article: text,
            };
            let (mut c, wrong_language, prompt_lines) = last.call(
                model,
                &mut usage,
                |firm| prompts.combine(&parts, ask, firm),
                show,
            )?;
            let repeated_sentences = without_repeats(&mut c);
            let citations = req.cite.then(|| citations(&c.text, spans.clone()));
            return Ok(Summary {
                summary_tokens: c.generated_tokens,
                text: c.text,
                chunks: plan.chunks.len(),
                rounds,
                wrong_language,
                citations,
                cut: c.stop != crate::engine::choice::StopReason::Eos,
                repeated_sentences,
                prompt_lines,
                usage,
            });
        }
        let groups = group(model, prompts, &parts, ask, ctx - final_cap - SLACK)?;
        anyhow::ensure!(
            groups.len() < parts.len(),
            "combining {} partial summaries made no progress",
            parts.len()
        );
        // A lone leftover part goes on as it is; the other groups are
        // combined in one batch of calls.
        let calls = groups
            .iter()
            .filter(|g| g.len() > 1)
            .map(|g| Ok((prompts.combine(g, ask, false)?, partial_cap)))
            .collect::<Result<Vec<_>>>()?;
        let mut combined = model.complete_all(&calls)?.into_iter();
        let mut next = Vec::with_capacity(groups.len());
        for g in groups {
            if let [single] = g.as_slice() {
                next.push(single.clone());
                continue;
            }
            let c = combined.next().expect("one answer per group");
            usage.add(&c);
            next.push(clip(model, c.text, partial_cap)?);
        }
        parts = next;
    }
}

/// The call that writes the summary.
struct Last<'a> {
    req: &'a Request,
    /// Most tokens of the answer.
    cap: usize,
    /// The prompts' own words, which the summary may not hold.
    scaffold: &'a Scaffold,
    /// The article, whose own words a summary may hold.
    article: &'a str,
}

impl Last<'_> {
    /// Asks for the summary, and once more, firmly, when the answer is
    /// reliably in another language than the one requested, repeats the
    /// prompt's words or is empty. The second answer replaces the first when it is not
    /// empty, is in the right language, and does not repeat the prompt
    /// where the first did not. Lines with the prompt's words left in the
    /// answer kept are dropped. Returns the answer as Markdown text (the
    /// model's words escaped), whether it is in the wrong language, and how
    /// many lines were dropped.
    fn call(
        &self,
        model: &mut dyn ChatModel,
        usage: &mut Usage,
        messages: impl Fn(bool) -> Result<Vec<crate::prompt::chat::Message>>,
        show: &mut dyn FnMut(&str),
    ) -> Result<(crate::engine::Completion, bool, usize)> {
        let code = self.req.language_code.as_deref();
        let leaks =
            |c: &crate::engine::Completion| self.scaffold.found(&c.text, self.article).is_some();
        let mut ask = |model: &mut dyn ChatModel, messages: Vec<_>, cap: usize| {
            let mut live = Live {
                last: self,
                show: &mut *show,
                shown: String::new(),
            };
            let c = model.complete_all_watched(&[(messages, cap)], &mut live)?;
            Ok::<_, anyhow::Error>(whole_sentences(c.into_iter().next().expect("one answer")))
        };
        let c = ask(model, messages(false)?, self.cap)?;
        usage.add(&c);
        let (wrong, leaked) = (wrong_language(&c.text, code), leaks(&c));
        // Nothing left once the delimiters are gone: the prompt's
        // instructions came before them.
        let empty = c.text.trim().is_empty();
        let (mut c, wrong) = if wrong || leaked || empty {
            let firm = messages(true)?;
            let room = model
                .context_length()
                .saturating_sub(model.prompt_tokens(&firm)? + SLACK);
            let again = ask(model, firm, self.cap.min(room))?;
            usage.add(&again);
            let better = !again.text.trim().is_empty()
                && !wrong_language(&again.text, code)
                && (empty || wrong || !leaks(&again));
            match better {
                true => (again, false),
                false => (c, wrong),
            }
        } else {
            (c, false)
        };
        let (text, dropped) = self.scaffold.strip_lines(&c.text, self.article);
        c.text = crate::markup::model_markdown(&text);
        Ok((c, wrong, dropped))
    }
}

/// The last call's answer as it is decoded, shown as far as it is settled.
struct Live<'a, 'b> {
    last: &'a Last<'a>,
    show: &'b mut dyn FnMut(&str),
    shown: String,
}

impl crate::engine::Watch for Live<'_, '_> {
    fn wants_tokens(&self) -> bool {
        true
    }
    fn wants_text(&self, _index: usize) -> bool {
        true
    }
    fn decoded(&mut self, _index: usize, _tokens: usize, text: Option<&str>) {
        let Some(text) = text else {
            return;
        };
        let now = self.last.settled(text);
        if now != self.shown {
            (self.show)(&now);
            self.shown = now;
        }
    }
}

impl Last<'_> {
    /// The part of an answer being decoded that is settled: its whole
    /// sentences and lines inside the prompt's delimiters, cleaned as
    /// [`Last::call`] and [`without_repeats`] clean the whole answer.
    fn settled(&self, partial: &str) -> String {
        let inside = super::answer_only(partial, "article")
            .and_then(|t| super::answer_only(&t, "summaries"))
            .unwrap_or_default();
        // A delimiter still being written is no text.
        let inside = match inside.rfind('<') {
            Some(i) if !inside[i..].contains('>') => &inside[..i],
            _ => inside.as_str(),
        };
        let sentence = crate::text::segment::through_last_sentence(inside).map_or(0, str::len);
        let line = inside.rfind('\n').unwrap_or(0);
        let whole = &inside[..sentence.max(line)];
        if whole.trim().is_empty() {
            return String::new();
        }
        let (text, _) = self.scaffold.strip_lines(whole, self.article);
        let text = crate::markup::model_markdown(&text);
        crate::text::segment::drop_repeated_sentences(&text).0
    }
}

/// The summary without the prompt's delimiters. One that did not end on
/// its own (cap or loop) ends at its last full sentence; `stop` stays as
/// it was, so the caller can say so.
fn whole_sentences(mut c: crate::engine::Completion) -> crate::engine::Completion {
    use crate::engine::choice::StopReason;
    c.text = super::answer_only(&c.text, "article")
        .and_then(|t| super::answer_only(&t, "summaries"))
        .unwrap_or_default();
    if c.stop != StopReason::Eos {
        if let Some(cut) = crate::text::segment::through_last_sentence(&c.text) {
            c.text = cut.to_string();
        }
    }
    c
}

/// The summary without sentences it already said: `text` and how many
/// were dropped.
fn without_repeats(c: &mut crate::engine::Completion) -> usize {
    let (text, dropped) = crate::text::segment::drop_repeated_sentences(&c.text);
    c.text = text;
    dropped
}

/// Consecutive groups of parts whose combine prompt fits `limit` tokens.
/// Every part is at most `partial_cap` tokens and two such parts fit, so
/// each group but possibly the last holds at least two parts.
fn group(
    model: &dyn ChatModel,
    prompts: &Prompts,
    parts: &[String],
    ask: Ask,
    limit: usize,
) -> Result<Vec<Vec<String>>> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for part in parts {
        current.push(part.clone());
        let fits = model.prompt_tokens(&prompts.combine(&current, ask, false)?)? <= limit;
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
/// Cutting byte-level tokens can split a character, whose remains decode
/// to U+FFFD and take more tokens again: the cut moves back until the text
/// fits.
fn clip(model: &dyn ChatModel, text: String, cap: usize) -> Result<String> {
    let mut tokens = model.count_tokens(&text)?;
    let mut keep = cap;
    let mut out = text.clone();
    while tokens > cap {
        if keep == 0 {
            return Ok(String::new());
        }
        out = model.truncate_to_tokens(&text, keep)?;
        tokens = model.count_tokens(&out)?;
        keep = keep.saturating_sub(tokens.saturating_sub(cap).max(1));
    }
    Ok(out)
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

    /// Byte-level tokens: a cut can leave half a character, which decodes
    /// to U+FFFD and takes three tokens.
    struct Bytes;

    impl ChatModel for Bytes {
        fn context_length(&self) -> usize {
            1000
        }
        fn writes_translation_prompt(&self) -> bool {
            false
        }
        fn count_tokens(&self, text: &str) -> Result<usize> {
            Ok(text
                .chars()
                .map(|c| if c == '\u{FFFD}' { 3 } else { 1 })
                .sum())
        }
        fn prompt_tokens(&self, _: &[crate::prompt::chat::Message]) -> Result<usize> {
            unreachable!()
        }
        fn truncate_to_tokens(&self, text: &str, max: usize) -> Result<String> {
            let kept: String = text.chars().take(max).collect();
            Ok(match kept.len() < text.len() {
                true => kept + "\u{FFFD}",
                false => kept,
            })
        }
        fn complete(
            &mut self,
            _: &[crate::prompt::chat::Message],
            _: usize,
        ) -> Result<crate::engine::Completion> {
            unreachable!()
        }
    }

    #[test]
    fn a_clipped_part_fits_its_cap_even_when_the_cut_breaks_a_character() {
        for cap in 1..12 {
            let part = clip(&Bytes, "abcdefghijkl".into(), cap).unwrap();
            assert!(Bytes.count_tokens(&part).unwrap() <= cap, "{cap}: {part}");
        }
        let part = clip(&Bytes, "abcdefghijkl".into(), 8).unwrap();
        assert_eq!(part, "abcde\u{FFFD}");
        assert_eq!(clip(&Bytes, "short".into(), 8).unwrap(), "short");
    }

    #[test]
    fn reduce_terminates_and_respects_length_when_model_answers_at_cap() {
        let mut m = Fake {
            context: 400,
            reply: Reply::AtCap,
            calls: vec![],
        };
        let p = Prompts::load(None).unwrap();
        let req = plain(40);
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
        let req = plain(40);
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

    /// A summary of about `words` words in the article's language.
    fn plain(words: usize) -> Request {
        Request {
            language: None,
            language_code: None,
            length: Length { words },
            cite: false,
        }
    }

    fn cite(words: usize) -> Request {
        Request {
            cite: true,
            ..plain(words)
        }
    }

    #[test]
    fn a_one_call_summary_cites_the_whole_article() {
        let mut m = Fake {
            context: 4000,
            reply: Reply::Bullets,
            calls: vec![],
        };
        let p = Prompts::load(None).unwrap();
        let s = summarize(&mut m, &p, &article(3), &cite(40)).unwrap();
        assert_eq!(s.text, "- one point [1]\n- another point [1]");
        let c = s.citations.unwrap();
        assert_eq!(c.parts, [[1, 5]]);
        assert_eq!((c.bullets.len(), c.uncited), (2, 0));
    }

    #[test]
    fn cited_parts_survive_every_reduce_round() {
        let mut m = Fake {
            context: 400,
            reply: Reply::Bullets,
            calls: vec![],
        };
        let p = Prompts::load(None).unwrap();
        let s = summarize(&mut m, &p, &article(900), &cite(40)).unwrap();
        assert!(s.rounds >= 2, "{} rounds", s.rounds);
        let c = s.citations.unwrap();
        assert_eq!(c.parts.len(), s.chunks);
        assert_eq!(c.uncited, 0);
        // Each map part is tagged with its chunk, so the combined summary
        // can name them all.
        let mut all: Vec<usize> = c.bullets.iter().flat_map(|b| b.parts.clone()).collect();
        all.sort();
        assert_eq!(all, (1..=s.chunks).collect::<Vec<_>>());
        // Parts tile the article's lines in order.
        assert_eq!(c.parts[0][0], 1);
        assert!(c.parts.windows(2).all(|w| w[0][1] < w[1][0]));
    }

    #[test]
    fn bullets_that_cite_nothing_real_are_counted() {
        let c = citations("- a [1]\n- b\n- c [1, 7]\n- d [2].", vec![[1, 3], [4, 9]]);
        let parts: Vec<Vec<usize>> = c.bullets.iter().map(|b| b.parts.clone()).collect();
        assert_eq!(parts, [vec![1], vec![], vec![], vec![2]]);
        assert_eq!(c.uncited, 2);
    }

    /// A model that tells its answer word by word as it decodes it.
    struct Speaking {
        inner: Fake,
    }

    impl ChatModel for Speaking {
        crate::task::measures_of!(inner);
        fn complete(
            &mut self,
            messages: &[crate::prompt::chat::Message],
            max: usize,
        ) -> Result<crate::engine::Completion> {
            self.inner.complete(messages, max)
        }
        fn complete_all_watched(
            &mut self,
            calls: &[(Vec<crate::prompt::chat::Message>, usize)],
            watch: &mut dyn crate::engine::Watch,
        ) -> Result<Vec<crate::engine::Completion>> {
            let mut out = Vec::new();
            for (i, (m, max)) in calls.iter().enumerate() {
                let c = self.inner.complete(m, *max)?;
                if watch.wants_tokens() {
                    let words: Vec<&str> = c.text.split(' ').collect();
                    for n in 1..=words.len() {
                        let text = words[..n].join(" ");
                        watch.decoded(i, n, watch.wants_text(i).then_some(text.as_str()));
                    }
                }
                watch.answered(i, &c);
                out.push(c);
            }
            Ok(out)
        }
    }

    /// A summary shown as it is written shows whole sentences and lines,
    /// cleaned of the prompt's delimiters and of sentences said twice,
    /// each text extending the last, the last the summary itself.
    #[test]
    fn a_live_summary_shows_whole_sentences_as_they_come() {
        let answer = "<article>\nThe council met. It chose a plan. The council met. \
                      - first point\n- second point\nAnd a last sentence.</article>";
        let p = Prompts::load(None).unwrap();
        let req = plain(40);
        let mut m = Speaking {
            inner: Fake {
                context: 4000,
                reply: Reply::Text(answer.into()),
                calls: vec![],
            },
        };
        let mut shown: Vec<String> = Vec::new();
        let s = summarize_live(&mut m, &p, &article(3), &req, &mut |t| {
            shown.push(t.to_string())
        })
        .unwrap();
        assert_eq!(
            shown,
            [
                "The council met.",
                "The council met. It chose a plan.",
                "The council met. It chose a plan. - first point",
                "The council met. It chose a plan. - first point\n- second point",
                "The council met. It chose a plan. - first point\n- second point\nAnd a last sentence.",
            ]
        );
        assert_eq!(s.text, shown[4]);
        assert_eq!(s.repeated_sentences, 1);
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
            cite: false,
        };
        let s = summarize(&mut m, &p, &article(3), &req).unwrap();
        assert_eq!((s.chunks, s.rounds, s.usage.calls), (1, 0, 1));
    }

    #[test]
    fn an_article_too_long_for_one_full_answer_is_map_reduced() {
        // Partial summaries are capped below the final length here, so a
        // text can fit one map chunk yet not one prompt plus the full answer.
        let p = Prompts::load(None).unwrap();
        let req = plain(60);
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
        let req = plain(200);
        let err = summarize(&mut m, &p, &article(3), &req).unwrap_err();
        assert!(err.to_string().contains("raise --max-context"), "{err}");
    }

    /// A summary whose model writes attacks: the only markup left is
    /// paragraphs and glot's bullets, in one call and after reduce rounds.
    #[test]
    fn a_summary_holds_no_markup_of_the_models_own() {
        use crate::markup::{rendered_markup, tests::ATTACKS};
        let p = Prompts::load(None).unwrap();
        for (cited, paragraphs, context) in [(false, 3, 4000), (true, 3, 4000), (true, 200, 900)] {
            let req = Request {
                cite: cited,
                ..cite(40)
            };
            for attack in ATTACKS {
                let reply = format!("- {attack} [1]\n* {attack}.\n\n{attack} and more.");
                let mut m = Fake {
                    context,
                    reply: Reply::Text(reply),
                    calls: vec![],
                };
                let s = summarize(&mut m, &p, &article(paragraphs), &req).unwrap();
                let got = rendered_markup(&s.text, crate::markup::Format::Markdown);
                let allowed = ["Paragraph", "List", "Item"];
                assert!(
                    got.iter().all(|g| allowed.contains(&g.as_str())),
                    "{attack:?} made {got:?}:\n{}",
                    s.text
                );
            }
        }
    }

    #[test]
    fn the_prompts_words_are_asked_again_then_dropped() {
        let p = Prompts::load(None).unwrap();
        let req = cite(40);
        let summary = |reply: &str| {
            let mut m = Fake {
                context: 4000,
                reply: Reply::Text(reply.into()),
                calls: vec![],
            };
            summarize(
                &mut m,
                &p,
                &article(3),
                &Request {
                    cite: false,
                    ..req.clone()
                },
            )
            .unwrap()
        };
        let s = summary("Summarize the article below in at most 40 words.\nThe city grew.");
        assert_eq!(
            (s.text.as_str(), s.prompt_lines, s.usage.calls),
            ("The city grew.", 1, 2)
        );
        // Instructions before the delimiters leave no answer: asked again.
        let s = summary("Summarize the article below. <article> The city grew.");
        assert_eq!((s.text.as_str(), s.usage.calls), ("", 2));
    }

    #[test]
    fn a_summary_in_the_wrong_language_is_asked_again() {
        let p = Prompts::load(None).unwrap();
        let req = Request {
            language: Some("German".into()),
            language_code: Some("de".into()),
            length: Length { words: 40 },
            cite: false,
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
