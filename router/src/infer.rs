//! The path of one request from text to vectors: admission, tokenization, queue, model.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_core::{ColbertEncoder, ColbertSide, Encoded, TextTokenizer, TokenizeError, TruncationDirection};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::metrics;
use crate::queue::{Embedding, Job, JobError, JobOutput, OutputKind, Queue};

/// Why the inference service could not answer, in its own terms: HTTP maps it to a status,
/// an `error_type` and a code in one place (`From<InferError> for ApiError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InferError {
    /// More inputs in flight than `--max-concurrent-requests`.
    #[error("too many inputs in flight (--max-concurrent-requests); retry later")]
    Overloaded,
    /// An input over the maximum length, without truncation.
    #[error(
        "input {index} has {given} tokens, more than the maximum of {max}; pass `truncate: true` or start the server with --auto-truncate"
    )]
    TooLong { index: usize, given: usize, max: usize },
    /// A token id without a row in the embedding table.
    #[error("{0}")]
    TokenIdOutOfRange(String),
    /// An empty list of token ids.
    #[error("input {index} is an empty list of token ids")]
    EmptyTokenIds { index: usize },
    /// A text that tokenizes to nothing, for a model that cannot run an empty sequence.
    #[error("input {index} has no tokens: the text is empty or only whitespace, and the model's tokenizer adds no special tokens")]
    NoTokens { index: usize },
    /// The tokenizer failed on an input.
    #[error("{0}")]
    Tokenizer(String),
    /// The model failed on this input.
    #[error("{0}")]
    Backend(String),
    /// The model's output for this input holds NaN or infinity.
    #[error("the model produced NaN or infinity for this input")]
    NonFinite,
    /// The model thread is gone or the server is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// More inputs in one request than `--max-client-batch-size`.
    #[error("batch size {given} is larger than the maximum of {max} (--max-client-batch-size)")]
    BatchTooLarge { given: usize, max: usize },
    /// `prompt_name` names no prompt of the model.
    #[error("{0}")]
    PromptNameUnknown(String),
    /// `task` names no task adapter of the model.
    #[error("{0}")]
    TaskUnknown(String),
    /// The request asks for an output the served model does not produce.
    #[error("{0}")]
    WrongModelType(String),
}

/// What the served model produces; which requests it can answer follows from it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serves {
    /// Dense sentence vectors; with BGE-M3's lexical layer, its lexical weights for sparse
    /// requests; with its multi-vector layer, vectors per token for multi-vector requests.
    Embeddings { lexical: bool, multi_vector: bool },
    /// SPLADE vectors over the vocabulary (dense routes get them too, unsparsified).
    Sparse,
    /// Classifier logits over this many labels.
    Scores { labels: usize },
    /// Vectors per token only (a PyLate ColBERT model).
    MultiVector,
}

/// What a request asks of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// A sentence vector (`/embed`, `/similarity`, the OpenAI routes).
    Pooled,
    /// A SPLADE vector (`/embed_sparse`).
    Sparse,
    /// Every token's vector (`/embed_all`): any model has them.
    Tokens,
    /// Vectors per token of inputs encoded as that side (`/embed_multi_vector`).
    MultiVector(tessera_core::ColbertSide),
    /// Label scores (`/predict`).
    Logits,
    /// One relevance score per pair (`/rerank`).
    Rerank,
}

impl Want {
    /// The output the model thread computes for it on a model that `serves` it.
    fn output(self, serves: Serves) -> OutputKind {
        match (self, serves) {
            (Want::Sparse, Serves::Embeddings { lexical: true, .. }) => OutputKind::Lexical,
            (Want::Pooled | Want::Sparse, _) => OutputKind::Pooled,
            (Want::Tokens, _) => OutputKind::Tokens,
            (Want::MultiVector(side), _) => OutputKind::MultiVector(side),
            (Want::Logits | Want::Rerank, _) => OutputKind::Logits,
        }
    }
}

