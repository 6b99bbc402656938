//! Prometheus metrics with TEI's names, types and labels, all registered at start-up so the
//! first scrape lists every one (TEI's appear only after the first request).
//!
//! Label values come from closed sets ([`Method`], [`Failure`]); no request data is a label.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// `method` label of `te_request_count` / `te_request_success`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// One input.
    Single,
    /// A list of inputs.
    Batch,
    /// The body could not be read as a request.
    Invalid,
}

impl Method {
    fn label(self) -> &'static str {
        match self {
            Method::Single => "single",
            Method::Batch => "batch",
            Method::Invalid => "invalid",
        }
    }
}

/// `err` label of `te_request_failure`: TEI's values plus tessera's own, a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Validation,
    Tokenization,
    BatchSize,
    Empty,
    Overloaded,
    Backend,
    Unhealthy,
    Unauthorized,
    Dropped,
}

impl Failure {
    const ALL: [Failure; 9] = [
        Failure::Validation,
        Failure::Tokenization,
        Failure::BatchSize,
        Failure::Empty,
        Failure::Overloaded,
        Failure::Backend,
        Failure::Unhealthy,
        Failure::Unauthorized,
        Failure::Dropped,
    ];

    fn label(self) -> &'static str {
        match self {
            Failure::Validation => "validation",
            Failure::Tokenization => "tokenization",
            Failure::BatchSize => "batch_size",
            Failure::Empty => "empty",
            Failure::Overloaded => "overloaded",
            Failure::Backend => "backend",
            Failure::Unhealthy => "unhealthy",
            Failure::Unauthorized => "unauthorized",
            Failure::Dropped => "dropped",
        }
    }
}

/// Labels of `te_model_info`.
#[derive(Debug, Clone)]
pub(crate) struct ModelInfo {
    pub(crate) model_id: String,
    pub(crate) backend: String,
    pub(crate) dtype: String,
    pub(crate) pooling: String,
    pub(crate) version: String,
}

const DURATIONS: &[&str] = &[
    "te_request_duration",
    "te_request_tokenization_duration",
    "te_request_queue_duration",
    "te_request_inference_duration",
    "te_embed_duration",
    "te_embed_tokenization_duration",
    "te_embed_queue_duration",
    "te_embed_inference_duration",
    "te_backend_forward_duration",
];

/// Installs the global recorder with TEI-compatible buckets and registers every metric.
pub(crate) fn install(max_input_length: usize, model: &ModelInfo) -> Result<PrometheusHandle, BuildError> {
    let handle = builder(max_input_length)?.install_recorder()?;
    register(model);
    Ok(handle)
}

fn builder(max_input_length: usize) -> Result<PrometheusBuilder, BuildError> {
    // 100 µs growing by 1.5x: 37 buckets reach 216 s (TEI's stop at 15 s).
    let durations: Vec<f64> = (0..37).map(|i| 1e-4 * 1.5f64.powi(i)).collect();
    let mut lengths: Vec<f64> = (0..20)
        .map(|i| 2f64.powi(i))
        .filter(|x| *x < max_input_length as f64)
        .collect();
    lengths.push(max_input_length as f64);
    let sizes: Vec<f64> = (0..13).map(|i| 2f64.powi(i)).collect();
    let tokens: Vec<f64> = (0..21).map(|i| 2f64.powi(i)).collect();
    let ratios: Vec<f64> = (1..=10).map(|i| f64::from(i) / 10.0).collect();
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("duration".into()), &durations)?
        .set_buckets_for_metric(Matcher::Full("te_request_input_length".into()), &lengths)?
        .set_buckets_for_metric(Matcher::Full("te_batch_next_size".into()), &sizes)?
        .set_buckets_for_metric(Matcher::Full("te_batch_next_tokens".into()), &tokens)?
        .set_buckets_for_metric(Matcher::Full("te_batch_padding_ratio".into()), &ratios)
}

