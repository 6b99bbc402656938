//! The five services of `tei.v1`, each call one of the JSON routes' operations on one input:
//! the same checks, prompts, truncation, batching and metrics (`te_request_*`), only the wire
//! format differs. A stream's messages are answered in their order, up to
//! `--grpc-max-parallel-stream-requests` of them at once; they wait for room under
//! `--max-concurrent-requests` where a unary call is refused (`RESOURCE_EXHAUSTED`), as in TEI.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt, TryStreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::convert::{answer, direction, metadata, truncate};
use super::in_order::InOrder;
use super::pb;
use crate::http::counted::observed;
use crate::http::embed::{pooled_call, pooled_vectors, sparse_vectors, RunOptions};
use crate::http::error::{ApiError, ErrorCode};
use crate::http::info::ModelType;
use crate::http::{predict, similarity, tokenize, AppState};
use crate::infer::{Input, Room, Timings, Want};
use crate::metrics::Method;

/// The answers to a stream's messages, in their order; the first failure ends the stream with
/// its status (gRPC has no error message within a stream).
pub(crate) type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Every service of `tei.v1` over the server's state.
#[derive(Debug, Clone)]
pub(crate) struct Tei {
    state: AppState,
    /// Messages of one stream answered at once.
    parallel: usize,
}

/// A unary call's answer, or its status.
type Unary<T> = Result<Response<T>, Status>;

impl Tei {
    pub(crate) fn new(state: AppState, parallel: usize) -> Self {
        Self {
            state,
            parallel: parallel.max(1),
        }
    }

    /// Answers each message of `request` with `reply`, in order, `parallel` at once
    /// ([`InOrder`]).
    fn each<Req, Res, Fut>(
        &self,
        request: Request<Streaming<Req>>,
        reply: impl Fn(Tei, Req, Room) -> Fut + Send + Unpin + 'static,
    ) -> Response<Answers<Res>>
    where
        Req: Send + 'static,
        Res: Send + Unpin + 'static,
        Fut: Future<Output = Result<Res, ApiError>> + Send + 'static,
    {
        let this = self.clone();
        let answers = InOrder::new(request.into_inner(), self.parallel, move |message, room| {
            let work = message.map(|m| reply(this.clone(), m, room));
            async move {
                match work {
                    Ok(work) => work.await.map_err(Status::from),
                    Err(status) => Err(status),
                }
            }
        });
        Response::new(Box::pin(answers))
    }

    fn options(
        truncate_flag: bool,
        truncation_direction: i32,
        prompt_name: Option<String>,
        room: Room,
    ) -> Result<RunOptions, ApiError> {
        Ok(RunOptions {
            truncate: truncate(truncate_flag),
            truncation_direction: Some(direction(truncation_direction)?),
            prompt_name,
            task: None,
            room,
        })
    }

    async fn embed_one(self, r: pb::EmbedRequest, room: Room) -> Result<(pb::EmbedResponse, Timings), ApiError> {
        let started = Instant::now();
        observed(Method::Single, started, async {
            let options = Self::options(r.truncate, r.truncation_direction, r.prompt_name, room)?;
            let dimensions = r.dimensions.map(|d| d as usize);
            let inputs = || Ok(vec![Input::Text(r.inputs)]);
            let normalize = r.normalize.unwrap_or(true);
            let call = pooled_call(&self.state, Want::Pooled, inputs, options, normalize, dimensions)?;
            let (vectors, timings) = pooled_vectors(&self.state, call, started).await?;
            let embeddings = vectors.into_iter().next().unwrap_or_default();
            let message = pb::EmbedResponse {
                embeddings,
                metadata: Some(metadata(&timings)),
            };
            Ok((message, timings))
        })
        .await
    }

    async fn embed_sparse_one(
        self,
        r: pb::EmbedSparseRequest,
        room: Room,
    ) -> Result<(pb::EmbedSparseResponse, Timings), ApiError> {
        let started = Instant::now();
        observed(Method::Single, started, async {
            let options = Self::options(r.truncate, r.truncation_direction, r.prompt_name, room)?;
            let inputs = || Ok(vec![Input::Text(r.inputs)]);
            let call = pooled_call(&self.state, Want::Sparse, inputs, options, false, None)?;
            let (vectors, timings) = sparse_vectors(&self.state, call, started).await?;
            let sparse_embeddings = vectors
                .into_iter()
                .next()
                .unwrap_or_default()
                .into_iter()
                .map(|(index, value)| pb::SparseValue {
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    value,
                })
                .collect();
            let message = pb::EmbedSparseResponse {
                sparse_embeddings,
                metadata: Some(metadata(&timings)),
            };
            Ok((message, timings))
        })
        .await
    }

