//! DeBERTa-v2 and v3 (mxbai-rerank-v1, NLI and prompt-injection cross-encoders, DeBERTa-based
//! embedders): BERT-shaped post-norm layers with `attention.self.{query,key,value}_proj`, and
//! disentangled attention: a table of relative-position embeddings (`encoder.rel_embeddings`,
//! normed by `encoder.LayerNorm` with `norm_rel_ebd: layer_norm`) that each layer projects into
//! keys and queries, with its content projections (`share_att_key`, v3) or its own
//! (`pos_key_proj`, `pos_query_proj`), and adds to the scores by relative position: content to
//! position (`c2p`) and position to content (`p2c`), every term scaled by
//! `1 / sqrt(head_dim * (1 + terms))`. Offsets beyond `position_buckets / 2` are bucketed
//! logarithmically up to `max_relative_positions`. v3 has no position table
//! (`position_biased_input: false`) and no token types; v2's largest checkpoints add a
//! convolution over the embeddings after layer 0 and may project narrower embeddings.
//!
//! Reference: transformers' `models/deberta_v2/modeling_deberta_v2.py`.

use serde_json::Value;
use tessera_core::inspection::ModelConfig;
use tessera_core::{Dim, EncoderLayout, Evidence, Finding, HiddenAct};

use super::{Family, Keys, Recognised};
use crate::spec::{
    AttentionBias, Biases, ConvActivation, Convolution, Disentangled, EmbeddingProjection, EncoderSpec, Extras,
    FeedForward, LayerAttention, Norm, PositionTable, Positions, Scales, DEBERTA_NAMES,
};

/// `DebertaV2Config`'s defaults.
const KEYS: Keys = Keys {
    positions_default: Some(512),
    token_types_default: 0,
    head_dim: Some("attention_head_size"),
    ..super::BERT_KEYS
};
/// `DebertaV2Config.layer_norm_eps`'s default.
const EPS: f64 = 1e-7;

const RELATIVE_TABLE: &str = "encoder.rel_embeddings";
const RELATIVE_NORM: &str = "encoder.LayerNorm";
const POSITION_KEYS: &str = "attention.self.pos_key_proj";
const POSITION_QUERIES: &str = "attention.self.pos_query_proj";
const EMBEDDING_PROJECTION: &str = "embeddings.embed_proj";
const CONVOLUTION: &str = "encoder.conv.conv";
const CONVOLUTION_NORM: &str = "encoder.conv.LayerNorm";

/// The DeBERTa-v2/v3 family.
#[derive(Debug, Clone, Copy)]
pub struct Deberta;

impl Family for Deberta {
    fn name(&self) -> &'static str {
        "deberta"
    }

    fn recognise(&self, layout: &EncoderLayout<'_>) -> Result<Recognised, Box<Finding>> {
        let config = layout.config;
        let mut evidence = vec![super::own_layers(&DEBERTA_NAMES, "DeBERTa", layout)?];
        let mut findings = Vec::new();
        super::model_type_evidence("deberta-v2", config, &mut evidence, &mut findings);
        super::name_evidence(config, &mut evidence);
        let mut values = KEYS.read(config).map_err(|e| Box::new(e.to_finding()))?;
        let extras = extras(config, values.dims.hidden.size(), &mut evidence)?;
        if config.f64("layer_norm_eps").is_none() {
            values.eps = EPS;
        }
        let position_table = match config.get("position_biased_input").and_then(Value::as_bool) {
            Some(false) => {
                evidence.push(Evidence::config(
                    "position_biased_input",
                    "false: no position table, positions enter through the relative attention only",
                ));
                PositionTable::Absent
            }
            _ => PositionTable::Weights,
        };
        let attention_bias = match disentangled(config, values.dims.positions.size())? {
            Some(d) => {
                let table = format!("{}{RELATIVE_TABLE}.weight", layout.prefix);
                if let Some(info) = layout.weights.get(&table) {
                    evidence.push(Evidence::tensor(
                        &table,
                        format!(
                            "{:?}: relative-position embeddings (disentangled attention)",
                            info.shape
                        ),
                    ));
                }
                evidence.push(Evidence::config(
                    "pos_att_type",
                    match (d.c2p, d.p2c) {
                        (true, true) => "c2p and p2c",
                        (true, false) => "c2p only",
                        _ => "p2c only",
                    },
                ));
                AttentionBias::Disentangled(d)
            }
            None => AttentionBias::None,
        };
        let scales = match attention_bias {
            AttentionBias::Disentangled(d) => Scales {
                attention: Some(d.score_scale(values.dims.head_dim.size())),
                ..Scales::NONE
            },
            _ => Scales::NONE,
        };
        Ok(Recognised {
            spec: EncoderSpec {
                architecture: "deberta-v2".into(),
                names: DEBERTA_NAMES,
                layer_attention: LayerAttention::bidirectional(values.dims.layers.size()),
                dims: values.dims,
                positions: Positions::Absolute,
                position_table,
                attention_bias,
                feed_forward: FeedForward::Plain,
                act: values.act,
                norm: Norm::post(values.eps),
                biases: Biases::ALL,
                adapters: None,
                scales,
                extras,
            },
            evidence,
            findings,
            pooling: None,
        })
    }
}

