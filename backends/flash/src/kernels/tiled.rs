//! Varlen attention on the CPU as blocked matrix products.
//!
//! Each task is one block of query rows of one head of one sequence; it walks the sequence's keys
//! in blocks with an online softmax (running max and sum per row), so memory per task is one
//! `QUERY_BLOCK x KEY_BLOCK` score tile, never `L x L`. Both products (`Q K^T` and `P V`) go
//! through the gemm crate (AVX-512 or AVX2 kernels chosen at run time) reading q/k/v in place
//! with strides. ALiBi is added to each tile from the slopes. The element-wise steps (ALiBi, max,
//! exp, rescaling) run under `pulp`'s runtime dispatch: AVX-512, AVX2+FMA or SSE2, whichever the
//! CPU has.
//!
//! candle-nn's `flash_attn_varlen_cpu` computes one dot product and one `exp` per score on
//! its own; on a 32-input batch of MiniLM (3504 tokens) it took half of the forward pass.

use candle_core::{CpuStorage, DType, Layout, Storage, Tensor};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;
use tessera_core::simd::{lane_max, LANES};
use tessera_core::{AttentionKernel, DisentangledTerms, Mask, PositionBias, Scoring, SeqOffsets};

/// Query rows per task: enough to make the products efficient, small enough to spread one long
/// sequence over every core.
const QUERY_BLOCK: usize = 64;
/// Keys per tile of the online softmax.
const KEY_BLOCK: usize = 256;

/// The CPU varlen kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct TiledCpu;

/// One block of query rows of one head of one sequence.
#[derive(Debug, Clone, Copy)]
struct Task {
    /// First token of the sequence in the packed batch.
    start: usize,
    len: usize,
    /// The sequence's leading tokens that are keys ([`SeqOffsets::key_len`]).
    key_len: usize,
    head: usize,
    /// Query rows `q0..q1`, relative to the sequence.
    q0: usize,
    q1: usize,
}

/// One of q, k, v (`[total, heads, head_dim]` f32) read in place: token rows may be strided, as
/// they are when q, k and v are column slices of the fused projection.
#[derive(Clone, Copy)]
struct Rows<'a> {
    data: &'a [f32],
    start: usize,
    token_stride: usize,
}

impl<'a> Rows<'a> {
    /// `None` when the layout is not `[token, head, dim]` with unit-stride dims and packed heads.
    fn of(storage: &'a Storage, layout: &Layout, head_dim: usize) -> Option<Self> {
        let Storage::Cpu(CpuStorage::F32(data)) = storage else {
            return None;
        };
        match layout.stride() {
            &[token_stride, head_stride, 1] if head_stride == head_dim => Some(Self {
                data,
                start: layout.start_offset(),
                token_stride,
            }),
            _ => None,
        }
    }

    /// True when rows `0..total` of `heads` heads of `head_dim` values each lie inside the
    /// storage: what the `unsafe` products in [`attend_block`] rely on.
    fn cover(&self, total: usize, heads: usize, head_dim: usize) -> bool {
        if total == 0 {
            return true;
        }
        (total - 1)
            .checked_mul(self.token_stride)
            .and_then(|last_row| last_row.checked_add(self.start))
            .and_then(|first| first.checked_add(heads * head_dim))
            .is_some_and(|end| end <= self.data.len())
    }

    /// The slice from `(token, head, 0)` on.
    fn from(&self, token: usize, head: usize, head_dim: usize) -> &'a [f32] {
        &self.data[self.start + token * self.token_stride + head * head_dim..]
    }
}

/// q, k and v of a batch.
struct Packed<'a> {
    q: Rows<'a>,
    k: Rows<'a>,
    v: Rows<'a>,
    head_dim: usize,
    /// Query heads per key/value head.
    group: usize,
}

/// f32 with a layout [`Rows`] can read (a copy only when it cannot).
fn readable(t: &Tensor, head_dim: usize) -> candle_core::Result<Tensor> {
    let t = t.to_dtype(DType::F32)?;
    let (storage, layout) = t.storage_and_layout();
    let ok = Rows::of(&storage, layout, head_dim).is_some();
    drop(storage);
    if ok {
        Ok(t)
    } else {
        t.contiguous()
    }
}

