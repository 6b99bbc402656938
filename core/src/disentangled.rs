//! DeBERTa's disentangled attention bias: for query `i` and key `j` of one sequence, with `c`
//! the column of their relative position `i - j`,
//! `bias[h, i, j] = c2p[h, i, c] + p2c[h, j, c]`, where `c2p[h, i, ·]` is query `i` dotted with
//! the projected relative-position keys and `p2c[h, j, ·]` key `j` dotted with the projected
//! relative-position queries (transformers' `disentangled_attention_bias`; its p2c gathers at
//! `-bucket(j - i)`, which is `bucket(i - j)` since the buckets are odd-symmetric, so both terms
//! read one column). Per batch this is `tokens x heads x columns` values for each term, never a
//! `heads x n x n` tensor: kernels add it tile by tile.

use std::ops::Range;

/// The relative-position column of every offset `i - j` a batch can hold, for one model's
/// buckets; the columns used form the contiguous range `first..first + span` of the
/// relative-embedding table, so only those rows are projected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelativeColumns {
    /// `columns[(i - j) + reach] - first`.
    columns: Vec<u32>,
    reach: usize,
    first: usize,
    span: usize,
}

impl RelativeColumns {
    /// Columns for offsets `-reach..=reach` from `column(offset)` (monotonic in the offset, as
    /// DeBERTa's clamped buckets are).
    pub fn new(reach: usize, column: impl Fn(i64) -> usize) -> Self {
        let absolute: Vec<usize> = (-(reach as i64)..=reach as i64).map(&column).collect();
        let first = absolute.iter().copied().min().unwrap_or(0);
        let last = absolute.iter().copied().max().unwrap_or(0);
        Self {
            columns: absolute.iter().map(|&c| (c - first) as u32).collect(),
            reach,
            first,
            span: last - first + 1,
        }
    }

    /// The rows of the relative-embedding table the batch uses.
    pub fn rows(&self) -> Range<usize> {
        self.first..self.first + self.span
    }

    /// The column (within [`RelativeColumns::rows`]) of query position `i` and key position `j`.
    #[inline(always)]
    pub fn of(&self, i: usize, j: usize) -> usize {
        self.columns[i + self.reach - j] as usize
    }
}

/// The two terms of one layer, for a packed batch of `total` tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct DisentangledBias {
    /// `[heads][total][span]`; empty when the model has no content-to-position term.
    c2p: Vec<f32>,
    /// `[heads][total][span]`; empty when the model has no position-to-content term.
    p2c: Vec<f32>,
    heads: usize,
    total: usize,
    columns: RelativeColumns,
}

impl DisentangledBias {
    /// The bias from each term's `[heads][total][columns.rows().len()]` values (`None`: the model
    /// lacks that term).
    pub fn new(
        c2p: Option<Vec<f32>>,
        p2c: Option<Vec<f32>>,
        heads: usize,
        total: usize,
        columns: RelativeColumns,
    ) -> candle_core::Result<Self> {
        let want = heads * total * columns.span;
        for term in [&c2p, &p2c].into_iter().flatten() {
            if term.len() != want {
                candle_core::bail!(
                    "a disentangled bias term of {} values for {heads} heads, {total} tokens and {} columns",
                    term.len(),
                    columns.span
                );
            }
        }
        Ok(Self {
            c2p: c2p.unwrap_or_default(),
            p2c: p2c.unwrap_or_default(),
            heads,
            total,
            columns,
        })
    }

    /// The bias of head `h` for query token `i` and key token `j` of the same sequence, both
    /// indices into the packed batch.
    #[inline(always)]
    pub fn get(&self, h: usize, i: usize, j: usize) -> f32 {
        let c = self.columns.of(i, j);
        let span = self.columns.span;
        let mut b = 0.0;
        if !self.c2p.is_empty() {
            b += self.c2p[(h * self.total + i) * span + c];
        }
        if !self.p2c.is_empty() {
            b += self.p2c[(h * self.total + j) * span + c];
        }
        b
    }

    /// The bias of the tokens `range` alone (one sequence, for kernels that attend per sequence).
    pub fn narrow(&self, range: Range<usize>) -> Self {
        let span = self.columns.span;
        let part = |term: &[f32]| -> Vec<f32> {
            if term.is_empty() {
                return Vec::new();
            }
            (0..self.heads)
                .flat_map(|h| term[(h * self.total + range.start) * span..(h * self.total + range.end) * span].iter())
                .copied()
                .collect()
        };
        Self {
            c2p: part(&self.c2p),
            p2c: part(&self.p2c),
            heads: self.heads,
            total: range.len(),
            columns: self.columns.clone(),
        }
    }

    /// Checks that the bias was made for `heads` heads, `total` tokens and sequences of up to
    /// `longest` tokens.
    pub fn check(&self, heads: usize, total: usize, longest: usize) -> candle_core::Result<()> {
        if self.heads != heads || self.total != total || self.columns.reach + 1 < longest {
            candle_core::bail!(
                "a disentangled bias for {} heads, {} tokens and {} positions, used for {heads} heads, {total} tokens and {longest} positions",
                self.heads,
                self.total,
                self.columns.reach + 1
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_cover_only_the_rows_a_batch_reaches() {
        // Offsets -2..=2 clamped into columns 3..=5 of a wider table.
        let columns = RelativeColumns::new(2, |d| (d + 4).clamp(3, 5) as usize);
        assert_eq!(columns.rows(), 3..6);
        assert_eq!(columns.of(0, 2), 0); // offset -2 -> column 3
        assert_eq!(columns.of(2, 2), 1); // offset 0 -> column 4
        assert_eq!(columns.of(2, 0), 2); // offset 2 -> column 5
    }

    #[test]
    fn both_terms_read_the_column_of_the_offset() {
        let columns = RelativeColumns::new(1, |d| (d + 1) as usize);
        // One head, two tokens, three columns: c2p[i][c] = 10 i + c, p2c[j][c] = 100 (j + 1) c.
        let c2p = vec![0.0, 1.0, 2.0, 10.0, 11.0, 12.0];
        let p2c = vec![0.0, 100.0, 200.0, 0.0, 200.0, 400.0];
        let bias = DisentangledBias::new(Some(c2p), Some(p2c), 1, 2, columns).unwrap();
        // i = 1, j = 0: offset 1, column 2: c2p[1][2] + p2c[0][2].
        assert_eq!(bias.get(0, 1, 0), 12.0 + 200.0);
        // i = 0, j = 1: offset -1, column 0: c2p[0][0] + p2c[1][0].
        assert_eq!(bias.get(0, 0, 1), 0.0);
        assert_eq!(bias.get(0, 1, 1), 11.0 + 200.0);
        let second = bias.narrow(1..2);
        assert_eq!(second.get(0, 0, 0), 11.0 + 200.0);
        assert!(bias.check(1, 2, 2).is_ok() && bias.check(1, 2, 3).is_err() && bias.check(2, 2, 2).is_err());
        assert!(DisentangledBias::new(
            Some(vec![0.0; 5]),
            None,
            1,
            2,
            RelativeColumns::new(1, |d| (d + 1) as usize)
        )
        .is_err());
    }
}