impl Serves {
    /// Whether this model can answer `want`; the error tells the client which route fits.
    pub(crate) fn check(self, want: Want) -> Result<(), InferError> {
        let refusal = match (self, want) {
            (_, Want::Tokens)
            | (Serves::Embeddings { .. } | Serves::Sparse, Want::Pooled)
            | (Serves::Sparse | Serves::Embeddings { lexical: true, .. }, Want::Sparse)
            | (Serves::Embeddings { multi_vector: true, .. } | Serves::MultiVector, Want::MultiVector(_))
            | (Serves::Scores { .. }, Want::Logits)
            | (Serves::Scores { labels: 1 }, Want::Rerank) => return Ok(()),
            (Serves::MultiVector, _) => {
                "the model is a ColBERT model: it gives vectors per token, on /embed_multi_vector".to_string()
            }
            (Serves::Scores { .. }, Want::Pooled | Want::Sparse | Want::MultiVector(_)) => {
                "the model is a classifier: use /predict (or /rerank for a reranker)".to_string()
            }
            (Serves::Embeddings { lexical: false, .. }, Want::Sparse) => {
                "the model does not serve sparse vectors: start it with --pooling splade on a *ForMaskedLM checkpoint, or serve a BGE-M3 model with its sparse_linear.pt"
                    .to_string()
            }
            (Serves::Embeddings { multi_vector: false, .. } | Serves::Sparse, Want::MultiVector(_)) => format!(
                "the model does not serve multi-vector output: serve a PyLate ColBERT model, or a BGE-M3 model with its {}",
                tessera_core::COLBERT_LINEAR
            ),
            (Serves::Embeddings { .. } | Serves::Sparse, Want::Logits | Want::Rerank) => {
                "the model is an embedding model, not a classifier: use /embed (or /similarity)".to_string()
            }
            (Serves::Scores { labels }, Want::Rerank) => {
                format!("the model classifies into {labels} labels; /rerank needs a one-output reranker: use /predict")
            }
        };
        Err(InferError::WrongModelType(refusal))
    }
}

/// Prompts from config_sentence_transformers.json and the server's defaults, and the model's
/// task adapters, which prompts of the same name select (jina-embeddings-v3's tasks are named
/// as its prompts).
#[derive(Debug, Clone, Default)]
pub(crate) struct Prompts {
    pub(crate) named: std::collections::BTreeMap<String, String>,
    /// Applied when a request names no prompt.
    pub(crate) default: Option<String>,
    /// The model's task adapters, in its order.
    pub(crate) tasks: Vec<String>,
    /// The adapter of the default prompt, where it names one.
    pub(crate) default_task: Option<usize>,
}

impl Prompts {
    /// The prompt text and task adapter of a request: `task` selects its adapter and (unless
    /// `prompt_name` names another prompt) the prompt of the same name; without it, a
    /// `prompt_name` that names a task selects that adapter too; neither: the defaults.
    pub(crate) fn for_request(
        &self,
        prompt_name: Option<&str>,
        task: Option<&str>,
    ) -> Result<(Option<String>, Option<usize>), InferError> {
        let index = |name: &str| self.tasks.iter().position(|t| t == name);
        match task {
            Some(task) => {
                let i = index(task).ok_or_else(|| {
                    InferError::TaskUnknown(match self.tasks.is_empty() {
                        true => format!("`task` {task:?}: the model has no task adapters"),
                        false => format!("`task` {task:?} is not one of the model's: {}", self.tasks.join(", ")),
                    })
                })?;
                let prompt = match prompt_name {
                    Some(name) => self.resolve(Some(name))?,
                    None => self.named.get(task).cloned(),
                };
                Ok((prompt, Some(i)))
            }
            None => Ok((
                self.resolve(prompt_name)?,
                match prompt_name {
                    Some(name) => index(name),
                    None => self.default_task,
                },
            )),
        }
    }

    /// The prompt text for a request's `prompt_name` (or the default), or the error listing the
    /// defined names.
    pub(crate) fn resolve(&self, name: Option<&str>) -> Result<Option<String>, InferError> {
        match name {
            None => Ok(self.default.clone()),
            Some(name) => self.named.get(name).cloned().map(Some).ok_or_else(|| {
                let available = if self.named.is_empty() {
                    "none: the model's config_sentence_transformers.json defines no prompts".to_string()
                } else {
                    self.named.keys().cloned().collect::<Vec<_>>().join(", ")
                };
                InferError::PromptNameUnknown(format!("prompt_name `{name}` is not defined (available: {available})"))
            }),
        }
    }
}

/// One input as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    /// Text, tokenized here (with the prompt prepended, if any).
    Text(String),
    /// Token ids, used exactly as given.
    Ids(Vec<u32>),
    /// A text pair for a cross-encoder (`[CLS] a [SEP] b [SEP]`); prompts are not applied.
    Pair(String, String),
}

