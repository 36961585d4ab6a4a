//! The shape of a decoder-only model, read from `config.json` or GGUF metadata.
//!
//! Llama, Qwen2 and Qwen3 differ in only a handful of switches (biases on the
//! QKV projections, per-head norms on Q/K, tied embeddings, how RoPE pairs
//! dimensions), so one description drives one model implementation.

use std::collections::HashMap;

use candle_core::quantized::gguf_file;
use serde_json::Value;

use crate::error::Error;

/// Architectures this build can run, as spelled in `config.json` `model_type`
/// and GGUF `general.architecture`.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama", "qwen2", "qwen3", "gemma3"];

/// A supported decoder family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    /// Gemma 3's text decoder (`gemma3_text`, or the language model of a
    /// `gemma3` checkpoint such as TranslateGemma).
    Gemma3,
}

impl Arch {
    /// Parses an architecture name, failing with the list of supported ones.
    pub fn parse(name: &str) -> Result<Self, Error> {
        match name {
            "llama" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            "qwen3" => Ok(Arch::Qwen3),
            "gemma3" | "gemma3_text" => Ok(Arch::Gemma3),
            other => Err(Error::UnsupportedArchitecture {
                found: other.to_string(),
                supported: SUPPORTED_ARCHITECTURES.join(", "),
            }),
        }
    }

    /// The name used in configs and GGUF metadata.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
        }
    }
}

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Dimension `i` pairs with `i + d/2` (Hugging Face `rotate_half`, GGUF "neox").
    Half,
    /// Dimension `2i` pairs with `2i + 1`: llama.cpp's converter permutes Llama's
    /// Q/K rows so that this layout computes the same thing as `rotate_half`.
    Interleaved,
}

/// Everything the decoder needs to know about a model's shape.
#[derive(Debug, Clone)]
pub struct DecoderConfig {
    pub arch: Arch,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_style: RopeStyle,
    /// Llama 3 style per-frequency divisors, when the model uses them.
    pub rope_freq_factors: Option<Vec<f32>>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub qkv_bias: bool,
    pub qk_norm: bool,
    /// Gemma 3's departures from the Llama shape.
    pub gemma: Option<Gemma>,
}

/// What Gemma 3 does differently: four norms per layer that multiply by
/// (1 + w), embeddings scaled by √hidden, GELU (tanh) in the MLP, its own
/// query scale, and layers that attend within a sliding window with a rope
/// base of their own, between global layers.
#[derive(Debug, Clone)]
pub struct Gemma {
    /// Multiplies the queries: `query_pre_attn_scalar`^-½.
    pub query_scale: f64,
    /// How far back a windowed layer's queries see: key `j` is visible
    /// from query `i` when `i - j < sliding_window`.
    pub sliding_window: usize,
    /// Per layer, whether it attends within the window.
    pub sliding: Vec<bool>,
    /// The rope base of the windowed layers, which take no scaling (the
    /// global layers use `rope_theta` and `rope_freq_factors`).
    pub local_rope_theta: f64,
    /// Added to every norm weight as read: transformers stores the `w` of
    /// (1 + w), llama.cpp's converter the sum.
    pub norm_offset: f32,
}

