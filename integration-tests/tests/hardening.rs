//! Hostile input and unlucky operators: a tokenizer that does not match the weights, configs
//! with absurd sizes, NaN weights, stalled and slow connections, and the HTTP edge cases that
//! must still get JSON answers.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tessera_integration_tests::reference::edit_json;
use tessera_integration_tests::{copy_dir, minilm, run, Safetensors, Server};

fn copy_minilm() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&minilm(), dir.path());
    dir
}

fn validate_json(dir: &Path, extra: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["validate-model", dir.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = run(&args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

fn finding<'a>(report: &'a Value, code: &str) -> Option<&'a Value> {
    report["findings"].as_array()?.iter().find(|f| f["code"] == code)
}

/// The codes of the report's error findings, in order.
fn error_codes(report: &Value) -> Vec<&str> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .filter_map(|f| f["code"].as_str())
        .collect()
}

#[test]
fn a_tokenizer_id_past_the_embedding_table_is_refused_before_serving() {
    let dir = copy_minilm();
    // One vocabulary entry moved past the 30522-row table: the entry count stays the same,
    // which is what the old check compared.
    edit_json(&dir.path().join("tokenizer.json"), |t| {
        t["model"]["vocab"]["hello"] = json!(40000);
    });
    let (code, report) = validate_json(dir.path(), &[]);
    assert_eq!(code, Some(1));
    let f = finding(&report, "tokenizer-id-beyond-embeddings").expect("the finding");
    let message = f["message"].as_str().unwrap();
    assert!(message.contains("40000") && message.contains("hello"), "{message}");
    assert!(f["file"].as_str().unwrap().ends_with("tokenizer.json"), "{f}");
    let out = run(&["serve", "--model-id", dir.path().to_str().unwrap(), "--port", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokenizer-id-beyond-embeddings"));
}

#[test]
fn absurd_config_sizes_are_refused_at_once() {
    for (key, value) in [
        ("num_hidden_layers", json!(10_000_000u64)),
        ("num_hidden_layers", json!(1_000_000u64)),
        ("hidden_size", json!(1u64 << 40)),
        ("intermediate_size", json!(1u64 << 50)),
        ("vocab_size", json!(1u64 << 60)),
        ("max_position_embeddings", json!(u64::MAX)),
        ("num_attention_heads", json!(1u64 << 31)),
    ] {
        let dir = copy_minilm();
        edit_json(&dir.path().join("config.json"), |c| c[key] = value.clone());
        let started = Instant::now();
        let (code, report) = validate_json(dir.path(), &[]);
        // Generous for a loaded CI machine; the bomb took 10 s and 2.2 GB before the fix.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{key}: {:?}",
            started.elapsed()
        );
        assert_eq!(code, Some(1), "{key}: {report}");
        let about_key = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["severity"] == "error" && f["subject"] == key);
        assert!(about_key, "{key}: no error names the key: {report:#}");
    }
}

#[test]
fn a_wrong_hidden_size_is_one_finding_naming_the_key() {
    let dir = copy_minilm();
    edit_json(&dir.path().join("config.json"), |c| c["hidden_size"] = json!(768));
    let (_, report) = validate_json(dir.path(), &[]);
    let mismatches: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "tensor-shape-mismatch")
        .collect();
    assert_eq!(mismatches.len(), 1, "{report:#}");
    assert_eq!(mismatches[0]["subject"], "hidden_size");
    assert!(mismatches[0]["fix"].as_str().unwrap().contains("384"), "{report:#}");
    assert_eq!(report["servable"], false);
}

