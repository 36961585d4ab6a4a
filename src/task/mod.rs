//! Tasks: what to ask the model for each chunk, and how to put the answers
//! together.

pub mod check;
pub mod mt;
pub mod summarize;
pub mod translate;

use serde::Serialize;

use crate::engine::Completion;
use crate::error::Error;
use crate::markup::{Format, Markup};
use crate::text::lang::{self, Detected, Language};

/// A document as every task reads it, whether one is given on the command
/// line or a folder holds many: its structure, its main text and the
/// language that text is written in.
pub struct Article {
    pub markup: Markup,
    /// The prose of the main content: a menu or a code block says little
    /// about what an article says, or the language it says it in.
    pub main_text: String,
    pub detected: Option<Detected>,
}

impl Article {
    /// Reads `text` (of the document `name`) as `format`; a document with
    /// no text to work on is an error.
    pub fn parse(name: &str, text: String, format: Format) -> Result<Self, Error> {
        let markup = Markup::parse(text, format);
        if markup.units().is_empty() {
            return Err(Error::input(
                name,
                format!("has no text to work on (read as {})", format.name()),
            ));
        }
        let main_text = markup.prose(true);
        let detected = lang::detect(&main_text);
        Ok(Article {
            markup,
            main_text,
            detected,
        })
    }

    /// The article's language, when the detector vouches for it.
    pub fn language(&self) -> Option<&Language> {
        self.detected.as_ref().and_then(Detected::reliable_language)
    }

    /// The language to translate from: the one `given`, else the
    /// article's own when detected reliably.
    pub fn source<'a>(&'a self, given: Option<&'a Language>) -> Option<&'a Language> {
        given.or(self.language())
    }
}

/// A run as planned before any model call: what each first call sends and
/// may receive. Retries (a paragraph asked again alone) come on top.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// Positions of prompt and answer together.
    pub context: usize,
    pub calls: Vec<PlannedCall>,
    /// Summaries of several chunks: the calls that combine the partial
    /// summaries, at least this many (their count depends on the answers).
    pub combine_calls_at_least: usize,
}

/// One planned model call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedCall {
    /// Line of the document where the call's text starts (translations).
    pub line: Option<usize>,
    /// Tokens of the text itself.
    pub text_tokens: usize,
    /// Tokens of the whole prompt: template, instructions and text.
    pub prompt_tokens: usize,
    /// Most tokens the answer may take; prompt and answer fit the context.
    pub answer_cap: usize,
    /// Part of a paragraph too long for one call, cut between sentences.
    pub partial: bool,
}

impl Plan {
    /// Most positions any call uses, prompt and answer together.
    pub fn peak(&self) -> usize {
        self.calls
            .iter()
            .map(|c| c.prompt_tokens + c.answer_cap)
            .max()
            .unwrap_or(0)
    }
}

/// Tokens and time spent on model calls.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    pub calls: usize,
    pub prompt_tokens: usize,
    /// Prompt tokens taken from the cache of an earlier call, not computed.
    pub reused_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_secs: f64,
    pub decode_secs: f64,
    /// Calls cut off at their token cap rather than ending on their own.
    pub capped_calls: usize,
    /// Calls whose answer fell into a loop (a sentence or long stretch
    /// again and again) and were asked again without it.
    pub looped_calls: usize,
    /// Answers kept cut at a loop: those that looped again when asked
    /// again, and beam search's, which are not asked again.
    pub loops_cut: usize,
    /// Tokens decoded in steps that computed one call alone, and their
    /// seconds: the measure of one call's decoding speed. Steps shared by
    /// calls decoded together (`--parallel`) overlap in `decode_secs`. Not
    /// in outputs, which are the same whatever the width.
    #[serde(skip)]
    pub alone_tokens: usize,
    #[serde(skip)]
    pub alone_decode_secs: f64,
}

impl Usage {
    /// Adds what another stretch of work cost.
    pub fn absorb(&mut self, other: &Usage) {
        self.calls += other.calls;
        self.prompt_tokens += other.prompt_tokens;
        self.reused_tokens += other.reused_tokens;
        self.generated_tokens += other.generated_tokens;
        self.prefill_secs += other.prefill_secs;
        self.decode_secs += other.decode_secs;
        self.capped_calls += other.capped_calls;
        self.looped_calls += other.looped_calls;
        self.loops_cut += other.loops_cut;
        self.alone_tokens += other.alone_tokens;
        self.alone_decode_secs += other.alone_decode_secs;
    }

