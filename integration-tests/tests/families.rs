//! The encoder families through the real binary: each reference checkpoint is recognised as its
//! family with evidence, served on /embed, /predict and /rerank as transformers computes it, and
//! the traps of each family are refused (or warned about) by name before anything is served.

use serde_json::{json, Value};
use tessera_integration_tests::reference::{self, copy, edit_config, finding, golden, validate};
use tessera_integration_tests::{assert_parity, run, Safetensors, Server};

#[test]
fn validate_model_states_each_family_and_its_evidence() {
    for (model, architecture, evidence) in [
        ("xlm-roberta-tiny", "xlm-roberta", "pad_token_id"),
        (
            "roberta-mlm-tiny",
            "roberta",
            "roberta.embeddings.word_embeddings.weight",
        ),
        (
            "distilbert-tiny",
            "distilbert",
            "transformer.layer.0.attention.q_lin.weight",
        ),
        ("distilbert-sinusoidal-mlm", "distilbert", "sinusoidal_pos_embds"),
        ("mpnet-tiny", "mpnet", "encoder.relative_attention_bias.weight"),
        ("camembert-tiny", "camembert", "pad_token_id"),
        ("electra-tiny", "electra", "embeddings_project.weight"),
        (
            "t5-gated-tiny",
            "t5",
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        ),
        ("t5-relu-tiny", "t5", "feed_forward_proj"),
        (
            "electra-reranker-tiny",
            "electra",
            "electra.embeddings.word_embeddings.weight",
        ),
        ("deberta-v3-tiny", "deberta-v2", "encoder.rel_embeddings.weight"),
        ("deberta-v2-p2c-absolute", "deberta-v2", "pos_att_type"),
        ("deberta-v2-conv-projected", "deberta-v2", "conv_kernel_size"),
    ] {
        let (status, report) = validate(&reference::model(model));
        assert_eq!(status, Some(0), "{model}: {report:#}");
        assert_eq!(report["architecture"], format!("{architecture}, unpadded"), "{model}");
        let subjects = reference::evidence_subjects(&report);
        assert!(subjects.contains(&evidence), "{model}: {subjects:?}");
        // Only notes: CamemBERT's tokenizer is built from its SentencePiece model.
        let findings = report["findings"].as_array().unwrap();
        assert!(findings.iter().all(|f| f["severity"] == "info"), "{model}: {report:#}");
    }
}

#[test]
fn an_xlm_roberta_model_serves_sentence_transformers_vectors() {
    let model = "xlm-roberta-tiny";
    let golden = golden(model);
    let server = Server::start(&reference::model(model), &["--max-client-batch-size", "64"]);
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(info["max_input_length"], 128);
    let texts = golden["texts"].clone();
    let got = server.embed(&texts);
    let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings"].clone()).unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_parity(g, w, &format!("{model} /embed {i}"));
    }
    // A text longer than the 128 positions is refused without truncation.
    let long = "word ".repeat(400);
    assert_eq!(
        server
            .post("/embed", &json!({ "inputs": long, "truncate": false }))
            .status(),
        422
    );
}

/// T5's encoders (GTR-T5's gated feed-forward and Dense layer, sentence-t5's ReLU one) through
/// the binary, batched by the server, and ELECTRA with projected tables.
#[test]
fn t5_and_electra_models_serve_sentence_transformers_vectors() {
    for model in ["t5-gated-tiny", "t5-relu-tiny", "electra-tiny"] {
        let golden = golden(model);
        let server = Server::start(&reference::model(model), &["--max-client-batch-size", "64"]);
        let got = server.embed(&golden["texts"]);
        let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings"].clone()).unwrap();
        assert_eq!(got.len(), want.len(), "{model}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_parity(g, w, &format!("{model} /embed {i}"));
        }
    }
}

/// DeBERTa-v3's disentangled attention, and v2's convolution after layer 0 with projected
/// embeddings, over texts to 512 tokens batched by the server.
#[test]
fn deberta_models_serve_sentence_transformers_vectors() {
    for model in ["deberta-v3-tiny", "deberta-v2-conv-projected"] {
        let golden = golden(model);
        let server = Server::start(&reference::model(model), &["--max-client-batch-size", "64"]);
        let got = server.embed(&golden["texts"]);
        let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings"].clone()).unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_parity(g, w, &format!("{model} /embed {i}"));
        }
    }
}

