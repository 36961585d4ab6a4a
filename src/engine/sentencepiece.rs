//! SentencePiece models (`source.spm`, `spiece.model`) read from their
//! protobuf and turned into a `tokenizers` tokenizer that encodes as
//! `SentencePieceProcessor` does.
//!
//! Marian repositories ship only `.spm` files, so glot converts them at load
//! time rather than asking users for a `tokenizer.json` nobody published.
//! The conversion is not cached on disk: for a 58,000-piece model it takes
//! about 95 ms, while reading the same tokenizer back from its
//! `tokenizer.json` takes about 160 ms.
//! Only the fields encoding needs are read; the wire format is simple enough
//! that a protobuf library would be the larger part of this module.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::{Precompiled, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, NormalizerWrapper, SplitDelimiterBehavior, Tokenizer};

use crate::error::Error;

/// What a piece is for; SentencePiece never matches control and unused
/// pieces in text, and always emits user-defined ones whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceKind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl PieceKind {
    fn from_proto(v: u64) -> Self {
        match v {
            2 => PieceKind::Unknown,
            3 => PieceKind::Control,
            4 => PieceKind::UserDefined,
            5 => PieceKind::Unused,
            6 => PieceKind::Byte,
            _ => PieceKind::Normal,
        }
    }
}

/// One vocabulary entry; its id is its position in the model.
#[derive(Debug, Clone)]
pub struct Piece {
    pub text: String,
    pub score: f32,
    pub kind: PieceKind,
}