    fn add(&mut self, c: &Completion) {
        self.calls += 1;
        self.prompt_tokens += c.prompt_tokens;
        self.reused_tokens += c.reused_tokens;
        self.generated_tokens += c.generated_tokens;
        self.prefill_secs += c.prefill_secs;
        self.decode_secs += c.decode_secs;
        if c.stop == crate::engine::choice::StopReason::Length {
            self.capped_calls += 1;
        }
        self.looped_calls += usize::from(c.looped);
        self.alone_tokens += c.alone.0;
        self.alone_decode_secs += c.alone.1;
        if c.stop == crate::engine::choice::StopReason::Repetition {
            self.loops_cut += 1;
        }
    }
}

/// Whether `text` is reliably in another language than `code` (`None`
/// checks nothing, nor does a language the detector cannot recognise).
/// Short or mixed answers are given the benefit of the doubt: only a
/// detection the detector vouches for counts.
pub(crate) fn wrong_language(text: &str, code: Option<&str>) -> bool {
    use crate::text::lang;
    let Some(code) = code.filter(|c| lang::detectable(c)) else {
        return false;
    };
    match lang::detect(text) {
        Some(d) if d.reliable && text.chars().filter(|c| c.is_alphabetic()).count() >= 24 => {
            !lang::same_language(&d.language.code, code)
        }
        _ => false,
    }
}

/// The answer without the prompt's scaffolding. A reply wrapped in the
/// `<tag>…</tag>` delimiters that the prompt puts around the text is
/// unwrapped; one with other words before the opening delimiter (the
/// prompt's own instructions, or comments) is no answer (`None`), and so
/// is one that is only the delimiters.
pub(crate) fn answer_only(reply: &str, tag: &str) -> Option<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut answer = reply.trim();
    if let Some(i) = answer.find(&open) {
        if !answer[..i].trim().is_empty() {
            return None;
        }
        answer = &answer[i + open.len()..];
    }
    if let Some(i) = answer.find(&close) {
        answer = &answer[..i];
    }
    let answer = answer.trim();
    (!answer.is_empty() || reply.trim().is_empty()).then(|| answer.to_string())
}

/// Tokens kept free between the measured prompt and the limit, for the
/// small differences between counting pieces and counting the whole.
const SLACK: usize = 8;

/// The measuring methods of [`ChatModel`](crate::engine::ChatModel), for a
/// test model that wraps another (`self.inner`, or the path given):
/// the wrapped model's, and no translation prompt of its own.
#[cfg(test)]
macro_rules! measures_of {
    ($($inner:tt)+) => {
        fn context_length(&self) -> usize {
            self.$($inner)+.context_length()
        }
        fn writes_translation_prompt(&self) -> bool {
            false
        }
        fn count_tokens(&self, text: &str) -> anyhow::Result<usize> {
            self.$($inner)+.count_tokens(text)
        }
        fn prompt_tokens(&self, messages: &[crate::prompt::chat::Message]) -> anyhow::Result<usize> {
            self.$($inner)+.prompt_tokens(messages)
        }
        fn truncate_to_tokens(&self, text: &str, max: usize) -> anyhow::Result<String> {
            self.$($inner)+.truncate_to_tokens(text, max)
        }
    };
}
#[cfg(test)]
pub(crate) use measures_of;

/// A stand-in model for testing task logic: one token per word.
#[cfg(test)]
pub(crate) mod fake {
    use anyhow::Result;

    use crate::engine::choice::StopReason;
    use crate::engine::{ChatModel, Completion};
    use crate::prompt::chat::Message;

    /// How the fake answers.
    pub enum Reply {
        /// Always exactly as many words as allowed, like a random-weight model.
        AtCap,
        /// The document between the prompt's `<text>` tags, in upper case.
        Echo,
        /// The document with all its paragraphs run together.
        Merge,
        /// In upper case, with its first two paragraphs run together when
        /// it has more than `above` (a model that loses count on long
        /// inputs).
        MergeLong { above: usize },
        /// Nothing at all.
        Empty,
        /// This text, whatever is asked.
        Text(String),
        /// The document with this text before and after each paragraph.
        Around(&'static str),
        /// The document as it is.
        Identity,
        /// The document without its markup placeholders.
        StripPlaceholders,
        /// The document with every 4 turned into a 7; `once`: only in the
        /// first answer, the document as it is after.
        Garble { once: bool },
        /// The document with the prompt's last instruction before each
        /// paragraph; `once`: only in the first answer.
        Leak { once: bool },
        /// The document without the last sentence of each paragraph.
        DropSentence,
        /// Bullet points: two for an article, and for summaries to combine
        /// one that cites every part number the summaries cite.
        Bullets,
        /// `wrong` unless the prompt insists on the language, then `right`.
        Language {
            wrong: &'static str,
            right: &'static str,
        },
    }

