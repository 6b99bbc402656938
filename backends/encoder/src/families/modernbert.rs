//! ModernBERT (modernbert-embed, gte-modernbert, the ModernBERT rerankers' bodies): pre-norm
//! layers (layer 0's attention reads the embedding norm's output directly), fused `attn.Wqkv`,
//! GeGLU `mlp.Wi` (activation on the first half), rotary positions with one base for global
//! layers and another for local ones, local layers seeing `local_attention / 2` tokens each side,
//! a final norm; biases and norm biases as the config says.
//!
//! Reference: transformers' `models/modernbert/modeling_modernbert.py` and its configuration
//! (`layer_types`, else a global layer every `global_attn_every_n_layers`-th from layer 0).

use serde_json::Value;
use tessera_core::{EncoderLayout, Finding, Mask};

use super::rope::{self, RopeKeys};
use super::{Family, Keys, Recognised};
use crate::spec::{
    AttentionBias, Biases, EncoderSpec, FeedForward, Half, LayerAttention, Norm, NormKind, Placement, PositionTable,
    Positions, MODERNBERT_NAMES,
};

/// Its word table: the anchor of the weight prefix (`model.` in `*ForMaskedLM` checkpoints).
pub(crate) const WORD_TABLE: &str = "embeddings.tok_embeddings.weight";

const KEYS: Keys = Keys {
    positions_default: Some(8192),
    token_types: None,
    act: "hidden_activation",
    eps: Some("norm_eps"),
    ..super::BERT_KEYS
};

const GLOBAL: RopeKeys = RopeKeys {
    section: Some("full_attention"),
    legacy: "global_rope_theta",
    default: 160_000.0,
    fixed_ntk: false,
};
const LOCAL: RopeKeys = RopeKeys {
    section: Some("sliding_attention"),
    legacy: "local_rope_theta",
    default: 10_000.0,
    fixed_ntk: false,
};

/// The ModernBERT family.
#[derive(Debug, Clone, Copy)]
pub struct ModernBert;

impl Family for ModernBert {
    fn name(&self) -> &'static str {
        "modernbert"
    }

    fn word_table(&self) -> &'static str {
        WORD_TABLE
    }

    fn recognise(&self, layout: &EncoderLayout<'_>) -> Result<Recognised, Box<Finding>> {
        let config = layout.config;
        let mut evidence = vec![super::own_layers(&MODERNBERT_NAMES, "ModernBERT", layout)?];
        let mut findings = Vec::new();
        super::model_type_evidence("modernbert", config, &mut evidence, &mut findings);
        super::name_evidence(config, &mut evidence);
        if let Some(finding) = layout.hidden_size_contradicted() {
            return Err(Box::new(finding));
        }
        let values = KEYS.read(config).map_err(|e| Box::new(e.to_finding()))?;
        let layers = values.dims.layers.size();
        let flag = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
        let (head_dim, positions) = (values.dims.head_dim.size(), values.dims.positions.size());
        let (global, global_evidence) = rope::rope(config, &GLOBAL, head_dim, positions)?;
        let (local, local_evidence) = rope::rope(config, &LOCAL, head_dim, positions)?;
        evidence.extend(global_evidence.into_iter().chain(local_evidence));
        let window = config.usize("local_attention").unwrap_or(128);
        // Without `layer_types`, a global layer every `global_attn_every_n_layers`-th from 0.
        let every = config.usize("global_attn_every_n_layers").unwrap_or(3).max(1);
        let kinds = super::layer_kinds(config, layers, |l| l % every == 0, "`global_attn_every_n_layers`")?;
        let layer_attention = kinds
            .iter()
            .map(|&global_layer| match global_layer {
                true => LayerAttention {
                    mask: Mask::Bidirectional,
                    rope: Some(global),
                },
                false => LayerAttention {
                    mask: Mask::Window { radius: window / 2 },
                    rope: Some(local),
                },
            })
            .collect();
        let globals = kinds.iter().filter(|&&g| g).count();
        let architecture =
            format!("modernbert ({globals} global of {layers} layers, local windows of {window} tokens)");
        Ok(Recognised {
            spec: EncoderSpec {
                architecture,
                names: MODERNBERT_NAMES,
                dims: values.dims,
                positions: Positions::Absolute,
                position_table: PositionTable::Absent,
                attention_bias: AttentionBias::None,
                feed_forward: FeedForward::Gated { activated: Half::First },
                act: values.act,
                norm: Norm {
                    kind: match flag("norm_bias") {
                        true => NormKind::LayerNorm,
                        false => NormKind::LayerNormWithoutBias,
                    },
                    placement: Placement::Pre {
                        first_attention_unnormed: true,
                    },
                    eps: config.f64("norm_eps").unwrap_or(1e-5),
                },
                biases: Biases {
                    attention: flag("attention_bias"),
                    attention_output: flag("attention_bias"),
                    up: flag("mlp_bias"),
                    down: flag("mlp_bias"),
                },
                scales: crate::spec::Scales::NONE,
                extras: crate::spec::Extras::NONE,

                adapters: None,
                layer_attention,
            },
            evidence,
            findings,
            pooling: None,
        })
    }
}
