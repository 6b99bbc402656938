//! The model thread: takes batches from the queue, runs the backend, pooling and the head, and
//! answers each input. Inference never runs on the async runtime.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::Tensor;
use tessera_core::{Backend, Batch, ClassifierHead, EmbeddingHead, Pooling, SpladeHead};

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
    /// Pooling, then the sentence-transformers Dense modules.
    Pooled { pooling: Pooling, dense: EmbeddingHead },
    /// The SPLADE masked-LM head.
    Splade(SpladeHead),
    /// The pooler and classifier.
    Classify(ClassifierHead),
}

impl Head {
    /// Vectors per sequence of a batch: pooled/SPLADE vectors or logits, by task.
    fn forward(&self, hidden: &Tensor, batch: &Batch, skips: &[usize]) -> candle_core::Result<Vec<Vec<f32>>> {
        match self {
            Head::Pooled { pooling, dense } => dense.forward(&pooling.pool_skipping(hidden, &batch.seqs, skips)?),
            Head::Splade(splade) => splade.forward(hidden, &batch.seqs),
            Head::Classify(classifier) => classifier.forward(hidden, &batch.seqs),
        }?
        .to_vec2()
    }

    /// The output kind this head answers.
    fn output(&self) -> OutputKind {
        match self {
            Head::Pooled { .. } | Head::Splade(_) => OutputKind::Pooled,
            Head::Classify(_) => OutputKind::Logits,
        }
    }
}

/// Starts the model thread. `healthy` turns false if the thread ever stops unexpectedly.
///
/// The batch loop runs inside a compute pool of `threads` rayon workers: candle's parallel ops then
/// split work with the thread that issued them instead of handing it to other threads and sleeping
/// until they finish (a futex round trip per op; one short MiniLM input: 4.4 ms -> 3.6 ms forward).
pub(crate) fn spawn(
    worker: Worker,
    queue: Arc<Queue>,
    healthy: Arc<AtomicBool>,
    threads: usize,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("tessera-compute-{i}"))
        .build()
        .map_err(std::io::Error::other)?;
    std::thread::Builder::new().name("tessera-model".into()).spawn(move || {
        pool.install(move || {
            while let Some(jobs) = queue.next_batch(&worker.budget) {
                worker.run(jobs);
            }
        });
        tracing::info!("model thread stopped");
        healthy.store(false, Ordering::SeqCst);
    })
}

impl Worker {
    fn run(&self, jobs: Vec<Job>) {
        let started = Instant::now();
        let batch = Batch::from_sequences(jobs.iter().map(|j| (&j.encoded.ids[..], &j.encoded.type_ids[..])));
        let seqs = &batch.seqs;
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
        // A panic inside a kernel must fail this batch only, never the server.
        let kinds: Vec<OutputKind> = jobs.iter().map(|j| j.output).collect();
        let skips: Vec<usize> = jobs.iter().map(|j| j.encoded.pool_skip).collect();
        let result = catch_unwind(AssertUnwindSafe(|| self.embed(&batch, &kinds, &skips))).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!("model panicked on a batch of {} inputs: {what}", jobs.len());
            Err(format!("the model failed on this batch: {what}"))
        });
        let inference_time = started.elapsed();
        match result {
            Ok(outputs) => {
                for (job, embedding) in jobs.into_iter().zip(outputs) {
                    let queue_time = started.saturating_duration_since(job.enqueued);
                    let _ = job.reply.send(Ok(JobOutput {
                        embedding,
                        queue_time,
                        inference_time,
                    }));
                }
            }
            Err(message) => {
                tracing::error!("batch failed: {message}");
                for job in jobs {
                    let _ = job.reply.send(Err(JobError::Backend(message.clone())));
                }
            }
        }
    }

    fn embed(&self, batch: &Batch, kinds: &[OutputKind], skips: &[usize]) -> Result<Vec<Embedding>, String> {
        let forward_started = Instant::now();
        let hidden = self.backend.forward(batch).map_err(|e| e.to_string())?;
        metrics::backend_forward(forward_started.elapsed());
        let head = self.head.output();
        let mut outputs = if kinds.contains(&head) {
            self.head.forward(&hidden, batch, skips).map_err(|e| e.to_string())?
        } else {
            Vec::new()
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
                        .filter(|_| *kind == head)
                        .map(std::mem::take)
                        .ok_or_else(|| format!("this model does not produce {kind:?} outputs"))?;
                    Ok(if head == OutputKind::Logits {
                        Embedding::Logits(value)
                    } else {
                        Embedding::Pooled(value)
                    })
                }
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
