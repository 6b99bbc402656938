//! `POST /v1/embeddings` and `/embeddings`, as OpenAI's API defines them: request and response
//! shapes, base64 encoding, `dimensions`, real token usage, and errors in OpenAI's shape.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::counted::{counted, method_of};
use super::embed::{parse_inputs, pooled_call, pooled_vectors, RunOptions};
use super::error::{ApiError, ApiJson, ErrorCode};
use super::AppState;
use crate::infer::Want;

/// OpenAI's limit on inputs per request.
const MAX_INPUTS: usize = 2048;

fn openai_input() -> utoipa::openapi::schema::Schema {
    super::schema::openai_input(MAX_INPUTS)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct EmbeddingsRequest {
    #[schema(schema_with = openai_input)]
    input: Value,
    #[serde(default)]
    #[allow(dead_code)]
    model: Option<String>,
    #[serde(default)]
    encoding_format: Option<EncodingFormat>,
    #[serde(default)]
    #[schema(minimum = 1)]
    dimensions: Option<usize>,
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
    /// An extension: the task adapter (jina-embeddings-v3), with its prompt.
    #[serde(default)]
    task: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum EncodingFormat {
    Float,
    Base64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EmbeddingsResponse {
    object: &'static str,
    data: Vec<Embedding>,
    model: String,
    usage: Usage,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Embedding {
    object: &'static str,
    embedding: EmbeddingValue,
    index: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum EmbeddingValue {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

/// The routes that promise OpenAI's shapes, errors included.
pub(crate) fn is_openai_route(path: &str) -> bool {
    matches!(path, "/v1/embeddings" | "/embeddings")
}

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug)]
pub(crate) struct OpenAiError(ApiError);

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'static str>,
    code: ErrorCode,
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let e = self.0;
        // OpenAI answers every invalid request with 400; overload, auth and server errors keep theirs.
        let (status, kind) = match e.status.as_u16() {
            401 => (StatusCode::UNAUTHORIZED, "invalid_request_error"),
            429 => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
            400..=499 if e.status != StatusCode::FAILED_DEPENDENCY => {
                (StatusCode::BAD_REQUEST, "invalid_request_error")
            }
            503 => (StatusCode::SERVICE_UNAVAILABLE, "server_error"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        };
        let param = match e.code {
            ErrorCode::DimensionsInvalid => Some("dimensions"),
            ErrorCode::InvalidJson
            | ErrorCode::InvalidRequest
            | ErrorCode::ContentTypeNotJson
            | ErrorCode::PayloadTooLarge => None,
            _ if kind == "invalid_request_error" && status == StatusCode::BAD_REQUEST => Some("input"),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                message: &e.message,
                kind,
                param,
                code: e.code,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        OpenAiError(e)
    }
}

#[utoipa::path(post, path = "/v1/embeddings", tag = "OpenAI compatible", request_body = EmbeddingsRequest,
    responses(
        (status = 200, description = "OpenAI's embeddings list", body = EmbeddingsResponse),
        (status = 400, description = "Invalid request (OpenAI error shape)"),
        (status = 401, description = "Missing or wrong API key (OpenAI error shape)"),
        (status = 429, description = "Too many inputs in flight (OpenAI error shape)"),
        (status = 500, description = "The model failed (OpenAI error shape)"),
        (status = 503, description = "Shutting down (OpenAI error shape)"),
    ))]
pub(crate) async fn embeddings(
    State(state): State<AppState>,
    body: Result<ApiJson<EmbeddingsRequest>, ApiError>,
) -> Result<Response, OpenAiError> {
    counted(
        body,
        |r| method_of(&r.input),
        |request, started| async move {
            check_openai_input(&request.input)?;
            let format = request.encoding_format.unwrap_or(EncodingFormat::Float);
            let call = pooled_call(
                &state,
                Want::Pooled,
                || parse_inputs(&request.input),
                RunOptions {
                    task: request.task.clone(),
                    ..RunOptions::default()
                },
                true,
                request.dimensions,
            )?;
            let (vectors, timings) = pooled_vectors(&state, call, started).await?;
            let data = vectors
                .into_iter()
                .enumerate()
                .map(|(index, v)| Embedding {
                    object: "embedding",
                    embedding: match format {
                        EncodingFormat::Float => EmbeddingValue::Float(v),
                        EncodingFormat::Base64 => {
                            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                            EmbeddingValue::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
                        }
                    },
                    index,
                })
                .collect();
            let response = EmbeddingsResponse {
                object: "list",
                data,
                model: state.info.model_id.clone(),
                usage: Usage {
                    prompt_tokens: timings.tokens,
                    total_tokens: timings.tokens,
                },
            };
            Ok((response, timings))
        },
    )
    .await
    .map_err(OpenAiError)
}

/// OpenAI rejects empty inputs (TEI's `/embed` accepts an empty string; this route follows OpenAI).
fn check_openai_input(input: &Value) -> Result<(), ApiError> {
    let empty = || {
        ApiError::validation(
            ErrorCode::EmptyInput,
            "'input' cannot be empty: pass a non-empty string or list",
        )
    };
    match input {
        Value::String(s) if s.is_empty() => Err(empty()),
        Value::Array(items) if items.is_empty() => Err(empty()),
        Value::Array(items) if items.len() > MAX_INPUTS => Err(ApiError::validation(
            ErrorCode::TooManyInputs,
            format!("'input' has {} items; at most {MAX_INPUTS} are allowed", items.len()),
        )),
        Value::Array(items) => match items
            .iter()
            .position(|i| i.as_str() == Some("") || i.as_array().is_some_and(Vec::is_empty))
        {
            Some(i) => Err(ApiError::validation(
                ErrorCode::EmptyInput,
                format!("'input[{i}]' cannot be empty"),
            )),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}
