//! Attention as candle ops, one sequence at a time, on whatever device the tensors are on: the
//! GPU kernel of the `cuda` feature (no CUTLASS, no padding), and `flash-attn`'s fallback for
//! what flash attention has no kernel for (float32, MPNet's relative bias, sliding windows).

use candle_core::Tensor;
use tessera_core::{AttentionKernel, PaddedAttention, PositionBias, Scoring, SeqOffsets};

/// Each sequence of the packed batch through the reference kernel's candle ops on its own, so no
/// sequence is padded to the longest and the batcher counts real tokens.
#[derive(Debug, Clone, Default)]
pub struct PerSequence(PaddedAttention);

impl AttentionKernel for PerSequence {
    fn name(&self) -> &'static str {
        "per-sequence"
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
        if seqs.len() <= 1 {
            return self.0.attend(q, k, v, seqs, bias, scoring);
        }
        let outputs = seqs
            .ranges()
            .enumerate()
            .map(|(i, range)| {
                let one = SeqOffsets::from_lengths([range.len()]).with_query_only([range.len() - seqs.key_len(i)]);
                let part = |t: &Tensor| t.narrow(0, range.start, range.len());
                let bias = bias.of_tokens(range.clone())?;
                self.0.attend(&part(q)?, &part(k)?, &part(v)?, &one, &bias, scoring)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::cat(&outputs, 0)
    }
}

#[cfg(test)]
mod tests {
    use tessera_core::testing::{
        assert_kernel_matches_reference_across_heads, assert_kernel_matches_reference_with_disentangled_bias,
        assert_kernel_matches_reference_with_groups, assert_kernel_matches_reference_with_masks,
        assert_kernel_matches_reference_with_query_only, assert_kernel_matches_reference_with_relative_bias,
        assert_kernel_matches_reference_with_softcap,
    };

    use super::*;

    #[test]
    fn matches_the_reference_in_every_bias_mask_and_head_grouping() {
        let kernel = PerSequence::default();
        assert_kernel_matches_reference_across_heads(&kernel, &[1, 2, 17, 65], &[5, 130, 3]);
        assert_kernel_matches_reference_with_relative_bias(&kernel, &[1, 2, 17, 65], &[5, 130, 3]);
        assert_kernel_matches_reference_with_disentangled_bias(&kernel, &[1, 2, 17, 65], &[5, 130, 3]);
        assert_kernel_matches_reference_with_masks(&kernel, &[1, 2, 17, 65], &[5, 130, 3]);
        assert_kernel_matches_reference_with_softcap(&kernel, &[1, 2, 17, 65]);
        assert_kernel_matches_reference_with_query_only(&kernel, &[9, 2, 17, 65]);
        for (heads, kv_heads) in [(2, 1), (6, 2)] {
            assert_kernel_matches_reference_with_groups(&kernel, &[1, 17, 130], heads, kv_heads);
        }
    }
}
