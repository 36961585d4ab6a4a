//! The model's own tokenizer, loaded from `tokenizer.json` or built from a
//! GGUF file's metadata.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use candle_core::quantized::gguf_file;

/// A thin wrapper that turns tokenizer failures into errors naming the file.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The same tokenizer reading special-token strings as plain text, for
    /// documents: an article that contains `<|im_end|>` must not end a turn.
    literal: tokenizers::Tokenizer,
    /// Ids of the tokens cut out of text before tokenizing it.
    added: HashSet<u32>,
    /// The special tokens' strings, which only prompts may spell, by first
    /// character (Gemma has thousands, nearly all starting with `<`).
    specials: HashMap<char, Vec<String>>,
    /// SentencePiece's leading space, where glot puts it in itself.
    space_prefix: Option<SpacePrefix>,
}

/// llama.cpp's rule for SentencePiece vocabularies: a space before each
/// piece of text that starts the input or follows a token read from the
/// text. A prompt tokenized in parts (template, then article) must get it
/// only where the whole prompt would, so it cannot live in the normalizer.
struct SpacePrefix {
    /// Token strings found in text, with whether they are special (found
    /// only where special tokens are read), by first character.
    tokens: HashMap<char, Vec<(String, bool)>>,
}

impl SpacePrefix {
    fn new(inner: &tokenizers::Tokenizer) -> Self {
        let mut tokens: HashMap<char, Vec<(String, bool)>> = HashMap::new();
        for t in inner.get_added_tokens_decoder().values() {
            if let Some(c) = t.content.chars().next() {
                tokens
                    .entry(c)
                    .or_default()
                    .push((t.content.clone(), t.special));
            }
        }
        // Longest first, as llama.cpp and `tokenizers` both match.
        for list in tokens.values_mut() {
            list.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        }
        SpacePrefix { tokens }
    }

    /// `text` with a space before each piece of text that starts it (when
    /// `after_token`) or follows a token found in it.
    fn apply<'a>(&self, text: &'a str, special: bool, after_token: bool) -> Cow<'a, str> {
        let mut out = String::with_capacity(text.len() + 8);
        let mut after = after_token;
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            let token = self.tokens.get(&c).and_then(|list| {
                list.iter()
                    .find(|(t, is_special)| (special || !is_special) && rest.starts_with(t))
            });
            match token {
                Some((t, _)) => {
                    out.push_str(t);
                    rest = &rest[t.len()..];
                    after = true;
                }
                None => {
                    if after {
                        out.push(' ');
                    }
                    out.push(c);
                    rest = &rest[c.len_utf8()..];
                    after = false;
                }
            }
        }
        Cow::Owned(out)
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| {
            crate::error::Error::model(format!("cannot load tokenizer {}: {e}", path.display()))
        })?;
        Ok(Self::new(inner, false))
    }

    /// Builds the tokenizer a GGUF file's metadata describes (`path` names
    /// the file in errors).
    pub fn from_gguf(meta: &HashMap<String, gguf_file::Value>, path: &Path) -> Result<Self> {
        let vocab = super::gguf_vocab::tokenizer_json(meta)
            .with_context(|| format!("cannot build the tokenizer of {}", path.display()))?;
        let inner: tokenizers::Tokenizer = vocab
            .json
            .parse()
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("cannot build the tokenizer of {}", path.display()))?;
        Ok(Self::new(inner, vocab.space_prefix))
    }

    fn new(inner: tokenizers::Tokenizer, space_prefix: bool) -> Self {
        let mut literal = inner.clone();
        literal.set_encode_special_tokens(true);
        let added = inner.get_added_tokens_decoder().keys().copied().collect();
        let mut specials: HashMap<char, Vec<String>> = HashMap::new();
        for t in inner.get_added_tokens_decoder().values() {
            if let (true, Some(c)) = (t.special, t.content.chars().next()) {
                specials.entry(c).or_default().push(t.content.clone());
            }
        }
        let space_prefix = space_prefix.then(|| SpacePrefix::new(&inner));
        Tokenizer {
            inner,
            literal,
            added,
            specials,
            space_prefix,
        }
    }

    /// Token ids of `text`; `special` adds what the tokenizer's post-processor
    /// adds (a BOS for Llama 3), as `transformers` does for a plain prompt.
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        self.encode_part(text, special, true)
    }

    /// Token ids of a part of a prompt; `after_token` says whether the part
    /// starts the prompt or follows a token read from text (SentencePiece
    /// vocabularies put a space there).
    pub fn encode_part(&self, text: &str, special: bool, after_token: bool) -> Result<Vec<u32>> {
        let text = self.prefixed(text, true, after_token);
        let enc = self
            .inner
            .encode(text.as_ref(), special)
            .map_err(|e| anyhow!("cannot tokenize text: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of untrusted text: strings that look like special tokens
    /// are tokenized as the characters they are.
    pub fn encode_literal(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_literal_part(text, true)
    }

    /// [`Tokenizer::encode_literal`] for a part of a prompt, as
    /// [`Tokenizer::encode_part`].
    pub fn encode_literal_part(&self, text: &str, after_token: bool) -> Result<Vec<u32>> {
        let text = self.prefixed(text, false, after_token);
        let enc = self
            .literal
            .encode(text.as_ref(), false)
            .map_err(|e| anyhow!("cannot tokenize text: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Whether `text` spells a special token, which [`Self::encode`] would
    /// read as that token and [`Self::encode_literal`] as text.
    pub fn holds_special_tokens(&self, text: &str) -> bool {
        text.char_indices().any(|(i, c)| {
            self.specials
                .get(&c)
                .is_some_and(|list| list.iter().any(|t| text[i..].starts_with(t.as_str())))
        })
    }

    /// Whether `ids` end with a token that text is cut at (or are empty):
    /// what the next part of a prompt follows.
    pub fn ends_with_token(&self, ids: &[u32]) -> bool {
        ids.last().is_none_or(|id| self.added.contains(id))
    }

    fn prefixed<'a>(&self, text: &'a str, special: bool, after_token: bool) -> Cow<'a, str> {
        match &self.space_prefix {
            Some(p) => p.apply(text, special, after_token),
            None => Cow::Borrowed(text),
        }
    }

    /// Number of tokens `text` takes as document text.
    pub fn count(&self, text: &str) -> Result<usize> {
        Ok(self.encode_literal(text)?.len())
    }

    /// Text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| anyhow!("cannot decode tokens: {e}"))
    }

    /// Id of a token given as text (`<|im_end|>`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Text of a token id, if the vocabulary has it.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}
