//! `POST /embed`.

use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use tessera_core::{finish_embedding, ColbertSide, TruncationDirection};

use super::counted::{counted, method_of};
use super::error::{ApiError, ApiJson, ErrorCode, InferenceErrors};
use super::{token_id, AppState};
use crate::infer::{Input, Room, Timings, Want};
use crate::queue::Embedding;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct EmbedRequest {
    /// A string, a list of strings, a list of token ids, or a list of lists of token ids.
    #[schema(schema_with = super::schema::embed_inputs)]
    pub(crate) inputs: Value,
    #[serde(default)]
    pub(crate) truncate: Option<bool>,
    #[serde(default)]
    pub(crate) truncation_direction: Option<Direction>,
    #[serde(default)]
    pub(crate) normalize: Option<bool>,
    /// Matryoshka truncation: the first components, normalized again (1 to the model's size).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub(crate) dimensions: Option<usize>,
    #[serde(default)]
    pub(crate) prompt_name: Option<String>,
    /// The task adapter to run with (jina-embeddings-v3: `retrieval.query`...); its prompt is
    /// prepended too unless `prompt_name` names another.
    #[serde(default)]
    pub(crate) task: Option<String>,
    /// `/embed_multi_vector`: encode the inputs as queries (a PyLate ColBERT model prefixes and
    /// expands them so); documents when false or absent. BGE-M3 encodes both alike.
    #[serde(default)]
    pub(crate) is_query: Option<bool>,
}

/// `"right"`/`"left"`, in any case (TEI's clients send `"Right"`).
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
pub(crate) enum Direction {
    #[serde(alias = "right", alias = "RIGHT")]
    Right,
    #[serde(alias = "left", alias = "LEFT")]
    Left,
}

impl From<Direction> for TruncationDirection {
    fn from(d: Direction) -> Self {
        match d {
            Direction::Right => TruncationDirection::Right,
            Direction::Left => TruncationDirection::Left,
        }
    }
}

const INPUTS_SHAPE: &str =
    "`inputs` must be a string, a list of strings, a list of token ids, or a list of lists of token ids";

/// Turns `inputs` into a list of inputs, or says exactly what is wrong with it.
pub(crate) fn parse_inputs(inputs: &Value) -> Result<Vec<Input>, ApiError> {
    match inputs {
        Value::String(s) => Ok(vec![Input::Text(s.clone())]),
        Value::Array(items) if items.is_empty() => Err(ApiError::empty("`inputs` is an empty batch")),
        Value::Array(items) if items.iter().all(Value::is_number) => Ok(vec![Input::Ids(ids(items, 0)?)]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(Input::Text(s.clone())),
                Value::Array(inner) => Ok(Input::Ids(ids(inner, i)?)),
                _ => Err(ApiError::validation(
                    ErrorCode::InvalidInputs,
                    format!("inputs[{i}]: {INPUTS_SHAPE}"),
                )),
            })
            .collect(),
        _ => Err(ApiError::validation(ErrorCode::InvalidInputs, INPUTS_SHAPE)),
    }
}

fn ids(items: &[Value], index: usize) -> Result<Vec<u32>, ApiError> {
    items
        .iter()
        .map(|v| {
            token_id(v).ok_or_else(|| {
                ApiError::validation(
                    ErrorCode::InvalidTokenId,
                    format!("inputs[{index}]: token id {v} is not an integer between 0 and 4294967295"),
                )
            })
        })
        .collect()
}

#[utoipa::path(post, path = "/embed", tag = "Text Embeddings Inference", request_body = EmbedRequest,
    responses(
        (status = 200, description = "One vector per input, in input order", body = Vec<Vec<f32>>),
        InferenceErrors,
    ))]
pub(crate) async fn embed(
    State(state): State<AppState>,
    body: Result<ApiJson<EmbedRequest>, ApiError>,
) -> Result<Response, ApiError> {
    counted(
        body,
        |r| method_of(&r.inputs),
        |request, started| async move {
            let normalize = request.normalize.unwrap_or(true);
            let call = request.into_call(&state, Want::Pooled, normalize)?;
            pooled_vectors(&state, call, started).await
        },
    )
    .await
}

/// A pooled-vector request in typed form: every route that answers sentence vectors builds one
/// from its own request type.
#[derive(Debug)]
pub(crate) struct PooledCall {
    /// [`Want::Pooled`], or [`Want::Sparse`] for `/embed_sparse`.
    pub(crate) want: Want,
    pub(crate) inputs: Vec<Input>,
    pub(crate) options: RunOptions,
    pub(crate) normalize: bool,
    pub(crate) dimensions: Option<usize>,
}

