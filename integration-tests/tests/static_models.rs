//! Static embedding models (sentence-transformers' `StaticEmbedding`, model2vec) through the real
//! binary: recognised from modules.json and the tensors without a config.json, served as
//! sentence-transformers computes them, and refused with a finding where they cannot be.

use serde_json::{json, Value};
use tessera_integration_tests::reference::{self, copy, edit_json, finding, golden, validate, vectors};
use tessera_integration_tests::{compare, Safetensors, Server};

fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| if norm == 0.0 { 0.0 } else { x / norm }).collect()
}

/// Within 1e-5 of the reference (zero vectors included, where a cosine says nothing).
fn assert_close(got: &[Vec<f32>], want: &[Vec<f32>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (max, _) = compare(g, w);
        assert!(max <= 1e-5, "{what} {i}: max abs diff {max}");
    }
}

/// `/tokenize` shows the tokens the module sees: the text's, without special tokens.
fn assert_tokens_without_special_tokens(server: &Server, golden: &Value) {
    let tokens: Vec<Vec<Value>> = server
        .post("/tokenize", &json!({"inputs": golden["texts"][0]}))
        .json()
        .unwrap();
    let ids: Vec<u64> = tokens[0].iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert_eq!(json!(ids), golden["token_ids"][0]);
}

#[test]
fn a_sentence_transformers_static_model_serves_its_vectors() {
    let model = "static-tiny";
    let golden = golden(model);
    let (status, report) = validate(&reference::model(model));
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(report["architecture"], "static-embedding (511 tokens x 24)");
    assert_eq!(report["pooling"]["mode"], "mean", "{report:#}");
    // No positions and no truncation in sentence-transformers: as long as a batch holds.
    assert_eq!(report["max_input_length"], 16384);
    let subjects = reference::evidence_subjects(&report);
    assert!(subjects.contains(&"embedding.weight"), "{subjects:?}");
    assert!(
        !report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "config-missing"),
        "a static model has no config.json to miss: {report:#}"
    );

    let server = Server::start(&reference::model(model), &[]);
    // The empty text and the one of 2640 tokens included: zeros, and the mean of them all.
    let got = server.embed(&golden["texts"]);
    assert_close(&got, &vectors(&golden["embeddings"]), "static /embed");
    let response = server.post("/embed", &json!({"inputs": golden["texts"], "prompt_name": "query"}));
    assert_eq!(response.status(), 200);
    let got: Vec<Vec<f32>> = response.json().unwrap();
    assert_close(&got, &vectors(&golden["embeddings_query"]), "static /embed query");
    // The module tokenizes without special tokens, and /tokenize shows what the model sees.
    assert_tokens_without_special_tokens(&server, &golden);
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(info["max_input_length"], 16384, "{info:#}");
}

#[test]
fn a_model2vec_model_serves_its_folded_vectors_within_its_tokenizers_length() {
    let model = "model2vec-tiny";
    let golden = golden(model);
    let (status, report) = validate(&reference::model(model));
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(
        report["architecture"],
        "static-embedding (511 tokens x 16, 97 rows mapped, token weights)"
    );
    // tokenizer.json's own truncation (512), which sentence-transformers applies.
    assert_eq!(report["max_input_length"], 512);
    for e in ["embeddings", "mapping", "weights"] {
        assert!(reference::evidence_subjects(&report).contains(&e), "{e}");
    }

    let server = Server::start(&reference::model(model), &[]);
    let texts = golden["texts"].as_array().unwrap();
    let want = vectors(&golden["embeddings"]);
    let (long, short) = (texts.len() - 1, &texts[..texts.len() - 1]);
    // No Normalize module: raw means with `normalize: false`, unit vectors by default (TEI's).
    let response = server.post("/embed", &json!({"inputs": short, "normalize": false}));
    assert_eq!(response.status(), 200);
    let raw: Vec<Vec<f32>> = response.json().unwrap();
    assert_close(&raw, &want[..long], "model2vec raw");
    let unit = server.embed(&Value::Array(short.to_vec()));
    let want_unit: Vec<Vec<f32>> = want[..long].iter().map(|v| normalized(v)).collect();
    assert_close(&unit, &want_unit, "model2vec normalized");
    // Past 512 tokens: refused unless truncated, then cut where sentence-transformers cuts.
    assert_eq!(
        server
            .post("/embed", &json!({"inputs": texts[long], "truncate": false}))
            .status(),
        422
    );
    let response = server.post(
        "/embed",
        &json!({"inputs": texts[long], "truncate": true, "normalize": false}),
    );
    assert_eq!(response.status(), 200);
    let cut: Vec<Vec<f32>> = response.json().unwrap();
    assert_close(&cut, &want[long..], "model2vec truncated");
}

