//! A tokenizer built from a GGUF file's own metadata, so that one `.gguf`
//! file is a whole model, as it is for llama.cpp and ollama.
//!
//! The metadata holds what llama.cpp tokenizes with: the vocabulary kind
//! (`tokenizer.ggml.model`), tokens, their types and scores, BPE merges, the
//! pre-tokenizer by name (`tokenizer.ggml.pre`), and the BOS/EOS rules. This
//! module writes the equivalent `tokenizer.json` for the `tokenizers` crate,
//! so the rest of glot sees one kind of tokenizer whatever the source:
//!
//! - `gpt2` (byte-level BPE): llama.cpp splits text with one or more regular
//!   expressions chosen by the pre-tokenizer name, each split isolating its
//!   matches, then maps bytes to characters and merges. That is a `Sequence`
//!   of `Split` pre-tokenizers followed by `ByteLevel`; pre-tokenizers whose
//!   name says so (`llama-bpe`, `tekken`, …) look a whole word up before
//!   merging (`ignore_merges`).
//! - `llama` (SentencePiece BPE): llama.cpp replaces spaces by `▁`, puts one
//!   in front of every piece of text that starts the input or follows a
//!   special token (unless `add_space_prefix` is false, as in Gemma files),
//!   and merges the adjacent pair whose result has the highest score, bytes
//!   falling back to `<0xXX>` tokens. That is BPE with byte fallback whose
//!   merges are ranked by the score of what they make; the leading spaces
//!   are put in by [`super::tokenizer::Tokenizer`].
//!
//! Control and unknown tokens are special: read as tokens in prompts, as
//! characters in documents. User-defined tokens are always read as tokens,
//! as llama.cpp does.

use std::collections::HashMap;

use anyhow::Result;
use candle_core::quantized::gguf_file::Value;
use serde_json::{json, Map, Value as Json};

use crate::error::Error;

type Metadata = HashMap<String, Value>;

/// GGUF token types, as llama.cpp numbers them.
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_BYTE: i32 = 6;

/// What the GGUF metadata's tokenizer is in `tokenizers`' terms.
pub struct GgufVocab {
    /// The equivalent `tokenizer.json`.
    pub json: String,
    /// Whether a space goes before each piece of text that starts the input
    /// or follows a token read from the text. `tokenizers` would put it
    /// before every piece, also one that continues a prompt built in parts,
    /// so [`super::tokenizer::Tokenizer`] does it itself.
    pub space_prefix: bool,
}

/// The `tokenizer.json` equivalent of the GGUF metadata's tokenizer.
pub fn tokenizer_json(meta: &Metadata) -> Result<GgufVocab> {
    let model = string(meta, "tokenizer.ggml.model")?;
    let tokens = strings(meta, "tokenizer.ggml.tokens")?;
    let types = per_token(
        meta,
        "tokenizer.ggml.token_type",
        tokens.len(),
        1,
        Value::to_i32,
    )?;
    let (tokenizer, space_prefix) = match model.as_str() {
        "gpt2" => (byte_level_bpe(meta, &tokens, &types)?, false),
        "llama" => (
            sentencepiece_bpe(meta, &tokens, &types)?,
            flag(meta, "tokenizer.ggml.add_space_prefix").unwrap_or(true),
        ),
        other => {
            return Err(Error::model(format!(
                "GGUF tokenizer `{other}` is not supported (supported: gpt2, llama); \
                 put the model's tokenizer.json beside the file or pass --tokenizer"
            ))
            .into())
        }
    };
    Ok(GgufVocab {
        json: tokenizer.to_string(),
        space_prefix,
    })
}

fn bad(key: &str, e: impl std::fmt::Display) -> anyhow::Error {
    Error::model(format!("GGUF metadata `{key}` is malformed ({e})")).into()
}

fn string(meta: &Metadata, key: &str) -> Result<String> {
    meta.get(key)
        .ok_or_else(|| Error::model(format!("GGUF metadata has no `{key}`")))?
        .to_string()
        .cloned()
        .map_err(|e| bad(key, e))
}

fn strings(meta: &Metadata, key: &str) -> Result<Vec<String>> {
    meta.get(key)
        .ok_or_else(|| Error::model(format!("GGUF metadata has no `{key}`")))?
        .to_vec()
        .map_err(|e| bad(key, e))?
        .iter()
        .map(|v| v.to_string().cloned().map_err(|e| bad(key, e)))
        .collect()
}

