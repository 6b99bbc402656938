//! Decoder embedders: Qwen3 (Qwen3-Embedding), Qwen2 (gte-Qwen2, jina-code-embeddings) and
//! Llama/Mistral (e5-mistral, SFR-Embedding-Mistral, Linq-Embed-Mistral). All are the word
//! vectors straight into pre-norm layers with RMSNorm, separate Q/K/V projections with grouped
//! key/value heads, rotary positions, SwiGLU (`act(gate) * up`) and a final RMSNorm; saved bare
//! (`*Model`, as sentence-transformers ships them) or as `*ForCausalLM` (`model.` prefix,
//! `lm_head` unused). They differ in what the tensors show:
//!
//! - Qwen3: an RMSNorm per query and key head (`self_attn.q_norm`, `k_norm`);
//! - Qwen2: biases on Q, K and V but none on the output projection;
//! - Llama/Mistral: neither (or, with `attention_bias`, biases on all four); Mistral adds a
//!   causal sliding window (`sliding_window`); EuroBERT (`model_type: eurobert`) and NVIDIA's
//!   Llama-Nemotron embedders and rerankers (`model_type: llama_bidirec`) are Llama's layers
//!   attending both ways;
//! - Gemma 2 (bge-multilingual-gemma2): a norm after each block too (`pre_feedforward_layernorm`
//!   beside `post_attention_layernorm`), no per-head norms;
//! - Gemma 3 (EmbeddingGemma): Gemma 2's norms and per-head norms; what else the two Gemmas
//!   differ in is in [`super::gemma`].
//!
//! Attention is causal unless config.json says `is_causal: false` (bidirectional conversions
//! such as gte-Qwen2's); a checkpoint that ships its own modeling code and does not say is
//! refused naming the key, since that code may attend either way.
//!
//! Reference: transformers' `models/{qwen3,qwen2,llama,mistral,eurobert,gemma2,gemma3}/modeling_*.py` and
//! `configuration_*.py`.

use serde_json::Value;
use tessera_core::inspection::ModelConfig;
use tessera_core::{Dim, EncoderLayout, Evidence, Finding, Mask};

use super::gemma::Generation;
use super::rope::{self, RopeKeys};
use super::{Family, Keys, Recognised};
use crate::spec::{
    AttentionBias, Biases, Dims, EncoderSpec, FeedForward, Half, LayerAttention, Names, Norm, NormKind, Placement,
    PositionTable, Positions, QkNorms, Qkv, Scales, DECODER_NAMES, GEMMA2_NAMES, GEMMA3_NAMES, GEMMA_PLACEMENT,
    QWEN3_NAMES,
};

/// A causal decoder's pooling where the model configures none.
const LAST_TOKEN: tessera_core::ImpliedPooling = tessera_core::ImpliedPooling {
    pooling: tessera_core::Pooling::LastToken,
    why: "a decoder: its last token is the only one that has seen the whole input",
};

/// EuroBERT's `model_type`: Llama's layers as an encoder, bidirectional on every layer.
const EUROBERT: &str = "eurobert";

/// NVIDIA's bidirectional Llama (llama-embed-nemotron-8b, llama-nemotron-embed-1b-v2 and the
/// rerankers): Llama's layers, each set to attend both ways by the model's own code.
const LLAMA_BIDIREC: &str = tessera_core::LLAMA_BIDIREC_MODEL_TYPE;

/// The word table: the anchor of the weight prefix (`model.` in causal-LM checkpoints).
pub(crate) const WORD_TABLE: &str = "embed_tokens.weight";

const KEYS: Keys = Keys {
    positions_default: Some(32768),
    token_types: None,
    act: "hidden_act",
    eps: Some("rms_norm_eps"),
    head_dim: Some("head_dim"),
    ..super::BERT_KEYS
};

const ROPE: RopeKeys = RopeKeys {
    section: None,
    legacy: "rope_theta",
    default: 10_000.0,
    fixed_ntk: false,
};

