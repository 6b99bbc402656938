//! NomicBERT (nomic-embed-text v1/v1.5, nomic-bert-2048, CodeRankEmbed): a post-norm BERT with
//! rotary positions over `rotary_emb_fraction` of each head (non-interleaved halves), optional
//! dynamic NTK scaling beyond the trained length, fused `attn.Wqkv`, a SwiGLU/GeGLU feed-forward
//! (`fc11` up, `fc12` the activated gate, `fc2` down) or a plain one (`fc1`, `fc2`), and the
//! embedding norm `emb_ln`.
//!
//! Two config layouts exist: the original remote code's (GPT-2 keys `n_embd`, `n_head`,
//! `n_layer`, `n_inner`, `layer_norm_epsilon`, `rotary_emb_*`, `qkv_proj_bias`...) and
//! transformers' native `nomic_bert` (`hidden_size`... and `rope_parameters`, no biases, whole-head
//! rotation). transformers saves its native class under the original tensor names, so the
//! tensors are the same; the layout is read from the keys.
//!
//! References: `modeling_hf_nomic_bert.py` (github.com/nomic-ai/contrastors, the hub's remote
//! code) and transformers' `models/nomic_bert`; both agree on the same weights
//! (`reference/make_rotary_encoders.py`).

use serde_json::Value;
use tessera_core::inspection::ModelConfig;
use tessera_core::rotary::{Rope, Scaling};
use tessera_core::{Dim, EncoderLayout, Evidence, Finding, HiddenAct, Mask};

use super::rope::{self, RopeKeys};
use super::{Family, Keys, Recognised};
use crate::spec::{
    AttentionBias, Biases, Dims, EncoderSpec, FeedForward, Half, LayerAttention, Norm, PositionTable, Positions,
    NOMIC_NAMES, NOMIC_PLAIN_NAMES,
};

/// The original code's GPT-2 keys.
const ORIGINAL_KEYS: Keys = Keys {
    hidden: "n_embd",
    layers: "n_layer",
    heads: "n_head",
    intermediate: "n_inner",
    positions: "n_positions",
    positions_default: Some(1024),
    act: "activation_function",
    eps: Some("layer_norm_epsilon"),
    ..super::BERT_KEYS
};

/// transformers' native keys.
const NATIVE_KEYS: Keys = Keys {
    positions_default: Some(2048),
    ..super::BERT_KEYS
};

const NATIVE_ROPE: RopeKeys = RopeKeys {
    section: None,
    legacy: "rope_theta",
    default: 1000.0,
    fixed_ntk: false,
};

/// The gated feed-forward's width: the original rounds `n_inner` up to a multiple of this.
const GATED_MULTIPLE: usize = 256;

/// The NomicBERT family.
#[derive(Debug, Clone, Copy)]
pub struct NomicBert;

