//! DeBERTa's disentangled attention bias: for query `i` and key `j` of one sequence, with `c`
//! the column of their relative position `i - j`,
//! `bias[h, i, j] = c2p[h, i, c] + p2c[h, j, c]`, where `c2p[h, i, ·]` is query `i` dotted with
//! the projected relative-position keys and `p2c[h, j, ·]` key `j` dotted with the projected
//! relative-position queries (transformers' `disentangled_attention_bias`; its p2c gathers at
//! `-bucket(j - i)`, which is `bucket(i - j)` since the buckets are odd-symmetric, so both terms
//! read one column). Per batch this is `tokens x heads x columns` values for each term, never a
//! `heads x n x n` tensor: kernels add it tile by tile.

use std::ops::Range;

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};

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

/// The two terms of one layer, for a packed batch of `total` tokens: `[heads, total, span]`
/// float32 tensors as the products left them (no copy on the CPU).
#[derive(Debug, Clone)]
pub struct DisentangledBias {
    /// Absent when the model has no content-to-position term.
    c2p: Option<Tensor>,
    /// Absent when the model has no position-to-content term.
    p2c: Option<Tensor>,
    heads: usize,
    total: usize,
    columns: RelativeColumns,
}

impl DisentangledBias {
    /// The bias from each term's `[heads, total, columns.rows().len()]` values (`None`: the
    /// model lacks that term).
    pub fn new(
        c2p: Option<Tensor>,
        p2c: Option<Tensor>,
        heads: usize,
        total: usize,
        columns: RelativeColumns,
    ) -> candle_core::Result<Self> {
        let want = (heads, total, columns.span);
        let term = |t: Option<Tensor>| -> candle_core::Result<Option<Tensor>> {
            let Some(t) = t else { return Ok(None) };
            if t.dims3()? != want {
                candle_core::bail!("a disentangled bias term of shape {:?}, for {want:?}", t.dims());
            }
            Ok(Some(t.to_dtype(DType::F32)?))
        };
        Ok(Self {
            c2p: term(c2p)?,
            p2c: term(p2c)?,
            heads,
            total,
            columns,
        })
    }

    /// The bias of the tokens `range` alone (one sequence, for kernels that attend per sequence).
    pub fn narrow(&self, range: Range<usize>) -> candle_core::Result<Self> {
        let part = |t: &Option<Tensor>| t.as_ref().map(|t| t.narrow(1, range.start, range.len())).transpose();
        Ok(Self {
            c2p: part(&self.c2p)?,
            p2c: part(&self.p2c)?,
            heads: self.heads,
            total: range.len(),
            columns: self.columns.clone(),
        })
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

    /// Runs `f` with the terms readable in host memory: in place for contiguous CPU tensors,
    /// copied there otherwise.
    pub fn read<R>(&self, f: impl FnOnce(&DisentangledTerms<'_>) -> R) -> candle_core::Result<R> {
        let host = |t: &Option<Tensor>| -> candle_core::Result<Option<Tensor>> {
            let Some(t) = t else { return Ok(None) };
            let t = t.to_device(&Device::Cpu)?;
            Ok(Some(if t.is_contiguous() { t } else { t.contiguous()? }))
        };
        let (c2p, p2c) = (host(&self.c2p)?, host(&self.p2c)?);
        let c2p_storage = c2p.as_ref().map(|t| t.storage_and_layout());
        let p2c_storage = p2c.as_ref().map(|t| t.storage_and_layout());
        let len = self.heads * self.total * self.columns.span;
        let terms = DisentangledTerms {
            c2p: host_slice(c2p_storage.as_ref().map(|(s, l)| (&**s, *l)), len)?,
            p2c: host_slice(p2c_storage.as_ref().map(|(s, l)| (&**s, *l)), len)?,
            total: self.total,
            columns: &self.columns,
        };
        Ok(f(&terms))
    }
}

/// The first `len` values of a float32 host tensor's storage, from its layout's start.
fn host_slice<'a>(
    storage: Option<(&'a Storage, &candle_core::Layout)>,
    len: usize,
) -> candle_core::Result<Option<&'a [f32]>> {
    match storage {
        None => Ok(None),
        Some((Storage::Cpu(CpuStorage::F32(data)), layout)) => Ok(data
            .get(layout.start_offset()..)
            .and_then(|rest| rest.get(..len))
            .ok_or_else(|| candle_core::Error::Msg("a disentangled bias term shorter than its shape".into()))
            .map(Some)?),
        Some(_) => candle_core::bail!("a disentangled bias term not in float32 host memory"),
    }
}

/// The terms of a [`DisentangledBias`] as host slices, for kernels to add.
#[derive(Debug, Clone, Copy)]
pub struct DisentangledTerms<'a> {
    c2p: Option<&'a [f32]>,
    p2c: Option<&'a [f32]>,
    total: usize,
    columns: &'a RelativeColumns,
}