/// An XLM-RoBERTa reranker (bge-reranker's head), a GTE one (gte-multilingual-reranker's
/// pooler on rotary blocks), jina-reranker-v2 (its remote code's layout), a DeBERTa-v3 one (mxbai-rerank-v1's context pooler), a Qwen3 one
/// (a decoder's `score` on its last token that is not padding), a EuroBERT one (its head on every
/// token, the logits averaged) and causal language models
/// scored by sentence-transformers' `LogitScore` through their chat template rank pairs by the
/// sigmoid of their references' logits.
#[test]
fn rerankers_rank_pairs_as_transformers_scores_them() {
    for model in [
        "xlm-roberta-reranker-tiny",
        "gte-reranker-tiny",
        "jina-reranker-v2-tiny",
        "deberta-v3-reranker-tiny",
        "qwen3-reranker-tiny",
        "gemma2-reranker-tiny",
        "eurobert-reranker-tiny",
        "electra-reranker-tiny",
        "qwen3-logit-reranker-tiny",
        "llama-logit-reranker-tiny",
    ] {
        assert_reranks_as_transformers(model);
    }
}

fn assert_reranks_as_transformers(model: &str) {
    let golden = golden(model);
    let server = Server::start(&reference::model(model), &[]);
    let pairs: Vec<(String, String)> = serde_json::from_value(golden["pairs"].clone()).unwrap();
    let logits: Vec<Vec<f64>> = serde_json::from_value(golden["pair_logits"].clone()).unwrap();
    let (query, _) = &pairs[0];
    let texts: Vec<&str> = pairs[..2].iter().map(|(_, p)| p.as_str()).collect();
    let ranks: Vec<Value> = server
        .post(
            "/rerank",
            &json!({ "query": query, "texts": texts, "return_text": true }),
        )
        .json()
        .unwrap();
    assert_eq!(ranks.len(), 2);
    assert!(ranks[0]["score"].as_f64() >= ranks[1]["score"].as_f64(), "best first");
    for rank in &ranks {
        let i = rank["index"].as_u64().unwrap() as usize;
        let want = 1.0 / (1.0 + (-logits[i][0]).exp());
        assert!(
            (rank["score"].as_f64().unwrap() - want).abs() < 1e-4,
            "{model}: {rank} vs {want}"
        );
        assert_eq!(rank["text"], texts[i]);
    }
    reference::assert_raw_rerank_matches(&server, &golden);
    assert_eq!(server.post("/embed", &json!({ "inputs": "x" })).status(), 422);
}

/// BERT's pooler head, a Llama decoder's `score` and EuroBERT's head on the mean, each with
/// three named labels.
#[test]
fn classifiers_predict_named_labels_for_texts_and_pairs() {
    for model in [
        "bert-classifier-tiny",
        "llama-classifier-tiny",
        "eurobert-classifier-tiny",
    ] {
        assert_predicts_as_transformers(model);
    }
}

fn assert_predicts_as_transformers(model: &str) {
    let golden = golden(model);
    let server = Server::start(&reference::model(model), &[]);
    let pairs: Vec<(String, String)> = serde_json::from_value(golden["pairs"].clone()).unwrap();
    let logits: Vec<Vec<f64>> = serde_json::from_value(golden["pair_logits"].clone()).unwrap();
    let (q, p) = &pairs[2];
    let got: Vec<Value> = server.post("/predict", &json!({ "inputs": [q, p] })).json().unwrap();
    let max = logits[2].iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logits[2].iter().map(|l| (l - max).exp()).sum();
    let labels = ["negative", "neutral", "positive"];
    for prediction in &got {
        let i = labels.iter().position(|l| *l == prediction["label"]).unwrap();
        let want = (logits[2][i] - max).exp() / sum;
        assert!(
            (prediction["score"].as_f64().unwrap() - want).abs() < 1e-4,
            "{model}: {prediction} vs {want}"
        );
    }
}

