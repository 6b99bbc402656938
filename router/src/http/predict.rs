//! `POST /predict` (sequence classification, single texts and pairs) and `POST /rerank`, for
//! `*ForSequenceClassification` checkpoints. Probabilities come from a softmax that cannot
//! overflow (TEI's turns logits like [-100, 50] into NaN), or a sigmoid for one-output rerankers.

use std::time::Instant;

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tessera_core::{sigmoid, softmax};

use super::counted::counted;
use super::embed::{run_inputs, Direction, RunOptions};
use super::error::{ApiError, ApiJson, ErrorCode, InferenceErrors};
use super::AppState;
use crate::infer::{Input, Timings, Want};
use crate::metrics::Method;
use crate::queue::Embedding;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct PredictRequest {
    #[schema(schema_with = super::schema::predict_inputs)]
    inputs: Value,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: Option<Direction>,
    #[serde(default)]
    raw_scores: bool,
    /// A prompt of the model by name, put before each text (or a pair's first), as
    /// sentence-transformers' CrossEncoder does (through a chat template: a `system` message).
    #[serde(default)]
    prompt_name: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Prediction {
    pub(crate) score: f32,
    pub(crate) label: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct RerankRequest {
    query: String,
    #[schema(min_items = 1)]
    texts: Vec<String>,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: Option<Direction>,
    #[serde(default)]
    raw_scores: bool,
    #[serde(default)]
    return_text: bool,
    /// A prompt of the model by name, put before the query (through a chat template: a
    /// `system` message, Qwen3-Reranker's instruction).
    #[serde(default)]
    prompt_name: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Rank {
    index: usize,
    score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

/// The classification head (labels, independence), once the service has accepted `want` for
/// this model.
fn classifier(state: &AppState, want: Want) -> Result<&tessera_core::ClassifierSpec, ApiError> {
    state.infer.accepts(want)?;
    match &*state.task {
        crate::plan::Task::Classify(spec) => Ok(spec),
        _ => Err(ApiError::backend("a model that scores has no labels")),
    }
}

fn pair(v: &Value) -> Option<Input> {
    match v.as_array()?.as_slice() {
        [Value::String(a), Value::String(b)] => Some(Input::Pair(a.clone(), b.clone())),
        _ => None,
    }
}

/// `"a"` or `["a", "b"]` (a pair) is one input; any other list is a batch.
fn is_batch(inputs: &Value) -> bool {
    inputs.is_array() && pair(inputs).is_none()
}

/// Parses `inputs`, returning whether it was a batch ([`is_batch`]).
fn parse_sequences(inputs: &Value) -> Result<(Vec<Input>, bool), ApiError> {
    const SHAPE: &str = "`inputs` must be a string, a pair [string, string], or a list of those";
    match inputs {
        Value::String(s) => Ok((vec![Input::Text(s.clone())], false)),
        Value::Array(items) if items.is_empty() => Err(ApiError::empty("`inputs` is an empty batch")),
        Value::Array(_) if pair(inputs).is_some() => Ok((pair(inputs).into_iter().collect(), false)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(Input::Text(s.clone())),
                other => pair(other)
                    .ok_or_else(|| ApiError::validation(ErrorCode::InvalidInputs, format!("inputs[{i}]: {SHAPE}"))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|inputs| (inputs, true)),
        _ => Err(ApiError::validation(ErrorCode::InvalidInputs, SHAPE)),
    }
}

fn logits(outputs: Vec<Embedding>) -> Result<Vec<Vec<f32>>, ApiError> {
    outputs
        .into_iter()
        .map(|e| match e {
            Embedding::Logits(l) => Ok(l),
            Embedding::Pooled(_) | Embedding::Tokens(_) | Embedding::Lexical(_) => {
                Err(ApiError::backend("the model returned no logits"))
            }
        })
        .collect()
}

/// Probabilities from logits: a sigmoid for one output, or for each of independent labels
/// (`multi_label`), else a softmax over the labels.
fn scores(logits: &[f32], raw: bool, multi_label: bool) -> Vec<f32> {
    match (raw, logits.len(), multi_label) {
        (true, ..) => logits.to_vec(),
        (false, 1, _) | (false, _, true) => logits.iter().map(|&l| sigmoid(l)).collect(),
        (false, ..) => softmax(logits),
    }
}

#[utoipa::path(post, path = "/predict", tag = "Text Embeddings Inference", request_body = PredictRequest,
    responses(
        (status = 200, description = "Label scores, sorted (a list of them for a batch)", body = Vec<Prediction>),
        InferenceErrors,
    ))]
pub(crate) async fn predict(
    State(state): State<AppState>,
    body: Result<ApiJson<PredictRequest>, ApiError>,
) -> Result<Response, ApiError> {
    // Counted once per request, whatever its shape (TEI counts single predictions twice).
    let method = |r: &PredictRequest| {
        if is_batch(&r.inputs) {
            Method::Batch
        } else {
            Method::Single
        }
    };
    counted(body, method, |request, started| async move {
        // The model's kind first, as every route reports it before the body's faults.
        state.infer.accepts(Want::Logits)?;
        let (inputs, batched) = parse_sequences(&request.inputs)?;
        let options = RunOptions {
            truncate: request.truncate,
            truncation_direction: request.truncation_direction,
            prompt_name: request.prompt_name.clone(),
            ..RunOptions::default()
        };
        let (predictions, timings) = predictions(&state, inputs, options, started, request.raw_scores).await?;
        let body = if batched {
            serde_json::to_value(predictions)
        } else {
            serde_json::to_value(predictions.into_iter().next().unwrap_or_default())
        }
        .map_err(|e| ApiError::backend(e.to_string()))?;
        Ok((body, timings))
    })
    .await
}

/// Each input's label scores, best first (probabilities unless `raw_scores`); shared by
/// `/predict` and gRPC's `Predict`.
pub(crate) async fn predictions(
    state: &AppState,
    inputs: Vec<Input>,
    options: RunOptions,
    started: Instant,
    raw_scores: bool,
) -> Result<(Vec<Vec<Prediction>>, Timings), ApiError> {
    let spec = classifier(state, Want::Logits)?;
    let (labels, independent) = (&spec.labels, spec.multi_label);
    let (outputs, timings) = run_inputs(state, inputs, options, started, Want::Logits).await?;
    let predictions = logits(outputs)?
        .iter()
        .map(|l| {
            let mut p: Vec<Prediction> = scores(l, raw_scores, independent)
                .into_iter()
                .zip(labels)
                .map(|(score, label)| Prediction {
                    score,
                    label: label.clone(),
                })
                .collect();
            p.sort_by(|a, b| b.score.total_cmp(&a.score));
            p
        })
        .collect();
    Ok((predictions, timings))
}

#[utoipa::path(post, path = "/rerank", tag = "Text Embeddings Inference", request_body = RerankRequest,
    responses(
        (status = 200, description = "Texts by score, best first", body = Vec<Rank>),
        InferenceErrors,
    ))]
pub(crate) async fn rerank(
    State(state): State<AppState>,
    body: Result<ApiJson<RerankRequest>, ApiError>,
) -> Result<Response, ApiError> {
    counted(
        body,
        |_| Method::Batch,
        |request, started| async move {
            let options = RunOptions {
                truncate: request.truncate,
                truncation_direction: request.truncation_direction,
                prompt_name: request.prompt_name.clone(),
                ..RunOptions::default()
            };
            let (ranks, timings) = ranked(
                &state,
                &request.query,
                &request.texts,
                options,
                started,
                request.raw_scores,
            )
            .await?;
            let ranks = ranks
                .into_iter()
                .map(|(index, score)| Rank {
                    index,
                    score,
                    text: request.return_text.then(|| request.texts[index].clone()),
                })
                .collect::<Vec<_>>();
            Ok((ranks, timings))
        },
    )
    .await
}

/// `(index, score)` of each text against `query`, best first; shared by `/rerank` and gRPC's
/// `Rerank`.
pub(crate) async fn ranked(
    state: &AppState,
    query: &str,
    texts: &[String],
    options: RunOptions,
    started: Instant,
    raw_scores: bool,
) -> Result<(Vec<(usize, f32)>, Timings), ApiError> {
    state.infer.accepts(Want::Rerank)?;
    if texts.is_empty() {
        return Err(ApiError::empty("`texts` is empty"));
    }
    let inputs = texts
        .iter()
        .map(|t| Input::Pair(query.to_string(), t.clone()))
        .collect();
    let (outputs, timings) = run_inputs(state, inputs, options, started, Want::Rerank).await?;
    let mut ranks: Vec<(usize, f32)> = logits(outputs)?
        .iter()
        .map(|l| scores(l, raw_scores, false).first().copied().unwrap_or(f32::NAN))
        .enumerate()
        .collect();
    ranks.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok((ranks, timings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn independent_labels_get_a_sigmoid_each_and_exclusive_ones_a_softmax() {
        let logits = [2.0, 0.0, -1.0];
        let exclusive = scores(&logits, false, false);
        assert!((exclusive.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let independent = scores(&logits, false, true);
        let want: Vec<f32> = logits.iter().map(|&l| sigmoid(l)).collect();
        assert_eq!(independent, want);
        assert_eq!(scores(&logits, true, true), logits.to_vec());
        assert_eq!(scores(&[0.0], false, false), vec![0.5]);
    }
}
