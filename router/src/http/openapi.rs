//! The API description, generated from the handlers' annotations: `GET /api-doc/openapi.json`,
//! and `GET /docs`, a Swagger UI page over it.

use axum::response::Html;
use axum::Json;
use utoipa::OpenApi;

use super::{embed, error, info, openai, predict, similarity, tokenize};

#[derive(OpenApi)]
#[openapi(
    info(title = "tessera", description = "Text embeddings inference with TEI's HTTP API"),
    paths(
        embed::embed,
        embed::embed_sparse,
        similarity::embed_all,
        similarity::similarity,
        similarity::root,
        predict::predict,
        predict::rerank,
        tokenize::tokenize,
        tokenize::decode,
        openai::embeddings,
        info::info,
        info::health,
    ),
    components(schemas(error::ErrorResponse, error::ErrorType))
)]
struct ApiDoc;

pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Swagger UI from its public CDN, pointed at this server's description.
pub(crate) async fn docs() -> Html<&'static str> {
    Html(
        r##"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>tessera API</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>window.onload = () => { window.ui = SwaggerUIBundle({ url: "/api-doc/openapi.json", dom_id: "#swagger-ui" }); };</script>
</body></html>"##,
    )
}
