//! TEI's per-request metrics around every inference handler, in one place: a body that is not a
//! request counts as `method="invalid"`, and each outcome as success (with its stage timings) or
//! failure (with its `err` kind).

use std::future::Future;
use std::time::Instant;

use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::embed::timing_headers;
use super::error::{ApiError, ApiJson};
use crate::infer::Timings;
use crate::metrics::{self, Method};

/// `single` for one input (a string or one list of token ids), `batch` for a list of inputs.
pub(crate) fn method_of(inputs: &Value) -> Method {
    match inputs {
        Value::Array(items) if items.is_empty() || !items.iter().all(Value::is_number) => Method::Batch,
        _ => Method::Single,
    }
}

/// Runs `handle` on the parsed body, counting it; the answer is JSON with TEI's timing headers.
pub(crate) async fn counted<T, B, F>(
    body: Result<ApiJson<T>, ApiError>,
    method: impl FnOnce(&T) -> Method,
    handle: impl FnOnce(T, Instant) -> F,
) -> Result<Response, ApiError>
where
    B: Serialize,
    F: Future<Output = Result<(B, Timings), ApiError>>,
{
    let started = Instant::now();
    let request = match body {
        Ok(ApiJson(request)) => request,
        Err(e) => {
            metrics::request_received(Method::Invalid);
            metrics::request_failed(e.failure());
            return Err(e);
        }
    };
    let method = method(&request);
    let (body, timings) = observed(method, started, handle(request, started)).await?;
    Ok((timing_headers(&timings), ApiJson(body)).into_response())
}

/// Counts one request of `method` and its outcome: on success with its stage timings, on
/// failure under its `err` kind. Every API (JSON and gRPC) counts through it.
pub(crate) async fn observed<B>(
    method: Method,
    started: Instant,
    work: impl Future<Output = Result<(B, Timings), ApiError>>,
) -> Result<(B, Timings), ApiError> {
    metrics::request_received(method);
    match work.await {
        Ok((body, timings)) => {
            metrics::request_succeeded(
                method,
                &metrics::RequestTimings {
                    total: started.elapsed(),
                    tokenization: timings.tokenization,
                    queue: timings.queue,
                    inference: timings.inference,
                },
            );
            Ok((body, timings))
        }
        Err(e) => {
            metrics::request_failed(e.failure());
            Err(e)
        }
    }
}
