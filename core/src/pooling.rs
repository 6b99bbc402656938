//! Sentence-transformers pooling over a packed batch.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Tensor};
use serde::Serialize;

use crate::batch::SeqOffsets;
use crate::inspection::PoolingFile;

/// How token vectors become one sentence vector. Every mode sentence-transformers has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The first token's vector (`[CLS]`).
    Cls,
    /// The mean over all tokens, special tokens included.
    Mean,
    /// The component-wise maximum over all tokens.
    Max,
    /// The sum divided by the square root of the length.
    MeanSqrtLenTokens,
    /// A mean weighted by position (1, 2, ... n), as in SGPT.
    #[serde(rename = "weightedmean")]
    WeightedMean,
    /// The last token's vector.
    #[serde(rename = "lasttoken")]
    LastToken,
}

/// The `--pooling` names and the `1_Pooling/config.json` key of each mode.
const MODES: &[(Pooling, &str, &str)] = &[
    (Pooling::Cls, "cls", "pooling_mode_cls_token"),
    (Pooling::Mean, "mean", "pooling_mode_mean_tokens"),
    (Pooling::Max, "max", "pooling_mode_max_tokens"),
    (
        Pooling::MeanSqrtLenTokens,
        "mean_sqrt_len_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
    ),
    (
        Pooling::WeightedMean,
        "weightedmean",
        "pooling_mode_weightedmean_tokens",
    ),
    (Pooling::LastToken, "lasttoken", "pooling_mode_lasttoken"),
];

/// The `model_type` of NVIDIA's bidirectional Llama (`LlamaBidirectionalModel` and its
/// `*ForSequenceClassification`: llama-embed-nemotron, llama-nemotron-embed and -rerank), whose
/// config names its pooling (`pooling`) and divides a classifier's logits by `temperature`.
pub const LLAMA_BIDIREC_MODEL_TYPE: &str = "llama_bidirec";

/// The pooling NVIDIA's `LlamaBidirectionalConfig.pooling` names (`avg` when absent), and why;
/// the message for a value it does not: `weighted_avg` (a plain sum) or anything else.
pub fn llama_bidirec_pooling(given: Option<&serde_json::Value>) -> Result<(Pooling, &'static str), String> {
    match given.map(|v| v.as_str().ok_or(v)) {
        None => Ok((
            Pooling::Mean,
            "NVIDIA's LlamaBidirectionalConfig, whose `pooling` is `avg` by default",
        )),
        Some(Ok("avg")) => Ok((Pooling::Mean, "NVIDIA's LlamaBidirectionalConfig: `pooling: avg`")),
        Some(Ok("cls")) => Ok((Pooling::Cls, "NVIDIA's LlamaBidirectionalConfig: `pooling: cls`")),
        Some(Ok("last")) => Ok((Pooling::LastToken, "NVIDIA's LlamaBidirectionalConfig: `pooling: last`")),
        Some(other) => {
            let other = match other {
                Ok(name) => name.to_string(),
                Err(value) => value.to_string(),
            };
            Err(format!(
                "`pooling: {other}`: NVIDIA's bidirectional Llama pools by `avg`, `cls` or `last`, as tessera can; `{other}` is not served"
            ))
        }
    }
}

impl Pooling {
    /// The accepted `--pooling` values, for messages.
    pub fn supported_names() -> String {
        MODES.iter().map(|(_, name, _)| *name).collect::<Vec<_>>().join(", ")
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        MODES
            .iter()
            .find(|(p, _, _)| *p == self)
            .map(|(_, name, _)| *name)
            .unwrap_or("unknown")
    }

