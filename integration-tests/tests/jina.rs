//! The seed case: a fine-tuned JinaBERT whose config lost its identity is detected from its
//! tensors and served with the golden vectors.

use serde_json::{json, Value};
use tessera_integration_tests::{assert_parity, run, shared_model, Server};

fn golden(model: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(model.join("golden.json")).unwrap()).unwrap()
}

#[test]
fn finetuned_jina_is_served_with_golden_vectors() {
    for name in ["jina-tiny-finetuned", "jina-tiny"] {
        let Some(model) = shared_model(name) else {
            return;
        };
        let golden = golden(&model);
        let server = Server::start(&model, &["--max-client-batch-size", "64"]);
        let info: Value = server.get("/info").json().unwrap();
        assert_eq!(info["backend"], "flash");
        assert_eq!(info["architecture"], "jina-bert (alibi, geglu), unpadded");

        let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings"].clone()).unwrap();
        let got: Vec<Vec<f32>> = server
            .post("/embed", &json!({ "inputs": golden["texts"] }))
            .json()
            .unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_parity(g, w, &format!("{name} batched {i}"));
        }
        for i in [0, 8, 11, 39] {
            let got: Vec<Vec<f32>> = server
                .post("/embed", &json!({ "inputs": golden["texts"][i] }))
                .json()
                .unwrap();
            assert_parity(&got[0], &want[i], &format!("{name} single {i}"));
        }
    }
}

#[test]
fn the_padded_jina_backend_serves_the_same_vectors() {
    let Some(model) = shared_model("jina-tiny-finetuned") else {
        return;
    };
    let golden = golden(&model);
    let server = Server::start(&model, &["--max-client-batch-size", "64", "--backend", "jina-bert"]);
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(
        (info["backend"].as_str(), info["attention_kernel"].as_str()),
        (Some("jina-bert"), Some("padded"))
    );
    let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings"].clone()).unwrap();
    let got: Vec<Vec<f32>> = server
        .post("/embed", &json!({ "inputs": golden["texts"] }))
        .json()
        .unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_parity(g, w, &format!("padded jina batched {i}"));
    }
}

#[test]
fn validate_model_reports_jina_from_tensor_evidence() {
    let Some(model) = shared_model("jina-tiny-finetuned") else {
        return;
    };
    let out = run(&["validate-model", model.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("jina-bert (alibi, geglu)"), "{text}");
    assert!(text.contains("mlp.gated_layers.weight"), "{text}");

    let out = run(&["validate-model", model.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["servable"], true);
    assert_eq!(report["backend"], "flash");
    assert!(report["passed_over"].as_array().unwrap().contains(&json!("jina-bert")));
    let evidence = report["evidence"].as_array().unwrap();
    assert!(evidence
        .iter()
        .any(|e| e["source"] == "tensor" && e["subject"].as_str().unwrap().ends_with("mlp.gated_layers.weight")));
    assert!(report["declined"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["backend"] == "bert"));
}

#[test]
fn forcing_bert_on_jina_explains_why_not() {
    let Some(model) = shared_model("jina-tiny-finetuned") else {
        return;
    };
    let out = run(&[
        "serve",
        "--model-id",
        model.to_str().unwrap(),
        "--backend",
        "bert",
        "--port",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gated-mlp-without-jina-backend") && err.contains("mlp.gated_layers.weight"),
        "{err}"
    );
    let out = run(&[
        "serve",
        "--model-id",
        model.to_str().unwrap(),
        "--backend",
        "nope",
        "--port",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flash, jina-bert, bert"));
}
