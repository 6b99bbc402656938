//! Choosing the kernel for a device, once, at load.

use std::sync::Arc;

use candle_core::Device;
use tessera_core::AttentionKernel;

use super::TiledCpu;

/// The flash kernel for `device`: CUDA flash attention when built with `cuda` and loading on a
/// GPU, the tiled CPU kernel otherwise (faster than candle-nn's, see `cargo bench --bench kernels`).
pub fn kernel_for(device: &Device) -> Arc<dyn AttentionKernel> {
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        return Arc::new(super::CudaFlash);
    }
    let _ = device;
    Arc::new(TiledCpu)
}
