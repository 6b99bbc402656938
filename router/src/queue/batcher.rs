//! Forming one batch from the queue under the token and request budget.

use std::collections::VecDeque;

use super::Job;

/// The limits of one batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// `--max-batch-tokens`.
    pub(crate) max_tokens: usize,
    /// `--max-batch-requests`.
    pub(crate) max_requests: usize,
    /// Whether the backend pads (then the cost of a batch is `inputs * longest`).
    pub(crate) pads: bool,
}

impl Budget {
    fn cost(&self, inputs: usize, total: usize, longest: usize) -> usize {
        if self.pads {
            inputs * longest
        } else {
            total
        }
    }
}

/// Takes the oldest jobs that fit the budget, in order; abandoned jobs are dropped.
///
/// The first live job is always taken, even alone over budget, so nothing waits forever
/// (start-up caps the input length at the token budget, so this does not happen in practice).
pub(crate) fn take_batch(jobs: &mut VecDeque<Job>, budget: &Budget) -> Vec<Job> {
    let mut batch = Vec::new();
    let (mut total, mut longest) = (0, 0);
    while let Some(job) = jobs.front() {
        if job.abandoned() {
            jobs.pop_front();
            continue;
        }
        let len = job.encoded.len();
        let cost = budget.cost(batch.len() + 1, total + len, longest.max(len));
        let fits = batch.len() < budget.max_requests && cost <= budget.max_tokens;
        if !fits && !batch.is_empty() {
            break;
        }
        total += len;
        longest = longest.max(len);
        if let Some(job) = jobs.pop_front() {
            batch.push(job);
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tessera_core::Encoded;
    use tokio::sync::oneshot;

    fn jobs(
        lengths: &[usize],
    ) -> (
        VecDeque<Job>,
        Vec<oneshot::Receiver<Result<super::super::JobOutput, super::super::JobError>>>,
    ) {
        let mut q = VecDeque::new();
        let mut receivers = Vec::new();
        for &len in lengths {
            let (tx, rx) = oneshot::channel();
            q.push_back(Job {
                encoded: Encoded::from_ids(vec![1; len]),
                reply: tx,
                enqueued: Instant::now(),
            });
            receivers.push(rx);
        }
        (q, receivers)
    }

    #[test]
    fn padded_budget_counts_padding() {
        let (mut q, _rx) = jobs(&[2, 10, 2, 2]);
        let budget = Budget {
            max_tokens: 20,
            max_requests: 100,
            pads: true,
        };
        // 2 inputs x 10 = 20 fits; a third would cost 30.
        assert_eq!(take_batch(&mut q, &budget).len(), 2);
        assert_eq!(take_batch(&mut q, &budget).len(), 2);
        assert!(q.is_empty());
    }

    #[test]
    fn unpadded_budget_counts_tokens_and_requests() {
        let (mut q, _rx) = jobs(&[2, 10, 2, 2]);
        let budget = Budget {
            max_tokens: 14,
            max_requests: 100,
            pads: false,
        };
        assert_eq!(take_batch(&mut q, &budget).len(), 3);
        let (mut q, _rx) = jobs(&[1, 1, 1]);
        let budget = Budget {
            max_tokens: 100,
            max_requests: 2,
            pads: false,
        };
        assert_eq!(take_batch(&mut q, &budget).len(), 2);
    }

    #[test]
    fn abandoned_jobs_never_reach_the_model() {
        let (mut q, mut rx) = jobs(&[3, 3, 3]);
        drop(rx.remove(1));
        let budget = Budget {
            max_tokens: 100,
            max_requests: 100,
            pads: false,
        };
        let batch = take_batch(&mut q, &budget);
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn an_input_over_budget_still_runs_alone() {
        let (mut q, _rx) = jobs(&[50, 1]);
        let budget = Budget {
            max_tokens: 10,
            max_requests: 100,
            pads: true,
        };
        assert_eq!(take_batch(&mut q, &budget).len(), 1);
        assert_eq!(take_batch(&mut q, &budget).len(), 1);
    }
}
