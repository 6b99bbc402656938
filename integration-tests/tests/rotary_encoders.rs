//! NomicBERT, GTE and jina's XLM-RoBERTa layout through the real binary, in both layouts each exists in (the remote code's
//! config keys and transformers' native ones): recognised with evidence, served as their
//! references compute them (prompts and Matryoshka truncation included), and refused by key
//! where serving them would give other vectors.

use std::path::Path;

use serde_json::{json, Value};
use tessera_integration_tests::reference::{self, copy, edit_config, finding, golden, validate, vectors};
use tessera_integration_tests::{assert_parity, Safetensors, Server};

fn assert_serves_golden(server: &Server, golden: &Value, what: &str) {
    let want = vectors(&golden["embeddings"]);
    let got = server.embed(&golden["texts"]);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_parity(g, w, &format!("{what} /embed {i}"));
    }
}

#[test]
fn validate_model_states_each_layout_and_its_evidence() {
    for (model, architecture, evidence, pooling) in [
        (
            "nomic-tiny",
            "nomic-bert (original config, rotary on 16 of 16 dims, base 1000, dynamic NTK x2 beyond 128 tokens)",
            &["encoder.layers.0.attn.Wqkv.weight", "n_embd", "rotary_scaling_factor"][..],
            "mean",
        ),
        (
            "nomic-native",
            "nomic-bert (native config, rotary on 20 of 20 dims, base 1000, dynamic NTK x3 beyond 100 tokens)",
            &["encoder.layers.0.mlp.fc11.weight", "hidden_size", "rope_parameters"][..],
            "mean",
        ),
        (
            "nomic-moe-tiny",
            "nomic-bert (original config, rotary on 8 of 8 dims, base 10000, top 2 of 4 experts on layers 1, 3...)",
            &["encoder.layers.1.mlp.router.layer.weight", "num_experts", "n_embd"][..],
            "mean",
        ),
        (
            "gte-original-ntk",
            "gte (original config, rotary base 500000)",
            &[
                "encoder.layer.0.attention.qkv_proj.weight",
                "rope_scaling",
                "rope_theta",
            ][..],
            "cls",
        ),
        (
            "gte-original-mixed-separate",
            "gte (original config, rotary base 10000)",
            &["encoder.layer.0.attention.q_proj.weight", "rope_scaling"][..],
            "cls",
        ),
        (
            "gte-native-tiny",
            "gte (native config, rotary base 160000)",
            &[
                "encoder.layer.0.attention.qkv_proj.weight",
                "rope_parameters.rope_theta",
            ][..],
            "cls",
        ),
    ] {
        let (status, report) = validate(&reference::model(model));
        assert_eq!(status, Some(0), "{model}: {report:#}");
        assert_eq!(report["architecture"], format!("{architecture}, unpadded"), "{model}");
        assert_eq!(report["pooling"]["mode"], pooling, "{model}");
        let subjects = reference::evidence_subjects(&report);
        for e in evidence.iter().chain(&["model_type"]) {
            assert!(subjects.contains(e), "{model}: {e} not in {subjects:?}");
        }
        let findings = report["findings"].as_array().unwrap();
        assert!(findings.iter().all(|f| f["severity"] == "info"), "{model}: {report:#}");
    }
    // The remote code's runtime switches are named as ignored.
    let (_, report) = validate(&reference::model("gte-original-ntk"));
    assert_eq!(finding(&report, "gte-runtime-option-ignored")["severity"], "info");
}

#[test]
fn nomic_serves_its_vectors_prompts_and_matryoshka_sizes() {
    let model = "nomic-tiny";
    let golden = golden(model);
    let server = Server::start(&reference::model(model), &["--max-client-batch-size", "64"]);
    assert_serves_golden(&server, &golden, model);
    let prompted = &golden["prompted"]["search_query"];
    assert_eq!(prompted["prompt"], "search_query: ");
    let want = vectors(&prompted["embeddings"]);
    let texts: Vec<Value> = golden["texts"].as_array().unwrap()[..want.len()].to_vec();
    let response = server.post("/embed", &json!({"inputs": texts, "prompt_name": "search_query"}));
    assert_eq!(response.status(), 200);
    let got: Vec<Vec<f32>> = response.json().unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_parity(g, w, &format!("{model} prompt_name=search_query {i}"));
    }
    // Matryoshka: the first `dimensions` components, normalized again.
    let full = vectors(&golden["embeddings"]);
    let response = server.post(
        "/v1/embeddings",
        &json!({"input": golden["texts"][5], "model": "nomic", "dimensions": 16}),
    );
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    let got: Vec<f32> = serde_json::from_value(body["data"][0]["embedding"].clone()).unwrap();
    let mut want = full[5][..16].to_vec();
    let norm = want.iter().map(|x| x * x).sum::<f32>().sqrt();
    want.iter_mut().for_each(|x| *x /= norm);
    assert_parity(&got, &want, "nomic dimensions 16");
}

