//! One error type for every HTTP rejection, in TEI's JSON shape plus a stable code.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// TEI's `error_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) enum ErrorType {
    Unhealthy,
    Backend,
    Overloaded,
    Validation,
    Tokenizer,
    Empty,
    Unauthorized,
}

/// tessera's stable error codes: the `code` of every JSON error, and what metrics and the
/// OpenAI mapping match on, so renaming one cannot silently reclassify them. docs/http-api.md
/// lists every one (a test checks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ErrorCode {
    EmptyBatch,
    RouteNotFound,
    MethodNotAllowed,
    BodyReadTimeout,
    BatchTooLarge,
    InputTooLong,
    PayloadTooLarge,
    Unauthorized,
    ContentTypeNotJson,
    InvalidJson,
    InvalidRequest,
    InvalidInputs,
    InvalidTokenId,
    TokenIdOutOfRange,
    EmptyTokenIds,
    NoTokens,
    EmptyInput,
    TooManyInputs,
    DimensionsInvalid,
    PromptNameUnknown,
    TaskUnknown,
    WrongModelType,
    TokenizerFailed,
    BackendFailed,
    NonFiniteOutput,
    Overloaded,
    Unhealthy,
}

impl ErrorCode {
    /// Every code, for the documentation test.
    #[cfg(test)]
    const ALL: [ErrorCode; 27] = [
        ErrorCode::EmptyBatch,
        ErrorCode::RouteNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::BodyReadTimeout,
        ErrorCode::BatchTooLarge,
        ErrorCode::InputTooLong,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unauthorized,
        ErrorCode::ContentTypeNotJson,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidInputs,
        ErrorCode::InvalidTokenId,
        ErrorCode::TokenIdOutOfRange,
        ErrorCode::EmptyTokenIds,
        ErrorCode::NoTokens,
        ErrorCode::EmptyInput,
        ErrorCode::TooManyInputs,
        ErrorCode::DimensionsInvalid,
        ErrorCode::PromptNameUnknown,
        ErrorCode::TaskUnknown,
        ErrorCode::WrongModelType,
        ErrorCode::TokenizerFailed,
        ErrorCode::BackendFailed,
        ErrorCode::NonFiniteOutput,
        ErrorCode::Overloaded,
        ErrorCode::Unhealthy,
    ];

    /// The code as clients see it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorCode::EmptyBatch => "empty-batch",
            ErrorCode::RouteNotFound => "route-not-found",
            ErrorCode::MethodNotAllowed => "method-not-allowed",
            ErrorCode::BodyReadTimeout => "body-read-timeout",
            ErrorCode::BatchTooLarge => "batch-too-large",
            ErrorCode::InputTooLong => "input-too-long",
            ErrorCode::PayloadTooLarge => "payload-too-large",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::ContentTypeNotJson => "content-type-not-json",
            ErrorCode::InvalidJson => "invalid-json",
            ErrorCode::InvalidRequest => "invalid-request",
            ErrorCode::InvalidInputs => "invalid-inputs",
            ErrorCode::InvalidTokenId => "invalid-token-id",
            ErrorCode::TokenIdOutOfRange => "token-id-out-of-range",
            ErrorCode::EmptyTokenIds => "empty-token-ids",
            ErrorCode::NoTokens => "no-tokens",
            ErrorCode::EmptyInput => "empty-input",
            ErrorCode::TooManyInputs => "too-many-inputs",
            ErrorCode::DimensionsInvalid => "dimensions-invalid",
            ErrorCode::PromptNameUnknown => "prompt-name-unknown",
            ErrorCode::TaskUnknown => "task-unknown",
            ErrorCode::WrongModelType => "wrong-model-type",
            ErrorCode::TokenizerFailed => "tokenizer-failed",
            ErrorCode::BackendFailed => "backend-failed",
            ErrorCode::NonFiniteOutput => "non-finite-output",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unhealthy => "unhealthy",
        }
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// An HTTP error: status, TEI's `{error, error_type}`, and tessera's stable `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) error_type: ErrorType,
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

/// The JSON body of every error, for the API description.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ErrorResponse {
    error: String,
    error_type: ErrorType,
    /// tessera's stable error code.
    code: String,
}

