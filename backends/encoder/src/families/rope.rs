//! Rotary settings from config.json, in both the layout transformers 5 saves (`rope_parameters`,
//! per layer type for ModernBERT) and the older one hub checkpoints carry (`rope_theta`,
//! `global_rope_theta`/`local_rope_theta`, `rope_scaling`). Served: plain RoPE, dynamic NTK
//! (`rope_type: dynamic`, from `max_position_embeddings` on, as transformers computes it) and,
//! where the family's code has it, GTE's fixed NTK (`type: ntk`). Anything else is refused
//! naming the key, since serving it unscaled would silently give other vectors.

use serde_json::Value;
use tessera_core::inspection::ModelConfig;
use tessera_core::rotary::{Rope, Scaling};
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
    /// Whether the family's code implements GTE's fixed NTK scaling (`type: ntk`).
    pub fixed_ntk: bool,
}

/// The rotary scheme `keys` select for heads rotating `rotated` dimensions, with the evidence
/// for it, or the refusal of a scaling the family does not serve. `trained` is the length
/// dynamic scaling starts from (`max_position_embeddings`, as transformers reads it).
pub(crate) fn rope(
    config: &ModelConfig,
    keys: &RopeKeys,
    rotated: usize,
    trained: usize,
) -> Result<(Rope, Vec<Evidence>), Box<Finding>> {
    let parameters = config.get("rope_parameters").and_then(|p| match keys.section {
        Some(section) => p.get(section),
        None => Some(p),
    });
    let section_key = match keys.section {
        Some(section) => format!("rope_parameters.{section}"),
        None => "rope_parameters".to_string(),
    };
    // Both keys are read, so neither can carry an unserved scaling the other hides.
    let mut evidence = Vec::new();
    let mut scaling = Scaling::None;
    for (key, params) in [
        (section_key.clone(), parameters),
        (
            "rope_scaling".to_string(),
            config.get("rope_scaling").filter(|v| !v.is_null()),
        ),
    ] {
        let Some(params) = params else { continue };
        let found = self::scaling(config, &key, params, keys.fixed_ntk, trained)?;
        if found != Scaling::None && scaling == Scaling::None {
            evidence.push(Evidence::config(key, params.to_string()));
            scaling = found;
        }
    }
    let theta = parameters.and_then(|p| p.get("rope_theta")).and_then(Value::as_f64);
    let (theta, source) = match (theta, config.f64(keys.legacy)) {
        (Some(theta), _) => (
            theta,
            Evidence::config(format!("{section_key}.rope_theta"), theta.to_string()),
        ),
        (None, Some(theta)) => (theta, Evidence::config(keys.legacy, theta.to_string())),
        (None, None) => (
            keys.default,
            Evidence::config(keys.legacy, format!("absent: {} (the model's default)", keys.default)),
        ),
    };
    evidence.insert(0, source);
    Ok((
        Rope {
            theta,
            rotated,
            scaling,
        },
        evidence,
    ))
}

/// Refuses the remote codes' rotary variants tessera does not serve (NomicBERT's and
/// jina-embeddings-v3's flash-attention rotary): interleaved (GPT-J) pairs and xPos scaling,
/// reported under the family's `code`.
pub(crate) fn refuse_variants(config: &ModelConfig, code: &'static str) -> Result<(), Box<Finding>> {
    if config.get("rotary_emb_interleaved").and_then(Value::as_bool) == Some(true) {
        return Err(super::option_refused(
            code,
            config,
            "rotary_emb_interleaved",
            "`rotary_emb_interleaved: true` (GPT-J pairs) is not served".into(),
            "set it to false if the model was trained with halves",
        ));
    }
    if config.get("rotary_emb_scale_base").is_some_and(|v| !v.is_null()) {
        return Err(super::option_refused(
            code,
            config,
            "rotary_emb_scale_base",
            "`rotary_emb_scale_base` asks for xPos-scaled rotary embeddings, which tessera does not serve".into(),
            "set it to null if the model was trained without xPos",
        ));
    }
    Ok(())
}

