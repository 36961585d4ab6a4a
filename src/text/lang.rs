//! Language names and codes the user may type, resolved to the name used in
//! prompts. The table is data (`languages.tsv`): code, ISO 639-3, English
//! name, native name.

use crate::error::Error;

const TABLE: &str = include_str!("languages.tsv");
const VARIANTS: &str = include_str!("language_variants.tsv");
const SUBTAGS: &str = include_str!("subtags.tsv");

/// One row of the language table, as `glot languages` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub code: &'static str,
    pub code3: &'static str,
    pub name: &'static str,
    pub native: &'static str,
}

/// Every language glot knows by name.
pub fn all() -> Vec<Entry> {
    rows()
        .map(|r| Entry {
            code: r.code,
            code3: r.code3,
            name: r.english,
            native: r.native,
        })
        .collect()
}

/// A language the user asked for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Language {
    /// ISO 639-1 code (or 639-3 where there is none), with a region or
    /// script subtag when one was given (`pt-BR`).
    pub code: String,
    /// English name, used in prompts (`Portuguese (Brazil)`).
    pub name: String,
}

struct Row<'a> {
    code: &'a str,
    code3: &'a str,
    english: &'a str,
    native: &'a str,
}

fn rows() -> impl Iterator<Item = Row<'static>> {
    TABLE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some(Row {
                code: f.next()?,
                code3: f.next()?,
                english: f.next()?,
                native: f.next()?,
            })
        })
}

/// A document's language as detected from its text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Detected {
    #[serde(flatten)]
    pub language: Language,
    /// The detector's confidence, 0 to 1.
    pub confidence: f64,
    /// Whether the detector vouches for the result (long enough text, a
    /// clear winner); prompts only rely on reliable detections.
    pub reliable: bool,
}

impl Detected {
    /// The language, when the detection is reliable enough to act on.
    pub fn reliable_language(&self) -> Option<&Language> {
        self.reliable.then_some(&self.language)
    }
}

/// Individual-language codes the detector reports for what the table lists
/// under the macro-language (Mandarin for Chinese, …).
const DETECTOR_CODES: &[(&str, &str)] = &[
    ("cmn", "zh"),
    ("pes", "fa"),
    ("arb", "ar"),
    ("zsm", "ms"),
    ("azj", "az"),
    ("uzn", "uz"),
    ("nob", "nb"),
    ("ekk", "et"),
    ("lvs", "lv"),
];

/// Macro-languages and the individual language that stands for them, as
/// far as telling an answer's language goes.
const SAME_LANGUAGE: &[(&str, &str)] = &[("no", "nb")];

/// Whether the detector can recognise the language of `code` at all: for
/// the others, a detection says nothing about whether a text is in it.
pub fn detectable(code: &str) -> bool {
    let primary = primary(code);
    rows().any(|r| {
        r.code == primary
            && (whatlang::Lang::from_code(r.code3).is_some()
                || DETECTOR_CODES.iter().any(|(det, ours)| {
                    *ours == primary && whatlang::Lang::from_code(*det).is_some()
                })
                || SAME_LANGUAGE.iter().any(|(macro_code, individual)| {
                    *macro_code == primary && detectable(individual)
                }))
    })
}

/// Whether two codes name the same language, ignoring region and script
/// (`pt-BR` and `pt`, `no` and `nb`).
pub fn same_language(a: &str, b: &str) -> bool {
    let canonical = |c: &str| {
        let p = primary(c);
        SAME_LANGUAGE
            .iter()
            .find(|(m, _)| *m == p)
            .map_or(p, |(_, i)| *i)
            .to_string()
    };
    canonical(a) == canonical(b)
}

fn primary(code: &str) -> &str {
    code.split(['-', '_']).next().unwrap_or(code)
}

/// Characters looked at: enough for a confident answer on any article.
const DETECT_CHARS: usize = 20_000;

