//! The queue between HTTP handlers and the model thread.
//!
//! Handlers push one [`Job`] per input; the model thread takes batches formed by
//! [`batcher::take_batch`] under the token and request budget. A job whose client went away
//! (its reply channel is closed) is dropped before it reaches the model.

pub(crate) mod batcher;

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tessera_core::Encoded;
use tokio::sync::oneshot;

use crate::metrics;

pub(crate) use batcher::Budget;

/// What a request wants back for each input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputKind {
    /// The sentence vector after pooling and Dense modules, before normalization.
    Pooled,
    /// Every token's last hidden state (`/embed_all`).
    Tokens,
    /// The classification head's logits (`/predict`, `/rerank`).
    Logits,
    /// BGE-M3's lexical weights (`/embed_sparse` on a model with `sparse_linear.pt`).
    Lexical,
    /// Vectors per token (`/embed_multi_vector`: BGE-M3's `colbert_linear.pt`, a PyLate ColBERT
    /// model's Dense modules), unnormalized, for an input encoded as that side; answered as
    /// [`Embedding::Tokens`].
    MultiVector(tessera_core::ColbertSide),
}

/// One input's result.
#[derive(Debug)]
pub(crate) enum Embedding {
    Pooled(Vec<f32>),
    Tokens(Vec<Vec<f32>>),
    Logits(Vec<f32>),
    /// BGE-M3's lexical weights.
    Lexical(tessera_core::LexicalWeights),
}

impl Embedding {
    /// False when any value is NaN or infinite: such an output is never returned to a client.
    pub(crate) fn is_finite(&self) -> bool {
        match self {
            Embedding::Pooled(v) | Embedding::Logits(v) => v.iter().all(|x| x.is_finite()),
            Embedding::Tokens(rows) => rows.iter().flatten().all(|x| x.is_finite()),
            Embedding::Lexical(weights) => weights.iter().all(|(_, w)| w.is_finite()),
        }
    }
}

/// What the model thread sends back for one input.
#[derive(Debug)]
pub(crate) struct JobOutput {
    pub(crate) embedding: Embedding,
    pub(crate) queue_time: Duration,
    pub(crate) inference_time: Duration,
}

/// Why the model thread could not produce a vector.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum JobError {
    #[error("{0}")]
    Backend(String),
    #[error("the model produced NaN or infinity for this input")]
    NonFinite,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the model worker stopped")]
    WorkerStopped,
}

/// One input waiting for the model.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) encoded: Encoded,
    pub(crate) output: OutputKind,
    /// The task adapter it runs with.
    pub(crate) task: Option<usize>,
    pub(crate) reply: oneshot::Sender<Result<JobOutput, JobError>>,
    pub(crate) enqueued: Instant,
}

impl Job {
    /// True when nobody waits for the answer any more.
    pub(crate) fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

#[derive(Debug, Default)]
struct State {
    jobs: VecDeque<Job>,
    closed: bool,
    /// Closed because the model thread is gone, not for shutdown.
    aborted: bool,
}

/// A blocking FIFO shared by the async handlers (push) and the model thread (take).
#[derive(Debug, Default)]
pub(crate) struct Queue {
    state: Mutex<State>,
    ready: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the deque half-updated (every critical
        // section is a single push or drain), so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds jobs in order; fails them at once when the queue is closed.
    pub(crate) fn push(&self, jobs: Vec<Job>) {
        let mut state = self.lock();
        if state.closed {
            let error = if state.aborted {
                JobError::WorkerStopped
            } else {
                JobError::ShuttingDown
            };
            drop(state);
            for job in jobs {
                let _ = job.reply.send(Err(error.clone()));
            }
            return;
        }
        state.jobs.extend(jobs);
        metrics::queue_size(state.jobs.len());
        drop(state);
        self.ready.notify_one();
    }

    /// Blocks until a batch is available; `None` once closed and drained.
    pub(crate) fn next_batch(&self, budget: &Budget) -> Option<Vec<Job>> {
        let mut state = self.lock();
        loop {
            // Inputs of clients that went away are dropped here; the request counts once as
            // `dropped` in te_request_failure where its handler ends (infer.rs).
            let taken = batcher::take_batch(&mut state.jobs, budget);
            if taken.dropped > 0 {
                tracing::debug!("dropped {} queued inputs of clients that went away", taken.dropped);
            }
            metrics::queue_size(state.jobs.len());
            if !taken.jobs.is_empty() {
                return Some(taken.jobs);
            }
            if state.closed {
                return None;
            }
            state = self.ready.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Closes the queue and answers every queued job with [`JobError::WorkerStopped`], for when
    /// no model thread will ever read it again. Returns how many jobs were failed.
    pub(crate) fn abort(&self) -> usize {
        let jobs: Vec<Job> = {
            let mut state = self.lock();
            state.closed = true;
            state.aborted = true;
            let jobs = state.jobs.drain(..).collect();
            metrics::queue_size(0);
            jobs
        };
        self.ready.notify_all();
        let failed = jobs.len();
        for job in jobs {
            let _ = job.reply.send(Err(JobError::WorkerStopped));
        }
        failed
    }

    /// Stops accepting jobs; the model thread finishes what is queued, then stops.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}