/// Which decoder a checkpoint is; decided from its tensors (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Qwen3,
    Qwen2,
    Llama,
    Gemma2,
    Gemma3,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Qwen3 => "qwen3",
            Kind::Qwen2 => "qwen2",
            Kind::Llama => "llama",
            Kind::Gemma2 => "gemma2",
            Kind::Gemma3 => "gemma3",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Qwen3 => "a Qwen3 decoder",
            Kind::Qwen2 => "a Qwen2 decoder",
            Kind::Llama => "a Llama or Mistral decoder",
            Kind::Gemma2 => "a Gemma 2 decoder",
            Kind::Gemma3 => "a Gemma 3 decoder",
        }
    }

    fn names(self) -> Names {
        match self {
            Kind::Qwen3 => QWEN3_NAMES,
            Kind::Qwen2 | Kind::Llama => DECODER_NAMES,
            Kind::Gemma2 => GEMMA2_NAMES,
            Kind::Gemma3 => GEMMA3_NAMES,
        }
    }

    /// The `model_type` values whose transformers classes this kind is.
    fn model_types(self) -> &'static [&'static str] {
        match self {
            // pplx-embed: Qwen3 with its own (bidirectional) modeling code.
            Kind::Qwen3 => &["qwen3", tessera_core::PPLX_MODEL_TYPE],
            Kind::Qwen2 => &["qwen2"],
            Kind::Llama => &["llama", "mistral", EUROBERT, LLAMA_BIDIREC],
            Kind::Gemma2 => &["gemma2"],
            Kind::Gemma3 => &["gemma3_text", "gemma3"],
        }
    }

    /// Whether `model_type` is one of the decoders served here (of any kind: one the tensors
    /// contradict is a warning, the tensors deciding).
    fn served(model_type: &str) -> bool {
        [Kind::Qwen3, Kind::Qwen2, Kind::Llama, Kind::Gemma2, Kind::Gemma3]
            .iter()
            .any(|k| k.model_types().contains(&model_type))
    }

    /// The position count of the config class when config.json gives none.
    fn positions_default(self, model_type: Option<&str>) -> usize {
        match (self, model_type) {
            (Kind::Llama, Some("mistral")) => 4096 * 32,
            (Kind::Llama, Some(EUROBERT)) => 8192,
            (Kind::Llama, _) => 2048,
            (Kind::Qwen3 | Kind::Qwen2, _) => 32768,
            (Kind::Gemma2, _) => 8192,
            (Kind::Gemma3, _) => 131_072,
        }
    }

    /// The config key of the feed-forward activation.
    fn act_key(self) -> &'static str {
        match self {
            Kind::Gemma2 | Kind::Gemma3 => "hidden_activation",
            _ => "hidden_act",
        }
    }

    /// Which decoder the layer-0 tensors are, with the tensor that says so.
    fn of(layout: &EncoderLayout<'_>) -> (Kind, Evidence) {
        let tensor = |name: &str| format!("{}{}.0.{name}", layout.prefix, DECODER_NAMES.layers);
        let has = |name: &str| layout.weights.get(&tensor(name)).is_some();
        let (q_norm, q_bias, o_bias) = match (QWEN3_NAMES.qk_norms, DECODER_NAMES.qkv) {
            (QkNorms::PerHead(q_norm, _), Qkv::Separate { query, .. }) => (
                format!("{q_norm}.weight"),
                format!("{query}.bias"),
                format!("{}.bias", DECODER_NAMES.attention_output),
            ),
            _ => unreachable!("the decoders' names have per-head norms and separate projections"),
        };
        let feed_forward_norm = format!("{}.weight", GEMMA3_NAMES.output_norm);
        if has(&feed_forward_norm) {
            return match has(&q_norm) {
                true => (
                    Kind::Gemma3,
                    Evidence::tensor(
                        tensor(&feed_forward_norm),
                        "a norm before the feed-forward apart from the attention's post norm, and per-head norms: Gemma 3",
                    ),
                ),
                false => (
                    Kind::Gemma2,
                    Evidence::tensor(
                        tensor(&feed_forward_norm),
                        "a norm before the feed-forward apart from the attention's post norm, without per-head norms: Gemma 2",
                    ),
                ),
            };
        }
        if let Some(info) = layout.weights.get(&tensor(&q_norm)) {
            return (
                Kind::Qwen3,
                Evidence::tensor(
                    tensor(&q_norm),
                    format!("{:?}: an RMSNorm per query head, as Qwen3 has", info.shape),
                ),
            );
        }
        match (has(&q_bias), has(&o_bias)) {
            (true, false) => (
                Kind::Qwen2,
                Evidence::tensor(
                    tensor(&q_bias),
                    format!("biases on Q/K/V but no `{o_bias}` and no per-head norms, as Qwen2 has"),
                ),
            ),
            (true, true) => (
                Kind::Llama,
                Evidence::tensor(
                    tensor(&o_bias),
                    "biases on Q/K/V and the output, no per-head norms: Llama with `attention_bias`",
                ),
            ),
            (false, _) => (
                Kind::Llama,
                Evidence::tensor(
                    tensor(&q_bias),
                    "absent, as are per-head norms: a Llama/Mistral decoder",
                ),
            ),
        }
    }
}

