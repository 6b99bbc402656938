//! The encoder families, each a [`Family`]: how it is recognised from evidence and which
//! [`EncoderSpec`] it builds. Everything else (tensor checks, loading, the runner) is shared.

mod bert;
mod deberta;
mod decoder;
mod distilbert;
mod gemma;
mod gte;
mod jina_bert;
mod jina_v3;
mod lineage;
mod modernbert;
mod mpnet;
mod nomic;
mod roberta;
mod rope;
mod t5;

use tessera_core::inspection::ModelConfig;
use tessera_core::{Dim, EncoderLayout, Evidence, Finding, HiddenAct, LoadError};

pub use bert::Bert;
pub use deberta::Deberta;
pub use decoder::Decoder;
pub use distilbert::DistilBert;
pub use gte::Gte;
pub use jina_bert::JinaBert;
pub use jina_v3::JinaV3;
pub use modernbert::ModernBert;
pub use mpnet::MpNet;
pub use nomic::NomicBert;
pub use roberta::Roberta;
pub use t5::T5;

use crate::spec::{
    EncoderSpec, Names, BERT_NAMES, DEBERTA_NAMES, DISTILBERT_NAMES, GTE_NAMES, GTE_SEPARATE_NAMES, JINA_V3_NAMES,
    MODERNBERT_NAMES, MPNET_NAMES, NOMIC_NAMES, QWEN3_NAMES, T5_NAMES,
};

/// What a family decided about a checkpoint it serves.
#[derive(Debug, Clone)]
pub struct Recognised {
    /// The encoder to build.
    pub spec: EncoderSpec,
    /// The facts that decided it.
    pub evidence: Vec<Evidence>,
    /// Things to check (served anyway).
    pub findings: Vec<Finding>,
    /// The pooling the architecture implies where the model configures none (decoders: the
    /// last token, the only one that has seen the whole input).
    pub pooling: Option<tessera_core::ImpliedPooling>,
}

/// One encoder family.
pub trait Family: std::fmt::Debug + Sync {
    /// The registered backend name (`bert`, `roberta`), used by `--backend`.
    fn name(&self) -> &'static str;

    /// Whether the checkpoint is this family, from its tensors first and config values second;
    /// the refusal names the key or tensor that decided it.
    fn recognise(&self, layout: &EncoderLayout<'_>) -> Result<Recognised, Box<Finding>>;

    /// The word table (with `.weight`, without prefix), whose name gives the weight prefix.
    fn word_table(&self) -> &'static str {
        tessera_core::WORD_EMBEDDINGS
    }
}

/// The config.json keys a family reads its sizes from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keys {
    pub vocab: &'static str,
    pub hidden: &'static str,
    pub layers: &'static str,
    pub heads: &'static str,
    pub intermediate: &'static str,
    pub positions: &'static str,
    /// The position count when config.json has none (`None`: the key is required).
    pub positions_default: Option<usize>,
    /// `None`: no token types.
    pub token_types: Option<&'static str>,
    /// The token-type count when config.json has none.
    pub token_types_default: usize,
    pub act: &'static str,
    pub eps: Option<&'static str>,
    /// A key giving the head width apart from `hidden / heads` (Qwen3's `head_dim`).
    pub head_dim: Option<&'static str>,
}

/// BERT's keys, which RoBERTa shares.
pub(crate) const BERT_KEYS: Keys = Keys {
    vocab: "vocab_size",
    hidden: "hidden_size",
    layers: "num_hidden_layers",
    heads: "num_attention_heads",
    intermediate: "intermediate_size",
    positions: "max_position_embeddings",
    positions_default: None,
    token_types: Some("type_vocab_size"),
    token_types_default: 2,
    act: "hidden_act",
    eps: Some("layer_norm_eps"),
    head_dim: None,
};

/// The sizes, activation and norm epsilon config.json gives under `keys`.
pub(crate) struct ConfigValues {
    pub dims: crate::spec::Dims,
    pub act: HiddenAct,
    pub eps: f64,
}

impl Keys {
    /// Reads and checks the values; the error names the key and how to fix it.
    pub(crate) fn read(&self, config: &ModelConfig) -> Result<ConfigValues, LoadError> {
        Ok(ConfigValues {
            dims: self.dims(config)?,
            act: config.activation(self.act)?,
            eps: self.eps.and_then(|key| config.f64(key)).unwrap_or(1e-12),
        })
    }