impl DecoderConfig {
    /// Reads a Hugging Face `config.json`, accepting both the hub spelling
    /// (`rope_theta`) and the newer `rope_parameters` block.
    pub fn from_hf_json(json: &Value) -> Result<Self, Error> {
        let model_type = json
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::model("config.json has no `model_type`"))?;
        let arch = Arch::parse(model_type)?;
        // A multimodal Gemma 3 checkpoint keeps its decoder's config apart.
        let json = match model_type {
            "gemma3" => json.get("text_config").ok_or_else(|| {
                Error::model("config.json of a gemma3 model has no `text_config`")
            })?,
            _ => json,
        };
        let get = |key: &str| -> Result<usize, Error> {
            json.get(key)
                .and_then(Value::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| Error::model(format!("config.json has no integer `{key}`")))
        };
        let hidden_size = get("hidden_size")?;
        let num_heads = get("num_attention_heads")?;
        let num_kv_heads = get("num_key_value_heads").unwrap_or(num_heads);
        let head_dim = json
            .get("head_dim")
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .unwrap_or(hidden_size.checked_div(num_heads).unwrap_or(0));
        // Where both spellings are present, `rope_parameters` is what
        // transformers 5 and llama.cpp's converter read.
        let rope_params = json.get("rope_parameters").filter(|v| !v.is_null());
        let rope_theta = rope_params
            .and_then(|p| p.get("rope_theta"))
            .or_else(|| json.get("rope_theta"))
            .and_then(Value::as_f64)
            .unwrap_or(10_000.0);
        let scaling = rope_params
            .filter(|p| p.get("rope_type").is_some())
            .or_else(|| json.get("rope_scaling").filter(|v| !v.is_null()));

        let tie = json
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(arch == Arch::Gemma3);
        let num_layers = get("num_hidden_layers")?;
        let (rope_theta, rope_freq_factors, gemma) = match arch {
            Arch::Gemma3 => {
                let (theta, factors, g) = gemma_from_hf(json, num_layers, head_dim)?;
                (theta, factors, Some(g))
            }
            _ => {
                let factors = match scaling {
                    None => None,
                    Some(s) => hf_rope_freq_factors(s, head_dim, rope_theta)?,
                };
                (rope_theta, factors, None)
            }
        };
        DecoderConfig {
            arch,
            hidden_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            intermediate_size: get("intermediate_size")?,
            vocab_size: get("vocab_size")?,
            rms_norm_eps: json
                .get("rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6),
            rope_theta,
            rope_style: RopeStyle::Half,
            rope_freq_factors,
            max_position_embeddings: get("max_position_embeddings").unwrap_or(4096),
            tie_word_embeddings: tie,
            qkv_bias: arch == Arch::Qwen2
                || json
                    .get("attention_bias")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            qk_norm: matches!(arch, Arch::Qwen3 | Arch::Gemma3),
            gemma,
        }
        .checked()
    }

