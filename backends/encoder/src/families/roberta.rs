//! RoBERTa, XLM-RoBERTa and CamemBERT: BERT's blocks and tensor names, with position rows
//! counted after the padding row (`padding_idx + 1 + i` for the i-th real token) and one token
//! type.
//!
//! References: transformers' `models/roberta/modeling_roberta.py`
//! (`create_position_ids_from_input_ids`), `xlm_roberta`, `camembert` (the same classes).

use tessera_core::{EncoderLayout, Evidence, Finding};

use super::lineage::{self, Lineage};
use super::{Family, Recognised};
use crate::spec::{
    AttentionBias, Biases, EncoderSpec, FeedForward, LayerAttention, Norm, PositionTable, Positions, BERT_NAMES,
};

/// `pad_token_id` of every RoBERTa-family config transformers writes (and its default).
const DEFAULT_PADDING_IDX: u32 = 1;

/// The RoBERTa family.
#[derive(Debug, Clone, Copy)]
pub struct Roberta;

impl Family for Roberta {
    fn name(&self) -> &'static str {
        "roberta"
    }

    fn recognise(&self, layout: &EncoderLayout<'_>) -> Result<Recognised, Box<Finding>> {
        let lineage::Recognition {
            values,
            mut evidence,
            mut findings,
            ..
        } = lineage::recognise(Lineage::Roberta, layout)?;
        let config = layout.config;
        let padding_idx = padding_idx(layout, values.dims.positions.size(), &mut evidence, &mut findings)?;
        super::name_evidence(config, &mut evidence);
        let architecture = match config.str("model_type") {
            Some(t @ ("roberta" | "xlm-roberta" | "camembert")) => t.to_string(),
            _ => "roberta".to_string(),
        };
        Ok(Recognised {
            spec: EncoderSpec {
                architecture,
                scales: crate::spec::Scales::NONE,
                extras: crate::spec::Extras::NONE,

                adapters: None,
                layer_attention: LayerAttention::bidirectional(values.dims.layers.size()),
                names: BERT_NAMES,
                dims: values.dims,
                positions: Positions::AfterPadding { padding_idx },
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

/// `pad_token_id`, which decides every position row: checked against the position table, which
/// must hold at least one real position after it.
pub(super) fn padding_idx(
    layout: &EncoderLayout<'_>,
    table_rows: usize,
    evidence: &mut Vec<Evidence>,
    findings: &mut Vec<Finding>,
) -> Result<u32, Box<Finding>> {
    let config = layout.config;
    let padding_idx = match config.get("pad_token_id") {
        None => {
            findings.push(
                Finding::warning(
                    "pad-token-id-missing",
                    format!("config.json has no `pad_token_id`; RoBERTa counts positions after it, so {DEFAULT_PADDING_IDX} (transformers' default) is assumed"),
                )
                .in_file(&config.path)
                .about("pad_token_id")
                .fix(format!("set `pad_token_id` to the tokenizer's padding id (usually {DEFAULT_PADDING_IDX})")),
            );
            DEFAULT_PADDING_IDX
        }
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => n,
            None => {
                return Err(Box::new(
                    Finding::error("pad-token-id-invalid", format!("`pad_token_id` is {v}, not a token id"))
                        .in_file(&config.path)
                        .about("pad_token_id")
                        .fix(format!(
                            "set `pad_token_id` to the tokenizer's padding id (usually {DEFAULT_PADDING_IDX})"
                        )),
                ))
            }
        },
    };
    if padding_idx as usize + 1 >= table_rows {
        return Err(Box::new(
            Finding::error(
                "pad-token-id-beyond-positions",
                format!("`pad_token_id: {padding_idx}` leaves no row of the {table_rows}-row position table for a real token: RoBERTa's first position is row pad_token_id + 1"),
            )
            .in_file(&config.path)
            .about("pad_token_id")
            .fix(format!("set `pad_token_id` to the tokenizer's padding id (usually {DEFAULT_PADDING_IDX}); the position table has {table_rows} rows")),
        ));
    }
    evidence.push(Evidence::config(
        "pad_token_id",
        format!(
            "{padding_idx}: the i-th token uses position row {} + i, so inputs of up to {} tokens",
            padding_idx + 1,
            table_rows - padding_idx as usize - 1
        ),
    ));
    Ok(padding_idx)
}