/// What a route asks of the model, in the service's terms.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) inputs: Vec<Input>,
    /// A prompt of the model's `config_sentence_transformers.json`; `None`: the default.
    pub(crate) prompt_name: Option<String>,
    /// A task adapter of the model, by name.
    pub(crate) task: Option<String>,
    /// The request's `truncate`; `None`: `--auto-truncate`.
    pub(crate) truncate: Option<bool>,
    pub(crate) direction: TruncationDirection,
    pub(crate) want: Want,
    /// When the request arrived, for the timings.
    pub(crate) started: Instant,
    /// How it gets room under `--max-concurrent-requests`.
    pub(crate) room: Room,
}

/// How a request gets its room under `--max-concurrent-requests`.
#[derive(Debug, Default)]
pub(crate) enum Room {
    /// Refused with [`InferError::Overloaded`] when there is none (HTTP, unary gRPC calls).
    #[default]
    Now,
    /// Waits until room frees (a gRPC stream's messages, which queue as in TEI). The sender is
    /// dropped once the request holds its room or has failed: the stream reads its next message
    /// only then.
    Wait(tokio::sync::oneshot::Sender<()>),
}

/// How over-long inputs are handled for one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Truncation {
    pub(crate) enabled: bool,
    pub(crate) direction: TruncationDirection,
}

/// Timings and counts of one request, for the response headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timings {
    pub(crate) started: Instant,
    pub(crate) characters: usize,
    pub(crate) tokens: usize,
    pub(crate) tokenization: Duration,
    pub(crate) queue: Duration,
    pub(crate) inference: Duration,
    /// Where the model ran, for `x-compute-type`.
    pub(crate) compute_type: &'static str,
}

/// Inputs admitted and not yet answered; dropping it (response sent, or client gone) frees them.
#[derive(Debug)]
pub(crate) struct Admission {
    _permit: OwnedSemaphorePermit,
    inputs: u32,
}

impl Drop for Admission {
    fn drop(&mut self) {
        metrics::inflight_inputs(-f64::from(self.inputs));
    }
}

/// What an [`Infer`] is built from.
pub(crate) struct InferParts {
    pub(crate) tokenizer: TextTokenizer,
    pub(crate) queue: Arc<Queue>,
    /// Cleared by the model thread when it stops.
    pub(crate) healthy: Arc<AtomicBool>,
    /// `--max-concurrent-requests`.
    pub(crate) max_inflight_inputs: usize,
    /// `--tokenization-workers`.
    pub(crate) tokenization_workers: usize,
    /// Rows of the embedding table: token ids must be below it.
    pub(crate) vocab_size: usize,
    /// Whether the model can run a sequence of no tokens ([`tessera_core::BackendDescription`]).
    pub(crate) empty_sequences: bool,
    /// The pooling config's `include_prompt`.
    pub(crate) include_prompt: bool,
    /// `cpu` or `gpu`.
    pub(crate) compute_type: &'static str,
    /// `--max-client-batch-size`.
    pub(crate) max_client_batch_size: usize,
    /// `--auto-truncate`.
    pub(crate) auto_truncate: bool,
    /// The model's prompts and the server's default.
    pub(crate) prompts: Prompts,
    /// What the model produces.
    pub(crate) serves: Serves,
    /// A PyLate ColBERT model's encoding of queries and documents.
    pub(crate) colbert: Option<ColbertEncoder>,
}

/// Cloneable handle the HTTP layer uses to run inference.
#[derive(Debug, Clone)]
pub(crate) struct Infer {
    pub(crate) tokenizer: TextTokenizer,
    queue: Arc<Queue>,
    admission: Arc<Semaphore>,
    /// `--max-concurrent-requests`: the admission's permits.
    max_inflight_inputs: usize,
    tokenization: Arc<Semaphore>,
    healthy: Arc<AtomicBool>,
    vocab_size: usize,
    empty_sequences: bool,
    /// The pooling config's `include_prompt` (default true).
    include_prompt: bool,
    /// `cpu` or `gpu`, for `x-compute-type`.
    pub(crate) compute_type: &'static str,
    /// `--max-client-batch-size`.
    max_client_batch_size: usize,
    /// `--auto-truncate`.
    auto_truncate: bool,
    /// The model's prompts and the server's default.
    pub(crate) prompts: Arc<Prompts>,
    /// What the model produces: the one place requests are matched against it.
    serves: Serves,
    /// A PyLate ColBERT model's encoding: multi-vector requests are tokenized by it.
    colbert: Option<Arc<ColbertEncoder>>,
}