    /// The sizes alone. A missing token-type count means the family's default; 0 means no table.
    pub(crate) fn dims(&self, config: &ModelConfig) -> Result<crate::spec::Dims, LoadError> {
        let required = |key: &'static str| config.required_usize(key).map(|v| Dim::of(key, v));
        let dims = crate::spec::Dims {
            vocab: required(self.vocab)?,
            hidden: required(self.hidden)?,
            layers: required(self.layers)?,
            heads: required(self.heads)?,
            kv_heads: required(self.heads)?,
            head_dim: Dim::of(self.heads, 1),
            intermediate: required(self.intermediate)?,
            positions: match self.positions_default {
                Some(default) => Dim::of(self.positions, config.usize(self.positions).unwrap_or(default)),
                None => required(self.positions)?,
            },
            token_types: self
                .token_types
                .and_then(|key| match config.usize(key).unwrap_or(self.token_types_default) {
                    0 => None,
                    n => Some(Dim::of(key, n)),
                }),
        };
        if let Some(d) = self.head_dim.and_then(|key| config.usize(key).map(|d| Dim::of(key, d))) {
            return Ok(crate::spec::Dims { head_dim: d, ..dims });
        }
        if !dims.hidden.size().is_multiple_of(dims.heads.size()) {
            return Err(LoadError::HeadsNotDividingHidden {
                file: config.path.clone(),
                hidden: dims.hidden.size(),
                heads: dims.heads.size(),
            });
        }
        Ok(crate::spec::Dims {
            head_dim: Dim::of(self.heads, dims.hidden.size() / dims.heads.size()),
            ..dims
        })
    }
}

/// Every layer naming a family uses, with the families that use it.
const LAYER_NAMES: &[(&Names, &str)] = &[
    (&BERT_NAMES, "BERT, RoBERTa or JinaBERT"),
    (&DISTILBERT_NAMES, "DistilBERT"),
    (&MPNET_NAMES, "MPNet"),
    (&DEBERTA_NAMES, "DeBERTa"),
    (&MODERNBERT_NAMES, "ModernBERT"),
    (&QWEN3_NAMES, "a decoder (Qwen3, Qwen2, Llama or Mistral)"),
    (&NOMIC_NAMES, "NomicBERT"),
    (&GTE_NAMES, "GTE"),
    (&GTE_SEPARATE_NAMES, "GTE"),
    (&JINA_V3_NAMES, jina_v3::JINA_LAYOUT),
    (&T5_NAMES, "T5"),
];

/// The first evidence a family looks for: its own layer tensors. `Err` when another family's
/// are there instead; `Ok(None)` when no family's are (a damaged checkpoint: the tensor check
/// then names what is missing).
pub(crate) fn layers_are(
    names: &Names,
    me: &str,
    layout: &EncoderLayout<'_>,
) -> Result<Option<Evidence>, Box<Finding>> {
    let present = |n: &Names| {
        let name = format!("{}{}", layout.prefix, n.signature());
        layout.weights.resolve(&name).map(|(stored, _)| stored)
    };
    if let Some(name) = present(names) {
        return Ok(Some(Evidence::tensor(name, format!("{me}'s layer tensors"))));
    }
    match LAYER_NAMES
        .iter()
        .find_map(|(n, who)| present(n).map(|name| (name, who)))
    {
        Some((name, who)) => Err(Box::new(
            Finding::error(
                "family-is-another",
                format!("not {me}: the layers are {who}'s (`{name}`)"),
            )
            .in_file(layout.weights.display_file())
            .about(name)
            .fix(format!("it is served by the backend for {who}")),
        )),
        None => Ok(None),
    }
}

/// [`layers_are`] for a family whose layer names are its own (DistilBERT, MPNet): no such layer
/// at all is a refusal too.
pub(crate) fn own_layers(names: &Names, me: &str, layout: &EncoderLayout<'_>) -> Result<Evidence, Box<Finding>> {
    layers_are(names, me, layout)?.ok_or_else(|| {
        let signature = format!("{}{}", layout.prefix, names.signature());
        Box::new(
            Finding::error("family-is-another", format!("not {me}: no `{signature}`"))
                .in_file(layout.weights.display_file())
                .about(signature)
                .fix("serve it with the backend for its family"),
        )
    })
}