impl AttentionKernel for TiledCpu {
    fn name(&self) -> &'static str {
        "tiled-cpu"
    }

    fn pads(&self) -> bool {
        false
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
        let dtype = q.dtype();
        let (total, heads, head_dim) = q.dims3()?;
        let group = tessera_core::attention::query_heads_per_kv_head(q, k, v)?;
        let kv_heads = heads / group;
        if seqs.total_tokens() != total {
            candle_core::bail!(
                "tiled-cpu attention: the sequences hold {} tokens but q has {total}",
                seqs.total_tokens()
            );
        }
        let (q32, k32, v32) = (readable(q, head_dim)?, readable(k, head_dim)?, readable(v, head_dim)?);
        let (qs, ql) = q32.storage_and_layout();
        let (ks, kl) = k32.storage_and_layout();
        let (vs, vl) = v32.storage_and_layout();
        let (Some(q_rows), Some(k_rows), Some(v_rows)) = (
            Rows::of(&qs, ql, head_dim),
            Rows::of(&ks, kl, head_dim),
            Rows::of(&vs, vl, head_dim),
        ) else {
            candle_core::bail!("tiled-cpu attention runs on CPU tensors only");
        };
        if !(q_rows.cover(total, heads, head_dim)
            && k_rows.cover(total, kv_heads, head_dim)
            && v_rows.cover(total, kv_heads, head_dim))
        {
            candle_core::bail!("tiled-cpu attention: a q/k/v layout reaches past its storage");
        }
        let packed = Packed {
            q: q_rows,
            k: k_rows,
            v: v_rows,
            head_dim,
            group,
        };
        match bias {
            PositionBias::None => {}
            PositionBias::Alibi { slopes } => {
                if slopes.len() != heads {
                    candle_core::bail!("{} ALiBi slopes for {heads} heads", slopes.len());
                }
            }
            PositionBias::Relative(relative) => relative.check(heads, seqs.max_len())?,
            PositionBias::Disentangled(disentangled) => disentangled.check(heads, total, seqs.max_len())?,
        }
        // Tasks in (head, sequence, block) order write consecutive rows of a [heads, total,
        // head_dim] output, so each owns one contiguous chunk.
        let mut tasks = Vec::new();
        for head in 0..heads {
            for (i, range) in seqs.ranges().enumerate() {
                for q0 in (0..range.len()).step_by(QUERY_BLOCK) {
                    tasks.push(Task {
                        start: range.start,
                        len: range.len(),
                        key_len: seqs.key_len(i),
                        head,
                        q0,
                        q1: (q0 + QUERY_BLOCK).min(range.len()),
                    });
                }
            }
        }
        let mut out = vec![0f32; heads * total * head_dim];
        let mut chunks = Vec::with_capacity(tasks.len());
        let mut rest = out.as_mut_slice();
        for task in &tasks {
            let (chunk, tail) = rest.split_at_mut((task.q1 - task.q0) * head_dim);
            chunks.push(chunk);
            rest = tail;
        }
        let scale = 1.0 / (head_dim as f32).sqrt();
        let arch = pulp::Arch::new();
        // `terms`: a disentangled bias's terms, read in place for the whole pass.
        let run = |terms: Option<&DisentangledTerms<'_>>| {
            tasks.par_iter().zip(chunks.into_par_iter()).for_each(|(task, chunk)| {
                let bias = match (bias, terms) {
                    (PositionBias::Alibi { slopes }, _) => TileBias::Alibi(slopes[task.head]),
                    (PositionBias::Relative(relative), _) => TileBias::Relative {
                        row: relative.row(task.head),
                        reach: relative.reach(),
                    },
                    (PositionBias::Disentangled(_), Some(terms)) => TileBias::Disentangled {
                        terms: *terms,
                        head: task.head,
                        start: task.start,
                    },
                    (PositionBias::None | PositionBias::Disentangled(_), _) => TileBias::None,
                };
                attend_block(arch, task, &packed, scale, bias, scoring, chunk)
            })
        };
        match bias {
            PositionBias::Disentangled(disentangled) => disentangled.read(|terms| run(Some(terms)))?,
            _ => run(None),
        }
        drop((qs, ks, vs));
        Tensor::from_vec(out, (heads, total, head_dim), q.device())?
            .transpose(0, 1)?
            .contiguous()?
            .to_dtype(dtype)
    }
}

