//! BERT with absolute positions.
//!
//! [`BertBackend`] is the crate's one registered value: it assesses a model from its tensor
//! names and config ([`assess`]) and loads [`BertModel`], whose attention is a swappable kernel so
//! the flash backend can reuse this definition.

mod assess;
mod config;
mod model;

use std::sync::Arc;

use candle_core::Tensor;
use tessera_core::{
    Assessment, Backend, BackendDescription, BackendError, BackendFactory, Batch, LoadError, LoadRequest,
    ModelInspection, PaddedAttention,
};

pub use assess::{assess, weight_prefix};
pub use config::{BertConfig, REQUIRED_KEYS};
pub use model::BertModel;

/// The bert backend's registration.
#[derive(Debug, Clone, Copy)]
pub struct BertBackend;

impl BackendFactory for BertBackend {
    fn name(&self) -> &'static str {
        "bert"
    }

    fn assess(&self, inspection: &ModelInspection) -> Assessment {
        assess(inspection)
    }

    fn load(&self, request: &LoadRequest<'_>) -> Result<Box<dyn Backend>, LoadError> {
        let cfg = BertConfig::from_config(request.config()?)?;
        let (vb, file) = request.var_builder()?;
        let prefix = request
            .inspection
            .weights
            .as_ref()
            .and_then(weight_prefix)
            .unwrap_or_default();
        let vb = match prefix.trim_end_matches('.') {
            "" => vb,
            prefix => vb.pp(prefix),
        };
        let kernel = request
            .kernel
            .clone()
            .unwrap_or_else(|| Arc::new(PaddedAttention::default()));
        let model = BertModel::load(vb, &cfg, kernel).map_err(|e| LoadError::from_candle(&file, e))?;
        Ok(Box::new(BertRunner { model }))
    }
}

#[derive(Debug)]
struct BertRunner {
    model: BertModel,
}

impl Backend for BertRunner {
    fn forward(&self, batch: &Batch) -> Result<Tensor, BackendError> {
        let cfg = self.model.config();
        batch.check_ids(cfg.vocab_size, cfg.type_vocab_size)?;
        if batch.seqs.max_len() > cfg.max_position_embeddings {
            return Err(BackendError::InvalidBatch(format!(
                "a sequence of {} tokens exceeds max_position_embeddings {}",
                batch.seqs.max_len(),
                cfg.max_position_embeddings
            )));
        }
        Ok(self.model.forward(batch)?)
    }

    fn describe(&self) -> BackendDescription {
        let cfg = self.model.config();
        BackendDescription {
            backend: "bert",
            architecture: "bert".into(),
            kernel: self.model.kernel().name(),
            pads: self.model.kernel().pads(),
            hidden_size: cfg.hidden_size,
            vocab_size: cfg.vocab_size,
        }
    }
}