#[test]
fn every_layout_serves_its_reference_vectors() {
    for model in [
        "nomic-partial-biased",
        "nomic-native",
        "nomic-moe-tiny",
        "gte-original-ntk",
        "gte-original-mixed-separate",
        "gte-native-no-token-types",
    ] {
        let server = Server::start(&reference::model(model), &["--max-client-batch-size", "64"]);
        assert_serves_golden(&server, &golden(model), model);
    }
    // GTE saved from `NewForMaskedLM`: every tensor under `new.`, the masked-LM head beside it.
    let dir = copy("gte-original-ntk");
    let path = dir.path().join("model.safetensors");
    let mut weights = Safetensors::read(&path);
    weights.header = std::mem::take(&mut weights.header)
        .into_iter()
        .map(|(name, info)| (format!("new.{name}"), info))
        .collect();
    weights.push("lm_head.dense.weight", &[48, 48], &[0.0; 48 * 48]);
    weights.write(&path);
    let (status, report) = validate(dir.path());
    assert_eq!(status, Some(0), "{report:#}");
    let server = Server::start(dir.path(), &["--max-client-batch-size", "64"]);
    assert_serves_golden(&server, &golden("gte-original-ntk"), "gte under new.");
    drop(server);

    // Native GTE without `rope_parameters`: the class's default base, 160000.
    let dir = copy("gte-native-tiny");
    edit_config(dir.path(), |c| {
        c.remove("rope_parameters");
    });
    let (status, report) = validate(dir.path());
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(
        report["architecture"],
        "gte (native config, rotary base 160000), unpadded"
    );
    let server = Server::start(dir.path(), &["--max-client-batch-size", "64"]);
    assert_serves_golden(&server, &golden("gte-native-tiny"), "gte-native-tiny, default base");
}

