//! The OpenAI embeddings routes: shapes, base64, errors, and the official `openai` Python SDK
//! (installed into a venv under target/ by the test; skipped with a message if pip cannot).

use std::path::PathBuf;
use std::process::Command;

use base64::Engine;
use serde_json::{json, Value};
use tessera_integration_tests::{compare, minilm, workspace, Server};

#[test]
fn shapes_usage_base64_and_errors() {
    let server = Server::start(&minilm(), &["--served-model-name", "mini"]);
    let texts = ["Hello world", "The quick brown fox"];
    let tei: Vec<Vec<f32>> = server.post("/embed", &json!({"inputs": texts})).json().unwrap();

    let r: Value = server
        .post("/v1/embeddings", &json!({"input": texts, "model": "anything"}))
        .json()
        .unwrap();
    assert_eq!(r["object"], "list");
    assert_eq!(r["model"], "mini");
    assert_eq!(r["usage"], json!({"prompt_tokens": 4 + 6, "total_tokens": 4 + 6}));
    for (i, d) in r["data"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            (d["object"].as_str(), d["index"].as_u64()),
            (Some("embedding"), Some(i as u64))
        );
        let v: Vec<f32> = serde_json::from_value(d["embedding"].clone()).unwrap();
        assert!(compare(&v, &tei[i]).0 < 1e-6);
    }

    let r: Value = server
        .post("/embeddings", &json!({"input": texts, "encoding_format": "base64"}))
        .json()
        .unwrap();
    let b64 = r["data"][1]["embedding"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    let v: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(v, tei[1], "base64 is the little-endian f32 bytes, bit for bit");

    let r: Value = server
        .post("/v1/embeddings", &json!({"input": [101, 7592, 102], "dimensions": 8}))
        .json()
        .unwrap();
    let v: Vec<f32> = serde_json::from_value(r["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(v.len(), 8);
    assert!((v.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() < 1e-5);
    assert_eq!(r["usage"]["prompt_tokens"], 3);

    for (body, param) in [
        (json!({"input": ""}), Some("input")),
        (json!({"input": []}), Some("input")),
        (json!({"input": ["a", ""]}), Some("input")),
        (json!({"input": "a", "dimensions": 0}), Some("dimensions")),
        (json!({"input": "a", "encoding_format": "hex"}), None),
        (json!({"model": "m"}), None),
    ] {
        let r = server.post("/v1/embeddings", &body);
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().unwrap();
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
        assert!(e["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(e["error"]["param"].as_str(), param, "{e}");
        assert!(e["error"]["code"].is_string());
    }
    let too_many: Vec<&str> = vec!["a"; 2049];
    assert_eq!(server.post("/v1/embeddings", &json!({"input": too_many})).status(), 400);
}

/// A venv with the `openai` SDK, created once under target/.
fn venv_python() -> Option<PathBuf> {
    tessera_integration_tests::python_venv("py-clients", &["openai>=1.40,<3"])
}

#[test]
fn the_official_openai_sdk_gets_the_same_vectors() {
    let Some(python) = venv_python() else { return };
    let server = Server::start(&minilm(), &["--served-model-name", "mini"]);
    let texts = ["Hello world", "A man is playing a guitar.", "   "];
    let tei: Vec<Vec<f32>> = server.post("/embed", &json!({"inputs": texts})).json().unwrap();
    let out = Command::new(python)
        .arg(workspace().join("integration-tests/fixtures/openai_client.py"))
        .arg(&server.url)
        .arg("mini")
        .args(texts)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["default", "float"] {
        let vectors: Vec<Vec<f32>> = serde_json::from_value(got[key].clone()).unwrap();
        assert_eq!(vectors.len(), texts.len());
        for (i, v) in vectors.iter().enumerate() {
            let (max, _) = compare(v, &tei[i]);
            assert!(max <= 1e-6, "{key} {i}: {max}");
        }
    }
    assert_eq!(got["indices"], json!([0, 1, 2]));
    assert_eq!(got["model"], "mini");
    assert_eq!(got["short"].as_array().unwrap().len(), 16);
    let single: Vec<f32> = serde_json::from_value(got["single"].clone()).unwrap();
    assert!(compare(&single, &tei[0]).0 <= 1e-6);
    assert!(got["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(got["empty_error"]["status"], 400);
}
