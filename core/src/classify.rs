//! Sequence classification heads (`*ForSequenceClassification`), as `/predict` and `/rerank`
//! need: a hidden layer on the first token (BERT's pooler, RoBERTa's `classifier.dense`,
//! DistilBERT's `pre_classifier`; ModernBERT's `head`, on the first token or the mean) and the
//! output layer, decided from the tensors.

use crate::layers::{LayerNorm, Linear};
use crate::HiddenAct;
use candle_core::{DType, Module, Tensor};

use crate::batch::Batch;
use crate::error::LoadError;
use crate::inspection::{Finding, ModelInspection, WORD_EMBEDDINGS};
use crate::LoadRequest;

/// Which classification head a `*ForSequenceClassification` checkpoint has, from its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// BERT: `{prefix}pooler.dense` (tanh) on the first token, then `classifier`.
    Pooler,
    /// RoBERTa, XLM-RoBERTa, MPNet: `classifier.dense` (tanh) on the first token, then
    /// `classifier.out_proj`.
    DenseOutProj,
    /// ELECTRA: `classifier.dense` with GELU (not tanh) on the first token, then
    /// `classifier.out_proj`; told from RoBERTa's by the encoder's `electra.` prefix.
    DenseOutProjGelu,
    /// DistilBERT: `pre_classifier` (ReLU) on the first token, then `classifier`.
    PreClassifier,
    /// ModernBERT: `head.dense` (bias with `classifier_bias`), `classifier_activation`, then
    /// `head.norm` (LayerNorm, bias with `norm_bias`), on the first token or the mean of all
    /// (`classifier_pooling`), then `classifier`.
    PredictionHead,
    /// DeBERTa's `ContextPooler`: `pooler.dense` outside the encoder's prefix, activated by
    /// `pooler_hidden_act` (GELU by default), on the first token, then `classifier`.
    ContextPooler,
    /// EuroBERT's (`EuroBertForSequenceClassification`): `dense` and exact GELU, then
    /// `classifier`, both at the root beside the encoder (`model.`); on the first token
    /// (`classifier_pooling: bos`), the mean (`mean`), or on every token with the logits
    /// averaged (`late`, the default).
    DenseGelu,
    /// The decoders' (`Qwen3ForSequenceClassification`, `LlamaForSequenceClassification`...):
    /// `score` without bias on the last token that is not `pad_token_id`; no hidden layer.
    Score,
    /// A causal language model scored by sentence-transformers' `LogitScore`: the logit of the
    /// true token less that of the false one at the last token, from the output embedding
    /// (`lm_head`, or the word table it is tied to); Qwen3-Reranker as sentence-transformers
    /// runs it.
    LogitScore {
        /// The module's true and false tokens.
        score: crate::inspection::LogitScore,
        /// Whether the output embedding is the word table (no `lm_head` saved).
        tied: bool,
    },
}

impl HeadKind {
    /// The tensor whose rows are the labels (the output embedding, for LogitScore), and the
    /// hidden layer's tensor (both without `.weight`, relative to the weights' root).
    fn tensors(self, prefix: &str) -> (String, String) {
        let (labels, hidden) = match self {
            HeadKind::Pooler => ("classifier", format!("{prefix}pooler.dense")),
            HeadKind::DenseOutProj | HeadKind::DenseOutProjGelu => ("classifier.out_proj", "classifier.dense".into()),
            HeadKind::PreClassifier => ("classifier", "pre_classifier".into()),
            HeadKind::PredictionHead => ("classifier", PREDICTION_DENSE.into()),
            HeadKind::ContextPooler => ("classifier", CONTEXT_POOLER.into()),
            HeadKind::DenseGelu => ("classifier", EUROBERT_DENSE.into()),
            HeadKind::Score => (SCORE, String::new()),
            HeadKind::LogitScore { tied: false, .. } => (LM_HEAD, String::new()),
            HeadKind::LogitScore { tied: true, .. } => {
                return (
                    format!("{prefix}{}", DECODER_WORDS.trim_end_matches(".weight")),
                    String::new(),
                )
            }
        };
        (labels.to_string(), hidden)
    }

