//! Models whose sentence-transformers pipeline gives texts through the chat template (the
//! `message` modality), through the real binary: a causal reranker's long pair cut with the
//! template's tail written back, an embedder's texts and prompts as messages, the modality read
//! from the saved config (or inferred without modules.json), and templates that would fail or
//! mis-score requests refused before serving.

use std::path::Path;

use serde_json::{json, Value};
use tessera_integration_tests::reference::{self, copy, edit_json, finding, golden, validate, vectors};
use tessera_integration_tests::{assert_parity, Server};

#[test]
fn a_causal_reranker_scores_a_truncated_pair_with_the_template_tail_restored() {
    let model = "qwen3-logit-reranker-tiny";
    let golden = golden(model);
    let pairs: Vec<(String, String)> = serde_json::from_value(golden["pairs"].clone()).unwrap();
    let logits: Vec<Vec<f64>> = serde_json::from_value(golden["pair_logits"].clone()).unwrap();
    let truncated: Vec<bool> = serde_json::from_value(golden["truncated"].clone()).unwrap();
    let long = truncated.iter().position(|&t| t).expect("a truncated pair");
    let (query, document) = &pairs[long];
    let server = Server::start(&reference::model(model), &[]);
    let body = json!({"query": query, "texts": [document], "raw_scores": true, "truncate": false});
    let refused = server.post("/rerank", &body);
    assert_eq!(refused.status(), 422, "{}", refused.text().unwrap());
    let mut body = body;
    body["truncate"] = json!(true);
    let ranks: Vec<Value> = server.post("/rerank", &body).json().unwrap();
    let score = ranks[0]["score"].as_f64().unwrap();
    assert!((score - logits[long][0]).abs() < 1e-4, "{score} vs {}", logits[long][0]);
}

/// Qwen3-Reranker's instruction as a prompt: `prompt_name` puts it before the pair as a `system`
/// message, as sentence-transformers' `CrossEncoder.rank(..., prompt_name=...)` does.
#[test]
fn a_causal_reranker_takes_its_instruction_as_a_named_prompt() {
    let model = "qwen3-logit-reranker-tiny";
    let golden = golden(model);
    let pairs: Vec<(String, String)> = serde_json::from_value(golden["pairs"].clone()).unwrap();
    let prompted = &golden["prompted_pair_logits"]["code"];
    let want: Vec<Vec<f64>> = serde_json::from_value(prompted["logits"].clone()).unwrap();
    let server = Server::start(&reference::model(model), &[]);
    for (i, (query, document)) in pairs.iter().enumerate().take(want.len()) {
        let body = json!({"query": query, "texts": [document], "raw_scores": true, "prompt_name": "code"});
        let ranks: Vec<Value> = server.post("/rerank", &body).json().unwrap();
        let score = ranks[0]["score"].as_f64().unwrap();
        assert!((score - want[i][0]).abs() < 1e-4, "pair {i}: {score} vs {}", want[i][0]);
    }
    let unknown = server.post(
        "/rerank",
        &json!({"query": "q", "texts": ["d"], "prompt_name": "no-such-prompt"}),
    );
    assert_eq!(unknown.status(), 422, "{}", unknown.text().unwrap());
}

/// Without a chat template, a CrossEncoder's prompt goes before the pair's first text; its
/// `default_prompt_name` applies when the request names none, an empty prompt when it names that.
#[test]
fn a_text_pair_reranker_puts_its_prompt_before_the_query() {
    let model = "xlm-roberta-prompted-reranker-tiny";
    let golden = golden(model);
    let pairs: Vec<(String, String)> = serde_json::from_value(golden["pairs"].clone()).unwrap();
    let server = Server::start(&reference::model(model), &[]);
    for (prompt_name, want) in [
        (Value::Null, &golden["pair_logits"]),
        (json!("none"), &golden["prompted_pair_logits"]["none"]["logits"]),
        (json!("query"), &golden["prompted_pair_logits"]["query"]["logits"]),
    ] {
        let want: Vec<Vec<f64>> = serde_json::from_value(want.clone()).unwrap();
        for (i, (query, text)) in pairs.iter().enumerate() {
            let body = json!({"query": query, "texts": [text], "raw_scores": true, "prompt_name": prompt_name});
            let ranks: Vec<Value> = server.post("/rerank", &body).json().unwrap();
            let score = ranks[0]["score"].as_f64().unwrap();
            assert!(
                (score - want[i][0]).abs() < 1e-4,
                "{prompt_name} pair {i}: {score} vs {}",
                want[i][0]
            );
        }
    }
}

