//! Whether a model is JinaBERT v2, and which variant, decided from tensor names first.
//! `_name_or_path` and `auto_map` are supporting evidence only: a fine-tune rewrites them.

use tessera_core::inspection::{ModelConfig, WeightsIndex};
use tessera_core::{check_tensors, Assessment, EncoderLayout, Evidence, Finding, ModelInspection};

use crate::config::{FeedForward, GluAct, JinaConfig, FEED_FORWARD_TYPES};

/// What the tensors and config say the model is.
#[derive(Debug, Clone)]
pub struct Detected {
    /// Weight-name prefix (`""` or `"bert."`).
    pub prefix: String,
    /// `max_position_embeddings` (default 8192).
    pub max_position_embeddings: usize,
    /// The feed-forward variant.
    pub feed_forward: FeedForward,
    /// The facts that decided it.
    pub evidence: Vec<Evidence>,
    /// Warnings (e.g. a config key the tensors contradict).
    pub findings: Vec<Finding>,
}

impl Detected {
    /// Architecture in words.
    pub fn architecture(&self) -> String {
        format!("jina-bert (alibi, {})", self.feed_forward.describe())
    }
}

/// The jina-bert backend's verdict on a model.
pub fn assess(inspection: &ModelInspection) -> Assessment {
    match detect(inspection) {
        Ok(d) => Assessment::Serves {
            architecture: d.architecture(),
            evidence: d.evidence,
            findings: d.findings,
            // ALiBi has no table: the config's bound (default 8192) is what it was trained to.
            max_positions: Some(d.max_position_embeddings),
        },
        Err(finding) => Assessment::Declines {
            reasons: vec![*finding],
        },
    }
}

/// Decides the variant; both `assess` and `load` call this, so they cannot disagree.
pub fn detect(inspection: &ModelInspection) -> Result<Detected, Box<Finding>> {
    let EncoderLayout {
        config,
        weights,
        prefix,
    } = inspection.encoder_layout()?;
    let file = weights.display_file();
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
            .fix(
                "serve it with the bert backend; if it really is JinaBERT, remove the position table from the weights",
            ),
        ));
    }
    evidence.push(Evidence::tensor(
        positions,
        "absent: no absolute position table, so positions come from ALiBi",
    ));
    position_type(config, &mut evidence, &mut findings)?;

    let feed_forward = feed_forward(config, weights, &prefix, &file, &mut evidence, &mut findings)?;

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
    let layout = EncoderLayout {
        config,
        weights,
        prefix: prefix.clone(),
    };
    if let Some(finding) = layout.hidden_size_contradicted() {
        return Err(Box::new(finding));
    }
    let cfg = JinaConfig::from_config(config, feed_forward).map_err(|e| Box::new(e.to_finding()))?;
    // The architecture is decided; what follows are defects of this checkpoint.
    findings.extend(check_tensors(
        weights,
        &prefix,
        "encoder.layer",
        cfg.num_hidden_layers,
        |layers| cfg.expected_tensors(layers),
    ));
    Ok(Detected {
        prefix,
        max_position_embeddings: cfg.max_position_embeddings,
        feed_forward,
        evidence,
        findings,
    })
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
        Some(other) => {
            return Err(Box::new(
                Finding::error(
                    "position-type-unsupported",
                    format!("`position_embedding_type: {other}` is not supported (supported: absolute, alibi)"),
                )
                .in_file(&config.path)
                .about("position_embedding_type")
                    .fix("set `position_embedding_type` to \"absolute\" (BERT) or \"alibi\" (JinaBERT) as the model was trained"),
            ))
        }
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
) -> Result<FeedForward, Box<Finding>> {
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
        return Ok(FeedForward::Code(glu_act(findings, "gated (code variant)")?));
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
        return Ok(FeedForward::Glu(act));
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
        return Ok(FeedForward::Original);
    }
    Err(Box::new(
        Finding::error("feed-forward-unrecognized", "layer 0 has no recognized feed-forward tensors (mlp.gated_layers, mlp.up_gated_layer or intermediate.dense)")
            .in_file(file)
            .about(format!("{layer0}mlp.gated_layers.weight"))
            .fix("the weights do not hold a JinaBERT feed-forward; check that they are complete"),
    ))
}
