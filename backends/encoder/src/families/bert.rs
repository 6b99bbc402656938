//! BERT: absolute positions, token types, post-norm layers.
//!
//! Reference: transformers' `models/bert/modeling_bert.py`.

use tessera_core::{EncoderLayout, Evidence, Finding};

use super::lineage::{self, Lineage};
use super::{Family, Recognised, BERT_KEYS};
use crate::spec::{AttentionBias, EncoderSpec, FeedForward, PositionTable, Positions, BERT_NAMES};

/// The BERT family.
#[derive(Debug, Clone, Copy)]
pub struct Bert;

impl Family for Bert {
    fn name(&self) -> &'static str {
        "bert"
    }

    fn recognise(&self, layout: &EncoderLayout<'_>) -> Result<Recognised, Box<Finding>> {
        let mut evidence = vec![Evidence::tensor(
            format!("{}{}", layout.prefix, tessera_core::WORD_EMBEDDINGS),
            "BERT-family embeddings",
        )];
        let mut findings = Vec::new();
        evidence.extend(super::layers_are(&BERT_NAMES, "BERT", layout)?);
        lineage::absolute_positions(Lineage::Bert, layout, &mut evidence, &mut findings)?;
        lineage::decide(Lineage::Bert, layout, &mut evidence, &mut findings)?;
        if let Some(finding) = layout.hidden_size_contradicted() {
            return Err(Box::new(finding));
        }
        let values = BERT_KEYS.read(layout.config).map_err(|e| Box::new(e.to_finding()))?;
        super::name_evidence(layout.config, &mut evidence);
        Ok(Recognised {
            spec: EncoderSpec {
                architecture: "bert".into(),
                names: BERT_NAMES,
                dims: values.dims,
                positions: Positions::Absolute,
                position_table: PositionTable::Weights,
                attention_bias: AttentionBias::None,
                feed_forward: FeedForward::Plain,
                act: values.act,
                layer_norm_eps: values.eps,
            },
            evidence,
            findings,
        })
    }
}
