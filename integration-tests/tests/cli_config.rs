//! The command line, configuration precedence, start-up failures and shutdown.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tessera_integration_tests::{copy_dir, free_port, minilm, run, run_with_env, tessera_command, Safetensors, Server};

#[test]
fn no_subcommand_prints_help() {
    let out = run(&[]);
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("serve") && text.contains("validate-model"), "{text}");
}

#[test]
fn serve_help_states_precedence() {
    let out = run(&["serve", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("flag > environment > config file > default"), "{text}");
    for flag in [
        "--model-id",
        "--max-batch-tokens",
        "--auto-truncate",
        "--payload-limit",
        "--prometheus-port",
    ] {
        assert!(text.contains(flag), "{flag} missing from help");
    }
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let model = minilm();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tessera.toml");
    std::fs::write(
        &config,
        "max_client_batch_size = 3\nmax_batch_requests = 7\nauto_truncate = true\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let server = Server::start(&model, &["--config", config]);
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(
        (
            info["max_client_batch_size"].clone(),
            info["max_batch_requests"].clone()
        ),
        (json!(3), json!(7))
    );
    assert_eq!(info["auto_truncate"], true);
    assert_eq!(info["max_concurrent_requests"], 512, "default");
    drop(server);

    let env = [("TESSERA_MAX_CLIENT_BATCH_SIZE", "4")];
    let server = Server::start_with_env(&model, &["--config", config], &env);
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(info["max_client_batch_size"], 4, "env beats file");
    assert_eq!(info["max_batch_requests"], 7);
    drop(server);

    let server = Server::start_with_env(&model, &["--config", config, "--max-client-batch-size", "5"], &env);
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(info["max_client_batch_size"], 5, "flag beats env");
}

/// A deployment written for TEI configures it through TEI's variables (`MODEL_ID`, `PORT`...)
/// and runs its flags without a subcommand: both work, the variables below `TESSERA_*`, and the
/// `HOSTNAME` every container has (its name) is not taken for a listen address.
#[test]
fn tei_environment_variables_configure_the_server() {
    let model = minilm();
    let port = free_port();
    let mut command = tessera_command();
    // A TEI image's default command line: flags alone (`text-embeddings-router --json-output`).
    command
        .arg("--json-output")
        .env_remove("TESSERA_CONFIG")
        .env("TESSERA_PROMETHEUS_PORT", "0")
        .env("MODEL_ID", &model)
        .env("PORT", port.to_string())
        .env("HOSTNAME", "embeddings-5d8f7c9b4-x2x9q")
        .env("MAX_CLIENT_BATCH_SIZE", "3")
        .env("AUTO_TRUNCATE", "false")
        .env("MAX_BATCH_REQUESTS", "9")
        .env("TESSERA_MAX_BATCH_REQUESTS", "7")
        .env("SERVED_MODEL_NAME", "tei-named")
        .env("GRPC_MAX_PARALLEL_STREAM_REQUESTS", "2")
        .env("CORS_ALLOW_ORIGIN", "https://a.example,https://b.example");
    // Bound to 0.0.0.0, not to the container name.
    let mut server = Server::spawn_command(command, format!("http://0.0.0.0:{port}"));
    server.wait_ready();
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(info["max_client_batch_size"], 3);
    assert_eq!(info["auto_truncate"], false);
    assert_eq!(info["max_batch_requests"], 7, "TESSERA_* beats TEI's name");
    assert_eq!(info["model_id"], "tei-named");
    let preflight = reqwest::blocking::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/embed", server.url))
        .header("origin", "https://b.example")
        .header("access-control-request-method", "POST")
        .send()
        .unwrap();
    assert_eq!(preflight.headers()["access-control-allow-origin"], "https://b.example");
    assert!(server.log().contains("MODEL_ID"), "{}", server.log());
    assert!(
        server.log().contains("GRPC_MAX_PARALLEL_STREAM_REQUESTS"),
        "{}",
        server.log()
    );

    let out = run_with_env(
        &["serve", "--model-id", model.to_str().unwrap()],
        &[("PORT", "eighty"), ("TESSERA_PROMETHEUS_PORT", "0")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PORT") && err.contains("eighty"), "{err}");
}

#[test]
fn config_mistakes_are_errors_naming_the_key() {
    let model = minilm();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "max_batch_tokenz = 10\n").unwrap();
    let out = run(&[
        "serve",
        "--model-id",
        model.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_batch_tokenz"), "{err}");

    std::fs::write(&config, "port = \"high\"\n").unwrap();
    let out = run(&[
        "serve",
        "--model-id",
        model.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port") && err.contains("bad.toml"), "{err}");

    let out = run_with_env(
        &["serve", "--model-id", model.to_str().unwrap()],
        &[("TESSERA_PORT", "not-a-port")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("port"));
}

#[test]
fn a_model_without_pooling_config_names_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&minilm(), dir.path());
    std::fs::remove_dir_all(dir.path().join("1_Pooling")).unwrap();
    std::fs::write(dir.path().join("modules.json"), "[]").unwrap();
    let out = run(&["serve", "--model-id", dir.path().to_str().unwrap(), "--port", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--pooling") && err.contains("pooling-not-configured"),
        "{err}"
    );

    let server = Server::start(dir.path(), &["--pooling", "mean"]);
    assert_eq!(server.post("/embed", &json!({"inputs": "hi"})).status(), 200);
}

#[test]
fn a_missing_model_or_bad_flag_fails_clearly() {
    let out = run(&["serve", "--model-id", "/nonexistent/model"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/model"));
    let out = run(&[
        "serve",
        "--model-id",
        minilm().to_str().unwrap(),
        "--pooling",
        "median",
        "--port",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("median") && err.contains("weightedmean"), "{err}");
}

#[test]
fn a_dense_module_is_applied_after_pooling() {
    // An Identity-activated Dense that keeps the first 8 of 384 dimensions scaled by 2.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&minilm(), dir.path());
    identity_dense(&dir.path().join("2_Dense"), 8, 0, 2.0);
    std::fs::write(
        dir.path().join("modules.json"),
        r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
            {"idx":2,"name":"2","path":"2_Dense","type":"sentence_transformers.models.Dense"}]"#,
    )
    .unwrap();
    let plain = Server::start(&minilm(), &[]);
    let with_dense = Server::start(dir.path(), &[]);
    let base: Vec<Vec<f32>> = plain
        .post("/embed", &json!({"inputs": "dense", "normalize": false}))
        .json()
        .unwrap();
    let got: Vec<Vec<f32>> = with_dense
        .post("/embed", &json!({"inputs": "dense", "normalize": false}))
        .json()
        .unwrap();
    assert_eq!(got[0].len(), 8);
    for i in 0..8 {
        assert!((got[0][i] - 2.0 * base[0][i]).abs() < 1e-5);
    }
    drop(with_dense);

    // A second size beside it, as stella_en_400M_v5 ships `2_Dense_256` beside `2_Dense_1024`:
    // `--dense-path` reads it instead (the last 4 dimensions, times 3).
    identity_dense(&dir.path().join("2_Dense_4"), 4, 380, 3.0);
    let server = Server::start(dir.path(), &["--dense-path", "2_Dense_4"]);
    let got: Vec<Vec<f32>> = server
        .post("/embed", &json!({"inputs": "dense", "normalize": false}))
        .json()
        .unwrap();
    assert_eq!(got[0].len(), 4);
    for i in 0..4 {
        assert!((got[0][i] - 3.0 * base[0][380 + i]).abs() < 1e-5);
    }
    let out = run(&[
        "validate-model",
        dir.path().to_str().unwrap(),
        "--json",
        "--dense-path",
        "2_Dense_4",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let applied = tessera_integration_tests::reference::finding(&report, "dense-path-applied");
    assert_eq!(applied["severity"], "info", "{applied:#}");

    // Where it cannot replace the one Dense module, start-up stops naming the flag.
    for (model, path, why) in [
        (minilm(), "2_Dense_4", "lists none"),
        (
            dir.path().to_path_buf(),
            "../2_Dense_4",
            "not a directory inside the model",
        ),
        (dir.path().to_path_buf(), "3_Dense_missing", "no config.json"),
    ] {
        let out = run_with_env(
            &[
                "serve",
                "--model-id",
                model.to_str().unwrap(),
                "--dense-path",
                path,
                "--port",
                "0",
            ],
            &[("TESSERA_PROMETHEUS_PORT", "0")],
        );
        assert_eq!(out.status.code(), Some(1), "{path}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{path}: {err}");
    }
}

/// A Dense module at `dir` without bias or activation that keeps `out` of MiniLM's 384
/// dimensions from `first` on, times `scale`.
fn identity_dense(dir: &Path, out: usize, first: usize, scale: f32) {
    std::fs::create_dir_all(dir).unwrap();
    let config = json!({"in_features": 384, "out_features": out, "bias": false,
        "activation_function": "torch.nn.modules.linear.Identity"});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut weight = vec![0f32; out * 384];
    for i in 0..out {
        weight[i * 384 + first + i] = scale;
    }
    let mut weights = Safetensors::default();
    weights.push("linear.weight", &[out, 384], &weight);
    weights.write(&dir.join("model.safetensors"));
}

#[test]
fn sigterm_finishes_accepted_requests_and_exits_zero() {
    let mut server = Server::start(&minilm(), &[]);
    let url = server.url.clone();
    let texts: Vec<String> = (0..32)
        .map(|i| format!("request number {i} with some words in it"))
        .collect();
    let inflight: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            let texts = texts.clone();
            std::thread::spawn(move || {
                reqwest::blocking::Client::new()
                    .post(format!("{url}/embed"))
                    .json(&json!({ "inputs": texts }))
                    .send()
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    server.terminate();
    let mut completed = 0;
    for handle in inflight {
        // A request either completed (200) or was never accepted: refused while draining (503,
        // for the load balancer to retry elsewhere) or, once drained, a refused connection.
        if let Ok(code) = handle.join().unwrap() {
            assert!(code == 200 || code == 503, "{code}");
            completed += usize::from(code == 200);
        }
    }
    // The requests were sent before the signal; without this the test would pass with none served.
    assert!(
        completed > 0,
        "no request in flight at SIGTERM was answered:\n{}",
        server.log()
    );
    server.assert_exits_cleanly(Duration::from_secs(30));
}

#[test]
fn settings_under_which_a_valid_request_could_never_be_admitted_are_refused() {
    let model = minilm();
    let out = run(&[
        "serve",
        "--model-id",
        model.to_str().unwrap(),
        "--max-concurrent-requests",
        "4",
        "--port",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--max-concurrent-requests 4") && err.contains("--max-client-batch-size 32"),
        "{err}"
    );
}

#[test]
fn an_unknown_tessera_variable_is_warned_about_in_the_log() {
    // The warning must reach the log, which starts after the settings are read; a missing model
    // ends the run right after logging starts.
    let out = run_with_env(
        &["serve", "--model-id", "/nonexistent/model", "--port", "0"],
        &[("TESSERA_MAX_BATCH_TOKENZ", "10")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TESSERA_MAX_BATCH_TOKENZ") && err.contains("not a tessera setting"),
        "{err}"
    );
}

/// `--otlp-endpoint`: each inference request is a span exported as OTLP over gRPC, under the
/// caller's trace when it sends a W3C `traceparent`, with TEI's timings; health probes are not.
#[test]
fn request_spans_are_exported_to_the_otlp_collector() {
    let collector = tessera_integration_tests::otlp_collector::OtlpCollector::start();
    let server = Server::start_with_env(
        &minilm(),
        &[
            "--otlp-endpoint",
            &collector.endpoint,
            "--otlp-service-name",
            "embeddings-test",
        ],
        // The batch exporter's default wait is 5 s.
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/embed", server.url))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({"inputs": ["a traced request", "and its neighbour"]}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let tokens: u64 = response.headers()["x-compute-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let span = collector
        .wait_for(Duration::from_secs(20), |s| s.span.name == "POST /embed")
        .unwrap_or_else(|| panic!("no span exported: {:?}\n{}", collector.spans(), server.log()));
    assert_eq!(span.service_name, "embeddings-test");
    assert_eq!(hex(&span.span.trace_id), trace_id, "joined to the caller's trace");
    assert_eq!(hex(&span.span.parent_span_id), caller_span);
    assert_eq!(span.attribute("http.route").as_deref(), Some("/embed"));
    assert_eq!(span.attribute("http.response.status_code").as_deref(), Some("200"));
    assert_eq!(span.attribute("compute_tokens"), Some(tokens.to_string()));
    assert!(span.attribute("inference_time_ms").is_some(), "{span:?}");

    // Without a traceparent: a trace of its own. A refused request is traced with its status.
    let refused = server.post("/embed", &json!({"inputs": []}));
    assert_eq!(refused.status(), 400);
    let span = collector
        .wait_for(Duration::from_secs(20), |s| {
            s.attribute("http.response.status_code").as_deref() == Some("400")
        })
        .expect("the refused request's span");
    assert_ne!(hex(&span.span.trace_id), trace_id);
    assert!(span.span.parent_span_id.is_empty());
    assert_eq!(server.get("/health").status(), 200);

    // A gRPC call: named by its method, its status from the trailers, under the caller's trace.
    let grpc_caller = "b7ad6b7169203331";
    tessera_integration_tests::block_on(async {
        use tessera_integration_tests::grpc::{embed_client::EmbedClient, EmbedRequest};
        let mut client = EmbedClient::new(server.grpc_channel().await);
        let mut request = tonic::Request::new(EmbedRequest {
            inputs: "a traced call".into(),
            ..Default::default()
        });
        let traceparent = format!("00-{trace_id}-{grpc_caller}-01").parse().unwrap();
        request.metadata_mut().insert("traceparent", traceparent);
        client.embed(request).await.unwrap();
        let refused = EmbedRequest {
            prompt_name: Some("none".into()),
            ..Default::default()
        };
        client.embed(refused).await.unwrap_err();
    });
    let call = collector
        .wait_for(Duration::from_secs(20), |s| {
            s.span.name == "tei.v1.Embed/Embed" && s.attribute("rpc.grpc.status_code").as_deref() == Some("0")
        })
        .unwrap_or_else(|| panic!("no gRPC span: {:?}", collector.spans()));
    assert_eq!(hex(&call.span.trace_id), trace_id);
    assert_eq!(hex(&call.span.parent_span_id), grpc_caller);
    assert_eq!(call.attribute("rpc.system").as_deref(), Some("grpc"));
    assert!(call.attribute("compute_tokens").is_some(), "{call:?}");
    collector
        .wait_for(Duration::from_secs(20), |s| {
            s.span.name == "tei.v1.Embed/Embed" && s.attribute("rpc.grpc.status_code").as_deref() == Some("3")
        })
        .expect("the refused call's span, INVALID_ARGUMENT");

    std::thread::sleep(Duration::from_millis(500));
    assert!(
        collector
            .spans()
            .iter()
            .all(|s| s.span.name != "GET /health" && !s.span.name.starts_with("grpc.health")),
        "probes are not traced"
    );
}

/// JSON log lines logged while serving a request carry its span (route, status, TEI's timings)
/// unless `--disable-spans`; the debug line only appears where the filter lets it through.
#[test]
fn json_log_lines_carry_the_request_span_unless_disabled() {
    // TEI's LOG_LEVEL filters as RUST_LOG does.
    let cases = [
        (&["--json-output"][..], true, "RUST_LOG"),
        (&["--json-output", "--disable-spans"][..], false, "RUST_LOG"),
        (&["--json-output"][..], true, "LOG_LEVEL"),
    ];
    for (flags, spans, filter) in cases {
        let server = Server::start_with_env(&minilm(), flags, &[(filter, "info,tessera=debug")]);
        assert_eq!(server.post("/embed", &json!({"inputs": "logged"})).status(), 200);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let line = loop {
            let log = server.log();
            if let Some(line) = log.lines().find(|l| l.contains("request answered")) {
                break line.to_string();
            }
            assert!(std::time::Instant::now() < deadline, "no request line: {log}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let line: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(line["fields"]["status"], 200, "{line}");
        if spans {
            assert_eq!(line["span"]["http.route"], "/embed", "{line}");
            assert!(line["span"]["compute_tokens"].is_u64(), "{line}");
        } else {
            assert!(line.get("span").is_none() && line.get("spans").is_none(), "{line}");
        }
    }
}
