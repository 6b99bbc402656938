//! ModernBERT and the decoders (Qwen3, Qwen2, Mistral, Llama) through the real binary: recognised
//! with evidence, served as sentence-transformers computes them (Qwen3's instruction prompt
//! included), in both config layouts hub checkpoints carry, and refused by name where serving
//! them would give other vectors.

use std::path::Path;

use serde_json::{json, Value};
use tessera_integration_tests::reference::{self, copy, edit_config, finding, golden, validate};
use tessera_integration_tests::{assert_parity, Safetensors, Server};

/// `/embed` of the golden's texts (or its first `n`) against its vectors.
fn assert_serves_golden(server: &Server, golden: &Value, what: &str) {
    let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings"].clone()).unwrap();
    let got = server.embed(&golden["texts"]);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_parity(g, w, &format!("{what} /embed {i}"));
    }
}

/// `/embed` with `prompt_name: query` of the golden's first texts against sentence-transformers'
/// vectors with that prompt; returns those texts.
fn assert_serves_query_prompt(server: &Server, golden: &Value, model: &str) -> Vec<Value> {
    let prompted = &golden["prompted"]["query"];
    let want: Vec<Vec<f32>> = serde_json::from_value(prompted["embeddings"].clone()).unwrap();
    let texts: Vec<Value> = golden["texts"].as_array().unwrap()[..want.len()].to_vec();
    let response = server.post("/embed", &json!({"inputs": texts, "prompt_name": "query"}));
    assert_eq!(response.status(), 200);
    let got: Vec<Vec<f32>> = response.json().unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_parity(g, w, &format!("{model} /embed prompt_name=query {i}"));
    }
    texts
}

#[test]
fn validate_model_states_each_family_and_its_evidence() {
    for (model, architecture, evidence, pooling) in [
        (
            "modernbert-tiny",
            "modernbert (2 global of 4 layers, local windows of 16 tokens)",
            "layers.0.attn.Wqkv.weight",
            "mean",
        ),
        (
            "modernbert-biased-mlm",
            "modernbert (2 global of 3 layers, local windows of 8 tokens)",
            "rope_parameters.sliding_attention.rope_theta",
            "cls",
        ),
        (
            "qwen3-tiny",
            "qwen3 (4 query heads on 2 key/value heads of 24, causal)",
            "layers.0.self_attn.q_norm.weight",
            "lasttoken",
        ),
        (
            "qwen3-causal-lm-mqa",
            "qwen3 (3 query heads on 1 key/value heads of 16, causal)",
            "model.layers.0.self_attn.q_norm.weight",
            "lasttoken",
        ),
        (
            "qwen2-tiny",
            "qwen2 (4 query heads on 2 key/value heads of 12, causal)",
            "layers.0.self_attn.q_proj.bias",
            "lasttoken",
        ),
        (
            "qwen2-bidirectional-lm",
            "qwen2 (3 query heads on 1 key/value heads of 16, bidirectional)",
            "is_causal",
            "lasttoken",
        ),
        (
            "mistral-window",
            "mistral (4 query heads on 1 key/value heads of 16, causal within 20 tokens)",
            "sliding_window",
            "lasttoken",
        ),
        (
            "llama-biased-lm",
            "llama (3 query heads on 3 key/value heads of 24, causal)",
            "model.layers.0.self_attn.o_proj.bias",
            "mean",
        ),
        (
            "embedding-gemma-tiny",
            "gemma3_text (4 query heads on 2 key/value heads of 16, bidirectional, 1 full of 4 layers, the others 12 tokens each side)",
            "layers.0.pre_feedforward_layernorm.weight",
            "mean",
        ),
        (
            "eurobert-mlm",
            "eurobert (4 query heads on 2 key/value heads of 12, bidirectional)",
            "model_type",
            "mean",
        ),
        (
            "gemma2-tiny",
            "gemma2 (4 query heads on 2 key/value heads of 16, causal, 2 full of 4 layers, the others the last 20 tokens, scores capped at 3)",
            "attn_logit_softcapping",
            "lasttoken",
        ),
    ] {
        let (status, report) = validate(&reference::model(model));
        assert_eq!(status, Some(0), "{model}: {report:#}");
        assert_eq!(report["architecture"], format!("{architecture}, unpadded"), "{model}");
        assert_eq!(report["pooling"]["mode"], pooling, "{model}");
        let subjects = reference::evidence_subjects(&report);
        assert!(subjects.contains(&evidence), "{model}: {subjects:?}");
        assert!(subjects.contains(&"model_type"), "{model}: {subjects:?}");
        let findings = report["findings"].as_array().unwrap();
        assert!(findings.iter().all(|f| f["severity"] == "info"), "{model}: {report:#}");
    }
}

