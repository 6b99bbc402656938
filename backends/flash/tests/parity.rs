//! The flash backend passes the same golden parity as the padded backends: every shared model,
//! singly and as one unpadded batch, within 1e-4 and cosine 0.99999.

use serde_json::Value;
use tessera_core::testing::{assert_close, embed, load, shared_dir, vectors};
use tessera_core::{Assessment, BackendFactory, Encoded, Pooling};
use tessera_flash::FlashBackend;

fn check(model_dir: &str, golden_path: &str, has_cls: bool) {
    let Some(shared) = shared_dir(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    let inspection = tessera_validation::inspect(&shared.join(model_dir));
    assert!(matches!(FlashBackend.assess(&inspection), Assessment::Serves { .. }));
    let model = load(&FlashBackend, &inspection);
    assert_eq!(model.backend.describe().backend, "flash");
    assert!(!model.backend.describe().pads);
    let golden: Value = serde_json::from_slice(&std::fs::read(shared.join(golden_path)).unwrap()).unwrap();
    let texts: Vec<String> = serde_json::from_value(golden["texts"].clone()).unwrap();
    let encoded: Vec<Encoded> = texts
        .iter()
        .map(|t| model.tokenizer.encode(t, Some(Default::default())).unwrap())
        .collect();
    let want = vectors(&golden, "embeddings_mean_unnormalized");
    let batched = embed(model.backend.as_ref(), &encoded, Pooling::Mean);
    for (i, v) in batched.iter().enumerate() {
        assert_close(v, &want[i], &format!("{model_dir} batched {i}"));
    }
    for (i, e) in encoded.iter().enumerate() {
        let single = embed(model.backend.as_ref(), std::slice::from_ref(e), Pooling::Mean);
        assert_close(&single[0], &want[i], &format!("{model_dir} single {i}"));
    }
    if has_cls {
        let cls = vectors(&golden, "embeddings_cls");
        for (i, v) in embed(model.backend.as_ref(), &encoded, Pooling::Cls).iter().enumerate() {
            assert_close(v, &cls[i], &format!("{model_dir} cls {i}"));
        }
    }
}

#[test]
fn minilm() {
    check("models/all-MiniLM-L6-v2", "reference/golden_minilm.json", true);
}

#[test]
fn bert_tiny() {
    check("models/bert-tiny", "models/bert-tiny/golden.json", true);
}

#[test]
fn jina_tiny() {
    check("models/jina-tiny", "models/jina-tiny/golden.json", false);
}

#[test]
fn jina_tiny_finetuned() {
    check(
        "models/jina-tiny-finetuned",
        "models/jina-tiny-finetuned/golden.json",
        false,
    );
}
