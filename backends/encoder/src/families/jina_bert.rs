//! JinaBERT v2 (jina-embeddings-v2-*, jina-reranker-v1): BERT's names and post-norm layers with
//! ALiBi instead of a position table, and a gated feed-forward (GEGLU/ReGLU, `mlp.gated_layers`),
//! the original BERT one, or the code variant's (`mlp.up_gated_layer`, Q/K LayerNorms and a
//! doubled residual). Decided from the tensors: no position table means ALiBi; the layer-0
//! feed-forward tensors decide the variant. `_name_or_path` and `auto_map` only support: a
//! fine-tune rewrites them.
//!
//! References: <https://huggingface.co/jinaai/jina-bert-implementation/blob/main/modeling_bert.py>
//! and `jinaai/jina-bert-v2-qk-post-norm` for the code variant.

use tessera_core::inspection::{ModelConfig, WeightsIndex};
use tessera_core::{EncoderLayout, Evidence, Finding, HiddenAct};

use super::{Family, Recognised, BERT_KEYS};
use crate::spec::{
    AttentionBias, Biases, EncoderSpec, FeedForward, Half, LayerAttention, Norm, PositionTable, Positions, BERT_NAMES,
    JINA_CODE_NAMES, JINA_GLU_NAMES,
};

/// The supported `feed_forward_type` values.
const FEED_FORWARD_TYPES: &str = "geglu, reglu, original";

/// ALiBi has no table: without `max_position_embeddings`, the length JinaBERT v2 was trained to.
const DEFAULT_MAX_POSITIONS: usize = 8192;

/// The feed-forward variants of JinaBERT v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// `mlp.gated_layers` + `mlp.wo` + `mlp.layernorm`: `act(g[:I]) * g[I:]`.
    Glu(GluAct),
    /// The plain BERT FFN.
    Original,
    /// `mlp.up_gated_layer` + `mlp.down_layer`, `up * act(gate)`, Q/K LayerNorms and the
    /// doubled residual through `layer_norm_1` and `layer_norm_2`.
    Code(GluAct),
}

/// The activation of a gated MLP, from `feed_forward_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GluAct {
    /// `geglu`: exact (erf) GELU.
    Gelu,
    /// `reglu`: ReLU.
    Relu,
}

impl GluAct {
    fn hidden_act(self) -> HiddenAct {
        match self {
            GluAct::Gelu => HiddenAct::Gelu,
            GluAct::Relu => HiddenAct::Relu,
        }
    }
}

impl Variant {
    fn describe(self) -> &'static str {
        match self {
            Variant::Glu(GluAct::Gelu) => "geglu",
            Variant::Glu(GluAct::Relu) => "reglu",
            Variant::Original => "original FFN",
            Variant::Code(GluAct::Gelu) => "code variant, geglu",
            Variant::Code(GluAct::Relu) => "code variant, reglu",
        }
    }
}

/// The JinaBERT v2 family.
#[derive(Debug, Clone, Copy)]
pub struct JinaBert;

impl Family for JinaBert {
    fn name(&self) -> &'static str {
        "jina-bert"
    }

    fn recognise(&self, layout: &EncoderLayout<'_>) -> Result<Recognised, Box<Finding>> {
        let EncoderLayout {
            config,
            weights,
            prefix,
            ..
        } = layout;
        let file = weights.display_file();
        // Another family's layers (DeBERTa's have no position table either) are not ALiBi's.
        super::layers_are(&crate::spec::BERT_NAMES, "JinaBERT", layout)?;
        let mut evidence = Vec::new();
        let mut findings = Vec::new();

        let positions = format!("{prefix}embeddings.position_embeddings.weight");
        if weights.get(&positions).is_some() {
            return Err(Box::new(
                Finding::error(
                    "absolute-positions-not-alibi",
                    "the weights have an absolute position table, so the model is not ALiBi (JinaBERT has none)",
                )
                .in_file(&file)
                .about(positions)
                .fix("serve it with the bert backend; if it really is JinaBERT, remove the position table from the weights"),
            ));
        }
        evidence.push(Evidence::tensor(
            positions,
            "absent: no absolute position table, so positions come from ALiBi",
        ));
        position_type(config, &mut evidence, &mut findings)?;
        let variant = feed_forward(config, weights, prefix, &file, &mut evidence, &mut findings)?;

        match config.str("model_type") {
            Some("bert") => evidence.push(Evidence::config(
                "model_type",
                "bert (JinaBERT keeps BERT's model_type)",
            )),
            other => findings.push(
                Finding::warning(
                    "model-type-unexpected",
                    format!("`model_type` is {other:?}; JinaBERT v2 checkpoints say \"bert\"; the tensors decide"),
                )
                .in_file(&config.path)
                .about("model_type")
                .fix("set `model_type` to \"bert\""),
            ),
        }
        for key in ["_name_or_path", "auto_map"] {
            if let Some(value) = config.get(key) {
                let text = value.to_string();
                if text.contains("jina") {
                    evidence.push(Evidence::name(
                        key,
                        format!("names JinaBERT ({text}); supporting evidence only"),
                    ));
                }
            }
        }
        if let Some(finding) = layout.hidden_size_contradicted() {
            return Err(Box::new(finding));
        }
        let keys = super::Keys {
            positions_default: Some(DEFAULT_MAX_POSITIONS),
            ..BERT_KEYS
        };
        let values = keys.read(config).map_err(|e| Box::new(e.to_finding()))?;
        let (names, feed_forward, act) = match variant {
            Variant::Original => (BERT_NAMES, FeedForward::Plain, values.act),
            Variant::Glu(act) => (
                JINA_GLU_NAMES,
                FeedForward::Gated { activated: Half::First },
                act.hidden_act(),
            ),
            Variant::Code(act) => (
                JINA_CODE_NAMES,
                FeedForward::Gated {
                    activated: Half::Second,
                },
                act.hidden_act(),
            ),
        };
        Ok(Recognised {
            spec: EncoderSpec {
                architecture: format!("jina-bert (alibi, {})", variant.describe()),
                scales: crate::spec::Scales::NONE,
                extras: crate::spec::Extras::NONE,

                adapters: None,
                layer_attention: LayerAttention::bidirectional(values.dims.layers.size()),
                names,
                dims: values.dims,
                positions: Positions::Absolute,
                position_table: PositionTable::Absent,
                attention_bias: AttentionBias::Alibi,
                feed_forward,
                act,
                norm: Norm::post(values.eps),
                // The gated up-projection has no bias; the original feed-forward's has.
                biases: Biases {
                    up: feed_forward == FeedForward::Plain,
                    ..Biases::ALL
                },
            },
            evidence,
            findings,
            pooling: None,
        })
    }
}