/// The checks every pooled-vector request shares, in the order clients see them when a request
/// has several faults: the model's kind, then the inputs (`inputs` parses them), then
/// `dimensions`.
pub(crate) fn pooled_call(
    state: &AppState,
    want: Want,
    inputs: impl FnOnce() -> Result<Vec<Input>, ApiError>,
    options: RunOptions,
    normalize: bool,
    dimensions: Option<usize>,
) -> Result<PooledCall, ApiError> {
    state.infer.accepts(want)?;
    let inputs = inputs()?;
    if let Some(d) = dimensions {
        if d == 0 || d > state.output_dim {
            return Err(ApiError::validation(
                ErrorCode::DimensionsInvalid,
                format!("`dimensions` must be between 1 and {}, got {d}", state.output_dim),
            ));
        }
    }
    Ok(PooledCall {
        want,
        inputs,
        options,
        normalize,
        dimensions,
    })
}

/// Sentence vectors for `call`, normalized and truncated as it asks; shared by `/embed`,
/// `/embed_sparse`, `/similarity` and the OpenAI routes.
pub(crate) async fn pooled_vectors(
    state: &AppState,
    call: PooledCall,
    started: Instant,
) -> Result<(Vec<Vec<f32>>, Timings), ApiError> {
    let PooledCall {
        want,
        inputs,
        options,
        normalize,
        dimensions,
    } = call;
    let (outputs, timings) = run_inputs(state, inputs, options, started, want).await?;
    let vectors = outputs
        .into_iter()
        .map(|e| match e {
            Embedding::Pooled(v) => Ok(finish_embedding(v, dimensions, normalize)),
            Embedding::Tokens(_) | Embedding::Logits(_) | Embedding::Lexical(_) => Err(ApiError::backend(
                "the model returned another output than a pooled vector",
            )),
        })
        .collect::<Result<_, _>>()?;
    Ok((vectors, timings))
}

impl EmbedRequest {
    /// `/embed`'s and `/embed_sparse`'s body as a typed call.
    fn into_call(self, state: &AppState, want: Want, normalize: bool) -> Result<PooledCall, ApiError> {
        let options = RunOptions {
            truncate: self.truncate,
            truncation_direction: self.truncation_direction,
            prompt_name: self.prompt_name,
            task: self.task,
            ..RunOptions::default()
        };
        pooled_call(
            state,
            want,
            || parse_inputs(&self.inputs),
            options,
            normalize,
            self.dimensions,
        )
    }
}

/// Per-request options shared by every route that runs the model.
#[derive(Debug, Default)]
pub(crate) struct RunOptions {
    pub(crate) truncate: Option<bool>,
    pub(crate) truncation_direction: Option<Direction>,
    pub(crate) prompt_name: Option<String>,
    /// A task adapter of the model, by name.
    pub(crate) task: Option<String>,
    /// How it gets room under `--max-concurrent-requests` (HTTP: at once, or 429).
    pub(crate) room: Room,
}

/// Runs parsed inputs through the inference service; outputs come back in input order.
pub(crate) async fn run_inputs(
    state: &AppState,
    inputs: Vec<Input>,
    options: RunOptions,
    started: Instant,
    want: Want,
) -> Result<(Vec<Embedding>, Timings), ApiError> {
    let request = crate::infer::Request {
        inputs,
        prompt_name: options.prompt_name,
        task: options.task,
        truncate: options.truncate,
        direction: options.truncation_direction.map(Into::into).unwrap_or_default(),
        want,
        started,
        room: options.room,
    };
    Ok(state.infer.process(request).await?)
}

/// One non-zero entry of a SPLADE vector.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct SparseValue {
    index: usize,
    value: f32,
}

/// `POST /embed_sparse`: the non-zero entries of each input's SPLADE vector (`--pooling splade`).
#[utoipa::path(post, path = "/embed_sparse", tag = "Text Embeddings Inference", request_body = EmbedRequest,
    responses(
        (status = 200, description = "Non-zero SPLADE entries per input", body = Vec<Vec<SparseValue>>),
        InferenceErrors,
    ))]
pub(crate) async fn embed_sparse(
    State(state): State<AppState>,
    body: Result<ApiJson<EmbedRequest>, ApiError>,
) -> Result<Response, ApiError> {
    counted(
        body,
        |r| method_of(&r.inputs),
        |request, started| async move {
            let request = EmbedRequest {
                dimensions: None,
                ..request
            };
            let call = request.into_call(&state, Want::Sparse, false)?;
            let (vectors, timings) = sparse_vectors(&state, call, started).await?;
            let sparse: Vec<Vec<SparseValue>> = vectors
                .into_iter()
                .map(|v| {
                    v.into_iter()
                        .map(|(index, value)| SparseValue { index, value })
                        .collect()
                })
                .collect();
            Ok((sparse, timings))
        },
    )
    .await
}

