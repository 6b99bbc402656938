//! Serving options beyond the defaults: API key, dtypes, sharded weights, long ALiBi inputs.

use std::path::Path;

use serde_json::{json, Value};
use tessera_integration_tests::{compare, golden, minilm, shared_model, Server};

#[test]
fn api_key_guards_inference_routes_only() {
    let server = Server::start(&minilm(), &["--api-key", "s3cret"]);
    let client = reqwest::blocking::Client::new();
    let embed = |auth: Option<&str>| {
        let mut r = client
            .post(format!("{}/embed", server.url))
            .json(&json!({"inputs": "hi"}));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send().unwrap()
    };
    let r = embed(None);
    assert_eq!(r.status(), 401);
    let body: Value = r.json().unwrap();
    assert_eq!(body["error_type"], "Unauthorized");
    assert_eq!(embed(Some("Bearer wrong")).status(), 401);
    assert_eq!(embed(Some("Bearer s3cre")).status(), 401);
    assert_eq!(embed(Some("Basic s3cret")).status(), 401);
    assert_eq!(embed(Some("Bearer s3cret")).status(), 200);
    // Every inference route docs/http-api.md lists, before its body is even read.
    for route in [
        "/",
        "/embed_all",
        "/embed_sparse",
        "/embed_multi_vector",
        "/similarity",
        "/predict",
        "/rerank",
        "/tokenize",
        "/decode",
        "/v1/embeddings",
        "/embeddings",
        "/invocations",
        "/vertex",
    ] {
        let r = client
            .post(format!("{}{route}", server.url))
            .json(&json!({"inputs": "hi"}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 401, "{route}");
    }
    assert_eq!(server.get("/health").status(), 200);
    assert_eq!(server.get("/info").status(), 200);
}

#[test]
fn float16_stays_close_to_float32() {
    let Some(golden) = golden("reference/golden_minilm.json") else {
        return;
    };
    let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings"].clone()).unwrap();
    // bfloat16, packed on CPUs with AVX512_BF16, has its own bound in narrow_dtypes.rs.
    let server = Server::start(&minilm(), &["--dtype", "float16"]);
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(info["model_dtype"], "float16");
    let texts: Vec<Value> = golden["texts"].as_array().unwrap()[..8].to_vec();
    for (i, g) in server.embed(&Value::from(texts)).iter().enumerate() {
        let (_, cos) = compare(g, &want[i]);
        assert!(cos > 0.99, "float16 text {i}: cosine {cos}");
    }
}

fn write_shards(from: &Path, to: &Path) {
    // Splits the single safetensors file into two shards plus an index, by header surgery.
    let bytes = std::fs::read(from.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut names: Vec<&String> = header.keys().filter(|k| *k != "__metadata__").collect();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [first, second].iter().enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", i + 1);
        let mut out_header = serde_json::Map::new();
        let mut out_data = Vec::new();
        for name in part.iter() {
            let entry = &header[*name];
            let (b, e) = (
                entry["data_offsets"][0].as_u64().unwrap() as usize,
                entry["data_offsets"][1].as_u64().unwrap() as usize,
            );
            let start = out_data.len();
            out_data.extend_from_slice(&data[b..e]);
            let mut entry = entry.clone();
            entry["data_offsets"] = json!([start, out_data.len()]);
            out_header.insert((*name).clone(), entry);
            weight_map.insert((*name).clone(), json!(file));
        }
        let h = serde_json::to_vec(&out_header).unwrap();
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&h);
        out.extend_from_slice(&out_data);
        std::fs::write(to.join(&file), out).unwrap();
    }
    std::fs::write(
        to.join("model.safetensors.index.json"),
        json!({"metadata": {}, "weight_map": weight_map}).to_string(),
    )
    .unwrap();
}

