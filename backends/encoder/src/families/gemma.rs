//! What Gemma 2 and Gemma 3 decoders (bge-multilingual-gemma2, EmbeddingGemma) add to the other
//! decoders: RMSNorms whose stored weight is an offset from 1, a norm before and after each block
//! (`input_layernorm` and `post_attention_layernorm` around attention, `pre_feedforward_layernorm`
//! and `post_feedforward_layernorm` around the feed-forward), the word vectors scaled by
//! `sqrt(hidden_size)`, scores scaled by `query_pre_attn_scalar ** -0.5`, and sliding-window
//! layers among full ones.
//!
//! Gemma 2 soft-caps its scores (`attn_logit_softcapping`, 50 by default), rotates every layer
//! with one base, and makes every other layer a sliding one (from layer 0), always causal.
//! Gemma 3 has per-head query and key norms, a rotary base per layer type, every sixth layer
//! full, and with `use_bidirectional_attention` (EmbeddingGemma) full layers see every token and
//! sliding ones `sliding_window / 2` tokens each side; without it, as a causal decoder, the last
//! `sliding_window` tokens.
//!
//! Reference: transformers' `models/gemma2/modeling_gemma2.py`, `models/gemma3/modeling_gemma3.py`
//! and their `configuration_*.py`.

use serde_json::Value;
use tessera_core::inspection::ModelConfig;
use tessera_core::{Evidence, Finding, Mask};

use super::rope::{self, RopeKeys};
use crate::spec::{Dims, LayerAttention, Scales};

/// Which Gemma a checkpoint is (its tensors decide: Gemma 3's per-head norms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Generation {
    Two,
    Three,
}

/// Gemma 2's one rotary base (a flat `rope_parameters`).
const GEMMA2_ROPE: RopeKeys = RopeKeys {
    section: None,
    legacy: "rope_theta",
    default: 10_000.0,
    fixed_ntk: false,
};
/// `Gemma2Config`'s cap when config.json does not say.
const GEMMA2_SOFTCAP: f64 = 50.0;

const GLOBAL: RopeKeys = RopeKeys {
    section: Some("full_attention"),
    legacy: "rope_theta",
    default: 1_000_000.0,
    fixed_ntk: false,
};
const LOCAL: RopeKeys = RopeKeys {
    section: Some("sliding_attention"),
    legacy: "rope_local_base_freq",
    default: 10_000.0,
    fixed_ntk: false,
};

/// Gemma's layers as config.json describes them.
pub(super) struct Layers {
    pub attention: Vec<LayerAttention>,
    pub scales: Scales,
    pub bidirectional: bool,
    /// How the architecture reads in words (after the head layout).
    pub describe: String,
}