    /// Reads GGUF metadata as llama.cpp's converter writes it
    /// (`{arch}.embedding_length`, `{arch}.rope.freq_base`, …).
    pub fn from_gguf(
        metadata: &HashMap<String, gguf_file::Value>,
        tensor_names: &[&str],
    ) -> Result<Self, Error> {
        let arch_name = metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| Error::model("GGUF file has no `general.architecture`"))?;
        let arch = Arch::parse(arch_name)?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let get = |k: &str| -> Result<usize, Error> {
            let name = key(k);
            metadata
                .get(&name)
                .and_then(|v| v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from)))
                .map(|v| v as usize)
                .ok_or_else(|| Error::model(format!("GGUF metadata has no integer `{name}`")))
        };
        let get_f = |k: &str| -> Option<f64> {
            metadata
                .get(&key(k))
                .and_then(|v| v.to_f32().ok().map(f64::from).or_else(|| v.to_f64().ok()))
        };
        let hidden_size = get("embedding_length")?;
        let num_heads = get("attention.head_count")?;
        let num_layers = get("block_count")?;
        let num_kv_heads = get("attention.head_count_kv").unwrap_or(num_heads);
        let head_dim =
            get("attention.key_length").unwrap_or(hidden_size.checked_div(num_heads).unwrap_or(0));
        let has = |name: &str| tensor_names.contains(&name);
        let gemma = match arch {
            Arch::Gemma3 => Some(gemma_from_gguf(
                &|k| metadata.get(&key(k)).cloned(),
                num_layers,
                hidden_size / num_heads.max(1),
                head_dim,
            )?),
            _ => None,
        };
        let vocab_size = match get("vocab_size") {
            Ok(v) => v,
            Err(_) => metadata
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.to_vec().ok())
                .map(Vec::len)
                .ok_or_else(|| Error::model("GGUF metadata gives no vocabulary size"))?,
        };
        DecoderConfig {
            arch,
            hidden_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            intermediate_size: get("feed_forward_length")?,
            vocab_size,
            rms_norm_eps: get_f("attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
            rope_theta: get_f("rope.freq_base").unwrap_or(match arch {
                Arch::Gemma3 => 1_000_000.0,
                _ => 10_000.0,
            }),
            rope_style: match arch {
                Arch::Llama => RopeStyle::Interleaved,
                Arch::Qwen2 | Arch::Qwen3 | Arch::Gemma3 => RopeStyle::Half,
            },
            // Filled from the `rope_freqs.weight` tensor by the loader,
            // except for Gemma 3's linear scaling.
            rope_freq_factors: gemma.as_ref().and_then(|(factors, _)| factors.clone()),
            max_position_embeddings: get("context_length").unwrap_or(4096),
            tie_word_embeddings: !has("output.weight"),
            qkv_bias: has("blk.0.attn_q.bias"),
            qk_norm: has("blk.0.attn_q_norm.weight"),
            gemma: gemma.map(|(_, g)| g),
        }
        .checked()
    }

    /// The config, unless it describes a shape no model has: a size of
    /// zero, query heads that do not share out over the key/value heads,
    /// a rope base or norm epsilon that is not a positive number. Such
    /// files would otherwise panic or compute garbage silently.
    fn checked(self) -> Result<Self, Error> {
        let sizes = [
            ("hidden size", self.hidden_size),
            ("layers", self.num_layers),
            ("attention heads", self.num_heads),
            ("key/value heads", self.num_kv_heads),
            ("head size", self.head_dim),
            ("feed-forward size", self.intermediate_size),
            ("vocabulary", self.vocab_size),
        ];
        if let Some((what, _)) = sizes.iter().find(|(_, n)| *n == 0) {
            return Err(Error::model(format!("the model's {what} is 0")));
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(Error::model(format!(
                "{} attention heads do not share out over {} key/value heads",
                self.num_heads, self.num_kv_heads
            )));
        }
        for (what, x) in [
            ("rope base", self.rope_theta),
            ("norm epsilon", self.rms_norm_eps),
        ] {
            if !(x.is_finite() && x > 0.0) {
                return Err(Error::model(format!(
                    "the {what} {x} is not a positive number"
                )));
            }
        }
        Ok(self)
    }
}

/// Llama 3 frequency scaling as `transformers` computes it; other scaling
/// schemes would silently change outputs, so they are refused.
/// Gemma 3's rope and windows from a transformers config: `rope_parameters`
/// with one block per kind of layer (transformers 5), or the older
/// `rope_theta`, `rope_local_base_freq`, `rope_scaling` and
/// `sliding_window_pattern`. Returns the global layers' rope base and
/// divisors, and the rest.
fn gemma_from_hf(
    json: &Value,
    num_layers: usize,
    head_dim: usize,
) -> Result<(f64, Option<Vec<f32>>, Gemma), Error> {
    let f = |v: Option<&Value>| v.and_then(Value::as_f64);
    let params = json.get("rope_parameters").filter(|v| v.is_object());
    let global = params.and_then(|p| p.get("full_attention"));
    let local = params.and_then(|p| p.get("sliding_attention"));
    let theta = f(global.and_then(|g| g.get("rope_theta")))
        .or(f(json.get("rope_theta")))
        .unwrap_or(1_000_000.0);
    let local_theta = f(local.and_then(|l| l.get("rope_theta")))
        .or(f(json.get("rope_local_base_freq")))
        .unwrap_or(10_000.0);
    let scaling = global
        .filter(|g| g.get("rope_type").is_some())
        .or_else(|| json.get("rope_scaling").filter(|v| !v.is_null()));
    let factors = match scaling {
        Some(s)
            if s.get("rope_type")
                .or_else(|| s.get("type"))
                .and_then(Value::as_str)
                == Some("linear") =>
        {
            let factor = f(s.get("factor")).unwrap_or(1.0) as f32;
            Some(vec![factor; head_dim / 2])
        }
        Some(s) => hf_rope_freq_factors(s, head_dim, theta)?,
        None => None,
    };
    let sliding: Vec<bool> = match json.get("layer_types").and_then(Value::as_array) {
        Some(types) => types
            .iter()
            .map(|t| t.as_str() == Some("sliding_attention"))
            .collect(),
        None => {
            let pattern = json
                .get("sliding_window_pattern")
                .and_then(Value::as_u64)
                .unwrap_or(6)
                .max(1) as usize;
            (0..num_layers).map(|i| (i + 1) % pattern != 0).collect()
        }
    };
    if sliding.len() != num_layers {
        return Err(Error::model(format!(
            "config.json gives {} layer types for {num_layers} layers",
            sliding.len()
        )));
    }
    if let Some(cap) = f(json.get("final_logit_softcapping")) {
        return Err(Error::model(format!(
            "logit soft-capping ({cap}) is not supported"
        )));
    }
    let scalar = f(json.get("query_pre_attn_scalar")).unwrap_or(head_dim as f64);
    let gemma = Gemma {
        query_scale: scalar.powf(-0.5),
        sliding_window: json
            .get("sliding_window")
            .and_then(Value::as_u64)
            .unwrap_or(4096) as usize,
        sliding,
        local_rope_theta: local_theta,
        norm_offset: 1.0,
    };
    Ok((theta, factors, gemma))
}

