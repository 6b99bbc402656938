//! Parity with goldens computed by transformers' model classes and sentence-transformers
//! (`shared/reference`, `shared/models/*/golden.json`, and the repository's `reference/models`,
//! made by `reference/make_encoders.py`). Goldens come from PyTorch, never from tessera's output.

use std::path::Path;

use tessera_core::testing::{assert_matches_golden, fetched_model, reference_dir, shared_dir};
use tessera_core::{Assessment, BackendFactory};
use tessera_encoder::{
    AttentionBias, BERT, DEBERTA, DISTILBERT, GEMMA2, GEMMA3, GTE, JINA_V3, LLAMA, MODERNBERT, MPNET, NOMIC_BERT,
    QWEN2, QWEN3, ROBERTA, T5_ENCODER,
};

fn check(factory: &dyn BackendFactory, model_dir: &Path, golden: &Path, architecture: &str) {
    let inspection = tessera_validation::inspect(model_dir);
    match factory.assess(&inspection) {
        Assessment::Serves { architecture: a, .. } => assert_eq!(a, architecture),
        Assessment::Declines { reasons } => panic!("{}: {reasons:?}", model_dir.display()),
    }
    let model = assert_matches_golden(factory, &inspection, golden);
    assert!(model.backend.describe().pads, "the padded reference kernel");
}

#[test]
fn bert_tiny_matches_transformers() {
    let Some(shared) = shared_dir(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    let dir = shared.join("models/bert-tiny");
    check(&BERT, &dir, &dir.join("golden.json"), "bert");
}

#[test]
fn minilm_matches_sentence_transformers() {
    let Some(shared) = shared_dir(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    check(
        &BERT,
        &shared.join("models/all-MiniLM-L6-v2"),
        &shared.join("reference/golden_minilm.json"),
        "bert",
    );
}

#[test]
fn xlm_roberta_tiny_matches_sentence_transformers() {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/xlm-roberta-tiny");
    check(&ROBERTA, &dir, &dir.join("golden.json"), "xlm-roberta");
}

#[test]
fn roberta_saved_from_masked_lm_matches_sentence_transformers() {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/roberta-mlm-tiny");
    check(&ROBERTA, &dir, &dir.join("golden.json"), "roberta");
}

#[test]
fn camembert_without_tokenizer_json_matches_sentence_transformers() {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/camembert-tiny");
    check(&ROBERTA, &dir, &dir.join("golden.json"), "camembert");
}

#[test]
fn distilbert_tiny_matches_sentence_transformers() {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/distilbert-tiny");
    check(&DISTILBERT, &dir, &dir.join("golden.json"), "distilbert");
}

#[test]
fn distilbert_with_sinusoids_computed_at_load_matches_sentence_transformers() {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/distilbert-sinusoidal-mlm");
    check(&DISTILBERT, &dir, &dir.join("golden.json"), "distilbert");
}

#[test]
fn mpnet_tiny_matches_sentence_transformers() {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/mpnet-tiny");
    check(&MPNET, &dir, &dir.join("golden.json"), "mpnet");
}

#[test]
fn all_mpnet_base_v2_matches_sentence_transformers() {
    let Some(dir) = fetched_model(env!("CARGO_MANIFEST_DIR"), "all-mpnet-base-v2") else {
        return;
    };
    let golden = reference_dir(env!("CARGO_MANIFEST_DIR")).join("golden_all_mpnet_base_v2.json");
    check(&MPNET, &dir, &golden, "mpnet");
}

#[test]
fn mpnet_buckets_every_offset_as_transformers_does() {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/mpnet-tiny");
    let golden: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("golden.json")).unwrap()).unwrap();
    let table = &golden["relative_buckets"];
    let first = table["first_offset"].as_i64().unwrap();
    let buckets: Vec<usize> = serde_json::from_value(table["buckets"].clone()).unwrap();
    for (i, want) in buckets.iter().enumerate() {
        let d = first + i as i64;
        assert_eq!(AttentionBias::bucket(32, 128, d), *want, "offset {d}");
    }
}

