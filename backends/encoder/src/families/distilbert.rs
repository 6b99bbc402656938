//! DistilBERT: BERT's blocks under other names (`transformer.layer.N.attention.q_lin`,
//! `sa_layer_norm`, `ffn.lin1`...), other config keys (`dim`, `n_layers`, `n_heads`,
//! `hidden_dim`, `activation`), no token types, and a position table that may be fixed sinusoids
//! (`sinusoidal_pos_embds`).
//!
//! Reference: transformers' `models/distilbert/modeling_distilbert.py`.

use tessera_core::{EncoderLayout, Evidence, Finding};

use super::{Family, Keys, Recognised};
use crate::spec::{
    AttentionBias, Biases, EncoderSpec, FeedForward, LayerAttention, Norm, PositionTable, Positions,
    BERT_POSITION_TABLE, DISTILBERT_NAMES,
};

const KEYS: Keys = Keys {
    head_dim: None,
    vocab: "vocab_size",
    hidden: "dim",
    layers: "n_layers",
    heads: "n_heads",
    intermediate: "hidden_dim",
    positions: "max_position_embeddings",
    positions_default: None,
    token_types: None,
    token_types_default: 0,
    act: "activation",
    // DistilBERT's LayerNorms are built with eps 1e-12 and no config key.
    eps: None,
};

/// The DistilBERT family.
#[derive(Debug, Clone, Copy)]
pub struct DistilBert;

impl Family for DistilBert {
    fn name(&self) -> &'static str {
        "distilbert"
    }

    fn recognise(&self, layout: &EncoderLayout<'_>) -> Result<Recognised, Box<Finding>> {
        let config = layout.config;
        let mut findings = Vec::new();
        let layers = super::own_layers(&DISTILBERT_NAMES, "DistilBERT", layout)?;
        let mut evidence = vec![layers];
        super::model_type_evidence("distilbert", config, &mut evidence, &mut findings);
        let values = KEYS.read(config).map_err(|e| Box::new(e.to_finding()))?;
        let table = format!("{}{}.weight", layout.prefix, BERT_POSITION_TABLE);
        let sinusoidal = config.get("sinusoidal_pos_embds").and_then(|v| v.as_bool()) == Some(true);
        let position_table = match (layout.weights.get(&table).is_some(), sinusoidal) {
            (true, _) => {
                evidence.push(Evidence::tensor(&table, "the position table, as saved"));
                PositionTable::Weights
            }
            (false, true) => {
                evidence.push(Evidence::config(
                    "sinusoidal_pos_embds",
                    "true and no table in the weights: fixed sinusoids, computed at load",
                ));
                PositionTable::Sinusoidal
            }
            // The tensor check names the missing table.
            (false, false) => PositionTable::Weights,
        };
        super::name_evidence(config, &mut evidence);
        Ok(Recognised {
            spec: EncoderSpec {
                architecture: "distilbert".into(),
                scales: crate::spec::Scales::NONE,
                extras: crate::spec::Extras::NONE,

                adapters: None,
                layer_attention: LayerAttention::bidirectional(values.dims.layers.size()),
                names: DISTILBERT_NAMES,
                dims: values.dims,
                positions: Positions::Absolute,
                position_table,
                attention_bias: AttentionBias::None,
                feed_forward: FeedForward::Plain,
                act: values.act,
                norm: Norm::post(values.eps),
                biases: Biases::ALL,
            },
            evidence,
            findings,
            pooling: None,
        })
    }
}
