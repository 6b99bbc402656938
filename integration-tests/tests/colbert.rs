//! PyLate ColBERT models on `/embed_multi_vector`, against PyLate's own `ColBERT.encode`
//! (reference/make_colbert.py): queries cut or expanded to `query_length` with `[Q] `, their
//! expansion tokens attending but not attended to; documents cut to `document_length` with
//! `[D] `, their skiplist's vectors left out. Over BERT (colbert-tiny) and over ModernBERT with
//! local windows (colbert-modernbert-tiny, GTE-ModernColBERT's shape).

use serde_json::{json, Value};
use tessera_integration_tests::reference::{self, copy, finding, golden, validate};
use tessera_integration_tests::{assert_parity, Server};

const MODEL: &str = "colbert-tiny";
const MODERNBERT: &str = "colbert-modernbert-tiny";

/// `/embed_multi_vector` of `side`'s texts against the golden's vectors under `key`.
fn assert_serves(server: &Server, side: &Value, is_query: bool, key: &str, normalize: bool) {
    let response = server.post(
        "/embed_multi_vector",
        &json!({"inputs": side["texts"], "is_query": is_query, "normalize": normalize}),
    );
    assert_eq!(response.status(), 200);
    let got: Vec<Vec<Vec<f32>>> = response.json().unwrap();
    let want: Vec<Vec<Vec<f32>>> = serde_json::from_value(side[key].clone()).unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.len(), w.len(), "{key} {i}: the vectors PyLate keeps");
        for (t, (gv, wv)) in g.iter().zip(w).enumerate() {
            assert_parity(gv, wv, &format!("{key} {i} token {t}"));
        }
    }
}

#[test]
fn a_pylate_colbert_model_serves_query_and_document_vectors_as_pylate() {
    let golden = golden(MODEL);
    let (status, report) = validate(&reference::model(MODEL));
    assert_eq!(status, Some(0), "{report:#}");
    let served = finding(&report, "multi-vector-served");
    assert!(served["message"].as_str().unwrap().contains("24 wide"), "{served}");
    let server = Server::start(&reference::model(MODEL), &["--max-client-batch-size", "64"]);
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(info["model_type"]["embedding"]["multi_vector"], json!(true), "{info:#}");
    let (queries, documents) = (&golden["queries"], &golden["documents"]);
    assert_serves(&server, queries, true, "embeddings", true);
    assert_serves(&server, queries, true, "embeddings_unnormalized", false);
    assert_serves(&server, documents, false, "embeddings", true);
    // Documents by default.
    let default: Vec<Vec<Vec<f32>>> = server
        .post("/embed_multi_vector", &json!({"inputs": documents["texts"][1]}))
        .json()
        .unwrap();
    let want: Vec<Vec<Vec<f32>>> = serde_json::from_value(documents["embeddings"].clone()).unwrap();
    assert_eq!(default[0].len(), want[1].len());
    // No sentence vector: /embed says where the vectors are.
    let pooled = server.post("/embed", &json!({"inputs": "a"}));
    assert_eq!(pooled.status(), 422);
    let body: Value = pooled.json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("/embed_multi_vector"),
        "{body}"
    );
    // Token ids cannot take the prefix PyLate inserts into a text's tokens.
    let ids = server.post("/embed_multi_vector", &json!({"inputs": [[2, 5, 3]]}));
    assert_eq!(ids.status(), 422);
    drop(server);
    // The padded backend masks the expansion tokens as keys too.
    let padded = Server::start(&reference::model(MODEL), &["--backend", "bert"]);
    assert_serves(&padded, queries, true, "embeddings", true);
    assert_serves(&padded, documents, false, "embeddings", true);
}

/// GTE-ModernColBERT's shape: rotary positions, local windows of 16 tokens on the middle layer,
/// so that expansion tokens see few of the query's tokens there; unpadded and padded.
#[test]
fn a_modernbert_colbert_model_serves_pylates_vectors_past_its_windows() {
    let golden = golden(MODERNBERT);
    for args in [&[][..], &["--backend", "modernbert"][..]] {
        let server = Server::start(&reference::model(MODERNBERT), args);
        assert_serves(&server, &golden["queries"], true, "embeddings", true);
        assert_serves(&server, &golden["documents"], false, "embeddings", true);
    }
}

/// `attend_to_expansion_tokens: true`: the expansion tokens are keys too, as PyLate then sets
/// their attention mask to 1; the vectors differ from those of the default.
#[test]
fn queries_attend_to_their_expansion_tokens_where_the_model_says_so() {
    for model in [MODEL, MODERNBERT] {
        let golden = golden(model);
        let dir = copy(model);
        let path = dir.path().join("config_sentence_transformers.json");
        let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["attend_to_expansion_tokens"] = json!(true);
        std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
        let server = Server::start(dir.path(), &[]);
        assert_serves(
            &server,
            &golden["queries"],
            true,
            "embeddings_attending_expansion",
            true,
        );
    }
}

/// A prefix the tokenizer lacks, or a length with no room for text, is refused by validate-model
/// and stops start-up, naming the file and key; a Dense module's unknown activation too.
#[test]
fn unusable_colbert_settings_are_refused_naming_the_key() {
    let dir = copy(MODEL);
    let path = dir.path().join("config_sentence_transformers.json");
    let original: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut config = original.clone();
    config["query_length"] = json!(2);
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let (status, report) = validate(dir.path());
    assert_ne!(status, Some(0), "{report:#}");
    assert_eq!(finding(&report, "config-value-invalid")["subject"], "query_length");

    let mut config = original.clone();
    config["query_prefix"] = json!("[QUERY] ");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let (status, report) = validate(dir.path());
    assert_ne!(status, Some(0), "{report:#}");
    let prefix = finding(&report, "config-value-invalid");
    assert_eq!(prefix["subject"], "query_prefix", "{report:#}");
    assert!(
        prefix["fix"]
            .as_str()
            .unwrap()
            .contains("config_sentence_transformers.json"),
        "{prefix}"
    );
    let out = tessera_integration_tests::run(&["serve", "--model-id", dir.path().to_str().unwrap(), "--port", "1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config_sentence_transformers.json") && stderr.contains("query_prefix"),
        "{stderr}"
    );

    // The per-token Dense modules are checked as sentence-transformers' are.
    std::fs::write(&path, serde_json::to_vec(&original).unwrap()).unwrap();
    let dense = dir.path().join("1_Dense/config.json");
    let mut module: Value = serde_json::from_slice(&std::fs::read(&dense).unwrap()).unwrap();
    module["activation_function"] = json!("torch.nn.modules.activation.Mish");
    std::fs::write(&dense, serde_json::to_vec(&module).unwrap()).unwrap();
    let (status, report) = validate(dir.path());
    assert_ne!(status, Some(0), "{report:#}");
    finding(&report, "dense-activation-unsupported");
}