    /// Reads the mode from `1_Pooling/config.json`: exactly one `pooling_mode_*` key must be true.
    pub fn from_file(file: &PoolingFile) -> Result<Pooling, PoolingFileError> {
        // Newer sentence-transformers may also write `"pooling_mode": "mean"`.
        if let Some(name) = file.values.get("pooling_mode").and_then(|v| v.as_str()) {
            return name.parse().map_err(|_| PoolingFileError::Unknown {
                value: name.to_string(),
            });
        }
        let enabled: Vec<Pooling> = MODES
            .iter()
            .filter(|(_, _, key)| file.values.get(*key).and_then(|v| v.as_bool()) == Some(true))
            .map(|(p, _, _)| *p)
            .collect();
        match enabled.as_slice() {
            [one] => Ok(*one),
            [] => Err(PoolingFileError::NoMode),
            many => Err(PoolingFileError::Several {
                modes: many.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Pools `hidden` (`[total_tokens, hidden]`, packed as `seqs` says) into `[seqs, hidden]` f32.
    pub fn pool(self, hidden: &Tensor, seqs: &SeqOffsets) -> candle_core::Result<Tensor> {
        self.pool_skipping(hidden, seqs, &[])
    }

    /// Like [`Pooling::pool`], leaving out the first `skip[i]` tokens of sequence `i` (a prompt,
    /// when the pooling config says `include_prompt: false`; [CLS] and last-token pooling are
    /// unaffected). A missing entry means 0; at least the last token is always kept. A sequence
    /// of no tokens (a static embedding model's empty text) pools to zeros, as
    /// sentence-transformers' `EmbeddingBag` gives.
    pub fn pool_skipping(self, hidden: &Tensor, seqs: &SeqOffsets, skip: &[usize]) -> candle_core::Result<Tensor> {
        let hidden = hidden.to_dtype(DType::F32)?;
        let width = hidden.dim(1)?;
        let pooled = seqs
            .ranges()
            .enumerate()
            .map(|(i, range)| {
                let len = range.len();
                if len == 0 {
                    return Tensor::zeros(width, DType::F32, hidden.device());
                }
                let tokens = hidden.narrow(0, range.start, len)?;
                let skip = skip.get(i).copied().unwrap_or(0).min(len - 1);
                self.pool_one(&tokens, skip)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::stack(&pooled, 0)
    }

    /// `tokens`: `[len, hidden]` of one sequence, len >= 1; `skip` < len.
    fn pool_one(self, tokens: &Tensor, skip: usize) -> candle_core::Result<Tensor> {
        let len = tokens.dim(0)?;
        let kept = tokens.narrow(0, skip, len - skip)?;
        let n = (len - skip) as f64;
        match self {
            Pooling::Cls => tokens.get(0),
            Pooling::LastToken => tokens.get(len - 1),
            Pooling::Mean => kept.sum(0)? / n,
            Pooling::Max => kept.max(0),
            Pooling::MeanSqrtLenTokens => kept.sum(0)? / n.sqrt(),
            Pooling::WeightedMean => {
                // Weights are the tokens' 1-based positions in the whole sequence.
                let weights = Tensor::arange(skip as f32 + 1.0, len as f32 + 1.0, tokens.device())?.unsqueeze(1)?;
                let total = ((len * (len + 1)) - (skip * (skip + 1))) as f64 / 2.0;
                kept.broadcast_mul(&weights)?.sum(0)? / total
            }
        }
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Pooling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let normalized = s.trim().to_ascii_lowercase().replace('-', "_");
        let pooling = match normalized.as_str() {
            "cls" => Pooling::Cls,
            "mean" => Pooling::Mean,
            "max" => Pooling::Max,
            "mean_sqrt_len_tokens" | "mean_sqrt_len" => Pooling::MeanSqrtLenTokens,
            "weightedmean" | "weighted_mean" => Pooling::WeightedMean,
            "lasttoken" | "last_token" => Pooling::LastToken,
            _ => {
                return Err(format!(
                    "unknown pooling `{s}` (supported: {})",
                    Pooling::supported_names()
                ))
            }
        };
        Ok(pooling)
    }
}

/// What is wrong with a `1_Pooling/config.json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolingFileError {
    /// No `pooling_mode_*` key is true.
    #[error("no pooling_mode_* key is true")]
    NoMode,
    /// More than one mode is enabled (sentence-transformers would concatenate them).
    #[error("several pooling modes are enabled ({modes}); tessera serves one")]
    Several {
        /// The enabled modes.
        modes: String,
    },
    /// `pooling_mode` names an unknown mode.
    #[error("pooling_mode `{value}` is unknown")]
    Unknown {
        /// The value found.
        value: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn hidden() -> (Tensor, SeqOffsets) {
        // Two sequences: [[1,2],[3,4],[5,0]] and [[-1,7]].
        let data = [1f32, 2., 3., 4., 5., 0., -1., 7.];
        let t = Tensor::from_slice(&data, (4, 2), &Device::Cpu).unwrap();
        (t, SeqOffsets::from_lengths([3, 1]))
    }

    fn pooled(p: Pooling) -> Vec<Vec<f32>> {
        let (t, s) = hidden();
        p.pool(&t, &s).unwrap().to_vec2().unwrap()
    }

    #[test]
    fn a_sequence_without_tokens_pools_to_zeros_beside_the_others() {
        let (t, _) = hidden();
        let seqs = SeqOffsets::from_lengths([0, 3, 0, 1, 0]);
        for mode in [Pooling::Mean, Pooling::Cls, Pooling::LastToken, Pooling::Max] {
            let got = mode.pool(&t, &seqs).unwrap().to_vec2::<f32>().unwrap();
            assert_eq!(got[0], vec![0., 0.], "{mode}");
            assert_eq!(got[2], vec![0., 0.], "{mode}");
            assert_eq!(got[4], vec![0., 0.], "{mode}");
            assert_eq!(got[3], vec![-1., 7.], "{mode}");
        }
    }

    #[test]
    fn every_mode_matches_a_hand_computation() {
        assert_eq!(pooled(Pooling::Cls), vec![vec![1., 2.], vec![-1., 7.]]);
        assert_eq!(pooled(Pooling::LastToken), vec![vec![5., 0.], vec![-1., 7.]]);
        assert_eq!(pooled(Pooling::Mean), vec![vec![3., 2.], vec![-1., 7.]]);
        assert_eq!(pooled(Pooling::Max), vec![vec![5., 4.], vec![-1., 7.]]);
        let s3 = 3f32.sqrt();
        let m = pooled(Pooling::MeanSqrtLenTokens);
        assert!((m[0][0] - 9. / s3).abs() < 1e-6 && (m[0][1] - 6. / s3).abs() < 1e-6);
        // weights 1,2,3 over 6: (1+6+15)/6, (2+8+0)/6
        let w = pooled(Pooling::WeightedMean);
        assert!((w[0][0] - 22. / 6.).abs() < 1e-6 && (w[0][1] - 10. / 6.).abs() < 1e-6);
        assert_eq!(w[1], vec![-1., 7.]);
    }

    #[test]
    fn skipped_prompt_tokens_leave_the_pool() {
        let (t, s) = hidden();
        // Skip the first token of the 3-token sequence: mean of [3,4] and [5,0].
        let m: Vec<Vec<f32>> = Pooling::Mean.pool_skipping(&t, &s, &[1, 5]).unwrap().to_vec2().unwrap();
        assert_eq!(m, vec![vec![4., 2.], vec![-1., 7.]]);
        let c: Vec<Vec<f32>> = Pooling::Cls.pool_skipping(&t, &s, &[2]).unwrap().to_vec2().unwrap();
        assert_eq!(c[0], vec![1., 2.]);
        // Weighted: positions 2 and 3 -> (2*3 + 3*5)/5, (2*4 + 0)/5.
        let w: Vec<Vec<f32>> = Pooling::WeightedMean
            .pool_skipping(&t, &s, &[1])
            .unwrap()
            .to_vec2()
            .unwrap();
        assert!((w[0][0] - 21. / 5.).abs() < 1e-6 && (w[0][1] - 8. / 5.).abs() < 1e-6);
    }

    #[test]
    fn names_round_trip() {
        for (p, name, _) in MODES {
            assert_eq!(name.parse::<Pooling>().unwrap(), *p);
        }
        assert_eq!("last-token".parse::<Pooling>().unwrap(), Pooling::LastToken);
        assert!("splodge".parse::<Pooling>().is_err());
    }

    #[test]
    fn nvidia_pooling_names_map_to_modes_and_others_are_refused() {
        use serde_json::json;
        let mode = |v: Option<serde_json::Value>| llama_bidirec_pooling(v.as_ref()).map(|(p, _)| p);
        assert_eq!(mode(None), Ok(Pooling::Mean));
        assert_eq!(mode(Some(json!("avg"))), Ok(Pooling::Mean));
        assert_eq!(mode(Some(json!("cls"))), Ok(Pooling::Cls));
        assert_eq!(mode(Some(json!("last"))), Ok(Pooling::LastToken));
        assert!(mode(Some(json!("weighted_avg")))
            .unwrap_err()
            .contains("`weighted_avg` is not served"));
        assert!(mode(Some(json!(3))).unwrap_err().contains("`pooling: 3`"));
    }

    #[test]
    fn pooling_file_needs_exactly_one_mode() {
        let file = |json: serde_json::Value| PoolingFile {
            path: "1_Pooling/config.json".into(),
            values: json.as_object().unwrap().clone(),
        };
        let one = file(serde_json::json!({"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": false}));
        assert_eq!(Pooling::from_file(&one).unwrap(), Pooling::Mean);
        let none = file(serde_json::json!({"word_embedding_dimension": 384}));
        assert_eq!(Pooling::from_file(&none), Err(PoolingFileError::NoMode));
        let two = file(serde_json::json!({"pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": true}));
        assert!(matches!(
            Pooling::from_file(&two),
            Err(PoolingFileError::Several { .. })
        ));
    }
}