#[test]
fn sharded_safetensors_serve_the_same_vectors() {
    let Some(model) = shared_model("bert-tiny") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&model).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        if path.is_dir() {
            std::fs::create_dir_all(dir.path().join(&name)).unwrap();
            for inner in std::fs::read_dir(&path).unwrap() {
                let inner = inner.unwrap().path();
                std::fs::copy(&inner, dir.path().join(&name).join(inner.file_name().unwrap())).unwrap();
            }
        } else if name != "model.safetensors" {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    write_shards(&model, dir.path());
    let golden: Value = serde_json::from_slice(&std::fs::read(model.join("golden.json")).unwrap()).unwrap();
    let server = Server::start(dir.path(), &[]);
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(info["backend"], "flash");
    let got: Vec<Vec<f32>> = server
        .post("/embed", &json!({"inputs": golden["texts"][1]}))
        .json()
        .unwrap();
    let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings"].clone()).unwrap();
    tessera_integration_tests::assert_parity(&got[0], &want[1], "sharded");
}

#[test]
fn jina_embeds_an_input_of_8192_tokens() {
    let Some(model) = shared_model("jina-tiny") else {
        return;
    };
    let server = Server::start(&model, &["--max-batch-tokens", "8192"]);
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(info["max_input_length"], 8192);
    // 8190 single-token ids between [CLS] and [SEP].
    let mut ids = vec![101u32];
    ids.extend((0..8190).map(|i| 1000 + (i * 7919) % 20000));
    ids.push(102);
    let r = server.post("/embed", &json!({"inputs": ids}));
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-compute-tokens"], "8192");
    let v: Vec<Vec<f32>> = r.json().unwrap();
    assert!(v[0].iter().all(|x| x.is_finite()));
    ids.push(7);
    assert_eq!(
        server
            .post("/embed", &json!({"inputs": ids, "truncate": false}))
            .status(),
        422
    );
}

#[test]
fn pytorch_model_bin_serves_the_same_vectors() {
    let Some(model) = shared_model("bert-tiny") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "config.json",
        "tokenizer.json",
        "modules.json",
        "sentence_bert_config.json",
    ] {
        std::fs::copy(model.join(name), dir.path().join(name)).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("1_Pooling")).unwrap();
    std::fs::copy(
        model.join("1_Pooling/config.json"),
        dir.path().join("1_Pooling/config.json"),
    )
    .unwrap();
    let script = tessera_integration_tests::workspace().join("integration-tests/fixtures/safetensors_to_pth.py");
    let status = std::process::Command::new("python3")
        .arg(script)
        .arg(model.join("model.safetensors"))
        .arg(dir.path().join("pytorch_model.bin"))
        .status()
        .unwrap();
    assert!(status.success());
    let golden: Value = serde_json::from_slice(&std::fs::read(model.join("golden.json")).unwrap()).unwrap();
    let server = Server::start(dir.path(), &[]);
    let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings"].clone()).unwrap();
    let texts: Vec<Value> = golden["texts"].as_array().unwrap()[..32].to_vec();
    let got: Vec<Vec<f32>> = server.post("/embed", &json!({"inputs": texts})).json().unwrap();
    assert_eq!(got.len(), 32);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        tessera_integration_tests::assert_parity(g, w, &format!("pytorch_model.bin text {i}"));
    }
}

#[test]
fn cors_allows_the_configured_origin_with_auth_and_json_headers() {
    let server = Server::start(
        &minilm(),
        &["--cors-allow-origin", "https://app.example", "--api-key", "k"],
    );
    let client = reqwest::blocking::Client::new();
    let preflight = client
        .request(reqwest::Method::OPTIONS, format!("{}/embed", server.url))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    let allowed = h["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    let r = client
        .post(format!("{}/embed", server.url))
        .header("origin", "https://app.example")
        .header("authorization", "Bearer k")
        .json(&json!({"inputs": "hi"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example");
    let other = client
        .get(format!("{}/health", server.url))
        .header("origin", "https://evil.example")
        .send()
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}
