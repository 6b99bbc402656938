//! Sequence classification heads (`*ForSequenceClassification`): BERT's pooler (tanh of a dense
//! layer on the `[CLS]` vector) followed by `classifier`, as `/predict` and `/rerank` need.

use crate::layers::Linear;
use candle_core::{DType, Module, Tensor};

use crate::batch::SeqOffsets;
use crate::error::LoadError;
use crate::inspection::{Finding, ModelInspection, WORD_EMBEDDINGS};
use crate::LoadRequest;

/// What the weights and config say about a classification head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifierSpec {
    /// Label names by index (`id2label`, or `LABEL_i`).
    pub labels: Vec<String>,
    /// The encoder's weight prefix; the pooler sits under it, `classifier.*` at the root.
    pub prefix: String,
    /// Hidden size.
    pub hidden: usize,
}

impl ClassifierSpec {
    /// `None` for embedding models; the head's description, or why it is unusable, otherwise.
    pub fn detect(inspection: &ModelInspection) -> Option<Result<ClassifierSpec, Box<Finding>>> {
        let weights = inspection.weights.as_ref()?;
        let classifier = weights.get("classifier.weight")?;
        let file = weights.display_file();
        let Some((labels_n, hidden)) = (match classifier.shape.as_slice() {
            [n, h] => Some((*n, *h)),
            _ => None,
        }) else {
            return Some(Err(Box::new(
                Finding::error(
                    "tensor-shape-mismatch",
                    format!(
                        "`classifier.weight` has shape {:?}; a [labels, hidden] matrix is expected",
                        classifier.shape
                    ),
                )
                .in_file(&file)
                .about("classifier.weight")
                .fix("re-save the model; the classifier is damaged"),
            )));
        };
        let prefix = weights.prefix_before(WORD_EMBEDDINGS).unwrap_or_default();
        for name in [
            format!("{prefix}pooler.dense.weight"),
            format!("{prefix}pooler.dense.bias"),
            "classifier.bias".to_string(),
        ] {
            if weights.get(&name).is_none() {
                return Some(Err(Box::new(
                    Finding::error(
                        "tensor-missing",
                        format!("a classifier needs `{name}`, which the weights lack"),
                    )
                    .in_file(&file)
                    .about(name)
                    .fix("re-save the complete *ForSequenceClassification checkpoint"),
                )));
            }
        }
        let config = inspection.config.as_ref();
        let mut labels: Vec<String> = (0..labels_n).map(|i| format!("LABEL_{i}")).collect();
        if let Some(map) = config.and_then(|c| c.get("id2label")).and_then(|v| v.as_object()) {
            for (index, name) in map {
                match (index.parse::<usize>(), name.as_str()) {
                    (Ok(i), Some(name)) if i < labels_n => labels[i] = name.to_string(),
                    _ => {
                        return Some(Err(Box::new(
                            Finding::error(
                                "id2label-invalid",
                                format!(
                                    "`id2label` entry {index:?} does not name one of the {labels_n} classifier outputs"
                                ),
                            )
                            .in_file(inspection.config_path())
                            .about("id2label")
                            .fix(format!("map \"0\"..\"{}\" to label names", labels_n.saturating_sub(1))),
                        )))
                    }
                }
            }
        }
        Some(Ok(ClassifierSpec { labels, prefix, hidden }))
    }
}

/// The loaded pooler and classifier.
#[derive(Debug)]
pub struct ClassifierHead {
    pooler: Linear,
    classifier: Linear,
}

impl ClassifierHead {
    /// Loads the head (f32) from the request's weights.
    pub fn load(request: &LoadRequest<'_>, spec: &ClassifierSpec) -> Result<Self, LoadError> {
        let request = LoadRequest {
            dtype: DType::F32,
            ..request.clone()
        };
        let (vb, file) = request.var_builder()?;
        let err = |e| LoadError::from_candle(&file, e);
        let h = spec.hidden;
        let n = spec.labels.len();
        let pooler = crate::layers::linear(
            &vb.pp(format!("{}pooler", spec.prefix).trim_start_matches('.')),
            h,
            h,
            "dense",
        )
        .map_err(err)?;
        let classifier = crate::layers::linear(&vb, h, n, "classifier").map_err(err)?;
        Ok(Self { pooler, classifier })
    }

    /// Logits `[sequences, labels]` from packed hidden states `[total_tokens, hidden]`.
    pub fn forward(&self, hidden: &Tensor, seqs: &SeqOffsets) -> candle_core::Result<Tensor> {
        let starts: Vec<u32> = seqs.ranges().map(|r| r.start as u32).collect();
        let starts = Tensor::from_vec(starts, seqs.len(), hidden.device())?;
        let cls = hidden.to_dtype(DType::F32)?.index_select(&starts, 0)?;
        let pooled = self.pooler.forward(&cls)?.tanh()?;
        self.classifier.forward(&pooled)
    }
}

/// Softmax that never overflows (logits like [-100, 50] give [~0, 1], not NaN).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| (e / sum) as f32).collect()
}

/// The logistic function, finite for any input.
pub fn sigmoid(logit: f32) -> f32 {
    let x = f64::from(logit);
    let s = if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        x.exp() / (1.0 + x.exp())
    };
    s as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable() {
        let p = softmax(&[-100.0, 50.0]);
        assert!(p.iter().all(|x| x.is_finite()));
        assert!((p[1] - 1.0).abs() < 1e-6 && p[0] < 1e-30);
        let p = softmax(&[1000.0, 1000.0]);
        assert_eq!(p, vec![0.5, 0.5]);
        assert!((sigmoid(-1000.0)).abs() < 1e-30 && (sigmoid(1000.0) - 1.0).abs() < 1e-7);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
    }
}
