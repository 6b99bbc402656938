//! What Gemma 3 decoders (EmbeddingGemma) add to the other decoders: RMSNorms whose stored
//! weight is an offset from 1, a norm before and after each block (`input_layernorm` and
//! `post_attention_layernorm` around attention, `pre_feedforward_layernorm` and
//! `post_feedforward_layernorm` around the feed-forward), the word vectors scaled by
//! `sqrt(hidden_size)`, scores scaled by `query_pre_attn_scalar ** -0.5`, and sliding-window
//! layers with their own rotary base among full ones. With `use_bidirectional_attention`
//! (EmbeddingGemma) full layers see every token and sliding ones `sliding_window / 2` tokens each
//! side; without it, as a causal decoder, the last `sliding_window` tokens.
//!
//! Reference: transformers' `models/gemma3/modeling_gemma3.py` and `configuration_gemma3.py`.

use serde_json::Value;
use tessera_core::inspection::ModelConfig;
use tessera_core::{Evidence, Finding, Mask};

use super::rope::{self, RopeKeys};
use crate::spec::{Dims, LayerAttention, Scales};

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

/// Gemma 3's layers as config.json describes them.
pub(super) struct Layers {
    pub attention: Vec<LayerAttention>,
    pub scales: Scales,
    pub bidirectional: bool,
    /// How the architecture reads in words (after the head layout).
    pub describe: String,
}

/// Each layer's mask and rotary scheme, and the scales, from config.json; refused naming the
/// key: attention logit soft-capping (Gemma 2's, which Gemma 3 dropped) and a zero window.
pub(super) fn layers(config: &ModelConfig, dims: &Dims, evidence: &mut Vec<Evidence>) -> Result<Layers, Box<Finding>> {
    let refuse = |key: &str, message: String, fix: &str| {
        super::option_refused("decoder-attention-unsupported", config, key, message, fix)
    };
    if let Some(cap) = config.get("attn_logit_softcapping").filter(|v| !v.is_null()) {
        return Err(refuse(
            "attn_logit_softcapping",
            format!("`attn_logit_softcapping: {cap}`: soft-capped attention scores, which tessera does not serve"),
            "set it to null if the model was trained without it (Gemma 3 was)",
        ));
    }
    let bidirectional = config.get("use_bidirectional_attention").and_then(Value::as_bool) == Some(true);
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
    // Without `layer_types`, every `sliding_window_pattern`-th layer (counting from 1) is full.
    let pattern = config.usize("sliding_window_pattern").unwrap_or(6).max(1);
    let kinds = super::layer_kinds(
        config,
        layer_count,
        |l| (l + 1) % pattern == 0,
        "sliding_window_pattern",
    )?;
    let (head_dim, positions) = (dims.head_dim.size(), dims.positions.size());
    let (global, global_evidence) = rope::rope(config, &GLOBAL, head_dim, positions)?;
    let (local, local_evidence) = rope::rope(config, &LOCAL, head_dim, positions)?;
    evidence.extend(global_evidence.into_iter().chain(local_evidence));
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
    let sides = match (bidirectional, window) {
        (true, usize::MAX) => format!("bidirectional, {globals} full of {layer_count} layers, no window"),
        (false, usize::MAX) => format!("causal, {globals} full of {layer_count} layers, no window"),
        (true, _) => format!(
            "bidirectional, {globals} full of {layer_count} layers, the others {} tokens each side",
            window / 2
        ),
        (false, _) => format!("causal, {globals} full of {layer_count} layers, the others the last {window} tokens"),
    };
    Ok(Layers {
        attention,
        scales: Scales {
            embeddings: Some((dims.hidden.size() as f64).sqrt()),
            attention: Some(query_scalar.powf(-0.5)),
            softcap: None,
        },
        bidirectional,
        describe: sides,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tessera_core::Dim;

    use super::*;

    fn masks(keys: Value, layers: usize) -> Vec<Mask> {
        let config = ModelConfig {
            path: "config.json".into(),
            values: keys.as_object().cloned().unwrap_or_default(),
        };
        let d = |n| Dim::of("x", n);
        let dims = Dims {
            vocab: d(10),
            hidden: d(16),
            layers: d(layers),
            heads: d(2),
            kv_heads: d(1),
            head_dim: d(8),
            intermediate: d(32),
            positions: d(64),
            token_types: None,
        };
        let layers = layers_of(&config, &dims);
        layers.attention.iter().map(|a| a.mask).collect()
    }

    fn layers_of(config: &ModelConfig, dims: &Dims) -> Layers {
        match layers(config, dims, &mut Vec::new()) {
            Ok(layers) => layers,
            Err(f) => panic!("{f:?}"),
        }
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