    async fn embed_all_one(
        self,
        r: pb::EmbedAllRequest,
        room: Room,
    ) -> Result<(pb::EmbedAllResponse, Timings), ApiError> {
        let started = Instant::now();
        observed(Method::Single, started, async {
            let options = Self::options(r.truncate, r.truncation_direction, r.prompt_name, room)?;
            let inputs = vec![Input::Text(r.inputs)];
            let (tokens, timings) = similarity::token_vectors(&self.state, inputs, options, started).await?;
            let token_embeddings = tokens
                .into_iter()
                .next()
                .unwrap_or_default()
                .into_iter()
                .map(|embeddings| pb::TokenEmbedding { embeddings })
                .collect();
            let message = pb::EmbedAllResponse {
                token_embeddings,
                metadata: Some(metadata(&timings)),
            };
            Ok((message, timings))
        })
        .await
    }

    /// One text or one pair through the classifier; `inputs` is called once the model's kind
    /// is checked, so a wrong model is reported before a malformed request, as on `/predict`.
    async fn predict_one(
        self,
        input: impl FnOnce() -> Result<Input, ApiError>,
        options: impl FnOnce() -> Result<RunOptions, ApiError>,
        raw_scores: bool,
    ) -> Result<(pb::PredictResponse, Timings), ApiError> {
        let started = Instant::now();
        observed(Method::Single, started, async {
            self.state.infer.accepts(Want::Logits)?;
            let inputs = vec![input()?];
            let (predictions, timings) =
                predict::predictions(&self.state, inputs, options()?, started, raw_scores).await?;
            let predictions = predictions
                .into_iter()
                .next()
                .unwrap_or_default()
                .into_iter()
                .map(|p| pb::Prediction {
                    score: p.score,
                    label: p.label,
                })
                .collect();
            let message = pb::PredictResponse {
                predictions,
                metadata: Some(metadata(&timings)),
            };
            Ok((message, timings))
        })
        .await
    }

    async fn predict_text(self, r: pb::PredictRequest, room: Room) -> Result<(pb::PredictResponse, Timings), ApiError> {
        let options = || Self::options(r.truncate, r.truncation_direction, None, room);
        self.predict_one(|| Ok(Input::Text(r.inputs)), options, r.raw_scores)
            .await
    }

    async fn predict_pair_one(
        self,
        r: pb::PredictPairRequest,
        room: Room,
    ) -> Result<(pb::PredictResponse, Timings), ApiError> {
        let options = || Self::options(r.truncate, r.truncation_direction, None, room);
        let input = || pair_input(r.inputs);
        self.predict_one(input, options, r.raw_scores).await
    }

    /// Scores pairs as they arrive, `parallel` at once, and answers once the client has sent
    /// them all: the ranks best first, `raw_scores` and `return_text` as the first message says.
    async fn rerank_pairs(
        self,
        pairs: Streaming<pb::RerankStreamRequest>,
    ) -> Result<(pb::RerankResponse, Timings), ApiError> {
        let started = Instant::now();
        let parallel = self.parallel;
        observed(Method::Batch, started, async move {
            self.state.infer.accepts(Want::Rerank)?;
            let mut first: Option<(bool, bool)> = None;
            let scored: Vec<Scored> = InOrder::new(pairs.enumerate(), parallel, |(index, message), room| {
                let this = self.clone();
                let message = message.map(|m| {
                    let (raw_scores, return_text) = *first.get_or_insert((m.raw_scores, m.return_text));
                    (m, raw_scores, return_text)
                });
                async move {
                    let (m, raw_scores, return_text) =
                        message.map_err(|s| ApiError::validation(ErrorCode::InvalidRequest, s.message()))?;
                    let options = Self::options(m.truncate, m.truncation_direction, None, room)?;
                    let texts = [m.text];
                    let (ranks, timings) =
                        predict::ranked(&this.state, &m.query, &texts, options, Instant::now(), raw_scores).await?;
                    let [text] = texts;
                    Ok::<_, ApiError>(Scored {
                        index,
                        score: ranks.first().map_or(f32::NAN, |&(_, s)| s),
                        text: return_text.then_some(text),
                        timings,
                    })
                }
            })
            // The first failure answers; the pairs still in flight are dropped (cancelled).
            .try_collect()
            .await?;
            let Some(timings) = combined(started, &scored) else {
                return Err(ApiError::empty("the stream sent no pairs to rerank"));
            };
            let mut ranks: Vec<pb::Rank> = scored
                .into_iter()
                .map(|s| pb::Rank {
                    index: u32::try_from(s.index).unwrap_or(u32::MAX),
                    text: s.text,
                    score: s.score,
                })
                .collect();
            ranks.sort_by(|a, b| b.score.total_cmp(&a.score));
            let message = pb::RerankResponse {
                ranks,
                metadata: Some(metadata(&timings)),
            };
            Ok((message, timings))
        })
        .await
    }

