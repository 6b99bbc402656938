//! GTE "new" (gte-base/large-en-v1.5, gte-multilingual-base, snowflake-arctic-embed-m-v2.0): a
//! post-norm BERT with rotary positions (or, with `position_embedding_type: absolute`, a learned
//! table), fused `attention.qkv_proj` (or separate projections with `pack_qkv: false`), a gated
//! feed-forward `mlp.up_gate_proj` (up, then the activated gate) with a biased down-projection,
//! norms `attn_ln` and `mlp_ln`, and GTE's fixed NTK scaling (`rope_scaling: {type: ntk}`).
//!
//! Two config layouts: the remote code's (`model_type: new`, `rope_theta` defaulting to 10000,
//! `rope_scaling`) and transformers' native `gte` (`rope_parameters`, base 160000 when absent);
//! both save the same tensor names. The remote code's runtime switches (`unpad_inputs`,
//! `use_memory_efficient_attention`) change how it computes, not what: tessera always runs
//! unpadded, so they are ignored with an info finding.
//!
//! References: the `Alibaba-NLP/new-impl` remote code (`modeling.py`) and transformers'
//! `models/gte`.

use serde_json::Value;
use tessera_core::inspection::ModelConfig;
use tessera_core::{EncoderLayout, Evidence, Finding, Mask};

use super::rope::{self, RopeKeys};
use super::{Family, Keys, Recognised};
use crate::spec::{
    AttentionBias, Biases, EncoderSpec, FeedForward, Half, LayerAttention, Norm, PositionTable, Positions, GTE_NAMES,
    GTE_SEPARATE_NAMES,
};

/// The remote code's keys and defaults (`NewConfig`).
const ORIGINAL_KEYS: Keys = Keys {
    positions_default: Some(2048),
    token_types_default: 1,
    ..super::BERT_KEYS
};

/// transformers' `GteConfig` defaults.
const NATIVE_KEYS: Keys = Keys {
    positions_default: Some(8192),
    ..ORIGINAL_KEYS
};

/// The GTE family.
#[derive(Debug, Clone, Copy)]
pub struct Gte;

impl Family for Gte {
    fn name(&self) -> &'static str {
        "gte"
    }

    fn recognise(&self, layout: &EncoderLayout<'_>) -> Result<Recognised, Box<Finding>> {
        let config = layout.config;
        let separate = format!("{}{}", layout.prefix, GTE_SEPARATE_NAMES.signature());
        let names = match layout.weights.get(&separate) {
            Some(_) => GTE_SEPARATE_NAMES,
            None => GTE_NAMES,
        };
        let mut evidence = vec![super::own_layers(&names, "GTE", layout)?];
        let mut findings = Vec::new();
        // `new` is the remote code's name; transformers' is `gte`.
        let native = config.str("model_type") == Some("gte") || config.get("rope_parameters").is_some();
        match config.str("model_type") {
            Some(t @ ("new" | "gte")) => evidence.push(Evidence::config("model_type", t.to_string())),
            _ => super::model_type_evidence("new", config, &mut evidence, &mut findings),
        }
        super::name_evidence(config, &mut evidence);
        if let Some(finding) = layout.hidden_size_contradicted() {
            return Err(Box::new(finding));
        }
        for (key, why) in [
            ("logn_attention_scale", "scales queries by the log of the length"),
            ("logn_attention_clip1", "scales queries by the log of the length"),
        ] {
            if config.get(key).and_then(Value::as_bool) == Some(true) {
                return Err(unsupported(
                    config,
                    key,
                    format!("`{key}: true` {why}, which tessera does not serve"),
                ));
            }
        }
        if let Some(kind) = config.str("layer_norm_type").filter(|k| *k != "layer_norm") {
            return Err(unsupported(
                config,
                "layer_norm_type",
                format!("`layer_norm_type: {kind}`: tessera serves GTE with LayerNorm only"),
            ));
        }
        for key in ["unpad_inputs", "use_memory_efficient_attention"] {
            if let Some(value) = config.get(key) {
                findings.push(
                    Finding::info(
                        "gte-runtime-option-ignored",
                        format!("`{key}: {value}` selects how the remote code computes, not what; tessera always runs unpadded"),
                    )
                    .in_file(&config.path)
                    .about(key),
                );
            }
        }
        let keys = if native { NATIVE_KEYS } else { ORIGINAL_KEYS };
        let values = keys.read(config).map_err(|e| Box::new(e.to_finding()))?;
        let absolute = match config.str("position_embedding_type").unwrap_or("rope") {
            "rope" => false,
            "absolute" => true,
            other => {
                return Err(unsupported(
                    config,
                    "position_embedding_type",
                    format!("`position_embedding_type: {other}` is neither rope nor absolute"),
                ))
            }
        };
        let rope = match absolute {
            true => None,
            false => {
                let keys = RopeKeys {
                    section: None,
                    legacy: "rope_theta",
                    default: if native { 160_000.0 } else { 10_000.0 },
                    fixed_ntk: true,
                };
                let (rope, rope_evidence) =
                    rope::rope(config, &keys, values.dims.head_dim.size(), values.dims.positions.size())?;
                evidence.extend(rope_evidence);
                Some(rope)
            }
        };
        let layers = values.dims.layers.size();
        let architecture = format!(
            "gte ({} config, {})",
            if native { "native" } else { "original" },
            match rope {
                Some(rope) => format!("rotary base {}", rope.theta),
                None => "absolute positions".to_string(),
            }
        );
        Ok(Recognised {
            spec: EncoderSpec {
                architecture,
                names,
                dims: values.dims,
                positions: Positions::Absolute,
                position_table: match absolute {
                    true => PositionTable::Weights,
                    false => PositionTable::Absent,
                },
                attention_bias: AttentionBias::None,
                feed_forward: FeedForward::Gated {
                    activated: Half::Second,
                },
                act: values.act,
                norm: Norm::post(values.eps),
                biases: Biases {
                    attention: true,
                    attention_output: true,
                    up: false,
                    down: true,
                },
                scales: crate::spec::Scales::NONE,
                extras: crate::spec::Extras::NONE,

                adapters: None,
                layer_attention: vec![
                    LayerAttention {
                        mask: Mask::Bidirectional,
                        rope,
                    };
                    layers
                ],
            },
            evidence,
            findings,
            pooling: None,
        })
    }
}

fn unsupported(config: &ModelConfig, key: &str, message: String) -> Box<Finding> {
    super::option_refused(
        "gte-option-unsupported",
        config,
        key,
        message,
        "no public GTE embedder uses this option; serve one without it",
    )
}
