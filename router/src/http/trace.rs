//! One span per inference request (not per health probe), named `METHOD /route`, a child of the
//! caller's span when the request carries a W3C `traceparent`, with the response's status and
//! the times TEI reports in its headers (`x-tokenization-time`...) as attributes. Exported with
//! `--otlp-endpoint`; in JSON logs, the context of every line logged while serving it.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Response headers recorded on the span: header, attribute (milliseconds, or a count).
const RECORDED: &[(&str, &str)] = &[
    ("x-total-time", "total_time_ms"),
    ("x-tokenization-time", "tokenization_time_ms"),
    ("x-queue-time", "queue_time_ms"),
    ("x-inference-time", "inference_time_ms"),
    ("x-compute-tokens", "compute_tokens"),
    ("x-compute-characters", "compute_characters"),
];

/// The span of one request or call: `otel.name` and the protocol's own fields as given, then the
/// server kind, the status and the timing attributes every API records ([`record_timings`]).
macro_rules! inference_span {
    ($($fields:tt)*) => {
        tracing::info_span!(
            "request",
            $($fields)*
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            total_time_ms = tracing::field::Empty,
            tokenization_time_ms = tracing::field::Empty,
            queue_time_ms = tracing::field::Empty,
            inference_time_ms = tracing::field::Empty,
            compute_tokens = tracing::field::Empty,
            compute_characters = tracing::field::Empty,
        )
    };
}
pub(crate) use inference_span;

/// Where a request's span gets its parent: the caller's W3C `traceparent`, when valid.
pub(crate) fn join_caller(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if let Some(parent) = crate::telemetry::remote_parent(headers) {
        // Fails only when the span is disabled (filtered out), where nothing is exported anyway.
        let _ = span.set_parent(parent);
    }
}

pub(crate) async fn request_span(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path().to_string(), |path| path.as_str().to_string());
    let span = inference_span!(
        otel.name = %format_args!("{method} {route}"),
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = Empty,
    );
    join_caller(&span, request.headers());
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    // OpenTelemetry's HTTP server convention: a 5xx is the server's error, a 4xx the client's.
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    record_timings(&span, response.headers());
    // One line per request at debug level, carrying the span's fields (unless --disable-spans).
    span.in_scope(|| tracing::debug!(status = status.as_u16(), "request answered"));
    response
}

/// TEI's timing headers of a response (or gRPC metadata) as the span's attributes; the span
/// must declare them.
pub(crate) fn record_timings(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    for (header, attribute) in RECORDED {
        let value = headers.get(*header).and_then(|v| v.to_str().ok());
        if let Some(value) = value.and_then(|v| v.parse::<u64>().ok()) {
            span.record(*attribute, value);
        }
    }
}
