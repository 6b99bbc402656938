//! The flash backend passes the same golden parity as the padded backends: every reference
//! model, singly and as one unpadded batch, within 1e-4 and cosine 0.99999.

use std::path::Path;

use tessera_core::testing::{assert_matches_golden, fetched_model, reference_dir, shared_dir};
use tessera_core::{Assessment, BackendFactory};
use tessera_flash::FlashBackend;

fn check(model_dir: &Path, golden: &Path) {
    let inspection = tessera_validation::inspect(model_dir);
    assert!(matches!(FlashBackend.assess(&inspection), Assessment::Serves { .. }));
    let model = assert_matches_golden(&FlashBackend, &inspection, golden);
    assert_eq!(model.backend.describe().backend, "flash");
    assert!(!model.backend.describe().pads);
}

fn shared(model_dir: &str, golden: &str) {
    if let Some(shared) = shared_dir(env!("CARGO_MANIFEST_DIR")) {
        check(&shared.join(model_dir), &shared.join(golden));
    }
}

fn reference(model: &str) {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models").join(model);
    check(&dir, &dir.join("golden.json"));
}

#[test]
fn minilm() {
    shared("models/all-MiniLM-L6-v2", "reference/golden_minilm.json");
}

#[test]
fn bert_tiny() {
    shared("models/bert-tiny", "models/bert-tiny/golden.json");
}

#[test]
fn jina_tiny() {
    shared("models/jina-tiny", "models/jina-tiny/golden.json");
}

#[test]
fn jina_tiny_finetuned() {
    shared("models/jina-tiny-finetuned", "models/jina-tiny-finetuned/golden.json");
}

#[test]
fn xlm_roberta_tiny() {
    reference("xlm-roberta-tiny");
}

#[test]
fn roberta_saved_from_masked_lm() {
    reference("roberta-mlm-tiny");
}

#[test]
fn t5_gated_and_relu() {
    for model in ["t5-gated-tiny", "t5-relu-tiny"] {
        reference(model);
    }
}

#[test]
fn electra_with_projected_tables() {
    reference("electra-tiny");
}

#[test]
fn distilbert_tiny() {
    reference("distilbert-tiny");
}

#[test]
fn distilbert_with_sinusoids_computed_at_load() {
    reference("distilbert-sinusoidal-mlm");
}

#[test]
fn mpnet_tiny() {
    reference("mpnet-tiny");
}

#[test]
fn deberta_v3_and_v2() {
    reference("deberta-v3-tiny");
    reference("deberta-v2-p2c-absolute");
    reference("deberta-v2-conv-projected");
}

#[test]
fn all_mpnet_base_v2() {
    if let Some(dir) = fetched_model(env!("CARGO_MANIFEST_DIR"), "all-mpnet-base-v2") {
        check(
            &dir,
            &reference_dir(env!("CARGO_MANIFEST_DIR")).join("golden_all_mpnet_base_v2.json"),
        );
    }
}

#[test]
fn camembert_without_tokenizer_json() {
    reference("camembert-tiny");
}

#[test]
fn modernbert_tiny() {
    reference("modernbert-tiny");
}

#[test]
fn modernbert_saved_from_masked_lm_with_biases() {
    reference("modernbert-biased-mlm");
}

#[test]
fn nomic_bert_in_both_layouts() {
    for model in [
        "nomic-tiny",
        "nomic-partial-biased",
        "nomic-plain-absolute",
        "nomic-native",
        "nomic-moe-tiny",
    ] {
        reference(model);
    }
}

#[test]
fn gte() {
    for model in [
        "gte-original-ntk",
        "gte-original-mixed-separate",
        "gte-native-tiny",
        "gte-native-no-token-types",
    ] {
        reference(model);
    }
}

#[test]
fn jina_v3_in_both_layouts() {
    for model in ["jina-v3-tiny", "jina-v3-native"] {
        reference(model);
    }
}

#[test]
fn qwen3_tiny() {
    reference("qwen3-tiny");
}

#[test]
fn qwen3_saved_as_causal_lm_with_one_kv_head() {
    reference("qwen3-causal-lm-mqa");
}

#[test]
fn qwen2_causal_and_bidirectional() {
    for model in ["qwen2-tiny", "qwen2-bidirectional-lm"] {
        reference(model);
    }
}

#[test]
fn mistral_sliding_window_and_biased_llama() {
    for model in [
        "mistral-window",
        "llama-biased-lm",
        "llama3-scaled",
        "eurobert-mlm",
        "llama-bidirec-tiny",
    ] {
        reference(model);
    }
}

#[test]
fn embedding_gemma() {
    reference("embedding-gemma-tiny");
}

#[test]
fn gemma2_soft_capped() {
    reference("gemma2-tiny");
}
