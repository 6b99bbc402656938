//! jina-embeddings-v3: an XLM-RoBERTa body with rotary positions (no position table), fused
//! `mixer.Wqkv`, post-norm blocks and LoRA task adapters on every linear and embedding weight
//! (`retrieval.query`, `retrieval.passage`, `separation`, `classification`, `text-matching`),
//! chosen per sequence ([`crate::lora`]).
//!
//! Two layouts: the remote code's (`model_type: xlm-roberta`, `position_embedding_type:
//! rotary`, `rotary_emb_base`, `lora_adaptations`..., the weights saved parametrized under
//! `roberta.` with their adapters beside them) and transformers' native `jina_embeddings_v3`
//! (`rope_parameters`, base 20000 when absent, no adapters). `model_type: xlm-roberta` with these
//! tensors is jina-embeddings-v3, not XLM-RoBERTa: the tensors decide.
//!
//! References: the remote code (`xlm-roberta-flash-implementation`: `modeling_lora.py`,
//! `modeling_xlm_roberta.py`, `mha.py`) and transformers' `models/jina_embeddings_v3`.

use serde_json::Value;
use tessera_core::inspection::ModelConfig;
use tessera_core::rotary::Rope;
use tessera_core::{Dim, EncoderLayout, Evidence, Finding, Mask};

use super::rope::{self, RopeKeys};
use super::{Family, Keys, Recognised};
use crate::spec::{
    Adapters, AttentionBias, Biases, EncoderSpec, FeedForward, LayerAttention, Norm, PositionTable, Positions,
    JINA_V3_NAMES,
};

/// The `model_type` the remote code's config keeps (XLM-RoBERTa's).
const REMOTE_MODEL_TYPE: &str = "xlm-roberta";

const KEYS: Keys = Keys {
    positions_default: Some(8194),
    token_types_default: 1,
    ..super::BERT_KEYS
};

/// The jina-embeddings-v3 family.
#[derive(Debug, Clone, Copy)]
pub struct JinaV3;

impl Family for JinaV3 {
    fn name(&self) -> &'static str {
        "jina-v3"
    }

    fn recognise(&self, layout: &EncoderLayout<'_>) -> Result<Recognised, Box<Finding>> {
        let config = layout.config;
        let mut evidence = vec![super::own_layers(&JINA_V3_NAMES, "jina-embeddings-v3", layout)?];
        let mut findings = Vec::new();
        let native = config.str("model_type") == Some("jina_embeddings_v3") || config.get("rope_parameters").is_some();
        match config.str("model_type") {
            Some(t @ "jina_embeddings_v3") => evidence.push(Evidence::config("model_type", t.to_string())),
            Some(t) if t == REMOTE_MODEL_TYPE => evidence.push(Evidence::config(
                "model_type",
                format!("{t}: the remote code keeps XLM-RoBERTa's name; the tensors say jina-embeddings-v3"),
            )),
            _ => super::model_type_evidence(REMOTE_MODEL_TYPE, config, &mut evidence, &mut findings),
        }
        super::name_evidence(config, &mut evidence);
        if let Some(finding) = layout.hidden_size_contradicted() {
            return Err(Box::new(finding));
        }
        let mut values = KEYS.read(config).map_err(|e| Box::new(e.to_finding()))?;
        values.eps = config.f64("layer_norm_eps").unwrap_or(1e-5);
        let head_dim = values.dims.head_dim.size();
        let rope = match native {
            true => {
                let keys = RopeKeys {
                    section: None,
                    legacy: "rope_theta",
                    default: 20_000.0,
                    fixed_ntk: false,
                };
                let (rope, rope_evidence) = rope::rope(config, &keys, head_dim, values.dims.positions.size())?;
                evidence.extend(rope_evidence);
                rope
            }
            false => original_rope(config, head_dim, &mut evidence)?,
        };
        let adapters = adapters(layout, &mut evidence)?;
        if let Some(sizes) = config.get("matryoshka_dimensions").filter(|v| v.is_array()) {
            evidence.push(Evidence::config(
                "matryoshka_dimensions",
                format!("{sizes}: the sizes it was trained to truncate to (`dimensions` on /embed, /v1/embeddings)"),
            ));
        }
        let layers = values.dims.layers.size();
        let architecture = format!(
            "jina-v3 ({} config, rotary base {}, {})",
            if native { "native" } else { "original" },
            rope.theta,
            match &adapters {
                Some(a) => format!("{} task adapters of rank {}", a.tasks.len(), a.rank.size()),
                None => "no task adapters".to_string(),
            }
        );
        Ok(Recognised {
            spec: EncoderSpec {
                architecture,
                names: JINA_V3_NAMES,
                dims: values.dims,
                positions: Positions::Absolute,
                position_table: PositionTable::Absent,
                attention_bias: AttentionBias::None,
                feed_forward: FeedForward::Plain,
                act: values.act,
                norm: Norm::post(values.eps),
                biases: Biases::ALL,
                layer_attention: vec![
                    LayerAttention {
                        mask: Mask::Bidirectional,
                        rope: Some(rope),
                    };
                    layers
                ],
                adapters,
                scales: crate::spec::Scales::NONE,
                extras: crate::spec::Extras::NONE,
            },
            evidence,
            findings,
            pooling: None,
        })
    }
}

