//! TEI's gRPC API (`tei.v1`) on the HTTP port, through a client generated from proto/tei.proto:
//! vectors and tokens against sentence-transformers' goldens, streams in order, errors as TEI's
//! status codes, the API key, health, reflection and metrics. Classifier and sparse calls are
//! tested in classifier.rs and splade.rs beside their JSON routes.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tessera_integration_tests::grpc::{
    self as pb, embed_client::EmbedClient, info_client::InfoClient, predict_client::PredictClient,
    rerank_client::RerankClient, tokenize_client::TokenizeClient,
};
use tessera_integration_tests::reference::vectors;
use tessera_integration_tests::{all_messages, assert_parity, block_on, golden, minilm, Server};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};

fn embed_request(text: &str) -> pb::EmbedRequest {
    pb::EmbedRequest {
        inputs: text.to_string(),
        truncate: true,
        ..Default::default()
    }
}

fn error_code(status: &Status) -> &str {
    status
        .metadata()
        .get("tessera-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[test]
fn grpc_calls_answer_as_sentence_transformers() {
    let Some(golden) = golden("reference/golden_minilm.json") else {
        return;
    };
    let texts: Vec<String> = serde_json::from_value(golden["texts"].clone()).unwrap();
    let want = vectors(&golden["embeddings"]);
    let want_raw = vectors(&golden["embeddings_mean_unnormalized"]);
    let server = Server::start(&minilm(), &[]);
    // The JSON routes' answers first: the blocking HTTP client cannot run inside the runtime.
    let info_json: Value = server.get("/info").json().unwrap();
    let want_ids: Vec<u32> = serde_json::from_value(golden["token_ids"][3].clone()).unwrap();
    let http_tokens: Vec<Vec<Value>> = server.post("/tokenize", &json!({ "inputs": texts[3] })).json().unwrap();
    let http_text: Vec<String> = server
        .post("/decode", &json!({ "ids": [want_ids], "skip_special_tokens": true }))
        .json()
        .unwrap();
    block_on(async {
        let channel = server.grpc_channel().await;
        let mut embed = EmbedClient::new(channel.clone());

        let response = embed.embed(embed_request(&texts[0])).await.unwrap();
        let header = |name: &str| response.metadata().get(name).unwrap().to_str().unwrap().to_string();
        assert_eq!(header("x-compute-type"), "cpu");
        let tokens = golden["token_counts"][0].as_u64().unwrap();
        assert_eq!(header("x-compute-tokens"), tokens.to_string());
        let message = response.into_inner();
        assert_parity(&message.embeddings, &want[0], "unary Embed");
        let metadata = message.metadata.unwrap();
        assert_eq!(u64::from(metadata.compute_tokens), tokens);
        assert_eq!(metadata.compute_chars as usize, texts[0].chars().count());
        assert!(metadata.total_time_ns >= metadata.inference_time_ns && metadata.inference_time_ns > 0);

        let raw = pb::EmbedRequest {
            normalize: Some(false),
            ..embed_request(&texts[1])
        };
        let raw = embed.embed(raw).await.unwrap().into_inner();
        assert_parity(&raw.embeddings, &want_raw[1], "Embed normalize: false");

        // Matryoshka: the first components of the raw vector, normalized again.
        let short = pb::EmbedRequest {
            dimensions: Some(128),
            ..embed_request(&texts[1])
        };
        let short = embed.embed(short).await.unwrap().into_inner().embeddings;
        let head = &want_raw[1][..128];
        let norm = head.iter().map(|x| x * x).sum::<f32>().sqrt();
        let head: Vec<f32> = head.iter().map(|x| x / norm).collect();
        assert_parity(&short, &head, "Embed dimensions: 128");

        // Every golden text through one stream: answered in order.
        let requests: Vec<pb::EmbedRequest> = texts.iter().map(|t| embed_request(t)).collect();
        let answers = embed.embed_stream(tokio_stream::iter(requests)).await.unwrap();
        let got: Vec<Vec<f32>> = all_messages(answers.into_inner())
            .await
            .into_iter()
            .map(|a| a.embeddings)
            .collect();
        assert_eq!(got.len(), texts.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_parity(g, w, &format!("EmbedStream message {i}"));
        }

        // Every token's vector: the mean of EmbedAll's is the unnormalized mean-pooled vector.
        let all = pb::EmbedAllRequest {
            inputs: texts[2].clone(),
            truncate: true,
            ..Default::default()
        };
        let all = embed.embed_all(all).await.unwrap().into_inner().token_embeddings;
        assert_eq!(all.len() as u64, golden["token_counts"][2].as_u64().unwrap());
        let mean: Vec<f32> = (0..384)
            .map(|d| all.iter().map(|t| t.embeddings[d]).sum::<f32>() / all.len() as f32)
            .collect();
        assert_parity(&mean, &want_raw[2], "EmbedAll mean");

        let mut tokenize = TokenizeClient::new(channel.clone());
        let encoded = pb::EncodeRequest {
            inputs: texts[3].clone(),
            add_special_tokens: true,
            prompt_name: None,
        };
        let tokens = tokenize.tokenize(encoded).await.unwrap().into_inner().tokens;
        let ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
        assert_eq!(ids, want_ids);
        assert!(tokens[0].special && !tokens[1].special);
        for (t, h) in tokens.iter().zip(&http_tokens[0]) {
            assert_eq!(
                (json!(t.text), json!(t.start), json!(t.stop)),
                (h["text"].clone(), h["start"].clone(), h["stop"].clone())
            );
        }
        let decode = pb::DecodeRequest {
            ids: ids.clone(),
            skip_special_tokens: true,
        };
        let text = tokenize.decode(decode).await.unwrap().into_inner().text;
        assert_eq!(text, http_text[0]);
        let requests: Vec<pb::DecodeRequest> = (0..3)
            .map(|i| pb::DecodeRequest {
                ids: want_ids[..=i].to_vec(),
                skip_special_tokens: false,
            })
            .collect();
        let answers = tokenize.decode_stream(tokio_stream::iter(requests)).await.unwrap();
        let decoded: Vec<String> = all_messages(answers.into_inner())
            .await
            .into_iter()
            .map(|a| a.text)
            .collect();
        assert_eq!(decoded.len(), 3);
        assert!(decoded[0] == "[CLS]" && decoded[2].starts_with("[CLS]"), "{decoded:?}");

        let info = InfoClient::new(channel)
            .info(pb::InfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.model_type, pb::ModelType::Embedding as i32);
        assert_eq!(json!(info.model_id), info_json["model_id"]);
        assert_eq!(json!(info.max_input_length), info_json["max_input_length"]);
        assert_eq!(json!(info.max_batch_tokens), info_json["max_batch_tokens"]);
        assert_eq!(json!(info.version), info_json["version"]);
    });
}

/// Adds the API key to every call, as TEI's clients send it.
fn with_key(
    channel: Channel,
) -> EmbedClient<tonic::service::interceptor::InterceptedService<Channel, impl tonic::service::Interceptor>> {
    EmbedClient::with_interceptor(channel, |mut request: Request<()>| {
        request
            .metadata_mut()
            .insert("authorization", "Bearer sekret".parse().unwrap());
        Ok(request)
    })
}

fn counter(server: &Server, line_start: &str) -> f64 {
    let text = server.get("/metrics").text().unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn grpc_refusals_carry_tei_status_codes() {
    let server = Server::start(&minilm(), &["--api-key", "sekret", "--auto-truncate", "false"]);
    block_on(async {
        let channel = server.grpc_channel().await;

        // The services need the key; health and reflection do not, as /health does not.
        let refused = EmbedClient::new(channel.clone())
            .embed(embed_request("hello"))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        assert_eq!(error_code(&refused), "unauthorized");
        let mut health = HealthClient::new(channel.clone());
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = |service: &str| {
            let mut health = health.clone();
            let service = service.to_string();
            async move {
                health
                    .check(HealthCheckRequest { service })
                    .await
                    .unwrap()
                    .into_inner()
                    .status
            }
        };
        while status("tei.v1.Embed").await != ServingStatus::Serving as i32 {
            assert!(Instant::now() < deadline, "tei.v1.Embed never reported SERVING");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status("").await, ServingStatus::Serving as i32);
        assert_eq!(status("tei.v1.Tokenize").await, ServingStatus::Serving as i32);
        assert_eq!(status("tei.v1.Rerank").await, ServingStatus::NotServing as i32);
        let unknown = health
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);

        let services = reflected_services(channel.clone()).await;
        for service in [
            "tei.v1.Embed",
            "tei.v1.Info",
            "tei.v1.Predict",
            "tei.v1.Rerank",
            "tei.v1.Tokenize",
        ] {
            assert!(services.iter().any(|s| s == service), "{service} in {services:?}");
        }
    });
    let success = || counter(&server, "te_request_success{method=\"single\"}");
    let before = success();
    block_on(async {
        let channel = server.grpc_channel().await;
        with_key(channel).embed(embed_request("hello")).await.unwrap();
    });
    assert_eq!(success() - before, 1.0, "one gRPC call, one te_request_success");
    block_on(async {
        let channel = server.grpc_channel().await;
        let mut embed = with_key(channel.clone());

        let cases: [(pb::EmbedRequest, Code, &str); 4] = [
            (
                pb::EmbedRequest {
                    prompt_name: Some("nope".into()),
                    ..embed_request("hello")
                },
                Code::InvalidArgument,
                "prompt-name-unknown",
            ),
            (
                pb::EmbedRequest {
                    truncation_direction: 7,
                    ..embed_request("hello")
                },
                Code::InvalidArgument,
                "invalid-request",
            ),
            (
                pb::EmbedRequest {
                    dimensions: Some(0),
                    ..embed_request("hello")
                },
                Code::InvalidArgument,
                "dimensions-invalid",
            ),
            // proto3's `truncate: false` is unset: --auto-truncate (false here) decides.
            (
                pb::EmbedRequest {
                    truncate: false,
                    ..embed_request(&"word ".repeat(300))
                },
                Code::InvalidArgument,
                "input-too-long",
            ),
        ];
        for (request, code, tessera_code) in cases {
            let status = embed.embed(request).await.unwrap_err();
            assert_eq!((status.code(), error_code(&status)), (code, tessera_code), "{status:?}");
        }
        let truncated = embed.embed(embed_request(&"word ".repeat(300))).await.unwrap();
        assert_eq!(truncated.metadata().get("x-compute-tokens").unwrap(), "256");

        // A failing message ends its stream with that message's status, after the answers before it.
        let requests = vec![
            embed_request("first"),
            pb::EmbedRequest {
                prompt_name: Some("nope".into()),
                ..embed_request("second")
            },
            embed_request("third"),
        ];
        let mut answers = embed
            .embed_stream(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        assert!(answers.message().await.unwrap().is_some());
        let status = answers.message().await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);

        // Calls for another kind of model: FAILED_PRECONDITION, as TEI answers them.
        let key = |mut request: Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", "Bearer sekret".parse().unwrap());
            Ok(request)
        };
        let mut rerank = RerankClient::with_interceptor(channel.clone(), key);
        let status = rerank
            .rerank(pb::RerankRequest {
                query: "q".into(),
                texts: vec!["t".into()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), error_code(&status)),
            (Code::FailedPrecondition, "wrong-model-type")
        );
        let mut predict = PredictClient::with_interceptor(channel, key);
        let status = predict
            .predict_pair(pb::PredictPairRequest {
                inputs: vec!["a".into(), "b".into(), "c".into()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::FailedPrecondition,
            "the model's kind is checked first"
        );
    });
}

/// The services the server lists through gRPC reflection (what grpcurl asks first).
async fn reflected_services(channel: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse, ServerReflectionRequest,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    match answers.message().await.unwrap().and_then(|r| r.message_response) {
        Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("no service list: {other:?}"),
    }
}

#[test]
fn stream_messages_wait_for_room_under_max_concurrent_requests() {
    let server = Server::start(
        &minilm(),
        &["--max-concurrent-requests", "1", "--max-client-batch-size", "1"],
    );
    block_on(async {
        let channel = server.grpc_channel().await;
        let mut embed = EmbedClient::new(channel);
        // 24 messages, all sent at once: with room for one input, each waits its turn.
        let requests: Vec<pb::EmbedRequest> = (0..24).map(|i| embed_request(&format!("text number {i}"))).collect();
        let answers = embed.embed_stream(tokio_stream::iter(requests)).await.unwrap();
        let answers = all_messages(answers.into_inner()).await;
        assert_eq!(answers.len(), 24);
        assert!(answers.iter().all(|a| a.embeddings.len() == 384));
    });
}

/// What a client could send instead of an `EmbedRequest`: `inputs` as raw bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct RawEmbedRequest {
    #[prost(bytes = "vec", tag = "1")]
    inputs: Vec<u8>,
}

#[test]
fn malformed_and_oversized_messages_are_refused_and_serving_goes_on() {
    let server = Server::start(&minilm(), &[]);
    block_on(async {
        let channel = server.grpc_channel().await;
        // Not UTF-8 where the proto says `string`: the message does not decode.
        let mut raw = tonic::client::Grpc::new(channel.clone());
        raw.ready().await.unwrap();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/tei.v1.Embed/Embed");
        let codec = tonic_prost::ProstCodec::<RawEmbedRequest, pb::EmbedResponse>::default();
        let request = Request::new(RawEmbedRequest {
            inputs: vec![0xff, 0xfe, 0x00],
        });
        let status = raw.unary(request, path, codec).await.unwrap_err();
        assert!(status.message().contains("decode"), "{status:?}");

        // Over gRPC's 4 MiB per message.
        let mut embed = EmbedClient::new(channel);
        let huge = embed_request(&"a".repeat(5 << 20));
        let status = embed.embed(huge).await.unwrap_err();
        assert!(
            matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
            "{status:?}"
        );

        let answer = embed.embed(embed_request("still serving")).await.unwrap();
        assert_eq!(answer.into_inner().embeddings.len(), 384);
    });
}

/// SIGTERM while a stream is open: no new calls, but the open stream's messages (even those
/// sent after the signal) are answered until the client closes it, then the server exits 0.
#[test]
fn a_stream_open_at_shutdown_is_answered_to_its_end() {
    let mut server = Server::start(&minilm(), &[]);
    block_on(async {
        let channel = server.grpc_channel().await;
        let mut embed = EmbedClient::new(channel.clone());
        let (messages, outbox) = tokio::sync::mpsc::channel(8);
        let mut answers = embed
            .embed_stream(tokio_stream::wrappers::ReceiverStream::new(outbox))
            .await
            .unwrap()
            .into_inner();
        messages.send(embed_request("before the signal")).await.unwrap();
        assert!(answers.message().await.unwrap().is_some());
        server.terminate();
        tokio::time::sleep(Duration::from_millis(300)).await;
        for i in 0..3 {
            messages
                .send(embed_request(&format!("after the signal, {i}")))
                .await
                .unwrap();
            let answer = answers.message().await.unwrap().expect("an answer");
            assert_eq!(answer.embeddings.len(), 384);
        }
        drop(messages);
        assert!(
            answers.message().await.unwrap().is_none(),
            "the stream ends when the client's does"
        );
    });
    server.assert_exits_cleanly(Duration::from_secs(20));
}