/// The error answers every inference route can give, for the API description.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum InferenceErrors {
    /// Empty batch.
    #[response(status = 400)]
    Empty(ErrorResponse),
    /// Missing or wrong API key.
    #[response(status = 401)]
    Unauthorized(ErrorResponse),
    /// A body over --payload-limit.
    #[response(status = 413)]
    TooLarge(ErrorResponse),
    /// Content-Type is not application/json.
    #[response(status = 415)]
    ContentType(ErrorResponse),
    /// Invalid request (too many inputs, an input too long, a wrong value) or tokenization error.
    #[response(status = 422)]
    Validation(ErrorResponse),
    /// The model failed on the batch.
    #[response(status = 424)]
    Backend(ErrorResponse),
    /// Too many inputs in flight (Retry-After).
    #[response(status = 429)]
    Overloaded(ErrorResponse),
    /// The model worker is down or the server is shutting down.
    #[response(status = 503)]
    Unhealthy(ErrorResponse),
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_type: ErrorType,
    code: ErrorCode,
}

impl ApiError {
    fn new(status: StatusCode, error_type: ErrorType, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            code,
            message: message.into(),
        }
    }

    /// 422: the request is well-formed JSON but a value is wrong.
    pub(crate) fn validation(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorType::Validation, code, message)
    }

    /// 413: a body over `--payload-limit` (too many inputs or tokens are 422, as in TEI 1.9).
    pub(crate) fn too_large(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorType::Validation, code, message)
    }

    /// 400: an empty batch.
    pub(crate) fn empty(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorType::Empty,
            ErrorCode::EmptyBatch,
            message,
        )
    }

    /// 422: the tokenizer failed.
    pub(crate) fn tokenizer(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Tokenizer,
            ErrorCode::TokenizerFailed,
            message,
        )
    }

    /// 429: too many inputs in flight.
    pub(crate) fn overloaded(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorType::Overloaded,
            ErrorCode::Overloaded,
            message,
        )
    }

    /// 424: the model failed on a batch.
    pub(crate) fn backend(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FAILED_DEPENDENCY,
            ErrorType::Backend,
            ErrorCode::BackendFailed,
            message,
        )
    }

    /// 424: the model's output for this input was NaN or infinite (the weights are suspect).
    pub(crate) fn non_finite(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FAILED_DEPENDENCY,
            ErrorType::Backend,
            ErrorCode::NonFiniteOutput,
            message,
        )
    }

    /// 503: the model worker is gone or shutting down.
    pub(crate) fn unhealthy(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Unhealthy,
            ErrorCode::Unhealthy,
            message,
        )
    }

    /// 401: missing or wrong API key.
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::Unauthorized,
            ErrorCode::Unauthorized,
            message,
        )
    }

    /// 404 for unknown routes.
    pub(crate) fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorType::Validation,
            ErrorCode::RouteNotFound,
            format!("no route {path}"),
        )
    }

    /// 405 for a known route with the wrong method.
    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorType::Validation,
            ErrorCode::MethodNotAllowed,
            "method not allowed on this route",
        )
    }
}