    /// In words, for logs and `/info`.
    pub fn describe(self) -> &'static str {
        match self {
            HeadKind::Pooler => "the pooler (tanh of a dense layer on the first token), then `classifier`",
            HeadKind::DenseOutProj => "`classifier.dense` (tanh) on the first token, then `classifier.out_proj`",
            HeadKind::DenseOutProjGelu => {
                "ELECTRA's `classifier.dense` (GELU) on the first token, then `classifier.out_proj`"
            }
            HeadKind::PreClassifier => "`pre_classifier` (ReLU) on the first token, then `classifier`",
            HeadKind::PredictionHead => {
                "ModernBERT's `head` (dense, `classifier_activation`, LayerNorm) on the first token or the mean (`classifier_pooling`), then `classifier`"
            }
            HeadKind::ContextPooler => {
                "DeBERTa's context pooler (`pooler.dense`, `pooler_hidden_act`) on the first token, then `classifier`"
            }
            HeadKind::DenseGelu => {
                "EuroBERT's `dense` (GELU) then `classifier`, on the first token, the mean, or every token with the logits averaged (`classifier_pooling`)"
            }
            HeadKind::Score => {
                "a decoder's `score` on the last token that is not the padding token (NVIDIA's bidirectional Llama: on the tokens its config's `pooling` names, the logits divided by its `temperature`)"
            }
            HeadKind::LogitScore { .. } => {
                "a causal language model's logit of the true token less the false token's at the last token (sentence-transformers' LogitScore)"
            }
        }
    }
}

/// ModernBERT's prediction head: its dense layer and the LayerNorm after the activation.
const PREDICTION_DENSE: &str = "head.dense";
const PREDICTION_NORM: &str = "head.norm";
/// DeBERTa's context pooler, at the root beside `classifier`.
const CONTEXT_POOLER: &str = "pooler.dense";
/// `problem_type` of a classifier whose labels are independent.
const MULTI_LABEL: &str = "multi_label_classification";
/// The prefix `ElectraForSequenceClassification` saves its encoder under.
const ELECTRA_PREFIX: &str = "electra.";
/// EuroBERT's hidden layer, at the root beside `classifier`.
const EUROBERT_DENSE: &str = "dense";
/// The decoders' output layer.
const SCORE: &str = "score";
/// The decoders' word table.
const DECODER_WORDS: &str = "embed_tokens.weight";
/// A causal language model's output embedding.
const LM_HEAD: &str = "lm_head";

/// What ModernBERT's config says about its prediction head.
struct PredictionConfig {
    dense_bias: bool,
    norm_bias: bool,
    mean: bool,
}

impl PredictionConfig {
    fn read(inspection: &ModelInspection) -> Self {
        let flag = |key: &str| {
            inspection
                .config
                .as_ref()
                .and_then(|c| c.get(key))
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
        };
        Self {
            dense_bias: flag("classifier_bias"),
            norm_bias: flag("norm_bias"),
            mean: inspection.config.as_ref().and_then(|c| c.str("classifier_pooling")) == Some("mean"),
        }
    }
}

/// What the weights and config say about a classification head.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierSpec {
    /// Label names by index (`id2label`, or `LABEL_i`).
    pub labels: Vec<String>,
    /// The encoder's weight prefix; BERT's pooler sits under it, the other heads at the root.
    pub prefix: String,
    /// Hidden size.
    pub hidden: usize,
    /// Which head.
    pub kind: HeadKind,
    /// The token vectors the head reads: the first token's, or (ModernBERT's
    /// `classifier_pooling: mean`) the mean.
    pub pooling: crate::Pooling,
    /// Whether the hidden layer has a bias (every head but ModernBERT's without `classifier_bias`).
    pub dense_bias: bool,
    /// ModernBERT's LayerNorm after the activation: `Some(has_bias)`; `None` for other heads.
    pub head_norm: Option<bool>,
    /// The decoders' `pad_token_id`: their head reads the last token that is not it.
    pub pad_token: Option<u32>,
    /// The head runs on every token and `pooling` (the mean) averages its logits (EuroBERT's
    /// `classifier_pooling: late`).
    pub late: bool,
    /// The labels are independent (`problem_type: multi_label_classification`): each scored by
    /// its own sigmoid, as transformers' text-classification pipeline scores them, not by a
    /// softmax over all.
    pub multi_label: bool,
    /// The logits are divided by it (NVIDIA's bidirectional Llama rerankers' `temperature`).
    pub temperature: Option<f32>,
}

