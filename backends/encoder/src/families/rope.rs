//! Rotary settings from config.json, in both the layout transformers 5 saves (`rope_parameters`,
//! per layer type for ModernBERT) and the older one hub checkpoints carry (`rope_theta`,
//! `global_rope_theta`/`local_rope_theta`, `rope_scaling`). Only plain RoPE is served: any
//! scaling is refused naming the key, since serving it unscaled would silently give other vectors.

use serde_json::Value;
use tessera_core::inspection::ModelConfig;
use tessera_core::{Evidence, Finding};

/// Where a rotary base is looked up.
pub(crate) struct RopeKeys {
    /// `rope_parameters` section for this layer type (`full_attention`), or `None` where
    /// `rope_parameters` is flat (Qwen3).
    pub section: Option<&'static str>,
    /// The older top-level key (`rope_theta`, `global_rope_theta`).
    pub legacy: &'static str,
    /// The base when neither says (the model class's default).
    pub default: f64,
}

/// The rotary base `keys` select, with the evidence for it, or the refusal of a scaled RoPE.
pub(crate) fn theta(config: &ModelConfig, keys: &RopeKeys) -> Result<(f64, Evidence), Box<Finding>> {
    if let Some(scaling) = config.get("rope_scaling") {
        refuse_scaling(config, "rope_scaling", scaling)?;
    }
    let parameters = config.get("rope_parameters").and_then(|p| match keys.section {
        Some(section) => p.get(section),
        None => Some(p),
    });
    if let Some(params) = parameters {
        let key = match keys.section {
            Some(section) => format!("rope_parameters.{section}"),
            None => "rope_parameters".to_string(),
        };
        refuse_scaling(config, &key, params)?;
        if let Some(theta) = params.get("rope_theta").and_then(Value::as_f64) {
            return Ok((theta, Evidence::config(format!("{key}.rope_theta"), theta.to_string())));
        }
    }
    match config.f64(keys.legacy) {
        Some(theta) => Ok((theta, Evidence::config(keys.legacy, theta.to_string()))),
        None => Ok((
            keys.default,
            Evidence::config(keys.legacy, format!("absent: {} (the model's default)", keys.default)),
        )),
    }
}

/// Refuses a RoPE that is not plain (`rope_type` other than `default`, or a scaling factor).
fn refuse_scaling(config: &ModelConfig, key: &str, params: &Value) -> Result<(), Box<Finding>> {
    let kind = params
        .get("rope_type")
        .or_else(|| params.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let factor = params.get("factor").and_then(Value::as_f64);
    if kind == "default" && factor.is_none_or(|f| f == 1.0) {
        return Ok(());
    }
    Err(Box::new(
        Finding::error(
            "rope-scaling-unsupported",
            format!("`{key}` asks for {kind} RoPE scaling ({params}); tessera serves plain rotary positions only"),
        )
        .in_file(&config.path)
        .about(key.to_string())
        .fix(format!(
            "remove `{key}`'s scaling if the model was trained without it; otherwise this model cannot be served yet"
        )),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: Value) -> ModelConfig {
        ModelConfig {
            path: "config.json".into(),
            values: json.as_object().unwrap().clone(),
        }
    }

    const QWEN: RopeKeys = RopeKeys {
        section: None,
        legacy: "rope_theta",
        default: 10000.0,
    };

    #[test]
    fn reads_both_layouts_and_the_default() {
        let new = config(serde_json::json!({"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}));
        assert_eq!(theta(&new, &QWEN).unwrap().0, 1e6);
        let old = config(serde_json::json!({"rope_theta": 5e5, "rope_scaling": null}));
        assert_eq!(theta(&old, &QWEN).unwrap().0, 5e5);
        assert_eq!(theta(&config(serde_json::json!({})), &QWEN).unwrap().0, 10000.0);
        let modern = config(serde_json::json!({"rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": 160000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}}));
        let local = RopeKeys {
            section: Some("sliding_attention"),
            legacy: "local_rope_theta",
            default: 1.0,
        };
        assert_eq!(theta(&modern, &local).unwrap().0, 10000.0);
    }

    #[test]
    fn refuses_scaling_naming_the_key() {
        for (json, key) in [
            (
                serde_json::json!({"rope_scaling": {"type": "yarn", "factor": 4.0}}),
                "rope_scaling",
            ),
            (
                serde_json::json!({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}}),
                "rope_parameters",
            ),
        ] {
            let finding = theta(&config(json), &QWEN).unwrap_err();
            assert_eq!(finding.code, "rope-scaling-unsupported");
            assert_eq!(finding.subject.as_deref(), Some(key));
        }
    }
}