/// The refusal of a DeBERTa option tessera does not serve, naming the key.
fn unsupported(config: &ModelConfig, key: &str, message: String, fix: &str) -> Box<Finding> {
    super::option_refused("deberta-option-unsupported", config, key, message, fix)
}

/// DeBERTa-v2's largest checkpoints' extras: embedding tables narrower than the layers
/// (`embedding_size`, projected by `embed_proj`) and the convolution after layer 0
/// (`conv_kernel_size`, `conv_act`, `conv_groups`).
fn extras(config: &ModelConfig, hidden: usize, evidence: &mut Vec<Evidence>) -> Result<Extras, Box<Finding>> {
    let embedding_projection = match config.usize("embedding_size") {
        Some(width) if width != hidden => {
            evidence.push(Evidence::config(
                "embedding_size",
                format!("{width}: embeddings projected to {hidden} by `embed_proj`"),
            ));
            Some(EmbeddingProjection {
                name: EMBEDDING_PROJECTION,
                width: Dim::of("embedding_size", width),
                bias: false,
                norm_first: false,
            })
        }
        _ => None,
    };
    let Some(kernel) = config.usize("conv_kernel_size").filter(|&k| k > 0) else {
        return Ok(Extras {
            embedding_projection,
            ..Extras::NONE
        });
    };
    if kernel % 2 == 0 {
        return Err(unsupported(
            config,
            "conv_kernel_size",
            format!("`conv_kernel_size: {kernel}`: with transformers' padding of (kernel - 1) / 2 an even kernel shortens every sequence by one token, which the model's own code cannot run either"),
            "set the odd kernel the model was trained with (deberta-v2-xlarge: 3)",
        ));
    }
    if let Some(groups) = config.usize("conv_groups").filter(|&g| g != 1) {
        return Err(unsupported(
            config,
            "conv_groups",
            format!("`conv_groups: {groups}`: a grouped convolution, which tessera does not serve"),
            "serve a checkpoint with `conv_groups: 1` (every published DeBERTa-v2)",
        ));
    }
    let act = match config.str("conv_act").unwrap_or("tanh") {
        "tanh" => ConvActivation::Tanh,
        name => ConvActivation::Hidden(HiddenAct::parse(name).ok_or_else(|| {
            unsupported(
                config,
                "conv_act",
                format!("`conv_act: {name}` is not an activation tessera has"),
                &format!("use tanh or one of: {}", HiddenAct::supported_names()),
            )
        })?),
    };
    evidence.push(Evidence::config(
        "conv_kernel_size",
        format!("{kernel}: a convolution over the embeddings added after layer 0"),
    ));
    Ok(Extras {
        embedding_projection,
        experts: None,
        output_projection: None,
        convolution: Some(Convolution {
            conv: CONVOLUTION,
            norm: CONVOLUTION_NORM,
            kernel: Dim::of("conv_kernel_size", kernel),
            act,
        }),
    })
}