impl DisentangledTerms<'_> {
    /// The bias of head `h` for query token `i` and key token `j` of the same sequence, both
    /// indices into the packed batch.
    #[inline(always)]
    pub fn get(&self, h: usize, i: usize, j: usize) -> f32 {
        let c = self.columns.of(i, j);
        let span = self.columns.span;
        let mut b = 0.0;
        if let Some(c2p) = self.c2p {
            b += c2p[(h * self.total + i) * span + c];
        }
        if let Some(p2c) = self.p2c {
            b += p2c[(h * self.total + j) * span + c];
        }
        b
    }

    /// Adds head `h`'s bias for query token `i` to `scores`, the scores of the consecutive key
    /// tokens from `first_key` (all of `i`'s sequence): a kernel's row of one tile. The keys'
    /// columns are a backward run of the offset table, and each term is one pass.
    #[inline(always)]
    pub fn add_to_row(&self, h: usize, i: usize, first_key: usize, scores: &mut [f32]) {
        let span = self.columns.span;
        let last = i + self.columns.reach - first_key;
        let columns = &self.columns.columns[last + 1 - scores.len()..=last];
        if let Some(c2p) = self.c2p {
            let row = &c2p[(h * self.total + i) * span..][..span];
            for (s, &c) in scores.iter_mut().zip(columns.iter().rev()) {
                *s += row[c as usize];
            }
        }
        if let Some(p2c) = self.p2c {
            let keys = &p2c[(h * self.total + first_key) * span..][..scores.len() * span];
            for ((s, &c), key) in scores.iter_mut().zip(columns.iter().rev()).zip(keys.chunks_exact(span)) {
                *s += key[c as usize];
            }
        }
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
        let term = |v: Vec<f32>| Some(Tensor::from_vec(v, (1, 2, 3), &Device::Cpu).unwrap());
        let c2p = term(vec![0.0, 1.0, 2.0, 10.0, 11.0, 12.0]);
        let p2c = term(vec![0.0, 100.0, 200.0, 0.0, 200.0, 400.0]);
        let bias = DisentangledBias::new(c2p, p2c, 1, 2, columns).unwrap();
        bias.read(|t| {
            // i = 1, j = 0: offset 1, column 2: c2p[1][2] + p2c[0][2].
            assert_eq!(t.get(0, 1, 0), 12.0 + 200.0);
            // i = 0, j = 1: offset -1, column 0: c2p[0][0] + p2c[1][0].
            assert_eq!(t.get(0, 0, 1), 0.0);
            assert_eq!(t.get(0, 1, 1), 11.0 + 200.0);
            let mut row = [0.0; 2];
            t.add_to_row(0, 1, 0, &mut row);
            assert_eq!(row, [t.get(0, 1, 0), t.get(0, 1, 1)]);
        })
        .unwrap();
        let second = bias.narrow(1..2).unwrap();
        second.read(|t| assert_eq!(t.get(0, 0, 0), 11.0 + 200.0)).unwrap();
        assert!(bias.check(1, 2, 2).is_ok() && bias.check(1, 2, 3).is_err() && bias.check(2, 2, 2).is_err());
        let short = Some(Tensor::zeros((1, 2, 2), DType::F32, &Device::Cpu).unwrap());
        assert!(DisentangledBias::new(short, None, 1, 2, RelativeColumns::new(1, |d| (d + 1) as usize)).is_err());
    }
}