/// Gemma 3 from llama.cpp's GGUF metadata. The converter writes the
/// window and the global rope base and scaling; what it leaves out,
/// llama.cpp's runtime fixes, and so does this: every sixth layer global,
/// a local rope base of 10,000 (unless the file has `rope.freq_base_swa`),
/// queries scaled by 1/√head_dim (1/√(hidden/heads) for the 62-layer 27B),
/// and norms stored as (1 + w) already.
fn gemma_from_gguf(
    get: &dyn Fn(&str) -> Option<gguf_file::Value>,
    num_layers: usize,
    hidden_per_head: usize,
    head_dim: usize,
) -> Result<(Option<Vec<f32>>, Gemma), Error> {
    let number = |k: &str| {
        get(k).and_then(|v| {
            v.to_f32()
                .map(f64::from)
                .or_else(|_| v.to_f64())
                .or_else(|_| v.to_u32().map(f64::from))
                .or_else(|_| v.to_u64().map(|x| x as f64))
                .ok()
        })
    };
    if let Some(cap) = number("final_logit_softcapping") {
        return Err(Error::model(format!(
            "logit soft-capping ({cap}) is not supported"
        )));
    }
    let factors = match get("rope.scaling.type").and_then(|v| v.to_string().ok().cloned()) {
        None => None,
        Some(t) if t == "none" => None,
        Some(t) if t == "linear" => {
            let factor = number("rope.scaling.factor").unwrap_or(1.0) as f32;
            Some(vec![factor; head_dim / 2])
        }
        Some(t) => {
            return Err(Error::model(format!(
                "RoPE scaling `{t}` is not supported for Gemma 3 (supported: linear)"
            )))
        }
    };
    // Without a window every layer is global, as in llama.cpp.
    let window = number("attention.sliding_window").map_or(0, |w| w as usize);
    let sliding = (0..num_layers)
        .map(|i| window > 0 && (i + 1) % 6 != 0)
        .collect();
    let scale_dim = if num_layers == 62 {
        hidden_per_head
    } else {
        head_dim
    };
    Ok((
        factors,
        Gemma {
            query_scale: (scale_dim as f64).powf(-0.5),
            sliding_window: window,
            sliding,
            local_rope_theta: number("rope.freq_base_swa").unwrap_or(10_000.0),
            norm_offset: 0.0,
        },
    ))
}