/// DeBERTa-v3 (no position table, shared projections, c2p and p2c, normed relative embeddings,
/// log buckets), DeBERTa-v2's older layout (a position table, its own `pos_query_proj`, p2c
/// only, `pos_att_type` as a string, unbucketed offsets clamped at 48, two token types) and
/// its largest checkpoints' extras (the convolution after layer 0, projected embeddings), over
/// texts to 512 tokens.
#[test]
fn deberta_v2_and_v3_match_sentence_transformers() {
    for model in [
        "deberta-v3-tiny",
        "deberta-v2-p2c-absolute",
        "deberta-v2-conv-projected",
    ] {
        let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models").join(model);
        check(&DEBERTA, &dir, &dir.join("golden.json"), "deberta-v2");
    }
}

/// T5's encoder: GTR-T5's gated feed-forward with `d_kv` apart from `d_model / heads` and a Dense
/// layer after pooling, and sentence-t5's ReLU one; relative buckets from layer 0 in every
/// layer, scores not divided by `sqrt(d_kv)`.
#[test]
fn t5_encoders_match_sentence_transformers() {
    for model in ["t5-gated-tiny", "t5-relu-tiny"] {
        let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models").join(model);
        check(&T5_ENCODER, &dir, &dir.join("golden.json"), "t5");
    }
}

/// ELECTRA: BERT's encoder with tables narrower than the layers, normed at their width, then
/// projected (`embeddings_project`), positions from 0.
#[test]
fn electra_matches_sentence_transformers() {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/electra-tiny");
    check(&BERT, &dir, &dir.join("golden.json"), "electra");
}

#[test]
fn deberta_buckets_every_offset_as_transformers_does() {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/deberta-v3-tiny");
    let golden: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("golden.json")).unwrap()).unwrap();
    let table = &golden["relative_columns"];
    let first = table["first_offset"].as_i64().unwrap();
    for (name, buckets, max_distance, span) in [("v3", Some(256), 512, 256), ("tiny", Some(32), 64, 32)] {
        let d = tessera_encoder::Disentangled {
            table: "encoder.rel_embeddings",
            rows: tessera_core::Dim::of("position_buckets", 2 * span),
            norm: None,
            buckets,
            max_distance,
            c2p: true,
            p2c: true,
            projections: None,
        };
        let want: Vec<usize> = serde_json::from_value(table[name].clone()).unwrap();
        assert_eq!(want.len(), 2047, "{name}");
        for (i, want) in want.iter().enumerate() {
            let offset = first + i as i64;
            assert_eq!(d.column(offset), *want, "{name}: offset {offset}");
        }
    }
}

#[test]
fn each_family_declines_the_others_checkpoints() {
    let reference = reference_dir(env!("CARGO_MANIFEST_DIR"));
    let families = [
        (&BERT, "bert"),
        (&ROBERTA, "roberta"),
        (&DISTILBERT, "distilbert"),
        (&MPNET, "mpnet"),
        (&DEBERTA, "deberta"),
        (&NOMIC_BERT, "nomic-bert"),
        (&GTE, "gte"),
    ];
    for (model, family) in [
        ("xlm-roberta-tiny", "roberta"),
        ("roberta-mlm-tiny", "roberta"),
        ("camembert-tiny", "roberta"),
        ("electra-tiny", "bert"),
        ("distilbert-tiny", "distilbert"),
        ("distilbert-sinusoidal-mlm", "distilbert"),
        ("mpnet-tiny", "mpnet"),
        ("deberta-v3-tiny", "deberta"),
        ("deberta-v2-p2c-absolute", "deberta"),
        ("deberta-v2-conv-projected", "deberta"),
        ("nomic-tiny", "nomic-bert"),
        ("nomic-native", "nomic-bert"),
        ("gte-original-ntk", "gte"),
        ("gte-original-mixed-separate", "gte"),
        ("gte-native-tiny", "gte"),
    ] {
        let inspection = tessera_validation::inspect(&reference.join("models").join(model));
        for (factory, name) in families {
            match factory.assess(&inspection) {
                Assessment::Serves { findings, .. } => {
                    assert_eq!(name, family, "{model} served by {name}");
                    assert!(
                        findings.iter().all(|f| f.severity == tessera_core::Severity::Info),
                        "{model}: {findings:?}"
                    );
                }
                Assessment::Declines { reasons } => {
                    assert_ne!(name, family, "{model}: {reasons:?}");
                    assert_eq!(reasons[0].code, "family-is-another", "{model} by {name}: {reasons:?}");
                }
            }
        }
    }
    if let Some(shared) = shared_dir(env!("CARGO_MANIFEST_DIR")) {
        let inspection = tessera_validation::inspect(&shared.join("models/bert-tiny"));
        assert!(matches!(ROBERTA.assess(&inspection), Assessment::Declines { .. }));
    }
}

