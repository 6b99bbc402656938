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
use candle_nn::VarBuilder;
use tessera_core::inspection::WeightsFormat;
use tessera_core::{
    Assessment, Backend, BackendDescription, BackendError, BackendFactory, Batch, LoadError,
    LoadRequest, ModelInspection, PaddedAttention,
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
        let inspection = request.inspection;
        let config_path = inspection.config_path();
        let config = inspection
            .config
            .as_ref()
            .ok_or_else(|| LoadError::MissingFile {
                file: config_path.clone(),
                what: "config.json",
                fix: "add the model's config.json".into(),
            })?;
        let cfg = BertConfig::from_config(config)?;
        let (vb, file) = weights(request)?;
        let prefix = inspection
            .weights
            .as_ref()
            .and_then(weight_prefix)
            .unwrap_or_default();
        let vb = if prefix.is_empty() {
            vb
        } else {
            vb.pp(prefix.trim_end_matches('.'))
        };
        let kernel = request
            .kernel
            .clone()
            .unwrap_or_else(|| Arc::new(PaddedAttention::default()));
        let model =
            BertModel::load(vb, &cfg, kernel).map_err(|e| LoadError::from_candle(&file, e))?;
        Ok(Box::new(BertRunner {
            model,
            dtype: request.dtype,
        }))
    }
}

/// Opens the weights listed in the inspection; safetensors are memory-mapped.
pub fn weights(
    request: &LoadRequest<'_>,
) -> Result<(VarBuilder<'static>, std::path::PathBuf), LoadError> {
    let inspection = request.inspection;
    let index = inspection
        .weights
        .as_ref()
        .ok_or_else(|| LoadError::MissingFile {
            file: inspection.root.join("model.safetensors"),
            what: "the model weights",
            fix: "add model.safetensors (or pytorch_model.bin)".into(),
        })?;
    let file = index.display_file();
    let vb = match index.format {
        WeightsFormat::Safetensors | WeightsFormat::ShardedSafetensors => {
            // SAFETY: the files are mapped read-only; tessera never writes them, and a model
            // directory being rewritten while served is outside what any server can defend.
            unsafe {
                VarBuilder::from_mmaped_safetensors(&index.files, request.dtype, &request.device)
            }
        }
        WeightsFormat::PyTorch => {
            VarBuilder::from_pth(&index.files[0], request.dtype, &request.device)
        }
    }
    .map_err(|e| LoadError::from_candle(&file, e))?;
    Ok((vb, file))
}

#[derive(Debug)]
struct BertRunner {
    model: BertModel,
    dtype: candle_core::DType,
}

impl Backend for BertRunner {
    fn forward(&self, batch: &Batch) -> Result<Tensor, BackendError> {
        let cfg = self.model.config();
        if let Some(bad) = batch
            .input_ids
            .iter()
            .find(|&&id| id as usize >= cfg.vocab_size)
        {
            return Err(BackendError::InvalidBatch(format!(
                "token id {bad} is outside the vocabulary (size {})",
                cfg.vocab_size
            )));
        }
        if let Some(bad) = batch
            .token_type_ids
            .iter()
            .find(|&&t| t as usize >= cfg.type_vocab_size)
        {
            return Err(BackendError::InvalidBatch(format!(
                "token type id {bad} is outside type_vocab_size {}",
                cfg.type_vocab_size
            )));
        }
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
            dtype: self.dtype,
            hidden_size: cfg.hidden_size,
            vocab_size: cfg.vocab_size,
            max_positions: Some(cfg.max_position_embeddings),
        }
    }
}
