//! Attention kernels over packed, unpadded batches.

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
mod dispatch;

pub use cpu::VarlenCpu;
#[cfg(feature = "cuda")]
pub use cuda::CudaFlash;
pub use dispatch::kernel_for;
