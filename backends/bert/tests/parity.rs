//! Parity with sentence-transformers goldens (`shared/reference`, `shared/models/*/golden.json`).
//! Goldens come from PyTorch, never from tessera's own output.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use serde_json::Value;
use tessera_bert::BertBackend;
use tessera_core::{
    finish_embedding, Backend, BackendFactory, Batch, Encoded, LoadRequest, Pooling, TextTokenizer,
};

/// `shared/` next to the checkout, or `TESSERA_SHARED`. Tests skip (loudly) when it is absent.
fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("TESSERA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: {} not found; set TESSERA_SHARED", dir.display());
        None
    }
}

struct Fixture {
    backend: Box<dyn Backend>,
    tokenizer: TextTokenizer,
    golden: Value,
}

fn load(model_dir: &Path, golden: &Path) -> Fixture {
    let inspection = tessera_validation::inspect(model_dir);
    let request = LoadRequest {
        inspection: &inspection,
        dtype: DType::F32,
        device: Device::Cpu,
        kernel: None,
    };
    let backend = BertBackend.load(&request).expect("model loads");
    let max_len = inspection.sentence_transformers.max_seq_length.unwrap();
    let tokenizer = TextTokenizer::from_file(&model_dir.join("tokenizer.json"), max_len).unwrap();
    let golden = serde_json::from_slice(&std::fs::read(golden).unwrap()).unwrap();
    Fixture {
        backend,
        tokenizer,
        golden,
    }
}

fn vectors(v: &Value, key: &str) -> Vec<Vec<f32>> {
    serde_json::from_value(v[key].clone()).unwrap()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: dimension");
    let max_diff = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let dot: f64 = got
        .iter()
        .zip(want)
        .map(|(a, b)| f64::from(*a) * f64::from(*b))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let cos = dot / (norm(got) * norm(want)).max(1e-30);
    assert!(max_diff <= 1e-4, "{what}: max abs diff {max_diff}");
    assert!(cos >= 0.99999, "{what}: cosine {cos}");
}

fn embed(f: &Fixture, encoded: &[Encoded], pooling: Pooling) -> Vec<Vec<f32>> {
    let batch = Batch::from_sequences(encoded.iter().map(|e| (&e.ids[..], &e.type_ids[..])));
    let hidden = f.backend.forward(&batch).unwrap();
    pooling
        .pool(&hidden, &batch.seqs)
        .unwrap()
        .to_vec2()
        .unwrap()
}

fn check_model(model_dir: &Path, golden: &Path) {
    let f = load(model_dir, golden);
    let texts: Vec<String> = serde_json::from_value(f.golden["texts"].clone()).unwrap();
    let want_ids: Vec<Vec<u32>> = serde_json::from_value(f.golden["token_ids"].clone()).unwrap();
    let encoded: Vec<Encoded> = texts
        .iter()
        .map(|t| f.tokenizer.encode(t, Some(Default::default())).unwrap())
        .collect();
    for (i, (e, want)) in encoded.iter().zip(&want_ids).enumerate() {
        assert_eq!(&e.ids, want, "token ids of text {i}");
    }

    let normalized = vectors(&f.golden, "embeddings");
    let unnormalized = vectors(&f.golden, "embeddings_mean_unnormalized");
    let cls = vectors(&f.golden, "embeddings_cls");

    // All inputs as one padded batch.
    let batched = embed(&f, &encoded, Pooling::Mean);
    for (i, v) in batched.iter().enumerate() {
        assert_close(v, &unnormalized[i], &format!("batched unnormalized {i}"));
        assert_close(
            &finish_embedding(v.clone(), None, true),
            &normalized[i],
            &format!("batched {i}"),
        );
    }
    let batched_cls = embed(&f, &encoded, Pooling::Cls);
    for (i, v) in batched_cls.iter().enumerate() {
        assert_close(v, &cls[i], &format!("batched cls {i}"));
    }
    // Each input alone.
    for (i, e) in encoded.iter().enumerate() {
        let single = embed(&f, std::slice::from_ref(e), Pooling::Mean);
        assert_close(&single[0], &unnormalized[i], &format!("single {i}"));
    }
}

#[test]
fn bert_tiny_matches_transformers() {
    let Some(shared) = shared() else { return };
    let dir = shared.join("models/bert-tiny");
    check_model(&dir, &dir.join("golden.json"));
}

#[test]
fn minilm_matches_sentence_transformers() {
    let Some(shared) = shared() else { return };
    check_model(
        &shared.join("models/all-MiniLM-L6-v2"),
        &shared.join("reference/golden_minilm.json"),
    );
}