/// `problem_type: multi_label_classification` (SamLowe/roberta-base-go_emotions): each label's
/// own sigmoid, as transformers' text-classification pipeline scores independent labels, not a
/// softmax over them; `raw_scores` the logits still.
#[test]
fn independent_labels_are_scored_by_their_own_sigmoid() {
    let model = "bert-classifier-tiny";
    let dir = copy(model);
    edit_config(dir.path(), |c| {
        c.insert("problem_type".into(), json!("multi_label_classification"));
    });
    let golden = golden(model);
    let server = Server::start(dir.path(), &[]);
    let logits: Vec<Vec<f64>> = serde_json::from_value(golden["logits"].clone()).unwrap();
    let text = &golden["texts"][0];
    let labels = ["negative", "neutral", "positive"];
    for (raw, score) in [(false, sigmoid as fn(f64) -> f64), (true, |l| l)] {
        let got: Vec<Value> = server
            .post("/predict", &json!({ "inputs": text, "raw_scores": raw }))
            .json()
            .unwrap();
        assert_eq!(got.len(), 3);
        for prediction in &got {
            let i = labels.iter().position(|l| *l == prediction["label"]).unwrap();
            let want = score(logits[0][i]);
            assert!(
                (prediction["score"].as_f64().unwrap() - want).abs() < 1e-4,
                "raw {raw}: {prediction} vs {want}"
            );
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// An XLM-RoBERTa checkpoint with rotary positions in its config, no position table and a LoRA
/// tensor, but XLM-RoBERTa's layer names: neither XLM-RoBERTa (no table) nor jina-embeddings-v3
/// (not its layers). RoBERTa's refusal says what the evidence points at and where it is served.
#[test]
fn an_xlm_roberta_with_rotary_positions_and_adapters_is_pointed_at_jina_v3() {
    let dir = copy("xlm-roberta-tiny");
    edit_config(dir.path(), |c| {
        c.insert("position_embedding_type".into(), json!("rotary"));
    });
    let path = dir.path().join("model.safetensors");
    let mut weights = Safetensors::read(&path);
    weights.header.remove("embeddings.position_embeddings.weight");
    weights.push(
        "encoder.layers.0.mixer.Wqkv.parametrizations.weight.lora_A",
        &[4, 32],
        &[0.0; 128],
    );
    weights.write(&path);
    let (status, report) = validate(dir.path());
    assert_ne!(status, Some(0));
    let text = report.to_string();
    assert!(
        text.contains("jina-embeddings-v3") && text.contains("lora_A"),
        "{report:#}"
    );
    assert!(text.contains("it is served by the jina-v3 backend"), "{report:#}");
    let out = run(&["serve", "--model-id", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-backend"));
}

#[test]
fn a_roberta_pad_token_id_is_checked_against_the_position_table() {
    let dir = copy("xlm-roberta-tiny");
    edit_config(dir.path(), |c| {
        c.insert("pad_token_id".into(), json!(129));
    });
    let (status, report) = validate(dir.path());
    assert_ne!(status, Some(0));
    let f = finding(&report, "pad-token-id-beyond-positions");
    assert_eq!(f["subject"], "pad_token_id");
    assert!(f["file"].as_str().unwrap().ends_with("config.json"));

    edit_config(dir.path(), |c| {
        c.remove("pad_token_id");
    });
    let (status, report) = validate(dir.path());
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(finding(&report, "pad-token-id-missing")["severity"], "warning");
}

#[test]
fn an_mpnet_without_its_relative_bias_is_refused() {
    let dir = copy("mpnet-tiny");
    let path = dir.path().join("model.safetensors");
    let mut weights = Safetensors::read(&path);
    weights.header.remove("encoder.relative_attention_bias.weight");
    weights.write(&path);
    let (status, report) = validate(dir.path());
    assert_ne!(status, Some(0));
    let f = finding(&report, "relative-bias-missing");
    assert_eq!(f["subject"], "encoder.relative_attention_bias.weight");
}

/// What DeBERTa's own code cannot run, or tessera does not serve, is refused by key.
#[test]
fn deberta_options_without_a_meaning_are_refused_by_key() {
    for (key, value) in [
        ("conv_kernel_size", json!(2)),
        ("conv_groups", json!(4)),
        ("pos_att_type", json!(["c2p", "p2p"])),
    ] {
        let dir = copy("deberta-v2-conv-projected");
        edit_config(dir.path(), |c| {
            c.insert(key.into(), value.clone());
        });
        let (status, report) = validate(dir.path());
        assert_ne!(status, Some(0), "{key}");
        assert_eq!(finding(&report, "deberta-option-unsupported")["subject"], key);
    }
}

#[test]
fn a_classifier_whose_labels_and_head_disagree_is_refused() {
    let dir = copy("xlm-roberta-reranker-tiny");
    edit_config(dir.path(), |c| {
        c.insert("id2label".into(), json!({"0": "a", "1": "b", "2": "c"}));
    });
    let (status, report) = validate(dir.path());
    assert_ne!(status, Some(0));
    let f = finding(&report, "classifier-labels-mismatch");
    assert_eq!(f["subject"], "id2label");
    assert!(f["message"].as_str().unwrap().contains("classifier.out_proj.weight"));
}

#[test]
fn a_model_type_the_tensors_contradict_is_served_as_the_tensors_say() {
    let dir = copy("roberta-mlm-tiny");
    edit_config(dir.path(), |c| {
        c.insert("model_type".into(), json!("bert"));
    });
    let (status, report) = validate(dir.path());
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(report["architecture"], "roberta, unpadded");
    assert_eq!(
        finding(&report, "model-type-contradicts-weights")["subject"],
        "model_type"
    );
}
