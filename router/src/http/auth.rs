//! `--api-key`: a bearer token on every inference route, compared in constant time.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The expected token, shared by the middleware.
#[derive(Debug, Clone)]
pub(crate) struct ApiKey(pub(crate) std::sync::Arc<str>);

pub(crate) async fn require_api_key(
    State(key): State<ApiKey>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    match given {
        // `ct_eq` on slices of different lengths is false without comparing contents; the
        // length of the key is not a secret worth hiding.
        Some(token) if bool::from(token.as_bytes().ct_eq(key.0.as_bytes())) => Ok(next.run(request).await),
        Some(_) => Err(ApiError::unauthorized("the API key is not valid")),
        None => Err(ApiError::unauthorized(
            "this server requires `Authorization: Bearer <api key>`",
        )),
    }
}