/// A `LogitScore` reranker whose language-model logits are soft-capped (Gemma 2's
/// `final_logit_softcapping`, 30 when its config does not say): `cap * tanh(l / cap)` applies to
/// each of the two logits before they are subtracted, which the one-row head
/// (`E[true] - E[false]`) cannot compute, so it is refused rather than scored uncapped.
fn logits_soft_capped(inspection: &ModelInspection) -> Option<Box<Finding>> {
    const KEY: &str = "final_logit_softcapping";
    let config = inspection.config.as_ref()?;
    let cap = match config.values.get(KEY) {
        Some(serde_json::Value::Null) => return None,
        Some(value) => value.to_string(),
        None if config.str("model_type") == Some("gemma2") => "30 (Gemma 2's default)".into(),
        None => return None,
    };
    Some(Box::new(
        Finding::error(
            "config-value-unsupported",
            format!("`{KEY}`: {cap}: the language-model logits LogitScore reads are soft-capped, each before the false token's is subtracted, which tessera does not compute"),
        )
        .in_file(&config.path)
        .about(KEY)
        .fix("set it to null if the reranker was trained on uncapped logits; otherwise not servable yet"),
    ))
}

impl ClassifierSpec {
    /// `None` for embedding models; the head's description, or why it is unusable, otherwise.
    pub fn detect(inspection: &ModelInspection) -> Option<Result<ClassifierSpec, Box<Finding>>> {
        let weights = inspection.weights.as_ref()?;
        if let Some(score) = inspection.sentence_transformers.logit_score {
            if let Some(refused) = logits_soft_capped(inspection) {
                return Some(Err(refused));
            }
            return Some(Self::logit_score(weights, score));
        }
        if token_classifier(inspection) {
            return None;
        }
        // `score` over a decoder's word table (`embed_tokens`): an encoder's tensor of that name
        // is no decoder head.
        let decoder = weights.tensors.keys().any(|name| name.ends_with(DECODER_WORDS));
        let kind = if decoder && weights.get(&format!("{SCORE}.weight")).is_some() {
            HeadKind::Score
        } else if decoder
            && weights.get("classifier.weight").is_some()
            && weights.get(&format!("{EUROBERT_DENSE}.weight")).is_some()
        {
            HeadKind::DenseGelu
        } else if weights.get("classifier.out_proj.weight").is_some() {
            match weights.prefix_before(WORD_EMBEDDINGS).as_deref() {
                Some(ELECTRA_PREFIX) => HeadKind::DenseOutProjGelu,
                _ => HeadKind::DenseOutProj,
            }
        } else if weights.get("classifier.weight").is_some() && weights.get("head.dense.weight").is_some() {
            HeadKind::PredictionHead
        } else if weights.get("classifier.weight").is_some() && weights.get("pre_classifier.weight").is_some() {
            HeadKind::PreClassifier
        } else if weights.get("classifier.weight").is_some()
            && weights.get(&format!("{CONTEXT_POOLER}.weight")).is_some()
            && !weights.prefix_before(WORD_EMBEDDINGS).unwrap_or_default().is_empty()
        {
            // A pooler at the root while the encoder sits under a prefix (`deberta.`): BERT's
            // pooler is the encoder's own (`bert.pooler`).
            HeadKind::ContextPooler
        } else if weights.get("classifier.weight").is_some() {
            HeadKind::Pooler
        } else {
            return None;
        };
        Some(Self::read(inspection, weights, kind))
    }