/// Each layer's mask and rotary scheme, and the scales, from config.json; refused naming the
/// key: a zero window, a cap that is not a positive number, and a Gemma 2 that says it attends
/// both ways.
pub(super) fn layers(
    generation: Generation,
    config: &ModelConfig,
    dims: &Dims,
    evidence: &mut Vec<Evidence>,
) -> Result<Layers, Box<Finding>> {
    let refuse = |key: &str, message: String, fix: &str| {
        super::option_refused("decoder-attention-unsupported", config, key, message, fix)
    };
    let softcap = softcap(generation, config, evidence)?;
    let bidirectional = config.get("use_bidirectional_attention").and_then(Value::as_bool) == Some(true);
    if bidirectional && generation == Generation::Two {
        return Err(refuse(
            "use_bidirectional_attention",
            "`use_bidirectional_attention: true` on Gemma 2: transformers' `Gemma2Model` masks causally whatever it says (only Gemma 3 reads it), so how the model was trained to attend is unclear".into(),
            "remove the key if the model attends causally, as transformers runs it",
        ));
    }
    evidence.push(Evidence::config(
        "use_bidirectional_attention",
        match bidirectional {
            true => "true: every token attends to both sides",
            false => "absent or false: causal attention",
        },
    ));
    // `null`: no window, the sliding layers see what the full ones do.
    let window = match config.values.get("sliding_window") {
        Some(Value::Null) => usize::MAX,
        _ => config.usize("sliding_window").unwrap_or(4096),
    };
    if window == 0 {
        return Err(refuse(
            "sliding_window",
            "`sliding_window: 0` would let no token see even itself".into(),
            "set `sliding_window` to the window the model was trained with",
        ));
    }
    let layer_count = dims.layers.size();
    // Without `layer_types`, every `sliding_window_pattern`-th layer (counting from 1) is full;
    // Gemma 2 has no such key, every second layer is.
    let (pattern, pattern_key) = match generation {
        Generation::Two => (2, "Gemma 2's alternation (layer 0 sliding, layer 1 full, ...)"),
        Generation::Three => (
            config.usize("sliding_window_pattern").unwrap_or(6).max(1),
            "`sliding_window_pattern`",
        ),
    };
    let kinds = super::layer_kinds(config, layer_count, |l| (l + 1) % pattern == 0, pattern_key)?;
    let (head_dim, positions) = (dims.head_dim.size(), dims.positions.size());
    let (global, local) = match generation {
        Generation::Two => {
            let (rope, rope_evidence) = rope::rope(config, &GEMMA2_ROPE, head_dim, positions)?;
            evidence.extend(rope_evidence);
            (rope, rope)
        }
        Generation::Three => {
            let (global, global_evidence) = rope::rope(config, &GLOBAL, head_dim, positions)?;
            let (local, local_evidence) = rope::rope(config, &LOCAL, head_dim, positions)?;
            evidence.extend(global_evidence.into_iter().chain(local_evidence));
            (global, local)
        }
    };
    // transformers turns the saved window into an exclusive bound of `window / 2 + 1` on either
    // side when bidirectional: `|i - j| <= window / 2`.
    let (full, sliding) = match (bidirectional, window) {
        (true, usize::MAX) => (Mask::Bidirectional, Mask::Bidirectional),
        (false, usize::MAX) => (Mask::Causal, Mask::Causal),
        (true, _) => (Mask::Bidirectional, Mask::Window { radius: window / 2 }),
        (false, _) => (Mask::Causal, Mask::CausalWindow { size: window }),
    };
    let attention = kinds
        .iter()
        .map(|&is_global| match is_global {
            true => LayerAttention {
                mask: full,
                rope: Some(global),
            },
            false => LayerAttention {
                mask: sliding,
                rope: Some(local),
            },
        })
        .collect();
    let query_scalar = config.f64("query_pre_attn_scalar").unwrap_or(256.0);
    if !(query_scalar > 0.0 && query_scalar.is_finite()) {
        return Err(Box::new(
            tessera_core::LoadError::InvalidValue {
                file: config.path.clone(),
                key: "query_pre_attn_scalar".into(),
                value: query_scalar.to_string(),
                reason: "scores are scaled by its inverse square root, so it must be a positive number".into(),
            }
            .to_finding(),
        ));
    }
    let globals = kinds.iter().filter(|&&g| g).count();
    let capped = match softcap {
        Some(cap) => format!(", scores capped at {cap}"),
        None => String::new(),
    };
    let sides = match (bidirectional, window) {
        (true, usize::MAX) => format!("bidirectional, {globals} full of {layer_count} layers, no window"),
        (false, usize::MAX) => format!("causal, {globals} full of {layer_count} layers, no window"),
        (true, _) => format!(
            "bidirectional, {globals} full of {layer_count} layers, the others {} tokens each side",
            window / 2
        ),
        (false, _) => format!("causal, {globals} full of {layer_count} layers, the others the last {window} tokens"),
    } + &capped;
    Ok(Layers {
        attention,
        scales: Scales {
            embeddings: Some((dims.hidden.size() as f64).sqrt()),
            attention: Some(query_scalar.powf(-0.5)),
            softcap,
        },
        bidirectional,
        describe: sides,
    })
}