const REFUSED: &str = "jina-v3-option-unsupported";

fn unsupported(config: &ModelConfig, key: &str, message: String, fix: &str) -> Box<Finding> {
    super::option_refused(REFUSED, config, key, message, fix)
}

/// The remote code's rotary keys: `position_embedding_type: rotary`, `rotary_emb_base`
/// (10000 when absent), `rotary_emb_dim` (the head when absent), halves not interleaved.
fn original_rope(config: &ModelConfig, head_dim: usize, evidence: &mut Vec<Evidence>) -> Result<Rope, Box<Finding>> {
    match config.str("position_embedding_type") {
        Some("rotary") => evidence.push(Evidence::config("position_embedding_type", "rotary")),
        other => {
            return Err(unsupported(
                config,
                "position_embedding_type",
                format!(
                "`position_embedding_type: {}` but the weights have no position table: jina-embeddings-v3 is rotary",
                other.unwrap_or("absent")
            ),
                "set `position_embedding_type` to \"rotary\"",
            ))
        }
    }
    rope::refuse_variants(config, REFUSED)?;
    let theta = config.f64("rotary_emb_base").unwrap_or(10_000.0);
    let rotated = config.usize("rotary_emb_dim").unwrap_or(head_dim);
    if rotated > head_dim || !rotated.is_multiple_of(2) {
        return Err(unsupported(
            config,
            "rotary_emb_dim",
            format!("`rotary_emb_dim: {rotated}` is not an even width within the {head_dim}-wide heads"),
            "set the width the model was trained with",
        ));
    }
    evidence.push(Evidence::config("rotary_emb_base", theta.to_string()));
    Ok(Rope::plain(theta, rotated))
}

/// The task adapters, from the word table's (`lora_A`: `[tasks, vocab, rank]`) and the config's
/// `lora_adaptations`, `lora_alpha`; `None` where the weights have none.
fn adapters(layout: &EncoderLayout<'_>, evidence: &mut Vec<Evidence>) -> Result<Option<Adapters>, Box<Finding>> {
    let config = layout.config;
    let word_table = format!("{}{}", layout.prefix, JINA_V3_NAMES.word_embeddings);
    let (lora_a, _) = Adapters::names(&word_table);
    let Some(info) = layout.weights.get(&lora_a) else {
        return Ok(None);
    };
    let invalid = |message: String| {
        Box::new(
            Finding::error("task-adapters-invalid", message)
                .in_file(&config.path)
                .about("lora_adaptations")
                .fix("set `lora_adaptations` to the task names the adapters were trained for, in their order"),
        )
    };
    let (tasks_in_weights, rank) = match info.shape.as_slice() {
        &[tasks, _, rank] => (tasks, rank),
        shape => return Err(invalid(format!("`{lora_a}` is {shape:?}, not [tasks, vocab, rank]"))),
    };
    let names: Vec<String> = match config.get("lora_adaptations").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid("`lora_adaptations` holds something other than task names".into()))?,
        None => {
            return Err(invalid(format!(
                "the weights carry {tasks_in_weights} task adapters (`{lora_a}`) but config.json has no `lora_adaptations` naming them"
            )))
        }
    };
    if names.len() != tasks_in_weights {
        return Err(invalid(format!(
            "`lora_adaptations` names {} tasks but the weights carry {tasks_in_weights} adapters (`{lora_a}`)",
            names.len()
        )));
    }
    let alpha = config.f64("lora_alpha").unwrap_or(1.0);
    evidence.push(Evidence::tensor(
        &lora_a,
        format!(
            "{info_shape:?}: {tasks_in_weights} LoRA task adapters of rank {rank}",
            info_shape = info.shape
        ),
    ));
    evidence.push(Evidence::config("lora_adaptations", names.join(", ")));
    Ok(Some(Adapters {
        tasks: names,
        rank: Dim::of("lora_rank", rank),
        alpha,
    }))
}