/// `e^x` for softmax, branch-free so the compiler vectorizes the loop around it (`f32::exp` is a
/// scalar libm call; it was a fifth of this kernel's time). Range reduction `x = n ln2 + r` with
/// `|r| <= ln2 / 2`, a degree-6 Taylor polynomial for `e^r` (relative error below 3e-7), and `2^n`
/// from the exponent bits. Inputs below -87 (where f32 underflows) give about 1e-38.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // 1.5 * 2^23: adding it rounds to the nearest integer, which lands in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // `n` read from the bits rather than `n as i32`: Rust's saturating float-to-int cast does not
    // vectorize and left this loop scalar.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    p * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// `tanh(x)`, branch-free so that the loop around it vectorizes (libm's `tanhf` is a scalar
/// call, and made the soft-capped kernel 1.6x slower than the uncapped one). Below |x| = 1 the
/// [7/6] Padé approximant of its continued fraction (relative error below 2.1e-7 in float32);
/// above, `1 - 2 / (e^2|x| + 1)` from [`exp`] (absolute error below 1e-7), which near 0 would
/// lose the small values' precision to cancellation.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    let x2 = x * x;
    let pade = x * (135_135.0 + x2 * (17_325.0 + x2 * (378.0 + x2)))
        / (135_135.0 + x2 * (62_370.0 + x2 * (3_150.0 + x2 * 28.0)));
    let tail = (1.0 - 2.0 / (exp(2.0 * x.abs()) + 1.0)).copysign(x);
    // Both are computed and one kept (a select, not a branch); the Padé form's overflow for
    // huge |x| is never the one kept.
    if x.abs() < 1.0 {
        pade
    } else {
        tail
    }
}

/// Replaces each `s` with `exp(s - max)` and returns their sum.
#[inline(always)]
fn exp_in_place(values: &mut [f32], max: f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let mut chunks = values.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk.iter_mut()) {
            *v = exp(*v - max);
            *lane += *v;
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp(*v - max);
        sum += *v;
    }
    sum
}

/// The position bias of one head, as a tile adds it.
#[derive(Debug, Clone, Copy)]
enum TileBias<'a> {
    None,
    /// `-slope * |i - j|`.
    Alibi(f32),
    /// `row[j - i + reach]` ([`tessera_core::RelativeBias::row`]); `attend` checked that it
    /// covers the longest sequence.
    Relative {
        row: &'a [f32],
        reach: usize,
    },
    /// DeBERTa's per-token terms; positions are offset by the sequence's first packed token
    /// `start` (`attend` checked the bias against the batch).
    Disentangled {
        terms: DisentangledTerms<'a>,
        head: usize,
        start: usize,
    },
}

