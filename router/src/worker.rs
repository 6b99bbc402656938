//! The model thread: takes batches from the queue, runs the backend, pooling and the head, and
//! answers each input. Inference never runs on the async runtime.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tessera_core::{Backend, Batch, ClassifierHead, EmbeddingHead, Pooling, SpladeHead};

use crate::metrics;
use crate::queue::{Budget, Embedding, Job, JobError, JobOutput, OutputKind, Queue};

/// What the model thread owns.
pub(crate) struct Worker {
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) pooling: Pooling,
    pub(crate) head: EmbeddingHead,
    pub(crate) classifier: Option<ClassifierHead>,
    /// With `--pooling splade`, sentence vectors come from the SPLADE head instead of pooling.
    pub(crate) splade: Option<SpladeHead>,
    pub(crate) budget: Budget,
}

/// Starts the model thread. `healthy` turns false if the thread ever stops unexpectedly.
pub(crate) fn spawn(
    worker: Worker,
    queue: Arc<Queue>,
    healthy: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("tessera-model".into()).spawn(move || {
        while let Some(jobs) = queue.next_batch(&worker.budget) {
            worker.run(jobs);
        }
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
        let pooled = if let (Some(splade), true) = (&self.splade, kinds.contains(&OutputKind::Pooled)) {
            Some(
                splade
                    .forward(&hidden, &batch.seqs)
                    .and_then(|t| t.to_vec2::<f32>())
                    .map_err(|e| e.to_string())?,
            )
        } else if kinds.contains(&OutputKind::Pooled) {
            let pooled = self
                .pooling
                .pool_skipping(&hidden, &batch.seqs, skips)
                .map_err(|e| e.to_string())?;
            Some(
                self.head
                    .forward(&pooled)
                    .and_then(|t| t.to_vec2::<f32>())
                    .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        let logits = match (&self.classifier, kinds.contains(&OutputKind::Logits)) {
            (Some(head), true) => Some(
                head.forward(&hidden, &batch.seqs)
                    .and_then(|t| t.to_vec2::<f32>())
                    .map_err(|e| e.to_string())?,
            ),
            (None, true) => return Err("the model has no classification head".into()),
            (_, false) => None,
        };
        // Only /embed_all needs the token vectors on the host; converting them for other
        // batches would copy the whole hidden state for nothing.
        let hidden = if kinds.contains(&OutputKind::Tokens) {
            Some(hidden.to_dtype(candle_core::DType::F32).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let (mut pooled, mut logits) = (pooled.unwrap_or_default(), logits.unwrap_or_default());
        kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| match kind {
                OutputKind::Pooled => pooled
                    .get_mut(i)
                    .map(|v| Embedding::Pooled(std::mem::take(v)))
                    .ok_or_else(|| "pooling was skipped".to_string()),
                OutputKind::Logits => logits
                    .get_mut(i)
                    .map(|l| Embedding::Logits(std::mem::take(l)))
                    .ok_or_else(|| "the classification head was skipped".to_string()),
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
