//! Hub model ids against a mock hub on loopback: download and serve, cache reuse, the hub gone,
//! offline mode, revision pinning, sharded weights, 401/404 messages, slow and stalled downloads,
//! and `validate-model` reading only the safetensors headers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tessera_integration_tests::mock_hub::{Delivery, MockHub, MockRepo, MockRevision};
use tessera_integration_tests::{assert_parity, reference, run_with_env, shared_model, Safetensors, Server};

const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";
const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2";

/// A private cache and the hub's variables, none inherited from the machine running the tests.
struct Env {
    cache: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl Env {
    fn new(hub_url: &str) -> Env {
        let cache = tempfile::tempdir().unwrap();
        let vars = vec![
            ("HF_ENDPOINT".into(), hub_url.into()),
            (
                "HUGGINGFACE_HUB_CACHE".into(),
                cache.path().join("hub").display().to_string(),
            ),
            ("HF_HOME".into(), cache.path().join("home").display().to_string()),
            ("HF_TOKEN".into(), String::new()),
            ("HUGGING_FACE_HUB_TOKEN".into(), String::new()),
            ("HF_HUB_OFFLINE".into(), String::new()),
        ];
        Env { cache, vars }
    }

    fn with<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut vars: Vec<(&str, &str)> = self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        vars.extend_from_slice(extra);
        vars
    }

    fn repo_dir(&self, id: &str) -> PathBuf {
        self.cache
            .path()
            .join("hub")
            .join(format!("models--{}", id.replace('/', "--")))
    }
}

fn golden(model: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(model.join("golden.json")).unwrap()).unwrap()
}

fn assert_serves_golden(server: &Server, model: &Path, texts: usize) {
    let golden = golden(model);
    let texts: Vec<Value> = golden["texts"].as_array().unwrap()[..texts].to_vec();
    let got: Vec<Vec<f32>> = server.post("/embed", &json!({ "inputs": texts })).json().unwrap();
    let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings"].clone()).unwrap();
    for (i, g) in got.iter().enumerate() {
        assert_parity(g, &want[i], &format!("text {i}"));
    }
}

fn info(server: &Server) -> Value {
    server.get("/info").json().unwrap()
}

#[test]
fn downloads_serves_and_reuses_the_cache_even_when_the_hub_is_gone() {
    let Some(model) = shared_model("bert-tiny") else { return };
    let id = "tessera-test/bert-tiny";
    let hub = MockHub::start(vec![MockRepo::new(id, SHA_A, &model)]);
    let env = Env::new(&hub.url);

    let server = Server::start_with_env(Path::new(id), &[], &env.with(&[]));
    assert_serves_golden(&server, &model, 8);
    let info = info(&server);
    assert_eq!(
        (info["model_id"].as_str(), info["model_sha"].as_str()),
        (Some(id), Some(SHA_A))
    );
    drop(server);
    let weights = std::fs::metadata(model.join("model.safetensors")).unwrap().len();
    // The whole file, plus the one byte of hf-hub's metadata probe (`Range: bytes=0-0`).
    assert_eq!(hub.bytes_sent("model.safetensors"), weights + 1);
    assert_eq!(
        hub.bytes_sent("golden.json"),
        0,
        "only what serving reads is downloaded"
    );
    let repo = env.repo_dir(id);
    assert_eq!(std::fs::read_to_string(repo.join("refs/main")).unwrap().trim(), SHA_A);
    assert!(repo
        .join("snapshots")
        .join(SHA_A)
        .join("1_Pooling/config.json")
        .is_file());

    // A second start asks the hub which commit `main` is, and downloads nothing.
    let server = Server::start_with_env(Path::new(id), &[], &env.with(&[]));
    assert_serves_golden(&server, &model, 2);
    drop(server);
    assert_eq!(
        hub.bytes_sent("model.safetensors"),
        weights + 1,
        "weights were downloaded again"
    );

    // The hub stops answering: the cached commit is served, with a warning.
    drop(hub);
    let server = Server::start_with_env(Path::new(id), &[], &env.with(&[]));
    assert_serves_golden(&server, &model, 2);
    assert_eq!(info_sha(&server), SHA_A);
    let log = server.log();
    assert!(
        log.contains("cannot be reached") && log.contains("from the cache"),
        "{log}"
    );
}