#[test]
fn modernbert_tiny_matches_sentence_transformers() {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/modernbert-tiny");
    check(
        &MODERNBERT,
        &dir,
        &dir.join("golden.json"),
        "modernbert (2 global of 4 layers, local windows of 16 tokens)",
    );
}

#[test]
fn modernbert_saved_from_masked_lm_with_biases_matches_sentence_transformers() {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/modernbert-biased-mlm");
    check(
        &MODERNBERT,
        &dir,
        &dir.join("golden.json"),
        "modernbert (2 global of 3 layers, local windows of 8 tokens)",
    );
}

#[test]
fn qwen3_tiny_matches_sentence_transformers() {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/qwen3-tiny");
    check(
        &QWEN3,
        &dir,
        &dir.join("golden.json"),
        "qwen3 (4 query heads on 2 key/value heads of 24, causal)",
    );
}

#[test]
fn qwen3_saved_as_causal_lm_with_one_kv_head_matches_sentence_transformers() {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/qwen3-causal-lm-mqa");
    check(
        &QWEN3,
        &dir,
        &dir.join("golden.json"),
        "qwen3 (3 query heads on 1 key/value heads of 16, causal)",
    );
}

/// Qwen2 (Q/K/V biases, no output bias) causal and bidirectional (`is_causal: false`), Mistral's
/// causal sliding window over texts far longer than it, Llama with every bias and a head
/// width apart from hidden / heads, Llama 3.1's RoPE scaling, EuroBERT (Llama's layers,
/// bidirectional as `model_type: eurobert` says) and NVIDIA's bidirectional Llama (`model_type:
/// llama_bidirec`, mean-pooled as its config's `pooling: avg` says).
#[test]
fn qwen2_mistral_and_llama_decoders_match_sentence_transformers() {
    for (backend, model, architecture) in [
        (
            &QWEN2,
            "qwen2-tiny",
            "qwen2 (4 query heads on 2 key/value heads of 12, causal)",
        ),
        (
            &QWEN2,
            "qwen2-bidirectional-lm",
            "qwen2 (3 query heads on 1 key/value heads of 16, bidirectional)",
        ),
        (
            &LLAMA,
            "mistral-window",
            "mistral (4 query heads on 1 key/value heads of 16, causal within 20 tokens)",
        ),
        (
            &LLAMA,
            "llama-biased-lm",
            "llama (3 query heads on 3 key/value heads of 24, causal)",
        ),
        (
            &LLAMA,
            "llama3-scaled",
            "llama (4 query heads on 2 key/value heads of 16, causal)",
        ),
        (
            &LLAMA,
            "eurobert-mlm",
            "eurobert (4 query heads on 2 key/value heads of 12, bidirectional)",
        ),
        (
            &LLAMA,
            "llama-bidirec-tiny",
            "llama_bidirec (4 query heads on 2 key/value heads of 12, bidirectional)",
        ),
    ] {
        let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models").join(model);
        check(backend, &dir, &dir.join("golden.json"), architecture);
    }
}

/// EmbeddingGemma's shape: bidirectional, sliding layers among a full one, norms around both
/// blocks stored as offsets from 1, scaled word vectors and scores, then two Dense layers.
#[test]
fn embedding_gemma_matches_sentence_transformers() {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/embedding-gemma-tiny");
    check(
        &GEMMA3,
        &dir,
        &dir.join("golden.json"),
        "gemma3_text (4 query heads on 2 key/value heads of 16, bidirectional, 1 full of 4 layers, the others 12 tokens each side)",
    );
}

