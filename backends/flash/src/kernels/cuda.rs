//! CUDA flash attention (candle-flash-attn, varlen), behind the `flash-attn` feature.

use candle_core::{DType, Tensor};
use tessera_core::{AttentionKernel, Mask, PositionBias, SeqOffsets};

/// candle-flash-attn's varlen kernels for float16/bfloat16 models; float32 ones keep exact
/// float32 attention as candle ops on the device (flash attention has no float32 kernel).
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
        mask: Mask,
    ) -> candle_core::Result<Tensor> {
        let dtype = q.dtype();
        if dtype == DType::F32 {
            return super::PerSequence::default().attend(q, k, v, seqs, bias, mask);
        }
        let compute = dtype;
        // Contiguous copies: q, k and v may be strided views of the fused projection.
        let packed = |t: &Tensor| t.to_dtype(compute)?.contiguous();
        let (q, k, v) = (packed(q)?, packed(k)?, packed(v)?);
        let (_, _, head_dim) = q.dims3()?;
        let device = q.device();
        let starts: Vec<u32> = std::iter::once(0).chain(seqs.ranges().map(|r| r.end as u32)).collect();
        let starts = Tensor::from_vec(starts, seqs.len() + 1, device)?;
        let max_len = seqs.max_len();
        let scale = 1.0 / (head_dim as f32).sqrt();
        let causal = mask == Mask::Causal;
        let out = match (bias, mask) {
            // Flash attention takes no arbitrary bias: MPNet's relative bias, and windows (not
            // yet wired to the windowed flash kernel), run as candle ops on the same device.
            (PositionBias::Relative(_), _) | (_, Mask::Window { .. }) => {
                super::PerSequence::default().attend(&q, &k, &v, seqs, bias, mask)?
            }
            (PositionBias::None, _) => {
                candle_flash_attn::flash_attn_varlen(&q, &k, &v, &starts, &starts, max_len, max_len, scale, causal)?
            }
            (PositionBias::Alibi { slopes }, _) => {
                let slopes = Tensor::from_slice(slopes, slopes.len(), device)?;
                candle_flash_attn::flash_attn_varlen_alibi(
                    &q, &k, &v, &slopes, &starts, &starts, max_len, max_len, scale, causal,
                )?
            }
        };
        out.to_dtype(dtype)
    }
}
