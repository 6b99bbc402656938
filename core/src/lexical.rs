//! BGE-M3's lexical weights, its "sparse" output beside the dense vector: a linear layer
//! `hidden -> 1` with bias over every token's last hidden state, then `relu`; a text's weight
//! for a token id is the largest of its tokens with that id, leaving out the tokenizer's
//! `cls`, `eos`, `pad` and `unk` tokens and weights that are not positive (FlagEmbedding's
//! `BGEM3FlagModel`). The layer is saved beside the model as `sparse_linear.pt` (a PyTorch
//! state dict: `weight` `[1, hidden]`, `bias` `[1]`).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;

use crate::batch::Batch;
use crate::error::LoadError;
use crate::inspection::ModelInspection;
use crate::LoadRequest;

/// The file FlagEmbedding saves the lexical layer in, in the model's directory.
pub const SPARSE_LINEAR: &str = "sparse_linear.pt";

/// The special tokens FlagEmbedding leaves out of the lexical weights.
const UNUSED: [&str; 4] = ["cls_token", "eos_token", "pad_token", "unk_token"];

/// Where a model keeps its lexical layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexicalLayer {
    /// FlagEmbedding's `sparse_linear.pt` beside the model (BGE-M3).
    File(PathBuf),
    /// A token classifier with one output in the model's own weights (`classifier.weight`
    /// `[1, hidden]`, `classifier.bias`): gte-multilingual-base's sparse head, which its own code
    /// (`GTEEmbedding`) runs as `relu(classifier(h))` over every token.
    TokenClassifier,
}

/// The token classifier's tensors.
const TOKEN_CLASSIFIER: &str = "classifier";

/// The lexical layer of the model `inspection` describes, if it has one.
pub fn lexical_layer(inspection: &ModelInspection) -> Option<LexicalLayer> {
    let file = inspection.root.join(SPARSE_LINEAR);
    if file.is_file() {
        return Some(LexicalLayer::File(file));
    }
    let rows = inspection
        .weights
        .as_ref()?
        .get(&format!("{TOKEN_CLASSIFIER}.weight"))?
        .shape
        .first()
        .copied();
    (crate::classify::token_classifier(inspection) && rows == Some(1)).then_some(LexicalLayer::TokenClassifier)
}

/// One text's lexical weights: `(token id, weight)`, by id, every weight positive.
pub type LexicalWeights = Vec<(u32, f32)>;

/// The lexical layer, loaded.
#[derive(Debug)]
pub struct LexicalHead {
    /// `[hidden, 1]`.
    weight: Tensor,
    bias: f32,
    /// Token ids never weighted.
    unused: Vec<u32>,
}

impl LexicalHead {
    /// Loads `file` for a model of `hidden` features; `unused` are the ids left out.
    pub fn load(file: &Path, hidden: usize, unused: Vec<u32>) -> Result<Self, LoadError> {
        let err = |e| LoadError::from_candle(file, e);
        let vb = VarBuilder::from_pth(file, DType::F32, &Device::Cpu).map_err(err)?;
        let weight = vb.get((1, hidden), "weight").map_err(err)?;
        let bias = vb.get(1, "bias").and_then(|b| b.to_vec1::<f32>()).map_err(err)?[0];
        Self::new(&weight, bias, unused).map_err(err)
    }

    /// Loads the one-output token classifier of the model's own weights (`request`'s).
    pub fn load_token_classifier(
        request: &LoadRequest<'_>,
        hidden: usize,
        unused: Vec<u32>,
    ) -> Result<Self, LoadError> {
        let request = LoadRequest {
            dtype: DType::F32,
            device: Device::Cpu,
            ..request.clone()
        };
        let (vb, file) = request.var_builder()?;
        let err = |e| LoadError::from_candle(&file, e);
        let layer = vb.pp(TOKEN_CLASSIFIER);
        let weight = layer.get((1, hidden), "weight").map_err(err)?;
        let bias = layer.get(1, "bias").and_then(|b| b.to_vec1::<f32>()).map_err(err)?[0];
        Self::new(&weight, bias, unused).map_err(err)
    }

    /// The layer of `weight` `[1, hidden]` (as PyTorch stores it) and `bias`.
    pub fn new(weight: &Tensor, bias: f32, unused: Vec<u32>) -> candle_core::Result<Self> {
        Ok(Self {
            weight: weight.to_dtype(DType::F32)?.t()?.contiguous()?,
            bias,
            unused,
        })
    }

    /// Each sequence's `(token id, weight)` pairs, by id, for `hidden` `[total_tokens, hidden]`.
    pub fn forward(&self, hidden: &Tensor, batch: &Batch) -> candle_core::Result<Vec<LexicalWeights>> {
        let hidden = hidden.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        let weights = hidden.matmul(&self.weight)?.flatten_all()?.to_vec1::<f32>()?;
        Ok((0..batch.seqs.len())
            .map(|i| {
                let range = batch.seqs.range(i);
                let mut by_id = std::collections::BTreeMap::<u32, f32>::new();
                for (&id, &w) in batch.input_ids[range.clone()].iter().zip(&weights[range]) {
                    let w = (w + self.bias).max(0.0);
                    if w > 0.0 && !self.unused.contains(&id) {
                        let slot = by_id.entry(id).or_insert(0.0);
                        *slot = slot.max(w);
                    }
                }
                by_id.into_iter().collect()
            })
            .collect())
    }
}

/// The ids of the `cls`, `eos`, `pad` and `unk` tokens the model's tokenizer files name
/// (special_tokens_map.json, else tokenizer_config.json), looked up with `token_id`.
pub fn unused_token_ids(root: &Path, token_id: impl Fn(&str) -> Option<u32>) -> Vec<u32> {
    let mut ids: Vec<u32> = UNUSED
        .iter()
        .filter_map(|key| special_token(root, key))
        .filter_map(|token| token_id(&token))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The special token the model's tokenizer files name for `key` (`mask_token`...):
/// special_tokens_map.json first, else tokenizer_config.json, as transformers reads them; a
/// string or an AddedToken's `content`.
pub(crate) fn special_token(root: &Path, key: &str) -> Option<String> {
    let read = |name: &str| -> Option<serde_json::Map<String, Value>> {
        serde_json::from_slice(&std::fs::read(root.join(name)).ok()?).ok()
    };
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    };
    ["special_tokens_map.json", "tokenizer_config.json"]
        .iter()
        .find_map(|name| read(name)?.get(key).and_then(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unused_tokens_come_from_the_tokenizer_files_in_transformers_order() {
        let dir = tempfile::tempdir().unwrap();
        // special_tokens_map.json first (an AddedToken dict too), tokenizer_config.json for the rest.
        std::fs::write(
            dir.path().join("special_tokens_map.json"),
            r#"{"cls_token": {"content": "<s>", "lstrip": false}, "unk_token": "<unk>"}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"cls_token": "[CLS]", "eos_token": "</s>", "pad_token": "<pad>", "mask_token": "<mask>"}"#,
        )
        .unwrap();
        let vocab = ["<s>", "<pad>", "</s>", "<unk>", "[CLS]", "<mask>"];
        let id = |t: &str| vocab.iter().position(|v| *v == t).map(|i| i as u32);
        assert_eq!(unused_token_ids(dir.path(), id), [0, 1, 2, 3]);
        assert!(unused_token_ids(&dir.path().join("missing"), id).is_empty());
    }
}
