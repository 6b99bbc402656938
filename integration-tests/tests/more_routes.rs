//! `/similarity`, `/embed_all`, `POST /`, and huggingface_hub's InferenceClient.

use std::process::Command;

use serde_json::{json, Value};
use tessera_integration_tests::{compare, minilm, workspace, Server};

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