    async fn tokenize_one(self, r: pb::EncodeRequest) -> Result<pb::EncodeResponse, ApiError> {
        let tokens = tokenize::tokens_of(
            &self.state,
            vec![r.inputs],
            r.add_special_tokens,
            r.prompt_name.as_deref(),
        )
        .await?
        .into_iter()
        .next()
        .unwrap_or_default()
        .into_iter()
        .map(|t| pb::SimpleToken {
            id: t.id,
            text: t.text,
            special: t.special,
            start: t.start.map(|s| u32::try_from(s).unwrap_or(u32::MAX)),
            stop: t.stop.map(|s| u32::try_from(s).unwrap_or(u32::MAX)),
        })
        .collect();
        Ok(pb::EncodeResponse { tokens })
    }

    async fn decode_one(self, r: pb::DecodeRequest) -> Result<pb::DecodeResponse, ApiError> {
        let text = tokenize::decoded(&self.state, vec![r.ids], r.skip_special_tokens)
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        Ok(pb::DecodeResponse { text })
    }
}

/// One pair of a rerank stream, scored.
struct Scored {
    index: usize,
    score: f32,
    text: Option<String>,
    timings: Timings,
}

/// A stream's timings: characters and tokens summed, each stage the longest any pair spent in
/// it (as a batch's are); `None` for no pairs.
fn combined(started: Instant, scored: &[Scored]) -> Option<Timings> {
    let first = scored.first()?;
    let longest = |stage: fn(&Timings) -> Duration| scored.iter().map(|s| stage(&s.timings)).max();
    Some(Timings {
        started,
        characters: scored.iter().map(|s| s.timings.characters).sum(),
        tokens: scored.iter().map(|s| s.timings.tokens).sum(),
        tokenization: longest(|t| t.tokenization).unwrap_or_default(),
        queue: longest(|t| t.queue).unwrap_or_default(),
        inference: longest(|t| t.inference).unwrap_or_default(),
        compute_type: first.timings.compute_type,
    })
}

/// `PredictPair`'s `inputs`: one text, or a pair for a cross-encoder.
fn pair_input(mut inputs: Vec<String>) -> Result<Input, ApiError> {
    match inputs.len() {
        1 => Ok(Input::Text(inputs.remove(0))),
        2 => {
            let second = inputs.remove(1);
            Ok(Input::Pair(inputs.remove(0), second))
        }
        n => Err(ApiError::validation(
            ErrorCode::InvalidInputs,
            format!("`inputs` must hold one text or a pair of texts, got {n}"),
        )),
    }
}

/// The unary form of a call: metadata from its timings, errors as statuses.
fn unary<T>(result: Result<(T, Timings), ApiError>) -> Unary<T> {
    result
        .map(|(message, timings)| answer(message, &timings))
        .map_err(Status::from)
}

#[tonic::async_trait]
impl pb::info_server::Info for Tei {
    async fn info(&self, _request: Request<pb::InfoRequest>) -> Unary<pb::InfoResponse> {
        let info = &self.state.info;
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let model_type = match info.model_type {
            ModelType::Embedding { .. } => pb::ModelType::Embedding,
            ModelType::Classifier(_) => pb::ModelType::Classifier,
            ModelType::Reranker(_) => pb::ModelType::Reranker,
        };
        Ok(Response::new(pb::InfoResponse {
            version: info.version.to_string(),
            sha: info.sha.map(str::to_string),
            docker_label: info.docker_label.map(str::to_string),
            model_id: info.model_id.clone(),
            model_sha: info.model_sha.clone(),
            model_dtype: info.model_dtype.clone(),
            model_type: model_type.into(),
            max_concurrent_requests: count(info.max_concurrent_requests),
            max_input_length: count(info.max_input_length),
            max_batch_tokens: count(info.max_batch_tokens),
            max_batch_requests: info.max_batch_requests.map(count),
            max_client_batch_size: count(info.max_client_batch_size),
            tokenization_workers: count(info.tokenization_workers),
        }))
    }
}

#[tonic::async_trait]
impl pb::embed_server::Embed for Tei {
    async fn embed(&self, request: Request<pb::EmbedRequest>) -> Unary<pb::EmbedResponse> {
        unary(self.clone().embed_one(request.into_inner(), Room::Now).await)
    }

    type EmbedStreamStream = Answers<pb::EmbedResponse>;

    async fn embed_stream(&self, request: Request<Streaming<pb::EmbedRequest>>) -> Unary<Self::EmbedStreamStream> {
        Ok(self.each(
            request,
            |this, r, room| async move { Ok(this.embed_one(r, room).await?.0) },
        ))
    }

