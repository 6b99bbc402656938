//! Logs and request traces. Logs go to stderr (text, or JSON lines with `--json-output`); with
//! `--otlp-endpoint`, each inference request's span is also exported as OTLP over gRPC, as TEI
//! exports its traces, joined to the caller's trace when the request carries a W3C
//! `traceparent` header.

use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Where traces go.
pub(crate) struct Otlp<'a> {
    /// The collector's gRPC endpoint (`http://collector:4317`).
    pub(crate) endpoint: &'a str,
    /// The resource's `service.name`.
    pub(crate) service_name: &'a str,
}

/// The installed exporter, flushed on [`Telemetry::shutdown`] so that the spans of the last
/// requests before exit are not lost.
#[must_use]
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub(crate) fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5)) {
                tracing::warn!("flushing the last traces failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber. `RUST_LOG`, else TEI's `LOG_LEVEL`, else `default_level`
/// filters both logs and spans. `disable_spans` leaves the span context out of JSON lines.
/// With `otlp`, it must run inside the tokio runtime (the gRPC channel is bound to it).
pub(crate) fn init(json: bool, disable_spans: bool, default_level: &str, otlp: Option<Otlp>) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_from_env("LOG_LEVEL"))
        .unwrap_or_else(|_| EnvFilter::new(default_level));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json()
            .with_current_span(!disable_spans)
            .with_span_list(!disable_spans)
            .boxed()
    } else {
        fmt.boxed()
    };
    let (provider, problem) = match otlp.map(exporter) {
        None => (None, None),
        Some(Ok(provider)) => (Some(provider), None),
        Some(Err(e)) => (None, Some(e)),
    };
    // Only tessera's own spans: the exporter's gRPC client has spans of its own, which would
    // otherwise be exported through itself.
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("tessera"))
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.target().starts_with("tessera")
            }))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(traces)
        .init();
    if let Some(problem) = problem {
        tracing::warn!("--otlp-endpoint: {problem}; no traces are exported");
    }
    Telemetry { provider }
}

fn exporter(otlp: Otlp) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(otlp.endpoint)
        .with_timeout(Duration::from_secs(10))
        .build()?;
    let resource = Resource::builder()
        .with_service_name(otlp.service_name.to_string())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build())
}

/// The caller's trace context from a W3C `traceparent` (and `tracestate`) header, when valid.
pub(crate) fn remote_parent(headers: &axum::http::HeaderMap) -> Option<opentelemetry::Context> {
    use opentelemetry::trace::TraceContextExt;
    let context = TraceContextPropagator::new().extract(&Headers(headers));
    context.span().span_context().is_valid().then_some(context)
}

struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    #[test]
    fn a_w3c_traceparent_is_the_parent_and_anything_else_is_not() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let context = remote_parent(&headers).expect("a parent");
        let span = context.span().span_context().clone();
        assert_eq!(span.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span.span_id().to_string(), "00f067aa0ba902b7");
        assert!(span.is_remote() && span.is_sampled());
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "not a traceparent",
        ] {
            headers.insert("traceparent", bad.parse().unwrap());
            assert!(remote_parent(&headers).is_none(), "{bad}");
        }
        assert!(remote_parent(&axum::http::HeaderMap::new()).is_none());
    }
}
