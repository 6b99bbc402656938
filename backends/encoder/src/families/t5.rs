//! T5's encoder (sentence-t5, GTR-T5 and other `T5EncoderModel` embedders): pre-norm layers
//! (`encoder.block.N.layer.0` attention, `layer.1` feed-forward) with RMSNorms without bias, no
//! biases anywhere, no position table: positions enter through the relative bias of layer 0
//! (`relative_attention_bias`, bidirectional buckets), which every layer adds; scores are not
//! divided by `sqrt(d_kv)`; the feed-forward is ReLU (`wi`, `wo`) or gated (`gated-gelu`:
//! `act(wi_0) * wi_1`, T5 v1.1's); a final RMSNorm.
//!
//! Reference: transformers' `models/t5/modeling_t5.py` (`T5EncoderModel`) and
//! `configuration_t5.py`.

use tessera_core::{Dim, EncoderLayout, Evidence, Finding, HiddenAct};

use super::{Family, Keys, Recognised};
use crate::spec::{
    AttentionBias, Biases, EncoderSpec, FeedForward, Half, LayerAttention, Norm, NormKind, Placement, PositionTable,
    Positions, Scales, T5_GATED_NAMES, T5_NAMES,
};

const KEYS: Keys = Keys {
    vocab: "vocab_size",
    hidden: "d_model",
    layers: "num_layers",
    heads: "num_heads",
    intermediate: "d_ff",
    // No position table: the longest input is T5's `n_positions` where saved, else 512, as
    // the tokenizers of T5 checkpoints cap it.
    positions: "n_positions",
    positions_default: Some(512),
    token_types: None,
    token_types_default: 0,
    // Read by [`feed_forward`], not as a plain activation name.
    act: "feed_forward_proj",
    eps: Some("layer_norm_epsilon"),
    head_dim: Some("d_kv"),
};

/// The relative bias table of layer 0, `[buckets, heads]`, relative to the weight prefix.
const RELATIVE_BIAS: &str = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias";

/// The word table, shared by T5's encoder and decoder.
pub(crate) const WORD_TABLE: &str = "shared.weight";

/// The T5 encoder family.
#[derive(Debug, Clone, Copy)]
pub struct T5;

impl Family for T5 {
    fn name(&self) -> &'static str {
        "t5"
    }

    fn word_table(&self) -> &'static str {
        WORD_TABLE
    }

    fn recognise(&self, layout: &EncoderLayout<'_>) -> Result<Recognised, Box<Finding>> {
        let config = layout.config;
        let layers = super::own_layers(&T5_NAMES, "T5", layout)?;
        let table =
            super::relative_bias_table(layout, RELATIVE_BIAS, "T5", "T5EncoderModel keeps the table in layer 0")?;
        let mut evidence = vec![layers, table];
        let mut findings = Vec::new();
        super::model_type_evidence("t5", config, &mut evidence, &mut findings);
        let dims = KEYS.dims(config).map_err(|e| Box::new(e.to_finding()))?;
        let FeedForwardProj { gated, act, name } = feed_forward(config)?;
        evidence.push(Evidence::config(
            "feed_forward_proj",
            match gated {
                true => format!("gated: {name}(wi_0) * wi_1"),
                false => format!("{name} between wi and wo"),
            },
        ));
        let buckets = config.usize("relative_attention_num_buckets").unwrap_or(32);
        let max_distance = config.usize("relative_attention_max_distance").unwrap_or(128);
        super::name_evidence(config, &mut evidence);
        let eps = config.f64("layer_norm_epsilon").unwrap_or(1e-6);
        Ok(Recognised {
            spec: EncoderSpec {
                architecture: "t5".into(),
                // T5 does not divide its scores by sqrt(d_kv).
                scales: Scales {
                    attention: Some(1.0),
                    ..Scales::NONE
                },
                extras: crate::spec::Extras::NONE,
                adapters: None,
                layer_attention: LayerAttention::bidirectional(dims.layers.size()),
                names: if gated { T5_GATED_NAMES } else { T5_NAMES },
                dims,
                positions: Positions::Absolute,
                position_table: PositionTable::Absent,
                attention_bias: AttentionBias::RelativeBuckets {
                    tensor: RELATIVE_BIAS,
                    buckets: Dim::of("relative_attention_num_buckets", buckets),
                    max_distance,
                },
                feed_forward: match gated {
                    true => FeedForward::Gated { activated: Half::First },
                    false => FeedForward::Plain,
                },
                act,
                norm: Norm {
                    kind: NormKind::Rms,
                    placement: Placement::Pre {
                        first_attention_unnormed: false,
                    },
                    eps,
                },
                biases: Biases {
                    attention: false,
                    attention_output: false,
                    up: false,
                    down: false,
                },
            },
            evidence,
            findings,
            pooling: None,
        })
    }
}

/// What `feed_forward_proj` says.
#[derive(Debug, PartialEq)]
struct FeedForwardProj {
    gated: bool,
    act: HiddenAct,
    /// The activation's name, as transformers resolves it.
    name: String,
}

/// `feed_forward_proj` as `T5Config` reads it: `ACT` or `gated-ACT`, `gated-gelu` meaning the
/// tanh GELU (`gelu_new`).
fn feed_forward(config: &tessera_core::inspection::ModelConfig) -> Result<FeedForwardProj, Box<Finding>> {
    let proj = config.str("feed_forward_proj").unwrap_or("relu");
    let (gated, name) = match proj.split_once('-') {
        Some(("gated", "gelu")) => (true, "gelu_new"),
        Some(("gated", name)) => (true, name),
        Some(_) => (false, ""),
        None => (false, proj),
    };
    match HiddenAct::parse(name) {
        Some(act) => Ok(FeedForwardProj {
            gated,
            act,
            name: name.to_string(),
        }),
        None => Err(Box::new(
            tessera_core::LoadError::UnsupportedValue {
                file: config.path.clone(),
                key: "feed_forward_proj".into(),
                value: proj.into(),
                supported: format!("ACT or gated-ACT, ACT one of {}", HiddenAct::supported_names()),
            }
            .to_finding(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(proj: serde_json::Value) -> Result<(bool, HiddenAct), Box<Finding>> {
        let config = super::super::config_of(json!({ "feed_forward_proj": proj }));
        feed_forward(&config).map(|f| (f.gated, f.act))
    }

    #[test]
    fn feed_forward_proj_is_read_as_t5_config_reads_it() {
        assert_eq!(read(json!("relu")).unwrap(), (false, HiddenAct::Relu));
        assert_eq!(
            read(json!("gated-gelu")).unwrap(),
            (true, HiddenAct::parse("gelu_new").unwrap())
        );
        assert_eq!(
            read(json!("gated-silu")).unwrap(),
            (true, HiddenAct::parse("silu").unwrap())
        );
        for wrong in ["gated-swoosh", "ungated-relu", "gated-gelu-x"] {
            assert_eq!(
                read(json!(wrong)).unwrap_err().subject.as_deref(),
                Some("feed_forward_proj"),
                "{wrong}"
            );
        }
    }
}
