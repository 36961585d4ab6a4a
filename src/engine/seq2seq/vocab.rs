//! Marian's vocabulary: text is cut into pieces by the source SentencePiece
//! model, and pieces are numbered by `vocab.json`, the model's own joint
//! vocabulary, whose order is neither `.spm` file's.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, Result};
use tokenizers::{NormalizedString, Normalizer};

use crate::engine::sentencepiece::SpModel;
use crate::error::Error;

/// Encodes source text to model ids and decodes model ids to text.
pub struct MarianVocab {
    source: tokenizers::Tokenizer,
    ids: HashMap<String, u32>,
    pieces: Vec<Option<String>>,
    pub eos: u32,
    pub unk: u32,
    pub pad: u32,
}

impl MarianVocab {
    /// Loads `source.spm` and `vocab.json`.
    pub fn load(source_spm: &Path, vocab_json: &Path) -> Result<Self> {
        let source = SpModel::from_file(source_spm)?.to_tokenizer()?;
        let json = crate::hub::read_json(vocab_json)?;
        let map = json.as_object().ok_or_else(|| {
            Error::model(format!(
                "{}: expected an object of pieces and ids",
                vocab_json.display()
            ))
        })?;
        let mut ids = HashMap::with_capacity(map.len());
        for (piece, id) in map {
            let id = id
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| {
                    Error::model(format!(
                        "{}: id of `{piece}` is not a number",
                        vocab_json.display()
                    ))
                })?;
            // Ids index a table: a stray huge one must not allocate it.
            if id >= 1 << 24 {
                return Err(Error::model(format!(
                    "{}: id {id} of `{piece}` is out of range",
                    vocab_json.display()
                ))
                .into());
            }
            ids.insert(piece.clone(), id);
        }
        let size = ids.values().max().map_or(0, |m| *m as usize + 1);
        let mut pieces = vec![None; size];
        for (piece, id) in &ids {
            pieces[*id as usize] = Some(piece.clone());
        }
        let special = |name: &str| {
            ids.get(name)
                .copied()
                .ok_or_else(|| Error::model(format!("{}: no `{name}` entry", vocab_json.display())))
        };
        Ok(MarianVocab {
            eos: special("</s>")?,
            unk: special("<unk>")?,
            pad: special("<pad>")?,
            source,
            ids,
            pieces,
        })
    }

    /// Ids of `text` followed by `</s>`, preceded by a target-language
    /// token such as `>>fra<<` for models that translate into several
    /// languages. Strings in the text that look like special tokens are
    /// plain text.
    pub fn encode(&self, text: &str, target_token: Option<&str>) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        if let Some(t) = target_token {
            out.push(*self.ids.get(t).ok_or_else(|| {
                Error::model(format!("the model has no target-language token `{t}`"))
            })?);
        }
        if !self.normalizes_to_nothing(text)? {
            let enc = self
                .source
                .encode(text, false)
                .map_err(|e| anyhow!("cannot tokenize text: {e}"))?;
            out.extend(
                enc.get_tokens()
                    .iter()
                    .map(|t| self.ids.get(t).copied().unwrap_or(self.unk)),
            );
        }
        out.push(self.eos);
        Ok(out)
    }

    /// SentencePiece gives no pieces at all for text that normalizes to
    /// nothing (a dummy "▁" would otherwise be the only piece).
    fn normalizes_to_nothing(&self, text: &str) -> Result<bool> {
        let Some(n) = self.source.get_normalizer() else {
            return Ok(text.is_empty());
        };
        let mut s = NormalizedString::from(text);
        n.normalize(&mut s)
            .map_err(|e| anyhow!("cannot normalize text: {e}"))?;
        Ok(s.get().is_empty())
    }

    /// Text of `ids`, without `</s>`, `<unk>` and `<pad>`.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut text = String::new();
        for &id in ids {
            if id == self.eos || id == self.unk || id == self.pad {
                continue;
            }
            if let Some(Some(p)) = self.pieces.get(id as usize) {
                text.push_str(p);
            }
        }
        text.replace('▁', " ").trim().to_string()
    }

    /// Number of ids the model knows.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    /// Whether the vocabulary is empty (never, for a loaded model).
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Target-language tokens (`>>deu<<`) of a multilingual model.
    pub fn target_tokens(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .ids
            .keys()
            .filter(|k| k.starts_with(">>") && k.ends_with("<<"))
            .map(String::as_str)
            .collect();
        v.sort_unstable();
        v
    }
}

/// T5's vocabulary: the repository's `tokenizer.json`, or one built from its
/// `spiece.model` as `transformers` would build it.
pub struct T5Vocab {
    tok: tokenizers::Tokenizer,
    /// The same tokenizer reading added special tokens in text as text.
    literal: tokenizers::Tokenizer,
    pub eos: u32,
    /// Ids that text must not produce (the unigram model itself matches
    /// `</s>` and `<pad>` typed in an article), and what stands for them.
    control: Vec<u32>,
    unk: Option<u32>,
}

