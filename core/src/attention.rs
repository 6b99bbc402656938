//! Attention as the one swappable kernel.
//!
//! Models run every token-wise layer on the packed `[total_tokens, hidden]` stream and call an
//! [`AttentionKernel`] for the only step that needs sequence boundaries. [`PaddedAttention`] is the
//! reference kernel: it re-pads, masks and runs a dense softmax, in query blocks so that the score
//! tensor stays bounded however long the batch is.

use candle_core::{DType, Device, Tensor};

use crate::batch::SeqOffsets;
use crate::disentangled::{DisentangledBias, DisentangledTerms};

/// A position-dependent additive bias applied inside attention.
#[derive(Debug, Clone)]
pub enum PositionBias {
    /// No bias (absolute or no positions).
    None,
    /// ALiBi: `bias[h, i, j] = -slopes[h] * |i - j|`, built per batch, never for the maximum length.
    Alibi {
        /// One slope per head.
        slopes: Vec<f32>,
    },
    /// A learned bias by relative position (MPNet's buckets), tabulated for the batch.
    Relative(RelativeBias),
    /// DeBERTa's content-dependent bias by relative position, computed per layer and batch.
    Disentangled(DisentangledBias),
}

impl PositionBias {
    /// The bias of the packed tokens `range` (one sequence) as a batch of their own: only a
    /// per-token bias changes.
    pub fn of_tokens(&self, range: std::ops::Range<usize>) -> candle_core::Result<PositionBias> {
        Ok(match self {
            PositionBias::Disentangled(bias) => PositionBias::Disentangled(bias.narrow(range)?),
            other => other.clone(),
        })
    }
}

/// Which keys each query may see, within its own sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mask {
    /// Every key (encoders).
    #[default]
    Bidirectional,
    /// Keys at or before the query (decoders): `j <= i`.
    Causal,
    /// Keys within `radius` positions either side (ModernBERT's local layers): `|i - j| <= radius`.
    Window {
        /// Keys seen on each side.
        radius: usize,
    },
    /// The last `size` keys up to and including the query (Mistral's sliding window):
    /// `i - size < j <= i`.
    CausalWindow {
        /// Keys seen, the query's own included (`sliding_window`).
        size: usize,
    },
}

impl Mask {
    /// The keys `lo..hi` query `i` of a `len`-token sequence sees.
    pub fn keys(self, i: usize, len: usize) -> std::ops::Range<usize> {
        match self {
            Mask::Bidirectional => 0..len,
            Mask::Causal => 0..(i + 1).min(len),
            Mask::Window { radius } => i.saturating_sub(radius)..i.saturating_add(radius).saturating_add(1).min(len),
            Mask::CausalWindow { size } => (i + 1).saturating_sub(size)..(i + 1).min(len),
        }
    }

    /// The keys any of queries `q0..q1` sees: the tiles a kernel walks.
    pub fn keys_of_rows(self, q0: usize, q1: usize, len: usize) -> std::ops::Range<usize> {
        if q1 <= q0 {
            return 0..0;
        }
        self.keys(q0, len).start..self.keys(q1 - 1, len).end
    }

    /// [`Mask::keys`] among a sequence's first `key_len` tokens only (the others query only;
    /// see [`SeqOffsets::with_query_only`]); empty when the mask leaves it none of them.
    pub fn keys_within(self, i: usize, len: usize, key_len: usize) -> std::ops::Range<usize> {
        let keys = self.keys(i, len);
        let end = keys.end.min(key_len);
        keys.start.min(end)..end
    }
}

/// What a kernel makes of a query's scaled scores besides the position bias: which keys it may
/// see, and a soft cap.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scoring {
    /// The keys each query sees.
    pub mask: Mask,
    /// `cap * tanh(s / cap)` on each scaled score `s`, before the bias and the mask (Gemma 2's
    /// `attn_logit_softcapping`): scores stay within `(-cap, cap)`.
    pub softcap: Option<f32>,
}

impl From<Mask> for Scoring {
    fn from(mask: Mask) -> Self {
        Self { mask, softcap: None }
    }
}

impl Scoring {
    /// `s` soft-capped, when a cap is set.
    #[inline(always)]
    pub fn cap(self, s: f32) -> f32 {
        match self.softcap {
            Some(cap) => cap * (s / cap).tanh(),
            None => s,
        }
    }
}

