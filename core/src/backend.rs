//! The backend trait and how a backend crate describes itself.

use std::sync::Arc;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::attention::AttentionKernel;
use crate::batch::Batch;
use crate::error::{BackendError, LoadError};
use crate::inspection::{Evidence, Finding, ModelConfig, ModelInspection, WeightsFormat};

/// A loaded model that turns a packed batch into token vectors.
pub trait Backend: std::fmt::Debug + Send {
    /// Runs the encoder. Returns the last hidden states `[total_tokens, hidden]`, packed like
    /// `batch`.
    fn forward(&self, batch: &Batch) -> Result<Tensor, BackendError>;

    /// What was loaded.
    fn describe(&self) -> BackendDescription;

    /// The model's task adapters by name (jina-embeddings-v3's LoRA tasks), which
    /// [`Batch::tasks`] index; empty for models without.
    fn adapters(&self) -> &[String] {
        &[]
    }

    /// Packs every linear layer's weights in `format` ([`crate::layers::Linear::quantize`]);
    /// returns the bytes the linear layers' weights took before and after. Backends without
    /// that ability say so.
    fn quantize(&mut self, format: crate::quant::Format) -> Result<(usize, usize), BackendError> {
        Err(BackendError::Unsupported(format!(
            "the {} backend has no {} path",
            self.describe().backend,
            format.name()
        )))
    }
}

/// What a loaded backend reports about itself.
#[derive(Debug, Clone)]
pub struct BackendDescription {
    /// The registered backend name.
    pub backend: &'static str,
    /// The architecture and variant served (`bert`, `jina-bert (alibi, geglu)`).
    pub architecture: String,
    /// The attention kernel in use.
    pub kernel: &'static str,
    /// Whether batches are padded for attention (then the batch budget counts padding).
    pub pads: bool,
    /// Width of the token vectors.
    pub hidden_size: usize,
    /// Token ids must be below this.
    pub vocab_size: usize,
    /// Whether a sequence of no tokens can be run (a bag of token vectors: its mean is zeros).
    /// A transformer cannot attend over nothing: such inputs are refused before batching.
    pub empty_sequences: bool,
}

/// What a backend says about a model it was shown.
#[derive(Debug, Clone)]
pub enum Assessment {
    /// It can serve the model.
    Serves {
        /// Architecture and variant, in words.
        architecture: String,
        /// The facts that decided it.
        evidence: Vec<Evidence>,
        /// Things to check (served anyway), such as a config key the tensors contradict.
        findings: Vec<Finding>,
        /// The longest input, in tokens, its position scheme supports (`None`: unbounded). The
        /// one place the model's maximum input length comes from: the plan caps it further.
        max_positions: Option<usize>,
        /// How the architecture's outputs are pooled when the model has no pooling
        /// configuration (decoders: the last token); `None`: the model must say.
        pooling: Option<ImpliedPooling>,
    },
    /// It cannot serve the model.
    Declines {
        /// Why; at least one finding.
        reasons: Vec<Finding>,
    },
}

/// A pooling an architecture implies, and why, in words for the finding that reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImpliedPooling {
    /// The pooling.
    pub pooling: crate::Pooling,
    /// Why the architecture implies it.
    pub why: &'static str,
}

/// Everything a backend needs to load a model.
#[derive(Debug, Clone)]
pub struct LoadRequest<'a> {
    /// The inspected model directory.
    pub inspection: &'a ModelInspection,
    /// Compute dtype.
    pub dtype: DType,
    /// Device to load on.
    pub device: Device,
    /// The attention kernel chosen for this model; `None` means the backend's own default.
    pub kernel: Option<Arc<dyn AttentionKernel>>,
}

impl LoadRequest<'_> {
    /// The parsed config.json, or the error naming it.
    pub fn config(&self) -> Result<&ModelConfig, LoadError> {
        self.inspection.config.as_ref().ok_or_else(|| LoadError::MissingFile {
            file: self.inspection.config_path(),
            what: "config.json",
            fix: "add the model's config.json".into(),
        })
    }

    /// Opens the weights the inspection listed (safetensors memory-mapped) in the requested
    /// dtype, returning the builder and the file to name in errors.
    pub fn var_builder(&self) -> Result<(VarBuilder<'static>, PathBuf), LoadError> {
        let inspection = self.inspection;
        let index = inspection.weights.as_ref().ok_or_else(|| LoadError::MissingFile {
            file: inspection.root.join("model.safetensors"),
            what: "the model weights",
            fix: "add model.safetensors (or pytorch_model.bin)".into(),
        })?;
        let file = index.display_file();
        let vb = match index.format {
            WeightsFormat::Safetensors | WeightsFormat::ShardedSafetensors => {
                // SAFETY: the files are mapped read-only; tessera never writes them, and a model
                // directory rewritten while served is outside what any server can defend.
                unsafe { VarBuilder::from_mmaped_safetensors(&index.files, self.dtype, &self.device) }
            }
            WeightsFormat::PyTorch => VarBuilder::from_pth(&index.files[0], self.dtype, &self.device),
        }
        .map_err(|e| LoadError::from_candle(&file, e))?;
        Ok((vb, file))
    }
}

/// A backend crate's one exported value: its name, which models it can serve, and a loader.
pub trait BackendFactory: std::fmt::Debug + Send + Sync + 'static {
    /// Unique, stable name (`bert`, `jina-bert`, `flash`), used by `--backend`.
    fn name(&self) -> &'static str;

    /// Decides from evidence in the inspection whether this backend can serve the model.
    fn assess(&self, inspection: &ModelInspection) -> Assessment;

    /// Loads the model. Called only after [`BackendFactory::assess`] said it serves it.
    fn load(&self, request: &LoadRequest<'_>) -> Result<Box<dyn Backend>, LoadError>;
}