impl T5Vocab {
    /// Loads `tokenizer.json` when there is one, else converts `spiece.model`.
    pub fn load(
        tokenizer_json: Option<&Path>,
        spiece: Option<&Path>,
        eos: u32,
        pad: u32,
    ) -> Result<Self> {
        let tok = match (tokenizer_json, spiece) {
            (Some(p), _) => load_tokenizer(p)?,
            (None, Some(p)) => SpModel::from_file(p)?.to_t5_tokenizer(100)?,
            (None, None) => {
                return Err(Error::model("no tokenizer.json or spiece.model").into());
            }
        };
        let literal = literal(&tok);
        let unk = tok.token_to_id("<unk>");
        Ok(T5Vocab {
            tok,
            literal,
            eos,
            control: vec![eos, pad],
            unk,
        })
    }

    /// `prefix` tokens (MADLAD's `<2de>`), the ids of `text`, and `</s>`.
    pub fn encode(&self, text: &str, prefix: Option<&str>) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        if let Some(p) = prefix {
            out.push(self.tok.token_to_id(p).ok_or_else(|| {
                Error::model(format!("the model has no target-language token `{p}`"))
            })?);
        }
        // An article that says `</s>` must not end its sentence there.
        out.extend(
            literal_ids(&self.literal, text)?
                .iter()
                .map(|&id| match self.unk {
                    Some(unk) if self.control.contains(&id) => unk,
                    _ => id,
                }),
        );
        out.push(self.eos);
        Ok(out)
    }

    /// Text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        decode(&self.tok, ids)
    }

    /// Whether the vocabulary has `token` (a `<2xx>` tag).
    pub fn has(&self, token: &str) -> bool {
        self.tok.token_to_id(token).is_some()
    }
}

/// BART's vocabulary: GPT-2's byte-level BPE from the repository's
/// `tokenizer.json`, each input between `<s>` and `</s>` as its
/// post-processor puts them.
pub struct BartVocab {
    tok: tokenizers::Tokenizer,
    /// The same tokenizer reading special tokens typed in text as text.
    literal: tokenizers::Tokenizer,
    bos: u32,
    eos: u32,
}

impl BartVocab {
    pub fn load(tokenizer_json: &Path, bos: u32, eos: u32) -> Result<Self> {
        let tok = load_tokenizer(tokenizer_json)?;
        Ok(BartVocab {
            literal: literal(&tok),
            tok,
            bos,
            eos,
        })
    }

    /// `<s>`, the ids of `text`, `</s>`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let ids = literal_ids(&self.literal, text)?;
        let mut out = Vec::with_capacity(ids.len() + 2);
        out.push(self.bos);
        out.extend(ids);
        out.push(self.eos);
        Ok(out)
    }

    /// Text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        decode(&self.tok, ids)
    }
}

/// The vocabulary of a many-to-many model, NLLB-200 or mBART-50:
/// SentencePiece pieces in fairseq's id layout from the repository's
/// `tokenizer.json`, with a token per language (NLLB: language and script,
/// `eng_Latn`, `zho_Hant`; mBART-50: language and region, `en_XX`,
/// `zh_CN`). The source language's token leads the input, `</s>` ends it;
/// the target's is forced as the first token written.
pub struct MultilingualVocab {
    tok: tokenizers::Tokenizer,
    /// The same tokenizer reading special tokens typed in text as text.
    literal: tokenizers::Tokenizer,
    eos: u32,
    /// The language tokens, sorted.
    languages: Vec<String>,
}

/// ISO 639-3 codes whose language NLLB names by one of its members (the
/// macrolanguage's main variety).
const NLLB_MEMBERS: &[(&str, &str)] = &[
    ("ara", "arb"),
    ("fas", "pes"),
    ("msa", "zsm"),
    ("swa", "swh"),
    ("lav", "lvs"),
    ("sqi", "als"),
    ("uzb", "uzn"),
    ("mon", "khk"),
    ("pus", "pbt"),
    ("aze", "azj"),
    ("nor", "nob"),
    ("que", "quy"),
    ("orm", "gaz"),
    ("yid", "ydd"),
    ("kur", "kmr"),
];

/// The script NLLB's token takes when the language has several and the
/// code names none.
const NLLB_SCRIPTS: &[(&str, &str)] = &[("zho", "Hans"), ("arb", "Arab"), ("kas", "Arab")];

impl MultilingualVocab {
    pub fn load(tokenizer_json: &Path, eos: u32) -> Result<Self> {
        let tok = load_tokenizer(tokenizer_json)?;
        let mut languages: Vec<String> = tok
            .get_added_tokens_decoder()
            .values()
            .map(|t| t.content.clone())
            .filter(|t| is_language_token(t))
            .collect();
        languages.sort_unstable();
        if languages.is_empty() {
            return Err(Error::model(format!(
                "{} has no language tokens (eng_Latn, en_XX, …)",
                tokenizer_json.display()
            ))
            .into());
        }
        Ok(MultilingualVocab {
            literal: literal(&tok),
            tok,
            eos,
            languages,
        })
    }

