//! Evidence shared by the families with BERT's tensor names: which of them a checkpoint is
//! (BERT or RoBERTa; they differ in how positions are counted, not in names), and whether it has
//! the absolute position table they both need.

use tessera_core::{EncoderLayout, Evidence, Finding};

use crate::spec::EmbeddingProjection;

/// The families that share BERT's tensor names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lineage {
    Bert,
    Roberta,
}

impl Lineage {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Lineage::Bert => "BERT",
            Lineage::Roberta => "RoBERTa (XLM-RoBERTa, CamemBERT)",
        }
    }

    /// The `model_type` values of this lineage.
    fn model_types(self) -> &'static [&'static str] {
        match self {
            // ELECTRA's discriminator is BERT's encoder (positions from 0, token types), its
            // tables optionally narrower and projected ([`embedding_projection`]).
            Lineage::Bert => &["bert", "electra"],
            Lineage::Roberta => &["roberta", "xlm-roberta", "camembert"],
        }
    }

    fn of_model_type(model_type: &str) -> Option<Self> {
        [Lineage::Bert, Lineage::Roberta]
            .into_iter()
            .find(|l| l.model_types().contains(&model_type))
    }
}

/// Tensor names that only one lineage's checkpoints carry: the weight prefix its model class
/// saves under, and its task heads. Checked in order; the first present decides.
fn tensor_evidence(layout: &EncoderLayout<'_>) -> Option<(Lineage, Evidence)> {
    let prefix = layout.prefix.trim_end_matches('.');
    let by_prefix = match prefix {
        "bert" | "electra" => Some(Lineage::Bert),
        "roberta" | "xlm-roberta" | "camembert" => Some(Lineage::Roberta),
        _ => None,
    };
    if let Some(lineage) = by_prefix {
        let whose = match prefix {
            "electra" => "ELECTRA's (BERT's encoder)".to_string(),
            _ => format!("{}'s", lineage.describe()),
        };
        return Some((
            lineage,
            Evidence::tensor(
                format!("{}{}", layout.prefix, tessera_core::WORD_EMBEDDINGS),
                format!("saved under `{prefix}.`, as {whose} model classes save"),
            ),
        ));
    }
    const HEADS: &[(&str, Lineage, &str)] = &[
        ("lm_head.dense.weight", Lineage::Roberta, "RoBERTa's masked-LM head"),
        (
            "classifier.out_proj.weight",
            Lineage::Roberta,
            "RoBERTa's classification head",
        ),
        (
            "cls.predictions.transform.dense.weight",
            Lineage::Bert,
            "BERT's masked-LM head",
        ),
        (
            "cls.seq_relationship.weight",
            Lineage::Bert,
            "BERT's pre-training heads",
        ),
    ];
    HEADS.iter().find_map(|(name, lineage, what)| {
        layout
            .weights
            .get(name)
            .map(|_| (*lineage, Evidence::tensor(*name, format!("present: {what}"))))
    })
}

/// Decides whether the checkpoint is `me`: the tensors first, then `model_type`. A `model_type`
/// the tensors contradict is a warning (served as the tensors say); a checkpoint with neither is
/// BERT, the lineage whose names these are. `Err` says what it is instead.
pub(crate) fn decide(
    me: Lineage,
    layout: &EncoderLayout<'_>,
    evidence: &mut Vec<Evidence>,
    findings: &mut Vec<Finding>,
) -> Result<(), Box<Finding>> {
    let config = layout.config;
    let model_type = config.str("model_type");
    let configured = model_type.map(|t| (t, Lineage::of_model_type(t)));
    let by_tensors = tensor_evidence(layout);
    let is = match (&by_tensors, configured) {
        (Some((lineage, _)), _) => *lineage,
        (None, Some((_, Some(lineage)))) => lineage,
        (None, Some((other, None))) => {
            return Err(Box::new(
                Finding::error(
                    "model-type-unsupported",
                    format!(
                        "`model_type: {other}` is not {} (its positions or layers differ)",
                        me.describe()
                    ),
                )
                .in_file(&config.path)
                .about("model_type")
                .fix(format!(
                    "serve it with a backend for its model_type; if it really is {}, set `model_type` to \"{}\"",
                    me.describe(),
                    me.model_types()[0]
                )),
            ))
        }
        (None, None) => Lineage::Bert,
    };
    if is != me {
        let why = match &by_tensors {
            Some((_, e)) => format!("the tensors say {}: {} {}", is.describe(), e.subject, e.statement),
            None => format!(
                "`model_type: {}` says {}",
                model_type.unwrap_or_default(),
                is.describe()
            ),
        };
        return Err(Box::new(
            Finding::error("family-is-another", format!("not {}: {why}", me.describe()))
                .in_file(&config.path)
                .about("model_type")
                .fix(format!("it is served by the backend for {}", is.describe())),
        ));
    }
    if let Some((_, e)) = by_tensors {
        evidence.push(e);
    }
    match configured {
        // Any of the lineage's types (`xlm-roberta` for RoBERTa) agrees.
        Some((t, Some(lineage))) if lineage == me => {
            evidence.push(Evidence::config("model_type", t.to_string()));
        }
        _ => super::model_type_evidence(me.model_types()[0], config, evidence, findings),
    }
    Ok(())
}