/// model2vec's `mapping` saved as 32-bit integers rather than 64: the same rows.
#[test]
fn a_model2vec_mapping_of_32_bit_integers_maps_the_same_rows() {
    let model = "model2vec-tiny";
    let golden = golden(model);
    let dir = copy(model);
    let path = dir.path().join("model.safetensors");
    let mut weights = Safetensors::read(&path);
    let offsets = &weights.header["mapping"]["data_offsets"];
    let (begin, end) = (
        offsets[0].as_u64().unwrap() as usize,
        offsets[1].as_u64().unwrap() as usize,
    );
    let rows: Vec<i64> = weights.data[begin..end]
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    // safetensors leaves no gaps: the other tensors' bytes as they are, then the new mapping.
    let mut data = Vec::new();
    for (_, entry) in weights.header.iter_mut().filter(|(name, _)| *name != "mapping") {
        let o = &entry["data_offsets"];
        let (b, e) = (o[0].as_u64().unwrap() as usize, o[1].as_u64().unwrap() as usize);
        let start = data.len();
        data.extend_from_slice(&weights.data[b..e]);
        entry["data_offsets"] = json!([start, data.len()]);
    }
    let start = data.len();
    data.extend(rows.iter().flat_map(|&r| (r as i32).to_le_bytes()));
    weights.header["mapping"] = json!({"dtype": "I32", "shape": [rows.len()], "data_offsets": [start, data.len()]});
    weights.data = data;
    weights.write(&path);
    let server = Server::start(dir.path(), &[]);
    let texts = &golden["texts"].as_array().unwrap()[..8];
    let response = server.post("/embed", &json!({"inputs": texts, "normalize": false}));
    assert_eq!(response.status(), 200);
    let got: Vec<Vec<f32>> = response.json().unwrap();
    assert_close(&got, &vectors(&golden["embeddings"])[..8], "model2vec I32 mapping");
}

/// sentence-transformers 3 and 4 saved the module in its own directory (static-retrieval-mrl-en-v1:
/// `0_StaticEmbedding/tokenizer.json` and `model.safetensors`, under the old module type names);
/// sentence-transformers 6 loads that layout to the same vectors (checked with
/// sentence-transformers 6.2: max abs diff 0 on static-tiny's goldens).
#[test]
fn a_static_model_saved_in_its_module_directory_serves_the_same_vectors() {
    let golden = golden("static-tiny");
    let dir = reference::static_in_module_dir("static-tiny");
    let (status, report) = validate(dir.path());
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(report["architecture"], "static-embedding (511 tokens x 24)");
    let server = Server::start(dir.path(), &[]);
    let got = server.embed(&golden["texts"]);
    assert_close(&got, &vectors(&golden["embeddings"]), "0_StaticEmbedding /embed");
    assert_tokens_without_special_tokens(&server, &golden);
}

#[test]
fn static_models_that_cannot_be_served_are_refused_with_the_reason() {
    // The module's files outside the model's directory.
    reference::assert_refused(
        "static-tiny",
        |d| {
            edit_json(&d.join("modules.json"), |m| {
                m[0]["path"] = json!("../elsewhere");
            })
        },
        "static-embedding-misplaced",
        "path",
    );
    // Not the first module: something else would have to make its input.
    reference::assert_refused(
        "static-tiny",
        |d| {
            edit_json(&d.join("modules.json"), |m| {
                let modules = m.as_array_mut().unwrap();
                modules.swap(0, 1);
            })
        },
        "static-embedding-misplaced",
        "path",
    );
    // model2vec's quantized export: integer vectors.
    let dir = copy("model2vec-tiny");
    let path = dir.path().join("model.safetensors");
    let mut weights = Safetensors::read(&path);
    weights.header["embeddings"]["dtype"] = json!("I32");
    weights.write(&path);
    let (status, report) = validate(dir.path());
    assert_ne!(status, Some(0));
    let f = finding(&report, "static-embedding-invalid");
    assert_eq!(f["subject"], "embeddings", "{f:#}");
    // Fewer vectors than the tokenizer has tokens.
    let dir = copy("static-tiny");
    let path = dir.path().join("model.safetensors");
    let mut weights = Safetensors::read(&path);
    weights.header.remove("embedding.weight");
    weights.push("embedding.weight", &[100, 24], &[0.5; 2400]);
    weights.write(&path);
    let (status, report) = validate(dir.path());
    assert_ne!(status, Some(0));
    assert_eq!(
        finding(&report, "tokenizer-id-beyond-embeddings")["subject"],
        "embedding.weight"
    );
}
