//! MPNet: BERT-shaped post-norm layers (`attention.attn.{q,k,v,o}`), RoBERTa's position offset
//! (rows after padding index 1, fixed in transformers' code), no token types, and a relative
//! position bias shared by every layer (`encoder.relative_attention_bias`, 32 buckets, max
//! distance 128), applied inside the attention kernel.
//!
//! Reference: transformers' `models/mpnet/modeling_mpnet.py`.

use tessera_core::{Dim, EncoderLayout, Finding};

use super::{Family, Keys, Recognised};
use crate::spec::{
    AttentionBias, Biases, EncoderSpec, FeedForward, LayerAttention, Norm, PositionTable, Positions, MPNET_NAMES,
};

const KEYS: Keys = Keys {
    token_types: None,
    ..super::BERT_KEYS
};

/// The relative bias table, relative to the weight prefix.
const RELATIVE_BIAS: &str = "encoder.relative_attention_bias";
/// transformers computes buckets with these regardless of the config.
const BUCKETS_USED: usize = 32;
const MAX_DISTANCE: usize = 128;
/// `MPNetEmbeddings.padding_idx`: 1 in transformers' code, whatever `pad_token_id` says.
const PADDING_IDX: u32 = 1;

/// The MPNet family.
#[derive(Debug, Clone, Copy)]
pub struct MpNet;

impl Family for MpNet {
    fn name(&self) -> &'static str {
        "mpnet"
    }

    fn recognise(&self, layout: &EncoderLayout<'_>) -> Result<Recognised, Box<Finding>> {
        let config = layout.config;
        let layers = super::own_layers(&MPNET_NAMES, "MPNet", layout)?;
        let table = super::relative_bias_table(
            layout,
            RELATIVE_BIAS,
            "MPNet",
            "MPNetModel keeps the table under `encoder.`",
        )?;
        let mut evidence = vec![layers, table];
        let mut findings = Vec::new();
        super::model_type_evidence("mpnet", config, &mut evidence, &mut findings);
        let values = KEYS.read(config).map_err(|e| Box::new(e.to_finding()))?;
        let buckets = config.usize("relative_attention_num_buckets").unwrap_or(BUCKETS_USED);
        if buckets != BUCKETS_USED {
            return Err(Box::new(
                Finding::error(
                    "relative-buckets-unsupported",
                    format!("`relative_attention_num_buckets: {buckets}`: transformers' MPNet buckets positions into {BUCKETS_USED} whatever the table holds, and tessera does as it does"),
                )
                .in_file(&config.path)
                .about("relative_attention_num_buckets")
                .fix(format!("set it to {BUCKETS_USED}, as the model was trained")),
            ));
        }
        super::name_evidence(config, &mut evidence);
        Ok(Recognised {
            spec: EncoderSpec {
                architecture: "mpnet".into(),
                scales: crate::spec::Scales::NONE,
                extras: crate::spec::Extras::NONE,

                adapters: None,
                layer_attention: LayerAttention::bidirectional(values.dims.layers.size()),
                names: MPNET_NAMES,
                dims: values.dims,
                positions: Positions::AfterPadding {
                    padding_idx: PADDING_IDX,
                },
                position_table: PositionTable::Weights,
                attention_bias: AttentionBias::RelativeBuckets {
                    tensor: RELATIVE_BIAS,
                    buckets: Dim::of("relative_attention_num_buckets", buckets),
                    max_distance: MAX_DISTANCE,
                },
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
