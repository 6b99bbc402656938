//! BGE-M3's multi-vector (ColBERT) output, its third beside the dense vector and the lexical
//! weights: a linear layer with bias over the last hidden state of every token but the first,
//! one vector per token, normalized unless asked not to (FlagEmbedding's `BGEM3FlagModel`:
//! `colbert_linear(h[:, 1:])`, padding dropped, then `normalize`). The layer is saved beside the
//! model as `colbert_linear.pt` (a PyTorch state dict: `weight` `[out, hidden]`, `bias` `[out]`;
//! `out` is the hidden size unless trained with another `colbert_dim`).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::batch::Batch;
use crate::error::LoadError;
use crate::inspection::ModelInspection;

/// The file FlagEmbedding saves the multi-vector layer in, in the model's directory.
pub const COLBERT_LINEAR: &str = "colbert_linear.pt";

/// The multi-vector layer's file, if the model has one.
pub fn multi_vector_layer(inspection: &ModelInspection) -> Option<PathBuf> {
    let file = inspection.root.join(COLBERT_LINEAR);
    file.is_file().then_some(file)
}

/// The multi-vector layer, loaded.
#[derive(Debug)]
pub struct MultiVectorHead {
    /// `[hidden, out]`.
    weight: Tensor,
    /// `[out]`.
    bias: Tensor,
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

    /// The layer of `weight` `[out, hidden]` (as PyTorch stores it) and `bias` `[out]`.
    pub fn new(weight: &Tensor, bias: &Tensor) -> candle_core::Result<Self> {
        Ok(Self {
            weight: weight
                .to_dtype(DType::F32)?
                .to_device(&Device::Cpu)?
                .t()?
                .contiguous()?,
            bias: bias.to_dtype(DType::F32)?.to_device(&Device::Cpu)?,
        })
    }

    /// Each sequence's vectors, one per token after its first, unnormalized, for `hidden`
    /// `[total_tokens, hidden]`; only the sequences `wanted` says are computed (the others get
    /// none).
    pub fn forward(
        &self,
        hidden: &Tensor,
        batch: &Batch,
        wanted: impl Fn(usize) -> bool,
    ) -> candle_core::Result<Vec<Vec<Vec<f32>>>> {
        (0..batch.seqs.len())
            .map(|i| {
                let range = batch.seqs.range(i);
                if !wanted(i) || range.len() < 2 {
                    return Ok(Vec::new());
                }
                hidden
                    .narrow(0, range.start + 1, range.len() - 1)?
                    .to_device(&Device::Cpu)?
                    .to_dtype(DType::F32)?
                    .matmul(&self.weight)?
                    .broadcast_add(&self.bias)?
                    .to_vec2()
            })
            .collect()
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
        let all = head.forward(&hidden, &batch, |_| true).unwrap();
        assert_eq!(
            all,
            [
                vec![vec![1.5, 2.0, 2.0], vec![3.5, 4.0, 6.0]],
                vec![vec![5.5, 6.0, 10.0]]
            ]
        );
        let first = head.forward(&hidden, &batch, |i| i == 0).unwrap();
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
