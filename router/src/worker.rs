//! The model thread: takes batches from the queue, runs the backend, pooling and the head, and
//! answers each input. Inference never runs on the async runtime.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::Tensor;
use tessera_core::{
    Backend, Batch, ClassifierHead, ColbertSide, EmbeddingHead, Encoded, LexicalHead, LexicalWeights, MultiVectorHead,
    Pooling, SeqOffsets, SpladeHead,
};

use crate::metrics;
use crate::queue::{Budget, Embedding, Job, JobError, JobOutput, OutputKind, Queue};

/// What the model thread owns.
pub(crate) struct Worker {
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) head: Head,
    pub(crate) budget: Budget,
}

/// What turns the backbone's token vectors into the task's output, loaded for the plan's task.
pub(crate) enum Head {
    /// Pooling, then the sentence-transformers Dense modules; BGE-M3's lexical and multi-vector
    /// layers beside them.
    Pooled {
        pooling: Pooling,
        dense: EmbeddingHead,
        lexical: Option<LexicalHead>,
        multi_vector: Option<MultiVectorHead>,
    },
    /// The SPLADE masked-LM head.
    Splade(SpladeHead),
    /// The pooler and classifier.
    Classify(ClassifierHead),
    /// Vectors per token alone (a PyLate ColBERT model's Dense modules).
    MultiVector(MultiVectorHead),
}

impl Head {
    /// Vectors per sequence of a batch: pooled/SPLADE vectors or logits, by task.
    fn forward(&self, hidden: &Tensor, batch: &Batch, skips: &[usize]) -> candle_core::Result<Vec<Vec<f32>>> {
        match self {
            Head::Pooled { pooling, dense, .. } => dense.forward(&pooling.pool_skipping(hidden, &batch.seqs, skips)?),
            Head::Splade(splade) => splade.forward(hidden, &batch.seqs),
            Head::Classify(classifier) => classifier.forward(hidden, batch),
            // Its only output is per token ([`Head::multi_vector`]).
            Head::MultiVector(_) => return Ok(Vec::new()),
        }?
        .to_vec2()
    }

    /// Each sequence's lexical weights, when the head has BGE-M3's lexical layer.
    fn lexical(&self, hidden: &Tensor, batch: &Batch) -> Option<candle_core::Result<Vec<LexicalWeights>>> {
        match self {
            Head::Pooled {
                lexical: Some(lexical), ..
            } => Some(lexical.forward(hidden, batch)),
            _ => None,
        }
    }

    /// The vectors per token of the sequences `wanted` gives a side, when the head has
    /// multi-vector layers (BGE-M3's beside its pooling, or a ColBERT model's).
    fn multi_vector(
        &self,
        hidden: &Tensor,
        batch: &Batch,
        wanted: impl Fn(usize) -> Option<ColbertSide>,
    ) -> Option<candle_core::Result<Vec<Vec<Vec<f32>>>>> {
        match self {
            Head::Pooled {
                multi_vector: Some(layer),
                ..
            }
            | Head::MultiVector(layer) => Some(layer.forward(hidden, batch, wanted)),
            _ => None,
        }
    }

    /// The output kind [`Head::forward`] answers (none for a multi-vector head).
    fn output(&self) -> Option<OutputKind> {
        match self {
            Head::Pooled { .. } | Head::Splade(_) => Some(OutputKind::Pooled),
            Head::Classify(_) => Some(OutputKind::Logits),
            Head::MultiVector(_) => None,
        }
    }
}