    pub struct Fake {
        pub context: usize,
        pub reply: Reply,
        pub calls: Vec<(usize, usize)>,
    }

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    fn document(prompt: &str) -> &str {
        let start = prompt.find("<text>\n").map_or(0, |i| i + 7);
        let end = prompt.rfind("\n</text>").unwrap_or(prompt.len());
        &prompt[start..end]
    }

    impl ChatModel for Fake {
        fn context_length(&self) -> usize {
            self.context
        }
        fn writes_translation_prompt(&self) -> bool {
            false
        }
        fn count_tokens(&self, text: &str) -> Result<usize> {
            Ok(words(text))
        }
        fn prompt_tokens(&self, messages: &[Message]) -> Result<usize> {
            Ok(messages.iter().map(|m| words(&m.content) + 4).sum())
        }
        fn truncate_to_tokens(&self, text: &str, max: usize) -> Result<String> {
            Ok(text
                .split_whitespace()
                .take(max)
                .collect::<Vec<_>>()
                .join(" "))
        }
        fn complete(&mut self, messages: &[Message], max: usize) -> Result<Completion> {
            let prompt = self.prompt_tokens(messages)?;
            assert!(
                prompt + max <= self.context,
                "{prompt} + {max} > {}",
                self.context
            );
            self.calls.push((prompt, max));
            let user = &messages.last().unwrap().content;
            let text = match self.reply {
                Reply::AtCap => vec!["word"; max].join(" "),
                Reply::Echo => document(user).to_uppercase(),
                Reply::Merge => document(user).replace("\n\n", " "),
                Reply::MergeLong { above } => {
                    let doc = document(user).to_uppercase();
                    if doc.split("\n\n").count() > above {
                        doc.replacen("\n\n", " ", 1)
                    } else {
                        doc
                    }
                }
                Reply::Empty => String::new(),
                Reply::Text(ref t) => t.clone(),
                Reply::Around(a) => document(user)
                    .split("\n\n")
                    .map(|p| format!("{a} {p} {a}"))
                    .collect::<Vec<_>>()
                    .join("\n\n"),
                Reply::Identity => document(user).to_string(),
                Reply::StripPlaceholders => crate::markup::strip_placeholders(document(user)),
                Reply::Garble { once } if once && self.calls.len() > 1 => document(user).into(),
                Reply::Garble { .. } => document(user).replace('4', "7"),
                Reply::Bullets if user.contains("<summaries>") => {
                    let mut cited: Vec<&str> = user
                        .split('[')
                        .skip(1)
                        .filter_map(|s| s.split(']').next())
                        .flat_map(|s| s.split(", "))
                        .collect();
                    cited.sort();
                    cited.dedup();
                    format!("- all of it [{}]", cited.join(", "))
                }
                Reply::Bullets => "- one point\n- another point".into(),
                Reply::Leak { once } if once && self.calls.len() > 1 => document(user).into(),
                Reply::Leak { .. } => document(user)
                    .split("\n\n")
                    .map(|p| format!("Reply with the translation only. {p}"))
                    .collect::<Vec<_>>()
                    .join("\n\n"),
                Reply::DropSentence => document(user)
                    .split("\n\n")
                    .map(|p| match p.trim_end_matches('.').rfind(". ") {
                        Some(i) => &p[..=i],
                        None => p,
                    })
                    .collect::<Vec<_>>()
                    .join("\n\n"),
                Reply::Language { wrong, right } => if user.contains(" only in ") {
                    right
                } else {
                    wrong
                }
                .to_string(),
            };
            Ok(Completion {
                generated_tokens: words(&text).min(max),
                text,
                prompt_tokens: prompt,
                reused_tokens: 0,
                stop: StopReason::Length,
                looped: false,
                prefill_secs: 0.0,
                decode_secs: 0.0,
                alone: (0, 0.0),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::answer_only;

    #[test]
    fn prompt_scaffolding_never_reaches_the_reader() {
        assert_eq!(
            answer_only("<text>\nBonjour.\n</text>", "text").unwrap(),
            "Bonjour."
        );
        assert_eq!(
            answer_only("Bonjour.</text> extra", "text").unwrap(),
            "Bonjour."
        );
        assert_eq!(answer_only("Bonjour.", "text").unwrap(), "Bonjour.");
        assert_eq!(answer_only("", "text").unwrap(), "");
        // The instructions repeated before the text: no answer.
        assert_eq!(
            answer_only("Translate the text below into French. <text> Hello", "text"),
            None
        );
        assert_eq!(answer_only("<text></text>", "text"), None);
    }
}