#[test]
fn what_would_serve_other_vectors_is_refused_by_key() {
    type Edit = Box<dyn Fn(&Path)>;
    let set = |key: &'static str, value: Value| -> Edit {
        Box::new(move |d| {
            edit_config(d, |c| {
                c.insert(key.into(), value.clone());
            })
        })
    };
    let cases: Vec<(&str, Edit, &str, &str)> = vec![
        (
            "nomic-tiny",
            set("rotary_emb_interleaved", json!(true)),
            "nomic-option-unsupported",
            "rotary_emb_interleaved",
        ),
        (
            "nomic-tiny",
            set("prenorm", json!(true)),
            "nomic-option-unsupported",
            "prenorm",
        ),
        (
            "nomic-tiny",
            set("rotary_emb_scale_base", json!(512)),
            "nomic-option-unsupported",
            "rotary_emb_scale_base",
        ),
        (
            "nomic-tiny",
            set("activation_function", json!("gelu")),
            "feed-forward-contradicts-config",
            "activation_function",
        ),
        (
            "nomic-tiny",
            set("rotary_emb_fraction", json!(0.3)),
            "nomic-option-unsupported",
            "rotary_emb_fraction",
        ),
        (
            "nomic-moe-tiny",
            set("moe_normalize_expert_weights", json!(2.0)),
            "nomic-option-unsupported",
            "moe_normalize_expert_weights",
        ),
        (
            "nomic-moe-tiny",
            set("num_shared_experts", json!(1)),
            "nomic-option-unsupported",
            "num_shared_experts",
        ),
        (
            "nomic-moe-tiny",
            set("expert_choice_router", json!(true)),
            "nomic-option-unsupported",
            "expert_choice_router",
        ),
        (
            "nomic-moe-tiny",
            set("ffn_div", json!(2)),
            "nomic-option-unsupported",
            "ffn_div",
        ),
        (
            // Gated feed-forward tensors (nomic-tiny's SwiGLU) with experts configured.
            "nomic-tiny",
            Box::new(|d| {
                edit_config(d, |c| {
                    c.insert("num_experts".into(), json!(4));
                    c.insert("moe_every_n_layers".into(), json!(2));
                    c.insert("moe_top_k".into(), json!(2));
                })
            }),
            "nomic-option-unsupported",
            "activation_function",
        ),
        (
            "nomic-moe-tiny",
            set("moe_top_k", json!(5)),
            "nomic-option-unsupported",
            "moe_top_k",
        ),
        (
            "nomic-moe-tiny",
            set("moe_impl", json!("contrastors")),
            "nomic-option-unsupported",
            "moe_impl",
        ),
        (
            "nomic-moe-tiny",
            set("num_experts", json!(0)),
            "experts-unstated",
            "num_experts",
        ),
        (
            "nomic-moe-tiny",
            Box::new(|d| {
                edit_config(d, |c| {
                    c.remove("moe_every_n_layers");
                })
            }),
            "experts-unstated",
            "moe_every_n_layers",
        ),
        (
            "nomic-native",
            set(
                "rope_parameters",
                json!({"rope_type": "yarn", "factor": 2.0, "rope_theta": 1000.0}),
            ),
            "rope-scaling-unsupported",
            "rope_parameters",
        ),
        (
            "gte-original-ntk",
            set("logn_attention_scale", json!(true)),
            "gte-option-unsupported",
            "logn_attention_scale",
        ),
        (
            "gte-original-ntk",
            set("layer_norm_type", json!("rms_norm")),
            "gte-option-unsupported",
            "layer_norm_type",
        ),
        (
            "gte-original-ntk",
            set("rope_scaling", json!({"type": "yarn", "factor": 2.0})),
            "rope-scaling-unsupported",
            "rope_scaling",
        ),
        (
            "gte-original-ntk",
            set("position_embedding_type", json!("alibi")),
            "gte-option-unsupported",
            "position_embedding_type",
        ),
        (
            "jina-v3-tiny",
            set("position_embedding_type", json!("absolute")),
            "jina-v3-option-unsupported",
            "position_embedding_type",
        ),
        (
            "jina-v3-tiny",
            set("rotary_emb_dim", json!(15)),
            "jina-v3-option-unsupported",
            "rotary_emb_dim",
        ),
        (
            "jina-reranker-v2-tiny",
            set("position_embedding_type", json!("alibi")),
            "jina-v3-option-unsupported",
            "position_embedding_type",
        ),
    ];
    for (model, edit, code, subject) in cases {
        reference::assert_refused(model, edit, code, subject);
    }
}

