//! The device the model runs on: the first CUDA GPU when the binary is built with the `cuda`
//! feature and one can be opened, the CPU otherwise.

use candle_core::Device;

use crate::settings::Dtype;

/// The device, and its name for the log.
pub(crate) fn select() -> (Device, &'static str) {
    #[cfg(feature = "cuda")]
    match Device::new_cuda(0) {
        Ok(device) => return (device, "cuda:0"),
        Err(e) => tracing::warn!("built with CUDA, but no GPU could be opened ({e}); running on the CPU"),
    }
    (Device::Cpu, "cpu")
}

/// `--dtype` when given; otherwise float32 on the CPU, and on a GPU float16 (what the flash
/// kernels compute in, as TEI does), except for Gemma 3 (`model_type`), whose activations
/// exceed float16's range (EmbeddingGemma's authors support float32 and bfloat16 only; TEI
/// refuses it below float32): bfloat16.
pub(crate) fn default_dtype(device: &Device, requested: Option<Dtype>, model_type: Option<&str>) -> Dtype {
    requested.unwrap_or_else(|| unrequested_dtype(device.is_cuda(), model_type))
}

/// [`default_dtype`] without `--dtype`.
fn unrequested_dtype(on_gpu: bool, model_type: Option<&str>) -> Dtype {
    match (on_gpu, model_type) {
        (false, _) => Dtype::Float32,
        (true, Some(t)) if FLOAT16_OVERFLOWS.contains(&t) => Dtype::Bfloat16,
        (true, _) => Dtype::Float16,
    }
}

/// The `model_type`s whose activations overflow float16.
const FLOAT16_OVERFLOWS: &[&str] = &["gemma3_text", "gemma3"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float32_on_the_cpu_unless_asked() {
        assert_eq!(default_dtype(&Device::Cpu, None, None), Dtype::Float32);
        assert_eq!(default_dtype(&Device::Cpu, None, Some("gemma3_text")), Dtype::Float32);
        assert_eq!(
            default_dtype(&Device::Cpu, Some(Dtype::Bfloat16), None),
            Dtype::Bfloat16
        );
    }

    #[test]
    fn float16_on_a_gpu_but_bfloat16_for_gemma_3() {
        assert_eq!(unrequested_dtype(true, None), Dtype::Float16);
        assert_eq!(unrequested_dtype(true, Some("qwen3")), Dtype::Float16);
        assert_eq!(unrequested_dtype(true, Some("gemma3_text")), Dtype::Bfloat16);
        assert_eq!(unrequested_dtype(true, Some("gemma3")), Dtype::Bfloat16);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_the_cuda_feature_the_device_is_the_cpu() {
        assert_eq!(select().1, "cpu");
        assert!(select().0.is_cpu());
    }
}