/// One decoder family; they share everything but what [`Kind`] says.
#[derive(Debug, Clone, Copy)]
pub struct Decoder(Kind);

impl Decoder {
    /// Qwen3 (`--backend qwen3`).
    pub const QWEN3: Decoder = Decoder(Kind::Qwen3);
    /// Qwen2 (`--backend qwen2`).
    pub const QWEN2: Decoder = Decoder(Kind::Qwen2);
    /// Llama and Mistral (`--backend llama`).
    pub const LLAMA: Decoder = Decoder(Kind::Llama);
    /// Gemma 2, bge-multilingual-gemma2 (`--backend gemma2`).
    pub const GEMMA2: Decoder = Decoder(Kind::Gemma2);
    /// Gemma 3, EmbeddingGemma (`--backend gemma3`).
    pub const GEMMA3: Decoder = Decoder(Kind::Gemma3);
}

/// The output projection of voyage-4-nano's own code (a linear layer without bias over every
/// token's output, `[out, hidden]`), saved beside the backbone at the weights' root.
const OUTPUT_PROJECTION: &str = "linear";

/// The model's output projection when the weights hold one: its width is the tensor's rows,
/// which `num_labels` must agree with where config.json has it (TEI reads the width there).
fn output_projection(
    layout: &EncoderLayout<'_>,
    hidden: Dim,
    evidence: &mut Vec<Evidence>,
) -> Result<Option<(&'static str, Dim)>, Box<Finding>> {
    let name = format!("{OUTPUT_PROJECTION}.weight");
    let Some(info) = layout.weights.get(&name) else {
        return Ok(None);
    };
    let file = layout.weights.display_file();
    let (out, input) = match info.shape[..] {
        [out, input] => (out, input),
        _ => {
            return Err(Box::new(
                Finding::error(
                    "tensor-shape-mismatch",
                    format!(
                        "`{name}` has shape {:?}: an output projection is `[width, hidden_size]`",
                        info.shape
                    ),
                )
                .in_file(file)
                .about(name)
                .fix("re-save the model's weights"),
            ))
        }
    };
    if input != hidden.size() {
        return Err(Box::new(
            Finding::error(
                "tensor-shape-mismatch",
                format!(
                    "`{name}` projects {input} features, but the layers output {} (`hidden_size`)",
                    hidden.size()
                ),
            )
            .in_file(file)
            .about(name)
            .fix("re-save the model's weights, or set `hidden_size` to the layers' width"),
        ));
    }
    if let Some(labels) = layout.config.usize("num_labels").filter(|&n| n != out) {
        return Err(Box::new(
            Finding::error(
                "tensor-shape-mismatch",
                format!("`num_labels` is {labels}, but `{name}` projects to {out}"),
            )
            .in_file("config.json")
            .about("num_labels")
            .fix(format!("set `num_labels` to {out}")),
        ));
    }
    evidence.push(Evidence::tensor(
        name,
        format!("[{out}, {input}]: every token's output projected to {out} features by a linear layer without bias, before pooling (voyage-4-nano's own code)"),
    ));
    Ok(Some((OUTPUT_PROJECTION, Dim::of("num_labels", out))))
}