    /// The `LogitScore` module over the output embedding, or the word table where the model
    /// ties it (no `lm_head` saved).
    fn logit_score(
        weights: &crate::inspection::WeightsIndex,
        score: crate::inspection::LogitScore,
    ) -> Result<ClassifierSpec, Box<Finding>> {
        let file = weights.display_file();
        let tied = weights.get(&format!("{LM_HEAD}.weight")).is_none();
        let prefix = weights.prefix_before(DECODER_WORDS);
        if tied && prefix.is_none() {
            return Err(Box::new(
                Finding::error(
                    "tensor-missing",
                    "modules.json scores with LogitScore, which reads a causal language model's `lm_head`; the weights have neither it nor a decoder word table (`embed_tokens`) it could be tied to",
                )
                .in_file(&file)
                .about(format!("{LM_HEAD}.weight"))
                .fix("serve the `*ForCausalLM` checkpoint the LogitScore module was saved with"),
            ));
        }
        let prefix = prefix.unwrap_or_default();
        let kind = HeadKind::LogitScore { score, tied };
        let (table, _) = kind.tensors(&prefix);
        let shape = weights
            .get(&format!("{table}.weight"))
            .map(|t| t.shape.clone())
            .unwrap_or_default();
        let [rows, hidden] = shape.as_slice() else {
            return Err(Box::new(
                Finding::error(
                    "tensor-shape-mismatch",
                    format!("`{table}.weight` has shape {shape:?}; a [vocabulary, hidden] matrix is expected"),
                )
                .in_file(&file)
                .about(format!("{table}.weight"))
                .fix("re-save the model; the weights are damaged"),
            ));
        };
        for token in std::iter::once(score.true_token).chain(score.false_token) {
            if token as usize >= *rows {
                return Err(Box::new(
                    Finding::error(
                        "logit-score-token-invalid",
                        format!("the LogitScore module reads token {token}, past the {rows} rows of `{table}.weight`"),
                    )
                    .in_file(&file)
                    .about("true_token_id")
                    .fix("set the ids of the model's own `yes`/`no` tokens in the LogitScore module's config.json"),
                ));
            }
        }
        Ok(ClassifierSpec {
            labels: vec!["LABEL_0".into()],
            prefix,
            hidden: *hidden,
            kind,
            pooling: crate::Pooling::LastToken,
            dense_bias: false,
            head_norm: None,
            pad_token: None,
            late: false,
            multi_label: false,
            temperature: None,
        })
    }

    fn read(
        inspection: &ModelInspection,
        weights: &crate::inspection::WeightsIndex,
        kind: HeadKind,
    ) -> Result<ClassifierSpec, Box<Finding>> {
        let file = weights.display_file();
        let prefix = weights.prefix_before(WORD_EMBEDDINGS).unwrap_or_default();
        let (labels_tensor, hidden_tensor) = kind.tensors(&prefix);
        let output = format!("{labels_tensor}.weight");
        let shape = weights.get(&output).map(|t| t.shape.clone()).unwrap_or_default();
        let [labels_n, hidden] = shape.as_slice() else {
            return Err(Box::new(
                Finding::error(
                    "tensor-shape-mismatch",
                    format!("`{output}` has shape {shape:?}; a [labels, hidden] matrix is expected"),
                )
                .in_file(&file)
                .about(output)
                .fix("re-save the model; the classifier is damaged"),
            ));
        };
        let (labels_n, hidden) = (*labels_n, *hidden);
        // The decoders' head is one unbiased layer: nothing else to find.
        let mut required = match kind {
            HeadKind::Score => Vec::new(),
            _ => vec![
                (format!("{hidden_tensor}.weight"), vec![hidden, hidden]),
                (format!("{labels_tensor}.bias"), vec![labels_n]),
            ],
        };
        let (dense_bias, norm, mean) = match kind {
            HeadKind::PredictionHead => {
                let config = PredictionConfig::read(inspection);
                (config.dense_bias, Some(config.norm_bias), config.mean)
            }
            HeadKind::Score => (false, None, false),
            _ => (true, None, false),
        };
        if dense_bias {
            required.push((format!("{hidden_tensor}.bias"), vec![hidden]));
        }
        if let Some(norm_bias) = norm {
            required.push((format!("{PREDICTION_NORM}.weight"), vec![hidden]));
            if norm_bias {
                required.push((format!("{PREDICTION_NORM}.bias"), vec![hidden]));
            }
        }
        for (name, want) in required {
            match weights.get(&name) {
                None => {
                    return Err(Box::new(
                        Finding::error(
                            "tensor-missing",
                            format!("a classifier needs `{name}`, which the weights lack"),
                        )
                        .in_file(&file)
                        .about(name)
                        .fix("re-save the complete *ForSequenceClassification checkpoint"),
                    ))
                }
                Some(t) if t.shape != want => {
                    return Err(Box::new(
                        Finding::error(
                            "tensor-shape-mismatch",
                            format!(
                                "`{name}` has shape {:?}; the classifier's {output} implies {want:?}",
                                t.shape
                            ),
                        )
                        .in_file(&file)
                        .about(name)
                        .fix("re-save the model; the classifier is damaged"),
                    ))
                }
                Some(_) => {}
            }
        }
        let labels = labels(inspection, labels_n, &output)?;
        let nvidia = kind == HeadKind::Score
            && inspection.config.as_ref().and_then(|c| c.str("model_type")) == Some(crate::LLAMA_BIDIREC_MODEL_TYPE);
        let (pooling, late) = match (kind, mean) {
            (HeadKind::Score, _) if nvidia => (nvidia_pooling(inspection)?, false),
            (HeadKind::Score, _) => (crate::Pooling::LastToken, false),
            (HeadKind::DenseGelu, _) => eurobert_pooling(inspection)?,
            (_, true) => (crate::Pooling::Mean, false),
            (_, false) => (crate::Pooling::Cls, false),
        };
        let multi_label = inspection.config.as_ref().and_then(|c| c.str("problem_type")) == Some(MULTI_LABEL);
        Ok(ClassifierSpec {
            labels,
            prefix,
            hidden,
            kind,
            pooling,
            late,
            multi_label,
            dense_bias,
            head_norm: norm,
            temperature: match nvidia {
                true => Some(nvidia_temperature(inspection)?),
                false => None,
            },
            pad_token: match kind {
                HeadKind::Score if !nvidia => inspection
                    .config
                    .as_ref()
                    .and_then(|c| c.usize("pad_token_id"))
                    .and_then(|id| u32::try_from(id).ok()),
                _ => None,
            },
        })
    }
}