#[test]
fn qwen3_serves_last_token_vectors_and_its_instruction_prompt_as_sentence_transformers() {
    let model = "qwen3-tiny";
    let golden = golden(model);
    let server = Server::start(&reference::model(model), &["--max-client-batch-size", "64"]);
    assert_serves_golden(&server, &golden, model);
    let texts = assert_serves_query_prompt(&server, &golden, model);
    let want: Vec<Vec<f32>> = serde_json::from_value(golden["prompted"]["query"]["embeddings"].clone()).unwrap();
    // The same through --default-prompt-name, without naming it in the request.
    drop(server);
    let server = Server::start(&reference::model(model), &["--default-prompt-name", "query"]);
    let got = server.embed(&Value::Array(texts));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_parity(g, w, &format!("{model} --default-prompt-name query {i}"));
    }
}

/// Through the binary, Mistral's window over texts far past it (the flash backend's parity test
/// checks every decoder fixture; this adds the HTTP path, tokenizer and pooling config).
/// EmbeddingGemma's whole sentence-transformers pipeline through the binary: the backbone, mean
/// pooling, two Dense layers, Normalize, and its query prompt by name.
#[test]
fn embedding_gemma_serves_sentence_transformers_vectors_and_its_prompts() {
    let model = "embedding-gemma-tiny";
    let golden = golden(model);
    let server = Server::start(&reference::model(model), &["--max-client-batch-size", "64"]);
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(info["model_type"]["embedding"]["pooling"], "mean", "{info:#}");
    assert_serves_golden(&server, &golden, model);
    assert_serves_query_prompt(&server, &golden, model);
}

/// bge-multilingual-gemma2's shape through the binary: soft-capped scores in every layer,
/// windows on every other one, last-token pooling of the `<eos>` its tokenizer appends.
#[test]
fn gemma2_serves_sentence_transformers_vectors() {
    let model = "gemma2-tiny";
    let server = Server::start(&reference::model(model), &["--max-client-batch-size", "64"]);
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(info["model_type"]["embedding"]["pooling"], "lasttoken", "{info:#}");
    assert_serves_golden(&server, &golden(model), model);
}

