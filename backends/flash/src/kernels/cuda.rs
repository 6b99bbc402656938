//! CUDA flash attention (tessera-flash-attn's varlen kernels), behind the `flash-attn` feature.

use candle_core::{DType, Tensor};
use tessera_core::{AttentionKernel, Mask, PositionBias, Scoring, SeqOffsets};

/// Flash attention's varlen kernels for float16/bfloat16 models; float32 ones keep exact float32
/// attention as candle ops on the device (flash attention has no float32 kernel), and so do head
/// dimensions no compiled kernel covers (see tessera-flash-attn's build.rs).
#[derive(Debug, Clone, Copy, Default)]
pub struct CudaFlash;

impl AttentionKernel for CudaFlash {
    fn name(&self) -> &'static str {
        "flash-cuda"
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
        let head_dim = q.dim(2)?;
        let mask = scoring.mask;
        let causal = mask == Mask::Causal;
        // The compiled subset of flash attention has no soft-capping kernels (Gemma 2's), and
        // its keys are every token of a sequence (a ColBERT query's expansion tokens are not).
        let kernel = matches!(dtype, DType::F16 | DType::BF16)
            && scoring.softcap.is_none()
            && seqs.all_keys()
            && tessera_flash_attn::supports(dtype == DType::BF16, head_dim, causal);
        if !kernel {
            return super::PerSequence::default().attend(q, k, v, seqs, bias, scoring);
        }
        let compute = dtype;
        // Contiguous copies: q, k and v may be strided views of the fused projection.
        let packed = |t: &Tensor| t.to_dtype(compute)?.contiguous();
        let (q, k, v) = (packed(q)?, packed(k)?, packed(v)?);
        let device = q.device();
        let starts: Vec<u32> = std::iter::once(0).chain(seqs.ranges().map(|r| r.end as u32)).collect();
        let starts = Tensor::from_vec(starts, seqs.len() + 1, device)?;
        let max_len = seqs.max_len();
        let scale = 1.0 / (head_dim as f32).sqrt();
        let out = match (bias, mask) {
            // Flash attention takes no arbitrary bias: MPNet's and DeBERTa's relative biases,
            // and windows (not yet wired to the windowed flash kernel), run as candle ops on the
            // same device.
            (PositionBias::Relative(_) | PositionBias::Disentangled(_), _)
            | (_, Mask::Window { .. } | Mask::CausalWindow { .. }) => {
                super::PerSequence::default().attend(&q, &k, &v, seqs, bias, scoring)?
            }
            (PositionBias::None, _) => tessera_flash_attn::varlen(&q, &k, &v, &starts, max_len, scale, causal, None)?,
            (PositionBias::Alibi { slopes }, _) => {
                let slopes = Tensor::from_slice(slopes, slopes.len(), device)?;
                tessera_flash_attn::varlen(&q, &k, &v, &starts, max_len, scale, causal, Some(&slopes))?
            }
        };
        out.to_dtype(dtype)
    }
}