/// Tensor names that mean a gated (GLU) feed-forward, i.e. JinaBERT.
const GATED_MLP: &[&str] = &["mlp.gated_layers.weight", "mlp.up_gated_layer.weight"];

/// Checks that the layers are BERT's (not JinaBERT's gated ones) and that the absolute position
/// table both lineages need is there, with a `position_embedding_type` that agrees.
pub(crate) fn absolute_positions(
    me: Lineage,
    layout: &EncoderLayout<'_>,
    evidence: &mut Vec<Evidence>,
    findings: &mut Vec<Finding>,
) -> Result<(), Box<Finding>> {
    let EncoderLayout {
        config,
        weights,
        prefix,
        ..
    } = layout;
    let weights_file = weights.display_file();
    if let Some(gated) = GATED_MLP.iter().find(|suffix| weights.any_ends_with(suffix)) {
        return Err(Box::new(
            Finding::error(
                "gated-mlp-without-jina-backend",
                format!(
                    "the weights have `{gated}`: a gated (GLU) feed-forward, as in JinaBERT; plain {} has none",
                    me.describe()
                ),
            )
            .in_file(&weights_file)
            .about(*gated)
            .fix("serve it with the jina-bert backend"),
        ));
    }
    let position_tensor = format!("{prefix}embeddings.position_embeddings.weight");
    let position_type = config.str("position_embedding_type");
    if weights.get(&position_tensor).is_none() {
        return Err(Box::new(missing_position_table(me, layout, &position_tensor)));
    }
    evidence.push(Evidence::tensor(position_tensor, "absolute position embeddings"));
    match position_type {
        None => evidence.push(Evidence::config(
            "position_embedding_type",
            "absent, which means absolute",
        )),
        Some("absolute") => evidence.push(Evidence::config("position_embedding_type", "absolute")),
        Some("alibi") => findings.push(
            Finding::warning(
                "position-type-contradicts-weights",
                "config.json says `position_embedding_type: alibi` but the weights have absolute position embeddings; serving as absolute (the tensors win)",
            )
            .in_file(&config.path)
            .about("position_embedding_type")
            .fix("set `position_embedding_type` to \"absolute\" in config.json"),
        ),
        Some(other) => return Err(Box::new(unsupported_position_type(config, other))),
    }
    Ok(())
}

/// `position_embedding_type` with a value no family here has.
pub(crate) fn unsupported_position_type(config: &tessera_core::inspection::ModelConfig, value: &str) -> Finding {
    Finding::error(
        "position-type-unsupported",
        format!("`position_embedding_type: {value}` is not supported (supported: absolute, alibi)"),
    )
    .in_file(&config.path)
    .about("position_embedding_type")
    .fix("set `position_embedding_type` to \"absolute\" (BERT) or \"alibi\" (JinaBERT) as the model was trained")
}

/// ELECTRA's projection from its embedding tables to the layers (`embeddings_project`).
const ELECTRA_PROJECTION: &str = "embeddings_project";

/// What [`recognise`] found: the config values, ELECTRA's projection where its tables are
/// narrower than the layers, and the evidence and findings so far.
pub(crate) struct Recognition {
    pub values: super::ConfigValues,
    pub projection: Option<EmbeddingProjection>,
    pub evidence: Vec<Evidence>,
    pub findings: Vec<Finding>,
}