    async fn embed_sparse(&self, request: Request<pb::EmbedSparseRequest>) -> Unary<pb::EmbedSparseResponse> {
        unary(self.clone().embed_sparse_one(request.into_inner(), Room::Now).await)
    }

    type EmbedSparseStreamStream = Answers<pb::EmbedSparseResponse>;

    async fn embed_sparse_stream(
        &self,
        request: Request<Streaming<pb::EmbedSparseRequest>>,
    ) -> Unary<Self::EmbedSparseStreamStream> {
        Ok(self.each(request, |this, r, room| async move {
            Ok(this.embed_sparse_one(r, room).await?.0)
        }))
    }

    async fn embed_all(&self, request: Request<pb::EmbedAllRequest>) -> Unary<pb::EmbedAllResponse> {
        unary(self.clone().embed_all_one(request.into_inner(), Room::Now).await)
    }

    type EmbedAllStreamStream = Answers<pb::EmbedAllResponse>;

    async fn embed_all_stream(
        &self,
        request: Request<Streaming<pb::EmbedAllRequest>>,
    ) -> Unary<Self::EmbedAllStreamStream> {
        Ok(self.each(request, |this, r, room| async move {
            Ok(this.embed_all_one(r, room).await?.0)
        }))
    }
}

#[tonic::async_trait]
impl pb::predict_server::Predict for Tei {
    async fn predict(&self, request: Request<pb::PredictRequest>) -> Unary<pb::PredictResponse> {
        unary(self.clone().predict_text(request.into_inner(), Room::Now).await)
    }

    async fn predict_pair(&self, request: Request<pb::PredictPairRequest>) -> Unary<pb::PredictResponse> {
        unary(self.clone().predict_pair_one(request.into_inner(), Room::Now).await)
    }

    type PredictStreamStream = Answers<pb::PredictResponse>;

    async fn predict_stream(
        &self,
        request: Request<Streaming<pb::PredictRequest>>,
    ) -> Unary<Self::PredictStreamStream> {
        Ok(self.each(request, |this, r, room| async move {
            Ok(this.predict_text(r, room).await?.0)
        }))
    }

    type PredictPairStreamStream = Answers<pb::PredictResponse>;

    async fn predict_pair_stream(
        &self,
        request: Request<Streaming<pb::PredictPairRequest>>,
    ) -> Unary<Self::PredictPairStreamStream> {
        Ok(self.each(request, |this, r, room| async move {
            Ok(this.predict_pair_one(r, room).await?.0)
        }))
    }
}

#[tonic::async_trait]
impl pb::rerank_server::Rerank for Tei {
    async fn rerank(&self, request: Request<pb::RerankRequest>) -> Unary<pb::RerankResponse> {
        let r = request.into_inner();
        let started = Instant::now();
        let result = observed(Method::Batch, started, async {
            let options = Self::options(r.truncate, r.truncation_direction, None, Room::Now)?;
            let (ranks, timings) =
                predict::ranked(&self.state, &r.query, &r.texts, options, started, r.raw_scores).await?;
            let ranks = ranks
                .into_iter()
                .map(|(index, score)| pb::Rank {
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    text: r.return_text.then(|| r.texts[index].clone()),
                    score,
                })
                .collect();
            let message = pb::RerankResponse {
                ranks,
                metadata: Some(metadata(&timings)),
            };
            Ok((message, timings))
        })
        .await;
        unary(result)
    }

    async fn rerank_stream(&self, request: Request<Streaming<pb::RerankStreamRequest>>) -> Unary<pb::RerankResponse> {
        unary(self.clone().rerank_pairs(request.into_inner()).await)
    }
}

#[tonic::async_trait]
impl pb::tokenize_server::Tokenize for Tei {
    async fn tokenize(&self, request: Request<pb::EncodeRequest>) -> Unary<pb::EncodeResponse> {
        let message = self.clone().tokenize_one(request.into_inner()).await?;
        Ok(Response::new(message))
    }

    type TokenizeStreamStream = Answers<pb::EncodeResponse>;

    async fn tokenize_stream(
        &self,
        request: Request<Streaming<pb::EncodeRequest>>,
    ) -> Unary<Self::TokenizeStreamStream> {
        // No model run, so no room to wait for.
        Ok(self.each(request, |this, r, _room| this.tokenize_one(r)))
    }

    async fn decode(&self, request: Request<pb::DecodeRequest>) -> Unary<pb::DecodeResponse> {
        let message = self.clone().decode_one(request.into_inner()).await?;
        Ok(Response::new(message))
    }

    type DecodeStreamStream = Answers<pb::DecodeResponse>;

    async fn decode_stream(&self, request: Request<Streaming<pb::DecodeRequest>>) -> Unary<Self::DecodeStreamStream> {
        Ok(self.each(request, |this, r, _room| this.decode_one(r)))
    }
}