/// Attention output rows `q0..q1` of one head into `out` (`[rows, head_dim]`). Only the key
/// tiles the mask leaves visible to some row of the block are computed: a causal block stops at
/// its last row, a windowed one spans its rows' windows.
fn attend_block(
    arch: pulp::Arch,
    task: &Task,
    p: &Packed<'_>,
    scale: f32,
    bias: TileBias<'_>,
    scoring: Scoring,
    out: &mut [f32],
) {
    let mask = scoring.mask;
    let (rows, hd) = (task.q1 - task.q0, p.head_dim);
    let mut row_max = vec![f32::NEG_INFINITY; rows];
    let mut row_sum = vec![0f32; rows];
    let keys = mask.keys_of_rows(task.q0, task.q1, task.len);
    let keys = keys.start.min(task.key_len)..keys.end.min(task.key_len);
    let mut scores = vec![0f32; rows * KEY_BLOCK.min(keys.len())];
    let q = p.q.from(task.start + task.q0, task.head, hd);
    for k0 in keys.clone().step_by(KEY_BLOCK) {
        let cols = KEY_BLOCK.min(keys.end - k0);
        let kv_head = task.head / p.group;
        let (k, v) = (
            p.k.from(task.start + k0, kv_head, hd),
            p.v.from(task.start + k0, kv_head, hd),
        );
        // SAFETY: every index the products touch lies in the slices. `attend` checked that k and
        // v are [total, heads / group, head_dim] (so `kv_head` is one of their heads), that the
        // sequences cover exactly `total` tokens (so `task.start + task.len <= total`), and that
        // rows 0..total of every head lie inside each storage (`Rows::cover`); the products read q rows q0..q1 and k/v rows k0..k0+cols
        // of this sequence, `head_dim` columns each, `token_stride` apart. `scores` holds
        // rows x cols (cols <= KEY_BLOCK.min(len)) and `out` rows x head_dim (the chunk sizes
        // `attend` split). Nothing else writes these buffers.
        unsafe {
            // scores = scale * Q K^T; K^T's element (d, j) is k[j * k_stride + d].
            gemm(
                rows,
                cols,
                hd,
                scores.as_mut_ptr(),
                1,
                cols as isize,
                false,
                q.as_ptr(),
                1,
                p.q.token_stride as isize,
                k.as_ptr(),
                p.k.token_stride as isize,
                1,
                0.0,
                scale,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
        arch.dispatch(OnlineSoftmax {
            scores: &mut scores[..rows * cols],
            cols,
            first_row: task.q0,
            first_key: k0,
            first_tile: k0 == keys.start,
            mask,
            softcap: scoring.softcap,
            len: task.len,
            key_len: task.key_len,
            bias,
            row_max: &mut row_max,
            row_sum: &mut row_sum,
            out: &mut out[..rows * hd],
            hd,
        });
        // SAFETY: as above; `out` is rows x head_dim, v rows k0..k0+cols of this sequence.
        unsafe {
            // out += P V
            gemm(
                rows,
                hd,
                cols,
                out.as_mut_ptr(),
                1,
                hd as isize,
                true,
                scores.as_ptr(),
                1,
                cols as isize,
                v.as_ptr(),
                1,
                p.v.token_stride as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
    }
    arch.dispatch(DivideRows {
        out,
        sums: &row_sum,
        hd,
    });
}

/// Divides each output row by its softmax sum.
struct DivideRows<'a> {
    out: &'a mut [f32],
    sums: &'a [f32],
    hd: usize,
}

impl pulp::WithSimd for DivideRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for (row, sum) in self.out.chunks_exact_mut(self.hd).zip(self.sums) {
            // A row the mask leaves no key (a query-only token outside every window) stays 0.
            let inverse = if *sum > 0.0 { 1.0 / sum } else { 0.0 };
            row.iter_mut().for_each(|o| *o *= inverse);
        }
    }
}

/// One tile's softmax step, `rows x cols` scores for query rows from `first_row` and keys from
/// `first_key`: adds the position bias, turns each row into `exp(s - running max)`, and rescales the running
/// sums and the output rows accumulated so far when a row's max grows. A `pulp` operation as a
/// struct with an `#[inline(always)]` method rather than a closure: pulp's dispatch compiles what is
/// inlined into it for the detected instruction set, and a closure this large stayed an out-of-line
/// SSE2 function.
struct OnlineSoftmax<'a> {
    scores: &'a mut [f32],
    cols: usize,
    first_row: usize,
    first_key: usize,
    /// The block's first tile: no running max, sum or output yet, nothing to rescale.
    first_tile: bool,
    mask: Mask,
    /// [`Scoring::softcap`].
    softcap: Option<f32>,
    /// The sequence's length.
    len: usize,
    /// Its leading tokens that are keys.
    key_len: usize,
    bias: TileBias<'a>,
    row_max: &'a mut [f32],
    row_sum: &'a mut [f32],
    out: &'a mut [f32],
    hd: usize,
}