/// One number per token (types, scores), or `default` for each when the
/// key is absent.
fn per_token<T: Clone>(
    meta: &Metadata,
    key: &str,
    tokens: usize,
    default: T,
    read: impl Fn(&Value) -> candle_core::Result<T>,
) -> Result<Vec<T>> {
    let Some(v) = meta.get(key) else {
        return Ok(vec![default; tokens]);
    };
    let values = v
        .to_vec()
        .map_err(|e| bad(key, e))?
        .iter()
        .map(|x| read(x).map_err(|e| bad(key, e)))
        .collect::<Result<Vec<T>>>()?;
    if values.len() != tokens {
        return Err(Error::model(format!(
            "GGUF metadata `{key}` has {} entries for {tokens} tokens",
            values.len()
        ))
        .into());
    }
    Ok(values)
}

fn flag(meta: &Metadata, key: &str) -> Option<bool> {
    meta.get(key).and_then(|v| v.to_bool().ok())
}

fn id(meta: &Metadata, key: &str) -> Option<u32> {
    meta.get(key).and_then(|v| v.to_u32().ok())
}

/// The regular expressions llama.cpp splits text with before byte-level BPE,
/// by pre-tokenizer name, and whether a word found whole in the vocabulary
/// skips merging. Names llama.cpp maps to the same split share a row.
fn split_rule(pre: &str) -> Option<(&'static [&'static str], bool)> {
    const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
    const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    Some(match pre {
        "default" | "gpt-2" | "phi-2" | "mpt" | "olmo" | "jais" | "exaone4" | "roberta-bpe" => {
            (&[GPT2], false)
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "lfm2" => {
            (&[LLAMA3], true)
        }
        "dbrx" | "smaug-bpe" => (&[LLAMA3], false),
        "glm4" => (&[LLAMA3], true),
        "chatglm-bpe" => (&[LLAMA3], false),
        "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "hunyuan" => (&[QWEN2], false),
        "qwen35" => (&[QWEN35], false),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => {
            (&[r"\p{N}", GPT2], false)
        }
        "tekken" => (&[TEKKEN], true),
        "gpt-4o" | "minimax-m2" => (&[GPT4O], false),
        _ => return None,
    })
}

/// `tokenizer.ggml.model = gpt2`: byte-level BPE.
fn byte_level_bpe(meta: &Metadata, tokens: &[String], types: &[i32]) -> Result<Json> {
    let pre = match meta.get("tokenizer.ggml.pre") {
        Some(_) => string(meta, "tokenizer.ggml.pre")?,
        None => "default".to_string(),
    };
    let (splits, ignore_merges) = split_rule(&pre).ok_or_else(|| {
        Error::model(format!(
            "GGUF pre-tokenizer `{pre}` is not supported; \
             put the model's tokenizer.json beside the file or pass --tokenizer"
        ))
    })?;
    let merges = match meta.get("tokenizer.ggml.merges") {
        Some(_) => strings(meta, "tokenizer.ggml.merges")?,
        None => Vec::new(),
    };
    // llama.cpp adds a BOS by default for Llama 3's pre-tokenizer.
    let default_bos = matches!(pre.as_str(), "llama3" | "llama-v3" | "llama-bpe");
    let mut pre_tokenizers: Vec<Json> = splits
        .iter()
        .map(|re| {
            json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false})
        })
        .collect();
    pre_tokenizers.push(
        json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}),
    );
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(tokens, types),
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": pre_tokenizers},
        "post_processor": post_processor(meta, tokens, default_bos)?,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": ignore_merges,
            "vocab": vocab(tokens),
            "merges": merges,
        },
    }))
}

/// `tokenizer.ggml.model = llama`: SentencePiece BPE with byte fallback.
fn sentencepiece_bpe(meta: &Metadata, tokens: &[String], types: &[i32]) -> Result<Json> {
    let scores = per_token(
        meta,
        "tokenizer.ggml.scores",
        tokens.len(),
        0.0,
        Value::to_f32,
    )?;
    let space_prefix = flag(meta, "tokenizer.ggml.add_space_prefix").unwrap_or(true);
    let unk = id(meta, "tokenizer.ggml.unknown_token_id")
        .and_then(|i| tokens.get(i as usize))
        .cloned();
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(tokens, types),
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        "pre_tokenizer": null,
        "post_processor": post_processor(meta, tokens, true)?,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": unk,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": true,
            "byte_fallback": true,
            "ignore_merges": false,
            "vocab": vocab(tokens),
            "merges": merges_from_scores(tokens, types, &scores),
        },
    }))
}

/// Token → id. A token text that appears twice keeps its first id, as
/// llama.cpp's lookup does.
fn vocab(tokens: &[String]) -> Json {
    let mut map = Map::new();
    for (i, t) in tokens.iter().enumerate() {
        map.entry(t.clone()).or_insert(json!(i));
    }
    Json::Object(map)
}

/// Tokens that end a turn in the chat formats of common model families.
/// llama.cpp stops on them, and makes them control tokens whatever their
/// type says.
pub(crate) const END_OF_TURN_TOKENS: &[&str] = &[
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "<｜end▁of▁sentence｜>",
];

