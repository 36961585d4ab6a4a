//! Language names and codes the user may type, resolved to the name used in
//! prompts. The table is data (`languages.tsv`): code, ISO 639-3, English
//! name, native name.

use crate::error::Error;

const TABLE: &str = include_str!("languages.tsv");

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

/// Resolves a code (`de`, `deu`, `pt-BR`), English name or native name,
/// case-insensitively.
pub fn resolve(input: &str) -> Result<Language, Error> {
    let wanted = input.trim();
    let lower = wanted.to_lowercase();
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

fn region_case(sub: &str) -> String {
    match sub.len() {
        2 => sub.to_uppercase(),
        4 => sub[..1].to_uppercase() + &sub[1..],
        _ => sub.to_string(),
    }
}

/// Human names for the subtags users commonly give.
fn subtag_name(sub: &str) -> String {
    match sub {
        "br" => "Brazil".into(),
        "pt" => "Portugal".into(),
        "us" => "United States".into(),
        "gb" | "uk" => "United Kingdom".into(),
        "hant" | "tw" => "Traditional script".into(),
        "hans" | "cn" => "Simplified script".into(),
        "mx" => "Mexico".into(),
        "es" => "Spain".into(),
        "ca" => "Canada".into(),
        "ch" => "Switzerland".into(),
        "at" => "Austria".into(),
        other => region_case(other),
    }
}

fn suggestions(lower: &str) -> String {
    let mut scored: Vec<(usize, &str)> = rows()
        .flat_map(|r| {
            [r.code, r.english, r.native]
                .into_iter()
                .map(move |cand| (edit_distance(lower, &cand.to_lowercase()), r.english))
        })
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
        ] {
            let l = resolve(input).unwrap();
            assert_eq!((l.code.as_str(), l.name.as_str()), (code, name), "{input}");
        }
    }

    #[test]
    fn unknown_languages_suggest_near_ones() {
        let err = resolve("Germn").unwrap_err().to_string();
        assert!(err.contains("unknown language `Germn`"), "{err}");
        assert!(err.contains("German"), "{err}");
        assert!(resolve("klingonese-xx-yy").is_err());
        let err = resolve("xq").unwrap_err().to_string();
        assert!(!err.contains("Afrikaans"), "{err}");
    }
}
