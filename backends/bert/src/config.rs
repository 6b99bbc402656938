//! BERT's config.json keys, read from the lenient [`ModelConfig`] with errors naming the key.

use tessera_core::inspection::ModelConfig;
use tessera_core::{HiddenAct, LoadError};

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
        let required = |key: &str| -> Result<usize, LoadError> {
            match config.get(key) {
                None => Err(LoadError::MissingKey {
                    file: file.clone(),
                    key: key.to_string(),
                    fix: format!("set `{key}` to the value the model was trained with"),
                }),
                Some(v) => match v.as_u64() {
                    Some(n) if n > 0 => Ok(n as usize),
                    _ => Err(LoadError::InvalidValue {
                        file: file.clone(),
                        key: key.to_string(),
                        value: v.to_string(),
                        reason: "must be a positive integer".into(),
                    }),
                },
            }
        };
        let hidden_act = match config.get("hidden_act") {
            None => HiddenAct::Gelu,
            Some(v) => v.as_str().and_then(HiddenAct::parse).ok_or_else(|| {
                LoadError::UnsupportedValue {
                    file: file.clone(),
                    key: "hidden_act".into(),
                    value: v.to_string(),
                    supported: HiddenAct::supported_names(),
                }
            })?,
        };
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
            return Err(LoadError::InvalidValue {
                file: file.clone(),
                key: "num_attention_heads".into(),
                value: cfg.num_attention_heads.to_string(),
                reason: format!(
                    "hidden_size {} is not divisible by num_attention_heads {}",
                    cfg.hidden_size, cfg.num_attention_heads
                ),
            });
        }
        Ok(cfg)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}
