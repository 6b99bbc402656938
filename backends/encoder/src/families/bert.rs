//! BERT: absolute positions, token types, post-norm layers; and ELECTRA's discriminator, which
//! is BERT's encoder with embedding tables that may be narrower than the layers (normed, then
//! projected by `embeddings_project`).
//!
//! Reference: transformers' `models/bert/modeling_bert.py`, `models/electra/modeling_electra.py`.

use tessera_core::{EncoderLayout, Finding};

use super::lineage::{self, Lineage};
use super::{Family, Recognised};
use crate::spec::{
    AttentionBias, Biases, EncoderSpec, FeedForward, LayerAttention, Norm, PositionTable, Positions, BERT_NAMES,
};

/// The BERT family.
#[derive(Debug, Clone, Copy)]
pub struct Bert;

impl Family for Bert {
    fn name(&self) -> &'static str {
        "bert"
    }

    fn recognise(&self, layout: &EncoderLayout<'_>) -> Result<Recognised, Box<Finding>> {
        let lineage::Recognition {
            values,
            projection: embedding_projection,
            mut evidence,
            findings,
        } = lineage::recognise(Lineage::Bert, layout)?;
        super::name_evidence(layout.config, &mut evidence);
        let architecture = match layout.config.str("model_type") {
            Some("electra") => "electra",
            _ => "bert",
        };
        Ok(Recognised {
            spec: EncoderSpec {
                architecture: architecture.into(),
                scales: crate::spec::Scales::NONE,
                extras: crate::spec::Extras {
                    embedding_projection,
                    ..crate::spec::Extras::NONE
                },

                adapters: None,
                layer_attention: LayerAttention::bidirectional(values.dims.layers.size()),
                names: BERT_NAMES,
                dims: values.dims,
                positions: Positions::Absolute,
                position_table: PositionTable::Weights,
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
