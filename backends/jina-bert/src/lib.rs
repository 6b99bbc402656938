//! JinaBERT v2: ALiBi attention with a gated (GEGLU/ReGLU) or original feed-forward, and the
//! code variant with Q/K LayerNorms.
//!
//! [`JinaBertBackend`] assesses a model from its tensors ([`detect`]): no position table means
//! ALiBi, `mlp.gated_layers` means GLU, `mlp.up_gated_layer` means the code variant. The ALiBi bias
//! is never materialized for the maximum length: the attention kernel builds it per batch from
//! [`alibi_slopes`].
//!
//! ```
//! assert_eq!(tessera_jina_bert::alibi_slopes(4), vec![0.25, 0.0625, 0.015625, 0.00390625]);
//! ```

mod alibi;
mod assess;
mod config;
mod mlp;
mod model;

use std::sync::Arc;

use candle_core::Tensor;
use tessera_core::{
    Assessment, Backend, BackendDescription, BackendError, BackendFactory, Batch, LoadError, LoadRequest,
    ModelInspection, PaddedAttention,
};

pub use alibi::alibi_slopes;
pub use assess::{assess, detect, Detected};
pub use config::{FeedForward, GluAct, JinaConfig, FEED_FORWARD_TYPES, REQUIRED_KEYS};
pub use model::JinaBertModel;

/// The jina-bert backend's registration.
#[derive(Debug, Clone, Copy)]
pub struct JinaBertBackend;

impl BackendFactory for JinaBertBackend {
    fn name(&self) -> &'static str {
        "jina-bert"
    }

    fn assess(&self, inspection: &ModelInspection) -> Assessment {
        assess(inspection)
    }

    fn load(&self, request: &LoadRequest<'_>) -> Result<Box<dyn Backend>, LoadError> {
        let (model, architecture) = load_model(request)?;
        Ok(Box::new(JinaRunner { model, architecture }))
    }
}

/// Loads the encoder the inspection describes (the flash backend reuses this).
pub fn load_model(request: &LoadRequest<'_>) -> Result<(JinaBertModel, String), LoadError> {
    let detected = detect(request.inspection).map_err(LoadError::Declined)?;
    let cfg = JinaConfig::from_config(request.config()?, detected.feed_forward)?;
    let (vb, file) = request.var_builder()?;
    let vb = match detected.prefix.trim_end_matches('.') {
        "" => vb,
        prefix => vb.pp(prefix),
    };
    let kernel = request
        .kernel
        .clone()
        .unwrap_or_else(|| Arc::new(PaddedAttention::default()));
    let model = JinaBertModel::load(vb, &cfg, kernel).map_err(|e| LoadError::from_candle(&file, e))?;
    Ok((model, detected.architecture()))
}

#[derive(Debug)]
struct JinaRunner {
    model: JinaBertModel,
    architecture: String,
}

impl Backend for JinaRunner {
    fn forward(&self, batch: &Batch) -> Result<Tensor, BackendError> {
        let cfg = self.model.config();
        batch.check_ids(cfg.vocab_size, cfg.type_vocab_size)?;
        Ok(self.model.forward(batch)?)
    }

    fn describe(&self) -> BackendDescription {
        let cfg = self.model.config();
        BackendDescription {
            backend: "jina-bert",
            architecture: self.architecture.clone(),
            kernel: self.model.kernel().name(),
            pads: self.model.kernel().pads(),
            hidden_size: cfg.hidden_size,
            vocab_size: cfg.vocab_size,
        }
    }
}