/// The parts of a SentencePiece `ModelProto` that encoding depends on.
#[derive(Debug, Clone)]
pub struct SpModel {
    pub pieces: Vec<Piece>,
    /// 1 = unigram, 2 = BPE, 3 = word, 4 = char.
    pub model_type: u64,
    pub unk_id: usize,
    pub byte_fallback: bool,
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

impl SpModel {
    /// Reads a `.spm` / `.model` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_bytes(&bytes).map_err(|e| {
            Error::model(format!(
                "{}: not a SentencePiece model ({e})",
                path.display()
            ))
            .into()
        })
    }

    /// Parses a serialized `ModelProto`.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, String> {
        let mut model = SpModel {
            pieces: Vec::new(),
            model_type: 1,
            unk_id: 0,
            byte_fallback: false,
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        };
        for field in Fields::new(bytes) {
            match field? {
                (1, Value::Bytes(b)) => model.pieces.push(parse_piece(b)?),
                (2, Value::Bytes(b)) => {
                    for f in Fields::new(b) {
                        match f? {
                            (3, Value::Varint(v)) => model.model_type = v,
                            (35, Value::Varint(v)) => model.byte_fallback = v != 0,
                            (40, Value::Varint(v)) => model.unk_id = v as usize,
                            _ => {}
                        }
                    }
                }
                (3, Value::Bytes(b)) => {
                    for f in Fields::new(b) {
                        match f? {
                            (2, Value::Bytes(v)) => model.precompiled_charsmap = v.to_vec(),
                            (3, Value::Varint(v)) => model.add_dummy_prefix = v != 0,
                            (4, Value::Varint(v)) => model.remove_extra_whitespaces = v != 0,
                            (5, Value::Varint(v)) => model.escape_whitespaces = v != 0,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if model.pieces.is_empty() {
            return Err("no pieces".into());
        }
        if model.unk_id >= model.pieces.len() {
            return Err(format!("unknown-piece id {} out of range", model.unk_id));
        }
        Ok(model)
    }

    /// A tokenizer that segments text as SentencePiece does, with the
    /// model's own ids. Control, unused and unknown pieces (`</s>`, `<unk>`) cannot be
    /// produced from text, as in SentencePiece: they are kept under their
    /// name with a leading space, which normalized text never contains, so
    /// an article that says `</s>` does not end the input. Look their ids up
    /// in [`SpModel::pieces`].
    pub fn to_tokenizer(&self) -> Result<Tokenizer> {
        if self.model_type != 1 {
            return Err(Error::model(format!(
                "SentencePiece model type {} is not supported (only unigram models are)",
                self.model_type
            ))
            .into());
        }
        let vocab: Vec<(String, f64)> = self
            .pieces
            .iter()
            .map(|p| match p.kind {
                // A space never survives normalization, so a piece holding
                // one can never match: control pieces stay out of the text.
                PieceKind::Control | PieceKind::Unused | PieceKind::Unknown => {
                    (format!(" {}", p.text), 0.0)
                }
                _ => (p.text.clone(), f64::from(p.score)),
            })
            .collect();
        let unigram = Unigram::from(vocab, Some(self.unk_id), self.byte_fallback)
            .map_err(|e| anyhow!("cannot build the unigram model: {e}"))?;
        let mut tok = Tokenizer::new(unigram);

        let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
        if !self.precompiled_charsmap.is_empty() {
            let pre = Precompiled::from(&self.precompiled_charsmap)
                .map_err(|e| anyhow!("invalid normalization map: {e}"))?;
            normalizers.push(pre.into());
        }
        let replace = |pattern: &str, regex: bool, with: &str| -> Result<NormalizerWrapper> {
            let p = if regex {
                tokenizers::normalizers::replace::ReplacePattern::Regex(pattern.into())
            } else {
                tokenizers::normalizers::replace::ReplacePattern::String(pattern.into())
            };
            Ok(Replace::new(p, with)
                .map_err(|e| anyhow!("normalizer: {e}"))?
                .into())
        };
        if self.remove_extra_whitespaces {
            normalizers.push(replace(r"\A +| +\z", true, "")?);
            normalizers.push(replace(" {2,}", true, " ")?);
        }
        if self.escape_whitespaces {
            normalizers.push(replace(" ", false, "▁")?);
        }
        if self.add_dummy_prefix {
            // The pre-tokenizer adds the dummy "▁" only when the text does not
            // already start with one; SentencePiece adds it regardless.
            normalizers.push(replace(r"\A▁", true, "▁▁")?);
        }
        tok.with_normalizer(Some(NormalizerSequence::new(normalizers)))
            .map_err(|e| anyhow!("{e}"))?;

        let mut pre: Vec<PreTokenizerWrapper> = Vec::new();
        if self.add_dummy_prefix {
            pre.push(Metaspace::new('▁', PrependScheme::Always, false).into());
        }
        let mut user: Vec<&str> = self
            .pieces
            .iter()
            .filter(|p| p.kind == PieceKind::UserDefined)
            .map(|p| p.text.as_str())
            .collect();
        if !user.is_empty() {
            user.sort_by_key(|u| std::cmp::Reverse(u.len()));
            let pattern = user
                .iter()
                .map(|u| regex_escape(u))
                .collect::<Vec<_>>()
                .join("|");
            let split = Split::new(
                SplitPattern::Regex(pattern),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| anyhow!("user-defined pieces: {e}"))?;
            pre.push(split.into());
        }
        if !pre.is_empty() {
            tok.with_pre_tokenizer(Some(PreSequence::new(pre)));
        }

        let mut decoders: Vec<DecoderWrapper> =
            vec![tokenizers::decoders::DecoderWrapper::Replace(
                tokenizers::normalizers::Replace::new("▁", " ").map_err(|e| anyhow!("{e}"))?,
            )];
        if self.byte_fallback {
            decoders.push(ByteFallback::new().into());
        }
        if self.add_dummy_prefix || self.byte_fallback {
            decoders.push(Fuse::new().into());
        }
        if self.add_dummy_prefix {
            decoders.push(Strip::new(' ', 1, 0).into());
        }
        tok.with_decoder(Some(DecoderSequence::new(decoders)));

        Ok(tok)
    }
}

impl SpModel {
    /// The tokenizer `transformers`' `T5Tokenizer` builds from a
    /// `spiece.model` when a repository has no `tokenizer.json`: the
    /// pieces plus `extra_ids` sentinels `<extra_id_N>` (highest N first),
    /// text split on whitespace before the unigram model, no byte fallback,
    /// the control and unknown pieces as special tokens, and user-defined
    /// pieces (MADLAD's `<2xx>`) as whole tokens that decoding keeps.
    pub fn to_t5_tokenizer(&self, extra_ids: usize) -> Result<Tokenizer> {
        let mut vocab: Vec<(String, f64)> = self
            .pieces
            .iter()
            .map(|p| (p.text.clone(), f64::from(p.score)))
            .collect();
        vocab.extend(
            (0..extra_ids)
                .rev()
                .map(|i| (format!("<extra_id_{i}>"), 0.0)),
        );
        let unigram = Unigram::from(vocab, Some(self.unk_id), false)
            .map_err(|e| anyhow!("cannot build the unigram model: {e}"))?;
        let mut tok = Tokenizer::new(unigram);
        if !self.precompiled_charsmap.is_empty() {
            let pre = Precompiled::from(&self.precompiled_charsmap)
                .map_err(|e| anyhow!("invalid normalization map: {e}"))?;
            tok.with_normalizer(Some(pre)).map_err(|e| anyhow!("{e}"))?;
        }
        let pre: Vec<PreTokenizerWrapper> = vec![
            WhitespaceSplit.into(),
            Metaspace::new('▁', PrependScheme::Always, true).into(),
        ];
        tok.with_pre_tokenizer(Some(PreSequence::new(pre)));
        tok.with_decoder(Some(Metaspace::new('▁', PrependScheme::Always, true)));
        let mut special: Vec<AddedToken> = self
            .pieces
            .iter()
            .filter(|p| matches!(p.kind, PieceKind::Control | PieceKind::Unknown))
            .map(|p| AddedToken::from(p.text.clone(), true))
            .collect();
        let user: Vec<AddedToken> = self
            .pieces
            .iter()
            .filter(|p| p.kind == PieceKind::UserDefined)
            .map(|p| AddedToken::from(p.text.clone(), false))
            .collect();
        tok.add_tokens(user)
            .map_err(|e| anyhow!("user-defined pieces: {e}"))?;
        special.extend((0..extra_ids).map(|i| AddedToken::from(format!("<extra_id_{i}>"), true)));
        tok.add_special_tokens(special)
            .map_err(|e| anyhow!("special pieces: {e}"))?;
        Ok(tok)
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn parse_piece(bytes: &[u8]) -> std::result::Result<Piece, String> {
    let mut piece = Piece {
        text: String::new(),
        score: 0.0,
        kind: PieceKind::Normal,
    };
    for f in Fields::new(bytes) {
        match f? {
            (1, Value::Bytes(b)) => {
                piece.text = String::from_utf8(b.to_vec()).map_err(|_| "piece is not UTF-8")?
            }
            (2, Value::Fixed32(v)) => piece.score = f32::from_bits(v),
            (3, Value::Varint(v)) => piece.kind = PieceKind::from_proto(v),
            _ => {}
        }
    }
    Ok(piece)
}

/// A field's value in the protobuf wire format.
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// The fields of one message, in order.
struct Fields<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields {
            rest: bytes,
            failed: false,
        }
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.rest.split_first().ok_or("truncated varint")?;
            self.rest = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err("truncated field".into());
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn field(&mut self) -> std::result::Result<(u64, Value<'a>), String> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "field too long")?;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        Ok((key >> 3, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = std::result::Result<(u64, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let f = self.field();
        self.failed = f.is_err();
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(no: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(no << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    fn piece(text: &str, score: f32, kind: u64) -> Vec<u8> {
        let mut p = Vec::new();
        bytes_field(1, text.as_bytes(), &mut p);
        varint(2 << 3 | 5, &mut p);
        p.extend_from_slice(&score.to_le_bytes());
        varint(3 << 3, &mut p);
        varint(kind, &mut p);
        p
    }

    /// A hand-written model: no normalization map, default spec.
    fn tiny() -> Vec<u8> {
        let mut m = Vec::new();
        for (t, s, k) in [
            ("<unk>", 0.0, 2),
            ("<s>", 0.0, 3),
            ("</s>", 0.0, 3),
            ("▁", -2.0, 1),
            ("▁ab", -1.0, 1),
            ("a", -3.0, 1),
            ("b", -3.0, 1),
            ("c", -3.0, 1),
            ("<2de>", 0.0, 4),
        ] {
            bytes_field(1, &piece(t, s, k), &mut m);
        }
        // An unknown field with a fixed64 value is skipped.
        varint(9 << 3 | 1, &mut m);
        m.extend_from_slice(&[0; 8]);
        m
    }

    #[test]
    fn reads_pieces_and_defaults() {
        let m = SpModel::from_bytes(&tiny()).unwrap();
        assert_eq!(m.pieces.len(), 9);
        assert_eq!(m.pieces[4].text, "▁ab");
        assert_eq!(m.pieces[4].score, -1.0);
        assert_eq!(m.pieces[2].kind, PieceKind::Control);
        assert_eq!(m.model_type, 1);
        assert!(m.add_dummy_prefix && m.remove_extra_whitespaces);
    }

    #[test]
    fn encodes_like_sentencepiece() {
        let tok = SpModel::from_bytes(&tiny())
            .unwrap()
            .to_tokenizer()
            .unwrap();
        let tokens =
            |s: &str| -> Vec<String> { tok.encode(s, false).unwrap().get_tokens().to_vec() };
        assert_eq!(tokens("ab"), ["▁ab"]);
        // Extra spaces collapse.
        assert_eq!(tokens("  ab   cab  "), ["▁ab", "▁", "c", "a", "b"]);
        // An unknown run is one piece: its text is the surface, its id unk's.
        let enc = tok.encode("ab xyz", false).unwrap();
        assert_eq!(enc.get_tokens(), ["▁ab", "▁", "xyz"]);
        assert_eq!(enc.get_ids(), [4, 3, 0]);
        // Control pieces are not matched in text; user-defined ones are whole.
        let ids = tok.encode("</s>", false).unwrap().get_ids().to_vec();
        assert_ne!(ids, [2]);
        assert_eq!(tokens("<2de>ab"), ["▁", "<2de>", "a", "b"]);
        assert_eq!(tok.token_to_id("</s>"), None);
        assert_eq!(tok.decode(&[4, 3, 7, 5], true).unwrap(), "ab ca");
    }

    #[test]
    fn refuses_garbage() {
        assert!(SpModel::from_bytes(b"not a protobuf at all").is_err());
        assert!(SpModel::from_bytes(&[]).is_err());
        let mut cut = tiny();
        cut.truncate(20);
        assert!(SpModel::from_bytes(&cut).is_err());
    }
}