fn position_type(
    config: &ModelConfig,
    evidence: &mut Vec<Evidence>,
    findings: &mut Vec<Finding>,
) -> Result<(), Box<Finding>> {
    match config.str("position_embedding_type") {
        Some("alibi") => evidence.push(Evidence::config("position_embedding_type", "alibi")),
        other @ (None | Some("absolute")) => findings.push(
            Finding::warning(
                "position-type-contradicts-weights",
                format!("config.json says `position_embedding_type: {}` but the weights have no position table; serving with ALiBi (the tensors win)", other.unwrap_or("absolute (by omission)")),
            )
            .in_file(&config.path)
            .about("position_embedding_type")
            .fix("set `position_embedding_type` to \"alibi\""),
        ),
        Some(other) => return Err(Box::new(super::lineage::unsupported_position_type(config, other))),
    }
    Ok(())
}

fn feed_forward(
    config: &ModelConfig,
    weights: &WeightsIndex,
    prefix: &str,
    file: &std::path::Path,
    evidence: &mut Vec<Evidence>,
    findings: &mut Vec<Finding>,
) -> Result<Variant, Box<Finding>> {
    let layer0 = format!("{prefix}encoder.layer.0.");
    let has = |name: &str| weights.get(&format!("{layer0}{name}")).is_some();
    let declared = config.str("feed_forward_type");
    let contradiction = |declared: &str, actual: &str| {
        Finding::warning(
            "feed-forward-type-contradicts-weights",
            format!("config.json says `feed_forward_type: {declared}` but the weights have a {actual} block; serving as {actual} (the tensors win)"),
        )
        .in_file(&config.path)
        .about("feed_forward_type")
    };
    let glu_act = |findings: &mut Vec<Finding>, actual: &str| -> Result<GluAct, Box<Finding>> {
        match declared {
            Some("geglu") => Ok(GluAct::Gelu),
            Some("reglu") => Ok(GluAct::Relu),
            None => {
                findings.push(
                    Finding::warning(
                        "feed-forward-type-missing",
                        "config.json has no `feed_forward_type`; assuming geglu",
                    )
                    .in_file(&config.path)
                    .about("feed_forward_type")
                    .fix("set `feed_forward_type` to \"geglu\" or \"reglu\" as trained"),
                );
                Ok(GluAct::Gelu)
            }
            Some("original") => {
                findings
                    .push(contradiction("original", actual).fix("set `feed_forward_type` to \"geglu\" or \"reglu\""));
                Ok(GluAct::Gelu)
            }
            Some(other) => Err(Box::new(
                Finding::error(
                    "feed-forward-type-unsupported",
                    format!("`feed_forward_type: {other}` is not supported (supported: {FEED_FORWARD_TYPES})"),
                )
                .in_file(&config.path)
                .about("feed_forward_type")
                .fix(format!("use one of: {FEED_FORWARD_TYPES}")),
            )),
        }
    };
    if has("mlp.up_gated_layer.weight") {
        evidence.push(Evidence::tensor(
            format!("{layer0}mlp.up_gated_layer.weight"),
            "gated MLP of the code variant",
        ));
        if has("attention.self.layer_norm_q.weight") {
            evidence.push(Evidence::tensor(
                format!("{layer0}attention.self.layer_norm_q.weight"),
                "Q/K LayerNorms of the code variant",
            ));
        }
        return Ok(Variant::Code(glu_act(findings, "gated (code variant)")?));
    }
    if has("mlp.gated_layers.weight") {
        evidence.push(Evidence::tensor(
            format!("{layer0}mlp.gated_layers.weight"),
            "gated (GLU) MLP",
        ));
        let act = glu_act(findings, "gated")?;
        if declared.is_some_and(|d| d == "geglu" || d == "reglu") {
            evidence.push(Evidence::config(
                "feed_forward_type",
                declared.unwrap_or_default().to_string(),
            ));
        }
        return Ok(Variant::Glu(act));
    }
    if has("intermediate.dense.weight") {
        evidence.push(Evidence::tensor(
            format!("{layer0}intermediate.dense.weight"),
            "the original BERT feed-forward",
        ));
        match declared {
            Some("original") | None => {}
            Some(other) => {
                findings.push(contradiction(other, "original").fix("set `feed_forward_type` to \"original\""))
            }
        }
        return Ok(Variant::Original);
    }
    Err(Box::new(
        Finding::error("feed-forward-unrecognized", "layer 0 has no recognized feed-forward tensors (mlp.gated_layers, mlp.up_gated_layer or intermediate.dense)")
            .in_file(file)
            .about(format!("{layer0}mlp.gated_layers.weight"))
            .fix("the weights do not hold a JinaBERT feed-forward; check that they are complete"),
    ))
}
