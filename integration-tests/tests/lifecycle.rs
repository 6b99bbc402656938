//! The server's lifecycle as probes see it: listening from the start, `/health` 503 with the
//! phase (`downloading`, `loading`, `warming`) until the model serves, 200 while it does, 503
//! `draining` from a SIGTERM while accepted requests finish; `/live` 200 throughout; inference
//! routes 503 with the phase before the model is ready.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tessera_integration_tests::mock_hub::{Delivery, MockHub, MockRepo};
use tessera_integration_tests::{minilm, shared_model, Server};

fn get(server: &Server, path: &str) -> (u16, Value) {
    let response = server.get(path);
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn probes_see_downloading_then_ready_and_inference_waits_for_ready() {
    let Some(model) = shared_model("bert-tiny") else { return };
    let id = "tessera-test/slow";
    let mut slow = MockRepo::new(id, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1", &model);
    // bert-tiny's 4 MB in 16 KiB pieces: seconds of downloading to probe.
    slow.delivery = Delivery::Throttled(Duration::from_millis(25));
    let hub = MockHub::start(vec![slow]);
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("hub").display().to_string();
    let env = [
        ("HF_ENDPOINT", hub.url.as_str()),
        ("HUGGINGFACE_HUB_CACHE", cache_dir.as_str()),
        ("HF_TOKEN", ""),
        ("HF_HUB_OFFLINE", ""),
    ];
    let mut server = Server::start_listening(Path::new(id), &[], &env);

    let (status, body) = get(&server, "/health");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["phase"], "downloading", "{body}");
    assert_eq!(body["error_type"], "Unhealthy");
    // The byte counts move while the weights arrive.
    let weights = std::fs::metadata(model.join("model.safetensors")).unwrap().len();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(&server, "/health");
        assert_eq!((status, body["phase"].as_str()), (503, Some("downloading")), "{body}");
        let (done, total) = (
            body["downloaded_bytes"].as_u64().unwrap(),
            body["total_bytes"].as_u64().unwrap(),
        );
        assert!(done <= total, "{body}");
        if done > 0 && total >= weights && done < total {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no progress reported: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = get(&server, "/live");
    assert_eq!((status, body["phase"].as_str()), (200, Some("downloading")), "{body}");
    let response = server.post("/embed", &json!({"inputs": "not yet"}));
    assert_eq!(response.status(), 503);
    let body: Value = response.json().unwrap();
    assert_eq!(body["phase"], "downloading", "{body}");

    server.wait_ready();
    assert_eq!(get(&server, "/health").0, 200);
    let (status, body) = get(&server, "/live");
    assert_eq!((status, body["phase"].as_str()), (200, Some("ready")), "{body}");
    assert_eq!(server.post("/embed", &json!({"inputs": "now"})).status(), 200);
    // Every phase was passed through, in order.
    let log = server.log();
    let at = |phase: &str| {
        log.find(&format!("phase: {phase}"))
            .unwrap_or_else(|| panic!("no {phase} in {log}"))
    };
    assert!(at("loading") < at("warming") && at("warming") < at("ready"), "{log}");
}

#[test]
fn sigterm_drains_with_503_on_new_requests_while_accepted_ones_finish() {
    let mut server = Server::start(
        &minilm(),
        &["--max-client-batch-size", "4096", "--max-concurrent-requests", "4096"],
    );
    // Enough work to still be running when the signal comes: 60 inputs of about 200 tokens
    // (seconds on two cores), well within the default --shutdown-grace.
    let text = "the quick brown fox jumps over the lazy dog and keeps running ".repeat(16);
    let texts = vec![Value::String(text); 60];
    let url = server.url.clone();
    let accepted = std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap()
            .post(format!("{url}/embed"))
            .json(&json!({ "inputs": texts }))
            .send()
            .map(|r| r.status().as_u16())
    });
    // Until the request is being answered (the model thread is busy with it).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = server.get("/metrics").text().unwrap();
        let busy = metrics
            .lines()
            .any(|l| l.starts_with("te_inflight_inputs") && !l.ends_with(" 0"));
        if busy {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline && !accepted.is_finished(),
            "the request never started (or ended before the signal): {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.terminate();
    std::thread::sleep(Duration::from_millis(200));
    let (status, body) = get(&server, "/health");
    assert_eq!((status, body["phase"].as_str()), (503, Some("draining")), "{body}");
    let (status, body) = get(&server, "/live");
    assert_eq!((status, body["phase"].as_str()), (200, Some("draining")), "{body}");
    let response = server.post("/embed", &json!({"inputs": "too late"}));
    assert_eq!(response.status(), 503);
    let body: Value = response.json().unwrap();
    assert_eq!(body["phase"], "draining", "{body}");
    assert_eq!(accepted.join().unwrap().unwrap(), 200, "the accepted request was lost");
    server.assert_exits_cleanly(Duration::from_secs(60));
}

#[test]
fn a_model_that_cannot_run_a_short_input_fails_its_warm_up_and_never_reports_ready() {
    // Finite weights (the start-up checks pass them) that overflow float32 in the first layer.
    let dir = tempfile::tempdir().unwrap();
    tessera_integration_tests::copy_dir(&minilm(), dir.path());
    let path = dir.path().join("model.safetensors");
    let mut weights = tessera_integration_tests::Safetensors::read(&path);
    let name = "embeddings.LayerNorm.weight";
    for i in 0..weights.f32(name).len() {
        weights.set_f32(name, i, 3e38);
    }
    weights.write(&path);
    let mut server = Server::start_listening(dir.path(), &[], &[]);
    let status = server.wait_exit(Duration::from_secs(60)).expect("the server gives up");
    assert!(!status.success());
    let log = server.log();
    assert!(log.contains("phase: warming") && !log.contains("phase: ready"), "{log}");
    assert!(
        log.contains("failed its warm-up pass") && log.contains("NaN or infinity"),
        "{log}"
    );
}