/// jina-embeddings-v3 through the binary: recognised as what its tensors say despite
/// `model_type: xlm-roberta`; each task chosen by `task`, by a `prompt_name` that names it, or
/// by `--default-prompt-name`, with its instruction and adapter, as the remote code computes it;
/// requests for different tasks batched together; an unknown task refused.
#[test]
fn jina_v3_serves_each_task_as_its_remote_code() {
    let model = "jina-v3-tiny";
    let golden = golden(model);
    let (status, report) = validate(&reference::model(model));
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(
        report["architecture"],
        "jina-v3 (original config, rotary base 20000, 5 task adapters of rank 4), unpadded"
    );
    let subjects = reference::evidence_subjects(&report);
    for e in [
        "roberta.embeddings.word_embeddings.parametrizations.weight.0.lora_A",
        "lora_adaptations",
        "model_type",
        "rotary_emb_base",
        "matryoshka_dimensions",
    ] {
        assert!(subjects.contains(&e), "{e} not in {subjects:?}");
    }

    let server = Server::start(&reference::model(model), &["--max-client-batch-size", "64"]);
    assert_serves_golden(&server, &golden, "jina-v3 without a task");
    let texts: Vec<Value> = golden["texts"].as_array().unwrap()[..12].to_vec();
    let task_vectors = |task: &str| vectors(&golden["tasks"][task]["embeddings"]);
    let check = |got: Vec<Vec<f32>>, task: &str, how: &str| {
        for (i, (g, w)) in got.iter().zip(&task_vectors(task)).enumerate() {
            assert_parity(g, w, &format!("{task} by {how}, text {i}"));
        }
    };
    let embed = |body: Value| -> Vec<Vec<f32>> {
        let response = server.post("/embed", &body);
        assert_eq!(response.status(), 200, "{body}");
        response.json().unwrap()
    };
    check(
        embed(json!({"inputs": texts, "task": "retrieval.query"})),
        "retrieval.query",
        "task",
    );
    check(
        embed(json!({"inputs": texts, "prompt_name": "retrieval.passage"})),
        "retrieval.passage",
        "prompt_name",
    );
    // OpenAI's route refuses the empty text (the ninth): the ones before it.
    let response = server.post(
        "/v1/embeddings",
        &json!({"input": texts[..8], "model": "jina", "task": "text-matching"}),
    );
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    let got: Vec<Vec<f32>> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| serde_json::from_value(d["embedding"].clone()).unwrap())
        .collect();
    check(got, "text-matching", "/v1/embeddings task");

    // Clients asking for different tasks at once: the batcher mixes them in one batch.
    std::thread::scope(|s| {
        let handles: Vec<_> = ["retrieval.query", "separation", "classification", "retrieval.passage"]
            .into_iter()
            .map(|task| {
                let texts = texts.clone();
                let server = &server;
                s.spawn(move || {
                    for _ in 0..3 {
                        let response = server.post("/embed", &json!({"inputs": texts, "task": task}));
                        assert_eq!(response.status(), 200);
                        let got: Vec<Vec<f32>> = response.json().unwrap();
                        for (i, (g, w)) in got.iter().zip(&task_vectors(task)).enumerate() {
                            assert_parity(g, w, &format!("{task} concurrently, text {i}"));
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });

    let response = server.post("/embed", &json!({"inputs": "x", "task": "summarization"}));
    assert_eq!(response.status(), 422);
    let body: Value = response.json().unwrap();
    assert_eq!(body["code"], "task-unknown", "{body}");
    assert!(body["error"].as_str().unwrap().contains("retrieval.query"), "{body}");
    drop(server);

    let server = Server::start(&reference::model(model), &["--default-prompt-name", "separation"]);
    check(
        server.embed(&Value::Array(texts.clone())),
        "separation",
        "--default-prompt-name",
    );
    drop(server);

    // A model without adapters refuses `task` by name.
    let server = Server::start(&reference::model("nomic-tiny"), &[]);
    let response = server.post("/embed", &json!({"inputs": "x", "task": "retrieval.query"}));
    assert_eq!(response.status(), 422);
    let body: Value = response.json().unwrap();
    assert!(body["error"].as_str().unwrap().contains("no task adapters"), "{body}");
}

#[test]
fn jina_v3_native_serves_transformers_vectors() {
    let model = "jina-v3-native";
    let (status, report) = validate(&reference::model(model));
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(
        report["architecture"],
        "jina-v3 (native config, rotary base 20000, no task adapters), unpadded"
    );
    let server = Server::start(&reference::model(model), &["--max-client-batch-size", "64"]);
    assert_serves_golden(&server, &golden(model), model);
}

/// jina-reranker-v2 (jina's remote code with XLM-RoBERTa's position table): served as its remote
/// code scores pairs; `position_embedding_type` decides as in that code, and without the key the
/// table decides (the code's two versions default it differently).
#[test]
fn jina_reranker_v2_follows_its_position_table() {
    let model = "jina-reranker-v2-tiny";
    let absolute = "jina-v3 (original config, absolute positions, no task adapters), unpadded";
    let (status, report) = validate(&reference::model(model));
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(report["architecture"], absolute);
    let subjects = reference::evidence_subjects(&report);
    for e in ["position_embedding_type", "pad_token_id"] {
        assert!(subjects.contains(&e), "{e} not in {subjects:?}");
    }
    let server = Server::start(&reference::model(model), &[]);
    reference::assert_raw_rerank_matches(&server, &golden(model));
    drop(server);

    // Neither the key nor the length: the table says both.
    let dir = copy(model);
    edit_config(dir.path(), |c| {
        c.remove("position_embedding_type");
        c.remove("max_position_embeddings");
    });
    let (status, report) = validate(dir.path());
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(report["architecture"], absolute);
    let table = "roberta.embeddings.position_embeddings.weight";
    assert!(reference::evidence_subjects(&report).contains(&table), "{report:#}");
    assert_eq!(report["max_input_length"], 512, "514 rows after the padding row");
    let server = Server::start(dir.path(), &[]);
    reference::assert_raw_rerank_matches(&server, &golden(model));
    drop(server);

    // `rotary`: the remote code builds no table, so neither does tessera, and says so.
    let dir = copy(model);
    edit_config(dir.path(), |c| {
        c.insert("position_embedding_type".into(), json!("rotary"));
    });
    let (status, report) = validate(dir.path());
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(
        report["architecture"],
        "jina-v3 (original config, rotary base 10000, no task adapters), unpadded"
    );
    assert_eq!(finding(&report, "position-table-unused")["subject"], table);
}