fn info_sha(server: &Server) -> String {
    info(server)["model_sha"].as_str().unwrap_or_default().to_string()
}

#[test]
fn offline_mode_makes_no_request_and_explains_a_cache_miss() {
    let Some(model) = shared_model("bert-tiny") else { return };
    let id = "tessera-test/bert-tiny";
    let hub = MockHub::start(vec![MockRepo::new(id, SHA_A, &model)]);
    let env = Env::new(&hub.url);

    let offline = env.with(&[("HF_HUB_OFFLINE", "1")]);
    let out = run_with_env(&["serve", "--model-id", id, "--port", "0"], &offline);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let looked_in = env.repo_dir(id).display().to_string();
    for needle in [
        id,
        "HF_HUB_OFFLINE",
        looked_in.as_str(),
        "local model directory",
        "hf download",
    ] {
        assert!(err.contains(needle), "`{needle}` missing from: {err}");
    }
    assert_eq!(hub.requests(), 0, "offline mode reached the network");

    drop(Server::start_with_env(Path::new(id), &[], &env.with(&[])));
    let before = hub.requests();
    let server = Server::start_with_env(Path::new(id), &[], &offline);
    assert_serves_golden(&server, &model, 4);
    assert_eq!(info_sha(&server), SHA_A);
    assert_eq!(hub.requests(), before, "offline mode reached the network");
}

#[test]
fn revisions_branches_tags_prs_and_shas_are_pinned() {
    let (Some(bert), Some(jina)) = (shared_model("bert-tiny"), shared_model("jina-tiny")) else {
        return;
    };
    let id = "tessera-test/evolving";
    let mut repo = MockRepo::new(id, SHA_A, &bert);
    repo.revisions.push(MockRevision {
        names: vec!["v2.0".into(), "refs/pr/1".into()],
        sha: SHA_B.into(),
        dir: jina.clone(),
    });
    let hub = MockHub::start(vec![repo]);
    let env = Env::new(&hub.url);

    let server = Server::start_with_env(Path::new(id), &["--revision", "refs/pr/1"], &env.with(&[]));
    assert_serves_golden(&server, &jina, 4);
    assert_eq!(info_sha(&server), SHA_B);
    drop(server);
    let refs = env.repo_dir(id).join("refs");
    assert_eq!(std::fs::read_to_string(refs.join("refs/pr/1")).unwrap().trim(), SHA_B);

    for (revision, sha, architecture) in [("main", SHA_A, "bert"), ("v2.0", SHA_B, "jina"), (SHA_A, SHA_A, "bert")] {
        let out = run_with_env(
            &["validate-model", id, "--revision", revision, "--json"],
            &env.with(&[]),
        );
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{revision}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(out.status.code(), Some(0), "{revision}: {report}");
        assert_eq!(report["sha"], sha, "{revision}");
        let arch = report["architecture"].as_str().unwrap().to_lowercase();
        assert!(arch.contains(architecture), "{revision}: {arch}");
    }
}