fn register(model: &ModelInfo) {
    describe_counter!("te_request_count", "Requests received, by method (single or batch)");
    describe_counter!("te_request_success", "Requests answered successfully, by method");
    describe_counter!("te_request_failure", "Requests that failed, by kind of error (err)");
    describe_counter!("te_embed_count", "Inputs submitted for embedding");
    describe_counter!("te_embed_success", "Inputs embedded successfully");
    for name in DURATIONS {
        describe_histogram!(*name, Unit::Seconds, "Time spent, in seconds");
    }
    describe_histogram!("te_request_input_length", Unit::Count, "Tokens per input");
    describe_histogram!("te_batch_next_size", Unit::Count, "Inputs per batch sent to the model");
    describe_histogram!(
        "te_batch_next_tokens",
        Unit::Count,
        "Tokens per batch as the budget counts them (padding included for padded backends)"
    );
    describe_histogram!(
        "te_batch_padding_ratio",
        "Share of each batch's token slots that are padding"
    );
    describe_gauge!("te_queue_size", "Inputs waiting for the model");
    describe_gauge!("te_inflight_inputs", "Inputs admitted and not yet answered");
    describe_gauge!("te_model_info", "The model served (value is always 1)");
    describe_counter!(
        "te_connections_refused_total",
        "Connections closed: --max-connections were open and none made room within 1 s"
    );

    for method in [Method::Single, Method::Batch, Method::Invalid] {
        counter!("te_request_count", "method" => method.label()).increment(0);
        counter!("te_request_success", "method" => method.label()).increment(0);
    }
    for failure in Failure::ALL {
        counter!("te_request_failure", "err" => failure.label()).increment(0);
    }
    counter!("te_embed_count").increment(0);
    counter!("te_embed_success").increment(0);
    counter!("te_connections_refused_total").increment(0);
    gauge!("te_queue_size").set(0.0);
    gauge!("te_inflight_inputs").set(0.0);
    gauge!(
        "te_model_info",
        "model_id" => model.model_id.clone(),
        "backend" => model.backend.clone(),
        "dtype" => model.dtype.clone(),
        "pooling" => model.pooling.clone(),
        "version" => model.version.clone()
    )
    .set(1.0);
    // Histograms appear in the exposition once they hold a sample; registering the handle
    // makes their HELP/TYPE lines and empty buckets visible from the first scrape.
    for name in DURATIONS {
        let _ = histogram!(*name);
    }
    for name in [
        "te_request_input_length",
        "te_batch_next_size",
        "te_batch_next_tokens",
        "te_batch_padding_ratio",
    ] {
        let _ = histogram!(name);
    }
}

pub(crate) fn request_received(method: Method) {
    counter!("te_request_count", "method" => method.label()).increment(1);
}

pub(crate) fn request_failed(failure: Failure) {
    counter!("te_request_failure", "err" => failure.label()).increment(1);
}

/// Per-request timings of a successful request.
pub(crate) struct RequestTimings {
    pub(crate) total: Duration,
    pub(crate) tokenization: Duration,
    pub(crate) queue: Duration,
    pub(crate) inference: Duration,
}

pub(crate) fn request_succeeded(method: Method, t: &RequestTimings) {
    counter!("te_request_success", "method" => method.label()).increment(1);
    histogram!("te_request_duration").record(t.total.as_secs_f64());
    histogram!("te_request_tokenization_duration").record(t.tokenization.as_secs_f64());
    histogram!("te_request_queue_duration").record(t.queue.as_secs_f64());
    histogram!("te_request_inference_duration").record(t.inference.as_secs_f64());
}

pub(crate) fn inputs_submitted(lengths: impl Iterator<Item = usize>) {
    let mut n = 0;
    for len in lengths {
        histogram!("te_request_input_length").record(len as f64);
        n += 1;
    }
    counter!("te_embed_count").increment(n);
}

/// One input answered by the model, with its share of the request's stages.
pub(crate) fn input_embedded(total: Duration, tokenization: Duration, queue: Duration, inference: Duration) {
    counter!("te_embed_success").increment(1);
    histogram!("te_embed_duration").record(total.as_secs_f64());
    histogram!("te_embed_tokenization_duration").record(tokenization.as_secs_f64());
    histogram!("te_embed_queue_duration").record(queue.as_secs_f64());
    histogram!("te_embed_inference_duration").record(inference.as_secs_f64());
}

pub(crate) fn batch_formed(inputs: usize, budget_tokens: usize, padding_ratio: f64) {
    histogram!("te_batch_next_size").record(inputs as f64);
    histogram!("te_batch_next_tokens").record(budget_tokens as f64);
    histogram!("te_batch_padding_ratio").record(padding_ratio);
}

pub(crate) fn backend_forward(duration: Duration) {
    histogram!("te_backend_forward_duration").record(duration.as_secs_f64());
}

pub(crate) fn queue_size(n: usize) {
    gauge!("te_queue_size").set(n as f64);
}

pub(crate) fn inflight_inputs(delta: f64) {
    gauge!("te_inflight_inputs").increment(delta);
}

pub(crate) fn connection_refused() {
    counter!("te_connections_refused_total").increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_in_the_first_scrape() {
        let recorder = builder(256).unwrap().build_recorder();
        let handle = recorder.handle();
        let model = ModelInfo {
            model_id: "m".into(),
            backend: "bert".into(),
            dtype: "float32".into(),
            pooling: "mean".into(),
            version: "0".into(),
        };
        metrics::with_local_recorder(&recorder, || register(&model));
        let text = handle.render();
        for name in [
            "te_request_count",
            "te_request_success",
            "te_request_failure",
            "te_request_duration",
            "te_request_tokenization_duration",
            "te_request_queue_duration",
            "te_request_inference_duration",
            "te_request_input_length",
            "te_embed_count",
            "te_embed_success",
            "te_embed_duration",
            "te_embed_tokenization_duration",
            "te_embed_queue_duration",
            "te_embed_inference_duration",
            "te_batch_next_size",
            "te_batch_next_tokens",
            "te_queue_size",
            "te_model_info",
            "te_batch_padding_ratio",
            "te_inflight_inputs",
            "te_backend_forward_duration",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing from:\n{text}"
            );
        }
        assert!(
            text.contains("te_request_duration_bucket{le=\"145."),
            "duration buckets reach past 120 s:\n{text}"
        );
    }
}
