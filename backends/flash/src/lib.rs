//! The unpadded (varlen) path: the encoder families' model definitions, unchanged, with a flash
//! attention kernel instead of the padded reference. Every token-wise layer already runs on the
//! packed `[total_tokens, hidden]` stream, so nothing is padded anywhere and the batcher counts
//! real tokens only.
//!
//! [`FlashBackend`] serves whatever an encoder family would serve (same evidence, same
//! findings) and wins over them in the registry. The kernel is chosen once at load from the
//! device ([`kernels::kernel_for`]): [`kernels::TiledCpu`] on CPUs, CUDA flash attention with
//! the `cuda` feature on a GPU.
//!
//! ```
//! use tessera_core::AttentionKernel;
//! let kernel = tessera_flash::kernels::kernel_for(&candle_core::Device::Cpu);
//! assert_eq!(kernel.name(), "tiled-cpu");
//! assert!(!kernel.pads());
//! ```

pub mod kernels;

use candle_core::Tensor;
use tessera_core::{
    Assessment, Backend, BackendDescription, BackendError, BackendFactory, Batch, LoadError, LoadRequest,
    ModelInspection,
};
use tessera_encoder::{
    BERT, DEBERTA, DISTILBERT, GEMMA2, GEMMA3, GTE, JINA_BERT, JINA_V3, LLAMA, MODERNBERT, MPNET, NOMIC_BERT, QWEN2,
    QWEN3, ROBERTA, T5_ENCODER,
};

/// The flash backend's registration.
#[derive(Debug, Clone, Copy)]
pub struct FlashBackend;

/// The architectures flash runs, in the order they are asked.
const DEFINITIONS: [&dyn BackendFactory; 16] = [
    &JINA_BERT,
    &BERT,
    &ROBERTA,
    &DISTILBERT,
    &MPNET,
    &DEBERTA,
    &MODERNBERT,
    &QWEN3,
    &QWEN2,
    &LLAMA,
    &GEMMA2,
    &GEMMA3,
    &NOMIC_BERT,
    &GTE,
    &JINA_V3,
    &T5_ENCODER,
];

impl BackendFactory for FlashBackend {
    fn name(&self) -> &'static str {
        "flash"
    }

    fn assess(&self, inspection: &ModelInspection) -> Assessment {
        let mut reasons = Vec::new();
        for definition in DEFINITIONS {
            match definition.assess(inspection) {
                Assessment::Serves {
                    architecture,
                    evidence,
                    findings,
                    max_positions,
                    pooling,
                } => {
                    return Assessment::Serves {
                        architecture: format!("{architecture}, unpadded"),
                        evidence,
                        findings,
                        max_positions,
                        pooling,
                    }
                }
                Assessment::Declines { reasons: r } => reasons.extend(r),
            }
        }
        Assessment::Declines { reasons }
    }

    fn load(&self, request: &LoadRequest<'_>) -> Result<Box<dyn Backend>, LoadError> {
        let definition = DEFINITIONS
            .into_iter()
            .find(|d| matches!(d.assess(request.inspection), Assessment::Serves { .. }))
            .unwrap_or(&BERT);
        let kernel = request
            .kernel
            .clone()
            .unwrap_or_else(|| kernels::kernel_for(&request.device));
        let inner = definition.load(&LoadRequest {
            kernel: Some(kernel),
            ..request.clone()
        })?;
        Ok(Box::new(FlashRunner { inner }))
    }
}

/// A model of one of the encoder families running with a flash kernel.
#[derive(Debug)]
struct FlashRunner {
    inner: Box<dyn Backend>,
}

impl Backend for FlashRunner {
    fn forward(&self, batch: &Batch) -> Result<Tensor, BackendError> {
        self.inner.forward(batch)
    }

    fn quantize(&mut self, format: tessera_core::quant::Format) -> Result<(usize, usize), BackendError> {
        self.inner.quantize(format)
    }

    fn adapters(&self) -> &[String] {
        self.inner.adapters()
    }

    fn describe(&self) -> BackendDescription {
        let inner = self.inner.describe();
        BackendDescription {
            backend: "flash",
            architecture: format!("{}, unpadded", inner.architecture),
            ..inner
        }
    }
}
