//! The routes cloud platforms call TEI's containers on, which TEI serves: AWS SageMaker
//! (`POST /invocations`, `GET /ping`), Google Vertex AI (`POST /vertex`, and the routes its
//! `AIP_PREDICT_ROUTE` and `AIP_HEALTH_ROUTE` variables name), and the Inference API's `GET /`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::error::{ApiError, ApiJson, InferenceErrors};
use super::AppState;

/// Vertex AI's prediction request: each instance a body `POST /` takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VertexRequest {
    #[schema(value_type = Vec<super::schema::RootRequest>)]
    instances: Vec<Value>,
}

/// `POST /invocations` (SageMaker's route): `POST /`.
#[utoipa::path(post, path = "/invocations", tag = "Text Embeddings Inference",
    request_body(content = super::schema::RootRequest, description = "An /embed, /similarity, /predict or /rerank body, dispatched on its shape"),
    responses(
        (status = 200, description = "The answer of the route the body was dispatched to"),
        InferenceErrors,
    ))]
pub(crate) async fn invocations(
    state: State<AppState>,
    body: Result<ApiJson<Value>, ApiError>,
) -> Result<Response, ApiError> {
    super::similarity::root(state, body).await
}

#[utoipa::path(post, path = "/vertex", tag = "Text Embeddings Inference", request_body = VertexRequest,
    responses(
        (status = 200, description = "`{\"predictions\": [answer, ...]}`, each instance's answer as `POST /` gives it", body = Object),
        InferenceErrors,
    ))]
/// `POST /vertex`: `{"instances": [body, ...]}` answered `{"predictions": [answer, ...]}`, each
/// instance dispatched as `POST /` dispatches a body, all at once; the first failure answers
/// for the whole request, and no instances is `{"predictions": []}`, as in TEI.
pub(crate) async fn vertex(
    State(state): State<AppState>,
    body: Result<ApiJson<VertexRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(request) = body?;
    let answers = futures_util::future::join_all(
        request
            .instances
            .into_iter()
            .map(|instance| super::similarity::root(State(state.clone()), Ok(ApiJson(instance)))),
    )
    .await;
    let mut predictions = Vec::with_capacity(answers.len());
    for answer in answers {
        let body = axum::body::to_bytes(answer?.into_body(), usize::MAX)
            .await
            .map_err(|e| ApiError::backend(format!("reading an instance's answer: {e}")))?;
        let prediction: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::backend(format!("an instance's answer is not JSON: {e}")))?;
        predictions.push(prediction);
    }
    Ok(ApiJson(serde_json::json!({ "predictions": predictions })).into_response())
}

/// The extra routes Vertex AI names by variable: (`AIP_PREDICT_ROUTE`, `AIP_HEALTH_ROUTE`).
/// A route tessera already serves is refused: it would answer another body than Vertex sends.
pub(crate) fn vertex_routes(taken: &[&str]) -> anyhow::Result<(Option<String>, Option<String>)> {
    let read = |name: &str| -> anyhow::Result<Option<String>> {
        let Some(route) = std::env::var(name).ok().filter(|r| !r.is_empty()) else {
            return Ok(None);
        };
        if !route.starts_with('/') {
            anyhow::bail!("{name}=`{route}` is not a path (it must start with `/`)");
        }
        if taken.contains(&route.as_str()) {
            anyhow::bail!(
                "{name}=`{route}` is a route tessera already serves with another body; set the model's \
                 Vertex AI route (containerSpec.predictRoute/healthRoute) to another path"
            );
        }
        Ok(Some(route))
    };
    let predict = read("AIP_PREDICT_ROUTE")?;
    let health = read("AIP_HEALTH_ROUTE")?;
    if predict.is_some() && predict == health {
        anyhow::bail!("AIP_PREDICT_ROUTE and AIP_HEALTH_ROUTE are the same path");
    }
    Ok((predict, health))
}