/// Starts the model thread. `healthy` turns false, and whatever is queued is answered 503, as soon
/// as the thread stops for any reason: a normal stop, or a panic anywhere in its loop.
///
/// The batch loop runs inside a compute pool of `threads` rayon workers: candle's parallel ops then
/// split work with the thread that issued them instead of handing it to other threads and sleeping
/// until they finish (a futex round trip per op; one short MiniLM input: 4.4 ms -> 3.6 ms forward).
///
/// Before it takes any batch, the thread runs `warm_up` (one short input) through the model and
/// reports how that went on the returned channel; when it fails, the thread stops there.
pub(crate) fn spawn(
    worker: Worker,
    queue: Arc<Queue>,
    healthy: Arc<AtomicBool>,
    threads: usize,
    warm_up: Option<Encoded>,
) -> std::io::Result<(std::thread::JoinHandle<()>, WarmedUp)> {
    let (warmed_tx, warmed) = tokio::sync::oneshot::channel();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("tessera-compute-{i}"))
        .build()
        .map_err(std::io::Error::other)?;
    std::thread::Builder::new()
        .name("tessera-model".into())
        .spawn(move || {
            // Dropped on every way out of this closure, unwinding included.
            let _lifeline = Lifeline {
                healthy,
                queue: queue.clone(),
            };
            pool.install(move || {
                let started = Instant::now();
                let warmed = match &warm_up {
                    Some(input) => worker.warm_up(input).map(|()| Some(started.elapsed())),
                    None => Ok(None),
                };
                let failed = warmed.is_err();
                let _ = warmed_tx.send(warmed);
                if failed {
                    return;
                }
                while let Some(jobs) = queue.next_batch(&worker.budget) {
                    worker.run(jobs);
                }
            });
            tracing::info!("model thread stopped");
        })
        .map(|thread| (thread, warmed))
}

/// The warm-up's outcome: its duration (`None`: there was no input to warm up with), or why the
/// model could not run it.
pub(crate) type WarmedUp = tokio::sync::oneshot::Receiver<Result<Option<std::time::Duration>, String>>;

/// Marks the server unhealthy and fails the queued jobs when the model thread ends, however it
/// ends: without it, a panic outside the batch's `catch_unwind` would leave `/health` at 200 and
/// requests waiting forever in a queue nobody reads.
struct Lifeline {
    healthy: Arc<AtomicBool>,
    queue: Arc<Queue>,
}

