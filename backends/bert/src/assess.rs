//! Whether a model is plain BERT, decided from tensor names first and config values second.

use tessera_core::inspection::WeightsIndex;
use tessera_core::{check_tensors, Assessment, EncoderLayout, Evidence, Finding, ModelInspection, WORD_EMBEDDINGS};

use crate::config::BertConfig;

/// Tensor names that mean a gated (GLU) feed-forward, i.e. JinaBERT, not BERT.
const GATED_MLP: &[&str] = &["mlp.gated_layers.weight", "mlp.up_gated_layer.weight"];

/// Finds the weight-name prefix (`""`, `"bert."`...) from where the word embeddings are.
pub fn weight_prefix(weights: &WeightsIndex) -> Option<String> {
    weights.prefix_before(WORD_EMBEDDINGS)
}

/// The bert backend's verdict on a model.
pub fn assess(inspection: &ModelInspection) -> Assessment {
    let decline = |finding: Finding| Assessment::Declines { reasons: vec![finding] };
    let layout = match inspection.encoder_layout() {
        Ok(layout) => layout,
        Err(finding) => return decline(*finding),
    };
    let contradicted = layout.hidden_size_contradicted();
    let EncoderLayout {
        config,
        weights,
        prefix,
    } = layout;
    let weights_file = weights.display_file();
    let mut evidence = vec![Evidence::tensor(
        format!("{prefix}{WORD_EMBEDDINGS}"),
        "BERT-family embeddings",
    )];
    let mut findings = Vec::new();

    if let Some(gated) = GATED_MLP.iter().find(|suffix| weights.any_ends_with(suffix)) {
        return decline(
            Finding::error(
                "gated-mlp-without-jina-backend",
                format!("the weights have `{gated}`: a gated (GLU) feed-forward, as in JinaBERT; plain BERT has none"),
            )
            .in_file(&weights_file)
            .about(*gated)
            .fix("serve it with the jina-bert backend (cargo feature `jina-bert`)"),
        );
    }

    let position_tensor = format!("{prefix}embeddings.position_embeddings.weight");
    let position_type = config.str("position_embedding_type");
    if weights.get(&position_tensor).is_none() {
        let (code, why) = if position_type == Some("alibi") {
            (
                "alibi-config-without-alibi-backend",
                "config.json says `position_embedding_type: alibi` and the weights have no position embeddings: this is JinaBERT (ALiBi), which plain BERT cannot run",
            )
        } else {
            (
                "position-embeddings-missing",
                "the weights have no absolute position embeddings, which BERT needs",
            )
        };
        return decline(
            Finding::error(code, why)
                .in_file(&weights_file)
                .about(position_tensor)
                .fix("serve ALiBi models with the jina-bert backend (cargo feature `jina-bert`)"),
        );
    }
    evidence.push(Evidence::tensor(position_tensor, "absolute position embeddings"));
    match position_type {
        None => evidence.push(Evidence::config(
            "position_embedding_type",
            "absent, which means absolute",
        )),
        Some("absolute") => evidence.push(Evidence::config("position_embedding_type", "absolute")),
        Some(other) => {
            let finding = Finding::warning(
                "position-type-contradicts-weights",
                format!("config.json says `position_embedding_type: {other}` but the weights have absolute position embeddings; serving as absolute (the tensors win)"),
            )
            .in_file(&config.path)
            .about("position_embedding_type")
            .fix("set `position_embedding_type` to \"absolute\" in config.json");
            if other == "alibi" {
                findings.push(finding);
            } else {
                return decline(
                    Finding::error(
                        "position-type-unsupported",
                        format!("`position_embedding_type: {other}` is not supported (supported: absolute, alibi)"),
                    )
                    .in_file(&config.path)
                    .about("position_embedding_type")
                    .fix("set `position_embedding_type` to \"absolute\" (BERT) or \"alibi\" (JinaBERT) as the model was trained"),
                );
            }
        }
    }

    match config.str("model_type") {
        Some("bert") => evidence.push(Evidence::config("model_type", "bert")),
        None => findings.push(
            Finding::warning(
                "model-type-missing",
                "config.json has no `model_type`; the tensors say BERT",
            )
            .in_file(&config.path)
            .about("model_type")
            .fix("set `model_type` to \"bert\""),
        ),
        Some(other) => {
            return decline(
                Finding::error(
                    "model-type-unsupported",
                    format!("`model_type: {other}` is not BERT (its positions or layers differ)"),
                )
                .in_file(&config.path)
                .about("model_type")
                .fix("serve it with a backend for its model_type; if it really is BERT, set `model_type` to \"bert\""),
            )
        }
    }

    if let Some(finding) = contradicted {
        return decline(finding);
    }
    let cfg = match BertConfig::from_config(config) {
        Ok(cfg) => cfg,
        Err(e) => return decline(e.to_finding()),
    };
    // The architecture is decided; what follows are defects of this checkpoint, reported
    // against BERT so the user learns what to fix rather than that nothing fits.
    findings.extend(check_tensors(weights, &prefix, cfg.num_hidden_layers, |layers| {
        cfg.expected_tensors(layers)
    }));
    if let Some(name) = config.get("_name_or_path").and_then(|v| v.as_str()) {
        evidence.push(Evidence::name("_name_or_path", name.to_string()));
    }
    Assessment::Serves {
        architecture: "bert".into(),
        evidence,
        findings,
        max_positions: Some(cfg.max_position_embeddings),
    }
}