/// The other tokens llama.cpp makes control tokens by their text: further
/// ends of generation, and fill-in-the-middle markers.
const CONTROL_BY_NAME: &[&str] = &[
    "</s>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "[PAD]",
    "<eos>",
    "<turn|>",
    "<end_of_utterance>",
    "<|return|>",
    "<|call|>",
    "<|calls|>",
    "<|flush|>",
    "<|tool_response>",
    "[e~[",
    "<PRE>",
    "<SUF>",
    "<MID>",
    "<PAD>",
    "<REPO>",
    "▁<PRE>",
    "▁<SUF>",
    "▁<MID>",
    "<fim-prefix>",
    "<fim-suffix>",
    "<fim-middle>",
    "<fim-pad>",
    "<fim-repo>",
    "<fim_prefix>",
    "<fim_suffix>",
    "<fim_middle>",
    "<fim_pad>",
    "<reponame>",
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    "<|fim_pad|>",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<|code_prefix|>",
    "<|code_suffix|>",
    "<|code_middle|>",
    "<|prefix|>",
    "<|suffix|>",
    "<|middle|>",
    "<｜fim▁begin｜>",
    "<｜fim▁hole｜>",
    "<｜fim▁end｜>",
];

/// Tokens llama.cpp cuts out of text before tokenizing it: control and
/// unknown tokens only where special tokens are read, user-defined ones
/// everywhere.
fn added_tokens(tokens: &[String], types: &[i32]) -> Vec<Json> {
    tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter_map(|(i, (t, ty))| {
            let special = match *ty {
                _ if END_OF_TURN_TOKENS.contains(&t.as_str())
                    || CONTROL_BY_NAME.contains(&t.as_str()) =>
                {
                    true
                }
                TYPE_CONTROL | TYPE_UNKNOWN => true,
                TYPE_USER_DEFINED => false,
                _ => return None,
            };
            Some(json!({
                "id": i,
                "content": t,
                "single_word": false,
                "lstrip": false,
                "rstrip": false,
                "normalized": false,
                "special": special,
            }))
        })
        .collect()
}

/// BOS/EOS added around a prompt, as the GGUF's flags say; without a flag,
/// llama.cpp's default for the vocabulary (`default_bos`) and no EOS.
fn post_processor(meta: &Metadata, tokens: &[String], default_bos: bool) -> Result<Json> {
    let add_bos = flag(meta, "tokenizer.ggml.add_bos_token").unwrap_or(default_bos);
    let add_eos = flag(meta, "tokenizer.ggml.add_eos_token").unwrap_or(false);
    let special = |key: &str| -> Result<Option<(String, u32)>> {
        let Some(i) = id(meta, key) else {
            return Ok(None);
        };
        let t = tokens.get(i as usize).ok_or_else(|| {
            Error::model(format!("GGUF metadata `{key}` = {i} is not a token id"))
        })?;
        Ok(Some((t.clone(), i)))
    };
    let mut single = Vec::new();
    let mut specials = Map::new();
    let mut add = |(t, i): (String, u32), list: &mut Vec<Json>| {
        list.push(json!({"SpecialToken": {"id": t, "type_id": 0}}));
        specials.insert(t.clone(), json!({"id": t, "ids": [i], "tokens": [t]}));
    };
    if add_bos {
        let bos = special("tokenizer.ggml.bos_token_id")?.ok_or_else(|| {
            Error::model("GGUF metadata asks for a BOS token but names none".to_string())
        })?;
        add(bos, &mut single);
    }
    single.push(json!({"Sequence": {"id": "A", "type_id": 0}}));
    if add_eos {
        let eos = special("tokenizer.ggml.eos_token_id")?.ok_or_else(|| {
            Error::model("GGUF metadata asks for an EOS token but names none".to_string())
        })?;
        add(eos, &mut single);
    }
    let mut pair = single.clone();
    pair.push(json!({"Sequence": {"id": "B", "type_id": 1}}));
    Ok(json!({
        "type": "TemplateProcessing",
        "single": single,
        "pair": pair,
        "special_tokens": specials,
    }))
}

/// BPE merges equivalent to SentencePiece's rule: every way of making a
/// token from two shorter tokens, ranked by the score of the token made
/// (highest first). Byte tokens are never made by merging.
fn merges_from_scores(tokens: &[String], types: &[i32], scores: &[f32]) -> Vec<Json> {
    let ids: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut merges: Vec<(f32, usize, usize, usize)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if types[i] == TYPE_BYTE || ids.get(t.as_str()) != Some(&i) {
            continue;
        }
        for (cut, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(cut);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                merges.push((scores[i], i, li, ri));
            }
        }
    }
    merges.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
            .then(a.3.cmp(&b.3))
    });
    merges
        .into_iter()
        .map(|(_, _, l, r)| json!([tokens[l], tokens[r]]))
        .collect()
}
