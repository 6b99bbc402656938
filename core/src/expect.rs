//! Checking the weights against the tensors an architecture expects, naming every difference.

use std::collections::BTreeSet;

use crate::inspection::{Finding, WeightsIndex};

/// A tensor an architecture loads, with the shape config.json implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedTensor {
    /// Name without the weight prefix.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
}

impl ExpectedTensor {
    /// `name` with `shape`.
    pub fn new(name: impl Into<String>, shape: &[usize]) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }
}

/// Tensors that checkpoints carry but embeddings never use.
const IGNORED: &[&str] = &["cls.", "pooler.", "embeddings.position_ids", "lm_head.", "classifier."];

/// Older checkpoints name LayerNorm parameters gamma and beta.
fn legacy_name(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if !(lower.contains("layernorm") || lower.contains("layer_norm")) {
        return None;
    }
    name.strip_suffix(".weight")
        .map(|base| format!("{base}.gamma"))
        .or_else(|| name.strip_suffix(".bias").map(|base| format!("{base}.beta")))
}

/// Compares the weights with `expected`: missing and mis-shaped tensors are errors, tensors
/// nobody loads are one warning, layers in config.json but not in the weights are an error.
pub fn check_tensors(
    weights: &WeightsIndex,
    prefix: &str,
    expected: &[ExpectedTensor],
    config_layers: usize,
) -> Vec<Finding> {
    let file = weights.display_file();
    let mut findings = Vec::new();
    let mut used = BTreeSet::new();

    let weight_layers = weights
        .tensors
        .keys()
        .filter_map(|k| {
            k.strip_prefix(prefix)?
                .strip_prefix("encoder.layer.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map(|max| max + 1)
        .unwrap_or(0);
    if config_layers > weight_layers {
        findings.push(
            Finding::error(
                "layers-missing-in-weights",
                format!("config.json says {config_layers} layers but the weights hold {weight_layers}"),
            )
            .in_file("config.json")
            .about("num_hidden_layers")
            .fix(format!(
                "set `num_hidden_layers` to {weight_layers}, or supply the complete weights"
            )),
        );
    }

    let mut missing = Vec::new();
    for t in expected {
        let full = format!("{prefix}{}", t.name);
        let found = weights
            .get(&full)
            .map(|info| (full.clone(), info))
            .or_else(|| legacy_name(&full).and_then(|alt| weights.get(&alt).map(|info| (alt, info))));
        match found {
            None => {
                let layer = t
                    .name
                    .strip_prefix("encoder.layer.")
                    .and_then(|r| r.split('.').next()?.parse::<usize>().ok());
                // One finding for all of a layer config.json invents covers it.
                if layer.is_none_or(|l| l < weight_layers) {
                    missing.push(full);
                }
            }
            Some((name, info)) => {
                used.insert(name.clone());
                if info.shape != t.shape {
                    findings.push(
                        Finding::error(
                            "tensor-shape-mismatch",
                            format!("tensor `{name}` has shape {:?}, but config.json implies {:?}", info.shape, t.shape),
                        )
                        .in_file(&info.file)
                        .about(name)
                        .fix("make config.json's sizes (hidden_size, intermediate_size, vocab_size, ...) match the weights"),
                    );
                }
            }
        }
    }
    for name in &missing {
        findings.push(
            Finding::error("tensor-missing", format!("tensor `{name}` is missing from the weights"))
                .in_file(&file)
                .about(name.clone())
                .fix("re-save the model; the weights are incomplete or from another architecture"),
        );
    }

    let unexpected: Vec<&String> = weights
        .tensors
        .keys()
        .filter(|k| !used.contains(*k))
        .filter(|k| {
            let rest = k.strip_prefix(prefix).unwrap_or(k);
            !IGNORED
                .iter()
                .any(|ignored| rest.starts_with(ignored) || k.starts_with(ignored))
        })
        .filter(|k| {
            // Layers beyond num_hidden_layers are reported by their own finding's fix.
            k.strip_prefix(prefix)
                .and_then(|r| r.strip_prefix("encoder.layer."))
                .and_then(|r| r.split('.').next()?.parse::<usize>().ok())
                .is_none_or(|l| l < config_layers)
        })
        .collect();
    if let Some(first) = unexpected.first() {
        let listed = unexpected
            .iter()
            .take(5)
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ");
        findings.push(
            Finding::warning(
                "tensor-unexpected",
                format!(
                    "{} tensor(s) are not used by the detected architecture: {listed}",
                    unexpected.len()
                ),
            )
            .in_file(&file)
            .about(first.to_string())
            .fix("check that the architecture detected is the one trained; a misspelled tensor name is also missing"),
        );
    }
    if weight_layers > config_layers && config_layers > 0 {
        findings.push(
            Finding::warning(
                "layers-unused",
                format!("the weights hold {weight_layers} layers but config.json says {config_layers}; the rest are ignored"),
            )
            .in_file("config.json")
            .about("num_hidden_layers")
            .fix(format!("set `num_hidden_layers` to {weight_layers} if all layers were trained")),
        );
    }
    findings
}