impl Family for NomicBert {
    fn name(&self) -> &'static str {
        "nomic-bert"
    }

    fn recognise(&self, layout: &EncoderLayout<'_>) -> Result<Recognised, Box<Finding>> {
        let config = layout.config;
        let mut evidence = vec![super::own_layers(&NOMIC_NAMES, "NomicBERT", layout)?];
        let mut findings = Vec::new();
        super::model_type_evidence("nomic_bert", config, &mut evidence, &mut findings);
        super::name_evidence(config, &mut evidence);
        let gated_tensor = format!(
            "{}{}.0.{}.weight",
            layout.prefix, NOMIC_NAMES.layers, NOMIC_NAMES.intermediate
        );
        let gated = layout.weights.get(&gated_tensor).is_some();
        evidence.push(Evidence::tensor(
            &gated_tensor,
            match gated {
                true => "present: a gated feed-forward (fc11 up, fc12 the activated gate)",
                false => "absent: the plain feed-forward (fc1, fc2)",
            },
        ));
        let shape = match config.get("n_embd") {
            Some(_) => {
                evidence.push(Evidence::config("n_embd", "the original (remote-code) config keys"));
                original(config, gated)?
            }
            None => {
                if let Some(finding) = layout.hidden_size_contradicted() {
                    return Err(Box::new(finding));
                }
                evidence.push(Evidence::config("hidden_size", "transformers' native config keys"));
                native(config, gated)?
            }
        };
        evidence.extend(shape.rope_evidence);
        let rotation = match shape.rope {
            Some(rope) => format!(
                "rotary on {} of {} dims, base {}{}",
                rope.rotated,
                shape.dims.head_dim.size(),
                rope.theta,
                match rope.scaling {
                    Scaling::DynamicNtk { factor, trained } =>
                        format!(", dynamic NTK x{factor} beyond {trained} tokens"),
                    _ => String::new(),
                }
            ),
            None => "absolute positions".to_string(),
        };
        let layers = shape.dims.layers.size();
        Ok(Recognised {
            spec: EncoderSpec {
                architecture: format!("nomic-bert ({} config, {rotation})", shape.layout),
                names: match gated {
                    true => NOMIC_NAMES,
                    false => NOMIC_PLAIN_NAMES,
                },
                dims: shape.dims,
                positions: Positions::Absolute,
                position_table: match shape.rope {
                    Some(_) => PositionTable::Absent,
                    None => PositionTable::Weights,
                },
                attention_bias: AttentionBias::None,
                feed_forward: match gated {
                    true => FeedForward::Gated { activated: Half::First },
                    false => FeedForward::Plain,
                },
                act: shape.act,
                norm: Norm::post(shape.eps),
                biases: shape.biases,
                scales: crate::spec::Scales::NONE,
                extras: crate::spec::Extras::NONE,

                adapters: None,
                layer_attention: vec![
                    LayerAttention {
                        mask: Mask::Bidirectional,
                        rope: shape.rope,
                    };
                    layers
                ],
            },
            evidence,
            findings,
            pooling: None,
        })
    }
}

/// What either config layout says.
struct Shape {
    layout: &'static str,
    dims: Dims,
    act: HiddenAct,
    eps: f64,
    biases: Biases,
    /// `None`: absolute positions (`rotary_emb_fraction: 0`).
    rope: Option<Rope>,
    rope_evidence: Vec<Evidence>,
}

const REFUSED: &str = "nomic-option-unsupported";

fn refusal(config: &ModelConfig, key: &str, message: String, fix: &str) -> Box<Finding> {
    super::option_refused(REFUSED, config, key, message, fix)
}

