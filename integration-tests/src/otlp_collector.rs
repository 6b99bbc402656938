//! A stand-in OpenTelemetry collector on loopback: it accepts OTLP trace exports over gRPC
//! (HTTP/2 without TLS, as collectors listen on 4317) and keeps the spans for tests to read.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use http_body::Frame;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// One exported span with the `service.name` of the resource it came under.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The resource's `service.name`.
    pub service_name: String,
    /// The span as exported.
    pub span: Span,
}

impl Exported {
    /// An attribute's value, as a string whatever its type.
    pub fn attribute(&self, key: &str) -> Option<String> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        let value = self
            .span
            .attributes
            .iter()
            .find(|a| a.key == key)?
            .value
            .as_ref()?
            .value
            .as_ref()?;
        Some(match value {
            Value::StringValue(s) => s.clone(),
            Value::IntValue(i) => i.to_string(),
            Value::BoolValue(b) => b.to_string(),
            Value::DoubleValue(d) => d.to_string(),
            other => format!("{other:?}"),
        })
    }
}

/// The running collector; stops when dropped.
pub struct OtlpCollector {
    /// `http://127.0.0.1:PORT`, for `--otlp-endpoint`.
    pub endpoint: String,
    spans: Arc<Mutex<Vec<Exported>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OtlpCollector {
    /// Listens on a free loopback port.
    pub fn start() -> OtlpCollector {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the collector");
        listener.set_nonblocking(true).expect("nonblocking");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let received = spans.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("collector runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().route(
                    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                    axum::routing::post(move |body: Bytes| export(received.clone(), body)),
                );
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = stopped => {}
                }
            });
        });
        OtlpCollector {
            endpoint,
            spans,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<Exported> {
        self.spans.lock().expect("spans").clone()
    }

    /// Waits up to `timeout` for a span `accept` takes.
    pub fn wait_for(&self, timeout: Duration, accept: impl Fn(&Exported) -> bool) -> Option<Exported> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.spans().into_iter().find(|s| accept(s)) {
                return Some(found);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OtlpCollector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Decodes one gRPC message (a flag byte, a 4-byte length, the message) and answers the empty
/// `ExportTraceServiceResponse` with `grpc-status: 0` in the trailers.
async fn export(spans: Arc<Mutex<Vec<Exported>>>, body: Bytes) -> Response {
    if body.len() >= 5 && body[0] == 0 {
        if let Ok(request) = ExportTraceServiceRequest::decode(&body[5..]) {
            let mut spans = spans.lock().expect("spans");
            for resource in request.resource_spans {
                let service_name = resource
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|a| a.key == "service.name")
                    .and_then(|a| a.value.as_ref()?.value.as_ref().cloned())
                    .map(|v| match v {
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s) => s,
                        other => format!("{other:?}"),
                    })
                    .unwrap_or_default();
                for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                    spans.push(Exported {
                        service_name: service_name.clone(),
                        span,
                    });
                }
            }
        }
    }
    let mut response = Response::new(axum::body::Body::new(GrpcOk { sent: 0 }));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    response
}

/// An empty gRPC message, then the trailers saying it succeeded.
struct GrpcOk {
    sent: u8,
}

impl http_body::Body for GrpcOk {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.sent {
            0 => Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0])),
            1 => {
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static("0"));
                Frame::trailers(trailers)
            }
            _ => return Poll::Ready(None),
        };
        self.sent += 1;
        Poll::Ready(Some(Ok(frame)))
    }
}
