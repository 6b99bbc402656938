//! `POST /tokenize` and `POST /decode`.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{ApiError, ApiJson, ErrorCode, ErrorResponse};
use super::{token_id, AppState};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct TokenizeRequest {
    #[schema(schema_with = super::schema::tokenize_inputs)]
    inputs: Value,
    #[serde(default = "yes")]
    add_special_tokens: bool,
    #[serde(default)]
    prompt_name: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SimpleToken {
    pub(crate) id: u32,
    pub(crate) text: String,
    pub(crate) special: bool,
    pub(crate) start: Option<usize>,
    pub(crate) stop: Option<usize>,
}

#[utoipa::path(post, path = "/tokenize", tag = "Text Embeddings Inference", request_body = TokenizeRequest,
    responses(
        (status = 200, description = "Tokens per input", body = Vec<Vec<SimpleToken>>),
        (status = 400, description = "Empty batch", body = ErrorResponse),
        (status = 401, description = "Missing or wrong API key", body = ErrorResponse),
        (status = 413, description = "A body over --payload-limit", body = ErrorResponse),
        (status = 415, description = "Content-Type is not application/json", body = ErrorResponse),
        (status = 422, description = "Invalid request (too many inputs, a wrong value) or tokenization error", body = ErrorResponse),
    ))]
pub(crate) async fn tokenize(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<TokenizeRequest>,
) -> Result<ApiJson<Vec<Vec<SimpleToken>>>, ApiError> {
    let texts: Vec<String> = match request.inputs {
        Value::String(s) => vec![s],
        Value::Array(items) if items.is_empty() => return Err(ApiError::empty("`inputs` is an empty batch")),
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(ApiError::validation(
                    ErrorCode::InvalidInputs,
                    "`inputs` must be a string or a list of strings",
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ApiError::validation(
                ErrorCode::InvalidInputs,
                "`inputs` must be a string or a list of strings",
            ))
        }
    };
    let tokens = tokens_of(
        &state,
        texts,
        request.add_special_tokens,
        request.prompt_name.as_deref(),
    )
    .await?;
    Ok(ApiJson(tokens))
}

/// Each text's tokens (after the named or default prompt); shared by `/tokenize` and gRPC's
/// `Tokenize`.
pub(crate) async fn tokens_of(
    state: &AppState,
    texts: Vec<String>,
    add_special: bool,
    prompt_name: Option<&str>,
) -> Result<Vec<Vec<SimpleToken>>, ApiError> {
    state.infer.check_batch_size(texts.len())?;
    let prompt = state.infer.prompts.resolve(prompt_name)?;
    state
        .infer
        .with_tokenizer(move |tokenizer| {
            texts
                .iter()
                .map(|text| {
                    let text = match &prompt {
                        Some(p) => format!("{p}{text}"),
                        None => text.clone(),
                    };
                    tokenizer.tokens(&text, add_special).map(|tokens| {
                        tokens
                            .into_iter()
                            .map(|t| SimpleToken {
                                id: t.id,
                                text: t.text,
                                special: t.special,
                                start: t.start,
                                stop: t.stop,
                            })
                            .collect()
                    })
                })
                .collect::<Result<Vec<Vec<SimpleToken>>, _>>()
        })
        .await?
        .map_err(|e| ApiError::tokenizer(e.to_string()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct DecodeRequest {
    #[schema(schema_with = super::schema::decode_ids)]
    ids: Value,
    #[serde(default = "yes")]
    skip_special_tokens: bool,
}

#[utoipa::path(post, path = "/decode", tag = "Text Embeddings Inference", request_body = DecodeRequest,
    responses(
        (status = 200, description = "Text per list of ids", body = Vec<String>),
        (status = 400, description = "Empty batch", body = ErrorResponse),
        (status = 401, description = "Missing or wrong API key", body = ErrorResponse),
        (status = 413, description = "A body over --payload-limit", body = ErrorResponse),
        (status = 415, description = "Content-Type is not application/json", body = ErrorResponse),
        (status = 422, description = "Invalid ids", body = ErrorResponse),
    ))]
pub(crate) async fn decode(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<DecodeRequest>,
) -> Result<ApiJson<Vec<String>>, ApiError> {
    const SHAPE: &str = "`ids` must be a list of token ids or a list of lists of token ids";
    let lists: Vec<Vec<u32>> = match &request.ids {
        Value::Array(items) if items.is_empty() => return Err(ApiError::empty("`ids` is an empty batch")),
        Value::Array(items) if items.iter().all(Value::is_number) => {
            vec![items
                .iter()
                .map(token_id)
                .collect::<Option<_>>()
                .ok_or_else(|| ApiError::validation(ErrorCode::InvalidTokenId, SHAPE))?]
        }
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_array()
                    .and_then(|ids| ids.iter().map(token_id).collect::<Option<Vec<u32>>>())
                    .ok_or_else(|| ApiError::validation(ErrorCode::InvalidTokenId, SHAPE))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(ApiError::validation(ErrorCode::InvalidTokenId, SHAPE)),
    };
    Ok(ApiJson(decoded(&state, lists, request.skip_special_tokens).await?))
}

/// The text of each list of ids; shared by `/decode` and gRPC's `Decode`.
pub(crate) async fn decoded(
    state: &AppState,
    lists: Vec<Vec<u32>>,
    skip_special: bool,
) -> Result<Vec<String>, ApiError> {
    state.infer.check_batch_size(lists.len())?;
    let vocab = state.infer.tokenizer.vocab_size();
    if let Some(bad) = lists.iter().flatten().find(|&&id| id as usize >= vocab) {
        return Err(ApiError::validation(
            ErrorCode::TokenIdOutOfRange,
            format!("token id {bad} is outside the tokenizer's vocabulary (size {vocab})"),
        ));
    }
    state
        .infer
        .with_tokenizer(move |tokenizer| {
            lists
                .iter()
                .map(|ids| tokenizer.decode(ids, skip_special))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?
        .map_err(|e| ApiError::tokenizer(e.to_string()))
}