/// The relative position bias table `[buckets, heads]` every layer of `who`'s adds (`tensor`,
/// relative to the weight prefix), as evidence; without it no output would be `who`'s, so it
/// is refused naming the tensor, and how `who`'s model class keeps it (`kept`).
pub(crate) fn relative_bias_table(
    layout: &EncoderLayout<'_>,
    tensor: &str,
    who: &str,
    kept: &str,
) -> Result<Evidence, Box<Finding>> {
    let table = format!("{}{tensor}.weight", layout.prefix);
    match layout.weights.get(&table) {
        Some(info) => Ok(Evidence::tensor(
            &table,
            format!("{:?}: the relative position bias (buckets x heads) every layer adds", info.shape),
        )),
        None => Err(Box::new(
            Finding::error(
                "relative-bias-missing",
                format!("{who} layers but no `{table}`: the relative position bias every layer adds is missing, so no output would be {who}'s"),
            )
            .in_file(layout.weights.display_file())
            .about(table)
            .fix(format!("re-save the complete checkpoint ({kept})")),
        )),
    }
}

/// `model_type` as evidence for a family its tensors already decided (`expected`): agreeing, it
/// supports; missing or naming another family, it is a warning naming the key (the tensors win).
pub(crate) fn model_type_evidence(
    expected: &str,
    config: &ModelConfig,
    evidence: &mut Vec<Evidence>,
    findings: &mut Vec<Finding>,
) {
    match config.str("model_type") {
        Some(t) if t == expected => evidence.push(Evidence::config("model_type", t.to_string())),
        Some(other) => findings.push(
            Finding::warning(
                "model-type-contradicts-weights",
                format!(
                    "`model_type: {other}` but the tensors say {expected}; serving as {expected} (the tensors win)"
                ),
            )
            .in_file(&config.path)
            .about("model_type")
            .fix(format!("set `model_type` to \"{expected}\"")),
        ),
        None => findings.push(
            Finding::warning(
                "model-type-missing",
                format!("config.json has no `model_type`; the tensors say {expected}"),
            )
            .in_file(&config.path)
            .about("model_type")
            .fix(format!("set `model_type` to \"{expected}\"")),
        ),
    }
}

/// The refusal of a config option a family does not serve: `code` (the family's
/// `...-option-unsupported`), the key, why, and how to fix it.
pub(crate) fn option_refused(
    code: &'static str,
    config: &ModelConfig,
    key: &str,
    message: String,
    fix: &str,
) -> Box<Finding> {
    Box::new(
        Finding::error(code, message)
            .in_file(&config.path)
            .about(key.to_string())
            .fix(fix.to_string()),
    )
}

/// The supporting evidence every family records: the name the checkpoint was saved under.
pub(crate) fn name_evidence(config: &ModelConfig, evidence: &mut Vec<Evidence>) {
    if let Some(name) = config.get("_name_or_path").and_then(|v| v.as_str()) {
        evidence.push(Evidence::name("_name_or_path", name.to_string()));
    }
}

/// Which layers are global: `layer_types` where the config has it (transformers 5), else
/// `global(layer)` (what the family's config derives it from, which `otherwise` names).
pub(crate) fn layer_kinds(
    config: &ModelConfig,
    layers: usize,
    global: impl Fn(usize) -> bool,
    otherwise: &str,
) -> Result<Vec<bool>, Box<Finding>> {
    let invalid = |message: String| {
        Box::new(
            Finding::error("layer-types-invalid", message)
                .in_file(&config.path)
                .about("layer_types")
                .fix(format!("give one of \"full_attention\" or \"sliding_attention\" per layer, or remove `layer_types` to use {otherwise}")),
        )
    };
    if let Some(types) = config.get("layer_types") {
        let types = types
            .as_array()
            .ok_or_else(|| invalid(format!("`layer_types` is {types}, not a list")))?;
        if types.len() != layers {
            return Err(invalid(format!(
                "`layer_types` lists {} layers but `num_hidden_layers` is {layers}",
                types.len()
            )));
        }
        return types
            .iter()
            .map(|t| match t.as_str() {
                Some("full_attention") => Ok(true),
                Some("sliding_attention") => Ok(false),
                _ => Err(invalid(format!("`layer_types` holds {t}"))),
            })
            .collect();
    }
    Ok((0..layers).map(global).collect())
}

/// A config.json of `keys` (an object), for the families' unit tests.
#[cfg(test)]
pub(crate) fn config_of(keys: serde_json::Value) -> ModelConfig {
    ModelConfig {
        path: "config.json".into(),
        values: keys.as_object().cloned().unwrap_or_default(),
    }
}
