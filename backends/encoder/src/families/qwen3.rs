//! Qwen3 decoder embedders (Qwen3-Embedding 0.6B/4B/8B): the word vectors straight into pre-norm
//! layers with RMSNorm, separate Q/K/V projections with grouped key/value heads and an RMSNorm
//! per query and key head, rotary positions, causal attention, SwiGLU (`act(gate) * up`), a final
//! RMSNorm. Saved bare (`Qwen3Model`, as sentence-transformers ships it) or as
//! `Qwen3ForCausalLM` (`model.` prefix, `lm_head` unused).
//!
//! Decided from the tensors first: the decoder's `self_attn.q_proj` layers and the per-head
//! `q_norm` that Qwen2 and Llama lack; then `model_type`.
//!
//! Reference: transformers' `models/qwen3/modeling_qwen3.py` and `configuration_qwen3.py`.

use serde_json::Value;
use tessera_core::{Dim, EncoderLayout, Evidence, Finding, Mask};

use super::rope::{self, RopeKeys};
use super::{Family, Keys, Recognised};
use crate::spec::{
    AttentionBias, Biases, Dims, EncoderSpec, FeedForward, Half, LayerAttention, Norm, NormKind, Placement,
    PositionTable, Positions, QkNorms, QWEN3_NAMES,
};

/// Its word table: the anchor of the weight prefix (`model.` in causal-LM checkpoints).
pub(crate) const WORD_TABLE: &str = "embed_tokens.weight";

const KEYS: Keys = Keys {
    positions_default: Some(32768),
    token_types: None,
    act: "hidden_act",
    eps: Some("rms_norm_eps"),
    head_dim: Some("head_dim"),
    ..super::BERT_KEYS
};

const ROPE: RopeKeys = RopeKeys {
    section: None,
    legacy: "rope_theta",
    default: 10_000.0,
    fixed_ntk: false,
};

/// The per-head query norm, the tensor that tells Qwen3 from Qwen2 and Llama.
const Q_NORM: &str = match QWEN3_NAMES.qk_norms {
    QkNorms::PerHead(q, _) => q,
    _ => panic!("Qwen3's names have per-head norms"),
};

/// The Qwen3 family.
#[derive(Debug, Clone, Copy)]
pub struct Qwen3;

impl Family for Qwen3 {
    fn name(&self) -> &'static str {
        "qwen3"
    }

    fn word_table(&self) -> &'static str {
        WORD_TABLE
    }

    fn recognise(&self, layout: &EncoderLayout<'_>) -> Result<Recognised, Box<Finding>> {
        let config = layout.config;
        let file = layout.weights.display_file();
        let mut evidence = vec![super::own_layers(&QWEN3_NAMES, "a Qwen3 decoder", layout)?];
        let mut findings = Vec::new();
        let q_norm = format!("{}{}.0.{Q_NORM}.weight", layout.prefix, QWEN3_NAMES.layers);
        let Some(q_norm_info) = layout.weights.get(&q_norm) else {
            return Err(Box::new(
                Finding::error(
                    "decoder-unsupported",
                    format!("decoder layers without `{q_norm}`: a Qwen2- or Llama-style decoder, which tessera does not serve yet (Qwen3 has a norm per query head)"),
                )
                .in_file(&file)
                .about(q_norm)
                .fix("serve a Qwen3-based embedder; Qwen2/Llama-based ones are not supported yet"),
            ));
        };
        evidence.push(Evidence::tensor(
            &q_norm,
            format!("{:?}: an RMSNorm per query head, as Qwen3 has", q_norm_info.shape),
        ));
        super::model_type_evidence("qwen3", config, &mut evidence, &mut findings);
        super::name_evidence(config, &mut evidence);
        causal(config, &mut evidence)?;
        if let Some(finding) = layout.hidden_size_contradicted() {
            return Err(Box::new(finding));
        }
        let values = KEYS.read(config).map_err(|e| Box::new(e.to_finding()))?;
        let dims = self.dims(config, values.dims, q_norm_info.shape.first().copied(), &mut findings)?;
        let (rope, rope_evidence) = rope::rope(config, &ROPE, dims.head_dim.size(), dims.positions.size())?;
        evidence.extend(rope_evidence);
        let layer_attention = vec![
            LayerAttention {
                mask: Mask::Causal,
                rope: Some(rope),
            };
            dims.layers.size()
        ];
        let architecture = format!(
            "qwen3 ({} query heads on {} key/value heads of {})",
            dims.heads.size(),
            dims.kv_heads.size(),
            dims.head_dim.size()
        );
        Ok(Recognised {
            spec: EncoderSpec {
                architecture,
                names: QWEN3_NAMES,
                dims,
                positions: Positions::Absolute,
                position_table: PositionTable::Absent,
                attention_bias: AttentionBias::None,
                feed_forward: FeedForward::Gated { activated: Half::First },
                act: values.act,
                norm: Norm {
                    kind: NormKind::Rms,
                    placement: Placement::Pre {
                        first_attention_unnormed: false,
                    },
                    eps: config.f64("rms_norm_eps").unwrap_or(1e-6),
                },
                biases: Biases {
                    attention: config.get("attention_bias").and_then(Value::as_bool).unwrap_or(false),
                    up: false,
                    down: false,
                },
                adapters: None,
                layer_attention,
            },
            evidence,
            findings,
            pooling: Some(tessera_core::Pooling::LastToken),
        })
    }
}

