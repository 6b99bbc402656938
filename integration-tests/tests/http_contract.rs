//! Every route and every error path of the HTTP API, against the real binary.

use serde_json::{json, Value};
use tessera_integration_tests::{minilm, Server};

fn assert_error(r: reqwest::blocking::Response, status: u16, error_type: &str) -> Value {
    assert_eq!(r.status().as_u16(), status);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "error bodies are JSON"
    );
    let body: Value = r.json().expect("JSON error body");
    assert_eq!(body["error_type"], error_type, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    assert!(body["code"].as_str().is_some(), "{body}");
    body
}

fn raw(server: &Server, path: &str, content_type: Option<&str>, body: &str) -> reqwest::blocking::Response {
    let mut r = reqwest::blocking::Client::new()
        .post(format!("{}{path}", server.url))
        .body(body.to_string());
    if let Some(ct) = content_type {
        r = r.header("content-type", ct);
    }
    r.send().unwrap()
}

#[test]
fn embed_errors_are_tei_json_with_tei_statuses() {
    let server = Server::start(&minilm(), &["--max-client-batch-size", "4", "--payload-limit", "20000"]);
    assert_error(server.post("/embed", &json!({ "inputs": [] })), 400, "Empty");
    assert_error(
        server.post("/embed", &json!({ "inputs": ["a", "b", "c", "d", "e"] })),
        422,
        "Validation",
    );
    let long = "word ".repeat(400);
    let body = assert_error(
        server.post("/embed", &json!({ "inputs": long, "truncate": false })),
        422,
        "Validation",
    );
    assert!(body["error"].as_str().unwrap().contains("256"), "{body}");
    assert_error(
        raw(&server, "/embed", Some("application/json"), "{\"inputs\": "),
        422,
        "Validation",
    );
    assert_error(
        raw(&server, "/embed", Some("application/json"), "{\"nope\": 1}"),
        422,
        "Validation",
    );
    assert_error(
        raw(&server, "/embed", Some("text/plain"), "{\"inputs\": \"a\"}"),
        415,
        "Validation",
    );
    assert_error(raw(&server, "/embed", None, "{\"inputs\": \"a\"}"), 415, "Validation");
    let huge = json!({ "inputs": "x ".repeat(20000) }).to_string();
    assert_error(
        raw(&server, "/embed", Some("application/json"), &huge),
        413,
        "Validation",
    );
    assert_error(server.post("/embed", &json!({ "inputs": {"a": 1} })), 422, "Validation");
    assert_error(server.post("/embed", &json!({ "inputs": [1, -5] })), 422, "Validation");
    assert_error(server.post("/embed", &json!({ "inputs": [[]] })), 422, "Validation");
    assert_error(server.post("/embed", &json!({ "inputs": [999999] })), 422, "Validation");
    assert_error(
        server.post("/embed", &json!({ "inputs": "a", "dimensions": 0 })),
        422,
        "Validation",
    );
    assert_error(
        server.post("/embed", &json!({ "inputs": "a", "dimensions": 385 })),
        422,
        "Validation",
    );
    let body = assert_error(
        server.post("/embed", &json!({ "inputs": "a", "prompt_name": "query" })),
        422,
        "Validation",
    );
    assert!(body["error"].as_str().unwrap().contains("available"), "{body}");
    assert_error(
        server.post("/embed", &json!({ "inputs": "a", "truncation_direction": "middle" })),
        422,
        "Validation",
    );
    assert_error(server.get("/nope"), 404, "Validation");
    assert_error(server.get("/embed"), 405, "Validation");
    // The server is still fine after all of that.
    assert_eq!(server.post("/embed", &json!({ "inputs": "still alive" })).status(), 200);
}