impl pulp::WithSimd for OnlineSoftmax<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let first_tile = self.first_tile;
        if let Some(cap) = self.softcap {
            let inverse = 1.0 / cap;
            self.scores.iter_mut().for_each(|s| *s = cap * tanh(*s * inverse));
        }
        let rows = self.scores.chunks_exact_mut(self.cols);
        let state = self.row_max.iter_mut().zip(self.row_sum.iter_mut());
        let tile_keys = self.first_key..self.first_key + self.cols;
        for (i, (tile, (max, sum))) in rows.zip(state).enumerate() {
            if self.mask != Mask::Bidirectional || self.key_len < self.len {
                // Keys of this tile the row may not see score -inf (weight 0).
                let seen = self.mask.keys_within(self.first_row + i, self.len, self.key_len);
                let (lo, hi) = (
                    seen.start.clamp(tile_keys.start, tile_keys.end) - tile_keys.start,
                    seen.end.clamp(tile_keys.start, tile_keys.end) - tile_keys.start,
                );
                tile[..lo].fill(f32::NEG_INFINITY);
                tile[hi..].fill(f32::NEG_INFINITY);
            }
            match self.bias {
                TileBias::None => {}
                TileBias::Alibi(slope) => {
                    // -slope * |i - j|; positions through i32 so the conversions vectorize
                    // (lengths are bounded far below 2^31 by the batch token budget).
                    let position = (self.first_row + i) as i32 as f32;
                    for (j, s) in tile.iter_mut().enumerate() {
                        let key = (self.first_key + j) as i32 as f32;
                        *s -= slope * (position - key).abs();
                    }
                }
                TileBias::Relative { row, reach } => {
                    // Keys first_key.. seen from query first_row + i: consecutive offsets, so one
                    // contiguous run of the head's row.
                    let start = self.first_key + reach - (self.first_row + i);
                    for (s, b) in tile.iter_mut().zip(&row[start..start + self.cols]) {
                        *s += b;
                    }
                }
                TileBias::Disentangled { terms, head, start } => {
                    terms.add_to_row(head, start + self.first_row + i, start + self.first_key, tile);
                }
            }
            let new_max = max.max(lane_max(tile));
            if new_max == f32::NEG_INFINITY {
                // Nothing visible to this row yet (a block's first tile always holds some key
                // for each of its rows, so this is a guard): weight 0, no state to update.
                tile.fill(0.0);
                continue;
            }
            let tile_sum = exp_in_place(tile, new_max);
            if first_tile {
                *sum = tile_sum;
            } else {
                let rescale = exp(*max - new_max);
                *sum = *sum * rescale + tile_sum;
                if rescale != 1.0 {
                    self.out[i * self.hd..(i + 1) * self.hd]
                        .iter_mut()
                        .for_each(|o| *o *= rescale);
                }
            }
            *max = new_max;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::testing::{
        assert_kernel_matches_reference_across_heads, assert_kernel_matches_reference_with_disentangled_bias,
        assert_kernel_matches_reference_with_groups, assert_kernel_matches_reference_with_masks,
        assert_kernel_matches_reference_with_query_only, assert_kernel_matches_reference_with_relative_bias,
        assert_kernel_matches_reference_with_softcap,
    };

    #[test]
    fn exp_in_place_covers_every_element() {
        for n in [0usize, 1, 15, 16, 17, 40] {
            let mut values: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(lane_max(&values), max, "{n}");
            let want: f64 = values.iter().map(|v| (f64::from(*v) - f64::from(max)).exp()).sum();
            let sum = exp_in_place(&mut values, max);
            assert!((f64::from(sum) - want).abs() < 1e-5, "{n}: {sum} vs {want}");
        }
    }

    #[test]
    fn tanh_is_within_3e7_of_f64() {
        let worst = (-20_000..=20_000)
            .map(|i| i as f32 / 1000.0)
            .map(|x| {
                let want = f64::from(x).tanh();
                (f64::from(tanh(x)) - want).abs() / want.abs().max(1.0)
            })
            .fold(0.0, f64::max);
        assert!(worst < 3e-7, "{worst:e}");
        // Relative accuracy near 0, where a difference of exponentials would cancel.
        for x in [1e-6f32, -3e-4, 0.01] {
            let want = f64::from(x).tanh();
            assert!(((f64::from(tanh(x)) - want) / want).abs() < 3e-7, "{x}");
        }
        assert_eq!(tanh(1e4), 1.0);
        assert_eq!(tanh(-1e30), -1.0);
        assert_eq!(tanh(0.0), 0.0);
    }

    #[test]
    fn exp_is_within_3e7_relative_of_f64() {
        // Below about -87 results are subnormal and lose precision; a softmax weight that small is 0.
        let worst = (-86_000..=0)
            .map(|i| i as f32 / 1000.0)
            .map(|x| {
                let want = f64::from(x).exp();
                ((f64::from(exp(x)) - want) / want).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst < 3e-7, "{worst:e}");
        assert!(exp(-1e4) < 1e-37 && exp(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn refuses_k_or_v_that_do_not_match_q_or_the_sequences() {
        let dev = candle_core::Device::Cpu;
        let q = Tensor::zeros((10, 2, 8), DType::F32, &dev).unwrap();
        let seqs = SeqOffsets::from_lengths([4, 6]);
        for (k_shape, v_shape) in [
            ((3, 2, 8), (10, 2, 8)),
            ((10, 2, 8), (10, 1, 8)),
            ((10, 2, 8), (10, 2, 4)),
        ] {
            let k = Tensor::zeros(k_shape, DType::F32, &dev).unwrap();
            let v = Tensor::zeros(v_shape, DType::F32, &dev).unwrap();
            let err = TiledCpu
                .attend(&q, &k, &v, &seqs, &PositionBias::None, Mask::Bidirectional.into())
                .unwrap_err()
                .to_string();
            assert!(err.contains("but q is [10, 2, 8]"), "{err}");
        }
        let longer = SeqOffsets::from_lengths([4, 7]);
        let err = TiledCpu
            .attend(&q, &q, &q, &longer, &PositionBias::None, Mask::Bidirectional.into())
            .unwrap_err()
            .to_string();
        assert!(err.contains("11 tokens"), "{err}");
    }

    #[test]
    fn matches_the_reference_on_ragged_batches_across_tiles() {
        // 1 and 2: a single tile; 65: two query blocks; 513: three key tiles.
        assert_kernel_matches_reference_across_heads(&TiledCpu, &[1, 2, 17, 65, 513], &[5, 300, 3]);
        assert_kernel_matches_reference_with_relative_bias(&TiledCpu, &[1, 2, 17, 65, 513], &[5, 300, 3]);
        assert_kernel_matches_reference_with_disentangled_bias(&TiledCpu, &[1, 2, 17, 65, 300], &[5, 300, 3]);
    }

    #[test]
    fn masks_match_the_reference_across_tiles() {
        // 513: three key tiles, nine query blocks; a window of 70 spans two query blocks.
        assert_kernel_matches_reference_with_masks(&TiledCpu, &[1, 2, 17, 65, 513], &[5, 300, 3]);
    }

    #[test]
    fn query_only_tokens_are_left_out_of_the_keys_across_tiles() {
        // 300 with 153 query-only tokens: keys end inside the second tile.
        assert_kernel_matches_reference_with_query_only(&TiledCpu, &[300, 2, 65, 17, 9]);
    }

    #[test]
    fn soft_capped_scores_match_the_reference_across_tiles() {
        assert_kernel_matches_reference_with_softcap(&TiledCpu, &[1, 2, 17, 65, 300]);
    }

    #[test]
    fn key_value_heads_are_shared_by_groups_of_query_heads() {
        for (heads, kv_heads) in [(2, 1), (6, 2), (8, 8)] {
            assert_kernel_matches_reference_with_groups(&TiledCpu, &[1, 17, 300], heads, kv_heads);
        }
    }
}
