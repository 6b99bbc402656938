//! `--pooling splade` and `/embed_sparse` on a masked-LM checkpoint built from bert-tiny (random
//! `cls.predictions.*`, decoder tied to the word embeddings), against the SPLADE formula computed
//! here from `/embed_all`'s hidden states and the weights.

use serde_json::{json, Map, Value};
use tessera_integration_tests::grpc::{embed_client::EmbedClient, EmbedSparseRequest};
use tessera_integration_tests::{all_messages, block_on, run, shared_model, Safetensors, Server};

#[test]
fn splade_vectors_match_the_formula() {
    let Some(source) = shared_model("bert-tiny") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for name in ["tokenizer.json", "special_tokens_map.json", "tokenizer_config.json"] {
        std::fs::copy(source.join(name), dir.path().join(name)).unwrap();
    }
    let mut config: Map<String, Value> =
        serde_json::from_slice(&std::fs::read(source.join("config.json")).unwrap()).unwrap();
    config.insert("architectures".into(), json!(["BertForMaskedLM"]));
    // ReLU keeps the reference below free of an erf implementation.
    config.insert("hidden_act".into(), json!("relu"));
    std::fs::write(dir.path().join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();

    let mut st = Safetensors::read(&source.join("model.safetensors"));
    let dense_w: Vec<f32> = (0..32 * 32).map(|i| ((i * 53 % 97) as f32 / 48.0) - 1.0).collect();
    let dense_b: Vec<f32> = (0..32).map(|i| (i % 5) as f32 * 0.1).collect();
    let ln_w: Vec<f32> = (0..32).map(|i| 1.0 + (i % 3) as f32 * 0.1).collect();
    let ln_b: Vec<f32> = (0..32).map(|i| (i % 4) as f32 * 0.05 - 0.1).collect();
    let bias: Vec<f32> = (0..30522).map(|i| ((i * 7 % 13) as f32 / 6.0) - 1.5).collect();
    st.push("cls.predictions.transform.dense.weight", &[32, 32], &dense_w);
    st.push("cls.predictions.transform.dense.bias", &[32], &dense_b);
    st.push("cls.predictions.transform.LayerNorm.weight", &[32], &ln_w);
    st.push("cls.predictions.transform.LayerNorm.bias", &[32], &ln_b);
    st.push("cls.predictions.bias", &[30522], &bias);
    st.write(&dir.path().join("model.safetensors"));
    let embeddings = st.f32("embeddings.word_embeddings.weight");

    let server = Server::start(dir.path(), &["--pooling", "splade"]);
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(info["model_type"]["embedding"]["pooling"], "splade");
    assert_eq!(info["model_type"]["embedding"]["sparse"], true);

    let text = "sparse retrieval";
    let tokens: Vec<Vec<Vec<f32>>> = server.post("/embed_all", &json!({"inputs": text})).json().unwrap();
    let mut want = vec![0f64; 30522];
    for h in &tokens[0] {
        let t: Vec<f64> = (0..32)
            .map(|o| {
                ((0..32)
                    .map(|c| f64::from(dense_w[o * 32 + c]) * f64::from(h[c]))
                    .sum::<f64>()
                    + f64::from(dense_b[o]))
                .max(0.0)
            })
            .collect();
        let mean = t.iter().sum::<f64>() / 32.0;
        let var = t.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 32.0;
        let x: Vec<f64> = (0..32)
            .map(|c| (t[c] - mean) / (var + 1e-12).sqrt() * f64::from(ln_w[c]) + f64::from(ln_b[c]))
            .collect();
        for (v, slot) in want.iter_mut().enumerate() {
            let logit: f64 =
                (0..32).map(|c| f64::from(embeddings[v * 32 + c]) * x[c]).sum::<f64>() + f64::from(bias[v]);
            *slot = slot.max((1.0 + logit.max(0.0)).ln());
        }
    }

    let sparse: Vec<Vec<Value>> = server.post("/embed_sparse", &json!({"inputs": [text]})).json().unwrap();
    // TEI's default route (and SageMaker's) answers a SPLADE model with its sparse vector.
    for route in ["/", "/invocations"] {
        let answer: Vec<Vec<Value>> = server.post(route, &json!({"inputs": [text]})).json().unwrap();
        assert_eq!(answer, sparse, "{route}");
    }
    let nonzero = want.iter().filter(|v| **v > 0.0).count();
    assert!(
        nonzero > 0 && nonzero < 30522,
        "the test model should give a sparse vector ({nonzero})"
    );
    assert_eq!(sparse[0].len(), nonzero);
    for entry in &sparse[0] {
        let i = entry["index"].as_u64().unwrap() as usize;
        assert!(
            (entry["value"].as_f64().unwrap() - want[i]).abs() < 1e-3,
            "{entry} vs {}",
            want[i]
        );
    }
    // gRPC's EmbedSparse and its stream: the same entries, against the same formula.
    let (unary, streamed) = block_on(async {
        let mut client = EmbedClient::new(server.grpc_channel().await);
        let request = || EmbedSparseRequest {
            inputs: text.into(),
            ..Default::default()
        };
        let unary = client.embed_sparse(request()).await.unwrap().into_inner();
        let answers = client
            .embed_sparse_stream(tokio_stream::iter([request(), request()]))
            .await
            .unwrap();
        let streamed: Vec<_> = all_messages(answers.into_inner())
            .await
            .into_iter()
            .map(|a| a.sparse_embeddings)
            .collect();
        (unary.sparse_embeddings, streamed)
    });
    assert_eq!(unary.len(), nonzero);
    for entry in &unary {
        let want = want[entry.index as usize];
        assert!((f64::from(entry.value) - want).abs() < 1e-3, "{entry:?} vs {want}");
    }
    assert_eq!(streamed, [unary.clone(), unary]);
    let dense: Vec<Vec<f32>> = server
        .post("/embed", &json!({"inputs": text, "normalize": false}))
        .json()
        .unwrap();
    assert_eq!(dense[0].len(), 30522);

    let plain = Server::start(&source, &[]);
    assert_eq!(plain.post("/embed_sparse", &json!({"inputs": text})).status(), 422);
}

#[test]
fn splade_without_a_masked_lm_head_is_refused_before_loading() {
    let Some(source) = shared_model("bert-tiny") else {
        return;
    };
    let out = run(&[
        "serve",
        "--model-id",
        source.to_str().unwrap(),
        "--pooling",
        "splade",
        "--port",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("splade-needs-mlm-head") && err.contains("cls.predictions.transform.dense.weight"),
        "{err}"
    );
}
