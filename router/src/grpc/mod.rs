//! TEI's gRPC API (`tei.v1`, proto/tei.proto), served on the HTTP port beside the JSON API: the
//! listener speaks HTTP/2, and gRPC's paths (`/tei.v1.Embed/Embed`) are routes like the others,
//! so one port and one process serve clients of TEI's HTTP and `-grpc` images alike. With the
//! standard health service (`grpc.health.v1`, for Kubernetes' gRPC probes) and reflection
//! (grpcurl without the proto). `--api-key` applies to the `tei.v1` services; health and
//! reflection stay open, as `/health` does.

mod convert;
mod in_order;
mod service;
mod trace;

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tonic::server::NamedService;
use tonic::Status;
use tonic_health::ServingStatus;

use crate::http::auth::{self, ApiKey};
use crate::http::info::ModelType;
use crate::http::AppState;
use service::Tei;

#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub(crate) mod pb {
    tonic::include_proto!("tei.v1");
}

/// proto/tei.proto's descriptors, for reflection.
const DESCRIPTORS: &[u8] = tonic::include_file_descriptor_set!("tei_descriptor");

/// How often the health service looks at the model thread.
const HEALTH_POLL: Duration = Duration::from_millis(500);

/// The gRPC services as routes, to merge into the JSON API's router. `parallel` bounds the
/// messages of one stream answered at once.
pub(crate) fn routes(state: AppState, api_key: Option<&str>, parallel: usize) -> anyhow::Result<Router> {
    let tei = Tei::new(state.clone(), parallel);
    let mut router = Router::new();
    router = add(router, pb::info_server::InfoServer::new(tei.clone()));
    router = add(router, pb::embed_server::EmbedServer::new(tei.clone()));
    router = add(router, pb::predict_server::PredictServer::new(tei.clone()));
    router = add(router, pb::rerank_server::RerankServer::new(tei.clone()));
    router = add(router, pb::tokenize_server::TokenizeServer::new(tei));
    if let Some(key) = api_key {
        let key = ApiKey(key.into());
        router = router.route_layer(axum::middleware::from_fn_with_state(key, require_api_key));
    }
    // Outside the key check, so refused calls are traced too; probes below are not.
    router = router.route_layer(axum::middleware::from_fn(trace::call_span));
    let (reporter, health) = tonic_health::server::health_reporter();
    let infer = state.infer.clone();
    let serving = model_services(&state.info.model_type);
    tokio::spawn(report_health(reporter, serving, move || infer.is_healthy()));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(DESCRIPTORS)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(DESCRIPTORS)
        .build_v1alpha()?;
    Ok(add(add(add(router, health), reflection), reflection_alpha))
}

/// Routes every method of `service` (`/package.Service/Method`) to it.
fn add<S>(router: Router, service: S) -> Router
where
    S: tower::Service<Request, Error = Infallible> + NamedService + Clone + Send + Sync + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    router.route_service(&format!("/{}/{{*method}}", S::NAME), service)
}

/// `--api-key` as gRPC clients send it (`authorization: Bearer <key>` metadata); a refusal is
/// `UNAUTHENTICATED`.
async fn require_api_key(State(key): State<ApiKey>, request: Request, next: Next) -> Response {
    match auth::check(&key, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => Status::from(error).into_http(),
    }
}

/// The services a model of this kind answers; the others always fail, so they are reported
/// `NOT_SERVING`, as TEI reports them.
fn model_services(model_type: &ModelType) -> &'static [&'static str] {
    use pb::{embed_server::EmbedServer, predict_server::PredictServer, rerank_server::RerankServer};
    const EMBED: &str = <EmbedServer<Tei> as NamedService>::NAME;
    const PREDICT: &str = <PredictServer<Tei> as NamedService>::NAME;
    const RERANK: &str = <RerankServer<Tei> as NamedService>::NAME;
    match model_type {
        ModelType::Embedding { .. } => &[EMBED],
        ModelType::Classifier(_) => &[PREDICT],
        ModelType::Reranker(_) => &[PREDICT, RERANK],
    }
}

/// Keeps `grpc.health.v1` in step with the model thread: `Info` and `Tokenize` always serve;
/// the model's services and the server as a whole (`""`) serve while the model thread runs.
/// Before the model is ready and while draining, every route (health included) answers
/// `UNAVAILABLE`, as `/health` answers 503.
async fn report_health(
    reporter: tonic_health::server::HealthReporter,
    serving: &'static [&'static str],
    is_healthy: impl Fn() -> bool,
) {
    use pb::{info_server::InfoServer, tokenize_server::TokenizeServer};
    reporter.set_serving::<InfoServer<Tei>>().await;
    reporter.set_serving::<TokenizeServer<Tei>>().await;
    for service in [
        pb::embed_server::SERVICE_NAME,
        pb::predict_server::SERVICE_NAME,
        pb::rerank_server::SERVICE_NAME,
    ] {
        if !serving.contains(&service) {
            reporter.set_service_status(service, ServingStatus::NotServing).await;
        }
    }
    let mut reported = None;
    loop {
        let healthy = is_healthy();
        if reported != Some(healthy) {
            let status = match healthy {
                true => ServingStatus::Serving,
                false => ServingStatus::NotServing,
            };
            for service in serving.iter().chain([&""]) {
                reporter.set_service_status(service, status).await;
            }
            reported = Some(healthy);
        }
        tokio::time::sleep(HEALTH_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use tonic_health::pb::health_check_response::ServingStatus as Wire;
    use tonic_health::pb::health_server::Health;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::server::HealthService;

    use super::*;

    async fn status(health: &HealthService, service: &str) -> Result<Wire, tonic::Code> {
        let request = tonic::Request::new(HealthCheckRequest {
            service: service.into(),
        });
        match health.check(request).await {
            Ok(answer) => Ok(answer.into_inner().status()),
            Err(status) => Err(status.code()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_model_services_stop_serving_when_the_model_thread_dies() {
        let (reporter, _) = tonic_health::server::health_reporter();
        let health = HealthService::from_health_reporter(reporter.clone());
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = healthy.clone();
        let serving = model_services(&ModelType::Embedding {
            pooling: "mean".into(),
            sparse: false,
            multi_vector: false,
        });
        tokio::spawn(report_health(reporter, serving, move || flag.load(Ordering::SeqCst)));
        tokio::time::sleep(HEALTH_POLL / 2).await;
        let (rerank, embed) = (pb::rerank_server::SERVICE_NAME, pb::embed_server::SERVICE_NAME);
        let tokenize = pb::tokenize_server::SERVICE_NAME;
        assert_eq!(status(&health, "").await, Ok(Wire::Serving));
        assert_eq!(status(&health, embed).await, Ok(Wire::Serving));
        assert_eq!(
            status(&health, rerank).await,
            Ok(Wire::NotServing),
            "an embedder does not rerank"
        );

        healthy.store(false, Ordering::SeqCst);
        tokio::time::sleep(HEALTH_POLL).await;
        assert_eq!(status(&health, "").await, Ok(Wire::NotServing));
        assert_eq!(status(&health, embed).await, Ok(Wire::NotServing));
        assert_eq!(
            status(&health, tokenize).await,
            Ok(Wire::Serving),
            "the tokenizer still answers"
        );
    }
}
