//! tessera's vocabulary: the types every other crate speaks.
//!
//! - [`TextTokenizer`] turns text into [`Encoded`] token ids with sentence-transformers'
//!   truncation rules.
//! - [`Batch`] packs several inputs into one token stream with [`SeqOffsets`].
//! - A [`Backend`] runs a batch and returns packed token vectors; [`Pooling`] and
//!   [`EmbeddingHead`] turn them into sentence embeddings.
//! - Each backend crate exports a [`BackendFactory`]; the [`Registry`] asks each one to assess a
//!   [`ModelInspection`] and picks the first that can serve it, with the [`Evidence`].
//! - [`AttentionKernel`] is the only part of a model that sees sequence boundaries.
//!
//! ```
//! use tessera_core::{Batch, Pooling};
//! use candle_core::{Device, Tensor};
//!
//! let batch = Batch::from_sequences([(&[101u32, 7, 102][..], &[0u32, 0, 0][..]), (&[101, 102][..], &[0, 0][..])]);
//! let hidden = Tensor::arange(0f32, 10.0, &Device::Cpu)?.reshape((5, 2))?;
//! let pooled = Pooling::Mean.pool(&hidden, &batch.seqs)?;
//! assert_eq!(pooled.to_vec2::<f32>()?, vec![vec![2.0, 3.0], vec![7.0, 8.0]]);
//! # Ok::<(), candle_core::Error>(())
//! ```

mod activation;
pub mod attention;
mod backend;
mod batch;
pub mod chat;
mod classify;
pub mod colbert;
mod disentangled;
mod error;
mod expect;
pub mod gelu;
mod head;
pub mod inspection;
mod layer_norm;
pub mod layers;
mod lexical;
mod multi_vector;
mod pooling;
pub mod quant;
mod registry;
pub mod rotary;
pub mod sentencepiece;
pub mod simd;
mod splade;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod tokenize;
pub mod wordpiece;

pub use activation::HiddenAct;
pub use attention::{AttentionKernel, Mask, PaddedAttention, PositionBias, RelativeBias, Scoring};
pub use backend::{Assessment, Backend, BackendDescription, BackendFactory, ImpliedPooling, LoadRequest};
pub use batch::{Batch, SeqOffsets};
pub use classify::{sigmoid, softmax, token_classifier, ClassifierHead, ClassifierSpec, HeadKind};
pub use colbert::{ColbertEncoder, ColbertSide};
pub use disentangled::{DisentangledBias, DisentangledTerms, RelativeColumns};
pub use error::{BackendError, LoadError};
pub use expect::{check_tensors, layers_in_weights, Dim, ExpectedTensor, ROTARY_BUFFER};
pub use head::{finish_embedding, int8_output, DenseActivation, EmbeddingHead, PPLX_MODEL_TYPE};
pub use inspection::{EncoderLayout, Evidence, EvidenceSource, Finding, ModelInspection, Severity, WORD_EMBEDDINGS};
pub use lexical::{lexical_layer, unused_token_ids, LexicalHead, LexicalLayer, LexicalWeights, SPARSE_LINEAR};
pub use multi_vector::{multi_vector_layer, MultiVectorHead, COLBERT_LINEAR};
pub use pooling::{llama_bidirec_pooling, Pooling, PoolingFileError, LLAMA_BIDIREC_MODEL_TYPE};
pub use registry::{Chosen, Registry, SelectError, Selection};
pub use splade::{SpladeHead, SpladeSpec};
pub use tokenize::{
    build_from_slow_files, ChatInputs, Encoded, SlowFilesBuild, TextTokenizer, Token, TokenizeError, TokenizerSource,
    TruncationDirection,
};
