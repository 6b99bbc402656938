//! Attention kernels over packed, unpadded batches.

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
mod dispatch;
mod tiled;

pub use cpu::VarlenCpu;
#[cfg(feature = "cuda")]
pub use cuda::CudaFlash;
pub use dispatch::kernel_for;
pub use tiled::TiledCpu;