#[test]
fn an_embedder_given_messages_embeds_texts_and_prompts_as_sentence_transformers() {
    let model = "qwen3-chat-embedder-tiny";
    let golden = golden(model);
    let texts = golden["texts"].clone();
    let check = |dir: &Path, what: &str| {
        let server = Server::start(dir, &["--max-client-batch-size", "64"]);
        let got: Vec<Vec<f32>> = server
            .post("/embed", &json!({"inputs": texts, "truncate": true}))
            .json()
            .unwrap();
        for (i, (g, w)) in got.iter().zip(&vectors(&golden["embeddings"])).enumerate() {
            assert_parity(g, w, &format!("{what} /embed {i}"));
        }
        let want = vectors(&golden["prompted"]["query"]["embeddings"]);
        let inputs: Vec<Value> = texts.as_array().unwrap()[..want.len()].to_vec();
        let got: Vec<Vec<f32>> = server
            .post(
                "/embed",
                &json!({"inputs": inputs, "prompt_name": "query", "truncate": true}),
            )
            .json()
            .unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_parity(g, w, &format!("{what} prompt_name=query {i}"));
        }
    };
    check(&reference::model(model), model);
    // Saved without modules.json (nor prompts): sentence-transformers 6 infers the message
    // modality from the tokenizer's template, and so does tessera.
    let dir = copy(model);
    for file in ["modules.json", "sentence_bert_config.json"] {
        std::fs::remove_file(dir.path().join(file)).unwrap();
    }
    let (status, report) = validate(dir.path());
    assert_eq!(status, Some(0), "{report:#}");
    let inferred = finding(&report, "inputs-chat-rendered");
    assert!(
        inferred["message"].as_str().unwrap().contains("without modules.json"),
        "{inferred:#}"
    );
    assert!(
        inferred["fix"].as_str().unwrap().contains("`modality_config`"),
        "{inferred:#}"
    );
    let server = Server::start(dir.path(), &["--max-client-batch-size", "64", "--auto-truncate"]);
    let got = server.embed(&texts);
    for (i, (g, w)) in got.iter().zip(&vectors(&golden["embeddings"])).enumerate() {
        assert_parity(g, w, &format!("{model} without modules.json /embed {i}"));
    }
}

/// `modality_config` without `message`: with modules.json (as sentence-transformers 6 saves a
/// text-only pipeline) and without it (the opt-out of the inferred modality), texts are given as
/// they are, so the vectors are not the rendered golden's.
#[test]
fn a_pipeline_saved_text_only_is_not_rendered() {
    let model = "qwen3-chat-embedder-tiny";
    let golden = golden(model);
    for without_modules in [false, true] {
        let dir = copy(model);
        edit_json(&dir.path().join("sentence_bert_config.json"), |c| {
            c["modality_config"].as_object_mut().unwrap().remove("message");
        });
        if without_modules {
            std::fs::remove_file(dir.path().join("modules.json")).unwrap();
        }
        let (status, report) = validate(dir.path());
        assert_eq!(status, Some(0), "{report:#}");
        let codes: Vec<&str> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["code"].as_str())
            .collect();
        assert!(!codes.contains(&"inputs-chat-rendered"), "{codes:?}");
        let server = Server::start(dir.path(), &[]);
        let got = server.embed(&golden["texts"][0]);
        let want = vectors(&golden["embeddings"]);
        let cosine: f32 = got[0].iter().zip(&want[0]).map(|(a, b)| a * b).sum();
        assert!(
            cosine < 0.99,
            "without_modules {without_modules}: the text was rendered ({cosine})"
        );
    }
}

#[test]
fn templates_that_would_fail_or_drop_a_half_of_the_pair_are_refused() {
    type Edit = Box<dyn Fn(&Path)>;
    let template = |text: &'static str| -> Edit {
        Box::new(move |d: &Path| std::fs::write(d.join("chat_template.jinja"), text).unwrap())
    };
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "qwen3-logit-reranker-tiny",
            template("{% for m in messages %}{% if m.role == 'query' %}{{ m.content }}{% endif %}{% endfor %}"),
            "chat-template-drops-pair",
        ),
        (
            "qwen3-logit-reranker-tiny",
            template("{{ raise_exception('only user and assistant roles are supported') }}"),
            "chat-template-drops-pair",
        ),
        (
            "qwen3-chat-embedder-tiny",
            template("{% for m in messages %}"),
            "chat-template-invalid",
        ),
        (
            "qwen3-chat-embedder-tiny",
            template("{{ strftime_now('%d %b %Y') }}{{ messages[0].content }}"),
            "chat-template-invalid",
        ),
        (
            "qwen3-chat-embedder-tiny",
            Box::new(|d: &Path| std::fs::remove_file(d.join("chat_template.jinja")).unwrap()),
            "chat-template-invalid",
        ),
    ];
    for (model, edit, code) in cases {
        let dir = copy(model);
        edit(dir.path());
        let (status, report) = validate(dir.path());
        assert_ne!(status, Some(0), "{model} {code}: {report:#}");
        let f = finding(&report, code);
        assert_eq!(f["severity"], "error", "{f:#}");
        assert!(f["fix"].as_str().is_some_and(|s| !s.is_empty()), "{f:#}");
    }
}

#[test]
fn a_logit_score_module_naming_no_token_of_the_model_is_refused() {
    for (edit, code, subject) in [
        (
            json!({"true_token_id": 99_999, "false_token_id": 3}),
            "logit-score-token-invalid",
            "true_token_id",
        ),
        (json!({"false_token_id": 3}), "st-file-invalid", "true_token_id"),
        (
            json!({"true_token_id": 3, "false_token_id": "no"}),
            "st-file-invalid",
            "false_token_id",
        ),
    ] {
        let dir = copy("qwen3-logit-reranker-tiny");
        std::fs::write(
            dir.path().join("1_LogitScore/config.json"),
            serde_json::to_vec(&edit).unwrap(),
        )
        .unwrap();
        let (status, report) = validate(dir.path());
        assert_ne!(status, Some(0), "{edit}: {report:#}");
        let f = finding(&report, code);
        assert_eq!(f["subject"], subject, "{f:#}");
    }
}