#[test]
fn embed_options_behave_like_tei() {
    let server = Server::start(&minilm(), &[]);
    let r = server.post("/embed", &json!({ "inputs": ["Hello world", "", "   \t\n"] }));
    assert_eq!(r.status(), 200);
    for header in [
        "x-compute-type",
        "x-compute-time",
        "x-compute-characters",
        "x-compute-tokens",
        "x-total-time",
        "x-tokenization-time",
        "x-queue-time",
        "x-inference-time",
    ] {
        assert!(r.headers().contains_key(header), "missing {header}");
    }
    assert_eq!(
        r.headers()["x-compute-tokens"],
        "8",
        "4 + 2 + 2 tokens: empty inputs are [CLS] [SEP]"
    );
    let v: Vec<Vec<f32>> = r.json().unwrap();
    assert_eq!(v.len(), 3);
    for vector in &v {
        let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }

    let short: Vec<Vec<f32>> = server
        .post("/embed", &json!({ "inputs": "Hello world", "dimensions": 16 }))
        .json()
        .unwrap();
    assert_eq!(short[0].len(), 16);
    let norm: f32 = short[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "dimensions re-normalizes");

    let long = "word ".repeat(400);
    for direction in ["right", "left", "Right"] {
        let r = server.post(
            "/embed",
            &json!({ "inputs": long, "truncate": true, "truncation_direction": direction }),
        );
        assert_eq!(r.status(), 200, "{direction}");
        assert_eq!(r.headers()["x-compute-tokens"], "256");
    }
}

/// TEI 1.9 truncates by default; `--auto-truncate false` restores refusing, and a request's own
/// `truncate` wins either way.
#[test]
fn truncation_is_on_by_default_as_in_tei() {
    let long = "word ".repeat(400);
    let server = Server::start(&minilm(), &[]);
    let r = server.post("/embed", &json!({ "inputs": long }));
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-compute-tokens"], "256");
    let r = server.post("/embed", &json!({ "inputs": long, "truncate": false }));
    assert_eq!(r.status(), 422);
    drop(server);
    let server = Server::start(&minilm(), &["--auto-truncate", "false"]);
    assert_eq!(server.post("/embed", &json!({ "inputs": long })).status(), 422);
    let r = server.post("/embed", &json!({ "inputs": long, "truncate": true }));
    assert_eq!(r.status(), 200);
}

#[test]
fn tokenize_decode_info_health() {
    let server = Server::start(&minilm(), &["--served-model-name", "mini"]);
    let tokens: Value = server
        .post("/tokenize", &json!({ "inputs": "Hello world" }))
        .json()
        .unwrap();
    assert_eq!(
        tokens[0][0],
        json!({"id": 101, "text": "[CLS]", "special": true, "start": null, "stop": null})
    );
    assert_eq!(
        tokens[0][1],
        json!({"id": 7592, "text": "Hello", "special": false, "start": 0, "stop": 5})
    );
    let plain: Value = server
        .post("/tokenize", &json!({ "inputs": ["a b"], "add_special_tokens": false }))
        .json()
        .unwrap();
    assert_eq!(plain[0].as_array().unwrap().len(), 2);
    assert_error(server.post("/tokenize", &json!({ "inputs": [] })), 400, "Empty");
    assert_error(server.post("/tokenize", &json!({ "inputs": 5 })), 422, "Validation");

    let text: Value = server
        .post("/decode", &json!({ "ids": [101, 7592, 2088, 102] }))
        .json()
        .unwrap();
    assert_eq!(text, json!(["hello world"]));
    let texts: Value = server
        .post(
            "/decode",
            &json!({ "ids": [[101, 7592, 102], [2088]], "skip_special_tokens": false }),
        )
        .json()
        .unwrap();
    assert_eq!(texts, json!(["[CLS] hello [SEP]", "world"]));
    assert_error(server.post("/decode", &json!({ "ids": [40000000] })), 422, "Validation");
    assert_error(server.post("/decode", &json!({ "ids": "x" })), 422, "Validation");

    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(info["model_id"], "mini");
    assert_eq!(info["model_type"], json!({"embedding": {"pooling": "mean"}}));
    assert_eq!(info["max_input_length"], 256);
    assert_eq!(info["backend"], "flash");
    assert_eq!(info["attention_kernel"], "tiled-cpu");
    assert_eq!(info["model_dtype"], "float32");
    assert!(info["evidence"].as_array().is_some_and(|e| !e.is_empty()));
    assert_eq!(server.get("/health").status(), 200);
}
