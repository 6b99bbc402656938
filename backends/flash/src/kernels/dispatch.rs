//! Choosing the kernel for a device, once, at load.

use std::sync::Arc;

use candle_core::Device;
use tessera_core::AttentionKernel;

use super::TiledCpu;

/// The kernel for `device`: on a GPU, flash attention when built with `flash-attn`, else (built
/// with `cuda`) attention as candle ops on the device, sequence by sequence ([`super::PerSequence`]);
/// the tiled CPU kernel otherwise (faster than candle-nn's, see `cargo bench --bench kernels`).
pub fn kernel_for(device: &Device) -> Arc<dyn AttentionKernel> {
    #[cfg(feature = "flash-attn")]
    if device.is_cuda() {
        return Arc::new(super::CudaFlash);
    }
    #[cfg(all(feature = "cuda", not(feature = "flash-attn")))]
    if device.is_cuda() {
        return Arc::new(super::PerSequence::default());
    }
    let _ = device;
    Arc::new(TiledCpu)
}
