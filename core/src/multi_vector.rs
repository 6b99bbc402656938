//! Multi-vector (ColBERT) output: a vector for every token, as late-interaction retrieval
//! compares them.
//!
//! - BGE-M3's third output beside the dense vector and the lexical weights: a linear layer with
//!   bias over the last hidden state of every token but the first, normalized unless asked not
//!   to (FlagEmbedding's `BGEM3FlagModel`: `colbert_linear(h[:, 1:])`, padding dropped, then
//!   `normalize`). The layer is saved beside the model as `colbert_linear.pt` (a PyTorch state
//!   dict: `weight` `[out, hidden]`, `bias` `[out]`; `out` is the hidden size unless trained with
//!   another `colbert_dim`).
//! - PyLate's ColBERT models: their Dense modules over every token, then a query's every vector
//!   and a document's but those of its skiplist's tokens (see [`crate::colbert`]).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::batch::Batch;
use crate::colbert::ColbertSide;
use crate::error::LoadError;
use crate::head::EmbeddingHead;
use crate::inspection::{ColbertSettings, ModelInspection};

/// The file FlagEmbedding saves the multi-vector layer in, in the model's directory.
pub const COLBERT_LINEAR: &str = "colbert_linear.pt";

/// The multi-vector layer's file, if the model has one.
pub fn multi_vector_layer(inspection: &ModelInspection) -> Option<PathBuf> {
    let file = inspection.root.join(COLBERT_LINEAR);
    file.is_file().then_some(file)
}

/// The multi-vector layers, loaded.
#[derive(Debug)]
pub enum MultiVectorHead {
    /// BGE-M3's `colbert_linear`, over every token but the first.
    FlagEmbedding {
        /// `[hidden, out]`.
        weight: Tensor,
        /// `[out]`.
        bias: Tensor,
    },
    /// PyLate's Dense modules over every token; documents leave out `skiplist`'s tokens.
    PyLate {
        /// The Dense modules (f32, on the CPU).
        dense: EmbeddingHead,
        /// Sorted token ids.
        skiplist: Vec<u32>,
    },
}