impl Family for Decoder {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn word_table(&self) -> &'static str {
        WORD_TABLE
    }

    fn recognise(&self, layout: &EncoderLayout<'_>) -> Result<Recognised, Box<Finding>> {
        let me = self.0;
        let config = layout.config;
        let mut evidence = vec![super::own_layers(&me.names(), me.describe(), layout)?];
        let (kind, kind_evidence) = Kind::of(layout);
        if kind != me {
            return Err(Box::new(
                Finding::error(
                    "family-is-another",
                    format!(
                        "not {}: `{}` {}",
                        me.describe(),
                        kind_evidence.subject,
                        kind_evidence.statement
                    ),
                )
                .in_file(layout.weights.display_file())
                .about(kind_evidence.subject.clone())
                .fix(format!("it is served by the `{}` backend", kind.name())),
            ));
        }
        evidence.push(kind_evidence);
        let mut findings = Vec::new();
        let model_type = config.str("model_type");
        if let Some(t) = model_type.filter(|t| !Kind::served(t)) {
            // Not one of ours, yet transformers' own (no modeling code shipped): a decoder whose
            // layers are named as these are but compute otherwise (Gemma's norm offsets and
            // scaled word vectors, Granite's multipliers) is refused, not served as `me`.
            if custom_model_code(config).is_none() {
                return Err(super::option_refused(
                    "model-type-unsupported",
                    config,
                    "model_type",
                    format!("`model_type: {t}` is a decoder tessera does not serve; its tensors are named as {}'s, but what that class computes beyond them (norms, scales, masks) is not known to be {}'s, so serving it as {} could give other vectors", me.describe(), me.describe(), me.name()),
                    &format!("serve it with a server that implements `{t}`; if the checkpoint really is {} renamed, set `model_type` to \"{}\"", me.describe(), me.model_types()[0]),
                ));
            }
        }
        let expected = match model_type {
            Some(t) if me.model_types().contains(&t) => t,
            _ => me.name(),
        };
        super::model_type_evidence(expected, config, &mut evidence, &mut findings);
        super::name_evidence(config, &mut evidence);
        if let Some(finding) = layout.hidden_size_contradicted() {
            return Err(Box::new(finding));
        }
        let keys = Keys {
            positions_default: Some(me.positions_default(model_type)),
            act: me.act_key(),
            ..KEYS
        };
        let values = keys.read(config).map_err(|e| Box::new(e.to_finding()))?;
        // The per-head norms' width is the head width, whatever a class default would say.
        let q_norm_width = match me.names().qk_norms {
            QkNorms::PerHead(q_norm, _) => layout
                .weights
                .get(&format!("{}{}.0.{q_norm}.weight", layout.prefix, me.names().layers))
                .and_then(|info| info.shape.first().copied()),
            _ => None,
        };
        let eps = config.f64("rms_norm_eps").unwrap_or(1e-6);
        let dims = dims(config, values.dims, q_norm_width, &mut findings)?;
        let (layer_attention, scales, norm, pooling, attends) = match me {
            Kind::Gemma2 | Kind::Gemma3 => {
                let generation = match me {
                    Kind::Gemma2 => Generation::Two,
                    _ => Generation::Three,
                };
                let gemma = super::gemma::layers(generation, config, &dims, &mut evidence)?;
                let norm = Norm {
                    kind: NormKind::RmsUnitOffset,
                    placement: GEMMA_PLACEMENT,
                    eps,
                };
                // A bidirectional model's last token is no summary: its pooling must be configured.
                let pooling = (!gemma.bidirectional).then_some(LAST_TOKEN);
                (gemma.attention, gemma.scales, norm, pooling, gemma.describe)
            }
            _ => {
                let mask = attention(config, expected, &mut evidence, &mut findings)?;
                let (rope, rope_evidence) = rope::rope(config, &ROPE, dims.head_dim.size(), dims.positions.size())?;
                evidence.extend(rope_evidence);
                let norm = Norm {
                    kind: NormKind::Rms,
                    placement: Placement::Pre {
                        first_attention_unnormed: false,
                    },
                    eps,
                };
                // An encoder's last token is no summary: its pooling must be configured, as
                // BERT's is (sentence-transformers configures mean for EuroBERT's fine-tunes).
                let pooling = match expected {
                    EUROBERT => None,
                    LLAMA_BIDIREC => nvidia_pooling(config, &mut findings),
                    _ => Some(LAST_TOKEN),
                };
                (
                    vec![LayerAttention { mask, rope: Some(rope) }; dims.layers.size()],
                    Scales::NONE,
                    norm,
                    pooling,
                    describe(mask),
                )
            }
        };
        let architecture = format!(
            "{expected} ({} query heads on {} key/value heads of {}, {attends})",
            dims.heads.size(),
            dims.kv_heads.size(),
            dims.head_dim.size(),
        );
        let flag = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
        let biases = match me {
            Kind::Qwen3 | Kind::Gemma2 | Kind::Gemma3 => Biases {
                attention: flag("attention_bias"),
                attention_output: flag("attention_bias"),
                up: false,
                down: false,
            },
            Kind::Qwen2 => Biases {
                attention: true,
                attention_output: false,
                up: false,
                down: false,
            },
            Kind::Llama => Biases {
                attention: flag("attention_bias"),
                attention_output: flag("attention_bias"),
                up: flag("mlp_bias"),
                down: flag("mlp_bias"),
            },
        };
        let output_projection = output_projection(layout, dims.hidden, &mut evidence)?;
        let spec = EncoderSpec {
            architecture,
            names: me.names(),
            dims,
            positions: Positions::Absolute,
            position_table: PositionTable::Absent,
            attention_bias: AttentionBias::None,
            feed_forward: FeedForward::Gated { activated: Half::First },
            act: values.act,
            norm,
            biases,
            scales,
            extras: crate::spec::Extras {
                output_projection,
                ..crate::spec::Extras::NONE
            },
            adapters: None,
            layer_attention,
        };
        if let Some(tensor) = foreign_layer_tensor(layout, &spec) {
            return Err(Box::new(
                Finding::error(
                    "decoder-unsupported",
                    format!("`{tensor}` is not part of a Qwen3, Qwen2, Llama, Mistral, Gemma 2 or Gemma 3 layer: another decoder architecture, which tessera does not serve; serving it as {} would give other vectors", me.name()),
                )
                .in_file(layout.weights.display_file())
                .about(tensor)
                .fix("serve it with a server that implements its `model_type`; tessera's decoders are Qwen3, Qwen2, Llama, Mistral, Gemma 2 and Gemma 3"),
            ));
        }
        Ok(Recognised {
            spec,
            evidence,
            findings,
            pooling,
        })
    }
}

