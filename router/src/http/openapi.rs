//! The API description, generated from the handlers' annotations: `GET /api-doc/openapi.json`,
//! and `GET /docs`, a Swagger UI page over it.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde_json::{json, Value};
use utoipa::OpenApi;

use super::{embed, error, info, openai, platforms, predict, similarity, tokenize, AppState};

#[derive(OpenApi)]
#[openapi(
    info(title = "tessera", description = "Text embeddings inference with TEI's HTTP API"),
    paths(
        embed::embed,
        embed::embed_sparse,
        embed::embed_multi_vector,
        similarity::embed_all,
        similarity::similarity,
        similarity::root,
        predict::predict,
        predict::rerank,
        tokenize::tokenize,
        tokenize::decode,
        openai::embeddings,
        platforms::invocations,
        platforms::vertex,
        info::info,
        info::health,
    ),
    components(schemas(error::ErrorResponse, error::ErrorType))
)]
struct ApiDoc;

/// The description, fitted to what this server was started with: the model's prompt and task
/// names as the only values of `prompt_name` and `task`, and `--max-client-batch-size` as the
/// longest batch, so that a body the description accepts is one this server accepts. Nothing
/// in it changes while the server runs, so it is written once.
fn document(state: &AppState, aliases: &[Alias]) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    for alias in aliases {
        alias.describe(&mut doc);
    }
    let prompts = &state.infer.prompts;
    let deployment = Deployment {
        prompts: prompts.named.keys().cloned().collect(),
        tasks: prompts.tasks.clone(),
        max_batch: state.infer.max_client_batch_size(),
    };
    deployment.fit(&mut doc);
    doc
}

/// A route that answers as a described one does (TEI's health aliases, Vertex AI's routes).
pub(crate) struct Alias {
    pub(crate) path: String,
    pub(crate) method: &'static str,
    /// The described path it answers as.
    pub(crate) like: &'static str,
}

impl Alias {
    /// Copies the described operation under the alias's path, tagged as an alias of it.
    fn describe(&self, doc: &mut Value) {
        let Some(mut operation) = doc
            .pointer(&format!("/paths/{}/{}", pointer_token(self.like), self.method))
            .cloned()
        else {
            return;
        };
        let name = match self.path.trim_matches('/') {
            "" => "root".to_string(),
            path => path.replace(['/', ':', '.'], "_"),
        };
        operation["operationId"] = json!(format!("{}_{name}", self.method));
        operation["description"] = json!(format!("Answers as `{} {}`.", self.method.to_uppercase(), self.like));
        if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
            let item = paths.entry(self.path.clone()).or_insert_with(|| json!({}));
            item[self.method] = operation;
        }
    }
}

/// A path as one JSON pointer token (`/` and `~` escaped).
fn pointer_token(path: &str) -> String {
    path.replace('~', "~0").replace('/', "~1")
}

/// `GET /api-doc/openapi.json`: the [`document`] of this server with its `aliases`, serialized
/// once.
pub(crate) fn handler(
    state: &AppState,
    aliases: &[Alias],
) -> impl Fn() -> std::future::Ready<Response> + Clone + Send + 'static {
    let body = axum::body::Bytes::from(serde_json::to_vec(&document(state, aliases)).unwrap_or_default());
    move || std::future::ready(([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response())
}

/// What the description depends on beyond the handlers.
struct Deployment {
    prompts: Vec<String>,
    tasks: Vec<String>,
    max_batch: usize,
}

impl Deployment {
    fn fit(&self, doc: &mut Value) {
        let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) else {
            return;
        };
        for schema in schemas.values_mut() {
            let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
                continue;
            };
            for (field, names) in [("prompt_name", &self.prompts), ("task", &self.tasks)] {
                if let Some(property) = properties.get_mut(field) {
                    // Absent or null: none; else one of the model's.
                    let mut values = vec![Value::Null];
                    values.extend(names.iter().map(|n| json!(n)));
                    property["enum"] = Value::Array(values);
                }
            }
            // /similarity runs the source sentence beside the others.
            for (field, besides) in [("inputs", 0), ("input", 0), ("texts", 0), ("ids", 0), ("sentences", 1)] {
                if let Some(property) = properties.get_mut(field) {
                    cap_batches(property, self.max_batch.saturating_sub(besides));
                }
            }
        }
    }
}

/// Caps the batch arrays of a body field at `max` items: the field itself when it is a list of
/// inputs, or the list variant of a field that also takes one input. A list of token ids is one
/// input, not a batch.
fn cap_batches(schema: &mut Value, max: usize) {
    let cap = |array: &mut Value| {
        let is_batch = array["type"] == "array" && array["items"]["type"] != "integer";
        if is_batch {
            let limit = array["maxItems"].as_u64().map_or(max as u64, |m| m.min(max as u64));
            array["maxItems"] = json!(limit);
        }
    };
    cap(schema);
    for key in ["oneOf", "anyOf"] {
        if let Some(variants) = schema.get_mut(key).and_then(Value::as_array_mut) {
            variants.iter_mut().for_each(cap);
        }
    }
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
