//! How a model generates, from its config files: its special tokens, the
//! tokens it must never produce, and its beam search settings, as
//! `transformers` reads them from generation_config.json and config.json.

use crate::engine::beam::EarlyStopping;
use crate::engine::choice::Rules;

/// Decoding settings of a model, from its config files.
#[derive(Debug, Clone)]
pub struct Special {
    pub pad: u32,
    pub eos: u32,
    pub start: u32,
    /// Forced at the last allowed step, as `transformers` does.
    pub forced_eos: Option<u32>,
    /// Never generated (Marian: the pad id).
    pub banned: Vec<u32>,
    /// Beam search settings the model's generation config sets
    /// (`transformers` defaults: 1.0 and `false`).
    pub length_penalty: f32,
    pub early_stopping: EarlyStopping,
    /// `num_beams` (1 when unset).
    pub beams: usize,
    /// The first token, forced (`forced_bos_token_id`).
    pub forced_bos: Option<u32>,
    /// Tokens generated before the end may come: `min_length` less the
    /// start token, which transformers counts.
    pub min_new: usize,
    /// `no_repeat_ngram_size` (0: none).
    pub no_repeat_ngram: usize,
    /// Tokens generated at most: `max_length` less the start token.
    pub max_new: Option<usize>,
}

/// The token ids a family's config gives, before generation_config.json
/// has its say.
pub(super) struct Ids {
    pub pad: u32,
    pub eos: u32,
    pub decoder_start: u32,
    /// config.json's forced end (Marian), if any.
    pub forced_eos: Option<u32>,
    /// Whether the pad id is never generated (Marian's decoder starts from
    /// it but never emits it).
    pub ban_pad: bool,
}

impl Special {
    /// The settings from config.json (`config`) and generation_config.json
    /// (`gen`), which wins where both have one.
    pub(super) fn read(
        config: &serde_json::Value,
        gen: Option<&serde_json::Value>,
        ids: Ids,
    ) -> Self {
        Special {
            pad: ids.pad,
            eos: ids.eos,
            start: generation_id(gen, "decoder_start_token_id").unwrap_or(ids.decoder_start),
            forced_eos: match gen {
                Some(_) => generation_id(gen, "forced_eos_token_id"),
                None => ids.forced_eos,
            },
            banned: banned_ids(config, gen, ids.ban_pad.then_some(ids.pad)),
            length_penalty: length_penalty(config, gen),
            early_stopping: early_stopping(config, gen),
            beams: count(config, gen, "num_beams").unwrap_or(1).max(1),
            forced_bos: generation_setting(config, gen, "forced_bos_token_id")
                .and_then(|v| v.as_u64())
                .map(|x| x as u32),
            min_new: count(config, gen, "min_length").map_or(0, |m| m.saturating_sub(1)),
            no_repeat_ngram: count(config, gen, "no_repeat_ngram_size").unwrap_or(0),
            max_new: count(config, gen, "max_length").map(|m| m.saturating_sub(1).max(1)),
        }
    }

    /// The rules a search follows for this model.
    pub(super) fn rules<'a>(&'a self, eos: &'a [u32; 1]) -> Rules<'a> {
        Rules {
            eos,
            banned: &self.banned,
            forced_eos: self.forced_eos,
            forced_first: self.forced_bos,
            min_new: self.min_new,
            no_repeat_ngram: self.no_repeat_ngram,
            start: Some(self.start),
        }
    }
}

/// A token id `generation_config.json` sets, which wins over config.json.
fn generation_id(gen: Option<&serde_json::Value>, key: &str) -> Option<u32> {
    gen?.get(key)?.as_u64().map(|x| x as u32)
}

/// A generation setting from generation_config.json, or from config.json
/// where there is no generation_config.json (older repositories keep them
/// there). As in transformers, a generation_config.json is the whole of
/// the settings: config.json's are not read beside it.
fn generation_setting<'a>(
    config: &'a serde_json::Value,
    gen: Option<&'a serde_json::Value>,
    key: &str,
) -> Option<&'a serde_json::Value> {
    gen.unwrap_or(config).get(key).filter(|v| !v.is_null())
}

/// A count (`num_beams`, `min_length`, …) from the config files.
fn count(config: &serde_json::Value, gen: Option<&serde_json::Value>, key: &str) -> Option<usize> {
    generation_setting(config, gen, key)
        .and_then(|v| v.as_u64())
        .map(|x| x as usize)
}

fn length_penalty(config: &serde_json::Value, gen: Option<&serde_json::Value>) -> f32 {
    generation_setting(config, gen, "length_penalty")
        .and_then(|v| v.as_f64())
        .unwrap_or(1.0) as f32
}

fn early_stopping(config: &serde_json::Value, gen: Option<&serde_json::Value>) -> EarlyStopping {
    generation_setting(config, gen, "early_stopping")
        .and_then(EarlyStopping::from_json)
        .unwrap_or(EarlyStopping::Heuristic)
}

/// Ids the model must never produce: `bad_words_ids` entries of one token
/// (from generation_config.json, or config.json without one), and
/// for Marian the pad id, which its decoder starts from but never emits.
fn banned_ids(
    config: &serde_json::Value,
    gen: Option<&serde_json::Value>,
    pad: Option<u32>,
) -> Vec<u32> {
    let mut out: Vec<u32> = pad.into_iter().collect();
    let source = gen.unwrap_or(config);
    if let Some(list) = source.get("bad_words_ids").and_then(|v| v.as_array()) {
        for seq in list {
            if let Some([single]) = seq.as_array().map(Vec::as_slice) {
                if let Some(id) = single.as_u64() {
                    out.push(id as u32);
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids() -> Ids {
        Ids {
            pad: 1,
            eos: 2,
            decoder_start: 2,
            forced_eos: Some(2),
            ban_pad: false,
        }
    }

    /// bart-large-cnn's settings, read as transformers reads them; with a
    /// generation_config.json, config.json's settings are not read at all.
    #[test]
    fn settings_come_from_generation_config_json_alone_when_there_is_one() {
        let config = json!({
            "num_beams": 6, "min_length": 30, "no_repeat_ngram_size": 4,
            "forced_bos_token_id": 0, "length_penalty": 3.0, "bad_words_ids": [[7]],
        });
        let gen = json!({
            "num_beams": 4, "length_penalty": 2.0, "min_length": 56, "max_length": 142,
            "no_repeat_ngram_size": 3, "early_stopping": true, "forced_bos_token_id": 0,
        });
        let s = Special::read(&config, Some(&gen), ids());
        assert_eq!((s.beams, s.min_new, s.no_repeat_ngram), (4, 55, 3));
        assert_eq!(
            (s.max_new, s.forced_bos, s.length_penalty),
            (Some(141), Some(0), 2.0)
        );
        assert_eq!(s.early_stopping, EarlyStopping::Done);
        // Not in generation_config.json: neither config.json's value nor
        // the family's.
        assert_eq!((s.forced_eos, s.banned.as_slice()), (None, &[][..]));

        let s = Special::read(&config, None, ids());
        assert_eq!(
            (s.beams, s.min_new, s.no_repeat_ngram, s.max_new),
            (6, 29, 4, None)
        );
        assert_eq!(
            (s.forced_eos, s.banned.as_slice(), s.length_penalty),
            (Some(2), &[7][..], 3.0)
        );
    }
}
