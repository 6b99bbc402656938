//! Prompts from config_sentence_transformers.json, the default prompt flags, and
//! `include_prompt: false` (prompt tokens left out of mean pooling, as sentence-transformers does).

use std::path::Path;

use serde_json::{json, Value};
use tessera_integration_tests::{compare, minilm, Server};

fn model_with_prompts(dir: &Path, include_prompt: bool) {
    let source = minilm();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        json!({"word_embedding_dimension": 384, "pooling_mode_mean_tokens": true, "include_prompt": include_prompt})
            .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("config_sentence_transformers.json"),
        json!({"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": null}).to_string(),
    )
    .unwrap();
}

fn embed(server: &Server, body: Value) -> Vec<f32> {
    let v: Vec<Vec<f32>> = server.post("/embed", &body).json().unwrap();
    v[0].clone()
}

#[test]
fn named_and_default_prompts_are_prepended() {
    let dir = tempfile::tempdir().unwrap();
    model_with_prompts(dir.path(), true);
    let server = Server::start(dir.path(), &[]);
    let with_name = embed(&server, json!({"inputs": "hello there", "prompt_name": "query"}));
    let by_hand = embed(&server, json!({"inputs": "query: hello there"}));
    assert!(compare(&with_name, &by_hand).0 < 1e-6);
    let r = server.post("/embed", &json!({"inputs": "x", "prompt_name": "document"}));
    assert_eq!(r.status(), 422);
    let body: Value = r.json().unwrap();
    assert!(body["error"].as_str().unwrap().contains("passage, query"), "{body}");

    let defaulted = Server::start(dir.path(), &["--default-prompt-name", "passage"]);
    let d = embed(&defaulted, json!({"inputs": "hello there"}));
    assert!(compare(&d, &embed(&server, json!({"inputs": "passage: hello there"}))).0 < 1e-6);
    let text = Server::start(dir.path(), &["--default-prompt", "search: "]);
    let t = embed(&text, json!({"inputs": "hello there"}));
    assert!(compare(&t, &embed(&server, json!({"inputs": "search: hello there"}))).0 < 1e-6);
}

#[test]
fn include_prompt_false_leaves_prompt_tokens_out_of_the_mean() {
    let dir = tempfile::tempdir().unwrap();
    model_with_prompts(dir.path(), false);
    let server = Server::start(dir.path(), &[]);
    let got = embed(
        &server,
        json!({"inputs": "hello there", "prompt_name": "query", "normalize": false}),
    );
    // The prompt "query: " is [CLS] query : [SEP] alone, so 3 leading tokens leave the pool.
    let tokens: Vec<Vec<Vec<f32>>> = server
        .post("/embed_all", &json!({"inputs": "query: hello there"}))
        .json()
        .unwrap();
    let kept = &tokens[0][3..];
    let mean: Vec<f32> = (0..384)
        .map(|c| kept.iter().map(|t| t[c]).sum::<f32>() / kept.len() as f32)
        .collect();
    assert!(compare(&got, &mean).0 < 1e-5);
    let with_prompt_tokens: Vec<f32> = (0..384)
        .map(|c| tokens[0].iter().map(|t| t[c]).sum::<f32>() / tokens[0].len() as f32)
        .collect();
    assert!(
        compare(&got, &with_prompt_tokens).0 > 1e-3,
        "the prompt really was left out"
    );
}