/// `bias[h, i, j]` that depends only on `j - i`, tabulated per head for every offset a batch can
/// hold: the bias for key `j` seen from query `i` is `row(h)[j - i + reach]`. Built once per
/// batch (heads x (2 x longest - 1) values), never as a [heads x n x n] tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct RelativeBias {
    table: Vec<f32>,
    heads: usize,
    reach: usize,
}

impl RelativeBias {
    /// Tabulates `bias(h, j - i)` for `heads` heads and offsets within `-reach..=reach`.
    pub fn tabulate(heads: usize, reach: usize, bias: impl Fn(usize, i64) -> f32) -> Self {
        let width = 2 * reach + 1;
        let mut table = Vec::with_capacity(heads * width);
        for h in 0..heads {
            table.extend((0..width).map(|c| bias(h, c as i64 - reach as i64)));
        }
        Self { table, heads, reach }
    }

    /// Head `h`'s row: the bias for offset `d = j - i` is at `d + reach`.
    pub fn row(&self, h: usize) -> &[f32] {
        let width = 2 * self.reach + 1;
        &self.table[h * width..(h + 1) * width]
    }

    /// The largest `|j - i|` tabulated.
    pub fn reach(&self) -> usize {
        self.reach
    }

    /// Heads tabulated.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// The bias of head `h` for query `i` and key `j` (positions within one sequence).
    pub fn get(&self, h: usize, i: usize, j: usize) -> f32 {
        self.row(h)[j + self.reach - i]
    }

    /// Checks that the table covers `heads` heads and sequences of up to `longest` tokens.
    pub fn check(&self, heads: usize, longest: usize) -> candle_core::Result<()> {
        if self.heads != heads || self.reach + 1 < longest {
            candle_core::bail!(
                "a relative bias for {} heads and {} positions, used for {heads} heads and {longest} positions",
                self.heads,
                self.reach + 1
            );
        }
        Ok(())
    }
}

/// Attention over a packed batch.
pub trait AttentionKernel: std::fmt::Debug + Send + Sync {
    /// A short name for logs and `/info`.
    fn name(&self) -> &'static str;

    /// Whether the kernel computes over a padded layout (the batcher then counts padding).
    fn pads(&self) -> bool;

    /// `q`: `[total_tokens, heads, head_dim]`, packed as `seqs` says; `k`, `v`: `[total_tokens,
    /// kv_heads, head_dim]` where `kv_heads` divides `heads` (grouped-query attention: query head
    /// `h` reads key/value head `h / (heads / kv_heads)`, never copied per query head). They may
    /// be strided views of a fused projection (see [`crate::layers::split_heads`]), so a kernel
    /// that needs contiguous memory copies them. Returns `[total_tokens, heads, head_dim]`: each
    /// token attends only within its sequence, to the keys `scoring.mask` leaves it.
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        seqs: &SeqOffsets,
        bias: &PositionBias,
        scoring: Scoring,
    ) -> candle_core::Result<Tensor>;
}

/// The reference kernel: pad to the longest sequence, mask padded keys, dense softmax.
#[derive(Debug, Clone, Copy)]
pub struct PaddedAttention {
    /// Upper bound on elements of one block of scores (`batch * heads * block_rows * max_len`).
    pub max_score_elements: usize,
}

impl Default for PaddedAttention {
    fn default() -> Self {
        // 4M f32 scores = 16 MiB per temporary (scores, bias, probabilities): small next to
        // the weights, large enough that a typical batch runs in one or two blocks.
        Self {
            max_score_elements: 4 << 20,
        }
    }
}

