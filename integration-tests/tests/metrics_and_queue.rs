//! Metrics as TEI dashboards read them, a real Prometheus scraping them, and the queue's
//! admission, budget, ordering and disconnect behaviour.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tessera_integration_tests::{free_port, minilm, workspace, Server};

fn scrape(url: &str) -> String {
    reqwest::blocking::get(format!("{url}/metrics"))
        .unwrap()
        .text()
        .unwrap()
}

/// The value of one sample line (`name{labels} value`), or of the unlabelled series.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Metric names in PromQL text: `te_` identifiers, with histogram suffixes removed.
fn metric_names(promql: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = promql.as_bytes();
    let mut i = 0;
    while let Some(at) = promql[i..].find("te_") {
        let start = i + at;
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = promql[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map(|e| start + e)
            .unwrap_or(promql.len());
        if boundary {
            let name = &promql[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| !["te_request", "te_embed"].contains(b)))
                .unwrap_or(name);
            names.push(base.to_string());
        }
        i = end;
    }
    names
}

#[test]
fn every_metric_is_exported_before_the_first_request() {
    let server = Server::start(&minilm(), &[]);
    let text = scrape(&server.url);
    for name in [
        "te_request_count",
        "te_request_success",
        "te_request_failure",
        "te_request_duration",
        "te_request_tokenization_duration",
        "te_request_queue_duration",
        "te_request_inference_duration",
        "te_request_input_length",
        "te_embed_count",
        "te_embed_success",
        "te_embed_duration",
        "te_embed_tokenization_duration",
        "te_embed_queue_duration",
        "te_embed_inference_duration",
        "te_batch_next_size",
        "te_batch_next_tokens",
        "te_queue_size",
        "te_model_info",
        "te_batch_padding_ratio",
        "te_inflight_inputs",
        "te_backend_forward_duration",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} is not exported");
    }
    assert!(
        text.contains("te_model_info{model_id=") && text.contains("backend=\"flash\""),
        "{text}"
    );
}