/// A tensor of layer 0 that `spec`'s layer does not have (rotary frequency buffers aside, which
/// older transformers saved): the mark of another decoder with the same projection names, which
/// must not be served with its extra parts silently left out.
fn foreign_layer_tensor(layout: &EncoderLayout<'_>, spec: &EncoderSpec) -> Option<String> {
    let layer = format!("{}{}.0.", layout.prefix, spec.names.layers);
    let expected: std::collections::HashSet<String> = spec
        .expected_tensors(1)
        .into_iter()
        .map(|t| format!("{}{}", layout.prefix, t.name))
        .collect();
    layout
        .weights
        .tensors
        .keys()
        .find(|name| {
            name.starts_with(&layer) && !expected.contains(*name) && !name.ends_with(tessera_core::ROTARY_BUFFER)
        })
        .cloned()
}

fn describe(mask: Mask) -> String {
    match mask {
        Mask::Bidirectional => "bidirectional".into(),
        Mask::CausalWindow { size } => format!("causal within {size} tokens"),
        _ => "causal".into(),
    }
}

/// The head layout: `head_dim` and `num_key_value_heads` from config.json, each defaulting
/// to what the tensors say (the per-head norms' width) rather than to a class default that
/// may not match; `num_key_value_heads` must divide `num_attention_heads`.
fn dims(
    config: &ModelConfig,
    dims: Dims,
    q_norm_width: Option<usize>,
    findings: &mut Vec<Finding>,
) -> Result<Dims, Box<Finding>> {
    let head_dim = match (config.usize("head_dim"), q_norm_width) {
        (Some(_), _) => dims.head_dim.size(),
        (None, Some(width)) => {
            findings.push(
                Finding::info(
                    "head-dim-from-weights",
                    format!("config.json has no `head_dim`; the per-head norms say {width}"),
                )
                .in_file(&config.path)
                .about("head_dim")
                .fix(format!("set `head_dim` to {width}")),
            );
            width
        }
        (None, None) => dims.hidden.size() / dims.heads.size(),
    };
    let heads = dims.heads.size();
    let kv_heads = config.usize("num_key_value_heads").unwrap_or(heads);
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(super::option_refused(
            "kv-heads-not-dividing-heads",
            config,
            "num_key_value_heads",
            format!("`num_key_value_heads: {kv_heads}` does not divide `num_attention_heads: {heads}`; each key/value head serves a whole group of query heads"),
            "set `num_key_value_heads` to the value the model was trained with",
        ));
    }
    Ok(Dims {
        kv_heads: Dim::of("num_key_value_heads", kv_heads),
        head_dim: Dim::of("head_dim", head_dim),
        ..dims
    })
}