impl Infer {
    pub(crate) fn new(parts: InferParts) -> Self {
        Self {
            tokenizer: parts.tokenizer,
            queue: parts.queue,
            admission: Arc::new(Semaphore::new(parts.max_inflight_inputs)),
            max_inflight_inputs: parts.max_inflight_inputs,
            tokenization: Arc::new(Semaphore::new(parts.tokenization_workers.max(1))),
            healthy: parts.healthy,
            vocab_size: parts.vocab_size,
            empty_sequences: parts.empty_sequences,
            include_prompt: parts.include_prompt,
            compute_type: parts.compute_type,
            max_client_batch_size: parts.max_client_batch_size,
            auto_truncate: parts.auto_truncate,
            prompts: Arc::new(parts.prompts),
            serves: parts.serves,
            colbert: parts.colbert.map(Arc::new),
        }
    }

    /// Whether the model can answer `want`. [`Infer::process`] checks it first; routes that parse
    /// a body call it before parsing, so a request to the wrong model is told so before anything
    /// else.
    pub(crate) fn accepts(&self, want: Want) -> Result<(), InferError> {
        self.serves.check(want)
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    /// Reserves room for `inputs` inputs until the guard is dropped, or answers 429.
    pub(crate) fn admit(&self, inputs: usize) -> Result<Admission, InferError> {
        let n = u32::try_from(inputs).unwrap_or(u32::MAX);
        let permit = self
            .admission
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| InferError::Overloaded)?;
        metrics::inflight_inputs(f64::from(n));
        Ok(Admission {
            _permit: permit,
            inputs: n,
        })
    }