/// The tokens NVIDIA's bidirectional Llama reranker scores (its config's `pooling`).
fn nvidia_pooling(inspection: &ModelInspection) -> Result<crate::Pooling, Box<Finding>> {
    let config = inspection.config.as_ref().and_then(|c| c.get("pooling"));
    crate::llama_bidirec_pooling(config)
        .map(|(pooling, _)| pooling)
        .map_err(|message| {
            Box::new(
                Finding::error("pooling-mode-unknown", message)
                    .in_file(inspection.config_path())
                    .about("pooling")
                    .fix("set `pooling` to the one the model was trained with (`avg` by default)"),
            )
        })
}

/// What NVIDIA's bidirectional Llama reranker divides its logits by (`temperature`, 1 when
/// absent): a positive number.
fn nvidia_temperature(inspection: &ModelInspection) -> Result<f32, Box<Finding>> {
    let Some(given) = inspection.config.as_ref().and_then(|c| c.get("temperature")) else {
        return Ok(1.0);
    };
    match given.as_f64() {
        Some(t) if t > 0.0 && (t as f32).is_normal() => Ok(t as f32),
        _ => Err(Box::new(
            Finding::error(
                "config-value-invalid",
                format!(
                    "`temperature: {given}`: the reranker divides its logits by it, so it must be a positive number"
                ),
            )
            .in_file(inspection.config_path())
            .about("temperature")
            .fix("set `temperature` to the one the model was trained with (1.0 by default)"),
        )),
    }
}

/// Whether the weights' `classifier` scores each token rather than the sequence: config.json's
/// `architectures` names a `*ForTokenClassification` and no pooler is saved, which every
/// sequence head reading BERT's pooler would need (gte-multilingual-base, saved as
/// `NewForTokenClassification`: an embedder whose one-label token head is its sparse output).
pub fn token_classifier(inspection: &ModelInspection) -> bool {
    let Some(weights) = inspection.weights.as_ref() else {
        return false;
    };
    let named = inspection
        .config
        .as_ref()
        .and_then(|c| c.get("architectures"))
        .and_then(|a| a.as_array())
        .is_some_and(|a| {
            a.iter()
                .any(|n| n.as_str().is_some_and(|n| n.ends_with("ForTokenClassification")))
        });
    named
        && weights.get("classifier.weight").is_some()
        && !weights.tensors.keys().any(|k| k.ends_with("pooler.dense.weight"))
}

