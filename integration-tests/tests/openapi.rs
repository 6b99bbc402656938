//! `GET /api-doc/openapi.json` describes every route, the statuses the server really answers
//! are the ones it documents, and its request schemas take exactly the bodies the server takes.

use serde_json::{json, Value};
use tessera_integration_tests::{minilm, reference, Server};

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
        ("/embed_multi_vector", "post"),
        ("/similarity", "post"),
        ("/predict", "post"),
        ("/rerank", "post"),
        ("/tokenize", "post"),
        ("/decode", "post"),
        ("/v1/embeddings", "post"),
        ("/invocations", "post"),
        ("/vertex", "post"),
        ("/info", "get"),
        ("/health", "get"),
        ("/", "get"),
        ("/ping", "get"),
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
        ("/embed", json!({"inputs": ["a", "b", "c"]})),
        ("/embed", json!({"inputs": ["a", "b", "c", "d"]})),
        ("/embed", json!({"inputs": "a", "prompt_name": null})),
        ("/embed", json!({"inputs": "a", "prompt_name": "query"})),
        ("/embed", json!({"inputs": "a", "task": "retrieval.query"})),
        (
            "/similarity",
            json!({"inputs": {"source_sentence": "a", "sentences": ["b", "c"]}}),
        ),
        (
            "/similarity",
            json!({"inputs": {"source_sentence": "a", "sentences": ["b", "c", "d"]}}),
        ),
        ("/tokenize", json!({"inputs": ["a", "b", "c", "d"]})),
        ("/decode", json!({"ids": [1, 2, 3, 4, 5]})),
        ("/decode", json!({"ids": [[1], [2], [3], [4]]})),
        ("/embed_all", json!({"inputs": "hello"})),
        ("/embed_sparse", json!({"inputs": "hello"})),
        ("/embed_multi_vector", json!({"inputs": "hello"})),
        ("/embed_multi_vector", json!({"inputs": "hello", "dimensions": 4})),
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
        ("/invocations", json!({"inputs": "hello"})),
        ("/invocations", json!({"inputs": []})),
        (
            "/vertex",
            json!({"instances": [{"inputs": "hello"}, {"query": "q", "texts": ["a"]}]}),
        ),
        ("/vertex", json!({"instances": [{"inputs": ["a", "b", "c"]}]})),
        ("/vertex", json!({"instances": "hello"})),
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

/// A validator for the body of `method path` as the served description states it (its
/// `$ref`s resolved within the document).
fn request_schema(spec: &Value, path: &str) -> jsonschema::Validator {
    let body = &spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let mut schema = json!({"components": spec["components"].clone()});
    schema
        .as_object_mut()
        .unwrap()
        .extend(body.as_object().unwrap().clone());
    jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{path}: the schema does not compile: {e}"))
}

/// Every body is sent and checked against its route's schema: the schema must accept it
/// exactly when the server does (a 2xx), so that generated clients and schema-driven tests send
/// what the server takes: the description is fitted to the model's prompt and task names and to
/// `--max-client-batch-size`. The bodies avoid only the vocabulary and the model's width.
#[test]
fn request_schemas_take_exactly_the_bodies_the_server_takes() {
    let check = |server: &Server, cases: &[(&str, Value)]| {
        let spec: Value = server.get("/api-doc/openapi.json").json().unwrap();
        for (path, body) in cases {
            let status = server.post(path, body).status();
            let valid = request_schema(&spec, path).is_valid(body);
            assert_eq!(
                valid,
                status.is_success(),
                "{path} {body}: the server answered {status}, the schema says valid={valid}"
            );
        }
    };
    let embedder = Server::start(&minilm(), &["--max-client-batch-size", "3"]);
    let mut cases = vec![];
    for path in ["/embed", "/embed_all", "/"] {
        let key = "inputs";
        cases.extend([
            (path, json!({ key: "hello" })),
            (path, json!({ key: "" })),
            (path, json!({ key: ["a", "b"] })),
            (path, json!({ key: [101, 7592, 102] })),
            (path, json!({ key: [[101, 102], "b"] })),
            (path, json!({ key: [] })),
            (path, json!({ key: [[]] })),
            (path, json!({ key: {} })),
            (path, json!({ key: [1.5] })),
            (path, json!({ key: [-1] })),
            (path, json!({ key: [4294967296u64] })),
            (path, json!({ key: [["a"]] })),
            (path, json!({ key: null })),
            (path, json!({})),
        ]);
    }
    cases.extend([
        ("/embed", json!({"inputs": "a", "dimensions": 0})),
        ("/embed", json!({"inputs": "a", "truncation_direction": "Left"})),
        ("/embed", json!({"inputs": "a", "truncation_direction": "middle"})),
        ("/v1/embeddings", json!({"input": "hello"})),
        ("/v1/embeddings", json!({"input": ["a", [101, 102]]})),
        ("/v1/embeddings", json!({"input": ""})),
        ("/v1/embeddings", json!({"input": ["a", ""]})),
        ("/v1/embeddings", json!({"input": []})),
        ("/v1/embeddings", json!({"input": vec!["a"; 2049]})),
        ("/v1/embeddings", json!({"input": "a", "encoding_format": "base64"})),
        ("/v1/embeddings", json!({"input": "a", "encoding_format": "hex"})),
        (
            "/similarity",
            json!({"inputs": {"source_sentence": "a", "sentences": ["b"]}}),
        ),
        (
            "/similarity",
            json!({"inputs": {"source_sentence": "a", "sentences": []}}),
        ),
        ("/similarity", json!({"inputs": {"sentences": ["b"]}})),
        ("/", json!({"inputs": {"source_sentence": "a", "sentences": ["b"]}})),
        ("/tokenize", json!({"inputs": "hello"})),
        ("/tokenize", json!({"inputs": ["a", ""]})),
        ("/tokenize", json!({"inputs": []})),
        ("/tokenize", json!({"inputs": [101]})),
        ("/decode", json!({"ids": [101, 102]})),
        ("/decode", json!({"ids": [[101], []]})),
        ("/decode", json!({"ids": []})),
        ("/decode", json!({"ids": [[]]})),
        ("/decode", json!({"ids": "x"})),
        ("/decode", json!({"ids": [-3]})),
    ]);
    check(&embedder, &cases);
    drop(embedder);

    let reranker = Server::start(
        &reference::model("xlm-roberta-reranker-tiny"),
        &["--max-client-batch-size", "3"],
    );
    let mut cases = vec![];
    for path in ["/predict", "/"] {
        cases.extend([
            (path, json!({"inputs": "hello"})),
            (path, json!({"inputs": ["q", "p"]})),
            (path, json!({"inputs": [["q", "p"], "t"]})),
            (path, json!({"inputs": ["a", "b", "c"]})),
            (path, json!({"inputs": [["q", "p", "x"]]})),
            (path, json!({"inputs": []})),
        ]);
    }
    // Token ids are an /embed body, so `/` documents them; a classifier refuses them.
    cases.push(("/predict", json!({"inputs": [1]})));
    for path in ["/rerank", "/"] {
        cases.extend([
            (path, json!({"query": "q", "texts": ["a", "b"]})),
            (path, json!({"query": "q", "texts": []})),
            (path, json!({"query": "q", "texts": "a"})),
            (path, json!({"query": 1, "texts": ["a"]})),
            (path, json!({"query": "q", "texts": ["a", "b", "c", "d"]})),
        ]);
    }
    check(&reranker, &cases);
}
