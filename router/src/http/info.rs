//! `GET /health` and `GET /info`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use tessera_core::{Evidence, Finding};

use super::error::{ApiError, ApiJson, ErrorResponse};
use super::AppState;

/// `/info`: TEI's fields, then what tessera decided and why.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Info {
    pub(crate) model_id: String,
    pub(crate) model_sha: Option<String>,
    pub(crate) model_dtype: String,
    pub(crate) model_type: ModelType,
    pub(crate) max_concurrent_requests: usize,
    pub(crate) max_input_length: usize,
    pub(crate) max_batch_tokens: usize,
    pub(crate) max_batch_requests: Option<usize>,
    pub(crate) max_client_batch_size: usize,
    pub(crate) auto_truncate: bool,
    pub(crate) tokenization_workers: usize,
    pub(crate) version: &'static str,
    pub(crate) sha: Option<&'static str>,
    pub(crate) docker_label: Option<&'static str>,
    pub(crate) backend: String,
    pub(crate) architecture: String,
    pub(crate) attention_kernel: String,
    pub(crate) evidence: Vec<Evidence>,
    pub(crate) compiled_backends: Vec<&'static str>,
    pub(crate) pooling_source: String,
    pub(crate) hidden_size: usize,
    pub(crate) embedding_dim: usize,
    pub(crate) warnings: Vec<Finding>,
}

/// TEI's `model_type`: `{"embedding": {"pooling": "mean"}}`; an embedding model's further
/// outputs are named beside the pooling only where it has them, so TEI's shape is unchanged
/// otherwise.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ModelType {
    Embedding {
        pooling: String,
        /// `/embed_sparse` answers (SPLADE vectors, or lexical weights).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        sparse: bool,
        /// `/embed_multi_vector` answers (BGE-M3's ColBERT vectors).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        multi_vector: bool,
    },
    Classifier(ClassifierModel),
    Reranker(ClassifierModel),
}

/// TEI's description of a classification head.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClassifierModel {
    pub(crate) id2label: std::collections::BTreeMap<String, String>,
    pub(crate) label2id: std::collections::BTreeMap<String, usize>,
}

#[utoipa::path(get, path = "/info", tag = "Text Embeddings Inference",
    responses((status = 200, description = "The model, the limits, and what tessera decided", body = Object)))]
pub(crate) async fn info(State(state): State<AppState>) -> ApiJson<Info> {
    ApiJson((*state.info).clone())
}

#[utoipa::path(get, path = "/health", tag = "Text Embeddings Inference",
    responses(
        (status = 200, description = "The model worker runs"),
        (status = 503, description = "The model worker is down", body = ErrorResponse),
    ))]
pub(crate) async fn health(State(state): State<AppState>) -> Result<StatusCode, ApiError> {
    if state.infer.is_healthy() {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::unhealthy("the model worker is not running"))
    }
}
