//! `/embed` over HTTP against sentence-transformers goldens.

use serde_json::{json, Value};
use tessera_integration_tests::reference::vectors;
use tessera_integration_tests::{assert_parity, golden, minilm, shared_model, Server};

fn check_golden(server: &Server, golden: &Value, cls_server: Option<&Server>) {
    let texts = golden["texts"].clone();
    let want = vectors(&golden["embeddings"]);
    let want_raw = vectors(&golden["embeddings_mean_unnormalized"]);

    let r = server.post("/embed", &json!({ "inputs": texts, "truncate": true }));
    assert_eq!(r.status(), 200);
    let got = vectors(&r.json().unwrap());
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_parity(g, w, &format!("batched text {i}"));
    }

    let r = server.post(
        "/embed",
        &json!({ "inputs": texts, "normalize": false, "truncate": true }),
    );
    let got = vectors(&r.json().unwrap());
    for (i, (g, w)) in got.iter().zip(&want_raw).enumerate() {
        assert_parity(g, w, &format!("batched unnormalized text {i}"));
    }

    for (i, text) in texts.as_array().unwrap().iter().enumerate() {
        let r = server.post("/embed", &json!({ "inputs": text, "truncate": true }));
        assert_eq!(r.status(), 200, "text {i}");
        let got = vectors(&r.json().unwrap());
        assert_parity(&got[0], &want[i], &format!("single text {i}"));
    }

    if let Some(cls) = cls_server {
        let want_cls = vectors(&golden["embeddings_cls"]);
        let r = cls.post(
            "/embed",
            &json!({ "inputs": texts, "normalize": false, "truncate": true }),
        );
        let got = vectors(&r.json().unwrap());
        for (i, (g, w)) in got.iter().zip(&want_cls).enumerate() {
            assert_parity(g, w, &format!("cls text {i}"));
        }
    }
}

#[test]
fn minilm_serves_sentence_transformers_vectors() {
    let Some(golden) = golden("reference/golden_minilm.json") else {
        return;
    };
    let model = minilm();
    let server = Server::start(&model, &["--max-client-batch-size", "64"]);
    let cls = Server::start(&model, &["--max-client-batch-size", "64", "--pooling", "cls"]);
    check_golden(&server, &golden, Some(&cls));
}

#[test]
fn minilm_on_the_padded_bert_backend_serves_the_same_vectors() {
    let Some(golden) = golden("reference/golden_minilm.json") else {
        return;
    };
    let server = Server::start(&minilm(), &["--max-client-batch-size", "64", "--backend", "bert"]);
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(
        (info["backend"].as_str(), info["attention_kernel"].as_str()),
        (Some("bert"), Some("padded"))
    );
    check_golden(&server, &golden, None);
}

#[test]
fn bert_tiny_serves_transformers_vectors() {
    let Some(model) = shared_model("bert-tiny") else {
        return;
    };
    let golden: Value = serde_json::from_slice(&std::fs::read(model.join("golden.json")).unwrap()).unwrap();
    let server = Server::start(&model, &["--max-client-batch-size", "64"]);
    let cls = Server::start(&model, &["--max-client-batch-size", "64", "--pooling", "cls"]);
    check_golden(&server, &golden, Some(&cls));
}

#[test]
fn token_id_inputs_are_used_as_given() {
    let Some(golden) = golden("reference/golden_minilm.json") else {
        return;
    };
    let server = Server::start(&minilm(), &[]);
    let ids = golden["token_ids"][1].clone();
    let by_ids = vectors(&server.post("/embed", &json!({ "inputs": ids })).json().unwrap());
    assert_parity(&by_ids[0], &vectors(&golden["embeddings"])[1], "ids input");
    let both = server.post(
        "/embed",
        &json!({ "inputs": [golden["texts"][1], golden["token_ids"][2]] }),
    );
    let both = vectors(&both.json().unwrap());
    assert_parity(&both[1], &vectors(&golden["embeddings"])[2], "mixed batch, ids");
}