#[test]
fn non_finite_weights_are_found_by_the_deep_check_and_refused_by_serve() {
    for (tensor, value) in [
        ("embeddings.word_embeddings.weight", f32::NAN),
        ("encoder.layer.3.attention.self.query.weight", f32::NAN),
        ("encoder.layer.0.output.LayerNorm.weight", f32::INFINITY),
    ] {
        let dir = copy_minilm();
        let weights = dir.path().join("model.safetensors");
        let mut st = Safetensors::read(&weights);
        st.set_f32(tensor, 7, value);
        st.write(&weights);
        let (code, report) = validate_json(dir.path(), &["--deep"]);
        assert_eq!(code, Some(1), "{tensor}");
        let f = finding(&report, "weights-non-finite").expect("the finding");
        assert_eq!(f["subject"], tensor);
        let out = run(&["serve", "--model-id", dir.path().to_str().unwrap(), "--port", "0"]);
        assert_eq!(out.status.code(), Some(1), "{tensor}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("weights-non-finite") && err.contains(tensor), "{err}");
    }
}

#[test]
fn float16_checks_that_every_weight_fits() {
    let dir = copy_minilm();
    let weights = dir.path().join("model.safetensors");
    let mut st = Safetensors::read(&weights);
    st.set_f32("encoder.layer.1.intermediate.dense.weight", 3, 1e6);
    st.write(&weights);
    let (code, report) = validate_json(dir.path(), &["--deep", "--dtype", "float16"]);
    assert_eq!(code, Some(1));
    let f = finding(&report, "weights-overflow-float16").expect("the finding");
    assert_eq!(f["subject"], "encoder.layer.1.intermediate.dense.weight");
    let (code, _) = validate_json(dir.path(), &["--deep", "--dtype", "float32"]);
    assert_eq!(code, Some(0));
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap()
}

fn connect(server: &Server) -> TcpStream {
    let addr = server.url.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// Sends `request` and reads until the server closes or `limit` passes.
fn exchange(server: &Server, request: &[u8], half_close: bool) -> String {
    let mut stream = connect(server);
    stream.write_all(request).unwrap();
    if half_close {
        stream.shutdown(Shutdown::Write).unwrap();
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                // One response is enough: stop once its JSON body has arrived.
                let text = String::from_utf8_lossy(&answer);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok());
                    if length.is_some_and(|n| body.len() >= n) {
                        break;
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn stalled_connections_neither_block_health_nor_grow_memory_nor_hold_shutdown() {
    let mut server = Server::start(&minilm(), &[]);
    let before = rss_mib(server.pid());
    let mut stalled = Vec::new();
    for i in 0..2000 {
        let mut stream = connect(&server);
        match i % 3 {
            0 => {}
            1 => stream.write_all(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Ty").unwrap(),
            _ => stream
                .write_all(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inp")
                .unwrap(),
        }
        stalled.push(stream);
    }
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let health = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("{}/health", server.url))
        .send()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(health.status(), 200);
    assert!(took < Duration::from_secs(1), "/health took {took:?}");
    let grown = rss_mib(server.pid()) - before;
    assert!(grown < 100.0, "2000 stalled connections grew RSS by {grown:.1} MiB");

    server.terminate();
    // The body-less requests hold nothing; the ones waiting for a body get 408 after
    // --body-read-timeout (10 s), well inside the 30 s grace.
    server.assert_exits_cleanly(Duration::from_secs(20));
    drop(stalled);
}

#[test]
fn slow_bodies_get_408_and_declared_oversize_bodies_413_at_once() {
    let server = Server::start(&minilm(), &["--body-read-timeout", "1", "--payload-limit", "1000"]);
    let answer = exchange(
        &server,
        b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"in",
        false,
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"body-read-timeout\""), "{answer}");

    let started = Instant::now();
    let answer = exchange(
        &server,
        b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n",
        false,
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"code\":\"payload-too-large\""), "{answer}");
}

#[test]
fn a_client_that_half_closes_is_taken_as_gone_and_answered_nothing() {
    // Documented in docs/http-api.md: end of input cancels the request, as for a client that
    // gave up; the connection is closed at once rather than left hanging.
    let server = Server::start(&minilm(), &[]);
    let body = r#"{"inputs":"half closed"}"#;
    let request = format!(
        "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let answer = exchange(&server, request.as_bytes(), true);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(server.post("/embed", &json!({"inputs": "still serving"})).status(), 200);
}

#[test]
fn the_bearer_scheme_is_case_insensitive_and_openai_routes_answer_401_in_their_shape() {
    let server = Server::start(&minilm(), &["--api-key", "K3y"]);
    let client = reqwest::blocking::Client::new();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let status = client
            .post(format!("{}/embed", server.url))
            .header("Authorization", format!("{scheme} K3y"))
            .json(&json!({"inputs": "x"}))
            .send()
            .unwrap()
            .status();
        assert_eq!(status, 200, "{scheme}");
    }
    let response = client
        .post(format!("{}/v1/embeddings", server.url))
        .json(&json!({"input": "x", "model": "m"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
}

#[test]
fn validate_model_errors_before_any_finding_are_json_with_json() {
    for args in [
        vec!["validate-model", "/nonexistent/model", "--json"],
        vec!["validate-model", "--json", "--no-such-flag", "x"],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let document: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(document["servable"], false);
        let error = document["error"].as_str().unwrap();
        assert!(!error.contains("--model-id"), "{error}");
    }
    let out = run(&["validate-model", "/nonexistent/model"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/model") && !err.contains("--model-id"),
        "{err}"
    );
}

#[test]
fn a_missing_file_is_one_root_cause_not_a_missing_backend() {
    let dir = copy_minilm();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let (_, report) = validate_json(dir.path(), &[]);
    assert_eq!(error_codes(&report), vec!["weights-missing"], "{report:#}");
    let out = run(&["validate-model", dir.path().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("declined by"), "{text}");
    assert!(text.contains("undecided"), "{text}");

    let dir = copy_minilm();
    let config = dir.path().join("config.json");
    let bytes = std::fs::read(&config).unwrap();
    std::fs::write(&config, &bytes[..bytes.len() / 2]).unwrap();
    let (_, report) = validate_json(dir.path(), &[]);
    assert_eq!(error_codes(&report), vec!["config-invalid-json"], "{report:#}");
    // serve reports the cause once.
    let out = run(&["serve", "--model-id", dir.path().to_str().unwrap(), "--port", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("config-invalid-json").count(), 1, "{err}");
}

#[test]
fn backends_that_decline_for_the_same_reason_are_listed_once() {
    let dir = copy_minilm();
    edit_json(&dir.path().join("config.json"), |c| c["model_type"] = json!("t5"));
    let out = run(&["validate-model", dir.path().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let reasons: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("declined by"))
        .filter_map(|l| l.split_once("`: ").map(|(_, reason)| reason))
        .collect();
    let unique: std::collections::BTreeSet<&str> = reasons.iter().copied().collect();
    assert!(!reasons.is_empty(), "{text}");
    assert_eq!(reasons.len(), unique.len(), "{text}");
}

#[test]
fn at_the_connection_cap_a_stalled_connection_makes_room_for_a_fresh_one() {
    let server = Server::start(&minilm(), &["--max-connections", "50"]);
    let stalled: Vec<TcpStream> = (0..120)
        .map(|i| {
            let mut stream = connect(&server);
            if i % 2 == 1 {
                stream.write_all(b"GET /health HTTP/1.1\r\nHo").unwrap();
            }
            stream
        })
        .collect();
    // Past the 1 s a connection accepted at the cap may wait for a place.
    std::thread::sleep(Duration::from_millis(1500));
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let health = client.get(format!("{}/health", server.url)).send().unwrap();
        assert_eq!(health.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        let embed = client
            .post(format!("{}/embed", server.url))
            .json(&json!({"inputs": "through the crowd"}))
            .send()
            .unwrap();
        assert_eq!(embed.status(), 200);
    }
    drop(stalled);
}

/// A decoder whose tokenizer.json appends nothing (as gte-Qwen2 ships it): an empty text has no
/// tokens, which the model cannot run; it is refused with its own code before it reaches a
/// batch, and the texts beside it are answered.
#[test]
fn a_text_without_tokens_gets_422_and_does_not_reach_the_model() {
    let dir = tessera_integration_tests::reference::copy("qwen2-tiny");
    edit_json(&dir.path().join("tokenizer.json"), |t| {
        t["post_processor"] = Value::Null;
    });
    let server = Server::start(dir.path(), &[]);
    for body in [json!({"inputs": ""}), json!({"inputs": ["a", ""]})] {
        let response = server.post("/embed", &body);
        assert_eq!(response.status(), 422, "{body}");
        let error: Value = response.json().unwrap();
        assert_eq!(error["code"], "no-tokens", "{error}");
        assert!(error["error"].as_str().unwrap().starts_with("input "), "{error}");
    }
    assert_eq!(server.embed(&json!(["a", "b c"])).len(), 2);
    let metrics = server.get("/metrics").text().unwrap();
    let backend_failures = metrics
        .lines()
        .find(|l| l.starts_with("te_request_failure{") && l.contains("err=\"backend\""))
        .unwrap_or_else(|| panic!("no backend failure count in {metrics}"));
    assert!(backend_failures.ends_with(" 0"), "{backend_failures}");
}

/// A reranker with one token type whose tokenizer.json gives the second text segment id 1 (a
/// BERT pair template on an XLM-RoBERTa model) would fail every pair in the model: refused
/// before serving, naming the post-processor.
#[test]
fn a_pair_template_past_the_token_types_is_refused_for_a_reranker() {
    tessera_integration_tests::reference::assert_refused(
        "xlm-roberta-reranker-tiny",
        |dir| {
            edit_json(&dir.join("tokenizer.json"), |t| {
                t["post_processor"] = json!({
                    "type": "BertProcessing",
                    "sep": ["</s>", 2],
                    "cls": ["<s>", 0]
                });
            })
        },
        "pair-segment-beyond-token-types",
        "post_processor",
    );
}
