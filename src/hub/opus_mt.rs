//! The registry of opus-mt language pairs that `--model opus-mt` chooses
//! from: which Marian model translates one language into another, directly
//! or through English.

use anyhow::Result;
use serde::Deserialize;

use crate::error::Error;

/// One opus-mt model: a source and target language and where it lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pair {
    pub from: String,
    pub to: String,
    pub repo: String,
    /// The revision with safetensors weights (a conversion pull request,
    /// `refs/pr/N`, for many of these repositories).
    #[serde(default = "main")]
    pub revision: String,
    /// Token that selects the target language of a multilingual model.
    #[serde(default)]
    pub target_token: Option<String>,
}

fn main() -> String {
    "main".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    pair: Vec<Pair>,
}

/// How to get from one language to another with opus-mt models.
#[derive(Debug, Clone)]
pub enum Route<'a> {
    Direct(&'a Pair),
    /// Through English: two models, one after the other.
    Pivot(&'a Pair, &'a Pair),
}

/// The opus-mt pairs glot knows (`models/opus-mt.toml`).
#[derive(Debug, Clone)]
pub struct Registry {
    pub pairs: Vec<Pair>,
}

/// Language of a pair entry matching `code`: exactly, or by its base
/// language (`pt-BR` → `pt`) when the entry has no subtag.
fn matches(entry: &str, code: &str) -> bool {
    let code = script_of(code);
    let base = |c: &str| c.split('-').next().unwrap_or(c).to_ascii_lowercase();
    entry.eq_ignore_ascii_case(code) || (!entry.contains('-') && base(code) == entry)
}

/// Chinese as written in Taiwan, Hong Kong and Macau is Traditional.
fn script_of(code: &str) -> &str {
    match code.to_ascii_lowercase().as_str() {
        "zh-tw" | "zh-hk" | "zh-mo" => "zh-Hant",
        _ => code,
    }
}

impl Pair {
    /// The name `glot models download` takes for this pair.
    pub fn download_name(&self) -> String {
        format!("opus-mt:{}-{}", self.from, self.to)
    }
}

/// `SRC-TGT` of `opus-mt:SRC-TGT`; language codes may carry subtags
/// (`en-zh-Hant`), so the source is the first part.
pub fn parse_pair(spec: &str) -> Option<(&str, &str)> {
    let rest = spec.strip_prefix("opus-mt:")?;
    rest.split_once('-')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
}

impl Registry {
    pub fn builtin() -> Self {
        Self::parse(include_str!("../../models/opus-mt.toml")).expect("built-in registry parses")
    }

    pub fn parse(text: &str) -> Result<Self> {
        let f: RegistryFile =
            toml::from_str(text).map_err(|e| Error::model(format!("opus-mt registry: {e}")))?;
        Ok(Registry { pairs: f.pair })
    }

    /// The model from `from` into `to`; an entry for the exact subtag wins.
    pub fn direct(&self, from: &str, to: &str) -> Option<&Pair> {
        let candidates = || {
            self.pairs
                .iter()
                .filter(|p| matches(&p.from, from) && matches(&p.to, to))
        };
        candidates()
            .find(|p| p.to.eq_ignore_ascii_case(script_of(to)))
            .or_else(|| candidates().next())
    }

    /// A direct model, or two through English; an error that lists what
    /// exists for each language otherwise.
    pub fn route(&self, from: &str, to: &str) -> Result<Route<'_>> {
        if let Some(p) = self.direct(from, to) {
            return Ok(Route::Direct(p));
        }
        if let (Some(a), Some(b)) = (self.direct(from, "en"), self.direct("en", to)) {
            if !matches("en", from) && !matches("en", to) {
                return Ok(Route::Pivot(a, b));
            }
        }
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        let out_of = list(self.from_language(from).map(|p| p.to.clone()).collect());
        let into = list(self.into_language(to).map(|p| p.from.clone()).collect());
        Err(Error::model(format!(
            "no opus-mt model translates {from} into {to}, directly or through English; known models from {from} into: {out_of}; into {to} from: {into} (see `glot models pairs`; --model madlad400-3b covers 400+ languages)"
        ))
        .into())
    }

    pub fn from_language<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a Pair> + 'a {
        self.pairs.iter().filter(move |p| matches(&p.from, code))
    }

    pub fn into_language<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a Pair> + 'a {
        self.pairs.iter().filter(move |p| matches(&p.to, code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[[pair]]
from = "en"
to = "de"
repo = "Helsinki-NLP/opus-mt-en-de"
revision = "refs/pr/4"

[[pair]]
from = "fi"
to = "en"
repo = "Helsinki-NLP/opus-mt-fi-en"

[[pair]]
from = "en"
to = "zh"
repo = "Helsinki-NLP/opus-mt-en-zh"
target_token = ">>cmn_Hans<<"

[[pair]]
from = "en"
to = "zh-Hant"
repo = "Helsinki-NLP/opus-mt-en-zh"
target_token = ">>cmn_Hant<<"
"#;

    #[test]
    fn routes_direct_through_english_or_not_at_all() {
        let r = Registry::parse(SAMPLE).unwrap();
        assert!(
            matches!(r.route("en", "de").unwrap(), Route::Direct(p) if p.revision == "refs/pr/4")
        );
        match r.route("fi", "de").unwrap() {
            Route::Pivot(a, b) => {
                assert_eq!(a.repo, "Helsinki-NLP/opus-mt-fi-en");
                assert_eq!(b.repo, "Helsinki-NLP/opus-mt-en-de");
            }
            other => panic!("{other:?}"),
        }
        let e = r.route("de", "fi").unwrap_err().to_string();
        assert!(e.contains("no opus-mt model translates de into fi"), "{e}");
        assert!(e.contains("into fi from: none"), "{e}");
    }

    #[test]
    fn subtags_pick_their_own_entry_or_the_base_language() {
        let r = Registry::parse(SAMPLE).unwrap();
        let token = |to: &str| r.direct("en", to).unwrap().target_token.clone().unwrap();
        assert_eq!(token("zh-Hant"), ">>cmn_Hant<<");
        assert_eq!(token("zh"), ">>cmn_Hans<<");
        assert_eq!(token("zh-Hans"), ">>cmn_Hans<<");
        assert_eq!(token("zh-TW"), ">>cmn_Hant<<");
        assert!(r.direct("en-GB", "de").is_some());
    }

    #[test]
    fn the_builtin_registry_covers_twenty_pairs_with_english() {
        let r = Registry::builtin();
        let with_english = r
            .pairs
            .iter()
            .filter(|p| p.from == "en" || p.to == "en")
            .count();
        assert!(with_english >= 20, "{with_english}");
        for p in &r.pairs {
            crate::hub::manifest::check_repo_id(&p.repo).unwrap();
        }
    }
}
