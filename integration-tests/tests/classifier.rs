//! `/predict` and `/rerank` on classification checkpoints built from bert-tiny (a `bert.` prefix,
//! its pooler, and a random `classifier`), checked against the pooler and classifier computed
//! here from `/embed_all`'s [CLS] vector and the weights themselves.

use std::path::Path;

use serde_json::{json, Map, Value};
use tessera_integration_tests::grpc::{
    self as pb, embed_client::EmbedClient, info_client::InfoClient, predict_client::PredictClient,
    rerank_client::RerankClient,
};
use tessera_integration_tests::{all_messages, block_on, shared_model, Server};
use tonic::Code;
use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};

struct Weights {
    pooler_w: Vec<f32>,
    pooler_b: Vec<f32>,
    classifier_w: Vec<f32>,
    classifier_b: Vec<f32>,
}

/// Writes a `BertForSequenceClassification` copy of a 32-wide shared model (bert-tiny; jina-tiny
/// gives a JinaBERT reranker) with `labels` outputs.
fn build_from(model: &str, dir: &Path, labels: &[&str]) -> Weights {
    let source = shared_model(model).unwrap();
    for name in ["tokenizer.json", "special_tokens_map.json", "tokenizer_config.json"] {
        std::fs::copy(source.join(name), dir.join(name)).unwrap();
    }
    let mut config: Map<String, Value> =
        serde_json::from_slice(&std::fs::read(source.join("config.json")).unwrap()).unwrap();
    config.insert("architectures".into(), json!(["BertForSequenceClassification"]));
    let id2label: Map<String, Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), json!(l)))
        .collect();
    config.insert("id2label".into(), Value::Object(id2label));
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();

    let bytes = std::fs::read(source.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut data = bytes[8 + n..].to_vec();
    let read = |name: &str| -> Vec<f32> {
        let e = &header[name]["data_offsets"];
        let (b, end) = (e[0].as_u64().unwrap() as usize, e[1].as_u64().unwrap() as usize);
        bytes[8 + n + b..8 + n + end]
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let mut out = Map::new();
    for (name, entry) in &header {
        if name != "__metadata__" {
            out.insert(format!("bert.{name}"), entry.clone());
        }
    }
    let k = labels.len();
    let classifier_w: Vec<f32> = (0..k * 32).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let classifier_b: Vec<f32> = (0..k).map(|i| i as f32 * 0.1 - 0.05).collect();
    for (name, shape, values) in [
        ("classifier.weight", vec![k, 32], &classifier_w),
        ("classifier.bias", vec![k], &classifier_b),
    ] {
        let start = data.len();
        data.extend(values.iter().flat_map(|x| x.to_le_bytes()));
        out.insert(
            name.into(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let h = serde_json::to_vec(&out).unwrap();
    let mut file = (h.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&h);
    file.extend_from_slice(&data);
    std::fs::write(dir.join("model.safetensors"), file).unwrap();
    Weights {
        pooler_w: read("pooler.dense.weight"),
        pooler_b: read("pooler.dense.bias"),
        classifier_w,
        classifier_b,
    }
}

fn logits(w: &Weights, cls: &[f32], k: usize) -> Vec<f64> {
    let pooled: Vec<f64> = (0..32)
        .map(|o| {
            let dot: f64 = (0..32)
                .map(|c| f64::from(w.pooler_w[o * 32 + c]) * f64::from(cls[c]))
                .sum();
            (dot + f64::from(w.pooler_b[o])).tanh()
        })
        .collect();
    (0..k)
        .map(|o| {
            (0..32)
                .map(|c| f64::from(w.classifier_w[o * 32 + c]) * pooled[c])
                .sum::<f64>()
                + f64::from(w.classifier_b[o])
        })
        .collect()
}

/// A classifier built from `model` with `labels`, served; `None` after a skip when `model` is
/// missing. The directory lives as long as the server.
fn serve(model: &str, labels: &[&str]) -> Option<(Weights, Server, tempfile::TempDir)> {
    shared_model(model)?;
    let dir = tempfile::tempdir().unwrap();
    let weights = build_from(model, dir.path(), labels);
    let server = Server::start(dir.path(), &[]);
    Some((weights, server, dir))
}

fn cls_vector(server: &Server, input: Value) -> Vec<f32> {
    let tokens: Vec<Vec<Vec<f32>>> = server.post("/embed_all", &json!({ "inputs": input })).json().unwrap();
    tokens[0][0].clone()
}

#[test]
fn predict_matches_pooler_and_classifier() {
    let labels = ["negative", "neutral", "positive"];
    let Some((w, server, _dir)) = serve("bert-tiny", &labels) else {
        return;
    };
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(info["model_type"]["classifier"]["id2label"]["2"], "positive");

    let text = "What a wonderful day";
    let want = logits(&w, &cls_vector(&server, json!(text)), 3);
    let max = want.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = want.iter().map(|l| (l - max).exp()).sum();
    let got: Vec<Value> = server.post("/predict", &json!({ "inputs": text })).json().unwrap();
    assert_eq!(got.len(), 3);
    let scores: Vec<f64> = got.iter().map(|p| p["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "sorted by score");
    for p in &got {
        let i = labels.iter().position(|l| *l == p["label"]).unwrap();
        let expected = (want[i] - max).exp() / sum;
        assert!(
            (p["score"].as_f64().unwrap() - expected).abs() < 1e-4,
            "{p} vs {expected}"
        );
    }
    let raw: Vec<Value> = server
        .post("/predict", &json!({ "inputs": text, "raw_scores": true }))
        .json()
        .unwrap();
    for p in &raw {
        let i = labels.iter().position(|l| *l == p["label"]).unwrap();
        assert!((p["score"].as_f64().unwrap() - want[i]).abs() < 1e-4);
    }

    // A pair is one input; a list of inputs is a batch.
    let pair: Vec<Value> = server
        .post("/predict", &json!({ "inputs": ["first text", "second text"] }))
        .json()
        .unwrap();
    assert_eq!(pair.len(), 3);
    let batch: Vec<Vec<Value>> = server
        .post("/predict", &json!({ "inputs": ["one", ["a", "b"], "three"] }))
        .json()
        .unwrap();
    assert_eq!(batch.len(), 3);
    assert_eq!(server.post("/predict", &json!({ "inputs": [] })).status(), 400);
    assert_eq!(server.post("/predict", &json!({ "inputs": [["a"]] })).status(), 422);
    // An embedding route on a classifier is refused clearly.
    let r = server.post("/embed", &json!({ "inputs": "x" }));
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().unwrap()["code"], "wrong-model-type");
    // POST / goes to /predict for a classifier.
    let root: Vec<Value> = server.post("/", &json!({ "inputs": text })).json().unwrap();
    assert_eq!(root.len(), 3);
}

#[test]
fn rerank_sorts_by_sigmoid_of_the_single_logit() {
    let Some((w, server, _dir)) = serve("bert-tiny", &["LABEL_0"]) else {
        return;
    };
    let info: Value = server.get("/info").json().unwrap();
    assert!(info["model_type"].get("reranker").is_some(), "{}", info["model_type"]);

    let texts = ["a guitar", "the stock market", "an acoustic guitar player"];
    let ranks: Vec<Value> = server
        .post(
            "/rerank",
            &json!({ "query": "music", "texts": texts, "return_text": true }),
        )
        .json()
        .unwrap();
    assert_eq!(ranks.len(), 3);
    let scores: Vec<f64> = ranks.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
    for r in &ranks {
        let index = r["index"].as_u64().unwrap() as usize;
        assert_eq!(r["text"], texts[index]);
        assert!((0.0..=1.0).contains(&r["score"].as_f64().unwrap()));
    }
    let raw: Vec<Value> = server
        .post(
            "/rerank",
            &json!({ "query": "music", "texts": texts, "raw_scores": true }),
        )
        .json()
        .unwrap();
    for r in &raw {
        assert!(r.get("text").is_none());
        let index = r["index"].as_u64().unwrap() as usize;
        let sig = 1.0 / (1.0 + (-r["score"].as_f64().unwrap()).exp());
        let ranked = ranks
            .iter()
            .find(|x| x["index"].as_u64() == Some(index as u64))
            .unwrap();
        assert!((sig - ranked["score"].as_f64().unwrap()).abs() < 1e-5);
    }
    assert_eq!(
        server.post("/rerank", &json!({ "query": "q", "texts": [] })).status(),
        400
    );
    drop(w);
}

#[test]
fn a_jina_bert_reranker_scores_pairs_through_its_pooler() {
    let Some((w, server, _dir)) = serve("jina-tiny", &["LABEL_0"]) else {
        return;
    };
    let info: Value = server.get("/info").json().unwrap();
    assert!(
        info["architecture"].as_str().unwrap().starts_with("jina-bert"),
        "{}",
        info["architecture"]
    );
    assert!(info["model_type"].get("reranker").is_some());
    let text = "a single text";
    let want = logits(&w, &cls_vector(&server, json!(text)), 1)[0];
    let got: Vec<Value> = server
        .post("/predict", &json!({ "inputs": text, "raw_scores": true }))
        .json()
        .unwrap();
    assert!(
        (got[0]["score"].as_f64().unwrap() - want).abs() < 1e-4,
        "{} vs {want}",
        got[0]["score"]
    );
    let ranks: Vec<Value> = server
        .post("/rerank", &json!({ "query": "q", "texts": ["a", "b"] }))
        .json()
        .unwrap();
    assert_eq!(ranks.len(), 2);
}

/// gRPC's `Predict`, `PredictPair` and their streams on a classifier: the scores of the pooler
/// and classifier computed here, the pair as `/predict` scores it.
#[test]
fn grpc_predictions_score_as_the_classifier() {
    let labels = ["negative", "neutral", "positive"];
    let Some((w, server, _dir)) = serve("bert-tiny", &labels) else {
        return;
    };
    let text = "What a wonderful day";
    let want = logits(&w, &cls_vector(&server, json!(text)), 3);
    let pair = ["first text", "second text"];
    let http_pair: Vec<Value> = server.post("/predict", &json!({ "inputs": pair })).json().unwrap();
    let (probabilities, raw, pairs, refused) = block_on(async {
        let channel = server.grpc_channel().await;
        let mut predict = PredictClient::new(channel.clone());
        let request = |raw_scores| pb::PredictRequest {
            inputs: text.into(),
            raw_scores,
            ..Default::default()
        };
        let probabilities = predict.predict(request(false)).await.unwrap().into_inner();
        let mut answers = predict
            .predict_stream(tokio_stream::iter([request(true)]))
            .await
            .unwrap()
            .into_inner();
        let raw = answers.message().await.unwrap().unwrap();
        let pair_request = pb::PredictPairRequest {
            inputs: pair.map(String::from).to_vec(),
            ..Default::default()
        };
        let mut pairs = vec![predict.predict_pair(pair_request.clone()).await.unwrap().into_inner()];
        let answers = predict
            .predict_pair_stream(tokio_stream::iter([pair_request.clone(), pair_request]))
            .await
            .unwrap();
        pairs.extend(all_messages(answers.into_inner()).await);
        let three = pb::PredictPairRequest {
            inputs: vec!["a".into(), "b".into(), "c".into()],
            ..Default::default()
        };
        let refused = [
            predict.predict_pair(three).await.unwrap_err().code(),
            EmbedClient::new(channel.clone())
                .embed(pb::EmbedRequest::default())
                .await
                .unwrap_err()
                .code(),
            RerankClient::new(channel)
                .rerank(pb::RerankRequest {
                    query: "q".into(),
                    texts: vec!["t".into()],
                    ..Default::default()
                })
                .await
                .unwrap_err()
                .code(),
        ];
        (probabilities, raw, pairs, refused)
    });
    let max = want.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = want.iter().map(|l| (l - max).exp()).sum();
    assert_eq!(probabilities.predictions.len(), 3);
    assert!(probabilities.predictions.windows(2).all(|p| p[0].score >= p[1].score));
    for p in &probabilities.predictions {
        let i = labels.iter().position(|l| *l == p.label).unwrap();
        let expected = (want[i] - max).exp() / sum;
        assert!((f64::from(p.score) - expected).abs() < 1e-4, "{p:?} vs {expected}");
    }
    for p in &raw.predictions {
        let i = labels.iter().position(|l| *l == p.label).unwrap();
        assert!((f64::from(p.score) - want[i]).abs() < 1e-4, "{p:?} vs {}", want[i]);
    }
    assert_eq!(pairs.len(), 3);
    for answer in &pairs {
        for (p, h) in answer.predictions.iter().zip(&http_pair) {
            assert_eq!(p.label, h["label"]);
            assert!((f64::from(p.score) - h["score"].as_f64().unwrap()).abs() < 1e-6);
        }
    }
    // Three texts are no pair; a classifier has no vectors and no single relevance score.
    assert_eq!(
        refused,
        [
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::FailedPrecondition
        ]
    );
}

/// gRPC's `Rerank` and `RerankStream` on a one-output reranker rank as `/rerank` does.
#[test]
fn grpc_reranking_ranks_as_the_json_route() {
    let Some((_weights, server, _dir)) = serve("bert-tiny", &["LABEL_0"]) else {
        return;
    };
    let texts = ["a guitar", "the stock market", "an acoustic guitar player"];
    let http: Vec<Value> = server
        .post(
            "/rerank",
            &json!({ "query": "music", "texts": texts, "raw_scores": true }),
        )
        .json()
        .unwrap();
    let (unary, streamed, empty) = block_on(async {
        let channel = server.grpc_channel().await;
        // A reranker: Info says so, and health reports Predict and Rerank serving, Embed not.
        let info = InfoClient::new(channel.clone()).info(pb::InfoRequest {}).await.unwrap();
        assert_eq!(info.into_inner().model_type, pb::ModelType::Reranker as i32);
        let mut health = HealthClient::new(channel.clone());
        for (service, want) in [
            ("tei.v1.Rerank", ServingStatus::Serving),
            ("tei.v1.Predict", ServingStatus::Serving),
            ("tei.v1.Embed", ServingStatus::NotServing),
        ] {
            let request = HealthCheckRequest {
                service: service.into(),
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                let got = health.check(request.clone()).await.unwrap().into_inner().status;
                if got == want as i32 {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{service}: {got}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        let mut rerank = RerankClient::new(channel);
        let request = pb::RerankRequest {
            query: "music".into(),
            texts: texts.map(String::from).to_vec(),
            raw_scores: true,
            return_text: true,
            ..Default::default()
        };
        let unary = rerank.rerank(request).await.unwrap().into_inner();
        // `raw_scores` and `return_text` are read from the first message.
        let pairs: Vec<pb::RerankStreamRequest> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| pb::RerankStreamRequest {
                query: "music".into(),
                text: t.to_string(),
                raw_scores: i == 0,
                return_text: i == 0,
                ..Default::default()
            })
            .collect();
        let streamed = rerank
            .rerank_stream(tokio_stream::iter(pairs))
            .await
            .unwrap()
            .into_inner();
        let empty = rerank
            .rerank_stream(tokio_stream::iter(Vec::<pb::RerankStreamRequest>::new()))
            .await
            .unwrap_err();
        (unary, streamed, empty)
    });
    for answer in [&unary, &streamed] {
        assert_eq!(answer.ranks.len(), 3);
        for (rank, h) in answer.ranks.iter().zip(&http) {
            assert_eq!(u64::from(rank.index), h["index"].as_u64().unwrap());
            assert!((f64::from(rank.score) - h["score"].as_f64().unwrap()).abs() < 1e-6);
            assert_eq!(rank.text.as_deref(), Some(texts[rank.index as usize]));
        }
    }
    assert_eq!(
        streamed.metadata.unwrap().compute_tokens,
        unary.metadata.unwrap().compute_tokens
    );
    assert_eq!(empty.code(), Code::InvalidArgument, "{empty:?}");
}
