//! Chat templates as the model ships them, rendered like `transformers`
//! renders them (`apply_chat_template`).
//!
//! The environment mirrors the one `transformers` builds: `trim_blocks`,
//! `lstrip_blocks`, Python string methods (`startswith`, `split`, …) through
//! minijinja-contrib's pycompat, and the `raise_exception` / `strftime_now`
//! helpers that real templates call.

use anyhow::Result;
use minijinja::{context, Environment, ErrorKind};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
    /// Bytes at the start of `content` that other prompts of the run repeat
    /// (the instructions before the text), so the model may reuse their
    /// computation. Templates never see it.
    #[serde(skip)]
    pub lead: usize,
    /// For a model whose template writes its own translation instruction
    /// (TranslateGemma): the language codes of a text to translate.
    #[serde(skip)]
    pub languages: Option<Languages>,
}

/// Source and target language codes (`en`, `pt-BR`, `zh-Hant`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Languages {
    pub source: String,
    pub target: String,
}

/// A template sees `role` and `content`; a text to translate with its
/// language codes is content as TranslateGemma's template reads it: a list
/// of one item, `{type: "text", source_lang_code, target_lang_code, text}`.
impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Item<'a> {
            r#type: &'static str,
            source_lang_code: &'a str,
            target_lang_code: &'a str,
            text: &'a str,
        }
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("role", &self.role)?;
        match &self.languages {
            None => map.serialize_entry("content", &self.content)?,
            Some(l) => map.serialize_entry(
                "content",
                &[Item {
                    r#type: "text",
                    source_lang_code: &l.source,
                    target_lang_code: &l.target,
                    text: &self.content,
                }],
            )?,
        }
        map.end()
    }
}

impl Message {
    /// A message with the given role.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Message {
            role: role.to_string(),
            content: content.into(),
            lead: 0,
            languages: None,
        }
    }

    /// A user message asking for `text` translated, for a template that
    /// writes the instruction itself from the two language codes.
    pub fn translation(text: impl Into<String>, source: &str, target: &str) -> Self {
        Message {
            languages: Some(Languages {
                source: source.to_string(),
                target: target.to_string(),
            }),
            ..Message::new("user", text)
        }
    }

    /// The same message, marking its first `lead` bytes as shared.
    pub fn with_lead(mut self, lead: usize) -> Self {
        self.lead = lead.min(self.content.len());
        self
    }
}

/// A compiled chat template plus the special tokens it refers to.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// The file the template came from, for messages.
    origin: String,
    bos_token: String,
    eos_token: String,
    /// The template writes a translation instruction from language codes
    /// in the content (`source_lang_code`), as TranslateGemma's does.
    translates: bool,
}

impl ChatTemplate {
    /// Compiles `source`, read from the file `origin`; `bos`/`eos` are the
    /// tokenizer's special token strings. A template that does not compile
    /// is the model files' fault (exit 1).
    pub fn new(origin: &str, source: &str, bos: &str, eos: &str) -> Result<Self> {
        let mut env = super::render::environment();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_function("strftime_now", |fmt: String| strftime_now(&fmt));
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| {
                crate::Error::model(format!(
                    "the model's chat template {origin} does not compile: {e}"
                ))
            })?;
        Ok(ChatTemplate {
            env,
            origin: origin.to_string(),
            bos_token: bos.to_string(),
            eos_token: eos.to_string(),
            translates: source.contains("source_lang_code"),
        })
    }

    /// Whether the template writes its own translation instruction from
    /// the language codes of a [`Message::translation`], and so wants that
    /// instead of a prompt of glot's.
    pub fn writes_translation_prompt(&self) -> bool {
        self.translates
    }

    /// Renders `messages` with the assistant's turn opened and thinking off.
    /// A template that fails, loops without end or writes without end is
    /// the model files' fault (exit 1).
    pub fn render(&self, messages: &[Message]) -> Result<String> {
        let tmpl = self.env.get_template("chat")?;
        let ctx = context! {
            messages => messages,
            add_generation_prompt => true,
            enable_thinking => false,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        };
        let given = messages.iter().map(|m| m.content.len()).sum();
        super::render::render(&tmpl, ctx, given).map_err(|e| {
            crate::Error::model(format!("the model's chat template {}: {e}", self.origin)).into()
        })
    }
}

/// A piece of a rendered conversation: text the template wrote (which may
/// hold special tokens) or the content of one message (which may not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Template(String),
    Content(usize),
}

/// Marks message contents in a rendering; private-use characters no
/// template writes on its own.
fn placeholder(i: usize) -> String {
    format!("\u{F8FF}glot{i}\u{F8FF}")
}

impl ChatTemplate {
    /// Renders `messages` as template text and message contents, in order,
    /// so each can be tokenized by its own rules. `None` when the template
    /// alters contents so that they cannot be located.
    pub fn render_parts(&self, messages: &[Message]) -> Result<Option<Vec<Part>>> {
        let marked: Vec<Message> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| Message {
                languages: m.languages.clone(),
                ..Message::new(&m.role, placeholder(i))
            })
            .collect();
        let mut rest = self.render(&marked)?;
        let mut parts = Vec::new();
        for i in 0..messages.len() {
            let mark = placeholder(i);
            let Some(at) = rest.find(&mark) else {
                return Ok(None);
            };
            if at > 0 {
                parts.push(Part::Template(rest[..at].to_string()));
            }
            parts.push(Part::Content(i));
            rest = rest[at + mark.len()..].to_string();
        }
        if rest.contains("\u{F8FF}glot") {
            return Ok(None);
        }
        if !rest.is_empty() {
            parts.push(Part::Template(rest));
        }
        Ok(Some(parts))
    }
}

/// Today's date in a `strftime` format (the subset chat templates use).
fn strftime_now(fmt: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let month = MONTHS[(m - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// The UTC date `secs` after the Unix epoch, as YYYY-MM-DD.
pub fn iso_date(secs: u64) -> String {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(iso_date(20_454 * 86_400 + 3_600), "2026-01-01");
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn contents_are_located_in_the_rendering() {
        let t = ChatTemplate::new(
            "test",
            "{% for m in messages %}<s>{{ m.role }}\n{{ m.content | trim }}</s>{% endfor %}<s>assistant\n",
            "",
            "",
        )
        .unwrap();
        let parts = t
            .render_parts(&[Message::new("system", "a"), Message::new("user", "b")])
            .unwrap()
            .unwrap();
        assert_eq!(
            parts,
            vec![
                Part::Template("<s>system\n".into()),
                Part::Content(0),
                Part::Template("</s><s>user\n".into()),
                Part::Content(1),
                // Like jinja2, a single trailing newline of the source is dropped.
                Part::Template("</s><s>assistant".into()),
            ]
        );
        let upper = ChatTemplate::new("test", "{{ messages[0].content | upper }}", "", "").unwrap();
        assert_eq!(
            upper.render_parts(&[Message::new("user", "x")]).unwrap(),
            None
        );
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t =
            ChatTemplate::new("test", "{{ raise_exception('no system role') }}", "", "").unwrap();
        let err = t.render(&[]).unwrap_err().to_string();
        assert!(err.contains("no system role"), "{err}");
    }
}