/// EuroBERT's `classifier_pooling`: the tokens its head reads, and whether it runs on each
/// before they are averaged (`late`, the config class's default).
fn eurobert_pooling(inspection: &ModelInspection) -> Result<(crate::Pooling, bool), Box<Finding>> {
    let given = inspection.config.as_ref().and_then(|c| c.str("classifier_pooling"));
    match given.unwrap_or("late") {
        "late" => Ok((crate::Pooling::Mean, true)),
        "mean" => Ok((crate::Pooling::Mean, false)),
        "bos" => Ok((crate::Pooling::Cls, false)),
        other => Err(Box::new(
            Finding::error(
                "pooling-mode-unknown",
                format!("`classifier_pooling: {other}`: EuroBERT's classifier pools by `bos`, `mean` or `late`"),
            )
            .in_file(inspection.config_path())
            .about("classifier_pooling")
            .fix("set `classifier_pooling` to the one the model was trained with (`late` by default)"),
        )),
    }
}

/// Label names from `id2label` (checked against the head's `n` outputs and `num_labels`), or
/// `LABEL_i`.
fn labels(inspection: &ModelInspection, n: usize, output: &str) -> Result<Vec<String>, Box<Finding>> {
    let config = inspection.config.as_ref();
    let mismatch = |key: &str, given: usize| {
        Box::new(
            Finding::error(
                "classifier-labels-mismatch",
                format!("config.json's `{key}` says {given} labels but `{output}` has {n} rows: the head and the config are of different models"),
            )
            .in_file(inspection.config_path())
            .about(key.to_string())
            .fix(format!("set `{key}` to the head's {n} labels (or use the config saved with these weights)")),
        )
    };
    if let Some(given) = config.and_then(|c| c.usize("num_labels")) {
        if given != n {
            return Err(mismatch("num_labels", given));
        }
    }
    let mut labels: Vec<String> = (0..n).map(|i| format!("LABEL_{i}")).collect();
    if let Some(map) = config.and_then(|c| c.get("id2label")).and_then(|v| v.as_object()) {
        if map.len() != n {
            return Err(mismatch("id2label", map.len()));
        }
        for (index, name) in map {
            match (index.parse::<usize>(), name.as_str()) {
                (Ok(i), Some(name)) if i < n => labels[i] = name.to_string(),
                _ => {
                    return Err(Box::new(
                        Finding::error(
                            "id2label-invalid",
                            format!("`id2label` entry {index:?} does not name one of the {n} classifier outputs"),
                        )
                        .in_file(inspection.config_path())
                        .about("id2label")
                        .fix(format!("map \"0\"..\"{}\" to label names", n.saturating_sub(1))),
                    ))
                }
            }
        }
    }
    Ok(labels)
}

/// The loaded head: a hidden layer on the first token (or the mean), its activation (and
/// ModernBERT's norm), and the output layer; the decoders' output layer alone on the last token
/// that is not padding.
#[derive(Debug)]
pub struct ClassifierHead {
    /// The hidden layer and its activation; `None`: the decoders' head, the output layer alone.
    hidden: Option<(Linear, HeadActivation)>,
    norm: Option<LayerNorm>,
    /// The first token's vector, or the mean of each sequence's.
    pooling: crate::Pooling,
    output: Linear,
    /// The decoders' padding id: the token read is the last one that is not it.
    pad_token: Option<u32>,
    /// Run on every token, then the logits averaged ([`ClassifierSpec::late`]).
    late: bool,
    /// [`ClassifierSpec::temperature`].
    temperature: Option<f32>,
}

