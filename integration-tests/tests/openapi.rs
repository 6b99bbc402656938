//! `GET /api-doc/openapi.json` describes every route, and the statuses the server really answers
//! are the ones it documents.

use serde_json::{json, Value};
use tessera_integration_tests::{minilm, Server};

#[test]
fn the_description_covers_every_route_with_accurate_statuses() {
    let server = Server::start(&minilm(), &["--max-client-batch-size", "2"]);
    let spec: Value = server.get("/api-doc/openapi.json").json().unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for (path, method) in [
        ("/", "post"),
        ("/embed", "post"),
        ("/embed_all", "post"),
        ("/embed_sparse", "post"),
        ("/similarity", "post"),
        ("/predict", "post"),
        ("/rerank", "post"),
        ("/tokenize", "post"),
        ("/decode", "post"),
        ("/v1/embeddings", "post"),
        ("/info", "get"),
        ("/health", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is not described"
        );
    }
    let documented = |path: &str, status: u16| -> bool {
        let method = if path == "/health" || path == "/info" {
            "get"
        } else {
            "post"
        };
        paths[path][method]["responses"].get(status.to_string()).is_some()
    };
    let cases = [
        ("/embed", json!({"inputs": "hello"})),
        ("/embed", json!({"inputs": []})),
        ("/embed", json!({"inputs": ["a", "b", "c"]})),
        ("/embed", json!({"inputs": "word ".repeat(400)})),
        ("/embed", json!({"inputs": "a", "dimensions": 0})),
        ("/embed_all", json!({"inputs": "hello"})),
        ("/embed_sparse", json!({"inputs": "hello"})),
        (
            "/similarity",
            json!({"inputs": {"source_sentence": "a", "sentences": ["b"]}}),
        ),
        (
            "/similarity",
            json!({"inputs": {"source_sentence": "a", "sentences": []}}),
        ),
        ("/predict", json!({"inputs": "hello"})),
        ("/rerank", json!({"query": "q", "texts": ["a"]})),
        ("/tokenize", json!({"inputs": "hello"})),
        ("/tokenize", json!({"inputs": []})),
        ("/decode", json!({"ids": [101, 102]})),
        ("/decode", json!({"ids": "x"})),
        ("/v1/embeddings", json!({"input": "hello"})),
        ("/v1/embeddings", json!({"input": ""})),
        ("/", json!({"inputs": "hello"})),
    ];
    for (path, body) in cases {
        let status = server.post(path, &body).status().as_u16();
        assert!(
            documented(path, status),
            "{path} answered {status}, which the description does not list"
        );
    }
    assert!(documented("/health", server.get("/health").status().as_u16()));
    assert_eq!(server.get("/docs").status(), 200);
}