/// The keys each token attends to, as the model class of `model_type` reads config.json:
/// causal by default, bidirectional with `is_causal: false`, and Mistral's causal sliding
/// window. Refused, naming the key: Qwen's sliding-window layers (`use_sliding_window`,
/// `layer_types`), a window on a bidirectional model, and custom modeling code that does not
/// say whether it is causal.
fn attention(
    config: &ModelConfig,
    model_type: &str,
    evidence: &mut Vec<Evidence>,
    findings: &mut Vec<Finding>,
) -> Result<Mask, Box<Finding>> {
    let refuse = |key: &str, message: String, fix: &str| {
        Err(super::option_refused(
            "decoder-attention-unsupported",
            config,
            key,
            message,
            fix,
        ))
    };
    let qwen_sliding = config.get("use_sliding_window").and_then(Value::as_bool) == Some(true)
        || config
            .get("layer_types")
            .and_then(Value::as_array)
            .is_some_and(|types| types.iter().any(|t| t.as_str() != Some("full_attention")));
    if qwen_sliding {
        return refuse(
            "use_sliding_window",
            "the config asks for sliding-window layers (`use_sliding_window` or `layer_types`); tessera serves Qwen decoders with full attention only".into(),
            "set `use_sliding_window` to false if the model was trained without it (Qwen3-Embedding and gte-Qwen2 were)",
        );
    }
    if model_type == EUROBERT {
        // Both transformers' EuroBertAttention and EuroBERT's own code set `is_causal = False`
        // on every layer, whatever config.json says.
        evidence.push(Evidence::config(
            "model_type",
            "eurobert: an encoder (EuroBERT): bidirectional attention on every layer, as transformers' `EuroBertModel` and EuroBERT's own code attend, whatever `is_causal` says",
        ));
        return Ok(Mask::Bidirectional);
    }
    if model_type == LLAMA_BIDIREC {
        // NVIDIA's code sets `is_causal = False` on every layer and builds a padding-only mask;
        // no config key is read for it.
        evidence.push(Evidence::config(
            "model_type",
            "llama_bidirec: NVIDIA's LlamaBidirectionalModel (its own code), which makes every layer attend both ways, whatever `is_causal` says",
        ));
        return Ok(Mask::Bidirectional);
    }
    // transformers' MistralModel masks every layer to its window; Llama and Qwen ignore the key.
    let window = match model_type {
        "mistral" => config.usize("sliding_window"),
        _ => None,
    };
    let bidirectional = match (
        config.get("is_causal").and_then(Value::as_bool),
        custom_model_code(config),
        config.get("use_bidirectional_attention").and_then(Value::as_bool),
    ) {
        (Some(causal), ..) => {
            let what = match causal {
                true => "true: causal attention",
                false => "false: bidirectional attention",
            };
            evidence.push(Evidence::config("is_causal", what));
            !causal
        }
        // The key the bidirectional conversions' own code reads (NVIDIA's LlamaBidirectional,
        // pplx-embed's Qwen3): with that code named, it says how the model attends.
        (None, Some(code), Some(bidirectional)) => {
            evidence.push(Evidence::config(
                "use_bidirectional_attention",
                format!("{bidirectional}: read by the model's own code (`{code}`), which tessera does not run; {} attention", if bidirectional { "bidirectional" } else { "causal" }),
            ));
            bidirectional
        }
        (None, Some(code), None) => {
            return Err(super::option_refused(
                "decoder-causality-unstated",
                config,
                "is_causal",
                format!("config.json does not say whether the model attends causally, and it ships its own modeling code (`auto_map.AutoModel: {code}`), which tessera does not run; such code may attend bidirectionally (as gte-Qwen2's is meant to) or causally, and the vectors differ"),
                "set `is_causal` to what the model's own code does: `false` for bidirectional attention, `true` for causal",
            ));
        }
        (None, None, bidirectional) => {
            evidence.push(Evidence::config(
                "is_causal",
                "absent: causal attention, as transformers' decoder classes attend",
            ));
            if bidirectional == Some(true) {
                findings.push(
                    Finding::warning(
                        "decoder-bidirectional-key-ignored",
                        format!("`use_bidirectional_attention: true`, but `model_type: {model_type}`'s transformers class ignores that key and attends causally, and so does tessera"),
                    )
                    .in_file(&config.path)
                    .about("use_bidirectional_attention")
                    .fix("if the model was trained bidirectionally, set `is_causal: false`"),
                );
            }
            false
        }
    };
    if bidirectional {
        if window.is_some() {
            return refuse(
                "sliding_window",
                "bidirectional attention with a `sliding_window`: a bidirectional window, which no transformers class defines".into(),
                "set `sliding_window` to null if the bidirectional model attends to the whole input",
            );
        }
        return Ok(Mask::Bidirectional);
    }
    match window {
        Some(0) => refuse(
            "sliding_window",
            "`sliding_window: 0` would let no token see even itself".into(),
            "set `sliding_window` to the window the model was trained with, or null for none",
        ),
        Some(size) => {
            evidence.push(Evidence::config(
                "sliding_window",
                format!("{size}: each token sees itself and the {} before it", size - 1),
            ));
            Ok(Mask::CausalWindow { size })
        }
        None => Ok(Mask::Causal),
    }
}