/// Detects the language of a whole document (not chunk by chunk, so a
/// quote in another language does not flip it).
pub fn detect(text: &str) -> Option<Detected> {
    let end = text
        .char_indices()
        .nth(DETECT_CHARS)
        .map_or(text.len(), |(i, _)| i);
    let info = whatlang::detect(&text[..end])?;
    let code3 = info.lang().code();
    let code = DETECTOR_CODES
        .iter()
        .find(|(c, _)| *c == code3)
        .map_or(code3, |(_, c)| *c);
    let language = resolve(code).ok()?;
    Some(Detected {
        language,
        confidence: info.confidence(),
        reliable: info.is_reliable(),
    })
}

/// Resolves a code (`de`, `deu`, `pt-BR`), English name or native name,
/// case-insensitively; also regional names ("português do Brasil") and a
/// name with a subtag in brackets ("Portuguese (BR)").
pub fn resolve(input: &str) -> Result<Language, Error> {
    let wanted = input.trim();
    let lower = wanted.to_lowercase();
    if let Some(tag) = variant(&lower) {
        return resolve(tag);
    }
    if let Some((name, sub)) = lower
        .strip_suffix(')')
        .and_then(|s| s.split_once(" ("))
        .filter(|(_, sub)| {
            (2..=4).contains(&sub.len()) && sub.chars().all(|c| c.is_ascii_alphanumeric())
        })
    {
        if let Ok(base) = resolve(name) {
            return resolve(&format!("{}-{sub}", base.code));
        }
    }
    let (primary, subtag) = match lower.split_once(['-', '_']) {
        Some((p, s)) if p.len() <= 3 && p.is_ascii() => (p.to_string(), Some(s.to_string())),
        _ => (lower.clone(), None),
    };
    for row in rows() {
        let by_code = primary == row.code || primary == row.code3;
        let by_name = subtag.is_none()
            && (lower == row.english.to_lowercase() || lower == row.native.to_lowercase());
        if by_code || by_name {
            return Ok(match subtag.as_deref().filter(|_| by_code) {
                Some(sub) => Language {
                    code: format!("{}-{}", row.code, region_case(sub)),
                    name: format!("{} ({})", row.english, subtag_name(sub)),
                },
                None => Language {
                    code: row.code.to_string(),
                    name: row.english.to_string(),
                },
            });
        }
    }
    Err(Error::Language(format!(
        "unknown language `{wanted}`{}",
        suggestions(&lower)
    )))
}

/// Regional names and the tags they stand for.
pub fn variants() -> impl Iterator<Item = (&'static str, &'static str)> {
    VARIANTS
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .map(|(name, tag)| (name, tag.trim()))
}

/// The tag a regional name stands for.
fn variant(lower: &str) -> Option<&'static str> {
    variants()
        .find(|(name, _)| *name == lower)
        .map(|(_, tag)| tag)
}

fn region_case(sub: &str) -> String {
    match sub.len() {
        2 => sub.to_uppercase(),
        4 => sub[..1].to_uppercase() + &sub[1..],
        _ => sub.to_string(),
    }
}

/// Human names for the subtags users commonly give (`subtags.tsv`).
fn subtag_name(sub: &str) -> String {
    SUBTAGS
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .find(|(tag, _)| *tag == sub)
        .map_or_else(|| region_case(sub), |(_, name)| name.trim().to_string())
}