impl AttentionKernel for PaddedAttention {
    fn name(&self) -> &'static str {
        "padded"
    }

    fn pads(&self) -> bool {
        true
    }

    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        seqs: &SeqOffsets,
        bias: &PositionBias,
        scoring: Scoring,
    ) -> candle_core::Result<Tensor> {
        let mask = scoring.mask;
        let (total, heads, head_dim) = q.dims3()?;
        let group = query_heads_per_kv_head(q, k, v)?;
        let batch = seqs.len();
        let max_len = seqs.max_len();
        let device = q.device();
        // The reference repeats each key/value head for its group: simple, and a copy.
        let repeat = |t: &Tensor| -> candle_core::Result<Tensor> {
            if group == 1 {
                return Ok(t.clone());
            }
            let kv_heads = heads / group;
            t.unsqueeze(2)?
                .broadcast_as((total, kv_heads, group, head_dim))?
                .reshape((total, heads, head_dim))
        };
        let (k, v) = (&repeat(k)?, &repeat(v)?);

        let gather = gather_index(seqs, device)?;
        let to_padded = |x: &Tensor| -> candle_core::Result<Tensor> {
            x.reshape((total, heads * head_dim))?
                .index_select(&gather, 0)?
                .reshape((batch, max_len, heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (qp, kp, vp) = (to_padded(q)?, to_padded(k)?, to_padded(v)?);
        let kt = kp.transpose(2, 3)?.contiguous()?;
        let key_mask = key_padding_mask(seqs, q.dtype(), device)?;
        let scale = 1.0 / (head_dim as f64).sqrt();

        let rows_per_block = (self.max_score_elements / (batch * heads * max_len).max(1)).max(1);
        let mut blocks = Vec::with_capacity(max_len.div_ceil(rows_per_block));
        let mut row = 0;
        while row < max_len {
            let rows = rows_per_block.min(max_len - row);
            let qb = qp.narrow(2, row, rows)?;
            let mut scores = (qb.matmul(&kt)? * scale)?;
            if let Some(cap) = scoring.softcap {
                scores = ((scores / f64::from(cap))?.tanh()? * f64::from(cap))?;
            }
            if let Some(mask) = &key_mask {
                scores = scores.broadcast_add(mask)?;
            }
            if mask != Mask::Bidirectional {
                scores = scores.broadcast_add(&mask_block(mask, row, rows, max_len, device)?.to_dtype(q.dtype())?)?;
            }
            match bias {
                PositionBias::None => {}
                PositionBias::Alibi { slopes } => {
                    let alibi = alibi_block(slopes, row, rows, max_len, device)?.to_dtype(q.dtype())?;
                    scores = scores.broadcast_add(&alibi)?;
                }
                PositionBias::Relative(relative) => {
                    relative.check(heads, max_len)?;
                    let block = relative_block(relative, row, rows, max_len, device)?.to_dtype(q.dtype())?;
                    scores = scores.broadcast_add(&block)?;
                }
                PositionBias::Disentangled(disentangled) => {
                    disentangled.check(heads, total, max_len)?;
                    let block = disentangled
                        .read(|terms| disentangled_block(terms, seqs, heads, row, rows, device))??
                        .to_dtype(q.dtype())?;
                    scores = scores.broadcast_add(&block)?;
                }
            }
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            blocks.push(probs.matmul(&vp)?);
            row += rows;
        }
        let out = Tensor::cat(&blocks, 2)?
            .transpose(1, 2)?
            .reshape((batch * max_len, heads * head_dim))?;
        let out = if batch * max_len == total {
            out
        } else {
            out.index_select(&scatter_index(seqs, device)?, 0)?
        };
        out.reshape((total, heads, head_dim))
    }
}

/// Query heads per key/value head, after checking that k and v are `[total, kv_heads, head_dim]`
/// with `kv_heads` dividing q's heads.
pub fn query_heads_per_kv_head(q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<usize> {
    let (total, heads, head_dim) = q.dims3()?;
    let (k_total, kv_heads, k_dim) = k.dims3()?;
    if v.dims3()? != (k_total, kv_heads, k_dim)
        || (k_total, k_dim) != (total, head_dim)
        || kv_heads == 0
        || heads % kv_heads != 0
    {
        candle_core::bail!(
            "attention: k is {:?} and v {:?} but q is [{total}, {heads}, {head_dim}] (k and v need q's tokens and \
             head size, and a number of heads that divides q's)",
            k.dims(),
            v.dims()
        );
    }
    Ok(heads / kv_heads)
}

/// For each padded slot, the packed row it reads (padding reads row 0 and is masked out).
fn gather_index(seqs: &SeqOffsets, device: &Device) -> candle_core::Result<Tensor> {
    let max_len = seqs.max_len();
    let mut idx = Vec::with_capacity(seqs.len() * max_len);
    for range in seqs.ranges() {
        idx.extend((range.start..range.end).map(|i| i as u32));
        idx.extend(std::iter::repeat_n(range.start as u32, max_len - range.len()));
    }
    Tensor::from_vec(idx, seqs.len() * max_len, device)
}

/// For each packed token, its slot in the padded layout.
fn scatter_index(seqs: &SeqOffsets, device: &Device) -> candle_core::Result<Tensor> {
    let max_len = seqs.max_len();
    let idx: Vec<u32> = seqs
        .ranges()
        .enumerate()
        .flat_map(|(b, range)| (0..range.len()).map(move |p| (b * max_len + p) as u32))
        .collect();
    let n = idx.len();
    Tensor::from_vec(idx, n, device)
}

/// `[batch, 1, 1, max_len]` with 0 for real keys and -inf for padding and query-only tokens;
/// `None` when nothing is padded or left out.
fn key_padding_mask(seqs: &SeqOffsets, dtype: DType, device: &Device) -> candle_core::Result<Option<Tensor>> {
    let max_len = seqs.max_len();
    if seqs.all_keys() && seqs.ranges().all(|r| r.len() == max_len) {
        return Ok(None);
    }
    let mut mask = Vec::with_capacity(seqs.len() * max_len);
    for i in 0..seqs.len() {
        // Query-only tokens are masked as padding is; their own rows are kept.
        let keys = seqs.key_len(i);
        mask.extend(std::iter::repeat_n(0f32, keys));
        mask.extend(std::iter::repeat_n(f32::NEG_INFINITY, max_len - keys));
    }
    let mask = Tensor::from_vec(mask, (seqs.len(), 1, 1, max_len), device)?.to_dtype(dtype)?;
    Ok(Some(mask))
}

/// `[rows, keys]`: 0 where query `first_row + r` may see key `j`, -inf elsewhere. Padded keys
/// lie past every real one, so the padding mask still covers them.
fn mask_block(mask: Mask, first_row: usize, rows: usize, keys: usize, device: &Device) -> candle_core::Result<Tensor> {
    let mut block = vec![f32::NEG_INFINITY; rows * keys];
    for (r, row) in block.chunks_exact_mut(keys).enumerate() {
        // Positions past a short sequence's end are padding; their rows are dropped.
        row[mask.keys(first_row + r, keys)].fill(0.0);
    }
    Tensor::from_vec(block, (rows, keys), device)
}

/// `[heads, rows, keys]` ALiBi bias for query rows `first_row..first_row + rows`.
fn alibi_block(
    slopes: &[f32],
    first_row: usize,
    rows: usize,
    keys: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let i = Tensor::arange(first_row as f32, (first_row + rows) as f32, device)?.reshape((rows, 1))?;
    let j = Tensor::arange(0f32, keys as f32, device)?.reshape((1, keys))?;
    let distance = i.broadcast_sub(&j)?.abs()?.unsqueeze(0)?;
    let slopes = Tensor::from_slice(slopes, (slopes.len(), 1, 1), device)?;
    distance.broadcast_mul(&slopes)?.neg()
}

/// `[heads, rows, keys]` relative bias for query rows `first_row..first_row + rows`.
fn relative_block(
    relative: &RelativeBias,
    first_row: usize,
    rows: usize,
    keys: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let mut block = Vec::with_capacity(relative.heads() * rows * keys);
    for h in 0..relative.heads() {
        for i in first_row..first_row + rows {
            block.extend((0..keys).map(|j| relative.get(h, i, j)));
        }
    }
    Tensor::from_vec(block, (relative.heads(), rows, keys), device)
}

/// `[batch, heads, rows, max_len]` disentangled bias for query rows `first_row..first_row + rows`
/// of each sequence; 0 at padded positions (their scores are masked or dropped).
fn disentangled_block(
    bias: &DisentangledTerms<'_>,
    seqs: &SeqOffsets,
    heads: usize,
    first_row: usize,
    rows: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let max_len = seqs.max_len();
    let mut block = vec![0f32; seqs.len() * heads * rows * max_len];
    for (b, range) in seqs.ranges().enumerate() {
        for h in 0..heads {
            for r in 0..rows.min(range.len().saturating_sub(first_row)) {
                let i = range.start + first_row + r;
                let at = ((b * heads + h) * rows + r) * max_len;
                for (j, slot) in range.clone().zip(&mut block[at..at + range.len()]) {
                    *slot = bias.get(h, i, j);
                }
            }
        }
    }
    Tensor::from_vec(block, (seqs.len(), heads, rows, max_len), device)
}

/// Multi-head attention over a packed batch, written with explicit loops over sequences, heads
/// and positions. Slow and obviously correct: tests compare every kernel with it.
pub fn reference_attention(
    q: &[Vec<Vec<f32>>],
    k: &[Vec<Vec<f32>>],
    v: &[Vec<Vec<f32>>],
    seqs: &SeqOffsets,
    bias: &PositionBias,
    scoring: Scoring,
) -> Vec<Vec<Vec<f32>>> {
    match bias {
        PositionBias::Disentangled(disentangled) => disentangled
            .read(|terms| reference_with(q, k, v, seqs, bias, Some(terms), scoring))
            .expect("the disentangled terms are readable"),
        _ => reference_with(q, k, v, seqs, bias, None, scoring),
    }
}

/// [`reference_attention`] with a disentangled bias's terms read.
fn reference_with(
    q: &[Vec<Vec<f32>>],
    k: &[Vec<Vec<f32>>],
    v: &[Vec<Vec<f32>>],
    seqs: &SeqOffsets,
    bias: &PositionBias,
    terms: Option<&DisentangledTerms<'_>>,
    scoring: Scoring,
) -> Vec<Vec<Vec<f32>>> {
    let mask = scoring.mask;
    // Written from the definitions, not from `Mask::keys`, so that it checks those ranges too.
    let visible = |i: usize, j: usize| match mask {
        Mask::Bidirectional => true,
        Mask::Causal => j <= i,
        Mask::Window { radius } => i.abs_diff(j) <= radius,
        Mask::CausalWindow { size } => j <= i && i - j < size,
    };
    let heads = q.first().map(|t| t.len()).unwrap_or(0);
    // Query heads per key/value head (grouped-query attention; 1 when they match).
    let group = heads / k.first().map_or(heads, |t| t.len()).max(1);
    let head_dim = q.first().and_then(|t| t.first()).map(|h| h.len()).unwrap_or(0);
    let scale = 1.0 / (head_dim as f64).sqrt();
    let mut out = vec![vec![vec![0f32; head_dim]; heads]; q.len()];
    for (s, range) in seqs.ranges().enumerate() {
        let key_end = range.start + seqs.key_len(s);
        for h in 0..heads {
            for i in range.clone() {
                let keys: Vec<usize> = (range.start..key_end).filter(|&j| visible(i, j)).collect();
                let kv = h / group;
                let mut scores: Vec<f64> = keys
                    .iter()
                    .map(|&j| {
                        let dot: f64 = (0..head_dim)
                            .map(|c| f64::from(q[i][h][c]) * f64::from(k[j][kv][c]))
                            .sum();
                        let position = match bias {
                            PositionBias::None => 0.0,
                            PositionBias::Alibi { slopes } => -f64::from(slopes[h]) * (i as f64 - j as f64).abs(),
                            PositionBias::Relative(relative) => {
                                f64::from(relative.get(h, i - range.start, j - range.start))
                            }
                            PositionBias::Disentangled(_) => terms.map_or(0.0, |t| f64::from(t.get(h, i, j))),
                        };
                        let scaled = dot * scale;
                        let capped = match scoring.softcap {
                            Some(cap) => f64::from(cap) * (scaled / f64::from(cap)).tanh(),
                            None => scaled,
                        };
                        capped + position
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                scores.iter_mut().for_each(|s| *s = (*s - max).exp());
                let sum: f64 = scores.iter().sum();
                for (w, &j) in scores.iter().zip(&keys) {
                    for c in 0..head_dim {
                        out[i][h][c] += (w / sum * f64::from(v[j][kv][c])) as f32;
                    }
                }
            }
        }
    }
    out
}

/// Reshapes `[total, heads, head_dim]` into nested vectors for [`reference_attention`].
pub fn to_nested(t: &Tensor) -> candle_core::Result<Vec<Vec<Vec<f32>>>> {
    t.to_dtype(DType::F32)?.to_vec3()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(lengths: &[usize], heads: usize, bias: PositionBias, kernel: &dyn AttentionKernel) {
        crate::testing::assert_kernel_matches_reference(kernel, lengths, heads, 8, &bias, Mask::Bidirectional);
    }

    fn slopes(heads: usize) -> PositionBias {
        PositionBias::Alibi {
            slopes: (1..=heads).map(|h| 2f32.powf(-(h as f32))).collect(),
        }
    }

    #[test]
    fn padded_leaves_query_only_tokens_out_of_the_keys_as_the_reference() {
        crate::testing::assert_kernel_matches_reference_with_query_only(&PaddedAttention::default(), &[9, 2, 17, 1]);
        // Blocks of one query row each.
        let small = PaddedAttention { max_score_elements: 1 };
        crate::testing::assert_kernel_matches_reference_with_query_only(&small, &[9, 2, 17]);
    }

    #[test]
    fn padded_matches_reference_on_ragged_batches() {
        for heads in [1, 3, 12] {
            check(&[1, 2, 17], heads, PositionBias::None, &PaddedAttention::default());
            check(&[1, 2, 17], heads, slopes(heads), &PaddedAttention::default());
        }
        check(&[5], 2, slopes(2), &PaddedAttention::default());
        check(&[4, 4], 2, PositionBias::None, &PaddedAttention::default());
        crate::testing::assert_kernel_matches_reference_with_relative_bias(
            &PaddedAttention::default(),
            &[1, 2, 17],
            &[5, 3],
        );
        // Query blocks of one row each: every block reads its own rows of the table.
        let tiny = PaddedAttention { max_score_elements: 1 };
        crate::testing::assert_kernel_matches_reference_with_relative_bias(&tiny, &[3, 9, 1], &[4]);
        for kernel in [PaddedAttention::default(), tiny] {
            crate::testing::assert_kernel_matches_reference_with_disentangled_bias(&kernel, &[1, 2, 30], &[5, 3]);
        }
    }

    #[test]
    fn padded_soft_caps_scores() {
        crate::testing::assert_kernel_matches_reference_with_softcap(&PaddedAttention::default(), &[1, 2, 17, 40]);
        let tiny = PaddedAttention { max_score_elements: 1 };
        crate::testing::assert_kernel_matches_reference_with_softcap(&tiny, &[3, 9, 1]);
    }

    #[test]
    fn padded_masks_causal_and_windowed_keys() {
        crate::testing::assert_kernel_matches_reference_with_masks(
            &PaddedAttention::default(),
            &[1, 2, 17, 80],
            &[5, 3],
        );
        let tiny = PaddedAttention { max_score_elements: 1 };
        crate::testing::assert_kernel_matches_reference_with_masks(&tiny, &[3, 9, 1], &[4]);
    }

    #[test]
    fn padded_shares_key_value_heads_across_query_heads() {
        for (heads, kv_heads) in [(2, 1), (6, 2), (4, 4)] {
            crate::testing::assert_kernel_matches_reference_with_groups(
                &PaddedAttention::default(),
                &[1, 17, 40],
                heads,
                kv_heads,
            );
        }
        let q = Tensor::zeros((4, 6, 8), DType::F32, &Device::Cpu).unwrap();
        let k = Tensor::zeros((4, 4, 8), DType::F32, &Device::Cpu).unwrap();
        let err = query_heads_per_kv_head(&q, &k, &k).unwrap_err().to_string();
        assert!(err.contains("divides"), "{err}");
    }

    #[test]
    fn a_mask_names_the_keys_each_query_sees() {
        assert_eq!(Mask::Bidirectional.keys(3, 10), 0..10);
        assert_eq!(Mask::Causal.keys(3, 10), 0..4);
        assert_eq!(Mask::Window { radius: 2 }.keys(3, 10), 1..6);
        assert_eq!(Mask::Window { radius: 2 }.keys(0, 10), 0..3);
        assert_eq!(Mask::Window { radius: 2 }.keys(9, 10), 7..10);
        assert_eq!(Mask::Window { radius: usize::MAX }.keys(9, 10), 0..10);
        assert_eq!(Mask::Causal.keys_of_rows(64, 128, 300), 0..128);
        assert_eq!(Mask::Window { radius: 5 }.keys_of_rows(64, 128, 300), 59..133);
        assert_eq!(Mask::Window { radius: 5 }.keys_of_rows(3, 3, 300), 0..0);
        assert_eq!(Mask::CausalWindow { size: 3 }.keys(5, 10), 3..6);
        assert_eq!(Mask::CausalWindow { size: 3 }.keys(1, 10), 0..2);
        assert_eq!(Mask::CausalWindow { size: 1 }.keys(4, 10), 4..5);
        assert_eq!(Mask::CausalWindow { size: 4 }.keys_of_rows(64, 128, 300), 61..128);
    }

    #[test]
    fn a_relative_bias_too_short_for_the_batch_is_refused() {
        let relative = RelativeBias::tabulate(2, 3, |_, _| 0.0);
        assert!(relative.check(2, 4).is_ok());
        assert!(relative.check(2, 5).is_err());
        assert!(relative.check(3, 4).is_err());
    }

    #[test]
    fn query_blocks_do_not_change_the_result() {
        // Force one query row per block.
        let tiny = PaddedAttention { max_score_elements: 1 };
        check(&[3, 9, 1], 2, slopes(2), &tiny);
        check(&[33], 4, PositionBias::None, &tiny);
    }
}
