//! BERT's config.json keys, read from the lenient [`ModelConfig`] with errors naming the key.

use tessera_core::inspection::ModelConfig;
use tessera_core::{Dim, ExpectedTensor, HiddenAct, LoadError};

/// The values BERT needs.
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
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
    /// `hidden_act`.
    pub hidden_act: HiddenAct,
    /// `max_position_embeddings`.
    pub max_position_embeddings: usize,
    /// `type_vocab_size` (default 2).
    pub type_vocab_size: usize,
    /// `layer_norm_eps` (default 1e-12).
    pub layer_norm_eps: f64,
}

/// Keys BERT cannot do without.
pub const REQUIRED_KEYS: &[&str] = &[
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
];

impl BertConfig {
    /// Reads and checks the values; the error names the key and how to fix it.
    pub fn from_config(config: &ModelConfig) -> Result<Self, LoadError> {
        let file = &config.path;
        let required = |key: &str| config.required_usize(key);
        let hidden_act = config.hidden_act()?;
        let cfg = Self {
            vocab_size: required("vocab_size")?,
            hidden_size: required("hidden_size")?,
            num_hidden_layers: required("num_hidden_layers")?,
            num_attention_heads: required("num_attention_heads")?,
            intermediate_size: required("intermediate_size")?,
            hidden_act,
            max_position_embeddings: required("max_position_embeddings")?,
            type_vocab_size: config.usize("type_vocab_size").unwrap_or(2).max(1),
            layer_norm_eps: config.f64("layer_norm_eps").unwrap_or(1e-12),
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

    /// Every tensor [`crate::BertModel`] loads with `layers` layers, with its shape (names
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
                "embeddings.position_embeddings.weight",
                &[Dim::of("max_position_embeddings", self.max_position_embeddings), h],
            ),
            ExpectedTensor::new(
                "embeddings.token_type_embeddings.weight",
                &[Dim::of("type_vocab_size", self.type_vocab_size), h],
            ),
            ExpectedTensor::new("embeddings.LayerNorm.weight", &[h]),
            ExpectedTensor::new("embeddings.LayerNorm.bias", &[h]),
        ];
        for l in 0..layers {
            let p = format!("encoder.layer.{l}.");
            for (name, shape) in [
                ("attention.self.query.weight", vec![h, h]),
                ("attention.self.query.bias", vec![h]),
                ("attention.self.key.weight", vec![h, h]),
                ("attention.self.key.bias", vec![h]),
                ("attention.self.value.weight", vec![h, h]),
                ("attention.self.value.bias", vec![h]),
                ("attention.output.dense.weight", vec![h, h]),
                ("attention.output.dense.bias", vec![h]),
                ("attention.output.LayerNorm.weight", vec![h]),
                ("attention.output.LayerNorm.bias", vec![h]),
                ("intermediate.dense.weight", vec![i, h]),
                ("intermediate.dense.bias", vec![i]),
                ("output.dense.weight", vec![h, i]),
                ("output.dense.bias", vec![h]),
                ("output.LayerNorm.weight", vec![h]),
                ("output.LayerNorm.bias", vec![h]),
            ] {
                t.push(ExpectedTensor::new(format!("{p}{name}"), &shape));
            }
        }
        t
    }
}
