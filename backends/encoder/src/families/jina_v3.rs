//! Jina's XLM-RoBERTa remote code (`xlm-roberta-flash-implementation`): an XLM-RoBERTa body
//! with fused `mixer.Wqkv`, post-norm blocks, `emb_ln`, and optional LoRA task adapters on every
//! linear and embedding weight (`retrieval.query`, `retrieval.passage`, `separation`,
//! `classification`, `text-matching`), chosen per sequence ([`crate::lora`]). Two models run it:
//! jina-embeddings-v3 with rotary positions and no table, and jina-reranker-v2 with XLM-RoBERTa's
//! position table (rows counted after the padding row) and RoBERTa's classification head.
//!
//! Two config layouts: the remote code's (`model_type: xlm-roberta`, `position_embedding_type`,
//! `rotary_emb_base`, `lora_adaptations`..., the weights saved under `roberta.`, parametrized
//! with their adapters beside them where there are adapters) and transformers' native
//! `jina_embeddings_v3` (`rope_parameters`, base 20000 when absent, no adapters).
//! `model_type: xlm-roberta` with these tensors is not transformers' XLM-RoBERTa: the tensors
//! decide.
//!
//! References: the remote code (`modeling_lora.py`, `modeling_xlm_roberta.py`, `embedding.py`,
//! `mha.py`) and transformers' `models/jina_embeddings_v3`.

use serde_json::Value;
use tessera_core::inspection::ModelConfig;
use tessera_core::rotary::Rope;
use tessera_core::{Dim, EncoderLayout, Evidence, Finding, Mask};

use super::rope::{self, RopeKeys};
use super::{Family, Keys, Recognised};
use crate::spec::{
    Adapters, AttentionBias, Biases, EncoderSpec, FeedForward, LayerAttention, Norm, PositionTable, Positions,
    BERT_POSITION_TABLE, JINA_V3_NAMES,
};

