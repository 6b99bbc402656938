//! `/similarity`, `/embed_all`, `POST /`, the cloud platforms' routes (SageMaker, Vertex AI), and
//! huggingface_hub's InferenceClient.

use std::process::Command;

use serde_json::{json, Value};
use tessera_integration_tests::{compare, minilm, run_with_env, workspace, Server};

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn similarity_is_the_cosine_of_the_embeddings() {
    let server = Server::start(&minilm(), &[]);
    let source = "A man is playing a guitar.";
    let sentences = [
        "A person plays an acoustic guitar.",
        "The stock market crashed on Monday.",
    ];
    let scores: Vec<f32> = server
        .post(
            "/similarity",
            &json!({"inputs": {"source_sentence": source, "sentences": sentences}}),
        )
        .json()
        .unwrap();
    let vectors: Vec<Vec<f32>> = server
        .post("/embed", &json!({"inputs": [source, sentences[0], sentences[1]]}))
        .json()
        .unwrap();
    assert_eq!(scores.len(), 2);
    for i in 0..2 {
        assert!((scores[i] - dot(&vectors[0], &vectors[i + 1])).abs() < 1e-6);
    }
    assert!(scores[0] > scores[1], "the guitar sentence is closer: {scores:?}");

    // The same through TEI's default route, with no TASK variable.
    let root: Vec<f32> = server
        .post(
            "/",
            &json!({"inputs": {"source_sentence": source, "sentences": sentences}}),
        )
        .json()
        .unwrap();
    assert_eq!(root, scores);
    let root_embed: Vec<Vec<f32>> = server.post("/", &json!({"inputs": source})).json().unwrap();
    assert!(compare(&root_embed[0], &vectors[0]).0 < 1e-6);

    let r = server.post(
        "/similarity",
        &json!({"inputs": {"source_sentence": source, "sentences": []}}),
    );
    assert_eq!(r.status(), 400);
    let r = server.post("/similarity", &json!({"inputs": {"sentences": ["x"]}}));
    assert_eq!(r.status(), 422);
    let body: Value = r.json().unwrap();
    assert_eq!(body["error_type"], "Validation");
}

#[test]
fn embed_all_returns_every_token_and_mean_pooling_them_gives_embed() {
    let server = Server::start(&minilm(), &[]);
    let tokens: Vec<Vec<Vec<f32>>> = server
        .post("/embed_all", &json!({"inputs": ["Hello world", "a"]}))
        .json()
        .unwrap();
    assert_eq!((tokens.len(), tokens[0].len(), tokens[1].len()), (2, 4, 3));
    assert_eq!(tokens[0][0].len(), 384);
    let raw: Vec<Vec<f32>> = server
        .post("/embed", &json!({"inputs": "Hello world", "normalize": false}))
        .json()
        .unwrap();
    let mean: Vec<f32> = (0..384)
        .map(|c| tokens[0].iter().map(|t| t[c]).sum::<f32>() / 4.0)
        .collect();
    assert!(compare(&mean, &raw[0]).0 < 1e-5);
    assert_eq!(server.post("/embed_all", &json!({"inputs": []})).status(), 400);
}

#[test]
fn huggingface_hub_inference_client_works_against_the_root_route() {
    let Some(python) = tessera_integration_tests::python_venv("py-clients", &["huggingface_hub>=0.24", "numpy"]) else {
        return;
    };
    let server = Server::start(&minilm(), &[]);
    let out = Command::new(&python)
        .arg(workspace().join("integration-tests/fixtures/hf_client.py"))
        .arg(&server.url)
        .env("HF_HUB_OFFLINE", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let vector: Vec<f32> = serde_json::from_value(got["vector"].clone()).unwrap();
    let want: Vec<Vec<f32>> = server.post("/embed", &json!({"inputs": "Hello world"})).json().unwrap();
    assert!(compare(&vector, &want[0]).0 < 1e-6);
    let scores: Vec<f32> = serde_json::from_value(got["scores"].clone()).unwrap();
    assert_eq!(scores.len(), 2);
    assert!(scores[0] > scores[1]);
}

/// The routes TEI's containers answer on SageMaker (`/invocations`, `/ping`), Vertex AI
/// (`/vertex`, `AIP_PREDICT_ROUTE`, `AIP_HEALTH_ROUTE`) and the Inference API (`GET /`).
#[test]
fn cloud_platform_routes_answer_as_in_tei() {
    let predict_route = "/v1/endpoints/123/deployedModels/456:predict";
    let server = Server::start_with_env(
        &minilm(),
        &["--api-key", "secret"],
        &[
            ("AIP_PREDICT_ROUTE", predict_route),
            ("AIP_HEALTH_ROUTE", "/vertex-health"),
        ],
    );
    let client = reqwest::blocking::Client::new();
    for health in ["/", "/ping", "/vertex-health", "/health"] {
        let status = client.get(format!("{}{health}", server.url)).send().unwrap().status();
        assert_eq!(status, 200, "GET {health} without the key");
    }
    let post = |path: &str, body: &Value| {
        client
            .post(format!("{}{path}", server.url))
            .bearer_auth("secret")
            .json(body)
            .send()
            .unwrap()
    };
    let embed = json!({"inputs": ["one text", "another"]});
    let want: Value = post("/embed", &embed).json().unwrap();
    let got: Value = post("/invocations", &embed).json().unwrap();
    assert_eq!(got, want, "SageMaker's /invocations is POST /");
    let unauthorized = client
        .post(format!("{}/invocations", server.url))
        .json(&embed)
        .send()
        .unwrap();
    assert_eq!(unauthorized.status(), 401);

    let similarity = json!({"inputs": {"source_sentence": "one text", "sentences": ["another"]}});
    let want_similarity: Value = post("/similarity", &similarity).json().unwrap();
    let body = json!({"instances": [embed, similarity]});
    for route in ["/vertex", predict_route] {
        let got: Value = post(route, &body).json().unwrap();
        assert_eq!(got, json!({"predictions": [want, want_similarity]}), "{route}");
    }
    assert_eq!(
        post("/vertex", &json!({"instances": []})).json::<Value>().unwrap(),
        json!({"predictions": []})
    );
    let refused = post("/vertex", &json!({"instances": [embed, {"inputs": []}]}));
    assert_eq!(refused.status(), 400, "the first failure answers");
    assert_eq!(post("/vertex", &json!({"inputs": "a"})).status(), 422);
    // The description has the routes these variables add, as their originals are described.
    let spec: Value = client
        .get(format!("{}/api-doc/openapi.json", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    for (path, method, like) in [(predict_route, "post", "/vertex"), ("/vertex-health", "get", "/health")] {
        let operation = &spec["paths"][path][method];
        assert_eq!(
            operation["responses"], spec["paths"][like][method]["responses"],
            "{method} {path}"
        );
        assert_eq!(
            operation["requestBody"], spec["paths"][like][method]["requestBody"],
            "{method} {path}"
        );
    }
    drop(server);

    let out = run_with_env(
        &["serve", "--model-id", minilm().to_str().unwrap(), "--port", "0"],
        &[("AIP_PREDICT_ROUTE", "/embed"), ("TESSERA_PROMETHEUS_PORT", "0")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AIP_PREDICT_ROUTE") && err.contains("/embed"), "{err}");
}
