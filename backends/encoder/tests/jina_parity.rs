//! Parity with the JinaBERT goldens in `shared/models/jina-tiny*/golden.json`, made by an
//! independent float64 implementation cross-checked against the official PyTorch code.

use serde_json::Value;
use tessera_core::testing::{assert_close, embed, load, shared_dir, vectors};
use tessera_core::{finish_embedding, Assessment, BackendFactory, Encoded, Pooling};
use tessera_encoder::{alibi_slopes, JINA_BERT};

fn check(model: &str) {
    let Some(shared) = shared_dir(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    let dir = shared.join("models").join(model);
    let inspection = tessera_validation::inspect(&dir);
    assert!(matches!(JINA_BERT.assess(&inspection), Assessment::Serves { .. }));
    let loaded = load(&JINA_BERT, &inspection);
    let golden: Value = serde_json::from_slice(&std::fs::read(dir.join("golden.json")).unwrap()).unwrap();

    let slopes: Vec<f32> = serde_json::from_value(golden["alibi_slopes"].clone()).unwrap();
    assert_eq!(alibi_slopes(slopes.len()), slopes);

    let texts: Vec<String> = serde_json::from_value(golden["texts"].clone()).unwrap();
    let want_ids: Vec<Vec<u32>> = serde_json::from_value(golden["token_ids"].clone()).unwrap();
    let encoded: Vec<Encoded> = texts
        .iter()
        .map(|t| loaded.tokenizer.encode(t, None).unwrap())
        .collect();
    for (i, (e, want)) in encoded.iter().zip(&want_ids).enumerate() {
        assert_eq!(&e.ids, want, "token ids of text {i}");
    }
    let normalized = vectors(&golden, "embeddings");
    let unnormalized = vectors(&golden, "embeddings_mean_unnormalized");

    let batched = embed(loaded.backend.as_ref(), &encoded, Pooling::Mean);
    for (i, v) in batched.iter().enumerate() {
        assert_close(v, &unnormalized[i], &format!("{model} batched unnormalized {i}"));
        assert_close(
            &finish_embedding(v.clone(), None, true),
            &normalized[i],
            &format!("{model} batched {i}"),
        );
    }
    for (i, e) in encoded.iter().enumerate() {
        let single = embed(loaded.backend.as_ref(), std::slice::from_ref(e), Pooling::Mean);
        assert_close(&single[0], &unnormalized[i], &format!("{model} single {i}"));
    }
}

#[test]
fn jina_tiny_matches_the_reference() {
    check("jina-tiny");
}

#[test]
fn jina_tiny_finetuned_matches_the_reference() {
    check("jina-tiny-finetuned");
}