impl Qwen3 {
    /// The head layout: `head_dim` and `num_key_value_heads` from config.json, each defaulting
    /// to what the tensors say (the per-head norm's width) rather than to a class default that
    /// may not match; `num_key_value_heads` must divide `num_attention_heads`.
    fn dims(
        &self,
        config: &tessera_core::inspection::ModelConfig,
        dims: Dims,
        q_norm_width: Option<usize>,
        findings: &mut Vec<Finding>,
    ) -> Result<Dims, Box<Finding>> {
        let head_dim = match (config.usize("head_dim"), q_norm_width) {
            (Some(_), _) => dims.head_dim.size(),
            (None, Some(width)) => {
                findings.push(
                    Finding::info(
                        "head-dim-from-weights",
                        format!("config.json has no `head_dim`; the per-head norms say {width}"),
                    )
                    .in_file(&config.path)
                    .about("head_dim")
                    .fix(format!("set `head_dim` to {width}")),
                );
                width
            }
            (None, None) => dims.hidden.size() / dims.heads.size(),
        };
        let heads = dims.heads.size();
        let kv_heads = config.usize("num_key_value_heads").unwrap_or(heads);
        if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(Box::new(
                Finding::error(
                    "kv-heads-not-dividing-heads",
                    format!("`num_key_value_heads: {kv_heads}` does not divide `num_attention_heads: {heads}`; each key/value head serves a whole group of query heads"),
                )
                .in_file(&config.path)
                .about("num_key_value_heads")
                .fix("set `num_key_value_heads` to the value the model was trained with"),
            ));
        }
        Ok(Dims {
            kv_heads: Dim::of("num_key_value_heads", kv_heads),
            head_dim: Dim::of("head_dim", head_dim),
            ..dims
        })
    }
}

/// A decoder embedder attends causally; a config that turns that off (`is_causal: false`, as
/// bidirectional conversions of decoders do) or asks for Qwen3's sliding window is refused
/// naming the key, since serving it causally and without a window would give other vectors.
fn causal(config: &tessera_core::inspection::ModelConfig, evidence: &mut Vec<Evidence>) -> Result<(), Box<Finding>> {
    let refuse = |key: &str, message: String, fix: &str| {
        Err(Box::new(
            Finding::error("decoder-attention-unsupported", message)
                .in_file(&config.path)
                .about(key.to_string())
                .fix(fix.to_string()),
        ))
    };
    if config.get("is_causal").and_then(Value::as_bool) == Some(false) {
        return refuse(
            "is_causal",
            "`is_causal: false`: a bidirectional conversion of a decoder, which tessera does not serve yet".into(),
            "serve the model as trained (causal), or remove the key if it was set by mistake",
        );
    }
    let sliding = config.get("use_sliding_window").and_then(Value::as_bool) == Some(true)
        || config
            .get("layer_types")
            .and_then(Value::as_array)
            .is_some_and(|types| types.iter().any(|t| t.as_str() != Some("full_attention")));
    if sliding {
        return refuse(
            "use_sliding_window",
            "the config asks for sliding-window layers (`use_sliding_window` or `layer_types`); tessera serves Qwen3 with full causal attention only".into(),
            "set `use_sliding_window` to false if the model was trained without it (Qwen3-Embedding was)",
        );
    }
    evidence.push(Evidence::config(
        "is_causal",
        "absent or true: causal attention, as a decoder",
    ));
    Ok(())
}
