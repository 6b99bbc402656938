//! Static embedding models against sentence-transformers' vectors (`reference/models/static-tiny`,
//! `model2vec-tiny`, made by `reference/make_static.py`): tokens without special tokens, their
//! vectors (model2vec's mapped and weighted rows folded) averaged, an empty text zeros.

use std::path::Path;

use candle_core::{DType, Device};
use serde_json::Value;
use tessera_core::testing::{embed, load, reference_dir};
use tessera_core::{Assessment, BackendFactory, LoadError, LoadRequest, Pooling};
use tessera_encoder::STATIC;

fn model(name: &str) -> std::path::PathBuf {
    reference_dir(env!("CARGO_MANIFEST_DIR")).join("models").join(name)
}

fn golden(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("golden.json")).unwrap()).unwrap()
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        return v.to_vec();
    }
    v.iter().map(|x| x / norm).collect()
}

/// The model's vectors for the golden's texts (up to `max_tokens` tokens each) match.
fn assert_matches(name: &str, architecture: &str) {
    let dir = model(name);
    let inspection = tessera_validation::inspect(&dir);
    match STATIC.assess(&inspection) {
        Assessment::Serves {
            architecture: a,
            pooling,
            max_positions,
            ..
        } => {
            assert_eq!(a, architecture);
            assert_eq!(pooling.map(|p| p.pooling), Some(Pooling::Mean));
            assert_eq!(max_positions, None);
        }
        Assessment::Declines { reasons } => panic!("{name}: {reasons:?}"),
    }
    let golden = golden(&dir);
    let loaded = load(&STATIC, &inspection);
    let texts: Vec<String> = serde_json::from_value(golden["texts"].clone()).unwrap();
    let want_ids: Vec<Vec<u32>> = serde_json::from_value(golden["token_ids"].clone()).unwrap();
    let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings"].clone()).unwrap();
    let encoded: Vec<_> = texts
        .iter()
        .map(|t| {
            let direction = Some(tessera_core::TruncationDirection::Right);
            loaded.tokenizer.encode_input(t, None, direction).unwrap()
        })
        .collect();
    for (i, e) in encoded.iter().enumerate() {
        assert_eq!(e.ids.len(), want_ids[i].len(), "{name}: token count of text {i}");
        assert!(e.ids == want_ids[i], "{name}: token ids of text {i}");
    }
    let got = embed(loaded.backend.as_ref(), &encoded, Pooling::Mean);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let g = match golden["normalized"].as_bool().unwrap() {
            true => normalized(g),
            false => g.clone(),
        };
        for (a, b) in g.iter().zip(w) {
            assert!((a - b).abs() < 1e-5, "{name} text {i}: {a} vs {b}");
        }
    }
    assert!(got[texts.iter().position(String::is_empty).unwrap()]
        .iter()
        .all(|&x| x == 0.0));
}

#[test]
fn a_sentence_transformers_static_embedding_averages_as_sentence_transformers() {
    assert_matches("static-tiny", "static-embedding (511 tokens x 24)");
}

/// model2vec's mapped rows and token weights, and its tokenizer's own truncation at 512 (the
/// golden's longest text is cut there, as sentence-transformers' module cuts it).
#[test]
fn a_model2vec_model_folds_its_mapping_and_weights_as_sentence_transformers() {
    assert_matches(
        "model2vec-tiny",
        "static-embedding (511 tokens x 16, 97 rows mapped, token weights)",
    );
}

/// A mapping that names a row past the table is refused when loading, naming the tensor.
#[test]
fn a_mapping_past_the_table_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(model("model2vec-tiny")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let start = header["mapping"]["data_offsets"][0].as_u64().unwrap() as usize;
    let mut bytes = bytes.clone();
    bytes[8 + n + start..8 + n + start + 8].copy_from_slice(&97i64.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let inspection = tessera_validation::inspect(dir.path());
    let request = LoadRequest {
        inspection: &inspection,
        dtype: DType::F32,
        device: Device::Cpu,
        kernel: None,
    };
    match STATIC.load(&request) {
        Err(LoadError::Declined(finding)) => {
            assert_eq!(finding.code, "static-embedding-invalid");
            assert_eq!(finding.subject.as_deref(), Some("mapping"));
            assert!(finding.message.contains("row 97 of a 97-row table"), "{finding}");
        }
        other => panic!("{other:?}"),
    }
}