fn hf_rope_freq_factors(
    scaling: &Value,
    head_dim: usize,
    theta: f64,
) -> Result<Option<Vec<f32>>, Error> {
    let kind = scaling
        .get("rope_type")
        .or_else(|| scaling.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    match kind {
        "default" => Ok(None),
        "llama3" => {
            let f = |k: &str, d: f64| scaling.get(k).and_then(Value::as_f64).unwrap_or(d);
            let factor = f("factor", 8.0);
            let low = f("low_freq_factor", 1.0);
            let high = f("high_freq_factor", 4.0);
            let old_ctx = f("original_max_position_embeddings", 8192.0);
            let low_wavelen = old_ctx / low;
            let high_wavelen = old_ctx / high;
            let factors = (0..head_dim / 2)
                .map(|i| {
                    let inv = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
                    let wavelen = 2.0 * std::f64::consts::PI / inv;
                    let divisor = if wavelen < high_wavelen {
                        1.0
                    } else if wavelen > low_wavelen {
                        factor
                    } else {
                        let smooth = (old_ctx / wavelen - low) / (high - low);
                        1.0 / ((1.0 - smooth) / factor + smooth)
                    };
                    divisor as f32
                })
                .collect();
            Ok(Some(factors))
        }
        other => Err(Error::model(format!(
            "RoPE scaling `{other}` is not supported (supported: default, llama3)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gemma3_gguf(extra: &[(&str, gguf_file::Value)]) -> HashMap<String, gguf_file::Value> {
        use gguf_file::Value as V;
        let mut m = HashMap::from([
            (
                "general.architecture".to_string(),
                V::String("gemma3".into()),
            ),
            ("gemma3.embedding_length".into(), V::U32(128)),
            ("gemma3.attention.head_count".into(), V::U32(4)),
            ("gemma3.attention.head_count_kv".into(), V::U32(2)),
            ("gemma3.attention.key_length".into(), V::U32(64)),
            ("gemma3.block_count".into(), V::U32(12)),
            ("gemma3.feed_forward_length".into(), V::U32(256)),
            ("gemma3.vocab_size".into(), V::U32(100)),
            ("gemma3.attention.sliding_window".into(), V::U32(512)),
            ("gemma3.rope.freq_base".into(), V::F32(1e6)),
        ]);
        m.extend(
            extra
                .iter()
                .map(|(k, v)| (format!("gemma3.{k}"), v.clone())),
        );
        m
    }

    /// What llama.cpp's converter leaves out of a Gemma 3 file is filled in
    /// as llama.cpp's runtime does: every sixth layer global, a local rope
    /// base of 10,000, queries scaled by 1/√head_dim, the norms read as
    /// stored; the file's linear scaling reaches the global layers only.
    #[test]
    fn gemma3_gguf_metadata_fills_in_what_llama_cpp_assumes() {
        use gguf_file::Value as V;
        let c = DecoderConfig::from_gguf(&gemma3_gguf(&[]), &[]).unwrap();
        let g = c.gemma.as_ref().unwrap();
        let globals: Vec<usize> = (0..12).filter(|&i| !g.sliding[i]).collect();
        assert_eq!(globals, [5, 11]);
        assert_eq!((g.sliding_window, g.local_rope_theta), (512, 10_000.0));
        assert_eq!(g.query_scale, 64f64.powf(-0.5));
        assert_eq!(g.norm_offset, 0.0);
        assert_eq!((c.rope_theta, c.rope_freq_factors.as_ref()), (1e6, None));

        let c = DecoderConfig::from_gguf(
            &gemma3_gguf(&[
                ("rope.scaling.type", V::String("linear".into())),
                ("rope.scaling.factor", V::F32(8.0)),
                ("rope.freq_base_swa", V::F32(20_000.0)),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(c.rope_freq_factors, Some(vec![8.0; 32]));
        assert_eq!(c.gemma.unwrap().local_rope_theta, 20_000.0);

        // No window: every layer is global.
        let mut m = gemma3_gguf(&[]);
        m.remove("gemma3.attention.sliding_window");
        let c = DecoderConfig::from_gguf(&m, &[]).unwrap();
        assert!(c.gemma.unwrap().sliding.iter().all(|s| !s));

        // The 62-layer 27B scales queries by hidden / heads.
        let c =
            DecoderConfig::from_gguf(&gemma3_gguf(&[("block_count", V::U32(62))]), &[]).unwrap();
        assert_eq!(c.gemma.unwrap().query_scale, 32f64.powf(-0.5));
    }

    /// What glot does not compute is refused in one line, not run wrongly.
    #[test]
    fn gemma3_gguf_with_unsupported_settings_is_refused() {
        use gguf_file::Value as V;
        for (extra, says) in [
            (("final_logit_softcapping", V::F32(30.0)), "soft-capping"),
            (("rope.scaling.type", V::String("yarn".into())), "`yarn`"),
        ] {
            let e = DecoderConfig::from_gguf(&gemma3_gguf(&[extra]), &[]).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
        }
    }

    /// Gemma 3 configs as transformers 5 writes them and as older
    /// checkpoints have them give the same windows and rope.
    #[test]
    fn gemma3_configs_old_and_new_read_alike() {
        let base = serde_json::json!({
            "model_type": "gemma3_text",
            "hidden_size": 64,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "num_hidden_layers": 7,
            "intermediate_size": 128,
            "vocab_size": 100,
            "query_pre_attn_scalar": 16,
            "sliding_window": 8,
        });
        let mut new = base.clone();
        new["rope_parameters"] = serde_json::json!({
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        });
        new["layer_types"] = serde_json::json!([
            "sliding_attention",
            "sliding_attention",
            "sliding_attention",
            "sliding_attention",
            "sliding_attention",
            "full_attention",
            "sliding_attention"
        ]);
        let mut old = base.clone();
        old["rope_theta"] = 1e6.into();
        old["rope_local_base_freq"] = 1e4.into();
        old["rope_scaling"] = serde_json::json!({"rope_type": "linear", "factor": 8.0});
        old["sliding_window_pattern"] = 6.into();
        // The multimodal checkpoint keeps the same under `text_config`.
        let wrapped = serde_json::json!({"model_type": "gemma3", "text_config": old.clone()});
        for json in [new, old, wrapped] {
            let c = DecoderConfig::from_hf_json(&json).unwrap();
            let g = c.gemma.as_ref().unwrap();
            assert_eq!(
                g.sliding,
                [true, true, true, true, true, false, true],
                "{json}"
            );
            assert_eq!((g.sliding_window, g.local_rope_theta), (8, 1e4));
            assert_eq!(g.query_scale, 0.25);
            assert_eq!(c.rope_theta, 1e6);
            assert_eq!(c.rope_freq_factors.as_deref(), Some(&[8.0f32; 8][..]));
            assert!(c.tie_word_embeddings && c.qk_norm);
        }
    }

    fn config(extra: Value) -> DecoderConfig {
        let mut json = serde_json::json!({
            "model_type": "llama",
            "hidden_size": 64,
            "num_attention_heads": 4,
            "num_hidden_layers": 1,
            "intermediate_size": 128,
            "vocab_size": 100,
            "rms_norm_eps": 1e-5,
            "max_position_embeddings": 256,
        });
        json.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        DecoderConfig::from_hf_json(&json).unwrap()
    }

    #[test]
    fn rope_parameters_win_over_a_top_level_rope_theta() {
        let both = config(serde_json::json!({
            "rope_theta": 10000.0,
            "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
        }));
        assert_eq!(both.rope_theta, 500_000.0);
        assert!(both.rope_freq_factors.is_none());
        let old = config(serde_json::json!({"rope_theta": 1000.0}));
        assert_eq!(old.rope_theta, 1000.0);
        let scaled = config(serde_json::json!({
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0},
            "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
        }));
        assert!(
            scaled.rope_freq_factors.is_none(),
            "rope_parameters say default"
        );
    }
}
