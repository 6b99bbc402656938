//! One span per gRPC call, as the JSON API has one per request: named `package.Service/Method`
//! with OpenTelemetry's RPC attributes, a child of the caller's `traceparent` metadata, TEI's
//! timings from the response metadata, and the call's `grpc-status`, which a call that succeeds
//! or a stream sends last, in the trailers: the span ends with the response body, so a stream's
//! span lasts as long as the stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use crate::http::trace::{inference_span, join_caller, record_timings};
use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;
use tracing::field::Empty;
use tracing::{Instrument, Span};

pub(crate) async fn call_span(request: Request, next: Next) -> Response {
    let path = request.uri().path().trim_start_matches('/').to_string();
    let (service, method) = path.split_once('/').unwrap_or((&path, ""));
    let span = inference_span!(
        otel.name = %path,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = Empty,
    );
    join_caller(&span, request.headers());
    let response = next.run(request).instrument(span.clone()).await;
    record_timings(&span, response.headers());
    // A call refused before any message has its status in the headers ("trailers-only").
    if record_status(&span, response.headers()) {
        return response;
    }
    response.map(|body| Body::new(Traced { body, span }))
}

/// Records `grpc-status` if `headers` carry it; whether they did.
fn record_status(span: &Span, headers: &HeaderMap) -> bool {
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return false;
    };
    span.record("rpc.grpc.status_code", code);
    // OpenTelemetry's gRPC server convention: these codes are the server's errors, the others
    // the client's.
    let server_error = matches!(
        tonic::Code::from(code),
        tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::Unavailable
            | tonic::Code::DataLoss
    );
    if server_error {
        span.record("otel.status_code", "ERROR");
    }
    span.in_scope(|| tracing::debug!(grpc_status = code, "call answered"));
    true
}

/// A response body that records the trailers' `grpc-status` on the call's span, and keeps the
/// span open (and entered while the stream is polled) until the body ends.
struct Traced {
    body: Body,
    span: Span,
}

impl http_body::Body for Traced {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &frame {
            if let Some(trailers) = frame.trailers_ref() {
                record_status(&this.span, trailers);
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