/// The disentangled attention config.json asks for; `None` without `relative_attention` or
/// without a term (transformers then adds nothing).
fn disentangled(config: &ModelConfig, max_positions: usize) -> Result<Option<Disentangled>, Box<Finding>> {
    if config.get("relative_attention").and_then(Value::as_bool) != Some(true) {
        return Ok(None);
    }
    let terms: Vec<String> = match config.get("pos_att_type") {
        None | Some(Value::Null) => Vec::new(),
        // Older configs write "p2c|c2p", as `DebertaV2Config` still reads.
        Some(Value::String(s)) => s.to_lowercase().split('|').map(|t| t.trim().to_string()).collect(),
        Some(Value::Array(items)) => items.iter().map(|t| t.as_str().unwrap_or("?").to_string()).collect(),
        Some(other) => {
            return Err(unsupported(
                config,
                "pos_att_type",
                format!("`pos_att_type` is {other}, not a list of \"c2p\" and \"p2c\""),
                "set it as trained, e.g. [\"p2c\", \"c2p\"]",
            ))
        }
    };
    if let Some(other) = terms.iter().find(|t| !matches!(t.as_str(), "c2p" | "p2c" | "")) {
        return Err(unsupported(
            config,
            "pos_att_type",
            format!("`pos_att_type` holds {other:?}; DeBERTa-v2 has the terms \"c2p\" and \"p2c\" only"),
            "set it as trained, e.g. [\"p2c\", \"c2p\"]",
        ));
    }
    let (c2p, p2c) = (terms.iter().any(|t| t == "c2p"), terms.iter().any(|t| t == "p2c"));
    if !(c2p || p2c) {
        return Ok(None);
    }
    let signed = |key: &str| config.get(key).and_then(Value::as_i64).unwrap_or(-1);
    let max_distance = match signed("max_relative_positions") {
        m if m < 1 => max_positions,
        m => m as usize,
    };
    let buckets = usize::try_from(signed("position_buckets")).ok().filter(|&b| b > 0);
    let rows = match buckets {
        Some(b) => Dim::of("position_buckets", 2 * b),
        None => Dim::of("max_relative_positions", 2 * max_distance),
    };
    if buckets.is_some_and(|b| b < 2) || (buckets.is_some() && max_distance < 2) {
        return Err(unsupported(
            config,
            "position_buckets",
            format!(
                "`position_buckets: {}` with `max_relative_positions: {max_distance}` leaves no logarithmic range",
                buckets.unwrap_or(0)
            ),
            "set them as trained (DeBERTa-v3: 256 and -1)",
        ));
    }
    let norm = config
        .str("norm_rel_ebd")
        .is_some_and(|n| n.to_lowercase().split('|').any(|p| p.trim() == "layer_norm"))
        .then_some(RELATIVE_NORM);
    let shared = config.get("share_att_key").and_then(Value::as_bool) == Some(true);
    Ok(Some(Disentangled {
        table: RELATIVE_TABLE,
        rows,
        norm,
        buckets,
        max_distance,
        c2p,
        p2c,
        projections: (!shared).then_some((POSITION_KEYS, POSITION_QUERIES)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(buckets: Option<usize>, max_distance: usize, span: usize) -> Disentangled {
        Disentangled {
            table: RELATIVE_TABLE,
            rows: Dim::of("position_buckets", 2 * span),
            norm: None,
            buckets,
            max_distance,
            c2p: true,
            p2c: true,
            projections: None,
        }
    }

    #[test]
    fn offsets_are_exact_near_then_logarithmic_then_clamped() {
        // DeBERTa-v3: 256 buckets up to 512.
        let v3 = spec(Some(256), 512, 256);
        assert_eq!(v3.column(0), 256);
        assert_eq!(v3.column(5), 261);
        assert_eq!(v3.column(-128), 128);
        // Beyond 128: ceil(ln(d / 128) / ln(511 / 128) * 127) + 128.
        let want = |d: f64| ((d / 128.0).ln() / (511.0f64 / 128.0).ln() * 127.0).ceil() as usize + 128;
        assert_eq!(v3.column(300), 256 + want(300.0));
        assert_eq!(v3.column(-300), 256 - want(300.0));
        // The last bucket of a 511-token offset, and everything past the table clamped.
        assert_eq!(v3.column(511), 256 + 255);
        assert_eq!(v3.column(5000), 511);
        assert_eq!(v3.column(-5000), 0);
        // Without buckets: exact offsets clamped to the span.
        let plain = spec(None, 48, 48);
        assert_eq!(plain.column(47), 95);
        assert_eq!(plain.column(60), 95);
        assert_eq!(plain.column(-60), 0);
    }

    #[test]
    fn the_score_scale_counts_the_terms() {
        let mut d = spec(None, 8, 8);
        assert!((d.score_scale(16) - 1.0 / 48f64.sqrt()).abs() < 1e-12);
        d.p2c = false;
        assert!((d.score_scale(16) - 1.0 / 32f64.sqrt()).abs() < 1e-12);
    }
}
