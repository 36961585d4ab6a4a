//! A GGUF file's own metadata is its tokenizer: glot's ids equal llama.cpp's
//! for byte-level BPE (`qwen2`, `llama-bpe` and `smollm` pre-tokenizers) and
//! SentencePiece (llama and Gemma style) on a multilingual list of texts, as
//! prompts, as document text and in chat prompts.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::quantized::gguf_file;
use glot::engine::tokenizer::Tokenizer;
use glot::engine::{Llm, LoadOptions};
use glot::prompt::chat::Message;
use serde::Deserialize;

use crate::util::{fixtures, gguf, model_dir, smollm2};

#[derive(Deserialize)]
struct Record {
    texts: Vec<String>,
    files: HashMap<String, FileRecord>,
}

#[derive(Deserialize)]
struct FileRecord {
    sha256: String,
    prompt: Vec<Vec<u32>>,
    text: Vec<Vec<u32>>,
    chat: Vec<ChatRecord>,
}

#[derive(Deserialize)]
struct ChatRecord {
    messages: Vec<crate::util::Message>,
    rendered: String,
    ids: Vec<u32>,
}

fn record() -> Record {
    let path = fixtures().join("gguf_vocab.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The texts, the last one being every corpus article joined, as the
/// recording script joins them.
fn texts(r: &Record) -> Vec<String> {
    let mut texts = r.texts.clone();
    let mut corpus: Vec<PathBuf> = std::fs::read_dir(fixtures().join("corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    corpus.sort();
    let joined: Vec<String> = corpus
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    *texts.last_mut().unwrap() = joined.join("\n\n");
    texts
}

fn path_of(name: &str) -> PathBuf {
    match name {
        "qwen2" | "llama" => gguf(name, "f32"),
        "smollm2" => smollm2(),
        spm => model_dir("spm").join(format!("{spm}.gguf")),
    }
}

fn tokenizer_of(path: &PathBuf) -> Tokenizer {
    let mut f = std::fs::File::open(path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    Tokenizer::from_gguf(&content.metadata, path).unwrap()
}

#[test]
fn gguf_tokenizers_give_llama_cpp_ids() {
    let r = record();
    let texts = texts(&r);
    assert_eq!(r.files.len(), 5);
    for (name, rec) in &r.files {
        let path = path_of(name);
        if name == "smollm2" {
            assert_eq!(crate::util::sha256(&path), rec.sha256, "{name}");
        }
        let tok = tokenizer_of(&path);
        for (i, text) in texts.iter().enumerate() {
            let prompt = tok.encode(text, true).unwrap();
            assert_eq!(prompt, rec.prompt[i], "{name}: prompt {i} {text:?}");
            let literal = tok.encode_literal(text).unwrap();
            assert_eq!(literal, rec.text[i], "{name}: text {i} {text:?}");
        }
        let long = rec.prompt.last().unwrap().len();
        assert!(long > 1000, "{name}: the long text has {long} tokens");
    }
}

/// Chat prompts from a bare GGUF file: the template from
/// `tokenizer.chat_template` renders as llama-cpp-python renders it, and
/// glot's prompt, built in parts with the article as literal text, has
/// llama.cpp's ids for the whole rendering.
#[test]
fn bare_gguf_chat_prompts_give_llama_cpp_ids() {
    let r = record();
    for (name, rec) in &r.files {
        let path = path_of(name);
        assert!(!rec.chat.is_empty(), "{name}");
        let files = glot::hub::resolve_local(path.to_str().unwrap(), None).unwrap();
        assert!(
            files.tokenizer.is_none(),
            "{name}: no tokenizer.json is used"
        );
        let llm = Llm::load_for_planning(&files, &LoadOptions::default()).unwrap();
        for (i, case) in rec.chat.iter().enumerate() {
            let messages: Vec<Message> = case
                .messages
                .iter()
                .map(|m| Message::new(&m.role, m.content.clone()))
                .collect();
            assert_eq!(
                llm.render(&messages).unwrap(),
                case.rendered,
                "{name} chat {i}"
            );
            let whole = llm.tokenizer().encode(&case.rendered, false).unwrap();
            assert_eq!(whole, case.ids, "{name} chat {i}");
            // Built in parts, contents read as text: the same ids, but for a
            // special-token string typed in a message, which stays text.
            let ids = llm.encode_chat(&messages).unwrap();
            let typed = case
                .messages
                .iter()
                .any(|m| m.content.contains("<|im_end|>"));
            let eos = |ids: &[u32]| ids.iter().filter(|i| llm.eos().contains(i)).count();
            if typed && llm.tokenizer().token_id("<|im_end|>").is_some() {
                assert_eq!(eos(&ids) + 1, eos(&case.ids), "{name} chat {i}");
            } else {
                assert_eq!(ids, case.ids, "{name} chat {i}");
            }
        }
    }
}
