//! Parity with sentence-transformers goldens (`shared/reference`, `shared/models/*/golden.json`).
//! Goldens come from PyTorch, never from tessera's own output.

use std::path::Path;

use serde_json::Value;
use tessera_bert::BertBackend;
use tessera_core::testing::{assert_close, embed, load, shared_dir, vectors};
use tessera_core::{finish_embedding, Encoded, Pooling};

fn check_model(model_dir: &Path, golden: &Path) {
    let inspection = tessera_validation::inspect(model_dir);
    let model = load(&BertBackend, &inspection);
    let golden: Value = serde_json::from_slice(&std::fs::read(golden).unwrap()).unwrap();
    let texts: Vec<String> = serde_json::from_value(golden["texts"].clone()).unwrap();
    let want_ids: Vec<Vec<u32>> = serde_json::from_value(golden["token_ids"].clone()).unwrap();
    let encoded: Vec<Encoded> = texts
        .iter()
        .map(|t| model.tokenizer.encode(t, Some(Default::default())).unwrap())
        .collect();
    for (i, (e, want)) in encoded.iter().zip(&want_ids).enumerate() {
        assert_eq!(&e.ids, want, "token ids of text {i}");
    }

    let normalized = vectors(&golden, "embeddings");
    let unnormalized = vectors(&golden, "embeddings_mean_unnormalized");
    let cls = vectors(&golden, "embeddings_cls");

    let batched = embed(model.backend.as_ref(), &encoded, Pooling::Mean);
    for (i, v) in batched.iter().enumerate() {
        assert_close(v, &unnormalized[i], &format!("batched unnormalized {i}"));
        assert_close(
            &finish_embedding(v.clone(), None, true),
            &normalized[i],
            &format!("batched {i}"),
        );
    }
    let batched_cls = embed(model.backend.as_ref(), &encoded, Pooling::Cls);
    for (i, v) in batched_cls.iter().enumerate() {
        assert_close(v, &cls[i], &format!("batched cls {i}"));
    }
    for (i, e) in encoded.iter().enumerate() {
        let single = embed(model.backend.as_ref(), std::slice::from_ref(e), Pooling::Mean);
        assert_close(&single[0], &unnormalized[i], &format!("single {i}"));
    }
}

#[test]
fn bert_tiny_matches_transformers() {
    let Some(shared) = shared_dir(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    let dir = shared.join("models/bert-tiny");
    check_model(&dir, &dir.join("golden.json"));
}

#[test]
fn minilm_matches_sentence_transformers() {
    let Some(shared) = shared_dir(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    check_model(
        &shared.join("models/all-MiniLM-L6-v2"),
        &shared.join("reference/golden_minilm.json"),
    );
}