/// The scaling `params` (found under `key`) ask for, or its refusal.
fn scaling(
    config: &ModelConfig,
    key: &str,
    params: &Value,
    fixed_ntk: bool,
    trained: usize,
) -> Result<Scaling, Box<Finding>> {
    let kind = params
        .get("rope_type")
        .or_else(|| params.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let factor = params.get("factor").and_then(Value::as_f64);
    let refuse = |why: String| {
        Box::new(
            Finding::error(
                "rope-scaling-unsupported",
                format!("`{key}` asks for {kind} RoPE scaling ({params}): {why}"),
            )
            .in_file(&config.path)
            .about(key.to_string())
            .fix(format!(
                "remove `{key}`'s scaling if the model was trained without it; otherwise this model cannot be served yet"
            )),
        )
    };
    if let Some(partial) = params.get("partial_rotary_factor").and_then(Value::as_f64) {
        if partial != 1.0 {
            return Err(refuse(format!(
                "this family's reference rotates whole heads, not a `partial_rotary_factor` of {partial}"
            )));
        }
    }
    match (kind, factor) {
        ("default", None) | ("default", Some(1.0)) => Ok(Scaling::None),
        // A factor of 1 still stretches the base beyond the trained length.
        ("dynamic", Some(factor)) if factor >= 1.0 => Ok(Scaling::DynamicNtk { factor, trained }),
        ("ntk", Some(factor)) if fixed_ntk && factor > 0.0 => Ok(Scaling::FixedNtk {
            factor,
            mixed_b: params.get("mixed_b").and_then(Value::as_f64),
        }),
        ("ntk", _) if !fixed_ntk => Err(refuse("fixed NTK scaling is GTE's and this is not a GTE model".into())),
        ("linear", Some(factor)) if factor > 0.0 => Ok(Scaling::Linear { factor }),
        ("llama3", Some(factor)) if factor > 0.0 => {
            let number = |k: &str| params.get(k).and_then(Value::as_f64);
            let original = params
                .get("original_max_position_embeddings")
                .and_then(Value::as_u64)
                .map(|v| v as usize);
            match (number("low_freq_factor"), number("high_freq_factor"), original) {
                (Some(low), Some(high), Some(original)) if low > 0.0 && high > low && original > 0 => {
                    Ok(Scaling::Llama3 {
                        factor,
                        low_freq_factor: low,
                        high_freq_factor: high,
                        original,
                    })
                }
                _ => Err(refuse(
                    "llama3 scaling needs `low_freq_factor` < `high_freq_factor` (both positive) and `original_max_position_embeddings`".into(),
                )),
            }
        }
        _ => Err(refuse(
            "tessera serves plain rotary positions, linear interpolation, Llama 3's (`llama3`), dynamic NTK (`rope_type: dynamic` with a `factor` of at least 1) and GTE's fixed NTK".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::config_of as config;

    const QWEN: RopeKeys = RopeKeys {
        section: None,
        legacy: "rope_theta",
        default: 10000.0,
        fixed_ntk: false,
    };

    fn theta(config: &ModelConfig, keys: &RopeKeys) -> Result<(f64, Vec<Evidence>), Box<Finding>> {
        rope(config, keys, 8, 512).map(|(rope, evidence)| (rope.theta, evidence))
    }

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
            fixed_ntk: false,
        };
        assert_eq!(theta(&modern, &local).unwrap().0, 10000.0);
    }

    #[test]
    fn reads_dynamic_and_fixed_ntk_where_served() {
        let dynamic = config(
            serde_json::json!({"rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1000.0}}),
        );
        let (got, evidence) = rope(&dynamic, &QWEN, 8, 2048).unwrap();
        assert_eq!(
            got.scaling,
            Scaling::DynamicNtk {
                factor: 2.0,
                trained: 2048
            }
        );
        assert_eq!(evidence.len(), 2);
        let gte = RopeKeys {
            fixed_ntk: true,
            ..QWEN
        };
        let ntk = config(serde_json::json!({"rope_theta": 5e5, "rope_scaling": {"type": "ntk", "factor": 2.0}}));
        let (got, _) = rope(&ntk, &gte, 8, 8192).unwrap();
        assert_eq!(
            got,
            Rope {
                theta: 5e5,
                rotated: 8,
                scaling: Scaling::FixedNtk {
                    factor: 2.0,
                    mixed_b: None
                }
            }
        );
        // GTE's scaling is not another family's.
        assert_eq!(rope(&ntk, &QWEN, 8, 8192).unwrap_err().code, "rope-scaling-unsupported");
        let partial =
            config(serde_json::json!({"rope_parameters": {"rope_type": "default", "partial_rotary_factor": 0.5}}));
        assert_eq!(
            rope(&partial, &QWEN, 8, 8192).unwrap_err().code,
            "rope-scaling-unsupported"
        );
    }

    #[test]
    fn refuses_scaling_naming_the_key() {
        for (json, key) in [
            (
                serde_json::json!({"rope_scaling": {"type": "yarn", "factor": 4.0}}),
                "rope_scaling",
            ),
            (
                serde_json::json!({"rope_parameters": {"rope_type": "longrope", "factor": 2.0, "rope_theta": 1e4}}),
                "rope_parameters",
            ),
            (
                serde_json::json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0, "original_max_position_embeddings": 8192}}),
                "rope_scaling",
            ),
        ] {
            let finding = theta(&config(json), &QWEN).unwrap_err();
            assert_eq!(finding.code, "rope-scaling-unsupported");
            assert_eq!(finding.subject.as_deref(), Some(key));
        }
    }
}
