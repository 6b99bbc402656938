//! NomicBERT (nomic-embed-text v1/v1.5, nomic-bert-2048, CodeRankEmbed): a post-norm BERT with
//! rotary positions over `rotary_emb_fraction` of each head (non-interleaved halves), optional
//! dynamic NTK scaling beyond the trained length, fused `attn.Wqkv`, a SwiGLU/GeGLU feed-forward
//! (`fc11` up, `fc12` the activated gate, `fc2` down) or a plain one (`fc1`, `fc2`), and the
//! embedding norm `emb_ln`. nomic-embed-text-v2-moe's layers 1, 3, ... hold a mixture of experts
//! instead of the plain feed-forward (`num_experts`, `moe_top_k`, `moe_every_n_layers`).
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
    AttentionBias, Biases, Dims, EncoderSpec, Experts, Extras, FeedForward, Half, LayerAttention, Norm, PositionTable,
    Positions, NOMIC_EXPERTS, NOMIC_NAMES, NOMIC_PLAIN_NAMES,
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

/// The refusal of weights that hold routers where the config describes no experts: served as
/// plain feed-forwards they would miss tensors, and a re-save would not help. The count and
/// spacing are read off the routers; the experts per token cannot be, so the fix names the
/// published model's.
fn experts_unstated(layout: &EncoderLayout<'_>, layers: usize) -> Option<Box<Finding>> {
    let router = |l: usize| {
        format!(
            "{}{}.{l}.{}.weight",
            layout.prefix, NOMIC_NAMES.layers, NOMIC_EXPERTS.router
        )
    };
    let mut routed = (0..layers).filter(|&l| layout.weights.get(&router(l)).is_some());
    let first = routed.next()?;
    let count = layout.weights.get(&router(first))?.shape.first().copied().unwrap_or(0);
    let every = match routed.next() {
        Some(next) => (next - first).to_string(),
        None => "N".to_string(),
    };
    let config = layout.config;
    let unstated: Vec<String> = ["num_experts", "moe_every_n_layers", "moe_top_k"]
        .into_iter()
        .filter(|key| config.usize(key).unwrap_or(0) == 0)
        .map(|key| format!("`{key}`"))
        .collect();
    Some(Box::new(
        Finding::error(
            "experts-unstated",
            format!(
                "the weights hold a mixture of experts (`{}`: a router over {count} experts) but config.json does not describe it: {} missing or 0",
                router(first),
                unstated.join(", ")
            ),
        )
        .in_file(&config.path)
        .about(unstated.first().map_or("num_experts", |k| k.trim_matches('`')))
        .fix(format!(
            "set `num_experts: {count}`, `moe_every_n_layers: {every}` and `moe_top_k` as the model was trained (nomic-embed-text-v2-moe: 8 experts, every 2 layers, top 2)"
        )),
    ))
}

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
        if shape.experts.is_none() {
            if let Some(finding) = experts_unstated(layout, shape.dims.layers.size()) {
                return Err(finding);
            }
        }
        evidence.extend(shape.rope_evidence);
        let mut rotation = match shape.rope {
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
        if let Some(e) = shape.experts {
            rotation += &format!(
                ", top {} of {} experts on layers {}, {}...",
                e.top_k,
                e.count.size(),
                1,
                1 + e.every
            );
            let router = format!("{}{}.1.{}.weight", layout.prefix, NOMIC_NAMES.layers, e.router);
            evidence.push(Evidence::config(
                "num_experts",
                format!(
                    "{} experts, each token through its top {} (`moe_top_k`), on layers l % {} == 1",
                    e.count.size(),
                    e.top_k,
                    e.every
                ),
            ));
            if layout.weights.get(&router).is_some() {
                evidence.push(Evidence::tensor(&router, "present: layer 1's router"));
            }
        }
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
                extras: Extras {
                    experts: shape.experts,
                    ..Extras::NONE
                },

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
    experts: Option<Experts>,
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
    let experts = experts(config, gated, dims.intermediate.size())?;
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
        experts,
    })
}

/// The original code's mixture of experts: `None` unless both `num_experts` and
/// `moe_every_n_layers` are above 0 (the remote code's reading of absent keys). Options only
/// the training code (megablocks) knows, whose reading by the hub's code is not established, are
/// refused rather than guessed.
fn experts(config: &ModelConfig, gated: bool, width: usize) -> Result<Option<Experts>, Box<Finding>> {
    let count = config.usize("num_experts").unwrap_or(0);
    let every = config.usize("moe_every_n_layers").unwrap_or(0);
    if count == 0 || every == 0 {
        return Ok(None);
    }
    const NO_SUCH_CHECKPOINT: &str = "no published checkpoint uses it: set it as nomic-embed-text-v2-moe does";
    let truthy = |key: &str| match config.get(key) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(_) => true,
    };
    if gated {
        return Err(refusal(
            config,
            "activation_function",
            format!(
                "experts with a gated feed-forward (`activation_function: {}` with `num_experts: {count}`) are not served",
                config.str("activation_function").unwrap_or_default()
            ),
            NO_SUCH_CHECKPOINT,
        ));
    }
    for (key, what) in [
        ("num_shared_experts", "shared experts"),
        ("expert_choice_router", "expert-choice routing"),
        (
            "moe_normalize_expert_weights",
            "renormalised expert weights (`false` in the published model)",
        ),
    ] {
        if truthy(key) {
            return Err(refusal(
                config,
                key,
                format!("`{key}` asks for {what}, which tessera does not serve"),
                NO_SUCH_CHECKPOINT,
            ));
        }
    }
    if let Some(div) = config.f64("ffn_div").filter(|&d| d != 1.0) {
        return Err(refusal(
            config,
            "ffn_div",
            format!("`ffn_div: {div}` narrows the experts, which tessera does not serve"),
            NO_SUCH_CHECKPOINT,
        ));
    }
    if let Some(other) = config.str("moe_impl").filter(|&i| i != "megablocks") {
        return Err(refusal(
            config,
            "moe_impl",
            format!("`moe_impl: {other}` stores its experts in a layout tessera does not read (megablocks')"),
            "serve a checkpoint saved with megablocks' expert layout",
        ));
    }
    let top_k = config.usize("moe_top_k").unwrap_or(0);
    if top_k == 0 || top_k > count {
        return Err(refusal(
            config,
            "moe_top_k",
            format!("`moe_top_k` must be between 1 and `num_experts` ({count})"),
            "set the number of experts each token goes through (2 in nomic-embed-text-v2-moe)",
        ));
    }
    Ok(Some(Experts {
        count: Dim::of("num_experts", count),
        top_k,
        width: Dim::of("n_inner", width),
        every,
        ..NOMIC_EXPERTS
    }))
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
        experts: None,
    })
}