impl ApiError {
    /// The `err` label this error counts under in `te_request_failure`.
    pub(crate) fn failure(&self) -> crate::metrics::Failure {
        use crate::metrics::Failure;
        match (self.error_type, self.code) {
            (ErrorType::Empty, _) => Failure::Empty,
            (ErrorType::Overloaded, _) => Failure::Overloaded,
            (ErrorType::Backend, _) => Failure::Backend,
            (ErrorType::Unhealthy, _) => Failure::Unhealthy,
            (ErrorType::Tokenizer, _) => Failure::Tokenization,
            (ErrorType::Unauthorized, _) => Failure::Unauthorized,
            (ErrorType::Validation, ErrorCode::BatchTooLarge) => Failure::BatchSize,
            (ErrorType::Validation, _) => Failure::Validation,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.message,
            error_type: self.error_type,
            code: self.code,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The one place the service's errors become HTTP answers.
impl From<crate::infer::InferError> for ApiError {
    fn from(error: crate::infer::InferError) -> Self {
        use crate::infer::InferError;
        let message = error.to_string();
        match error {
            InferError::Overloaded => ApiError::overloaded(message),
            InferError::TooLong { .. } => ApiError::validation(ErrorCode::InputTooLong, message),
            InferError::TokenIdOutOfRange(_) => ApiError::validation(ErrorCode::TokenIdOutOfRange, message),
            InferError::EmptyTokenIds { .. } => ApiError::validation(ErrorCode::EmptyTokenIds, message),
            InferError::NoTokens { .. } => ApiError::validation(ErrorCode::NoTokens, message),
            InferError::Tokenizer(_) => ApiError::tokenizer(message),
            InferError::Backend(_) => ApiError::backend(message),
            InferError::NonFinite => ApiError::non_finite(message),
            InferError::WrongModelType(_) => ApiError::validation(ErrorCode::WrongModelType, message),
            InferError::Unavailable(_) => ApiError::unhealthy(message),
            InferError::BatchTooLarge { .. } => ApiError::validation(ErrorCode::BatchTooLarge, message),
            InferError::PromptNameUnknown(_) => ApiError::validation(ErrorCode::PromptNameUnknown, message),
            InferError::TaskUnknown(_) => ApiError::validation(ErrorCode::TaskUnknown, message),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match &rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorType::Validation,
                ErrorCode::ContentTypeNotJson,
                "expected `Content-Type: application/json`",
            ),
            JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::too_large(
                    ErrorCode::PayloadTooLarge,
                    "request body is larger than --payload-limit",
                )
            }
            JsonRejection::BytesRejection(_) if timed_out(&rejection) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorType::Validation,
                ErrorCode::BodyReadTimeout,
                "the request body did not arrive within --body-read-timeout",
            ),
            JsonRejection::JsonSyntaxError(_) => ApiError::validation(
                ErrorCode::InvalidJson,
                format!("invalid JSON: {}", rejection.body_text()),
            ),
            JsonRejection::JsonDataError(_) => ApiError::validation(ErrorCode::InvalidRequest, rejection.body_text()),
            _ => ApiError::validation(ErrorCode::InvalidRequest, rejection.body_text()),
        }
    }
}

/// True when reading the body failed because `--body-read-timeout` passed.
fn timed_out(rejection: &JsonRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = cause {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// `Json<T>` whose rejections are [`ApiError`]s, so malformed bodies get JSON errors too.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(Json), rejection(ApiError))]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// Fallback for unknown routes.
pub(crate) async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(request.uri().path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_map_to_teis_statuses_and_codes() {
        use crate::infer::InferError;
        let cases = [
            (InferError::Overloaded, 429, ErrorCode::Overloaded),
            (
                InferError::TooLong {
                    index: 0,
                    given: 9,
                    max: 8,
                },
                422,
                ErrorCode::InputTooLong,
            ),
            (
                InferError::TokenIdOutOfRange("x".into()),
                422,
                ErrorCode::TokenIdOutOfRange,
            ),
            (InferError::EmptyTokenIds { index: 1 }, 422, ErrorCode::EmptyTokenIds),
            (InferError::NoTokens { index: 1 }, 422, ErrorCode::NoTokens),
            (InferError::Tokenizer("x".into()), 422, ErrorCode::TokenizerFailed),
            (InferError::Backend("x".into()), 424, ErrorCode::BackendFailed),
            (InferError::NonFinite, 424, ErrorCode::NonFiniteOutput),
            (InferError::Unavailable("x".into()), 503, ErrorCode::Unhealthy),
            (
                InferError::BatchTooLarge { given: 9, max: 8 },
                422,
                ErrorCode::BatchTooLarge,
            ),
            (
                InferError::PromptNameUnknown("x".into()),
                422,
                ErrorCode::PromptNameUnknown,
            ),
        ];
        for (error, status, code) in cases {
            let api = ApiError::from(error.clone());
            assert_eq!((api.status.as_u16(), api.code), (status, code), "{error:?}");
            assert_eq!(api.message, error.to_string());
        }
    }

    #[test]
    fn every_code_is_distinct_and_documented() {
        let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/http-api.md")).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code:?} repeats {}", code.as_str());
            assert!(
                docs.contains(&format!("`{}`", code.as_str())),
                "docs/http-api.md lacks `{}`",
                code.as_str()
            );
        }
    }
}
