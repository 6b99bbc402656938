//! Lexical weights: a model with BGE-M3's `sparse_linear.pt`, or gte-multilingual-base's
//! one-output token classifier, serves its dense vectors on `/embed` and its lexical weights on
//! `/embed_sparse` (and gRPC's `EmbedSparse`), against FlagEmbedding's own `BGEM3FlagModel`
//! (reference/make_bge_m3.py) and transformers' `GteForTokenClassification`
//! (reference/make_gte_sparse.py); BGE-M3's `colbert_linear.pt`, its vectors per token on
//! `/embed_multi_vector`.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tessera_integration_tests::grpc::{embed_client::EmbedClient, EmbedSparseRequest};
use tessera_integration_tests::reference::{self, copy, finding, golden, validate};
use tessera_integration_tests::{assert_parity, block_on, run, Safetensors, Server};

const MODEL: &str = "bge-m3-tiny";

/// FlagEmbedding's `{token id: weight}` against served `(index, value)` entries: the same ids,
/// the same weights.
fn assert_weights(got: &[(u64, f64)], want: &Value, what: &str) {
    let want: BTreeMap<u64, f64> = want
        .as_object()
        .expect("a dict")
        .iter()
        .map(|(id, w)| (id.parse().unwrap(), w.as_f64().unwrap()))
        .collect();
    let got_ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(got_ids, want.keys().copied().collect::<Vec<_>>(), "{what}: token ids");
    for (id, w) in got {
        assert!((w - want[id]).abs() < 1e-4, "{what}: token {id}: {w} vs {}", want[id]);
    }
}

#[test]
fn bge_m3_serves_dense_vectors_and_lexical_weights_as_flag_embedding() {
    let served = assert_serves_lexical_weights(MODEL);
    assert!(
        served["message"].as_str().unwrap().contains("sparse_linear.pt"),
        "{served}"
    );
}

/// BGE-M3's third output: `colbert_linear.pt` over every token but the first, normalized, on
/// `/embed_multi_vector`, against FlagEmbedding's `return_colbert_vecs`.
#[test]
fn bge_m3_serves_its_multi_vectors_as_flag_embedding() {
    let golden = golden(MODEL);
    let (status, report) = validate(&reference::model(MODEL));
    assert_eq!(status, Some(0), "{report:#}");
    let served = finding(&report, "multi-vector-served");
    assert_eq!(served["severity"], "info", "{served}");
    let server = Server::start(&reference::model(MODEL), &["--max-client-batch-size", "64"]);
    let info: Value = server.get("/info").json().unwrap();
    let embedding = &info["model_type"]["embedding"];
    assert_eq!(
        (&embedding["sparse"], &embedding["multi_vector"]),
        (&json!(true), &json!(true)),
        "{info:#}"
    );
    let response = server.post("/embed_multi_vector", &json!({"inputs": golden["texts"]}));
    assert_eq!(response.status(), 200);
    let got: Vec<Vec<Vec<f32>>> = response.json().unwrap();
    let want: Vec<Vec<Vec<f32>>> = serde_json::from_value(golden["colbert_vecs"].clone()).unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.len(), w.len(), "text {i}: one vector per token after the first");
        for (t, (gv, wv)) in g.iter().zip(w).enumerate() {
            assert_parity(gv, wv, &format!("text {i} token {t}"));
        }
    }
    // Unnormalized on request: the same directions, the layer's own lengths.
    let raw: Vec<Vec<Vec<f32>>> = server
        .post(
            "/embed_multi_vector",
            &json!({"inputs": golden["texts"][1], "normalize": false}),
        )
        .json()
        .unwrap();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(raw[0].iter().any(|v| (norm(v) - 1.0).abs() > 0.01), "not normalized");
    for (r, w) in raw[0].iter().zip(&want[1]) {
        let unit: Vec<f32> = r.iter().map(|x| x / norm(r)).collect();
        assert_parity(&unit, w, "normalize: false");
    }
    let sized = server.post("/embed_multi_vector", &json!({"inputs": "a", "dimensions": 8}));
    assert_eq!(sized.status(), 422);
}

/// A model without `colbert_linear.pt` refuses `/embed_multi_vector` with a 422 that names the
/// file, before running anything.
#[test]
fn a_model_without_the_multi_vector_layer_refuses_multi_vector_requests() {
    let dir = copy(MODEL);
    std::fs::remove_file(dir.path().join("colbert_linear.pt")).unwrap();
    let server = Server::start(dir.path(), &[]);
    let info: Value = server.get("/info").json().unwrap();
    assert!(
        info["model_type"]["embedding"].get("multi_vector").is_none(),
        "{info:#}"
    );
    let response = server.post("/embed_multi_vector", &json!({"inputs": "a"}));
    assert_eq!(response.status(), 422);
    let body: Value = response.json().unwrap();
    assert!(body["error"].as_str().unwrap().contains("colbert_linear.pt"), "{body}");
}