/// What the layer tensors say a checkpoint is: Jina's XLM-RoBERTa remote code, which both
/// models run.
pub(super) const JINA_LAYOUT: &str = "jina's XLM-RoBERTa layout (jina-embeddings-v3, jina-reranker-v2)";

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
        let mut evidence = vec![super::own_layers(&JINA_V3_NAMES, JINA_LAYOUT, layout)?];
        let mut findings = Vec::new();
        let native = config.str("model_type") == Some("jina_embeddings_v3") || config.get("rope_parameters").is_some();
        match config.str("model_type") {
            Some(t @ "jina_embeddings_v3") => evidence.push(Evidence::config("model_type", t.to_string())),
            Some(t) if t == REMOTE_MODEL_TYPE => evidence.push(Evidence::config(
                "model_type",
                format!("{t}: the remote code keeps XLM-RoBERTa's name; the tensors say {JINA_LAYOUT}"),
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
        let scheme = match native {
            true => {
                let keys = RopeKeys {
                    section: None,
                    legacy: "rope_theta",
                    default: 20_000.0,
                    fixed_ntk: false,
                };
                let (rope, rope_evidence) = rope::rope(config, &keys, head_dim, values.dims.positions.size())?;
                evidence.extend(rope_evidence);
                Scheme::Rotary(rope)
            }
            false => original_positions(layout, head_dim, &mut evidence, &mut findings)?,
        };
        if let Scheme::Table { rows, .. } = scheme {
            // The remote code's default (8194) is its rotary models'; a table says its own length.
            let stated = config.usize("max_position_embeddings").unwrap_or(rows);
            values.dims.positions = Dim::of("max_position_embeddings", stated);
        }
        let adapters = adapters(layout, &mut evidence)?;
        if let Some(sizes) = config.get("matryoshka_dimensions").filter(|v| v.is_array()) {
            evidence.push(Evidence::config(
                "matryoshka_dimensions",
                format!("{sizes}: the sizes it was trained to truncate to (`dimensions` on /embed, /v1/embeddings)"),
            ));
        }
        let layers = values.dims.layers.size();
        let architecture = format!(
            "jina-v3 ({} config, {}, {})",
            if native { "native" } else { "original" },
            match &scheme {
                Scheme::Rotary(rope) => format!("rotary base {}", rope.theta),
                Scheme::Table { .. } => "absolute positions".to_string(),
            },
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
                positions: scheme.positions(),
                position_table: scheme.table(),
                attention_bias: AttentionBias::None,
                feed_forward: FeedForward::Plain,
                act: values.act,
                norm: Norm::post(values.eps),
                biases: Biases::ALL,
                layer_attention: vec![
                    LayerAttention {
                        mask: Mask::Bidirectional,
                        rope: scheme.rope(),
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

/// How the remote code places tokens.
#[derive(Debug, Clone, Copy)]
enum Scheme {
    /// jina-embeddings-v3: rotary positions, no table.
    Rotary(Rope),
    /// jina-reranker-v2 and XLM-RoBERTa weights converted to this layout: a position table of
    /// `rows` rows, counted after `padding_idx` as XLM-RoBERTa counts them (the remote code
    /// calls transformers' `create_position_ids_from_input_ids`).
    Table { padding_idx: u32, rows: usize },
}

impl Scheme {
    fn positions(self) -> Positions {
        match self {
            // Unused: no table to index.
            Scheme::Rotary(_) => Positions::Absolute,
            Scheme::Table { padding_idx, .. } => Positions::AfterPadding { padding_idx },
        }
    }

    fn table(self) -> PositionTable {
        match self {
            Scheme::Rotary(_) => PositionTable::Absent,
            Scheme::Table { .. } => PositionTable::Weights,
        }
    }

    fn rope(self) -> Option<Rope> {
        match self {
            Scheme::Rotary(rope) => Some(rope),
            Scheme::Table { .. } => None,
        }
    }
}

/// The remote code's positions: `position_embedding_type` decides (`absolute` builds the table,
/// `rotary` none). The two published versions of the code default the key differently
/// (`absolute` in jina-reranker-v2's, `rotary` in jina-embeddings-v3's), so without the key the
/// weights decide: a position table is absolute, none is refused (rotary is then a guess).
fn original_positions(
    layout: &EncoderLayout<'_>,
    head_dim: usize,
    evidence: &mut Vec<Evidence>,
    findings: &mut Vec<Finding>,
) -> Result<Scheme, Box<Finding>> {
    let config = layout.config;
    let table = format!("{}{BERT_POSITION_TABLE}.weight", layout.prefix);
    let rows = layout.weights.get(&table).and_then(|info| info.shape.first().copied());
    match (config.str("position_embedding_type"), rows) {
        (Some("rotary"), rows) => {
            evidence.push(Evidence::config("position_embedding_type", "rotary"));
            if rows.is_some() {
                findings.push(
                    Finding::info(
                        "position-table-unused",
                        format!("`{table}` is in the weights, but with `position_embedding_type: rotary` the remote code builds no position table: it is not used"),
                    )
                    .in_file(layout.weights.display_file())
                    .about(table.clone())
                    .fix("none needed; set `position_embedding_type: absolute` only if the model was trained with the table"),
                );
            }
            original_rope(config, head_dim, evidence).map(Scheme::Rotary)
        }
        (Some("absolute") | None, Some(rows)) => {
            match config.str("position_embedding_type") {
                Some(t) => evidence.push(Evidence::config("position_embedding_type", t)),
                None => evidence.push(Evidence::tensor(
                    &table,
                    format!("{rows} rows and no `position_embedding_type`: absolute positions"),
                )),
            }
            let padding_idx = super::roberta::padding_idx(layout, rows, evidence, findings)?;
            Ok(Scheme::Table { padding_idx, rows })
        }
        (other, _) => Err(unsupported(
            config,
            "position_embedding_type",
            match other {
                Some("absolute") => format!("`position_embedding_type: absolute` but the weights have no position table (`{table}`)"),
                other => format!(
                    "`position_embedding_type: {}` with no position table in the weights: tessera serves this layout with rotary positions (jina-embeddings-v3) or a position table (jina-reranker-v2)",
                    other.unwrap_or("absent")
                ),
            },
            "set `position_embedding_type` to \"rotary\" (jina-embeddings-v3) or restore the position table",
        )),
    }
}

/// The remote code's rotary keys: `rotary_emb_base` (10000 when absent), `rotary_emb_dim` (the
/// head when absent), halves not interleaved.
fn original_rope(config: &ModelConfig, head_dim: usize, evidence: &mut Vec<Evidence>) -> Result<Rope, Box<Finding>> {
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
