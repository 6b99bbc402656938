//! SPLADE: `max over tokens of log(1 + relu(MLM logits))`, from a `*ForMaskedLM` checkpoint's
//! prediction head (`cls.predictions.transform` + a decoder tied to the word embeddings).

use crate::layers::LayerNorm;
use candle_core::{DType, Module, Tensor, D};

use crate::layers::Linear;

use crate::batch::SeqOffsets;
use crate::error::LoadError;
use crate::inspection::{Finding, ModelInspection, WORD_EMBEDDINGS};
use crate::{HiddenAct, LoadRequest};

/// Where the MLM head's tensors are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpladeSpec {
    /// The encoder's prefix (the word embeddings, which the decoder is tied to, sit under it).
    pub prefix: String,
    /// Hidden size.
    pub hidden: usize,
    /// Vocabulary size: the width of a SPLADE vector.
    pub vocab: usize,
    /// `cls.predictions.decoder.weight` when the checkpoint stores it untied.
    pub decoder: Option<String>,
    /// The decoder bias (`cls.predictions.bias` or `cls.predictions.decoder.bias`).
    pub bias: String,
}

const TRANSFORM: &str = "cls.predictions.transform";

impl SpladeSpec {
    /// The head, or an error finding naming the missing tensor (SPLADE needs a MaskedLM head).
    pub fn detect(inspection: &ModelInspection) -> Result<SpladeSpec, Box<Finding>> {
        let missing = |name: &str, file: std::path::PathBuf| {
            Box::new(
                Finding::error(
                    "splade-needs-mlm-head",
                    format!("--pooling splade needs the masked-LM head, but `{name}` is not in the weights"),
                )
                .in_file(file)
                .about(name.to_string())
                .fix("serve SPLADE from the *ForMaskedLM checkpoint (with its cls.predictions.* tensors)"),
            )
        };
        let Some(weights) = &inspection.weights else {
            return Err(missing(WORD_EMBEDDINGS, inspection.root.join("model.safetensors")));
        };
        let file = weights.display_file();
        let prefix = weights
            .prefix_before(WORD_EMBEDDINGS)
            .ok_or_else(|| missing(WORD_EMBEDDINGS, file.clone()))?;
        let embeddings = weights
            .get(&format!("{prefix}{WORD_EMBEDDINGS}"))
            .map(|t| t.shape.clone())
            .unwrap_or_default();
        let [vocab, hidden] = embeddings[..] else {
            return Err(missing(WORD_EMBEDDINGS, file));
        };
        for name in [
            format!("{TRANSFORM}.dense.weight"),
            format!("{TRANSFORM}.LayerNorm.weight"),
        ] {
            if weights.get(&name).is_none() {
                return Err(missing(&name, file));
            }
        }
        let bias = ["cls.predictions.bias", "cls.predictions.decoder.bias"]
            .into_iter()
            .find(|n| weights.get(n).is_some())
            .ok_or_else(|| missing("cls.predictions.bias", file.clone()))?
            .to_string();
        let decoder = Some("cls.predictions.decoder.weight".to_string()).filter(|n| weights.get(n).is_some());
        Ok(SpladeSpec {
            prefix,
            hidden,
            vocab,
            decoder,
            bias,
        })
    }
}

/// The loaded head.
#[derive(Debug)]
pub struct SpladeHead {
    transform: Linear,
    act: HiddenAct,
    norm: LayerNorm,
    decoder: Linear,
}

impl SpladeHead {
    /// Loads the head in f32.
    pub fn load(request: &LoadRequest<'_>, spec: &SpladeSpec) -> Result<Self, LoadError> {
        let config = request.config()?;
        let act = config.hidden_act()?;
        let eps = config.f64("layer_norm_eps").unwrap_or(1e-12);
        let request = LoadRequest {
            dtype: DType::F32,
            ..request.clone()
        };
        let (vb, file) = request.var_builder()?;
        let err = |e| LoadError::from_candle(&file, e);
        let (h, v) = (spec.hidden, spec.vocab);
        let transform = crate::layers::linear(&vb.pp(TRANSFORM), h, h, "dense").map_err(err)?;
        let norm = crate::layers::layer_norm(&vb.pp(TRANSFORM), h, eps, "LayerNorm").map_err(err)?;
        let weight = match &spec.decoder {
            Some(name) => vb.get((v, h), name),
            None => vb.get((v, h), &format!("{}{WORD_EMBEDDINGS}", spec.prefix)),
        }
        .map_err(err)?;
        let bias = vb.get(v, &spec.bias).map_err(err)?;
        Ok(Self {
            transform,
            act,
            norm,
            decoder: Linear::new(weight, Some(bias)).map_err(err)?,
        })
    }

    /// SPLADE vectors `[sequences, vocab]` from packed hidden states `[total_tokens, hidden]`.
    pub fn forward(&self, hidden: &Tensor, seqs: &SeqOffsets) -> candle_core::Result<Tensor> {
        let x = self.norm.forward(
            &self
                .act
                .apply(&self.transform.forward(&hidden.to_dtype(DType::F32)?)?)?,
        )?;
        // log(1 + relu(logits)), never negative, so max over a sequence's tokens is the pooling.
        let activations = (self.decoder.forward(&x)?.relu()? + 1.0)?.log()?;
        let pooled = seqs
            .ranges()
            .map(|r| activations.narrow(0, r.start, r.len())?.max_keepdim(D::Minus2))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::cat(&pooled, 0)
    }
}