/// gte-multilingual-base's shape: saved as `NewForTokenClassification` (no `id2label`), its
/// one-output token classifier the sparse head its own code reads; served as an embedder (not
/// refused as a sequence classifier without a pooler), the head's weights on `/embed_sparse`,
/// against transformers' `GteForTokenClassification` (reference/make_gte_sparse.py).
#[test]
fn a_gte_token_classifier_serves_its_dense_vectors_and_its_sparse_head() {
    let served = assert_serves_lexical_weights("gte-token-classifier-tiny");
    assert_eq!(served["subject"], "classifier.weight", "{served}");
}

/// A token classifier with several labels (a NER model) is an embedder too, its head ignored:
/// only a one-output token head is a sparse head.
#[test]
fn a_token_classifier_with_several_labels_serves_dense_vectors_only() {
    let model = "gte-token-classifier-tiny";
    let dir = copy(model);
    let path = dir.path().join("model.safetensors");
    let mut weights = Safetensors::read(&path);
    let hidden = weights.header["classifier.weight"]["shape"][1].as_u64().unwrap() as usize;
    // The one-label head's bytes stay (the data section has no gaps), under names the loader
    // ignores.
    for name in ["weight", "bias"] {
        let entry = weights.header.remove(&format!("classifier.{name}")).unwrap();
        weights.header.insert(format!("classifier.one_label_{name}"), entry);
    }
    weights.push("classifier.weight", &[3, hidden], &vec![0.1; 3 * hidden]);
    weights.push("classifier.bias", &[3], &[0.0; 3]);
    weights.write(&path);
    let (status, report) = validate(dir.path());
    assert_eq!(status, Some(0), "{report:#}");
    assert!(!report.to_string().contains("lexical-weights-served"), "{report:#}");
    let golden = golden(model);
    let server = Server::start(dir.path(), &[]);
    let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings"].clone()).unwrap();
    let got = server.embed(&golden["texts"][0]);
    assert_parity(&got[0], &want[0], "dense");
    let sparse = server.post("/embed_sparse", &json!({"inputs": golden["texts"][0]}));
    assert_eq!(sparse.status(), 422);
}

/// `/embed`, `POST /`, `/embed_sparse` and gRPC's `EmbedSparse` of `model` against its golden;
/// returns the `lexical-weights-served` finding.
fn assert_serves_lexical_weights(model: &str) -> Value {
    let golden = golden(model);
    let texts = golden["texts"].as_array().unwrap();
    let (status, report) = validate(&reference::model(model));
    assert_eq!(status, Some(0), "{report:#}");
    let served = finding(&report, "lexical-weights-served").clone();
    assert_eq!(served["severity"], "info");
    let server = Server::start(&reference::model(model), &["--max-client-batch-size", "64"]);
    let info: Value = server.get("/info").json().unwrap();
    let notes = info["warnings"].to_string();
    assert!(!notes.contains("tensor-unexpected"), "{notes}");

    let dense = server.embed(&golden["texts"]);
    let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings"].clone()).unwrap();
    for (i, (g, w)) in dense.iter().zip(&want).enumerate() {
        assert_parity(g, w, &format!("{model} dense {i}"));
    }
    // TEI's default route answers the dense vector: the lexical weights are the second output.
    let root: Vec<Vec<f32>> = server.post("/", &json!({"inputs": texts[0]})).json().unwrap();
    assert_parity(&root[0], &want[0], "POST /");

    let sparse: Vec<Vec<Value>> = server
        .post("/embed_sparse", &json!({"inputs": golden["texts"]}))
        .json()
        .unwrap();
    assert_eq!(sparse.len(), texts.len());
    for (i, entries) in sparse.iter().enumerate() {
        let got: Vec<(u64, f64)> = entries
            .iter()
            .map(|e| (e["index"].as_u64().unwrap(), e["value"].as_f64().unwrap()))
            .collect();
        assert_weights(
            &got,
            &golden["lexical_weights"][i],
            &format!("{model} /embed_sparse {i}"),
        );
    }
    let unary = block_on(async {
        let mut client = EmbedClient::new(server.grpc_channel().await);
        let request = EmbedSparseRequest {
            inputs: texts[1].as_str().unwrap().into(),
            ..Default::default()
        };
        client.embed_sparse(request).await.unwrap().into_inner()
    });
    let got: Vec<(u64, f64)> = unary
        .sparse_embeddings
        .iter()
        .map(|e| (u64::from(e.index), f64::from(e.value)))
        .collect();
    assert_weights(
        &got,
        &golden["lexical_weights"][1],
        &format!("{model} gRPC EmbedSparse"),
    );
    served
}

#[test]
fn an_unreadable_lexical_or_multi_vector_layer_stops_start_up_naming_the_file() {
    for file in ["sparse_linear.pt", "colbert_linear.pt"] {
        let dir = copy(MODEL);
        std::fs::write(dir.path().join(file), b"not a pickle").unwrap();
        let out = run(&["serve", "--model-id", dir.path().to_str().unwrap(), "--port", "0"]);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(file), "{err}");
    }
}
