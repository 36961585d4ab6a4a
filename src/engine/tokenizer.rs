//! The model's own tokenizer, loaded from `tokenizer.json`.

use std::path::Path;

use anyhow::{anyhow, Context, Result};

/// A thin wrapper that turns tokenizer failures into errors naming the file.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The same tokenizer reading special-token strings as plain text, for
    /// documents: an article that contains `<|im_end|>` must not end a turn.
    literal: tokenizers::Tokenizer,
}

impl Tokenizer {
    /// Loads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("cannot load tokenizer {}", path.display()))?;
        let mut literal = inner.clone();
        literal.set_encode_special_tokens(true);
        Ok(Tokenizer { inner, literal })
    }

    /// Token ids of `text`; `special` adds what the tokenizer's post-processor
    /// adds (a BOS for Llama 3), as `transformers` does for a plain prompt.
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, special)
            .map_err(|e| anyhow!("cannot tokenize text: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of untrusted text: strings that look like special tokens
    /// are tokenized as the characters they are.
    pub fn encode_literal(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .literal
            .encode(text, false)
            .map_err(|e| anyhow!("cannot tokenize text: {e}"))?;
        Ok(enc.get_ids().to_vec())
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
