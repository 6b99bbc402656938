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

/// `--dtype` when given; otherwise float16 on a GPU (what the flash kernels compute in, as TEI
/// does) and float32 on the CPU.
pub(crate) fn default_dtype(device: &Device, requested: Option<Dtype>) -> Dtype {
    requested.unwrap_or(if device.is_cuda() {
        Dtype::Float16
    } else {
        Dtype::Float32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float32_on_the_cpu_unless_asked() {
        assert_eq!(default_dtype(&Device::Cpu, None), Dtype::Float32);
        assert_eq!(default_dtype(&Device::Cpu, Some(Dtype::Bfloat16)), Dtype::Bfloat16);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_the_cuda_feature_the_device_is_the_cpu() {
        assert_eq!(select().1, "cpu");
        assert!(select().0.is_cpu());
    }
}