/// The hidden layer's activation.
#[derive(Debug, Clone, Copy)]
enum HeadActivation {
    Tanh,
    Act(HiddenAct),
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
        let (h, n) = (spec.hidden, spec.labels.len());
        let (labels_tensor, hidden_tensor) = spec.kind.tensors(&spec.prefix);
        let dense = |bias| crate::layers::stacked_linear(&vb, &[(&hidden_tensor, h)], h, bias).map_err(err);
        if let HeadKind::LogitScore { score, .. } = spec.kind {
            let rows = request
                .inspection
                .weights
                .as_ref()
                .and_then(|w| w.get(&format!("{labels_tensor}.weight")))
                .map_or(0, |t| t.shape[0]);
            let embedding = vb.get((rows, h), &format!("{labels_tensor}.weight")).map_err(err)?;
            let row = |token: u32| embedding.narrow(0, token as usize, 1).map_err(err);
            // logit(yes) - logit(no) = h . (E[yes] - E[no]): one output row.
            let weight = match score.false_token {
                Some(no) => (row(score.true_token)? - row(no)?).map_err(err)?,
                None => row(score.true_token)?,
            };
            return Ok(Self {
                hidden: None,
                norm: None,
                pooling: crate::Pooling::LastToken,
                output: Linear::new(weight, None).map_err(err)?,
                pad_token: None,
                late: false,
                temperature: None,
            });
        }
        let output = match spec.kind {
            HeadKind::Score => crate::layers::stacked_linear(&vb, &[(&labels_tensor, n)], h, false),
            _ => crate::layers::linear(&vb, h, n, &labels_tensor),
        }
        .map_err(err)?;
        Ok(match spec.kind {
            HeadKind::Score | HeadKind::LogitScore { .. } => Self {
                hidden: None,
                norm: None,
                pooling: spec.pooling,
                output,
                pad_token: spec.pad_token,
                late: false,
                temperature: spec.temperature,
            },
            HeadKind::Pooler
            | HeadKind::DenseOutProj
            | HeadKind::DenseOutProjGelu
            | HeadKind::PreClassifier
            | HeadKind::ContextPooler
            | HeadKind::DenseGelu => Self {
                hidden: Some((
                    dense(spec.dense_bias)?,
                    match spec.kind {
                        HeadKind::PreClassifier => HeadActivation::Act(HiddenAct::Relu),
                        // torch.nn.GELU() and transformers' `get_activation("gelu")`: the exact form.
                        HeadKind::DenseGelu | HeadKind::DenseOutProjGelu => HeadActivation::Act(HiddenAct::Gelu),
                        HeadKind::ContextPooler => HeadActivation::Act(match request.inspection.config.as_ref() {
                            Some(c) => c.activation("pooler_hidden_act")?,
                            None => HiddenAct::Gelu,
                        }),
                        _ => HeadActivation::Tanh,
                    },
                )),
                norm: None,
                pooling: spec.pooling,
                output,
                pad_token: None,
                late: spec.late,
                temperature: None,
            },
            HeadKind::PredictionHead => {
                let model_config = request.inspection.config.as_ref();
                let act = match model_config {
                    Some(c) => c.activation("classifier_activation")?,
                    None => HiddenAct::Gelu,
                };
                let eps = model_config.and_then(|c| c.f64("norm_eps")).unwrap_or(1e-5);
                let norm_vb = vb.pp(PREDICTION_NORM);
                let weight = norm_vb.get(h, "weight").map_err(err)?;
                let norm = match spec.head_norm == Some(true) {
                    true => LayerNorm::new(weight, norm_vb.get(h, "bias").map_err(err)?, eps),
                    false => LayerNorm::without_bias(weight, eps),
                }
                .map_err(err)?;
                Self {
                    hidden: Some((dense(spec.dense_bias)?, HeadActivation::Act(act))),
                    norm: Some(norm),
                    pooling: spec.pooling,
                    output,
                    pad_token: None,
                    late: false,
                    temperature: None,
                }
            }
        })
    }

    /// Logits `[sequences, labels]` from the packed hidden states `[total_tokens, hidden]` of
    /// `batch`.
    pub fn forward(&self, hidden: &Tensor, batch: &Batch) -> candle_core::Result<Tensor> {
        let hidden = hidden.to_dtype(DType::F32)?;
        if self.late {
            return self.pooling.pool(&self.apply(&hidden)?, &batch.seqs);
        }
        let pooled = match self.pad_token {
            // As transformers' decoder classifiers: the rightmost token that is not padding
            // (the first when every one is).
            Some(pad) => {
                let rows: Vec<u32> = batch
                    .seqs
                    .ranges()
                    .map(|range| {
                        let ids = &batch.input_ids[range.clone()];
                        (range.start + ids.iter().rposition(|&id| id != pad).unwrap_or(0)) as u32
                    })
                    .collect();
                let n = rows.len();
                hidden.index_select(&Tensor::from_vec(rows, n, hidden.device())?, 0)?
            }
            None => self.pooling.pool(&hidden, &batch.seqs)?,
        };
        self.apply(&pooled)
    }

    /// The head's layers on rows of hidden states `[rows, hidden]`: logits `[rows, labels]`.
    fn apply(&self, rows: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = match &self.hidden {
            Some((layer, HeadActivation::Tanh)) => layer.forward(rows)?.tanh()?,
            Some((layer, HeadActivation::Act(act))) => act.apply(&layer.forward(rows)?)?,
            None => rows.clone(),
        };
        if let Some(norm) = &self.norm {
            h = norm.forward(&h)?;
        }
        let logits = self.output.forward(&h)?;
        match self.temperature {
            Some(t) => logits.affine(1.0 / f64::from(t), 0.0),
            None => Ok(logits),
        }
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
    use crate::inspection::{TensorInfo, WeightsFormat, WeightsIndex};

    fn inspection(tensors: &[(&str, &[usize])]) -> ModelInspection {
        let tensors = tensors
            .iter()
            .map(|(name, shape)| {
                let info = TensorInfo {
                    shape: shape.to_vec(),
                    dtype: "F32".into(),
                    file: "model.safetensors".into(),
                    bytes: None,
                };
                (name.to_string(), info)
            })
            .collect();
        ModelInspection {
            weights: Some(WeightsIndex {
                format: WeightsFormat::Safetensors,
                files: vec!["model.safetensors".into()],
                tensors,
            }),
            ..Default::default()
        }
    }

    /// `score` is a decoder's head only over a decoder's word table: an encoder's tensor of that
    /// name is no classifier, and a decoder's is.
    #[test]
    fn a_score_tensor_is_a_head_only_beside_a_decoder_word_table() {
        let encoder = inspection(&[
            ("embeddings.word_embeddings.weight", &[10, 4]),
            ("score.weight", &[1, 4]),
        ]);
        assert!(ClassifierSpec::detect(&encoder).is_none());
        let decoder = inspection(&[("model.embed_tokens.weight", &[10, 4]), ("score.weight", &[1, 4])]);
        let spec = ClassifierSpec::detect(&decoder).unwrap().unwrap();
        assert_eq!(spec.kind, HeadKind::Score);
    }

    /// LogitScore reads `lm_head` where the weights have one, the prefixed word table where the
    /// model ties them, and refuses a token past the table.
    #[test]
    fn logit_score_reads_the_output_embedding_or_the_tied_word_table() {
        let score = crate::inspection::LogitScore {
            true_token: 7,
            false_token: Some(3),
        };
        let with = |tensors: &[(&str, &[usize])], score| {
            let mut inspection = inspection(tensors);
            inspection.sentence_transformers.logit_score = Some(score);
            ClassifierSpec::detect(&inspection).unwrap()
        };
        let untied = with(
            &[("model.embed_tokens.weight", &[10, 4]), ("lm_head.weight", &[10, 4])],
            score,
        )
        .unwrap();
        assert_eq!(untied.kind.tensors(&untied.prefix).0, "lm_head");
        let tied = with(&[("model.embed_tokens.weight", &[10, 4])], score).unwrap();
        assert_eq!(tied.kind.tensors(&tied.prefix).0, "model.embed_tokens");
        let past = crate::inspection::LogitScore {
            true_token: 10,
            false_token: None,
        };
        let refused = with(&[("model.embed_tokens.weight", &[10, 4])], past).unwrap_err();
        assert_eq!(refused.code, "logit-score-token-invalid");
    }

    #[test]
    fn logit_score_over_soft_capped_logits_is_refused_naming_the_key() {
        let score = crate::inspection::LogitScore {
            true_token: 7,
            false_token: Some(3),
        };
        let with_config = |keys: serde_json::Value| {
            let mut inspection = inspection(&[("model.embed_tokens.weight", &[10, 4])]);
            inspection.sentence_transformers.logit_score = Some(score);
            inspection.config = Some(crate::inspection::ModelConfig {
                path: "config.json".into(),
                values: keys.as_object().cloned().unwrap_or_default(),
            });
            ClassifierSpec::detect(&inspection).unwrap()
        };
        // Gemma 2 caps by default; an explicit cap anywhere counts; null and other decoders do not.
        for capped in [
            serde_json::json!({"model_type": "gemma2"}),
            serde_json::json!({"model_type": "gemma3_text", "final_logit_softcapping": 30.0}),
        ] {
            let refused = with_config(capped).unwrap_err();
            assert_eq!(
                (refused.code, refused.subject.as_deref()),
                ("config-value-unsupported", Some("final_logit_softcapping"))
            );
        }
        for uncapped in [
            serde_json::json!({"model_type": "gemma2", "final_logit_softcapping": null}),
            serde_json::json!({"model_type": "qwen3"}),
        ] {
            assert!(with_config(uncapped).is_ok());
        }
    }

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
