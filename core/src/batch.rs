//! A batch as one flat token stream plus each sequence's range in it.

use std::ops::Range;

use crate::error::BackendError;

/// Cumulative sequence boundaries of a packed batch: sequence `i` owns tokens
/// `starts[i]..starts[i + 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqOffsets {
    starts: Vec<usize>,
    /// Per sequence, how many of its leading tokens are keys: the rest query and are never
    /// attended to (a ColBERT query's expansion tokens). Empty: every token of every sequence.
    key_lens: Vec<usize>,
}

impl SeqOffsets {
    /// Builds offsets from each sequence's length.
    pub fn from_lengths(lengths: impl IntoIterator<Item = usize>) -> Self {
        let mut starts = vec![0];
        let mut total = 0;
        for len in lengths {
            total += len;
            starts.push(total);
        }
        Self {
            starts,
            key_lens: Vec::new(),
        }
    }

    /// The same sequences with the last `query_only[i]` tokens of sequence `i` left out of every
    /// token's keys (they still attend; nothing attends to them). At least one key is kept.
    pub fn with_query_only(mut self, query_only: impl IntoIterator<Item = usize>) -> Self {
        let key_lens: Vec<usize> = self
            .ranges()
            .zip(query_only)
            .map(|(range, only)| range.len().saturating_sub(only).max(1.min(range.len())))
            .collect();
        let all = key_lens.len() == self.len() && self.ranges().zip(&key_lens).all(|(r, &k)| r.len() == k);
        self.key_lens = if all { Vec::new() } else { key_lens };
        self
    }

    /// How many leading tokens of sequence `i` are keys (its length unless some query only).
    pub fn key_len(&self, i: usize) -> usize {
        self.key_lens.get(i).copied().unwrap_or_else(|| self.seq_len(i))
    }

    /// Whether every token is a key of its sequence (no query-only tokens anywhere).
    pub fn all_keys(&self) -> bool {
        self.key_lens.is_empty()
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// True when the batch holds no sequence.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total number of tokens over all sequences.
    pub fn total_tokens(&self) -> usize {
        // `starts` always holds the leading 0, so `last` exists.
        self.starts.last().copied().unwrap_or(0)
    }

    /// Token range of sequence `i` in the packed stream.
    pub fn range(&self, i: usize) -> Range<usize> {
        self.starts[i]..self.starts[i + 1]
    }

    /// Length of sequence `i`.
    pub fn seq_len(&self, i: usize) -> usize {
        self.starts[i + 1] - self.starts[i]
    }

    /// Iterates over the token ranges of all sequences.
    pub fn ranges(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        self.starts.windows(2).map(|w| w[0]..w[1])
    }

    /// Length of the longest sequence (0 for an empty batch).
    pub fn max_len(&self) -> usize {
        self.ranges().map(|r| r.len()).max().unwrap_or(0)
    }

    /// Tokens a padded layout of this batch would hold (`len * max_len`).
    pub fn padded_tokens(&self) -> usize {
        self.len() * self.max_len()
    }
}

/// Token ids of several sequences, concatenated, ready for a model.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Token ids, all sequences back to back.
    pub input_ids: Vec<u32>,
    /// Segment ids, aligned with `input_ids`.
    pub token_type_ids: Vec<u32>,
    /// Position of each token within its own sequence.
    pub position_ids: Vec<u32>,
    /// Where each sequence starts and ends.
    pub seqs: SeqOffsets,
    /// The task adapter each sequence runs with (an index into [`crate::Backend::adapters`]),
    /// one per sequence; empty: none for any.
    pub tasks: Vec<Option<usize>>,
}

impl Batch {
    /// Checks that every id indexes the model's tables, so a bad id fails this batch with a
    /// message instead of an out-of-bounds lookup.
    pub fn check_ids(&self, vocab_size: usize, type_vocab_size: usize) -> Result<(), BackendError> {
        if let Some(bad) = self.input_ids.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(BackendError::InvalidBatch(format!(
                "token id {bad} is outside the vocabulary (size {vocab_size})"
            )));
        }
        if let Some(bad) = self.token_type_ids.iter().find(|&&t| t as usize >= type_vocab_size) {
            return Err(BackendError::InvalidBatch(format!(
                "token type id {bad} is outside type_vocab_size {type_vocab_size}"
            )));
        }
        Ok(())
    }

    /// Packs sequences given as `(input_ids, token_type_ids)` pairs.
    pub fn from_sequences<'a>(seqs: impl IntoIterator<Item = (&'a [u32], &'a [u32])>) -> Self {
        let mut input_ids = Vec::new();
        let mut token_type_ids = Vec::new();
        let mut position_ids = Vec::new();
        let mut lengths = Vec::new();
        for (ids, types) in seqs {
            input_ids.extend_from_slice(ids);
            token_type_ids.extend_from_slice(types);
            position_ids.extend(0..ids.len() as u32);
            lengths.push(ids.len());
        }
        Self {
            input_ids,
            token_type_ids,
            position_ids,
            seqs: SeqOffsets::from_lengths(lengths),
            tasks: Vec::new(),
        }
    }

    /// The same batch with each sequence's task adapter (`tasks[i]` for sequence `i`).
    pub fn with_tasks(mut self, tasks: Vec<Option<usize>>) -> Self {
        self.tasks = if tasks.iter().all(Option::is_none) {
            Vec::new()
        } else {
            tasks
        };
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_describe_ragged_batches() {
        let s = SeqOffsets::from_lengths([3, 1, 5]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.total_tokens(), 9);
        assert_eq!(s.range(1), 3..4);
        assert_eq!(s.max_len(), 5);
        assert_eq!(s.padded_tokens(), 15);
    }

    #[test]
    fn query_only_tokens_are_left_out_of_the_keys() {
        let s = SeqOffsets::from_lengths([3, 1, 5]).with_query_only([0, 1, 2]);
        assert!(!s.all_keys());
        // A sequence keeps one key at least, so every query sees something.
        assert_eq!((0..3).map(|i| s.key_len(i)).collect::<Vec<_>>(), [3, 1, 3]);
        assert!(SeqOffsets::from_lengths([3, 1]).with_query_only([0, 0]).all_keys());
        assert_eq!(SeqOffsets::from_lengths([3]).key_len(0), 3);
    }

    #[test]
    fn batch_restarts_positions_per_sequence() {
        let b = Batch::from_sequences([(&[1u32, 2][..], &[0u32, 0][..]), (&[7u32][..], &[1u32][..])]);
        assert_eq!(b.input_ids, vec![1, 2, 7]);
        assert_eq!(b.position_ids, vec![0, 1, 0]);
        assert_eq!(b.token_type_ids, vec![0, 0, 1]);
        assert_eq!(b.seqs.range(1), 2..3);
    }
}