/// bert-tiny with its weights split into two shards and an index.
fn sharded_copy(model: &Path, dir: &Path) {
    for entry in std::fs::read_dir(model).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if path.is_dir() {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            for inner in std::fs::read_dir(&path).unwrap() {
                let inner = inner.unwrap().path();
                std::fs::copy(&inner, dir.join(name).join(inner.file_name().unwrap())).unwrap();
            }
        } else if name != "model.safetensors" {
            std::fs::copy(&path, dir.join(name)).unwrap();
        }
    }
    let whole = Safetensors::read(&model.join("model.safetensors"));
    let names: Vec<String> = whole.header.keys().cloned().collect();
    let mut weight_map = serde_json::Map::new();
    for (i, half) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", i + 1);
        let mut shard = Safetensors {
            header: serde_json::Map::new(),
            data: Vec::new(),
        };
        for name in half {
            let shape: Vec<usize> = serde_json::from_value(whole.header[name]["shape"].clone()).unwrap();
            shard.push(name, &shape, &whole.f32(name));
            weight_map.insert(name.clone(), json!(file));
        }
        shard.write(&dir.join(&file));
    }
    let index = json!({"metadata": {"total_size": whole.data.len()}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

#[test]
fn sharded_weights_are_downloaded_and_served() {
    let Some(model) = shared_model("bert-tiny") else { return };
    let dir = tempfile::tempdir().unwrap();
    sharded_copy(&model, dir.path());
    let id = "tessera-test/sharded";
    let hub = MockHub::start(vec![MockRepo::new(id, SHA_A, dir.path())]);
    let env = Env::new(&hub.url);

    let server = Server::start_with_env(Path::new(id), &[], &env.with(&[]));
    assert_serves_golden(&server, &model, 8);
    let log = server.log();
    for shard in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"] {
        assert!(hub.bytes_sent(shard) > 0, "{shard} not downloaded");
        assert!(log.contains(&format!("downloaded {shard}")), "{log}");
    }
}

#[test]
fn private_missing_and_wrong_revisions_say_what_to_do() {
    let Some(model) = shared_model("bert-tiny") else { return };
    let mut private = MockRepo::new("tessera-test/private", SHA_A, &model);
    private.token = Some("hf_secret".into());
    let hub = MockHub::start(vec![private, MockRepo::new("tessera-test/public", SHA_A, &model)]);
    let env = Env::new(&hub.url);
    let validate = |args: &[&str], extra: &[(&str, &str)]| {
        let out = run_with_env(&[&["validate-model"], args].concat(), &env.with(extra));
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };

    let (code, err) = validate(&["tessera-test/private"], &[]);
    assert_eq!(code, Some(2), "{err}");
    for needle in [
        "tessera-test/private",
        "HTTP 401",
        "private or gated",
        "--hf-token",
        "HF_TOKEN",
    ] {
        assert!(err.contains(needle), "`{needle}` missing from: {err}");
    }
    let (code, err) = validate(&["tessera-test/private"], &[("HF_TOKEN", "hf_wrong")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("not accepted"), "{err}");
    assert!(!err.contains("hf_wrong"), "the token leaked into the message: {err}");
    let (code, err) = validate(&["tessera-test/private"], &[("HF_TOKEN", "hf_secret")]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = validate(&["tessera-test/private", "--hf-token", "hf_secret"], &[]);
    assert_eq!(code, Some(0), "{err}");

    let (code, err) = validate(&["tessera-test/nothing-here"], &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("tessera-test/nothing-here does not exist") && err.contains("HTTP 404"),
        "{err}"
    );
    let (code, err) = validate(&["tessera-test/public", "--revision", "v9"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("revision `v9` does not exist"), "{err}");
    let (code, err) = validate(&["./no/such/dir"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no such directory"), "{err}");

    // TEI's own token variable, which TEI deployments set, reaches the hub as `--hf-token` does.
    let extra = [("HF_API_TOKEN", "hf_secret")];
    let server = Server::start_with_env(Path::new("tessera-test/private"), &[], &env.with(&extra));
    assert_serves_golden(&server, &model, 2);
}

#[test]
fn slow_downloads_report_progress_and_stalled_ones_time_out() {
    let Some(model) = shared_model("bert-tiny") else { return };
    let mut slow = MockRepo::new("tessera-test/slow", SHA_A, &model);
    // bert-tiny's 4 MB in 16 KiB pieces: about seven seconds.
    slow.delivery = Delivery::Throttled(Duration::from_millis(25));
    let mut stalled = MockRepo::new("tessera-test/stalled", SHA_A, &model);
    stalled.delivery = Delivery::Stalled;
    let hub = MockHub::start(vec![slow, stalled]);
    let env = Env::new(&hub.url);

    let server = Server::start_with_env(Path::new("tessera-test/slow"), &[], &env.with(&[]));
    assert_serves_golden(&server, &model, 2);
    let log = server.log();
    assert!(
        log.contains("downloading tessera-test/slow@") && log.contains("MiB (") && log.contains("files done"),
        "no periodic progress line: {log}"
    );

    let started = Instant::now();
    let out = run_with_env(
        &[
            "serve",
            "--model-id",
            "tessera-test/stalled",
            "--hub-timeout",
            "2",
            "--port",
            "0",
        ],
        &env.with(&[]),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("stalled") && err.contains("--hub-timeout"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn validate_model_reads_only_the_safetensors_header() {
    let Some(model) = shared_model("bert-tiny") else { return };
    let id = "tessera-test/bert-tiny";
    let hub = MockHub::start(vec![MockRepo::new(id, SHA_A, &model)]);
    let env = Env::new(&hub.url);

    let out = run_with_env(&["validate-model", id, "--json"], &env.with(&[]));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(
        (report["model"].as_str(), report["sha"].as_str()),
        (Some(id), Some(SHA_A))
    );
    let tensors = report["weights"]["tensors"].as_u64().unwrap();
    assert!(tensors > 20, "{report}");
    assert_eq!(
        report["weights"]["files"][0],
        format!("{id}@{}/model.safetensors", &SHA_A[..12])
    );
    let sent = hub.bytes_sent("model.safetensors");
    let header = 8 + u64::from_le_bytes(
        std::fs::read(model.join("model.safetensors")).unwrap()[..8]
            .try_into()
            .unwrap(),
    );
    assert_eq!(sent, header, "validate-model downloaded more than the header");
    // Nothing of the preflight is left where a later `serve` would take it for the weights.
    assert!(!env
        .repo_dir(id)
        .join("snapshots")
        .join(SHA_A)
        .join("model.safetensors")
        .exists());
}

/// `tessera download`: what serving reads lands in the hub cache (nothing more), the snapshot
/// directory is printed alone on stdout, the token of a private repository appears nowhere in
/// the output even at the most verbose log level, and `serve` then runs offline from the cache.
#[test]
fn download_fetches_what_serving_reads_never_shows_the_token_and_serve_runs_offline() {
    let Some(model) = shared_model("bert-tiny") else { return };
    let id = "tessera-test/private";
    let token = "hf_never_printed_1234";
    let mut private = MockRepo::new(id, SHA_A, &model);
    private.token = Some(token.into());
    let hub = MockHub::start(vec![private]);
    let env = Env::new(&hub.url);
    let download = |args: &[&str], extra: &[(&str, &str)]| {
        let vars = [extra, &[("RUST_LOG", "trace")][..]].concat();
        let out = run_with_env(&[&["download", id], args].concat(), &env.with(&vars));
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            !stdout.contains(token) && !stderr.contains(token),
            "the token leaked: {stdout}\n{stderr}"
        );
        (out.status.code(), stdout, stderr)
    };

    let (code, _, stderr) = download(&[], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("HTTP 401") && stderr.contains("--hf-token"), "{stderr}");

    let (code, stdout, stderr) = download(&["--hf-token", token], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let snapshot = PathBuf::from(stdout.trim());
    assert_eq!(snapshot, env.repo_dir(id).join("snapshots").join(SHA_A));
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "1_Pooling/config.json",
    ] {
        assert!(snapshot.join(file).is_file(), "{file} missing");
    }
    assert_eq!(
        hub.bytes_sent("golden.json"),
        0,
        "only what serving reads is downloaded"
    );
    // The token from the environment, as an init container gets it: nothing downloaded again.
    let sent = hub.bytes_sent("model.safetensors");
    let (code, _, stderr) = download(&[], &[("HF_TOKEN", token)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(hub.bytes_sent("model.safetensors"), sent);

    // The hub gone and offline mode on: `serve` runs from what `download` fetched.
    drop(hub);
    let server = Server::start_with_env(Path::new(id), &[], &env.with(&[("HF_HUB_OFFLINE", "1")]));
    assert_serves_golden(&server, &model, 4);
}

/// Static embedding models have no config.json, and sentence-transformers 3 and 4 kept their
/// tokenizer.json and vectors in `0_StaticEmbedding/` (static-retrieval-mrl-en-v1): both
/// layouts download and serve, and a preflight reads the vectors' header only.
#[test]
fn static_models_download_from_the_hub_in_either_layout() {
    let in_module = reference::static_in_module_dir("static-tiny");
    let at_root = reference::model("model2vec-tiny");
    let repos = vec![
        MockRepo::new("tessera-test/static-st3", SHA_A, in_module.path()),
        MockRepo::new("tessera-test/model2vec", SHA_B, &at_root),
    ];
    let hub = MockHub::start(repos);
    let env = Env::new(&hub.url);

    let out = run_with_env(&["validate-model", "tessera-test/static-st3", "--json"], &env.with(&[]));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["architecture"], "static-embedding (511 tokens x 24)");
    let vectors = std::fs::metadata(in_module.path().join("0_StaticEmbedding/model.safetensors"))
        .unwrap()
        .len();
    assert!(
        hub.bytes_sent("0_StaticEmbedding/model.safetensors") < vectors,
        "a preflight fetches the header, not the vectors"
    );

    let server = Server::start_with_env(Path::new("tessera-test/static-st3"), &[], &env.with(&[]));
    assert_serves_golden(&server, in_module.path(), 8);
    drop(server);
    let server = Server::start_with_env(Path::new("tessera-test/model2vec"), &[], &env.with(&[]));
    let golden = golden(&at_root);
    let texts: Vec<Value> = golden["texts"].as_array().unwrap()[..8].to_vec();
    let got: Vec<Vec<f32>> = server
        .post("/embed", &json!({ "inputs": texts, "normalize": false }))
        .json()
        .unwrap();
    let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings"].clone()).unwrap();
    for (i, g) in got.iter().enumerate() {
        assert_parity(g, &want[i], &format!("model2vec text {i}"));
    }
}

/// `--dense-path` names a Dense module modules.json does not list (stella's `2_Dense_256` beside
/// its `2_Dense_1024`): `download` fetches it with the listed ones, and only the one asked for.
#[test]
fn download_fetches_the_dense_module_dense_path_names() {
    let Some(model) = shared_model("bert-tiny") else { return };
    let dir = tempfile::tempdir().unwrap();
    tessera_integration_tests::copy_dir(&model, dir.path());
    std::fs::write(
        dir.path().join("modules.json"),
        r#"[{"idx":0,"path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
            {"idx":2,"path":"2_Dense_8","type":"sentence_transformers.models.Dense"}]"#,
    )
    .unwrap();
    for (sub, out) in [("2_Dense_8", 8), ("2_Dense_4", 4), ("2_Dense_2", 2)] {
        let module = dir.path().join(sub);
        std::fs::create_dir_all(&module).unwrap();
        std::fs::write(
            module.join("config.json"),
            json!({"in_features": 128, "out_features": out, "bias": false}).to_string(),
        )
        .unwrap();
        let mut weights = Safetensors::default();
        weights.push("linear.weight", &[out, 128], &vec![0.5; out * 128]);
        weights.write(&module.join("model.safetensors"));
    }
    let id = "tessera-test/dense-sizes";
    let hub = MockHub::start(vec![MockRepo::new(id, SHA_A, dir.path())]);
    let env = Env::new(&hub.url);
    let out = run_with_env(&["download", id, "--dense-path", "2_Dense_4"], &env.with(&[]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let snapshot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    for file in [
        "2_Dense_8/model.safetensors",
        "2_Dense_4/config.json",
        "2_Dense_4/model.safetensors",
    ] {
        assert!(snapshot.join(file).is_file(), "{file} not fetched");
    }
    assert!(
        !snapshot.join("2_Dense_2").exists(),
        "a size nobody asked for was fetched"
    );
}