#[test]
fn counts_follow_requests_and_failures() {
    let server = Server::start(&minilm(), &["--max-client-batch-size", "4"]);
    assert_eq!(server.post("/embed", &json!({"inputs": "one"})).status(), 200);
    assert_eq!(server.post("/embed", &json!({"inputs": ["a", "b", "c"]})).status(), 200);
    assert_eq!(server.post("/embed", &json!({"inputs": []})).status(), 400);
    assert_eq!(
        server
            .post("/embed", &json!({"inputs": ["a", "b", "c", "d", "e"]}))
            .status(),
        422
    );
    let text = scrape(&server.url);
    assert_eq!(
        sample(&text, "te_request_count{method=\"single\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "te_request_count{method=\"batch\"}"), Some(3.0), "{text}");
    assert_eq!(sample(&text, "te_request_success{method=\"batch\"}"), Some(1.0));
    assert_eq!(sample(&text, "te_request_failure{err=\"empty\"}"), Some(1.0));
    assert_eq!(sample(&text, "te_request_failure{err=\"batch_size\"}"), Some(1.0));
    assert_eq!(sample(&text, "te_embed_count"), Some(4.0));
    assert_eq!(sample(&text, "te_embed_success"), Some(4.0));
    assert_eq!(sample(&text, "te_request_duration_count"), Some(2.0));
    assert_eq!(sample(&text, "te_inflight_inputs"), Some(0.0));
    assert!(sample(&text, "te_request_duration_bucket{le=\"+Inf\"}").is_some());
}

#[test]
fn the_dashboard_only_uses_exported_metrics() {
    let server = Server::start(&minilm(), &[]);
    let text = scrape(&server.url);
    let dashboard: Value =
        serde_json::from_slice(&std::fs::read(workspace().join("docs/dashboards/tessera.json")).unwrap()).unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            for name in metric_names(target["expr"].as_str().unwrap()) {
                assert!(
                    text.contains(&format!("# TYPE {name} ")),
                    "dashboard uses {name}, which is not exported"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} metric references found");
}

#[test]
fn the_prometheus_port_serves_metrics() {
    let port = free_port();
    let server = Server::start_with_env(&minilm(), &[], &[("TESSERA_PROMETHEUS_PORT", &port.to_string())]);
    let text = scrape(&format!("http://127.0.0.1:{port}"));
    assert!(text.contains("# TYPE te_request_count counter"));
    drop(server);
}

#[test]
fn a_real_prometheus_scrapes_it_and_promtool_parses_it() {
    let (Ok(prometheus), Ok(promtool)) = (which("prometheus"), which("promtool")) else {
        tessera_integration_tests::skip("prometheus/promtool not installed (.ci/run installs them)");
        return;
    };
    let metrics_port = free_port();
    let server = Server::start_with_env(
        &minilm(),
        &[],
        &[("TESSERA_PROMETHEUS_PORT", &metrics_port.to_string())],
    );

    // promtool: the exposition parses. Its only lint complaints may be TEI's counter names,
    // which dashboards depend on verbatim (TEI predates the `_total` convention).
    let exposition = scrape(&server.url);
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), exposition.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "promtool failed to parse: {report}"
    );
    let tei_names = [
        "te_request_count",
        "te_request_success",
        "te_request_failure",
        "te_embed_count",
        "te_embed_success",
    ];
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            tei_names.iter().any(|n| line.starts_with(&format!("{n} "))),
            "promtool: {line}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let web_port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tessera\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )
    .unwrap();
    let mut prom = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{web_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let result = scrape_through_prometheus(&server, web_port);
    let _ = prom.kill();
    let _ = prom.wait();
    let (count, quantile) = result;
    assert!(
        count.is_some_and(|c| c >= 20.0),
        "Prometheus saw te_request_count = {count:?}"
    );
    assert!(
        quantile.is_some_and(|q| q.is_finite() && q > 0.0),
        "p50 from Prometheus = {quantile:?}"
    );
}

/// Waits for Prometheus' first scrape, sends traffic, then polls until it reports a request count
/// and a latency quantile (or 90 s pass).
fn scrape_through_prometheus(server: &Server, web_port: u16) -> (Option<f64>, Option<f64>) {
    let query = |q: &str| -> Option<f64> {
        let r = reqwest::blocking::Client::new()
            .get(format!("http://127.0.0.1:{web_port}/api/v1/query"))
            .query(&[("query", q)])
            .send()
            .ok()?;
        let v: Value = r.json().ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    // Traffic only after Prometheus has a first sample, so rates have something to compare.
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline && query("up{job=\"tessera\"}") != Some(1.0) {
        std::thread::sleep(Duration::from_millis(250));
    }
    for i in 0..20 {
        let r = server.post("/embed", &json!({"inputs": [format!("text {i}"), "another one"]}));
        assert_eq!(r.status(), 200);
    }
    let mut count = None;
    let mut quantile = None;
    while Instant::now() < deadline {
        count = query("sum(te_request_count)");
        quantile = query("histogram_quantile(0.5, sum by (le) (rate(te_request_duration_bucket[30s])))");
        if count.is_some_and(|c| c > 0.0) && quantile.is_some_and(|q| q.is_finite() && q > 0.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    (count, quantile)
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
        .ok_or(())
}

#[test]
fn saturation_answers_429_with_retry_after() {
    let server = Server::start(
        &minilm(),
        &[
            "--max-concurrent-requests",
            "2",
            "--max-client-batch-size",
            "2",
            "--max-batch-tokens",
            "512",
        ],
    );
    let url = server.url.clone();
    // Keep the model busy with requests of 2 inputs each while probing with single inputs.
    let texts: Vec<String> = (0..2).map(|i| format!("{i} {}", "word ".repeat(200))).collect();
    let busy: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            let texts = texts.clone();
            std::thread::spawn(move || {
                reqwest::blocking::Client::new()
                    .post(format!("{url}/embed"))
                    .json(&json!({"inputs": texts, "truncate": true}))
                    .send()
                    .map(|r| {
                        (
                            r.status().as_u16(),
                            r.headers().get("retry-after").is_some(),
                            r.text().unwrap_or_default(),
                        )
                    })
            })
        })
        .collect();
    let results: Vec<_> = busy.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
    let rejected: Vec<_> = results.iter().filter(|(s, _, _)| *s == 429).collect();
    assert!(
        !rejected.is_empty(),
        "6 concurrent requests of 2 inputs over a limit of 2 must see a 429"
    );
    for (_, retry_after, body) in &rejected {
        assert!(retry_after, "429 carries Retry-After");
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error_type"], "Overloaded");
    }
    assert!(results.iter().all(|(s, _, _)| *s == 200 || *s == 429));
    let text = scrape(&server.url);
    assert!(sample(&text, "te_request_failure{err=\"overloaded\"}").is_some_and(|n| n >= 1.0));
}

#[test]
fn results_keep_input_order_across_batches_and_budgets_hold() {
    // A budget of 64 padded tokens splits one request of mixed lengths over many batches.
    let server = Server::start(&minilm(), &["--max-batch-tokens", "64", "--max-batch-requests", "3"]);
    let texts: Vec<String> = (0..12)
        .map(|i| format!("sentence {i} {}", "word ".repeat((i * 7) % 11)))
        .collect();
    let together: Vec<Vec<f32>> = server.post("/embed", &json!({"inputs": texts})).json().unwrap();
    for (i, text) in texts.iter().enumerate() {
        let alone: Vec<Vec<f32>> = server.post("/embed", &json!({"inputs": text})).json().unwrap();
        let (max, _) = tessera_integration_tests::compare(&together[i], &alone[0]);
        assert!(max < 1e-5, "input {i} came back out of order or changed ({max})");
    }
    let text = scrape(&server.url);
    assert_eq!(
        sample(&text, "te_batch_next_tokens_bucket{le=\"64\"}"),
        sample(&text, "te_batch_next_tokens_count")
    );
    assert_eq!(
        sample(&text, "te_batch_next_size_bucket{le=\"4\"}"),
        sample(&text, "te_batch_next_size_count")
    );
}

#[test]
fn a_disconnected_client_has_its_queued_inputs_dropped() {
    let server = Server::start(&minilm(), &["--max-batch-tokens", "256", "--max-batch-requests", "1"]);
    let long: Vec<String> = (0..32).map(|i| format!("{i} {}", "word ".repeat(240))).collect();
    // This client gives up long before its 32 one-at-a-time batches can finish.
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap()
        .post(format!("{}/embed", server.url))
        .json(&json!({"inputs": long, "truncate": true}))
        .send();
    assert!(r.is_err(), "the request should time out on the client side");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut dropped = 0.0;
    while Instant::now() < deadline {
        dropped = sample(&scrape(&server.url), "te_request_failure{err=\"dropped\"}").unwrap_or(0.0);
        if dropped > 0.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(dropped > 0.0, "queued inputs of the gone client were not dropped");
    let text = scrape(&server.url);
    let embedded = sample(&text, "te_batch_next_size_count").unwrap();
    assert!(
        embedded < 32.0,
        "{embedded} of 32 inputs reached the model after the client left"
    );
    assert_eq!(server.post("/embed", &json!({"inputs": "still serving"})).status(), 200);
}

/// `te_queue_size` (inputs waiting for the model) and `te_inflight_inputs` (admitted, not yet
/// answered) rise while clients queue work and fall back to 0 when it is done: what an
/// autoscaler on queue depth reads (TEI's gauge stays flat under queueing, its issue #880).
#[test]
fn queue_gauges_rise_under_load_and_fall_when_it_drains() {
    let server = Server::start(
        &minilm(),
        &["--max-batch-tokens", "512", "--max-client-batch-size", "8"],
    );
    let url = server.url.clone();
    let texts: Vec<String> = (0..8).map(|i| format!("{i} {}", "word ".repeat(120))).collect();
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (url, texts) = (url.clone(), texts.clone());
            std::thread::spawn(move || {
                reqwest::blocking::Client::new()
                    .post(format!("{url}/embed"))
                    .json(&json!({"inputs": texts, "truncate": true}))
                    .send()
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let (mut queued, mut inflight) = (0f64, 0f64);
    let deadline = Instant::now() + Duration::from_secs(60);
    while clients.iter().any(|c| !c.is_finished()) && Instant::now() < deadline {
        let text = scrape(&server.url);
        queued = queued.max(sample(&text, "te_queue_size").unwrap_or(0.0));
        inflight = inflight.max(sample(&text, "te_inflight_inputs").unwrap_or(0.0));
        std::thread::sleep(Duration::from_millis(5));
    }
    for client in clients {
        assert_eq!(client.join().unwrap().unwrap(), 200);
    }
    eprintln!("peaks while loaded: te_queue_size {queued}, te_inflight_inputs {inflight}");
    // 48 inputs of ~125 tokens against batches of 512 tokens: most of them wait.
    assert!(queued >= 8.0, "te_queue_size peaked at {queued}");
    assert!(
        inflight >= queued,
        "te_inflight_inputs peaked at {inflight}, below the queue's {queued}"
    );
    let text = scrape(&server.url);
    assert_eq!(sample(&text, "te_queue_size"), Some(0.0), "the queue drained");
    assert_eq!(sample(&text, "te_inflight_inputs"), Some(0.0), "nothing in flight");
}
