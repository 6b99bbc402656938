//! Attention kernels over packed, unpadded batches.

mod cpu;
#[cfg(feature = "flash-attn")]
mod cuda;
mod dispatch;
mod per_sequence;
mod tiled;

pub use cpu::VarlenCpu;
#[cfg(feature = "flash-attn")]
pub use cuda::CudaFlash;
pub use dispatch::kernel_for;
pub use per_sequence::PerSequence;
pub use tiled::TiledCpu;
