//! Varlen attention on the CPU: each sequence attends only to itself, with a tiled online
//! softmax, so neither padding nor an `L x L` score matrix is ever materialized, and ALiBi is
//! applied from the slopes inside the kernel.
//!
//! The work is candle-nn's `flash_attn_varlen_cpu` (parallel over query rows and heads, with a
//! vectorized dot product); this wrapper adapts tessera's packed layout and dtypes to it.

use candle_core::{DType, Tensor};
use tessera_core::{AttentionKernel, Mask, PositionBias, Scoring, SeqOffsets};

/// The CPU varlen kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct VarlenCpu;

impl AttentionKernel for VarlenCpu {
    fn name(&self) -> &'static str {
        "varlen-cpu"
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
        if scoring.softcap.is_some() {
            candle_core::bail!("varlen-cpu has no soft-capped scores: use the tiled-cpu kernel");
        }
        if !seqs.all_keys() {
            candle_core::bail!(
                "varlen-cpu attends to every token of a sequence: use the tiled-cpu kernel for query-only tokens"
            );
        }
        let mask = scoring.mask;
        let dtype = q.dtype();
        // The library kernel runs f32 and f16; bfloat16 goes through f32.
        let compute = if dtype == DType::F16 { DType::F16 } else { DType::F32 };
        // Contiguous copies: q, k and v may be strided views of the fused projection.
        let packed = |t: &Tensor| t.to_dtype(compute)?.contiguous();
        let (q, k, v) = (packed(q)?, packed(k)?, packed(v)?);
        let (_, _, head_dim) = q.dims3()?;
        let device = q.device();
        let lengths: Vec<u32> = seqs.ranges().map(|r| r.len() as u32).collect();
        let lengths = Tensor::from_vec(lengths, seqs.len(), device)?;
        let slopes = match bias {
            PositionBias::None => None,
            PositionBias::Alibi { slopes } => Some(Tensor::from_slice(slopes, slopes.len(), device)?),
            PositionBias::Relative(_) | PositionBias::Disentangled(_) => {
                candle_core::bail!("varlen-cpu has no relative position bias: use the tiled-cpu kernel")
            }
        };
        let max_len = seqs.max_len();
        let (causal, window) = match mask {
            Mask::Bidirectional => (false, None),
            Mask::Causal => (true, None),
            Mask::Window { radius } => (false, Some(radius)),
            // Causal, and at most `size - 1` keys back.
            Mask::CausalWindow { size } => (true, Some(size.saturating_sub(1))),
        };
        let out = candle_nn::attention::flash_attn_varlen_cpu(
            &q,
            &k,
            &v,
            slopes.as_ref(),
            &lengths,
            &lengths,
            max_len,
            max_len,
            1.0 / (head_dim as f32).sqrt(),
            causal,
            window,
            window,
        )?;
        out.to_dtype(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::testing::{
        assert_kernel_matches_reference_across_heads, assert_kernel_matches_reference_with_groups,
        assert_kernel_matches_reference_with_masks,
    };

    #[test]
    fn matches_the_reference_on_ragged_batches() {
        assert_kernel_matches_reference_across_heads(&VarlenCpu, &[1, 2, 17, 513], &[5, 3]);
        assert_kernel_matches_reference_with_masks(&VarlenCpu, &[1, 2, 17, 80], &[5, 3]);
        for (heads, kv_heads) in [(2, 1), (6, 2)] {
            assert_kernel_matches_reference_with_groups(&VarlenCpu, &[1, 17, 80], heads, kv_heads);
        }
    }
}