/// Each input's sparse vector as `(index, value)` entries, by index: a SPLADE vector's non-zero
/// entries, or BGE-M3's lexical weights (token id, weight); shared by `/embed_sparse` and gRPC's
/// `EmbedSparse`.
pub(crate) async fn sparse_vectors(
    state: &AppState,
    call: PooledCall,
    started: Instant,
) -> Result<(Vec<Vec<(usize, f32)>>, Timings), ApiError> {
    let PooledCall {
        want, inputs, options, ..
    } = call;
    let (outputs, timings) = run_inputs(state, inputs, options, started, want).await?;
    let vectors = outputs
        .into_iter()
        .map(|e| match e {
            Embedding::Pooled(v) => Ok(v.into_iter().enumerate().filter(|(_, x)| *x != 0.0).collect()),
            Embedding::Lexical(weights) => Ok(weights.into_iter().map(|(id, w)| (id as usize, w)).collect()),
            Embedding::Tokens(_) | Embedding::Logits(_) => Err(ApiError::backend(
                "the model returned another output than a sparse vector",
            )),
        })
        .collect::<Result<_, _>>()?;
    Ok((vectors, timings))
}

/// `POST /embed_multi_vector`: vectors per token for late interaction, normalized unless
/// `normalize` is false (tessera's own route; TEI has none): BGE-M3's multi-vector output (a
/// vector for every token of each input but the first), or a PyLate ColBERT model's (queries
/// with `is_query: true`, documents otherwise).
#[utoipa::path(post, path = "/embed_multi_vector", tag = "Text Embeddings Inference", request_body = EmbedRequest,
    responses(
        (status = 200, description = "Per input, its vectors per token: BGE-M3's colbert_vecs, or a PyLate ColBERT model's query or document vectors", body = Vec<Vec<Vec<f32>>>),
        InferenceErrors,
    ))]
pub(crate) async fn embed_multi_vector(
    State(state): State<AppState>,
    body: Result<ApiJson<EmbedRequest>, ApiError>,
) -> Result<Response, ApiError> {
    counted(
        body,
        |r| method_of(&r.inputs),
        |request, started| async move {
            let normalize = request.normalize.unwrap_or(true);
            let side = match request.is_query {
                Some(true) => ColbertSide::Query,
                _ => ColbertSide::Document,
            };
            // The model's kind and the inputs are checked first, as on every route.
            let PooledCall {
                want,
                inputs,
                options,
                dimensions,
                ..
            } = request.into_call(&state, Want::MultiVector(side), normalize)?;
            if dimensions.is_some() {
                return Err(ApiError::validation(
                    ErrorCode::DimensionsInvalid,
                    "`dimensions` applies to sentence vectors; /embed_multi_vector returns the layer's full width",
                ));
            }
            let (outputs, timings) = run_inputs(&state, inputs, options, started, want).await?;
            let vectors = outputs
                .into_iter()
                .map(|e| match e {
                    Embedding::Tokens(rows) => Ok(rows
                        .into_iter()
                        .map(|v| finish_embedding(v, None, normalize))
                        .collect::<Vec<_>>()),
                    Embedding::Pooled(_) | Embedding::Logits(_) | Embedding::Lexical(_) => Err(ApiError::backend(
                        "the model returned another output than vectors per token",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((vectors, timings))
        },
    )
    .await
}

/// TEI's response headers; times in milliseconds.
pub(crate) fn timing_headers(t: &Timings) -> HeaderMap {
    let total = t.started.elapsed();
    let pairs = [
        ("x-compute-type", t.compute_type.to_string()),
        ("x-compute-time", total.as_millis().to_string()),
        ("x-compute-characters", t.characters.to_string()),
        ("x-compute-tokens", t.tokens.to_string()),
        ("x-total-time", total.as_millis().to_string()),
        ("x-tokenization-time", t.tokenization.as_millis().to_string()),
        ("x-queue-time", t.queue.as_millis().to_string()),
        ("x-inference-time", t.inference.as_millis().to_string()),
    ];
    pairs
        .into_iter()
        .filter_map(|(name, value)| Some((HeaderName::from_static(name), HeaderValue::from_str(&value).ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_input_shape_parses() {
        assert_eq!(parse_inputs(&json!("a")).unwrap(), vec![Input::Text("a".into())]);
        assert_eq!(parse_inputs(&json!([1, 2])).unwrap(), vec![Input::Ids(vec![1, 2])]);
        assert_eq!(
            parse_inputs(&json!(["a", [3]])).unwrap(),
            vec![Input::Text("a".into()), Input::Ids(vec![3])]
        );
        assert_eq!(parse_inputs(&json!([])).unwrap_err().status, 400);
        assert_eq!(parse_inputs(&json!([1, -2])).unwrap_err().status, 422);
        assert_eq!(parse_inputs(&json!({"a": 1})).unwrap_err().status, 422);
        assert_eq!(parse_inputs(&json!(["a", 5])).unwrap_err().status, 422);
    }
}