/// What BERT and RoBERTa decide alike: their own layer tensors, an absolute position table,
/// which of the two the tensors (or `model_type`) say, a `hidden_size` the weights agree with
/// (or, ELECTRA's, tables projected to it), and the config values.
pub(crate) fn recognise(me: Lineage, layout: &EncoderLayout<'_>) -> Result<Recognition, Box<Finding>> {
    let mut evidence = vec![Evidence::tensor(
        format!("{}{}", layout.prefix, tessera_core::WORD_EMBEDDINGS),
        "BERT-family embeddings",
    )];
    let mut findings = Vec::new();
    let who = match me {
        Lineage::Bert => "BERT",
        Lineage::Roberta => "RoBERTa",
    };
    evidence.extend(super::layers_are(&crate::spec::BERT_NAMES, who, layout)?);
    absolute_positions(me, layout, &mut evidence, &mut findings)?;
    decide(me, layout, &mut evidence, &mut findings)?;
    let projection = match me {
        Lineage::Bert => embedding_projection(layout, &mut evidence)?,
        Lineage::Roberta => None,
    };
    // Projected tables are narrower than `hidden_size`: the expected shapes check them.
    if let (None, Some(finding)) = (projection, layout.hidden_size_contradicted()) {
        return Err(Box::new(finding));
    }
    let values = super::BERT_KEYS
        .read(layout.config)
        .map_err(|e| Box::new(e.to_finding()))?;
    Ok(Recognition {
        values,
        projection,
        evidence,
        findings,
    })
}

/// ELECTRA's tables narrower than its layers (ELECTRA-small: 128 under 256): normed at their
/// width, then projected with a bias, as `ElectraModel` runs them; `None` without the tensor.
fn embedding_projection(
    layout: &EncoderLayout<'_>,
    evidence: &mut Vec<Evidence>,
) -> Result<Option<EmbeddingProjection>, Box<Finding>> {
    let name = format!("{}{ELECTRA_PROJECTION}.weight", layout.prefix);
    let Some(info) = layout.weights.get(&name) else {
        return Ok(None);
    };
    let [out, width] = info.shape[..] else {
        return Err(Box::new(
            Finding::error(
                "tensor-shape-mismatch",
                format!(
                    "`{name}` has shape {:?}: a projection is `[hidden_size, embedding_size]`",
                    info.shape
                ),
            )
            .in_file(layout.weights.display_file())
            .about(name)
            .fix("re-save the model's weights"),
        ));
    };
    evidence.push(Evidence::tensor(
        name,
        format!("[{out}, {width}]: embedding tables {width} wide, normed, then projected to the layers (ELECTRA)"),
    ));
    Ok(Some(EmbeddingProjection {
        name: ELECTRA_PROJECTION,
        width: tessera_core::Dim::of("embedding_size", width),
        bias: true,
        norm_first: true,
    }))
}

/// Why a checkpoint without a position table is not this lineage, naming what it is instead
/// where the evidence says.
fn missing_position_table(me: Lineage, layout: &EncoderLayout<'_>, position_tensor: &str) -> Finding {
    let file = layout.weights.display_file();
    let adapters = layout
        .weights
        .tensors
        .keys()
        .find(|k| k.contains("parametrizations") || k.contains("lora_"));
    let rotary = layout.config.str("position_embedding_type") == Some("rotary")
        || layout.config.get("rotary_emb_base").is_some();
    if adapters.is_some() || rotary {
        let mut why = vec![format!("no `{position_tensor}`")];
        if rotary {
            why.push("config.json sets rotary positions".into());
        }
        if let Some(name) = adapters {
            why.push(format!("LoRA adapter tensors such as `{name}`"));
        }
        return Finding::error(
            "family-is-another",
            format!(
                "this is an XLM-RoBERTa body with rotary positions and task adapters (jina-embeddings-v3), not {}: {}",
                me.describe(),
                why.join(", ")
            ),
        )
        .in_file(file)
        .about(position_tensor)
        .fix("it is served by the jina-v3 backend");
    }
    let (code, why) = if layout.config.str("position_embedding_type") == Some("alibi") {
        (
            "alibi-config-without-alibi-backend",
            format!("config.json says `position_embedding_type: alibi` and the weights have no position embeddings: this is JinaBERT (ALiBi), which plain {} cannot run", me.describe()),
        )
    } else {
        (
            "position-embeddings-missing",
            format!(
                "the weights have no absolute position embeddings, which {} needs",
                me.describe()
            ),
        )
    };
    Finding::error(code, why)
        .in_file(file)
        .about(position_tensor)
        .fix("serve ALiBi models with the jina-bert backend")
}