/// bge-multilingual-gemma2's shape: causal, sliding layers alternating with full ones, scores
/// scaled by `query_pre_attn_scalar` and soft-capped, norms around both blocks stored as offsets
/// from 1, last-token pooling. The hub's config, saved by transformers 4.42, has neither
/// `layer_types` nor `rope_parameters` (every second layer full, `rope_theta` at the top, and
/// `sliding_window_size` beside `sliding_window`): the same model.
#[test]
fn gemma2_matches_sentence_transformers_in_both_config_layouts() {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/gemma2-tiny");
    let architecture =
        "gemma2 (4 query heads on 2 key/value heads of 16, causal, 2 full of 4 layers, the others the last 20 tokens, scores capped at 3)";
    check(&GEMMA2, &dir, &dir.join("golden.json"), architecture);

    let older = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), older.path().join(entry.file_name())).unwrap();
        } else {
            let to = older.path().join(entry.file_name());
            std::fs::create_dir(&to).unwrap();
            for file in std::fs::read_dir(entry.path()).unwrap() {
                let file = file.unwrap();
                std::fs::copy(file.path(), to.join(file.file_name())).unwrap();
            }
        }
    }
    let path = older.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let keys = config.as_object_mut().unwrap();
    keys.remove("layer_types");
    keys.remove("rope_parameters");
    keys.insert("rope_theta".into(), serde_json::json!(10000.0));
    keys.insert("sliding_window_size".into(), serde_json::json!(20));
    keys.insert("cache_implementation".into(), serde_json::json!("hybrid"));
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    check(&GEMMA2, older.path(), &dir.join("golden.json"), architecture);
}

/// Both NomicBERT layouts, against the original remote code (agreeing with transformers'
/// class on the same weights) and the native class; texts run past the trained length, where
/// dynamic NTK scaling applies. nomic-embed-text-v2-moe's experts against nomic's `MoEBlock`.
#[test]
fn nomic_bert_matches_its_references_in_both_layouts() {
    for (model, architecture) in [
        (
            "nomic-tiny",
            "nomic-bert (original config, rotary on 16 of 16 dims, base 1000, dynamic NTK x2 beyond 128 tokens)",
        ),
        (
            "nomic-partial-biased",
            "nomic-bert (original config, rotary on 10 of 20 dims, base 10000)",
        ),
        (
            "nomic-plain-absolute",
            "nomic-bert (original config, absolute positions)",
        ),
        (
            "nomic-native",
            "nomic-bert (native config, rotary on 20 of 20 dims, base 1000, dynamic NTK x3 beyond 100 tokens)",
        ),
        (
            "nomic-moe-tiny",
            "nomic-bert (original config, rotary on 8 of 8 dims, base 10000, top 2 of 4 experts on layers 1, 3...)",
        ),
    ] {
        let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models").join(model);
        check(&NOMIC_BERT, &dir, &dir.join("golden.json"), architecture);
    }
}

/// GTE in the remote code's layout (fixed NTK, with and without `mixed_b`, fused and separate
/// projections; the remote code agreeing with transformers' class on the same weights) and the
/// native one.
#[test]
fn gte_matches_its_references_in_both_layouts() {
    for (model, architecture) in [
        ("gte-original-ntk", "gte (original config, rotary base 500000)"),
        (
            "gte-original-mixed-separate",
            "gte (original config, rotary base 10000)",
        ),
        ("gte-native-tiny", "gte (native config, rotary base 160000)"),
        ("gte-native-no-token-types", "gte (native config, rotary base 500000)"),
    ] {
        let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models").join(model);
        check(&GTE, &dir, &dir.join("golden.json"), architecture);
    }
}

/// Qwen3-Embedding ships bfloat16 weights: the same checkpoint rounded to bfloat16 loads (as
/// float32 on the CPU) and stays as close to the float32 golden as that rounding allows.
#[test]
fn qwen3_with_bfloat16_weights_loads() {
    let source = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/qwen3-tiny");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
    std::fs::copy(
        source.join("1_Pooling/config.json"),
        dir.path().join("1_Pooling/config.json"),
    )
    .unwrap();
    let weights = dir.path().join("model.safetensors");
    let tensors = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu).unwrap();
    let narrowed: std::collections::HashMap<String, candle_core::Tensor> = tensors
        .into_iter()
        .map(|(name, t)| (name, t.to_dtype(candle_core::DType::BF16).unwrap()))
        .collect();
    candle_core::safetensors::save(&narrowed, &weights).unwrap();

    let inspection = tessera_validation::inspect(dir.path());
    assert!(inspection
        .weights
        .as_ref()
        .unwrap()
        .tensors
        .values()
        .all(|t| t.dtype == "BF16"));
    let model = tessera_core::testing::load(&QWEN3, &inspection);
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(source.join("golden.json")).unwrap()).unwrap();
    let texts: Vec<String> = serde_json::from_value(golden["texts"].clone()).unwrap();
    let encoded: Vec<_> = texts
        .iter()
        .map(|t| model.tokenizer.encode(t, Some(Default::default())).unwrap())
        .collect();
    let got = tessera_core::testing::embed(model.backend.as_ref(), &encoded, tessera_core::Pooling::LastToken);
    let want = tessera_core::testing::vectors(&golden, "embeddings");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let cos = tessera_core::testing::cosine(g, w);
        assert!(cos >= 0.995, "text {i}: cosine {cos} with bfloat16 weights");
    }
}