impl Drop for Lifeline {
    fn drop(&mut self) {
        self.healthy.store(false, Ordering::SeqCst);
        let failed = self.queue.abort();
        if std::thread::panicking() {
            tracing::error!("the model thread panicked; {failed} queued inputs answered 503, /health now fails");
        }
    }
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl Worker {
    /// One short input through the backend and the head, outside the metrics, before the
    /// server reports ready: the first request then finds the lazy set-up (allocations, packed
    /// weights, thread start-up) done, and a model that cannot run at all fails the start
    /// rather than every request.
    fn warm_up(&self, input: &Encoded) -> Result<(), String> {
        let batch = Batch::from_sequences([(&input.ids[..], &input.type_ids[..])]);
        let run = || -> Result<Vec<Vec<f32>>, String> {
            let hidden = self.backend.forward(&batch).map_err(|e| e.to_string())?;
            self.head
                .forward(&hidden, &batch, &[input.pool_skip])
                .map_err(|e| e.to_string())
        };
        match catch_unwind(AssertUnwindSafe(run)) {
            Ok(Ok(outputs)) if outputs.iter().flatten().all(|v| v.is_finite()) => Ok(()),
            Ok(Ok(_)) => Err("the model produced NaN or infinity".into()),
            Ok(Err(e)) => Err(e),
            Err(panic) => Err(format!("the model panicked: {}", panic_message(panic.as_ref()))),
        }
    }

    fn run(&self, jobs: Vec<Job>) {
        let started = Instant::now();
        let results = self.answer(&jobs);
        let inference_time = started.elapsed();
        for (job, result) in jobs.into_iter().zip(results) {
            let queue_time = started.saturating_duration_since(job.enqueued);
            let _ = job.reply.send(result.map(|embedding| JobOutput {
                embedding,
                queue_time,
                inference_time,
            }));
        }
    }

    /// One result per job. When the batch fails as a whole, its inputs are run again one by one,
    /// so that an input the model cannot process fails only its own request.
    fn answer(&self, jobs: &[Job]) -> Vec<Result<Embedding, JobError>> {
        // The batch the batcher formed is recorded once, not again for each one-by-one retry.
        let seqs = SeqOffsets::from_lengths(jobs.iter().map(|j| j.encoded.ids.len()));
        let padded = seqs.padded_tokens();
        let padding_ratio = if padded == 0 {
            0.0
        } else {
            (padded - seqs.total_tokens()) as f64 / padded as f64
        };
        metrics::batch_formed(
            seqs.len(),
            self.budget.cost(seqs.len(), seqs.total_tokens(), seqs.max_len()),
            padding_ratio,
        );
        match self.attempt(jobs) {
            Ok(outputs) => outputs,
            Err(message) if jobs.len() == 1 => vec![Err(JobError::Backend(message))],
            Err(message) => {
                tracing::warn!(
                    "a batch of {} inputs failed ({message}); running them one by one",
                    jobs.len()
                );
                jobs.chunks(1)
                    .map(|one| match self.attempt(one) {
                        Ok(mut outputs) => outputs
                            .pop()
                            .unwrap_or_else(|| Err(JobError::Backend("the model returned no output".into()))),
                        Err(message) => Err(JobError::Backend(message)),
                    })
                    .collect()
            }
        }
    }

    /// Runs `jobs` as one batch: `Err` when the batch as a whole failed (an error or a panic in
    /// the model), else one result per job, where an output with NaN or infinity is that job's
    /// error.
    fn attempt(&self, jobs: &[Job]) -> Result<Vec<Result<Embedding, JobError>>, String> {
        let mut batch = Batch::from_sequences(jobs.iter().map(|j| (&j.encoded.ids[..], &j.encoded.type_ids[..])))
            .with_tasks(jobs.iter().map(|j| j.task).collect());
        batch.seqs = batch.seqs.with_query_only(jobs.iter().map(|j| j.encoded.query_only));
        let seqs = &batch.seqs;
        let kinds: Vec<OutputKind> = jobs.iter().map(|j| j.output).collect();
        let skips: Vec<usize> = jobs.iter().map(|j| j.encoded.pool_skip).collect();
        // A panic inside a kernel must fail this batch only, never the server.
        let outputs =
            catch_unwind(AssertUnwindSafe(|| self.embed(&batch, &kinds, &skips))).unwrap_or_else(|panic| {
                let what = panic_message(panic.as_ref());
                tracing::error!("model panicked on a batch of {} inputs: {what}", jobs.len());
                Err(format!("the model failed on this batch: {what}"))
            })?;
        Ok(outputs
            .into_iter()
            .enumerate()
            .map(|(i, output)| {
                if output.is_finite() {
                    Ok(output)
                } else {
                    tracing::error!(
                        "the model produced NaN or infinity for an input of {} tokens",
                        seqs.seq_len(i)
                    );
                    Err(JobError::NonFinite)
                }
            })
            .collect())
    }

    fn embed(&self, batch: &Batch, kinds: &[OutputKind], skips: &[usize]) -> Result<Vec<Embedding>, String> {
        let forward_started = Instant::now();
        let hidden = self.backend.forward(batch).map_err(|e| e.to_string())?;
        metrics::backend_forward(forward_started.elapsed());
        let head = self.head.output();
        let mut outputs = if head.is_some_and(|head| kinds.contains(&head)) {
            self.head.forward(&hidden, batch, skips).map_err(|e| e.to_string())?
        } else {
            Vec::new()
        };
        let mut lexical = match kinds.contains(&OutputKind::Lexical) {
            true => self
                .head
                .lexical(&hidden, batch)
                .transpose()
                .map_err(|e| e.to_string())?,
            false => None,
        };
        let side = |kind: &OutputKind| match kind {
            OutputKind::MultiVector(side) => Some(*side),
            _ => None,
        };
        let mut multi_vector = match kinds.iter().any(|k| side(k).is_some()) {
            true => self
                .head
                .multi_vector(&hidden, batch, |i| side(&kinds[i]))
                .transpose()
                .map_err(|e| e.to_string())?,
            false => None,
        };
        // Only /embed_all needs the token vectors on the host; converting them for other
        // batches would copy the whole hidden state for nothing.
        let hidden = if kinds.contains(&OutputKind::Tokens) {
            Some(hidden.to_dtype(candle_core::DType::F32).map_err(|e| e.to_string())?)
        } else {
            None
        };
        kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| match kind {
                OutputKind::Pooled | OutputKind::Logits => {
                    let value = outputs
                        .get_mut(i)
                        .filter(|_| Some(*kind) == head)
                        .map(std::mem::take)
                        // The service admits only what the model produces; this is a broken invariant.
                        .ok_or_else(|| format!("internal error: this model does not produce {kind:?} outputs"))?;
                    Ok(if head == Some(OutputKind::Logits) {
                        Embedding::Logits(value)
                    } else {
                        Embedding::Pooled(value)
                    })
                }
                OutputKind::Lexical => lexical
                    .as_mut()
                    .and_then(|weights| weights.get_mut(i))
                    .map(|w| Embedding::Lexical(std::mem::take(w)))
                    .ok_or_else(|| "internal error: this model has no lexical layer".to_string()),
                OutputKind::MultiVector(_) => multi_vector
                    .as_mut()
                    .and_then(|vectors| vectors.get_mut(i))
                    .map(|v| Embedding::Tokens(std::mem::take(v)))
                    .ok_or_else(|| "internal error: this model has no multi-vector layer".to_string()),
                OutputKind::Tokens => {
                    let range = batch.seqs.range(i);
                    hidden
                        .as_ref()
                        .ok_or_else(|| "token vectors were skipped".to_string())?
                        .narrow(0, range.start, range.len())
                        .and_then(|t| t.to_vec2::<f32>())
                        .map(Embedding::Tokens)
                        .map_err(|e| e.to_string())
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use tessera_core::{BackendDescription, BackendError, Encoded};
    use tokio::sync::oneshot;

    /// Token ids the stub model treats specially.
    const FAILS_THE_BATCH: u32 = 90;
    const PANICS: u32 = 91;
    const GIVES_NAN: u32 = 92;
    const HIDDEN: usize = 4;

    /// A model whose token vectors are `[id, 1, 1, 1]`, and that fails, panics or returns NaN on
    /// the ids above.
    #[derive(Debug)]
    struct Stub;

    impl Backend for Stub {
        fn forward(&self, batch: &Batch) -> Result<Tensor, BackendError> {
            if batch.input_ids.contains(&FAILS_THE_BATCH) {
                return Err(BackendError::InvalidBatch("index out of range".into()));
            }
            assert!(!batch.input_ids.contains(&PANICS), "kernel bug");
            let rows: Vec<f32> = batch
                .input_ids
                .iter()
                .flat_map(|&id| {
                    let first = if id == GIVES_NAN { f32::NAN } else { id as f32 };
                    [first, 1.0, 1.0, 1.0]
                })
                .collect();
            Ok(Tensor::from_vec(rows, (batch.input_ids.len(), HIDDEN), &Device::Cpu)?)
        }

        fn describe(&self) -> BackendDescription {
            BackendDescription {
                backend: "stub",
                architecture: "stub".into(),
                kernel: "none",
                pads: false,
                hidden_size: HIDDEN,
                vocab_size: 100,
                empty_sequences: false,
            }
        }
    }

    fn worker() -> Worker {
        Worker {
            backend: Box::new(Stub),
            head: Head::Pooled {
                pooling: Pooling::Mean,
                dense: EmbeddingHead::load(&[], &Device::Cpu).expect("no dense modules"),
                lexical: None,
                multi_vector: None,
            },
            budget: Budget {
                max_tokens: 1024,
                max_requests: 64,
                pads: false,
            },
        }
    }

    type Reply = oneshot::Receiver<Result<JobOutput, JobError>>;

    fn job(ids: &[u32]) -> (Job, Reply) {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            encoded: Encoded::from_ids(ids.to_vec()),
            output: OutputKind::Pooled,
            task: None,
            reply,
            enqueued: Instant::now(),
        };
        (job, rx)
    }

    fn answers(worker: &Worker, inputs: &[&[u32]]) -> Vec<Result<Vec<f32>, JobError>> {
        let (jobs, replies): (Vec<Job>, Vec<Reply>) = inputs.iter().map(|ids| job(ids)).unzip();
        worker.run(jobs);
        replies
            .into_iter()
            .map(|mut rx| match rx.try_recv().expect("every job is answered") {
                Ok(JobOutput {
                    embedding: Embedding::Pooled(v),
                    ..
                }) => Ok(v),
                Ok(other) => panic!("unexpected output {other:?}"),
                Err(e) => Err(e),
            })
            .collect()
    }

    #[test]
    fn an_input_that_fails_the_batch_fails_only_its_own_request() {
        for poison in [FAILS_THE_BATCH, PANICS] {
            let got = answers(&worker(), &[&[1, 2, 3], &[4, poison], &[5]]);
            assert_eq!(got[0].as_ref().expect("first input"), &vec![2.0, 1.0, 1.0, 1.0]);
            assert!(
                matches!(&got[1], Err(JobError::Backend(_))),
                "poison {poison}: {:?}",
                got[1]
            );
            assert_eq!(got[2].as_ref().expect("third input"), &vec![5.0, 1.0, 1.0, 1.0]);
        }
    }

    #[test]
    fn a_non_finite_output_is_that_inputs_error() {
        let got = answers(&worker(), &[&[1], &[GIVES_NAN, 2], &[3]]);
        assert!(got[0].is_ok() && got[2].is_ok(), "{got:?}");
        assert!(matches!(got[1], Err(JobError::NonFinite)), "{:?}", got[1]);
    }

    #[test]
    fn a_batch_the_model_runs_answers_every_input_in_order() {
        let got = answers(&worker(), &[&[7], &[8, 8], &[9]]);
        let firsts: Vec<f32> = got.iter().map(|r| r.as_ref().expect("ok")[0]).collect();
        assert_eq!(firsts, vec![7.0, 8.0, 9.0]);
    }

    #[test]
    fn one_batch_answers_pooled_token_and_unsupported_outputs_each_as_asked() {
        let (mut pooled, pooled_rx) = job(&[2, 4]);
        pooled.output = OutputKind::Pooled;
        let (mut tokens, tokens_rx) = job(&[3, 5]);
        tokens.output = OutputKind::Tokens;
        let (mut logits, logits_rx) = job(&[1]);
        logits.output = OutputKind::Logits;
        worker().run(vec![pooled, tokens, logits]);
        let answer = |rx: Reply| rx.blocking_recv().expect("answered").map(|o| o.embedding);
        assert!(matches!(answer(pooled_rx), Ok(Embedding::Pooled(v)) if v == vec![3.0, 1.0, 1.0, 1.0]));
        assert!(
            matches!(answer(tokens_rx), Ok(Embedding::Tokens(rows)) if rows == vec![vec![3.0, 1.0, 1.0, 1.0], vec![5.0, 1.0, 1.0, 1.0]])
        );
        // An embedding model asked for logits fails that input only.
        assert!(matches!(answer(logits_rx), Err(JobError::Backend(_))));
    }

    /// BGE-M3: one batch answers a dense vector and lexical weights from the same forward pass.
    #[test]
    fn one_batch_answers_pooled_vectors_and_lexical_weights_each_as_asked() {
        // The stub's first feature is the token id: weight = relu(id - 2.5), token 5 left out.
        let weight = Tensor::new(&[[1f32, 0.0, 0.0, 0.0]], &Device::Cpu).unwrap();
        let lexical = LexicalHead::new(&weight, -2.5, vec![5]).unwrap();
        let worker = Worker {
            head: Head::Pooled {
                pooling: Pooling::Mean,
                dense: EmbeddingHead::load(&[], &Device::Cpu).expect("no dense modules"),
                lexical: Some(lexical),
                multi_vector: None,
            },
            ..worker()
        };
        let (mut pooled, pooled_rx) = job(&[2, 4]);
        pooled.output = OutputKind::Pooled;
        let (mut sparse, sparse_rx) = job(&[3, 5, 4, 3, 1]);
        sparse.output = OutputKind::Lexical;
        worker.run(vec![pooled, sparse]);
        let answer = |rx: Reply| rx.blocking_recv().expect("answered").map(|o| o.embedding);
        assert!(matches!(answer(pooled_rx), Ok(Embedding::Pooled(v)) if v == vec![3.0, 1.0, 1.0, 1.0]));
        // Token 1 weighs nothing, 5 is left out, 3 appears twice with one weight.
        assert!(matches!(answer(sparse_rx), Ok(Embedding::Lexical(w)) if w == vec![(3, 0.5), (4, 1.5)]));
    }

    /// BGE-M3: a multi-vector request batched with a dense one gets a vector per token after its
    /// first; the dense one is pooled as ever.
    #[test]
    fn one_batch_answers_pooled_vectors_and_multi_vectors_each_as_asked() {
        // The stub's first feature is the token id: one output, id + 1.
        let weight = Tensor::new(&[[1f32, 0.0, 0.0, 0.0]], &Device::Cpu).unwrap();
        let bias = Tensor::new(&[1f32], &Device::Cpu).unwrap();
        let worker = Worker {
            head: Head::Pooled {
                pooling: Pooling::Mean,
                dense: EmbeddingHead::load(&[], &Device::Cpu).expect("no dense modules"),
                lexical: None,
                multi_vector: Some(MultiVectorHead::new(&weight, &bias).unwrap()),
            },
            ..worker()
        };
        let (mut pooled, pooled_rx) = job(&[2, 4]);
        pooled.output = OutputKind::Pooled;
        let (mut multi, multi_rx) = job(&[3, 5, 4]);
        multi.output = OutputKind::MultiVector(ColbertSide::Document);
        worker.run(vec![pooled, multi]);
        let answer = |rx: Reply| rx.blocking_recv().expect("answered").map(|o| o.embedding);
        assert!(matches!(answer(pooled_rx), Ok(Embedding::Pooled(v)) if v == vec![3.0, 1.0, 1.0, 1.0]));
        assert!(matches!(answer(multi_rx), Ok(Embedding::Tokens(rows)) if rows == vec![vec![6.0], vec![5.0]]));
    }

    #[test]
    fn a_panic_anywhere_in_the_model_thread_fails_health_and_the_queue() {
        let queue = Arc::new(Queue::default());
        let healthy = Arc::new(AtomicBool::new(true));
        let (queued, mut queued_rx) = job(&[1]);
        queue.push(vec![queued]);
        let thread = {
            let (healthy, queue) = (healthy.clone(), queue.clone());
            std::thread::spawn(move || {
                let _lifeline = Lifeline { healthy, queue };
                panic!("a bug outside the batch's catch_unwind");
            })
        };
        assert!(thread.join().is_err());
        assert!(!healthy.load(Ordering::SeqCst), "health must turn false");
        assert!(matches!(queued_rx.try_recv(), Ok(Err(JobError::WorkerStopped))));
        // A request arriving afterwards is answered at once, not left waiting.
        let (late, mut late_rx) = job(&[1]);
        queue.push(vec![late]);
        assert!(matches!(late_rx.try_recv(), Ok(Err(JobError::WorkerStopped))));
    }

    #[test]
    fn the_model_thread_answers_until_closed_then_reports_unhealthy() {
        let queue = Arc::new(Queue::default());
        let healthy = Arc::new(AtomicBool::new(true));
        let warm_up = Some(Encoded::from_ids(vec![2, 3]));
        let (thread, warmed) = spawn(worker(), queue.clone(), healthy.clone(), 1, warm_up).expect("spawn");
        assert!(matches!(warmed.blocking_recv(), Ok(Ok(Some(_)))));
        let (first, first_rx) = job(&[3]);
        queue.push(vec![first]);
        let answer = first_rx.blocking_recv().expect("answered");
        assert!(answer.is_ok());
        assert!(healthy.load(Ordering::SeqCst));
        queue.close();
        thread.join().expect("clean stop");
        assert!(!healthy.load(Ordering::SeqCst));
    }

    #[test]
    fn a_model_that_fails_its_warm_up_takes_no_batch() {
        for (ids, says) in [
            (vec![2, PANICS], "panicked"),
            (vec![GIVES_NAN], "NaN"),
            (vec![FAILS_THE_BATCH], "index"),
        ] {
            let queue = Arc::new(Queue::default());
            let healthy = Arc::new(AtomicBool::new(true));
            let warm_up = Some(Encoded::from_ids(ids));
            let (thread, warmed) = spawn(worker(), queue.clone(), healthy.clone(), 1, warm_up).expect("spawn");
            let why = warmed
                .blocking_recv()
                .expect("reported")
                .expect_err("the warm-up fails");
            assert!(why.contains(says), "{why}");
            thread.join().expect("the thread ends by itself");
            assert!(!healthy.load(Ordering::SeqCst));
            // Whatever a client queues is answered at once.
            let (late, mut late_rx) = job(&[1]);
            queue.push(vec![late]);
            assert!(matches!(late_rx.try_recv(), Ok(Err(JobError::WorkerStopped))));
        }
    }
}