/// The decoder backends decide between themselves from the attention tensors, whatever
/// `model_type` says: per-head norms are Qwen3's, Q/K/V biases without an output bias Qwen2's,
/// neither Llama's; the backend named with `--backend` for another one says which serves it.
#[test]
fn the_decoders_are_told_apart_by_their_attention_tensors() {
    let stripped = copy("qwen3-tiny");
    let path = stripped.path().join("model.safetensors");
    let mut weights = Safetensors::read(&path);
    weights.header.retain(|name, _| !name.contains("_norm."));
    weights.write(&path);
    let (status, report) = validate(stripped.path());
    assert_eq!(status, Some(0), "{report:#}");
    assert!(
        report["architecture"].as_str().unwrap().starts_with("llama ("),
        "{report:#}"
    );
    assert_eq!(
        finding(&report, "model-type-contradicts-weights")["subject"],
        "model_type"
    );

    let dir = reference::model("qwen2-tiny");
    let out =
        tessera_integration_tests::run(&["validate-model", dir.to_str().unwrap(), "--json", "--backend", "qwen3"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(out.status.code(), Some(0), "{report:#}");
    let f = finding(&report, "family-is-another");
    assert_eq!(f["subject"], "layers.0.self_attn.q_proj.bias", "{f:#}");
    assert!(f["fix"].as_str().unwrap().contains("`qwen2`"), "{f:#}");
}

/// pplx-embed's shape: a Qwen3 whose own code (named in `auto_map`) attends both ways, as
/// `use_bidirectional_attention` says, and returns mean-pooled vectors as int8 values,
/// `round(127 * tanh(x))`: `/embed` gives them with `normalize: false` and normalized by default.
#[test]
fn pplx_embed_serves_bidirectional_int8_vectors() {
    let model = "pplx-tiny";
    let golden = golden(model);
    let (status, report) = validate(&reference::model(model));
    assert_eq!(status, Some(0), "{report:#}");
    assert!(
        report["architecture"].as_str().unwrap().contains("bidirectional"),
        "{report:#}"
    );
    assert_eq!(finding(&report, "embeddings-int8-quantized")["severity"], "info");
    let findings = report["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| f["severity"] == "info"), "{report:#}");

    let server = Server::start(&reference::model(model), &["--max-client-batch-size", "64"]);
    let raw: Vec<Vec<f64>> = server
        .post("/embed", &json!({ "inputs": golden["texts"], "normalize": false }))
        .json()
        .unwrap();
    let before: Vec<Vec<f64>> = serde_json::from_value(golden["int8_before_rounding"].clone()).unwrap();
    for (i, (got, want)) in raw.iter().zip(&before).enumerate() {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            // A value within rounding noise of a tie may round either way.
            let tie = (w.fract().abs() - 0.5).abs() < 1e-3;
            assert!(
                *g == w.round() || (tie && (g - w).abs() <= 0.5 + 1e-3),
                "text {i}: {g} vs {w}"
            );
        }
    }
    // Normalized by default: the int8 values over their norm (compared with the values served,
    // so that a tie rounded the other way is not counted twice).
    let normalized = server.embed(&golden["texts"]);
    for (i, (got, raw)) in normalized.iter().zip(&raw).enumerate() {
        let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
        let want: Vec<f32> = raw.iter().map(|x| (x / norm) as f32).collect();
        assert_parity(got, &want, &format!("{model} /embed {i}"));
    }
}

/// Older Llama/Mistral checkpoints carry each layer's rotary frequencies as a buffer
/// (`self_attn.rotary_emb.inv_freq`): recomputed, so neither a foreign layer tensor nor unused.
#[test]
fn rotary_frequency_buffers_of_older_decoders_are_ignored() {
    let dir = copy("llama-biased-lm");
    let path = dir.path().join("model.safetensors");
    let mut weights = Safetensors::read(&path);
    for layer in 0..2 {
        weights.push(
            &format!("model.layers.{layer}.self_attn.rotary_emb.inv_freq"),
            &[12],
            &[0.5; 12],
        );
    }
    weights.write(&path);
    let (status, report) = validate(dir.path());
    assert_eq!(status, Some(0), "{report:#}");
    assert!(
        report["architecture"].as_str().unwrap().starts_with("llama ("),
        "{report:#}"
    );
    let findings = report["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| f["severity"] == "info"), "{report:#}");
}

/// Through the binary, texts far past the windows: ModernBERT's local layers and Mistral's causal
/// sliding window (the flash backend's parity test checks every decoder fixture; this adds the
/// HTTP path, tokenizer and pooling config).
#[test]
fn windowed_models_serve_sentence_transformers_vectors_past_their_windows() {
    for model in ["modernbert-tiny", "mistral-window"] {
        let server = Server::start(&reference::model(model), &["--max-client-batch-size", "64"]);
        assert_serves_golden(&server, &golden(model), model);
    }
}

#[test]
fn the_older_config_layouts_give_the_same_vectors() {
    // ModernBERT as hub checkpoints written before transformers 5 say it: global/local rope
    // bases and a global layer every n-th, no `layer_types` or `rope_parameters`.
    let modern = copy("modernbert-tiny");
    edit_config(modern.path(), |c| {
        c.remove("layer_types");
        c.remove("rope_parameters");
        c.insert("global_rope_theta".into(), json!(160000.0));
        c.insert("local_rope_theta".into(), json!(10000.0));
        c.insert("global_attn_every_n_layers".into(), json!(3));
    });
    // Qwen3 as Qwen3-Embedding's config says it: `rope_theta` and a null `rope_scaling`.
    let qwen = copy("qwen3-causal-lm-mqa");
    edit_config(qwen.path(), |c| {
        c.remove("rope_parameters");
        c.insert("rope_theta".into(), json!(1000000.0));
        c.insert("rope_scaling".into(), Value::Null);
    });
    for (dir, model) in [(modern, "modernbert-tiny"), (qwen, "qwen3-causal-lm-mqa")] {
        let (status, report) = validate(dir.path());
        assert_eq!(status, Some(0), "{model}: {report:#}");
        let server = Server::start(dir.path(), &["--max-client-batch-size", "64"]);
        assert_serves_golden(&server, &golden(model), &format!("{model}, older config"));
    }
}

#[test]
fn a_decoder_without_pooling_config_is_pooled_by_its_last_token_with_a_note() {
    let dir = copy("qwen3-tiny");
    std::fs::remove_dir_all(dir.path().join("1_Pooling")).unwrap();
    std::fs::remove_dir_all(dir.path().join("2_Normalize")).unwrap();
    std::fs::remove_file(dir.path().join("modules.json")).unwrap();
    let (status, report) = validate(dir.path());
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(report["pooling"]["mode"], "lasttoken");
    assert_eq!(finding(&report, "pooling-implied-by-architecture")["severity"], "info");
    let server = Server::start(dir.path(), &[]);
    let golden = golden("qwen3-tiny");
    let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings"].clone()).unwrap();
    let got = server.embed(&golden["texts"][0]);
    assert_parity(&got[0], &want[0], "last token without 1_Pooling");
    // An encoder is not guessed for: it still needs its pooling configured, EuroBERT too, though
    // its tensors are a decoder's.
    for model in ["modernbert-tiny", "eurobert-mlm"] {
        let encoder = copy(model);
        std::fs::remove_dir_all(encoder.path().join("1_Pooling")).unwrap();
        std::fs::remove_file(encoder.path().join("modules.json")).unwrap();
        let (status, report) = validate(encoder.path());
        assert_ne!(status, Some(0), "{model}");
        finding(&report, "pooling-not-configured");
    }
}

/// Gemma 3's class soft-caps scores too where its config sets `attn_logit_softcapping` (none by
/// default): served with the cap (the kernels' cap is checked against transformers through
/// gemma2-tiny), where it used to be refused.
#[test]
fn a_gemma3_with_a_soft_cap_is_served_with_it() {
    let dir = copy("embedding-gemma-tiny");
    edit_config(dir.path(), |c| {
        c.insert("attn_logit_softcapping".into(), json!(50.0));
    });
    let (status, report) = validate(dir.path());
    assert_eq!(status, Some(0), "{report:#}");
    assert!(
        report["architecture"]
            .as_str()
            .unwrap()
            .ends_with("scores capped at 50), unpadded"),
        "{report:#}"
    );
}

/// EuroBERT as its hub repositories first shipped it, with its own modeling code named in
/// `auto_map` and no `is_causal`: that code is bidirectional too, so it is served, not refused
/// as a decoder whose causality is unstated.
#[test]
fn eurobert_with_its_own_code_named_is_served_bidirectionally() {
    let dir = copy("eurobert-mlm");
    edit_config(dir.path(), |c| {
        c.insert(
            "auto_map".into(),
            json!({"AutoConfig": "configuration_eurobert.EuroBertConfig", "AutoModel": "modeling_eurobert.EuroBertModel"}),
        );
    });
    let (status, report) = validate(dir.path());
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(
        report["architecture"],
        "eurobert (4 query heads on 2 key/value heads of 12, bidirectional), unpadded"
    );
    let server = Server::start(dir.path(), &["--max-client-batch-size", "64"]);
    assert_serves_golden(&server, &golden("eurobert-mlm"), "eurobert with auto_map");
}

/// NVIDIA's bidirectional Llama as its checkpoints ship (`model_type: llama_bidirec`, its own
/// code named in `auto_map`, no `is_causal`, no sentence-transformers files): every layer
/// attends both ways and the config's `pooling` pools, so the embedder is served with mean
/// vectors (a note says where the pooling came from) and the reranker scores the mean over its
/// `temperature`; a `pooling` tessera cannot compute leaves the embedder's pooling unconfigured.
#[test]
fn nvidia_bidirectional_llama_embedders_and_rerankers_are_served_as_their_code_computes() {
    let model = "llama-bidirec-tiny";
    let (status, report) = validate(&reference::model(model));
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(
        report["architecture"],
        "llama_bidirec (4 query heads on 2 key/value heads of 12, bidirectional), unpadded"
    );
    assert_eq!(report["pooling"]["mode"], "mean");
    let note = finding(&report, "pooling-implied-by-architecture");
    assert!(
        note["message"]
            .as_str()
            .unwrap()
            .contains("NVIDIA's LlamaBidirectionalConfig: `pooling: avg`"),
        "{note:#}"
    );
    let findings = report["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| f["severity"] == "info"), "{report:#}");
    let server = Server::start(&reference::model(model), &["--max-client-batch-size", "64"]);
    assert_serves_golden(&server, &golden(model), model);
    drop(server);

    let model = "llama-bidirec-reranker-tiny";
    let server = Server::start(&reference::model(model), &[]);
    reference::assert_raw_rerank_matches(&server, &golden(model));
    drop(server);

    let dir = copy("llama-bidirec-tiny");
    edit_config(dir.path(), |c| {
        c.insert("pooling".into(), json!("weighted_avg"));
    });
    let (status, report) = validate(dir.path());
    assert_ne!(status, Some(0), "{report:#}");
    assert_eq!(
        finding(&report, "pooling-mode-unknown")["subject"],
        "pooling",
        "{report:#}"
    );
    finding(&report, "pooling-not-configured");
    let dir = copy("llama-bidirec-reranker-tiny");
    edit_config(dir.path(), |c| {
        c.insert("temperature".into(), json!(0));
    });
    let (status, report) = validate(dir.path());
    assert_ne!(status, Some(0), "{report:#}");
    assert_eq!(
        finding(&report, "config-value-invalid")["subject"],
        "temperature",
        "{report:#}"
    );
}

#[test]
fn what_would_serve_other_vectors_is_refused_by_key_or_tensor() {
    type Edit = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Edit, &str, &str)> = vec![
        (
            "qwen3-tiny",
            Box::new(|d| {
                edit_config(d, |c| {
                    c.insert("rope_scaling".into(), json!({"rope_type": "yarn", "factor": 4.0}));
                })
            }),
            "rope-scaling-unsupported",
            "rope_scaling",
        ),
        (
            "qwen3-tiny",
            // Modeling code of its own, which may attend either way, and no `is_causal`.
            Box::new(|d| {
                edit_config(d, |c| {
                    c.insert("auto_map".into(), json!({"AutoModel": "modeling_qwen.Qwen2Model"}));
                })
            }),
            "decoder-causality-unstated",
            "is_causal",
        ),
        (
            "mistral-window",
            Box::new(|d| {
                edit_config(d, |c| {
                    c.insert("is_causal".into(), json!(false));
                })
            }),
            "decoder-attention-unsupported",
            "sliding_window",
        ),
        (
            // Gemma 2's norm after the feed-forward on Llama-named projections without per-head
            // norms: not served as Llama with the norm left out.
            "llama-biased-lm",
            Box::new(|d| {
                let path = d.join("model.safetensors");
                let mut weights = Safetensors::read(&path);
                weights.push("model.layers.0.post_feedforward_layernorm.weight", &[48], &[1.0; 48]);
                weights.write(&path);
            }),
            "decoder-unsupported",
            "model.layers.0.post_feedforward_layernorm.weight",
        ),
        (
            // Gemma 1 (bge-reranker-v2-gemma) names its layers as Llama does, but offsets its
            // norms from 1 and scales its word vectors: not served as Llama.
            "llama-biased-lm",
            Box::new(|d| {
                edit_config(d, |c| {
                    c.insert("model_type".into(), json!("gemma"));
                })
            }),
            "model-type-unsupported",
            "model_type",
        ),
        (
            // transformers' Gemma2Model masks causally whatever the key says.
            "gemma2-tiny",
            Box::new(|d| {
                edit_config(d, |c| {
                    c.insert("use_bidirectional_attention".into(), json!(true));
                })
            }),
            "decoder-attention-unsupported",
            "use_bidirectional_attention",
        ),
        (
            "gemma2-tiny",
            Box::new(|d| {
                edit_config(d, |c| {
                    c.insert("attn_logit_softcapping".into(), json!(0));
                })
            }),
            "config-value-invalid",
            "attn_logit_softcapping",
        ),
        (
            "qwen3-tiny",
            Box::new(|d| {
                edit_config(d, |c| {
                    c.insert("use_sliding_window".into(), json!(true));
                })
            }),
            "decoder-attention-unsupported",
            "use_sliding_window",
        ),
        (
            "qwen3-tiny",
            Box::new(|d| {
                edit_config(d, |c| {
                    c.insert("num_key_value_heads".into(), json!(3));
                })
            }),
            "kv-heads-not-dividing-heads",
            "num_key_value_heads",
        ),
        (
            "qwen3-tiny",
            Box::new(|d| {
                edit_config(d, |c| {
                    c.insert("head_dim".into(), json!(16));
                })
            }),
            "tensor-shape-mismatch",
            "head_dim",
        ),
        (
            "modernbert-tiny",
            Box::new(|d| {
                edit_config(d, |c| {
                    c.insert("layer_types".into(), json!(["full_attention", "sliding_attention"]));
                })
            }),
            "layer-types-invalid",
            "layer_types",
        ),
        (
            "modernbert-tiny",
            Box::new(|d| {
                edit_config(d, |c| {
                    c.insert(
                        "rope_parameters".into(),
                        json!({"full_attention": {"rope_type": "yarn", "factor": 2.0, "rope_theta": 160000.0}}),
                    );
                })
            }),
            "rope-scaling-unsupported",
            "rope_parameters.full_attention",
        ),
    ];
    for (model, edit, code, subject) in cases {
        reference::assert_refused(model, edit, code, subject);
    }
}

#[test]
fn a_model_type_the_tensors_contradict_is_a_warning_and_the_tensors_decide() {
    for (model, wrong, family) in [
        ("qwen3-tiny", "qwen2", "qwen3"),
        ("modernbert-tiny", "bert", "modernbert"),
        ("nomic-tiny", "bert", "nomic-bert"),
        ("gte-original-ntk", "bert", "gte"),
    ] {
        let dir = copy(model);
        edit_config(dir.path(), |c| {
            c.insert("model_type".into(), json!(wrong));
        });
        let (status, report) = validate(dir.path());
        assert_eq!(status, Some(0), "{model}: {report:#}");
        assert!(
            report["architecture"].as_str().unwrap().starts_with(family),
            "{report:#}"
        );
        let f = finding(&report, "model-type-contradicts-weights");
        assert_eq!(f["severity"], "warning");
        assert_eq!(f["subject"], "model_type");
    }
}

#[test]
fn modernbert_rerankers_and_classifiers_score_as_transformers() {
    let model = "modernbert-reranker-tiny";
    let reranker = golden(model);
    let server = Server::start(&reference::model(model), &[]);
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(info["model_type"]["reranker"]["id2label"]["0"], "LABEL_0", "{info:#}");
    reference::assert_raw_rerank_matches(&server, &reranker);
    drop(server);

    let model = "modernbert-classifier-tiny";
    let classifier = golden(model);
    let server = Server::start(&reference::model(model), &[]);
    let texts: Vec<String> = serde_json::from_value(classifier["texts"].clone()).unwrap();
    let logits: Vec<Vec<f64>> = serde_json::from_value(classifier["logits"].clone()).unwrap();
    let got: Vec<Value> = server
        .post("/predict", &json!({ "inputs": texts[3], "raw_scores": true }))
        .json()
        .unwrap();
    let labels = ["negative", "neutral", "positive"];
    for prediction in &got {
        let i = labels.iter().position(|l| *l == prediction["label"]).unwrap();
        let want = logits[3][i];
        assert!(
            (prediction["score"].as_f64().unwrap() - want).abs() < 1e-4,
            "{prediction} vs {want}"
        );
    }
}

/// voyage-4-nano's shape: a bidirectional Qwen3 under `model.` whose own code projects every
/// token's output by the root `linear.weight` before mean pooling; served at the projection's
/// width, on both backends, with its prompts, and `/embed_all` returns the projected tokens.
#[test]
fn voyage_nano_projects_every_token_before_pooling() {
    let model = "voyage-tiny";
    let golden = golden(model);
    let (status, report) = validate(&reference::model(model));
    assert_eq!(status, Some(0), "{report:#}");
    assert!(
        reference::evidence_subjects(&report).contains(&"linear.weight"),
        "{report:#}"
    );
    assert!(report["findings"].as_array().unwrap().is_empty(), "{report:#}");
    for backend in [&[][..], &["--backend", "qwen3"][..]] {
        let args = [backend, &["--max-client-batch-size", "64"][..]].concat();
        let server = Server::start(&reference::model(model), &args);
        let info: Value = server.get("/info").json().unwrap();
        assert_eq!(info["embedding_dim"], 96, "{info}");
        assert_serves_golden(&server, &golden, "voyage");
        let raw: Vec<Vec<f32>> = server
            .post("/embed", &json!({"inputs": golden["texts"], "normalize": false}))
            .json()
            .unwrap();
        let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings_unnormalized"].clone()).unwrap();
        for (i, (g, w)) in raw.iter().zip(&want).enumerate() {
            assert_parity(g, w, &format!("voyage normalize: false {i}"));
        }
        let queries: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings_query_prompt"].clone()).unwrap();
        let texts = &golden["texts"].as_array().unwrap()[..queries.len()];
        let got: Vec<Vec<f32>> = server
            .post("/embed", &json!({"inputs": texts, "prompt_name": "query"}))
            .json()
            .unwrap();
        for (i, (g, w)) in got.iter().zip(&queries).enumerate() {
            assert_parity(g, w, &format!("voyage prompt_name=query {i}"));
        }
        let tokens: Vec<Vec<Vec<f32>>> = server
            .post("/embed_all", &json!({"inputs": golden["texts"][0]}))
            .json()
            .unwrap();
        let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings_projected_tokens"].clone()).unwrap();
        assert_eq!(tokens[0].len(), want.len());
        for (i, (g, w)) in tokens[0].iter().zip(&want).enumerate() {
            assert_parity(g, w, &format!("voyage /embed_all token {i}"));
        }
    }

    // A width config.json contradicts, or a projection of another width than the layers': refused
    // by key or tensor rather than served at a width nobody trained.
    let dir = copy(model);
    edit_config(dir.path(), |c| {
        c.insert("num_labels".into(), json!(97));
    });
    let (status, report) = validate(dir.path());
    assert_eq!(status, Some(1), "{report:#}");
    let mismatch = finding(&report, "tensor-shape-mismatch");
    assert_eq!(mismatch["subject"], "num_labels", "{mismatch}");
    assert!(mismatch["fix"].as_str().unwrap().contains("96"), "{mismatch}");
    let dir = copy(model);
    let weights = dir.path().join("model.safetensors");
    let mut st = Safetensors::read(&weights);
    st.push("linear.weight", &[96, 40], &vec![0.5; 96 * 40]);
    st.write(&weights);
    let (status, report) = validate(dir.path());
    assert_eq!(status, Some(1), "{report:#}");
    assert_eq!(
        finding(&report, "tensor-shape-mismatch")["subject"],
        "linear.weight",
        "{report:#}"
    );
}