/// jina-embeddings-v3 as its remote code computes it: without a task (adapters off) through the
/// common golden check, and with each task (its instruction prepended, its adapter on), alone
/// and in one batch that mixes every task with sequences that have none.
#[test]
fn jina_v3_matches_its_remote_code_with_every_task_adapter() {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/jina-v3-tiny");
    check(
        &JINA_V3,
        &dir,
        &dir.join("golden.json"),
        "jina-v3 (original config, rotary base 20000, 5 task adapters of rank 4)",
    );
    let inspection = tessera_validation::inspect(&dir);
    let model = tessera_core::testing::load(&JINA_V3, &inspection);
    let golden: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("golden.json")).unwrap()).unwrap();
    let texts: Vec<String> = serde_json::from_value(golden["texts"].clone()).unwrap();
    let adapters = model.backend.adapters().to_vec();
    assert_eq!(adapters.len(), 5);
    let mut mixed = Vec::new();
    for (t, task) in adapters.iter().enumerate() {
        let entry = &golden["tasks"][task];
        let prompt = entry["prompt"].as_str().unwrap();
        let want = tessera_core::testing::vectors(entry, "embeddings");
        for (i, want) in want.iter().enumerate() {
            let encoded = model
                .tokenizer
                .encode(&format!("{prompt}{}", texts[i]), Some(Default::default()))
                .unwrap();
            let batch = tessera_core::Batch::from_sequences([(&encoded.ids[..], &encoded.type_ids[..])])
                .with_tasks(vec![Some(t)]);
            let got = pooled(model.backend.as_ref(), &batch);
            tessera_core::testing::assert_close(&got[0], want, &format!("{task} alone, text {i}"));
            if i < 3 {
                mixed.push((encoded, Some(t), want.clone()));
            }
        }
    }
    // One batch: every task's sequences and base ones between them.
    let base = tessera_core::testing::vectors(&golden, "embeddings");
    for i in 0..3 {
        let encoded = model.tokenizer.encode(&texts[i], Some(Default::default())).unwrap();
        mixed.insert(i * 4, (encoded, None, base[i].clone()));
    }
    let batch = tessera_core::Batch::from_sequences(mixed.iter().map(|(e, _, _)| (&e.ids[..], &e.type_ids[..])))
        .with_tasks(mixed.iter().map(|(_, t, _)| *t).collect());
    let got = pooled(model.backend.as_ref(), &batch);
    for (i, (g, (_, task, want))) in got.iter().zip(&mixed).enumerate() {
        tessera_core::testing::assert_close(g, want, &format!("mixed batch, sequence {i} ({task:?})"));
    }
    // A task the model does not have is refused with the batch, not indexed.
    let bad = tessera_core::Batch::from_sequences([(&mixed[0].0.ids[..], &mixed[0].0.type_ids[..])])
        .with_tasks(vec![Some(5)]);
    assert!(model.backend.forward(&bad).is_err());
}

#[test]
fn jina_v3_native_matches_transformers() {
    let dir = reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/jina-v3-native");
    check(
        &JINA_V3,
        &dir,
        &dir.join("golden.json"),
        "jina-v3 (native config, rotary base 20000, no task adapters)",
    );
}

/// Mean-pooled, normalized vectors of `batch`, as `/embed` returns them.
fn pooled(backend: &dyn tessera_core::Backend, batch: &tessera_core::Batch) -> Vec<Vec<f32>> {
    let hidden = backend.forward(batch).unwrap();
    let vectors: Vec<Vec<f32>> = tessera_core::Pooling::Mean
        .pool(&hidden, &batch.seqs)
        .unwrap()
        .to_vec2()
        .unwrap();
    vectors
        .into_iter()
        .map(|v| tessera_core::finish_embedding(v, None, true))
        .collect()
}