/// `attn_logit_softcapping`: Gemma 2's class caps at 50 when config.json does not say, Gemma 3's
/// not at all; `null` turns it off in both.
fn softcap(
    generation: Generation,
    config: &ModelConfig,
    evidence: &mut Vec<Evidence>,
) -> Result<Option<f64>, Box<Finding>> {
    const KEY: &str = "attn_logit_softcapping";
    let cap = match (config.values.get(KEY), generation) {
        (Some(Value::Null), _) | (None, Generation::Three) => None,
        (None, Generation::Two) => {
            evidence.push(Evidence::config(
                KEY,
                format!("absent: scores soft-capped at {GEMMA2_SOFTCAP} (Gemma 2's default)"),
            ));
            return Ok(Some(GEMMA2_SOFTCAP));
        }
        (Some(value), _) => match value.as_f64().filter(|c| *c > 0.0 && c.is_finite()) {
            Some(cap) => Some(cap),
            None => {
                return Err(Box::new(
                    tessera_core::LoadError::InvalidValue {
                        file: config.path.clone(),
                        key: KEY.into(),
                        value: value.to_string(),
                        reason: "scores are capped at `cap * tanh(score / cap)`, so it must be a positive number, or null for no cap".into(),
                    }
                    .to_finding(),
                ))
            }
        },
    };
    if let Some(cap) = cap {
        evidence.push(Evidence::config(
            KEY,
            format!("{cap}: scores soft-capped, `cap * tanh(score / cap)`"),
        ));
    }
    Ok(cap)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tessera_core::Dim;

    use super::super::config_of;
    use super::*;

    /// A small model's layers of `generation` as `keys` describe them.
    fn layers_of(generation: Generation, keys: Value, layer_count: usize) -> Layers {
        let d = |n| Dim::of("x", n);
        let dims = Dims {
            vocab: d(10),
            hidden: d(16),
            layers: d(layer_count),
            heads: d(2),
            kv_heads: d(1),
            head_dim: d(8),
            intermediate: d(32),
            positions: d(64),
            token_types: None,
        };
        layers(generation, &config_of(keys), &dims, &mut Vec::new()).unwrap_or_else(|f| panic!("{f:?}"))
    }

    fn masks(keys: Value, layers: usize) -> Vec<Mask> {
        let layers = layers_of(Generation::Three, keys, layers);
        layers.attention.iter().map(|a| a.mask).collect()
    }

    #[test]
    fn the_soft_cap_defaults_as_each_generation_s_class_does() {
        let cap = |generation, keys: Value| softcap(generation, &config_of(keys), &mut Vec::new()).map_err(|f| f.code);
        assert_eq!(cap(Generation::Two, json!({})), Ok(Some(50.0)));
        assert_eq!(cap(Generation::Three, json!({})), Ok(None));
        for generation in [Generation::Two, Generation::Three] {
            assert_eq!(cap(generation, json!({"attn_logit_softcapping": null})), Ok(None));
            assert_eq!(cap(generation, json!({"attn_logit_softcapping": 30})), Ok(Some(30.0)));
            for bad in [json!(0), json!(-5.0), json!("50")] {
                assert_eq!(
                    cap(generation, json!({ "attn_logit_softcapping": bad })),
                    Err("config-value-invalid")
                );
            }
        }
    }

    #[test]
    fn gemma2_alternates_from_a_sliding_layer_0_and_stays_causal() {
        let layers = layers_of(
            Generation::Two,
            json!({"sliding_window": 8, "sliding_window_pattern": 6}),
            4,
        );
        let (window, full) = (Mask::CausalWindow { size: 8 }, Mask::Causal);
        let masks: Vec<Mask> = layers.attention.iter().map(|a| a.mask).collect();
        assert_eq!(
            masks,
            [window, full, window, full],
            "Gemma 2 has no sliding_window_pattern"
        );
        assert_eq!(layers.scales.softcap, Some(50.0));
        assert_eq!(layers.attention[0].rope, layers.attention[1].rope, "one rotary base");
    }

    #[test]
    fn masks_follow_the_config_as_transformers_reads_it() {
        // Causal: the last `sliding_window` tokens; without `layer_types`, every sixth layer full.
        let (window, full) = (Mask::CausalWindow { size: 8 }, Mask::Causal);
        assert_eq!(
            masks(json!({"sliding_window": 8}), 7),
            [window, window, window, window, window, full, window]
        );
        // Bidirectional: half the saved window each side.
        assert_eq!(
            masks(
                json!({"use_bidirectional_attention": true, "sliding_window": 512, "sliding_window_pattern": 2}),
                2
            ),
            [Mask::Window { radius: 256 }, Mask::Bidirectional]
        );
        // No window at all.
        assert_eq!(
            masks(json!({"sliding_window": null, "sliding_window_pattern": 2}), 2),
            [Mask::Causal, Mask::Causal]
        );
    }
}
