//! Forming one batch from the queue under the token and request budget.
//!
//! The oldest waiting input is always in the next batch, so an input with `p` live inputs ahead
//! of it is served within `p + 1` batches. For padded backends the rest of the batch is filled
//! with the queued inputs (among the next [`WINDOW`]) closest in length to that oldest one, so
//! little of the batch is padding.

use std::collections::VecDeque;

use super::Job;

/// How far into the queue a padded batch looks for inputs of similar length.
pub(crate) const WINDOW: usize = 512;

/// The limits of one batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// `--max-batch-tokens`.
    pub(crate) max_tokens: usize,
    /// `--max-batch-requests` (or the backend's preferred maximum).
    pub(crate) max_requests: usize,
    /// Whether the backend pads (then the cost of a batch is `inputs * longest`).
    pub(crate) pads: bool,
}

impl Budget {
    /// What a batch of `inputs` inputs, `total` tokens and `longest` tokens counts against the budget.
    pub(crate) fn cost(&self, inputs: usize, total: usize, longest: usize) -> usize {
        if self.pads {
            inputs * longest
        } else {
            total
        }
    }
}

/// A batch and how many abandoned inputs were dropped while forming it.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    pub(crate) jobs: Vec<Job>,
    pub(crate) dropped: usize,
}

/// Takes the next batch. Inputs whose client went away are dropped, never run.
pub(crate) fn take_batch(queue: &mut VecDeque<Job>, budget: &Budget) -> Taken {
    let before = queue.len();
    queue.retain(|job| !job.abandoned());
    let dropped = before - queue.len();
    let Some(anchor) = queue.front().map(|j| j.encoded.len()) else {
        return Taken {
            jobs: Vec::new(),
            dropped,
        };
    };
    let window = queue.len().min(WINDOW);
    let mut order: Vec<usize> = (1..window).collect();
    if budget.pads {
        order.sort_by_key(|&i| (queue[i].encoded.len().abs_diff(anchor), i));
    }
    // The oldest input is always taken, even alone over budget, so nothing waits forever
    // (start-up caps the input length at the token budget, so this does not arise in practice).
    let mut chosen = vec![0];
    let (mut total, mut longest) = (anchor, anchor);
    for i in order {
        if chosen.len() >= budget.max_requests {
            break;
        }
        let len = queue[i].encoded.len();
        if budget.cost(chosen.len() + 1, total + len, longest.max(len)) > budget.max_tokens {
            if budget.pads {
                continue;
            }
            break;
        }
        chosen.push(i);
        total += len;
        longest = longest.max(len);
    }
    chosen.sort_unstable();
    let mut jobs = Vec::with_capacity(chosen.len());
    for &i in chosen.iter().rev() {
        if let Some(job) = queue.remove(i) {
            jobs.push(job);
        }
    }
    jobs.reverse();
    Taken { jobs, dropped }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{JobError, JobOutput};
    use std::time::Instant;
    use tessera_core::Encoded;
    use tokio::sync::oneshot;

    type Receivers = Vec<oneshot::Receiver<Result<JobOutput, JobError>>>;

    fn jobs(lengths: &[usize]) -> (VecDeque<Job>, Receivers) {
        let mut q = VecDeque::new();
        let mut receivers = Vec::new();
        for &len in lengths {
            let (tx, rx) = oneshot::channel();
            q.push_back(Job {
                encoded: Encoded::from_ids(vec![1; len]),
                output: crate::queue::OutputKind::Pooled,
                task: None,
                reply: tx,
                enqueued: Instant::now(),
            });
            receivers.push(rx);
        }
        (q, receivers)
    }

    fn lengths(t: &Taken) -> Vec<usize> {
        t.jobs.iter().map(|j| j.encoded.len()).collect()
    }

    #[test]
    fn padded_budget_counts_padding() {
        let (mut q, _rx) = jobs(&[2, 10, 2, 2]);
        let budget = Budget {
            max_tokens: 20,
            max_requests: 100,
            pads: true,
        };
        // Grouped by length: the three short inputs cost 3 x 2, the long one 10.
        assert_eq!(lengths(&take_batch(&mut q, &budget)), vec![2, 2, 2]);
        assert_eq!(lengths(&take_batch(&mut q, &budget)), vec![10]);
        assert!(q.is_empty());
    }

    #[test]
    fn every_batch_respects_the_budget() {
        let lens: Vec<usize> = (0..300).map(|i| 1 + (i * 37) % 120).collect();
        for pads in [true, false] {
            let (mut q2, _rx2) = jobs(&lens);
            let budget = Budget {
                max_tokens: 512,
                max_requests: 16,
                pads,
            };
            let mut served = 0;
            while !q2.is_empty() {
                let t = take_batch(&mut q2, &budget);
                let l = lengths(&t);
                served += l.len();
                assert!(l.len() <= 16);
                assert!(budget.cost(l.len(), l.iter().sum(), *l.iter().max().unwrap()) <= 512);
            }
            assert_eq!(served, lens.len(), "every input is served exactly once");
        }
    }

    #[test]
    fn the_oldest_input_is_always_served_next() {
        // A long input behind many short ones is not starved, and is served when it is oldest.
        let mut lens = vec![3; 10];
        lens.insert(1, 90);
        let (mut q, _rx) = jobs(&lens);
        let budget = Budget {
            max_tokens: 100,
            max_requests: 100,
            pads: true,
        };
        let first = take_batch(&mut q, &budget);
        assert_eq!(first.jobs[0].encoded.len(), 3);
        let second = take_batch(&mut q, &budget);
        assert_eq!(lengths(&second)[0], 90, "the long input became the oldest and leads");
    }

    #[test]
    fn unpadded_budget_counts_tokens_and_requests_in_order() {
        let (mut q, _rx) = jobs(&[2, 10, 2, 2]);
        let budget = Budget {
            max_tokens: 14,
            max_requests: 100,
            pads: false,
        };
        assert_eq!(lengths(&take_batch(&mut q, &budget)), vec![2, 10, 2]);
        let (mut q, _rx) = jobs(&[1, 1, 1]);
        let budget = Budget {
            max_tokens: 100,
            max_requests: 2,
            pads: false,
        };
        assert_eq!(take_batch(&mut q, &budget).jobs.len(), 2);
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
        let taken = take_batch(&mut q, &budget);
        assert_eq!((taken.jobs.len(), taken.dropped), (2, 1));
    }

    #[test]
    fn an_input_over_budget_still_runs_alone() {
        let (mut q, _rx) = jobs(&[50, 1]);
        let budget = Budget {
            max_tokens: 10,
            max_requests: 100,
            pads: true,
        };
        assert_eq!(take_batch(&mut q, &budget).jobs.len(), 1);
        assert_eq!(take_batch(&mut q, &budget).jobs.len(), 1);
    }
}
