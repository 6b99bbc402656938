//! JinaBERT's config.json keys and the variant the tensors show.

use tessera_core::inspection::ModelConfig;
use tessera_core::{Dim, ExpectedTensor, HiddenAct, LoadError};

/// The feed-forward block of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedForward {
    /// `mlp.gated_layers` + `mlp.wo` + `mlp.layernorm`: `act(g[:I]) * g[I:]`.
    Glu(GluAct),
    /// The plain BERT FFN (`intermediate.dense`, `output.dense`, `output.LayerNorm`).
    Original,
    /// The code variant: `mlp.up_gated_layer` + `mlp.down_layer`, `up * act(gate)`, Q/K
    /// LayerNorms and the doubled residual through `layer_norm_1` and `layer_norm_2`.
    Code(GluAct),
}

/// The activation of a gated MLP, from `feed_forward_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GluAct {
    /// `geglu`: exact (erf) GELU.
    Gelu,
    /// `reglu`: ReLU.
    Relu,
}

impl GluAct {
    pub(crate) fn hidden_act(self) -> HiddenAct {
        match self {
            GluAct::Gelu => HiddenAct::Gelu,
            GluAct::Relu => HiddenAct::Relu,
        }
    }
}

impl FeedForward {
    /// Words for logs and `/info`.
    pub fn describe(self) -> &'static str {
        match self {
            FeedForward::Glu(GluAct::Gelu) => "geglu",
            FeedForward::Glu(GluAct::Relu) => "reglu",
            FeedForward::Original => "original FFN",
            FeedForward::Code(GluAct::Gelu) => "code variant, geglu",
            FeedForward::Code(GluAct::Relu) => "code variant, reglu",
        }
    }
}

/// The supported `feed_forward_type` values.
pub const FEED_FORWARD_TYPES: &str = "geglu, reglu, original";

/// The values JinaBERT needs.
#[derive(Debug, Clone, PartialEq)]
pub struct JinaConfig {
    /// `vocab_size`.
    pub vocab_size: usize,
    /// `hidden_size`.
    pub hidden_size: usize,
    /// `num_hidden_layers`.
    pub num_hidden_layers: usize,
    /// `num_attention_heads`.
    pub num_attention_heads: usize,
    /// `intermediate_size`.
    pub intermediate_size: usize,
    /// `max_position_embeddings` (ALiBi has no table; this bounds the input length).
    pub max_position_embeddings: usize,
    /// `type_vocab_size` (default 2).
    pub type_vocab_size: usize,
    /// `layer_norm_eps` (default 1e-12).
    pub layer_norm_eps: f64,
    /// `hidden_act`, used by the original FFN.
    pub hidden_act: HiddenAct,
    /// The feed-forward block, decided from the tensors.
    pub feed_forward: FeedForward,
}

/// Keys JinaBERT cannot do without.
pub const REQUIRED_KEYS: &[&str] = &[
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
];

impl JinaConfig {
    /// Reads the values; `feed_forward` comes from the assessment, not from the config alone.
    pub fn from_config(config: &ModelConfig, feed_forward: FeedForward) -> Result<Self, LoadError> {
        let file = &config.path;
        let required = |key: &str| config.required_usize(key);
        let hidden_act = config.hidden_act()?;
        let cfg = Self {
            vocab_size: required("vocab_size")?,
            hidden_size: required("hidden_size")?,
            num_hidden_layers: required("num_hidden_layers")?,
            num_attention_heads: required("num_attention_heads")?,
            intermediate_size: required("intermediate_size")?,
            max_position_embeddings: config.usize("max_position_embeddings").unwrap_or(8192),
            type_vocab_size: config.usize("type_vocab_size").unwrap_or(2).max(1),
            layer_norm_eps: config.f64("layer_norm_eps").unwrap_or(1e-12),
            hidden_act,
            feed_forward,
        };
        if !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(LoadError::HeadsNotDividingHidden {
                file: file.clone(),
                hidden: cfg.hidden_size,
                heads: cfg.num_attention_heads,
            });
        }
        Ok(cfg)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Every tensor [`crate::JinaBertModel`] loads for this variant with `layers` layers (names
    /// without the prefix).
    pub fn expected_tensors(&self, layers: usize) -> Vec<ExpectedTensor> {
        let h = Dim::of("hidden_size", self.hidden_size);
        let i = Dim::of("intermediate_size", self.intermediate_size);
        let mut t = vec![
            ExpectedTensor::new(
                "embeddings.word_embeddings.weight",
                &[Dim::of("vocab_size", self.vocab_size), h],
            ),
            ExpectedTensor::new(
                "embeddings.token_type_embeddings.weight",
                &[Dim::of("type_vocab_size", self.type_vocab_size), h],
            ),
            ExpectedTensor::new("embeddings.LayerNorm.weight", &[h]),
            ExpectedTensor::new("embeddings.LayerNorm.bias", &[h]),
        ];
        let norm = |name: &str| [(format!("{name}.weight"), vec![h]), (format!("{name}.bias"), vec![h])];
        for l in 0..layers {
            let p = format!("encoder.layer.{l}.");
            let mut layer: Vec<(String, Vec<Dim>)> = Vec::new();
            for proj in ["query", "key", "value"] {
                layer.push((format!("attention.self.{proj}.weight"), vec![h, h]));
                layer.push((format!("attention.self.{proj}.bias"), vec![h]));
            }
            layer.push(("attention.output.dense.weight".into(), vec![h, h]));
            layer.push(("attention.output.dense.bias".into(), vec![h]));
            layer.extend(norm("attention.output.LayerNorm"));
            match self.feed_forward {
                FeedForward::Glu(_) => {
                    layer.push(("mlp.gated_layers.weight".into(), vec![i.times(2), h]));
                    layer.push(("mlp.wo.weight".into(), vec![h, i]));
                    layer.push(("mlp.wo.bias".into(), vec![h]));
                    layer.extend(norm("mlp.layernorm"));
                }
                FeedForward::Original => {
                    layer.push(("intermediate.dense.weight".into(), vec![i, h]));
                    layer.push(("intermediate.dense.bias".into(), vec![i]));
                    layer.push(("output.dense.weight".into(), vec![h, i]));
                    layer.push(("output.dense.bias".into(), vec![h]));
                    layer.extend(norm("output.LayerNorm"));
                }
                FeedForward::Code(_) => {
                    layer.extend(norm("attention.self.layer_norm_q"));
                    layer.extend(norm("attention.self.layer_norm_k"));
                    layer.push(("mlp.up_gated_layer.weight".into(), vec![i.times(2), h]));
                    layer.push(("mlp.down_layer.weight".into(), vec![h, i]));
                    layer.push(("mlp.down_layer.bias".into(), vec![h]));
                    layer.extend(norm("layer_norm_1"));
                    layer.extend(norm("layer_norm_2"));
                }
            }
            t.extend(
                layer
                    .into_iter()
                    .map(|(name, shape)| ExpectedTensor::new(format!("{p}{name}"), &shape)),
            );
        }
        t
    }
}