/// The original remote code's config.
fn original(config: &ModelConfig, gated_tensors: bool) -> Result<Shape, Box<Finding>> {
    let flag = |key: &str, default: bool| config.get(key).and_then(Value::as_bool).unwrap_or(default);
    for (key, what) in [
        ("prenorm", "pre-norm blocks"),
        ("parallel_block", "parallel attention and feed-forward"),
        ("causal", "causal attention"),
    ] {
        if flag(key, false) {
            return Err(refusal(
                config,
                key,
                format!("`{key}: true` ({what}) is a NomicBERT variant tessera does not serve"),
                "no embedding checkpoint published with this option is known; serve one without it",
            ));
        }
    }
    rope::refuse_variants(config, REFUSED)?;
    let function = config.str("activation_function").unwrap_or("gelu");
    // The original's block: SiLU for swiglu, the exact GELU for every other choice (the plain
    // feed-forward receives `F.gelu` whatever GELU variant is named).
    let (gated, act) = match function {
        "swiglu" => (true, HiddenAct::Silu),
        "geglu" => (true, HiddenAct::Gelu),
        "gelu" | "gelu_new" | "gelu_fast" | "gelu_pytorch_tanh" => (false, HiddenAct::Gelu),
        other => {
            return Err(refusal(
                config,
                "activation_function",
                format!(
                    "`activation_function: {other}` is not one tessera serves for NomicBERT (swiglu, geglu or gelu)"
                ),
                "set the activation the model was trained with",
            ))
        }
    };
    if gated != gated_tensors {
        return Err(Box::new(
            Finding::error(
                "feed-forward-contradicts-config",
                format!(
                    "`activation_function: {function}` means a {} feed-forward but the tensors are {}",
                    if gated { "gated (fc11, fc12)" } else { "plain (fc1)" },
                    if gated_tensors { "gated" } else { "plain" }
                ),
            )
            .in_file(&config.path)
            .about("activation_function")
            .fix("set `activation_function` to the one the checkpoint was trained with (swiglu for nomic-embed)"),
        ));
    }
    let mut dims = ORIGINAL_KEYS.dims(config).map_err(|e| Box::new(e.to_finding()))?;
    let multiple = config.usize("pad_vocab_size_multiple").unwrap_or(1).max(1);
    dims.vocab = Dim::of("vocab_size", dims.vocab.size().next_multiple_of(multiple));
    if gated {
        dims.intermediate = Dim::of("n_inner", dims.intermediate.size().next_multiple_of(GATED_MULTIPLE));
    }
    let fraction = config.f64("rotary_emb_fraction").unwrap_or(0.0);
    let (rope, rope_evidence) = match fraction > 0.0 {
        false => (
            None,
            vec![Evidence::config("rotary_emb_fraction", "0: absolute positions")],
        ),
        true => {
            let head_dim = dims.head_dim.size();
            let rotated = head_dim as f64 * fraction;
            if fraction > 1.0 || rotated.fract() != 0.0 || !(rotated as usize).is_multiple_of(2) {
                return Err(refusal(
                    config,
                    "rotary_emb_fraction",
                    format!("`rotary_emb_fraction: {fraction}` of {head_dim}-wide heads is not an even number of dimensions"),
                    "set the fraction the model was trained with",
                ));
            }
            let theta = config.f64("rotary_emb_base").unwrap_or(10_000.0);
            let scaling = match config.get("rotary_scaling_factor").and_then(Value::as_f64) {
                Some(factor) => Scaling::DynamicNtk {
                    factor,
                    trained: config.usize("max_trained_positions").unwrap_or(2048),
                },
                None => Scaling::None,
            };
            let mut evidence = vec![
                Evidence::config("rotary_emb_fraction", fraction.to_string()),
                Evidence::config("rotary_emb_base", theta.to_string()),
            ];
            if let Scaling::DynamicNtk { factor, trained } = scaling {
                evidence.push(Evidence::config(
                    "rotary_scaling_factor",
                    format!("{factor}: dynamic NTK beyond `max_trained_positions` {trained}"),
                ));
            }
            let rope = Rope {
                theta,
                rotated: rotated as usize,
                scaling,
            };
            tessera_core::rotary::Rotary::new(rope).map_err(|message| {
                refusal(
                    config,
                    "rotary_scaling_factor",
                    message,
                    "set the rotary values the model was trained with",
                )
            })?;
            (Some(rope), evidence)
        }
    };
    if rope.is_none() {
        dims.positions = Dim::of("n_positions", dims.positions.size());
    }
    Ok(Shape {
        layout: "original",
        dims,
        act,
        eps: config.f64("layer_norm_epsilon").unwrap_or(1e-5),
        biases: Biases {
            attention: flag("qkv_proj_bias", true),
            attention_output: flag("qkv_proj_bias", true),
            up: flag("mlp_fc1_bias", true),
            down: flag("mlp_fc2_bias", true),
        },
        rope,
        rope_evidence,
    })
}

/// transformers' native `nomic_bert` config: no biases, whole heads rotated, the gated
/// feed-forward.
fn native(config: &ModelConfig, gated_tensors: bool) -> Result<Shape, Box<Finding>> {
    let values = NATIVE_KEYS.read(config).map_err(|e| Box::new(e.to_finding()))?;
    let mut dims = values.dims;
    if !gated_tensors {
        return Err(Box::new(
            Finding::error(
                "feed-forward-contradicts-config",
                "transformers' native NomicBERT has a gated feed-forward (fc11, fc12) but the tensors are plain (fc1)",
            )
            .in_file(&config.path)
            .about("model_type")
            .fix("save the checkpoint with the original config keys (`n_embd`..., `activation_function`)"),
        ));
    }
    let trained = dims.positions.size();
    let (rope, rope_evidence) = rope::rope(config, &NATIVE_ROPE, dims.head_dim.size(), trained)?;
    if matches!(rope.scaling, Scaling::DynamicNtk { .. }) {
        // Dynamic scaling exists to go past `max_position_embeddings`: the model itself sets no
        // limit then (sentence-transformers' `max_seq_length` does).
        dims.positions = Dim::of("max_position_embeddings", usize::MAX);
    }
    Ok(Shape {
        layout: "native",
        dims,
        act: values.act,
        eps: values.eps,
        biases: Biases {
            attention: false,
            attention_output: false,
            up: false,
            down: false,
        },
        rope: Some(rope),
        rope_evidence,
    })
}
