//! The HTTP API (TEI 1.9 compatible). [`app`] builds the router from shared state.

pub(crate) mod auth;
pub(crate) mod counted;
pub(crate) mod embed;
pub(crate) mod error;
pub(crate) mod info;
pub(crate) mod lifecycle;
mod openai;
mod openapi;
mod platforms;
pub(crate) mod predict;
mod schema;
pub(crate) mod server;
pub(crate) mod similarity;
pub(crate) mod tokenize;
pub(crate) mod trace;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

use crate::infer::Infer;
use crate::plan::Task;
pub(crate) use info::Info;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) infer: Infer,
    pub(crate) info: Arc<Info>,
    /// Width of the vectors `/embed` returns before `dimensions`.
    pub(crate) output_dim: usize,
    /// What the model serves, for `/info`, `POST /`'s dispatch and the classifier's labels; which
    /// requests it answers is decided by the service ([`crate::infer::Infer::accepts`]).
    pub(crate) task: Arc<Task>,
    pub(crate) metrics: metrics_exporter_prometheus::PrometheusHandle,
}

/// Every path [`app`] serves before Vertex AI's, which must not take one of them.
const TAKEN_ROUTES: &[&str] = &[
    "/",
    "/embed",
    "/embed_all",
    "/embed_sparse",
    "/embed_multi_vector",
    "/similarity",
    "/predict",
    "/rerank",
    "/tokenize",
    "/decode",
    "/v1/embeddings",
    "/embeddings",
    "/invocations",
    "/vertex",
    "/health",
    "/ping",
    "/metrics",
    "/api-doc/openapi.json",
    "/docs",
    "/info",
];

/// Builds the router with every route and the JSON error contract. With an API key, the
/// inference routes require it; `/health`, `/info` and `/metrics` stay open.
pub(crate) fn app(
    state: AppState,
    payload_limit: usize,
    body_read_timeout: std::time::Duration,
    api_key: Option<&str>,
    cors: Option<&[String]>,
) -> anyhow::Result<Router> {
    let mut inference = Router::new()
        .route("/", post(similarity::root))
        .route("/embed", post(embed::embed))
        .route("/embed_all", post(similarity::embed_all))
        .route("/embed_sparse", post(embed::embed_sparse))
        .route("/embed_multi_vector", post(embed::embed_multi_vector))
        .route("/similarity", post(similarity::similarity))
        .route("/predict", post(predict::predict))
        .route("/rerank", post(predict::rerank))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/decode", post(tokenize::decode))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/embeddings", post(openai::embeddings))
        .route("/invocations", post(platforms::invocations))
        .route("/vertex", post(platforms::vertex));
    let (vertex_predict, vertex_health) = platforms::vertex_routes(TAKEN_ROUTES)?;
    if let Some(route) = &vertex_predict {
        tracing::info!(route, "serving Vertex AI predictions (AIP_PREDICT_ROUTE)");
        inference = inference.route(route, post(platforms::vertex));
    }
    if let Some(key) = api_key {
        let key = auth::ApiKey(key.into());
        inference = inference.route_layer(axum::middleware::from_fn_with_state(key, auth::require_api_key));
    }
    // Outside the key check, so refused requests are traced too.
    let inference = inference.route_layer(axum::middleware::from_fn(trace::request_span));
    let mut public = Router::new()
        .route("/health", get(info::health))
        // TEI's health aliases: the Inference API's and SageMaker's.
        .route("/", get(info::health))
        .route("/ping", get(info::health));
    if let Some(route) = &vertex_health {
        tracing::info!(route, "serving Vertex AI health checks (AIP_HEALTH_ROUTE)");
        public = public.route(route, get(info::health));
    }
    let alias = |path: &str, method, like| openapi::Alias {
        path: path.into(),
        method,
        like,
    };
    let mut aliases = vec![alias("/", "get", "/health"), alias("/ping", "get", "/health")];
    aliases.extend(vertex_predict.as_deref().map(|p| alias(p, "post", "/vertex")));
    aliases.extend(vertex_health.as_deref().map(|p| alias(p, "get", "/health")));
    let router = Router::new()
        .merge(inference)
        .merge(public)
        .route("/metrics", get(metrics))
        .route("/api-doc/openapi.json", get(openapi::handler(&state, &aliases)))
        .route("/docs", get(openapi::docs))
        .route("/info", get(info::info))
        .fallback(error::not_found)
        .method_not_allowed_fallback(|| async { error::ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(payload_limit))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(body_read_timeout))
        .layer(axum::middleware::from_fn(move |request, next| {
            reject_declared_oversize(payload_limit, request, next)
        }));
    let router = match cors {
        Some(origins) => router.layer(cors_layer(origins)?),
        None => router,
    };
    Ok(router.with_state(state))
}

/// 413 before the body is read when `Content-Length` already says it is over `--payload-limit`:
/// reading it first would send `100 Continue` to a client that asked, or wait for bytes that
/// will be refused anyway.
async fn reject_declared_oversize(
    limit: usize,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let error = error::ApiError::too_large(
            error::ErrorCode::PayloadTooLarge,
            format!("request body is larger than --payload-limit ({limit} bytes)"),
        );
        return if openai::is_openai_route(request.uri().path()) {
            openai::OpenAiError::from(error).into_response()
        } else {
            error.into_response()
        };
    }
    next.run(request).await
}

/// CORS for `--cors-allow-origin`, allowing the headers clients send (`Authorization` for
/// `--api-key`, `Content-Type` for JSON bodies).
fn cors_layer(origins: &[String]) -> anyhow::Result<tower_http::cors::CorsLayer> {
    use axum::http::{header, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o).map_err(|_| anyhow::anyhow!("--cors-allow-origin `{o}` is not a valid origin"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        AllowOrigin::list(values)
    };
    Ok(CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]))
}

async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> impl axum::response::IntoResponse {
    prometheus_response(&state.metrics)
}

/// The exposition, with Prometheus' content type.
pub(crate) fn prometheus_response(handle: &metrics_exporter_prometheus::PrometheusHandle) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// A router that serves only `/metrics`, for `--prometheus-port`.
pub(crate) fn metrics_app(handle: metrics_exporter_prometheus::PrometheusHandle) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || std::future::ready(prometheus_response(&handle))),
        )
        .fallback(error::not_found)
}

/// Reads a u32 token id from JSON, or says why it is not one.
pub(crate) fn token_id(value: &Value) -> Option<u32> {
    value.as_u64().and_then(|v| u32::try_from(v).ok())
}

/// `/info`'s `model_type`: an embedding model, a classifier, or (one output) a reranker.
pub(crate) fn info_model_type(task: &Task) -> info::ModelType {
    match task {
        Task::Embed {
            lexical, multi_vector, ..
        } => info::ModelType::Embedding {
            pooling: task.pooling_name(),
            sparse: lexical.is_some(),
            multi_vector: multi_vector.is_some(),
        },
        Task::Splade(_) => info::ModelType::Embedding {
            pooling: task.pooling_name(),
            sparse: true,
            multi_vector: false,
        },
        Task::MultiVector(_) => info::ModelType::Embedding {
            pooling: task.pooling_name(),
            sparse: false,
            multi_vector: true,
        },
        Task::Classify(spec) => {
            let model = info::ClassifierModel {
                id2label: spec
                    .labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (i.to_string(), l.clone()))
                    .collect(),
                label2id: spec.labels.iter().enumerate().map(|(i, l)| (l.clone(), i)).collect(),
            };
            if spec.labels.len() == 1 {
                info::ModelType::Reranker(model)
            } else {
                info::ModelType::Classifier(model)
            }
        }
    }
}