fn suggestions(lower: &str) -> String {
    let mut scored: Vec<(usize, &str)> = rows()
        .flat_map(|r| {
            [r.code, r.english, r.native]
                .into_iter()
                .map(move |cand| (edit_distance(lower, &cand.to_lowercase()), r.english))
        })
        .chain(variants().map(|(name, _)| (edit_distance(lower, name), name)))
        .collect();
    scored.sort();
    // Short inputs are codes: only a one-letter slip counts as near.
    let near = (lower.chars().count() / 3 + 1).min(3);
    let mut names: Vec<&str> = Vec::new();
    for (d, name) in scored {
        if d > near || names.len() == 3 {
            break;
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        "; run with a code like `de` or a name like `German`".into()
    } else {
        format!("; did you mean {}?", names.join(", "))
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_names_and_native_names() {
        for (input, code, name) in [
            ("de", "de", "German"),
            ("DEU", "de", "German"),
            ("german", "de", "German"),
            ("Deutsch", "de", "German"),
            ("Spanish", "es", "Spanish"),
            ("ja", "ja", "Japanese"),
            ("pt-BR", "pt-BR", "Portuguese (Brazil)"),
            ("zh-Hant", "zh-Hant", "Chinese (Traditional script)"),
            ("русский", "ru", "Russian"),
            ("português do Brasil", "pt-BR", "Portuguese (Brazil)"),
            ("Brazilian Portuguese", "pt-BR", "Portuguese (Brazil)"),
            ("Portuguese (BR)", "pt-BR", "Portuguese (Brazil)"),
            ("Português (pt)", "pt-PT", "Portuguese (Portugal)"),
            ("繁體中文", "zh-Hant", "Chinese (Traditional script)"),
            (
                "Traditional Chinese",
                "zh-Hant",
                "Chinese (Traditional script)",
            ),
            ("français canadien", "fr-CA", "French (Canada)"),
            ("es-419", "es-419", "Spanish (Latin America)"),
            ("pt_br", "pt-BR", "Portuguese (Brazil)"),
        ] {
            let l = resolve(input).unwrap();
            assert_eq!((l.code.as_str(), l.name.as_str()), (code, name), "{input}");
        }
    }

    /// The plain samples; the Japanese one is HTML and is detected from its
    /// main text in the markup tests.
    #[test]
    fn detects_the_sample_articles() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus");
        for (file, code) in [
            ("de-energie.txt", "de"),
            ("en-kim-russia-visit.txt", "en"),
            ("es-maraton.md", "es"),
            ("fr-tramway.txt", "fr"),
            ("ru-biblioteka.txt", "ru"),
            ("zh-gaotie.txt", "zh"),
        ] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            let d = detect(&text).unwrap();
            assert_eq!(d.language.code, code, "{file}");
            assert!(d.reliable, "{file}: {d:?}");
        }
    }

    /// Short snippets are the documented weak spot: a few words can be
    /// detected wrongly or unreliably, so prompts ignore unreliable results.
    #[test]
    fn short_snippets_are_detected_or_flagged_unreliable() {
        for (text, code) in [
            ("Der Zug kommt heute später an.", "de"),
            ("Le tramway arrive à la gare.", "fr"),
            ("Библиотека открыта до девяти вечера.", "ru"),
            ("高铁今天准时到达北京。", "zh"),
        ] {
            let d = detect(text).unwrap();
            assert!(d.language.code == code || !d.reliable, "{text}: {d:?}");
        }
        assert!(detect("").is_none());
    }

    #[test]
    fn languages_the_detector_knows() {
        for code in ["en", "de", "zh-Hant", "ja", "no", "nb", "fa", "pt-BR"] {
            assert!(detectable(code), "{code}");
        }
        for code in ["gl", "eu"] {
            assert!(!detectable(code), "{code}");
        }
        assert!(same_language("no", "nb") && same_language("pt-BR", "pt"));
        assert!(!same_language("pt", "es"));
    }

    #[test]
    fn unknown_languages_suggest_near_ones() {
        let err = resolve("Germn").unwrap_err().to_string();
        assert!(err.contains("unknown language `Germn`"), "{err}");
        assert!(err.contains("German"), "{err}");
        assert!(resolve("klingonese-xx-yy").is_err());
        let err = resolve("portugues brasil").unwrap_err().to_string();
        assert!(err.contains("do brasil"), "{err}");
        let err = resolve("xq").unwrap_err().to_string();
        assert!(!err.contains("Afrikaans"), "{err}");
    }
}