/// The pooling NVIDIA's bidirectional Llama configures, where no sentence-transformers pooling
/// says otherwise; a value tessera does not pool by leaves the pooling to be configured, with a
/// warning naming the key.
fn nvidia_pooling(config: &ModelConfig, findings: &mut Vec<Finding>) -> Option<tessera_core::ImpliedPooling> {
    match tessera_core::llama_bidirec_pooling(config.get("pooling")) {
        Ok((pooling, why)) => Some(tessera_core::ImpliedPooling { pooling, why }),
        Err(message) => {
            findings.push(
                Finding::warning("pooling-mode-unknown", message)
                    .in_file(&config.path)
                    .about("pooling")
                    .fix("pass --pooling, or add the sentence-transformers pooling config the model was trained with"),
            );
            None
        }
    }
}

/// `auto_map.AutoModel` when the checkpoint names modeling code of its own.
fn custom_model_code(config: &ModelConfig) -> Option<String> {
    config
        .get("auto_map")
        .and_then(|m| m.get("AutoModel"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn mask_of(model_type: &str, keys: Value) -> Result<Mask, Box<Finding>> {
        attention(
            &super::super::config_of(keys),
            model_type,
            &mut Vec::new(),
            &mut Vec::new(),
        )
    }

    #[test]
    fn nvidia_bidirectional_llama_attends_both_ways_whatever_the_keys_say() {
        let code = json!({"AutoModel": "llama_bidirectional_model.LlamaBidirectionalModel"});
        for keys in [
            json!({"auto_map": code}),
            json!({"auto_map": code, "is_causal": true}),
            json!({"use_bidirectional_attention": false}),
        ] {
            assert_eq!(
                mask_of(LLAMA_BIDIREC, keys.clone()).unwrap(),
                Mask::Bidirectional,
                "{keys}"
            );
        }
    }

    #[test]
    fn nvidia_pooling_is_implied_from_the_config_and_an_unknown_one_is_left_to_configure() {
        let implied = |keys: Value| {
            let mut findings = Vec::new();
            let pooling = nvidia_pooling(&super::super::config_of(keys), &mut findings);
            (pooling.map(|p| p.pooling), findings)
        };
        assert_eq!(implied(json!({})).0, Some(tessera_core::Pooling::Mean));
        assert_eq!(implied(json!({"pooling": "cls"})).0, Some(tessera_core::Pooling::Cls));
        let (pooling, findings) = implied(json!({"pooling": "weighted_avg"}));
        assert_eq!(pooling, None);
        assert_eq!(findings[0].code, "pooling-mode-unknown");
        assert_eq!(findings[0].severity, tessera_core::Severity::Warning);
    }

    #[test]
    fn eurobert_attends_bidirectionally_whatever_the_keys_say() {
        let code = json!({"AutoModel": "modeling_eurobert.EuroBertModel"});
        for keys in [
            json!({}),
            json!({"is_causal": true}),
            json!({"auto_map": code}),
            json!({"sliding_window": 16}),
        ] {
            assert_eq!(mask_of(EUROBERT, keys.clone()).unwrap(), Mask::Bidirectional, "{keys}");
        }
    }

    #[test]
    fn the_mask_is_read_as_the_model_class_reads_config_json() {
        assert_eq!(mask_of("qwen2", json!({})).unwrap(), Mask::Causal);
        assert_eq!(
            mask_of("qwen2", json!({"is_causal": false})).unwrap(),
            Mask::Bidirectional
        );
        // Mistral applies its window; Llama and Qwen (without `use_sliding_window`) ignore the key.
        assert_eq!(
            mask_of("mistral", json!({"sliding_window": 4096})).unwrap(),
            Mask::CausalWindow { size: 4096 }
        );
        assert_eq!(
            mask_of("mistral", json!({"sliding_window": null})).unwrap(),
            Mask::Causal
        );
        assert_eq!(mask_of("llama", json!({"sliding_window": 16})).unwrap(), Mask::Causal);
        assert_eq!(
            mask_of("qwen2", json!({"sliding_window": 131072})).unwrap(),
            Mask::Causal
        );
    }

    #[test]
    fn what_no_class_defines_is_refused_naming_the_key() {
        for (model_type, keys, code, subject) in [
            (
                "mistral",
                json!({"sliding_window": 0}),
                "decoder-attention-unsupported",
                "sliding_window",
            ),
            (
                "mistral",
                json!({"sliding_window": 8, "is_causal": false}),
                "decoder-attention-unsupported",
                "sliding_window",
            ),
            (
                "qwen2",
                json!({"use_sliding_window": true}),
                "decoder-attention-unsupported",
                "use_sliding_window",
            ),
            (
                "qwen2",
                json!({"auto_map": {"AutoModel": "modeling_qwen.Qwen2Model"}}),
                "decoder-causality-unstated",
                "is_causal",
            ),
        ] {
            let refusal = mask_of(model_type, keys.clone()).unwrap_err();
            assert_eq!(refusal.code, code, "{keys}");
            assert_eq!(refusal.subject.as_deref(), Some(subject), "{keys}");
        }
        // Saying it settles it, custom code or not.
        let stated = json!({"auto_map": {"AutoModel": "modeling_qwen.Qwen2Model"}, "is_causal": false});
        assert_eq!(mask_of("qwen2", stated).unwrap(), Mask::Bidirectional);
    }

    #[test]
    fn use_bidirectional_attention_counts_where_the_model_s_own_code_reads_it() {
        let code = json!({"AutoModel": "modeling_bidirectional.Model"});
        for (bidirectional, want) in [(true, Mask::Bidirectional), (false, Mask::Causal)] {
            let keys = json!({"auto_map": code, "use_bidirectional_attention": bidirectional});
            assert_eq!(mask_of("qwen3", keys).unwrap(), want);
        }
        // is_causal still wins, and a window stays refused on a bidirectional model.
        let keys = json!({"auto_map": code, "use_bidirectional_attention": true, "is_causal": true});
        assert_eq!(mask_of("qwen3", keys).unwrap(), Mask::Causal);
        let keys = json!({"auto_map": code, "use_bidirectional_attention": true, "sliding_window": 8});
        assert_eq!(
            mask_of("mistral", keys).unwrap_err().subject.as_deref(),
            Some("sliding_window")
        );
        // transformers' own classes ignore it: causal, with a warning naming the key.
        let config = super::super::config_of(json!({"use_bidirectional_attention": true}));
        let mut findings = Vec::new();
        assert_eq!(
            attention(&config, "qwen3", &mut Vec::new(), &mut findings).unwrap(),
            Mask::Causal
        );
        assert_eq!(findings[0].code, "decoder-bidirectional-key-ignored");
        assert_eq!(findings[0].subject.as_deref(), Some("use_bidirectional_attention"));
    }
}
