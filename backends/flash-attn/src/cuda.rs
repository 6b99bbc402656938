//! The candle op around `tessera_flash_attn_varlen` (src/varlen.cu).

use std::ffi::{c_int, c_void};

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DevicePtr, DevicePtrMut};
use candle_core::cuda_backend::{CudaDType, CudaStorage};
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};
use half::{bf16, f16};

extern "C" {
    fn tessera_flash_attn_varlen(
        q: *const c_void,
        k: *const c_void,
        v: *const c_void,
        out: *mut c_void,
        softmax_lse: *mut f32,
        alibi_slopes: *const f32,
        cu_seqlens: *const c_int,
        batch: c_int,
        heads: c_int,
        kv_heads: c_int,
        head_dim: c_int,
        max_seqlen: c_int,
        total_tokens: c_int,
        softmax_scale: f32,
        is_bf16: c_int,
        is_causal: c_int,
        stream: *mut c_void,
    ) -> c_int;
}

/// Attention over sequences packed end to end: `q` `[tokens, heads, head_dim]`, `k` and `v`
/// `[tokens, kv_heads, head_dim]` (kv_heads dividing heads), all float16 or all bfloat16 on one
/// CUDA device; `cu_seqlens` u32 `[sequences + 1]`, the offsets where each sequence starts and
/// the total; `alibi_slopes` f32 `[heads]`. Returns `[tokens, heads, head_dim]`. Fails, rather than
/// computing anything else, when [`crate::supports`] says no kernel covers the shape.
#[allow(clippy::too_many_arguments)]
pub fn varlen(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    cu_seqlens: &Tensor,
    max_seqlen: usize,
    softmax_scale: f32,
    causal: bool,
    alibi_slopes: Option<&Tensor>,
) -> Result<Tensor> {
    let op = Varlen {
        cu_seqlens: cu_seqlens.to_dtype(DType::U32)?.contiguous()?,
        alibi_slopes: alibi_slopes.map(|s| s.to_dtype(DType::F32)?.contiguous()).transpose()?,
        max_seqlen,
        softmax_scale,
        causal,
    };
    q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

struct Varlen {
    cu_seqlens: Tensor,
    alibi_slopes: Option<Tensor>,
    max_seqlen: usize,
    softmax_scale: f32,
    causal: bool,
}

fn int(value: usize, what: &str) -> Result<c_int> {
    c_int::try_from(value).map_err(|_| candle_core::Error::Msg(format!("flash attention: {what} {value} is too large")))
}

impl Varlen {
    fn run<T: CudaDType + candle_core::cuda_backend::cudarc::driver::DeviceRepr>(
        &self,
        (q, q_l): (&CudaStorage, &Layout),
        (k, k_l): (&CudaStorage, &Layout),
        (v, v_l): (&CudaStorage, &Layout),
        bf16: bool,
    ) -> Result<(CudaStorage, Shape)> {
        let (tokens, heads, head_dim) = q_l.shape().dims3()?;
        let (k_tokens, kv_heads, k_dim) = k_l.shape().dims3()?;
        if k_l.shape() != v_l.shape() || k_tokens != tokens || k_dim != head_dim {
            candle_core::bail!(
                "flash attention: q {:?}, k {:?}, v {:?} do not fit",
                q_l.shape(),
                k_l.shape(),
                v_l.shape()
            );
        }
        if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            candle_core::bail!("flash attention: {heads} heads over {kv_heads} key/value heads");
        }
        for (name, layout) in [("q", q_l), ("k", k_l), ("v", v_l)] {
            if !layout.is_contiguous() {
                candle_core::bail!("flash attention: {name} is not contiguous");
            }
        }
        if !crate::supports(bf16, head_dim, self.causal) {
            candle_core::bail!(
                "flash attention: no kernel for head dimension {head_dim} (bf16 {bf16}, causal {})",
                self.causal
            );
        }
        let device = q.device().clone();
        let stream = device.cuda_stream();
        let q = q.as_cuda_slice::<T>()?.slice(q_l.start_offset()..);
        let k = k.as_cuda_slice::<T>()?.slice(k_l.start_offset()..);
        let v = v.as_cuda_slice::<T>()?.slice(v_l.start_offset()..);

        let (starts, starts_l) = self.cu_seqlens.storage_and_layout();
        let Storage::Cuda(starts) = &*starts else {
            candle_core::bail!("flash attention: cu_seqlens is not on the GPU");
        };
        let sequences = starts_l.shape().dims1()?.checked_sub(1).filter(|&n| n > 0);
        let Some(sequences) = sequences else {
            candle_core::bail!("flash attention: cu_seqlens needs at least two offsets");
        };
        let starts = starts.as_cuda_slice::<u32>()?.slice(starts_l.start_offset()..);

        let slopes_storage = self.alibi_slopes.as_ref().map(|s| s.storage_and_layout());
        let slopes = match &slopes_storage {
            Some((storage, layout)) => {
                let Storage::Cuda(storage) = &**storage else {
                    candle_core::bail!("flash attention: ALiBi slopes are not on the GPU");
                };
                if layout.shape().dims1()? != heads {
                    candle_core::bail!("flash attention: {:?} ALiBi slopes for {heads} heads", layout.shape());
                }
                Some(storage.as_cuda_slice::<f32>()?.slice(layout.start_offset()..))
            }
            None => None,
        };

        let elements = tokens * heads * head_dim;
        // SAFETY: every element of `out` is written by the kernel before the tensor is read: it
        // writes each query row of each head, and the rows cover `tokens`.
        let mut out = unsafe { device.alloc::<T>(elements)? };
        let mut lse = device.alloc_zeros::<f32>(heads * tokens)?;
        let status = {
            let (q_ptr, _q) = q.device_ptr(&stream);
            let (k_ptr, _k) = k.device_ptr(&stream);
            let (v_ptr, _v) = v.device_ptr(&stream);
            let (out_ptr, _out) = out.device_ptr_mut(&stream);
            let (lse_ptr, _lse) = lse.device_ptr_mut(&stream);
            let (starts_ptr, _starts) = starts.device_ptr(&stream);
            let slopes = slopes.as_ref().map(|s| s.device_ptr(&stream));
            let slopes_ptr = slopes.as_ref().map_or(std::ptr::null(), |(p, _)| *p as *const f32);
            // SAFETY: the pointers are live device allocations of the sizes the kernel reads and
            // writes (checked above: shapes, contiguity, the slope count, the offsets' count);
            // the guards keep them and order the launch on `stream`.
            unsafe {
                tessera_flash_attn_varlen(
                    q_ptr as *const c_void,
                    k_ptr as *const c_void,
                    v_ptr as *const c_void,
                    out_ptr as *mut c_void,
                    lse_ptr as *mut f32,
                    slopes_ptr,
                    starts_ptr as *const c_int,
                    int(sequences, "sequences")?,
                    int(heads, "heads")?,
                    int(kv_heads, "key/value heads")?,
                    int(head_dim, "head dimension")?,
                    int(self.max_seqlen, "longest sequence")?,
                    int(tokens, "tokens")?,
                    self.softmax_scale,
                    c_int::from(bf16),
                    c_int::from(self.causal),
                    stream.cu_stream() as *mut c_void,
                )
            }
        };
        match status {
            0 => Ok((CudaStorage::wrap_cuda_slice(out, device), q_l.shape().clone())),
            1 => candle_core::bail!("flash attention: no kernel for head dimension {head_dim}"),
            _ => candle_core::bail!("flash attention: the kernel launch failed"),
        }
    }
}

impl CustomOp3 for Varlen {
    fn name(&self) -> &'static str {
        "tessera-flash-attn-varlen"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("flash attention runs on CUDA devices only")
    }

    fn cuda_fwd(
        &self,
        q: &CudaStorage,
        q_l: &Layout,
        k: &CudaStorage,
        k_l: &Layout,
        v: &CudaStorage,
        v_l: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        match q.dtype() {
            DType::F16 => self.run::<f16>((q, q_l), (k, k_l), (v, v_l), false),
            DType::BF16 => self.run::<bf16>((q, q_l), (k, k_l), (v, v_l), true),
            other => candle_core::bail!("flash attention takes float16 or bfloat16, not {other:?}"),
        }
    }
}