impl MultiVectorHead {
    /// Loads `file` for a model of `hidden` features, naming the file and tensor when they do
    /// not fit.
    pub fn load(file: &Path, hidden: usize) -> Result<Self, LoadError> {
        let invalid = |reason: String| LoadError::InvalidValue {
            file: file.to_path_buf(),
            key: "weight".into(),
            value: COLBERT_LINEAR.into(),
            reason,
        };
        let tensors = candle_core::pickle::read_all(file).map_err(|e| LoadError::from_candle(file, e))?;
        let get = |name: &str| {
            tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| invalid(format!("no `{name}` tensor: FlagEmbedding saves `weight` and `bias`")))
        };
        let (weight, bias) = (get("weight")?, get("bias")?);
        let out = match weight.dims() {
            &[out, inputs] if inputs == hidden => out,
            dims => {
                return Err(invalid(format!(
                    "`weight` is {dims:?}, where a layer over the model's {hidden} features is [out, {hidden}]"
                )))
            }
        };
        if bias.dims() != [out] {
            return Err(invalid(format!(
                "`bias` is {:?}, where `weight` has {out} rows",
                bias.dims()
            )));
        }
        Self::new(&weight, &bias).map_err(|e| LoadError::from_candle(file, e))
    }

    /// BGE-M3's layer of `weight` `[out, hidden]` (as PyTorch stores it) and `bias` `[out]`.
    pub fn new(weight: &Tensor, bias: &Tensor) -> candle_core::Result<Self> {
        Ok(Self::FlagEmbedding {
            weight: weight
                .to_dtype(DType::F32)?
                .to_device(&Device::Cpu)?
                .t()?
                .contiguous()?,
            bias: bias.to_dtype(DType::F32)?.to_device(&Device::Cpu)?,
        })
    }

    /// A PyLate model's Dense modules (`settings.dense`, over `hidden` features), documents
    /// leaving out the token ids `skiplist`.
    pub fn pylate(settings: &ColbertSettings, hidden: usize, skiplist: Vec<u32>) -> Result<Self, LoadError> {
        if let Some(first) = settings.dense.first().filter(|d| d.in_features != hidden) {
            return Err(LoadError::InvalidValue {
                file: first.dir.join("config.json"),
                key: "in_features".into(),
                value: first.in_features.to_string(),
                reason: format!("the model's token vectors have {hidden} features"),
            });
        }
        Ok(Self::PyLate {
            dense: EmbeddingHead::load(&settings.dense, &Device::Cpu)?,
            skiplist,
        })
    }

    /// Each sequence's vectors, unnormalized, for `hidden` `[total_tokens, hidden]`; only the
    /// sequences `wanted` gives a side are computed (the others get none). BGE-M3 gives one per
    /// token after the first, whatever the side. The tokens kept are chosen first and projected
    /// together, in one product.
    pub fn forward(
        &self,
        hidden: &Tensor,
        batch: &Batch,
        wanted: impl Fn(usize) -> Option<ColbertSide>,
    ) -> candle_core::Result<Vec<Vec<Vec<f32>>>> {
        let mut rows: Vec<u32> = Vec::new();
        let mut counts = Vec::with_capacity(batch.seqs.len());
        for (i, range) in batch.seqs.ranges().enumerate() {
            let before = rows.len();
            match (self, wanted(i)) {
                (_, None) => {}
                (Self::FlagEmbedding { .. }, Some(_)) => rows.extend((range.start + 1..range.end).map(|t| t as u32)),
                (Self::PyLate { .. }, Some(ColbertSide::Query)) => rows.extend(range.map(|t| t as u32)),
                (Self::PyLate { skiplist, .. }, Some(ColbertSide::Document)) => rows.extend(
                    range
                        .filter(|&t| skiplist.binary_search(&batch.input_ids[t]).is_err())
                        .map(|t| t as u32),
                ),
            }
            counts.push(rows.len() - before);
        }
        if rows.is_empty() {
            return Ok(vec![Vec::new(); counts.len()]);
        }
        let n = rows.len();
        let tokens = hidden
            .index_select(&Tensor::from_vec(rows, n, hidden.device())?, 0)?
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?;
        let mut vectors = match self {
            Self::FlagEmbedding { weight, bias } => tokens.matmul(weight)?.broadcast_add(bias)?,
            Self::PyLate { dense, .. } => dense.forward(&tokens)?,
        }
        .to_vec2::<f32>()?
        .into_iter();
        Ok(counts.into_iter().map(|k| vectors.by_ref().take(k).collect()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SeqOffsets;

    #[test]
    fn every_token_but_the_first_of_each_wanted_sequence_is_projected() {
        // Two features in, three out: y = W x + b.
        let weight = Tensor::new(&[[1f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &Device::Cpu).unwrap();
        let bias = Tensor::new(&[0.5f32, 0.0, -1.0], &Device::Cpu).unwrap();
        let head = MultiVectorHead::new(&weight, &bias).unwrap();
        let hidden = Tensor::new(
            &[[9f32, 9.0], [1.0, 2.0], [3.0, 4.0], [7.0, 7.0], [5.0, 6.0]],
            &Device::Cpu,
        )
        .unwrap();
        let batch = Batch {
            input_ids: vec![0, 1, 2, 0, 3],
            token_type_ids: vec![0; 5],
            position_ids: vec![0, 1, 2, 0, 1],
            seqs: SeqOffsets::from_lengths([3, 2]),
            tasks: Vec::new(),
        };
        let all = head.forward(&hidden, &batch, |_| Some(ColbertSide::Document)).unwrap();
        assert_eq!(
            all,
            [
                vec![vec![1.5, 2.0, 2.0], vec![3.5, 4.0, 6.0]],
                vec![vec![5.5, 6.0, 10.0]]
            ]
        );
        let first = head
            .forward(&hidden, &batch, |i| (i == 0).then_some(ColbertSide::Query))
            .unwrap();
        assert_eq!(first[1], Vec::<Vec<f32>>::new());
        assert_eq!(first[0], all[0]);
    }

    #[test]
    fn a_layer_that_does_not_fit_the_model_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join(COLBERT_LINEAR);
        assert!(MultiVectorHead::load(&missing, 4).is_err());
        std::fs::write(&missing, b"not a pickle").unwrap();
        let err = MultiVectorHead::load(&missing, 4).unwrap_err().to_string();
        assert!(err.contains(COLBERT_LINEAR), "{err}");
    }
}
