//! `POST /similarity`, `POST /embed_all`, and `POST /` (TEI's default route, which
//! `huggingface_hub.InferenceClient` posts to): it dispatches on the body's shape, so similarity
//! needs no `TASK` variable as it does in TEI.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::counted::{counted, method_of};
use super::embed::{embed, parse_inputs, pooled_call, pooled_vectors, run_inputs, Direction, RunOptions};
use super::error::{ApiError, ApiJson, ErrorCode, InferenceErrors};
use super::AppState;
use crate::infer::{Input, Want};
use crate::metrics::{self, Method};
use crate::queue::Embedding;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct SimilarityInputs {
    source_sentence: String,
    #[schema(min_items = 1)]
    sentences: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct SimilarityRequest {
    inputs: SimilarityInputs,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: Option<Direction>,
    #[serde(default)]
    prompt_name: Option<String>,
}

#[utoipa::path(post, path = "/similarity", tag = "Text Embeddings Inference", request_body = SimilarityRequest,
    responses(
        (status = 200, description = "Cosine similarity of each sentence to the source", body = Vec<f32>),
        InferenceErrors,
    ))]
pub(crate) async fn similarity(
    State(state): State<AppState>,
    body: Result<ApiJson<SimilarityRequest>, ApiError>,
) -> Result<Response, ApiError> {
    counted(
        body,
        |_| Method::Batch,
        |request, started| async move {
            if request.inputs.sentences.is_empty() {
                return Err(ApiError::empty("`inputs.sentences` is empty"));
            }
            let mut texts = vec![Input::Text(request.inputs.source_sentence)];
            texts.extend(request.inputs.sentences.into_iter().map(Input::Text));
            let options = RunOptions {
                truncate: request.truncate,
                truncation_direction: request.truncation_direction,
                prompt_name: request.prompt_name,
                ..RunOptions::default()
            };
            let call = pooled_call(&state, Want::Pooled, || Ok(texts), options, true, None)?;
            let (vectors, timings) = pooled_vectors(&state, call, started).await?;
            let (source, others) = vectors
                .split_first()
                .ok_or_else(|| ApiError::backend("no vectors came back"))?;
            // Both sides are unit vectors (zero vectors stay zero), so the dot product is the cosine.
            let scores: Vec<f32> = others
                .iter()
                .map(|v| v.iter().zip(source).map(|(a, b)| a * b).sum())
                .collect();
            Ok((scores, timings))
        },
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct EmbedAllRequest {
    #[schema(schema_with = super::schema::embed_inputs)]
    inputs: Value,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: Option<Direction>,
    #[serde(default)]
    prompt_name: Option<String>,
}

#[utoipa::path(post, path = "/embed_all", tag = "Text Embeddings Inference", request_body = EmbedAllRequest,
    responses(
        (status = 200, description = "Every token's last hidden state, per input", body = Vec<Vec<Vec<f32>>>),
        InferenceErrors,
    ))]
pub(crate) async fn embed_all(
    State(state): State<AppState>,
    body: Result<ApiJson<EmbedAllRequest>, ApiError>,
) -> Result<Response, ApiError> {
    counted(
        body,
        |r| method_of(&r.inputs),
        |request, started| async move {
            let inputs = parse_inputs(&request.inputs)?;
            let options = RunOptions {
                truncate: request.truncate,
                truncation_direction: request.truncation_direction,
                prompt_name: request.prompt_name,
                ..RunOptions::default()
            };
            token_vectors(&state, inputs, options, started).await
        },
    )
    .await
}

/// Every token's vector of each input; shared by `/embed_all` and gRPC's `EmbedAll`.
pub(crate) async fn token_vectors(
    state: &AppState,
    inputs: Vec<Input>,
    options: RunOptions,
    started: std::time::Instant,
) -> Result<(Vec<Vec<Vec<f32>>>, crate::infer::Timings), ApiError> {
    let (outputs, timings) = run_inputs(state, inputs, options, started, Want::Tokens).await?;
    let tokens = outputs
        .into_iter()
        .map(|e| match e {
            Embedding::Tokens(t) => Ok(t),
            Embedding::Pooled(_) | Embedding::Logits(_) | Embedding::Lexical(_) => Err(ApiError::backend(
                "the model returned another output than token vectors",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((tokens, timings))
}

#[utoipa::path(post, path = "/", tag = "Text Embeddings Inference",
    request_body(content = super::schema::RootRequest, description = "An /embed, /similarity, /predict or /rerank body, dispatched on its shape"),
    responses(
        (status = 200, description = "The answer of the route the body was dispatched to"),
        InferenceErrors,
    ))]
/// `POST /`: rerank when the body has `query` and `texts`, similarity when `inputs` is
/// `{source_sentence, sentences}`, else the model's task (sparse vectors for a SPLADE model).
pub(crate) async fn root(
    State(state): State<AppState>,
    body: Result<ApiJson<Value>, ApiError>,
) -> Result<Response, ApiError> {
    let value = match body {
        Ok(ApiJson(value)) => value,
        Err(e) => {
            metrics::request_received(Method::Invalid);
            metrics::request_failed(e.failure());
            return Err(e);
        }
    };
    let is_similarity = value.get("inputs").and_then(|i| i.get("source_sentence")).is_some();
    // A rerank body goes to /rerank whatever the model, which says why an embedder cannot
    // answer it (rather than that the body lacks `inputs`).
    if value.get("query").is_some() && value.get("texts").is_some() {
        return super::predict::rerank(State(state), parse(value).map(ApiJson)).await;
    }
    if state.infer.accepts(Want::Logits).is_ok() {
        return super::predict::predict(State(state), parse(value).map(ApiJson)).await;
    }
    fn parse<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ApiError> {
        serde_json::from_value(value).map_err(|e| ApiError::validation(ErrorCode::InvalidRequest, e.to_string()))
    }
    if is_similarity {
        similarity(State(state), parse(value).map(ApiJson)).await
    } else if matches!(*state.task, crate::plan::Task::Splade(_)) {
        // A SPLADE model's answer is its sparse vector, as TEI's `POST /` gives it (BGE-M3's
        // is its dense vector: its lexical weights are the second output).
        super::embed::embed_sparse(State(state), parse(value).map(ApiJson)).await
    } else {
        embed(State(state), parse(value).map(ApiJson)).await
    }
}