    /// Reserves room for `inputs` inputs once it frees; more than `--max-concurrent-requests`
    /// could never fit and are refused at once.
    async fn admit_waiting(&self, inputs: usize) -> Result<Admission, InferError> {
        if inputs > self.max_inflight_inputs {
            return Err(InferError::Overloaded);
        }
        let n = u32::try_from(inputs).unwrap_or(u32::MAX);
        let permit = self
            .admission
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| InferError::Unavailable("the server is shutting down".into()))?;
        metrics::inflight_inputs(f64::from(n));
        Ok(Admission {
            _permit: permit,
            inputs: n,
        })
    }

    /// Tokenizes every input on a blocking thread (bounded by --tokenization-workers).
    pub(crate) async fn tokenize(
        &self,
        inputs: Vec<Input>,
        prompt: Option<String>,
        truncation: Truncation,
    ) -> Result<Vec<Encoded>, InferError> {
        let limits = Limits {
            vocab_size: self.vocab_size,
            empty_sequences: self.empty_sequences,
        };
        let exclude_prompt = !self.include_prompt;
        self.with_tokenizer(move |tokenizer| {
            // sentence-transformers' `include_prompt: false`: the prompt's tokens ([CLS] included)
            // are left out of pooling.
            // A prompt rendered as a system message through a chat template is pooled with the
            // rest (sentence-transformers cannot exclude it there either).
            let skip = match (&prompt, exclude_prompt && tokenizer.chat().is_none()) {
                (Some(p), true) => tokenizer
                    .prompt_length(p)
                    .map_err(|e| InferError::Tokenizer(e.to_string()))?,
                _ => 0,
            };
            inputs
                .into_iter()
                .enumerate()
                .map(|(i, input)| {
                    let is_text = matches!(input, Input::Text(_));
                    let mut encoded = encode_one(tokenizer, i, input, prompt.as_deref(), truncation, limits)?;
                    if is_text {
                        encoded.pool_skip = skip;
                    }
                    Ok(encoded)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await?
    }

    /// Tokenizes every input as PyLate encodes a ColBERT model's `side` (cut to its length,
    /// prefixed, a query expanded); only texts can be, since PyLate inserts its prefix token
    /// into the tokenizer's output.
    async fn tokenize_colbert(
        &self,
        colbert: Arc<ColbertEncoder>,
        inputs: Vec<Input>,
        prompt: Option<String>,
        side: ColbertSide,
    ) -> Result<Vec<Encoded>, InferError> {
        self.with_tokenizer(move |_| {
            inputs
                .into_iter()
                .enumerate()
                .map(|(i, input)| match input {
                    Input::Text(text) => {
                        let text = match &prompt {
                            Some(p) => format!("{p}{text}"),
                            None => text,
                        };
                        colbert.encode(&text, side).map_err(|e| InferError::Tokenizer(e.to_string()))
                    }
                    _ => Err(InferError::Tokenizer(format!(
                        "input {i}: a ColBERT model encodes texts only (it inserts its query or document prefix into their tokens)"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await?
    }

    /// Runs `work` on a blocking thread with the tokenizer, within the `--tokenization-workers`
    /// limit every use of the tokenizer shares (`/tokenize` and `/decode` included).
    pub(crate) async fn with_tokenizer<T: Send + 'static>(
        &self,
        work: impl FnOnce(&TextTokenizer) -> T + Send + 'static,
    ) -> Result<T, InferError> {
        let _permit = self
            .tokenization
            .acquire()
            .await
            .map_err(|_| InferError::Unavailable("tokenization is shut down".into()))?;
        let tokenizer = self.tokenizer.clone();
        tokio::task::spawn_blocking(move || work(&tokenizer))
            .await
            .map_err(|e| InferError::Tokenizer(format!("tokenization failed: {e}")))
    }

    /// The one entry every route uses to run the model: checks the batch size, resolves the
    /// prompt, admits, tokenizes and runs; outputs come back in input order with the timings.
    pub(crate) async fn process(&self, request: Request) -> Result<(Vec<Embedding>, Timings), InferError> {
        let Request {
            inputs,
            prompt_name,
            task,
            truncate,
            direction,
            want,
            started,
            room,
        } = request;
        self.accepts(want)?;
        self.check_batch_size(inputs.len())?;
        let (prompt, task) = self.prompts.for_request(prompt_name.as_deref(), task.as_deref())?;
        let truncation = Truncation {
            enabled: truncate.unwrap_or(self.auto_truncate),
            direction,
        };
        let _admission = match room {
            Room::Now => self.admit(inputs.len())?,
            Room::Wait(taken) => {
                let admission = self.admit_waiting(inputs.len()).await;
                drop(taken);
                admission?
            }
        };
        let tokenize_start = Instant::now();
        let encoded = match (want, &self.colbert) {
            (Want::MultiVector(side), Some(colbert)) => {
                self.tokenize_colbert(colbert.clone(), inputs, prompt, side).await?
            }
            _ => self.tokenize(inputs, prompt, truncation).await?,
        };
        let tokenization = tokenize_start.elapsed();
        let characters = encoded.iter().map(|e| e.chars).sum();
        let tokens = encoded.iter().map(|e| e.len()).sum();
        metrics::inputs_submitted(encoded.iter().map(|e| e.len()));

        let outputs = self.run(encoded, want.output(self.serves), task).await?;
        let (mut queue, mut inference) = (Duration::ZERO, Duration::ZERO);
        let mut embeddings = Vec::with_capacity(outputs.len());
        for out in outputs {
            metrics::input_embedded(started.elapsed(), tokenization, out.queue_time, out.inference_time);
            queue = queue.max(out.queue_time);
            inference = inference.max(out.inference_time);
            embeddings.push(out.embedding);
        }
        let timings = Timings {
            started,
            characters,
            tokens,
            tokenization,
            queue,
            inference,
            compute_type: self.compute_type,
        };
        Ok((embeddings, timings))
    }

    /// `--max-client-batch-size`.
    pub(crate) fn max_client_batch_size(&self) -> usize {
        self.max_client_batch_size
    }

    /// Refuses more inputs in one request than `--max-client-batch-size`; every route that takes
    /// a list checks it here, so they answer alike.
    pub(crate) fn check_batch_size(&self, given: usize) -> Result<(), InferError> {
        if given > self.max_client_batch_size {
            return Err(InferError::BatchTooLarge {
                given,
                max: self.max_client_batch_size,
            });
        }
        Ok(())
    }

    /// Runs tokenized inputs through the model; outputs come back in input order.
    /// `task`: the task adapter every input runs with.
    pub(crate) async fn run(
        &self,
        encoded: Vec<Encoded>,
        output: OutputKind,
        task: Option<usize>,
    ) -> Result<Vec<JobOutput>, InferError> {
        if !self.is_healthy() {
            return Err(InferError::Unavailable("the model worker is not running".into()));
        }
        let now = Instant::now();
        let mut receivers = Vec::with_capacity(encoded.len());
        let jobs = encoded
            .into_iter()
            .map(|encoded| {
                let (reply, rx) = oneshot::channel();
                receivers.push(rx);
                Job {
                    encoded,
                    output,
                    task,
                    reply,
                    enqueued: now,
                }
            })
            .collect();
        self.queue.push(jobs);
        // Dropped with this future when the client goes away before its answer: counted once
        // per request, whatever the number of its inputs.
        let mut waiting = Waiting { answered: false };
        let result = answers(receivers).await;
        waiting.answered = true;
        result
    }
}

/// Each input's output in order, or the first input's error.
async fn answers(receivers: Vec<oneshot::Receiver<Result<JobOutput, JobError>>>) -> Result<Vec<JobOutput>, InferError> {
    let mut outputs = Vec::with_capacity(receivers.len());
    for rx in receivers {
        match rx.await {
            Ok(Ok(out)) => outputs.push(out),
            Ok(Err(JobError::Backend(message))) => return Err(InferError::Backend(message)),
            Ok(Err(JobError::NonFinite)) => return Err(InferError::NonFinite),
            Ok(Err(JobError::ShuttingDown)) => {
                return Err(InferError::Unavailable("the server is shutting down".into()))
            }
            Ok(Err(JobError::WorkerStopped)) | Err(_) => {
                return Err(InferError::Unavailable(
                    "the model worker stopped before answering; the server needs a restart".into(),
                ))
            }
        }
    }
    Ok(outputs)
}

/// A request waiting for the model; dropped unanswered, it counts as `dropped`.
struct Waiting {
    answered: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.answered {
            metrics::request_failed(metrics::Failure::Dropped);
        }
    }
}

/// What the model takes, checked per input before batching.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Token ids must be below it.
    vocab_size: usize,
    /// Whether a sequence of no tokens can be run.
    empty_sequences: bool,
}

fn encode_one(
    tokenizer: &TextTokenizer,
    index: usize,
    input: Input,
    prompt: Option<&str>,
    truncation: Truncation,
    Limits {
        vocab_size,
        empty_sequences,
    }: Limits,
) -> Result<Encoded, InferError> {
    let from_client = matches!(input, Input::Ids(_));
    let encoded = encode_unchecked(tokenizer, index, input, prompt, truncation)?;
    // A transformer cannot run an empty sequence, and it would fail the whole batch, other
    // clients' inputs with it.
    if encoded.ids.is_empty() && !empty_sequences {
        return Err(InferError::NoTokens { index });
    }
    // Checked here, per input, because an id past the embedding table fails the whole batch
    // in the model: a tokenizer.json that does not match the weights must fail only the
    // requests whose text reaches the bad id.
    if let Some(&bad) = encoded.ids.iter().find(|&&id| id as usize >= vocab_size) {
        let message = if from_client {
            format!("input {index}: token id {bad} is outside the vocabulary (size {vocab_size})")
        } else {
            format!(
                "input {index}: the tokenizer produced token id {bad}, outside the model's vocabulary of {vocab_size} entries; tokenizer.json does not match the model (run `tessera validate-model`)"
            )
        };
        return Err(InferError::TokenIdOutOfRange(message));
    }
    Ok(encoded)
}

fn encode_unchecked(
    tokenizer: &TextTokenizer,
    index: usize,
    input: Input,
    prompt: Option<&str>,
    truncation: Truncation,
) -> Result<Encoded, InferError> {
    let direction = truncation.enabled.then_some(truncation.direction);
    let tokenize_error = |e| match e {
        TokenizeError::TooLong { max, given } => InferError::TooLong { index, given, max },
        other => InferError::Tokenizer(format!("input {index}: {other}")),
    };
    match input {
        Input::Text(text) => tokenizer.encode_input(&text, prompt, direction).map_err(tokenize_error),
        Input::Pair(first, second) => tokenizer
            .encode_input_pair(&first, &second, prompt, direction)
            .map_err(tokenize_error),
        Input::Ids(ids) => {
            if ids.is_empty() {
                return Err(InferError::EmptyTokenIds { index });
            }
            let mut encoded = Encoded::from_ids(ids);
            let max = tokenizer.max_input_length();
            if encoded.len() > max {
                match direction {
                    Some(direction) => encoded.truncate(max, direction),
                    None => {
                        return Err(InferError::TooLong {
                            index,
                            given: encoded.len(),
                            max,
                        })
                    }
                }
            }
            Ok(encoded)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::TruncationDirection;

    #[test]
    fn a_task_selects_its_adapter_and_its_prompt_and_a_prompt_named_as_a_task_its_adapter() {
        let prompts = Prompts {
            named: [("retrieval.query", "Q: "), ("separation", ""), ("other", "O: ")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            default: Some("".into()),
            tasks: vec!["retrieval.query".into(), "separation".into()],
            default_task: Some(1),
        };
        let ask = |prompt: Option<&str>, task: Option<&str>| prompts.for_request(prompt, task).unwrap();
        assert_eq!(ask(None, Some("retrieval.query")), (Some("Q: ".into()), Some(0)));
        // Another prompt beside the task keeps the task's adapter.
        assert_eq!(
            ask(Some("other"), Some("retrieval.query")),
            (Some("O: ".into()), Some(0))
        );
        assert_eq!(ask(Some("retrieval.query"), None), (Some("Q: ".into()), Some(0)));
        assert_eq!(ask(Some("other"), None), (Some("O: ".into()), None));
        // Neither: the defaults (--default-prompt-name separation).
        assert_eq!(ask(None, None), (Some("".into()), Some(1)));
        let unknown = prompts.for_request(None, Some("summarize")).unwrap_err().to_string();
        assert!(unknown.contains("retrieval.query, separation"), "{unknown}");
        let none = Prompts::default().for_request(None, Some("x")).unwrap_err().to_string();
        assert!(none.contains("no task adapters"), "{none}");
    }
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;

    /// An `Infer` over a word-level tokenizer whose word `far` has id 7, past a 5-row table.
    fn infer(max_inflight_inputs: usize) -> Infer {
        let vocab = [("[UNK]", 0), ("near", 1), ("far", 7)]
            .into_iter()
            .map(|(w, id)| (w.to_string(), id))
            .collect();
        let model = WordLevel::builder()
            .vocab(vocab)
            .unk_token("[UNK]".into())
            .build()
            .expect("word level");
        let mut tokenizer = tokenizers::Tokenizer::new(model);
        tokenizer.with_pre_tokenizer(Some(Whitespace {}));
        let tokenizer = TextTokenizer::new(tokenizer, 16).expect("tokenizer");
        Infer::new(InferParts {
            tokenizer,
            queue: Arc::new(Queue::default()),
            healthy: Arc::new(AtomicBool::new(true)),
            max_inflight_inputs,
            tokenization_workers: 1,
            vocab_size: 5,
            empty_sequences: false,
            include_prompt: true,
            compute_type: "cpu",
            max_client_batch_size: 8,
            auto_truncate: false,
            prompts: Prompts::default(),
            serves: Serves::Embeddings {
                lexical: false,
                multi_vector: false,
            },
            colbert: None,
        })
    }

    const TRUNCATE: Truncation = Truncation {
        enabled: false,
        direction: TruncationDirection::Right,
    };

    #[test]
    fn admission_counts_inputs_and_frees_them_with_the_guard() {
        let infer = infer(4);
        let first = infer.admit(3).expect("3 of 4");
        assert_eq!(infer.admit(2).unwrap_err(), InferError::Overloaded);
        drop(first);
        assert!(infer.admit(4).is_ok());
    }

    #[tokio::test]
    async fn a_waiting_request_says_when_it_holds_its_room_not_when_it_ends() {
        let infer = infer(2);
        let full = infer.admit(2).expect("all the room");
        let (taken, admitted) = tokio::sync::oneshot::channel();
        let request = Request {
            inputs: vec![Input::Text("near".into())],
            prompt_name: None,
            task: None,
            truncate: None,
            direction: TruncationDirection::Right,
            want: Want::Pooled,
            started: Instant::now(),
            room: Room::Wait(taken),
        };
        let running = tokio::spawn({
            let infer = infer.clone();
            async move { infer.process(request).await }
        });
        let mut admitted = std::pin::pin!(admitted);
        let soon = tokio::time::timeout(Duration::from_millis(50), admitted.as_mut()).await;
        assert!(soon.is_err(), "no room yet: the stream must not read on");
        drop(full);
        // Told once admitted, while the request still waits in the queue (no model thread here).
        admitted.await.expect_err("the sender is dropped, not sent");
        assert!(!running.is_finished());
        assert_eq!(infer.admit(2).unwrap_err(), InferError::Overloaded, "it holds its room");
        running.abort();
    }

    #[tokio::test]
    async fn a_text_that_reaches_an_id_past_the_table_fails_alone() {
        let infer = infer(4);
        let ok = infer
            .tokenize(vec![Input::Text("near near".into())], None, TRUNCATE)
            .await
            .expect("in range");
        assert_eq!(ok[0].ids, vec![1, 1]);
        let err = infer
            .tokenize(
                vec![Input::Text("near".into()), Input::Text("near far".into())],
                None,
                TRUNCATE,
            )
            .await
            .unwrap_err();
        let InferError::TokenIdOutOfRange(message) = err else {
            panic!("{err:?}")
        };
        assert!(
            message.starts_with("input 1:") && message.contains("token id 7"),
            "{message}"
        );
        let err = infer
            .tokenize(vec![Input::Ids(vec![1, 5])], None, TRUNCATE)
            .await
            .unwrap_err();
        assert!(matches!(err, InferError::TokenIdOutOfRange(_)), "{err:?}");
    }

    /// This tokenizer adds no special tokens, so an empty or blank text has none: refused before
    /// it can fail a batch, unless the model runs empty sequences (a static embedding model).
    #[tokio::test]
    async fn a_text_without_tokens_is_refused_before_batching_where_the_model_cannot_run_it() {
        let mut infer = infer(4);
        for text in ["", "  \n"] {
            let err = infer
                .tokenize(
                    vec![Input::Text("near".into()), Input::Text(text.into())],
                    None,
                    TRUNCATE,
                )
                .await
                .unwrap_err();
            assert_eq!(err, InferError::NoTokens { index: 1 }, "{text:?}");
        }
        infer.empty_sequences = true;
        let encoded = infer
            .tokenize(vec![Input::Text("".into())], None, TRUNCATE)
            .await
            .expect("a static model takes it");
        assert!(encoded[0].ids.is_empty());
    }

    #[test]
    fn the_client_batch_size_is_checked_in_one_place() {
        let infer = infer(4);
        assert!(infer.check_batch_size(8).is_ok());
        assert_eq!(
            infer.check_batch_size(9).unwrap_err(),
            InferError::BatchTooLarge { given: 9, max: 8 }
        );
    }

    #[tokio::test]
    async fn a_dead_model_thread_answers_503() {
        let infer = infer(4);
        infer.healthy.store(false, Ordering::SeqCst);
        let encoded = vec![Encoded::from_ids(vec![1])];
        let err = infer.run(encoded, OutputKind::Pooled, None).await.unwrap_err();
        assert!(matches!(err, InferError::Unavailable(_)), "{err:?}");
    }

    #[test]
    fn each_model_kind_answers_only_what_it_produces() {
        use Want::*;
        const DOCUMENT: Want = MultiVector(ColbertSide::Document);
        const QUERY: Want = MultiVector(ColbertSide::Query);
        let cases = [
            (
                Serves::Embeddings {
                    lexical: false,
                    multi_vector: false,
                },
                [Pooled, Tokens],
                [Sparse, DOCUMENT, Logits, Rerank].as_slice(),
            ),
            (
                Serves::Embeddings {
                    lexical: true,
                    multi_vector: false,
                },
                [Pooled, Sparse],
                [DOCUMENT, Logits, Rerank].as_slice(),
            ),
            (
                Serves::Embeddings {
                    lexical: false,
                    multi_vector: true,
                },
                [Pooled, DOCUMENT],
                [Sparse, Logits, Rerank].as_slice(),
            ),
            (Serves::Sparse, [Pooled, Sparse], [DOCUMENT, Logits, Rerank].as_slice()),
            (
                Serves::Scores { labels: 1 },
                [Logits, Rerank],
                [Pooled, Sparse, DOCUMENT].as_slice(),
            ),
            (
                Serves::MultiVector,
                [QUERY, DOCUMENT],
                [Pooled, Sparse, Logits, Rerank].as_slice(),
            ),
            (
                Serves::Scores { labels: 3 },
                [Logits, Tokens],
                [Pooled, Sparse, Rerank].as_slice(),
            ),
        ];
        for (serves, accepted, refused) in cases {
            for want in accepted {
                assert_eq!(serves.check(want), Ok(()), "{serves:?} {want:?}");
            }
            for &want in refused {
                let err = serves.check(want).unwrap_err();
                assert!(
                    matches!(err, InferError::WrongModelType(_)),
                    "{serves:?} {want:?}: {err:?}"
                );
            }
        }
        let err = Serves::Scores { labels: 3 }.check(Rerank).unwrap_err();
        assert!(err.to_string().contains("3 labels"), "{err}");
    }

    #[tokio::test]
    async fn the_service_refuses_a_request_for_another_model_kind_before_admitting_it() {
        let infer = infer(1);
        let request = Request {
            inputs: vec![Input::Text("near".into()); 2],
            prompt_name: None,
            task: None,
            truncate: None,
            direction: TruncationDirection::Right,
            want: Want::Logits,
            started: Instant::now(),
            room: Room::Now,
        };
        // Two inputs would not be admitted either (capacity 1): the kind is checked first.
        let err = infer.process(request).await.unwrap_err();
        assert!(matches!(err, InferError::WrongModelType(_)), "{err:?}");
    }
}
