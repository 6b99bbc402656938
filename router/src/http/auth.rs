//! `--api-key`: a bearer token on every inference route, compared in constant time.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::openai::{is_openai_route, OpenAiError};

/// The expected token, shared by the middleware.
#[derive(Debug, Clone)]
pub(crate) struct ApiKey(pub(crate) std::sync::Arc<str>);

pub(crate) async fn require_api_key(State(key): State<ApiKey>, request: Request, next: Next) -> Response {
    match check(&key, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) if is_openai_route(request.uri().path()) => OpenAiError::from(error).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Whether `headers` carry the key as `Authorization: Bearer <key>`; the refusal says which
/// part is wrong. Shared by the JSON and gRPC APIs.
pub(crate) fn check(key: &ApiKey, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    match given {
        // `ct_eq` on slices of different lengths is false without comparing contents; the
        // length of the key is not a secret worth hiding.
        Some(token) if bool::from(token.as_bytes().ct_eq(key.0.as_bytes())) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("the API key is not valid")),
        None => Err(ApiError::unauthorized(
            "this server requires `Authorization: Bearer <api key>`",
        )),
    }
}

/// The token of a `Bearer` credential; the scheme is case-insensitive (RFC 9110 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_is_not() {
        for header in ["Bearer Key", "bearer Key", "BEARER Key", "BeArEr   Key "] {
            assert_eq!(bearer_token(header), Some("Key"), "{header}");
        }
        assert_eq!(bearer_token("Basic Key"), None);
        assert_eq!(bearer_token("BearerKey"), None);
    }
}