    /// `lead` (the source language's token) when given, the ids of
    /// `text`, `</s>`.
    pub fn encode(&self, text: &str, lead: Option<&str>) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        if let Some(l) = lead {
            out.push(self.id(l)?);
        }
        out.extend(literal_ids(&self.literal, text)?);
        out.push(self.eos);
        Ok(out)
    }

    /// Text of `ids`, special tokens (the language's among them) left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        decode(&self.tok, ids)
    }

    /// The id of a language token.
    pub fn id(&self, token: &str) -> Result<u32> {
        self.tok
            .token_to_id(token)
            .filter(|_| self.languages.iter().any(|l| l == token))
            .ok_or_else(|| {
                Error::model(format!("the model has no language token `{token}`")).into()
            })
    }

    /// The token of the language `code` (`de`, `zh-Hant`, `pt-BR`) whose
    /// ISO 639-3 code is `code3`: NLLB's `deu_Latn`, `zho_Hant` (a script
    /// subtag picks among a language's scripts; without one the usual
    /// script is taken), or mBART-50's `de_DE`.
    pub fn language_token(&self, code: &str, code3: &str) -> Option<String> {
        self.nllb_token(code, code3)
            .or_else(|| self.mbart_token(code))
    }

    /// mBART-50's token: the one language token of the ISO 639-1 code.
    fn mbart_token(&self, code: &str) -> Option<String> {
        let base = code.split('-').next()?;
        let mine: Vec<&String> = self
            .languages
            .iter()
            .filter(|l| l.len() == 5 && l.starts_with(base) && l.as_bytes()[2] == b'_')
            .collect();
        match mine.as_slice() {
            [one] => Some((*one).clone()),
            _ => None,
        }
    }

    fn nllb_token(&self, code: &str, code3: &str) -> Option<String> {
        let base = NLLB_MEMBERS
            .iter()
            .find(|(macro_, _)| *macro_ == code3)
            .map_or(code3, |(_, member)| *member);
        let mine: Vec<&String> = self
            .languages
            .iter()
            .filter(|l| l.split('_').next() == Some(base))
            .collect();
        let script = code.split('-').skip(1).find(|s| s.len() == 4).or_else(|| {
            NLLB_SCRIPTS
                .iter()
                .find(|(l, _)| *l == base)
                .map(|(_, s)| *s)
        });
        match (mine.as_slice(), script) {
            ([], _) => None,
            ([one], _) => Some((*one).clone()),
            (several, Some(s)) => several
                .iter()
                .find(|l| l.ends_with(&format!("_{s}")))
                .map(|l| (*l).clone()),
            (several, None) => several
                .iter()
                .find(|l| l.ends_with("_Latn"))
                .or(several.first())
                .map(|l| (*l).clone()),
        }
    }
}

/// NLLB's `eng_Latn` (three lowercase letters, `_`, a script in title
/// case) or mBART-50's `en_XX` (two lowercase letters, `_`, two capitals).
fn is_language_token(t: &str) -> bool {
    let b = t.as_bytes();
    let nllb = b.len() == 8
        && b[..3].iter().all(u8::is_ascii_lowercase)
        && b[3] == b'_'
        && b[4].is_ascii_uppercase()
        && b[5..].iter().all(u8::is_ascii_lowercase);
    let mbart = b.len() == 5
        && b[..2].iter().all(u8::is_ascii_lowercase)
        && b[2] == b'_'
        && b[3..].iter().all(u8::is_ascii_uppercase);
    nllb || mbart
}

/// A repository's `tokenizer.json`.
fn load_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer> {
    tokenizers::Tokenizer::from_file(path)
        .map_err(|e| Error::model(format!("cannot load tokenizer {}: {e}", path.display())).into())
}

/// The same tokenizer reading special tokens typed in text as text: an
/// article that says `</s>` must not end its sentence there.
fn literal(tok: &tokenizers::Tokenizer) -> tokenizers::Tokenizer {
    let mut literal = tok.clone();
    literal.set_encode_special_tokens(true);
    literal
}

/// Ids of `text` alone, no special tokens added.
fn literal_ids(literal: &tokenizers::Tokenizer, text: &str) -> Result<Vec<u32>> {
    let enc = literal
        .encode(text, false)
        .map_err(|e| anyhow!("cannot tokenize text: {e}"))?;
    Ok(enc.get_ids().to_vec())
}

/// Text of `ids`, special tokens left out.
fn decode(tok: &tokenizers::Tokenizer, ids: &[u32]) -> Result<String> {
    tok.decode(ids, true)
        .map_err(|e| anyhow!("cannot decode tokens: {e}"))
}
