//! Loading helpers shared by every architecture, so each model file holds only its structure.

use std::sync::Arc;

use candle_core::{CpuStorage, DType, Layout, Module, Storage, Tensor};

use crate::quant::{Format, PackedWeights};
use candle_nn::VarBuilder;

pub use crate::layer_norm::LayerNorm;

/// A linear layer whose weight is kept transposed (`[in, out]`, contiguous).
///
/// `candle_nn::Linear` multiplies by a strided view of PyTorch's `[out, in]` weight; the matmul
/// then re-packs that layout on every call, which dominates at the few tokens of a single short
/// input (`cargo bench -p tessera-flash --bench kernels`: 16 x 384 x 1536 takes 0.28 ms strided,
/// 0.20 ms pre-transposed). Transposing once at load removes that cost.
#[derive(Debug, Clone)]
pub struct Linear {
    weight_t: Tensor,
    bias: Option<Tensor>,
    /// Set by [`Linear::quantize`]: the weights packed in a narrow format (`weight_t` is then
    /// dropped) and the bias on the host.
    packed: Option<Arc<(PackedWeights, Option<Vec<f32>>)>>,
}

impl Linear {
    /// From PyTorch's `[out, in]` weight and optional `[out]` bias.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> candle_core::Result<Self> {
        Ok(Self {
            weight_t: weight.t()?.contiguous()?,
            bias,
            packed: None,
        })
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        match &self.packed {
            Some(q) => q.0.out_dim(),
            None => self.weight_t.dims().last().copied().unwrap_or(0),
        }
    }

    /// Replaces the f32 weights with weights packed in `format`; inputs are then quantized or
    /// rounded per row as they arrive ([`crate::quant`]). The f32 weights are freed.
    pub fn quantize(&mut self, format: Format) -> candle_core::Result<()> {
        if let Some(packed) = &self.packed {
            if packed.0.format() == format {
                return Ok(());
            }
            candle_core::bail!("the linear layer's weights are already {}", packed.0.format().name());
        }
        let weight = self.weight_t.t()?.contiguous()?.to_dtype(DType::F32)?;
        let (out_dim, in_dim) = weight.dims2()?;
        let rows = weight.flatten_all()?.to_vec1::<f32>()?;
        let bias = match &self.bias {
            Some(b) => Some(b.to_dtype(DType::F32)?.to_vec1::<f32>()?),
            None => None,
        };
        self.packed = Some(Arc::new((
            PackedWeights::from_rows(format, &rows, out_dim, in_dim),
            bias,
        )));
        self.weight_t = Tensor::zeros(0, DType::F32, self.weight_t.device())?;
        Ok(())
    }

    /// Bytes its weights take.
    pub fn weight_bytes(&self) -> usize {
        match &self.packed {
            Some(q) => q.0.bytes(),
            None => self.weight_t.elem_count() * self.weight_t.dtype().size_in_bytes(),
        }
    }

    /// The packed path: `x` as f32 rows, the residual added in the same pass.
    fn forward_packed(
        &self,
        q: &(PackedWeights, Option<Vec<f32>>),
        x: &Tensor,
        residual: Option<&Tensor>,
        then: Option<fn(&mut [f32])>,
    ) -> candle_core::Result<Tensor> {
        let (weights, bias) = q;
        let dims = x.dims().to_vec();
        let in_dim = *dims.last().unwrap_or(&0);
        if in_dim != weights.in_dim() {
            candle_core::bail!(
                "packed linear layer: input has {in_dim} features, the layer {}",
                weights.in_dim()
            );
        }
        let rows = x.elem_count() / in_dim.max(1);
        let x = x.to_dtype(DType::F32)?.contiguous()?;
        let residual = match residual {
            Some(r) => Some(r.to_dtype(DType::F32)?.contiguous()?),
            None => None,
        };
        let y = {
            let (xs, xl) = x.storage_and_layout();
            let x_data = f32_slice(&xs, xl)
                .ok_or_else(|| candle_core::Error::Msg("packed linear layers run on the CPU".into()))?;
            let residual_data = residual.as_ref().map(|r| r.storage_and_layout());
            let residual_slice = match &residual_data {
                Some((rs, rl)) => Some(
                    f32_slice(rs, rl)
                        .ok_or_else(|| candle_core::Error::Msg("packed linear layers run on the CPU".into()))?,
                ),
                None => None,
            };
            if residual_slice.is_some_and(|r| r.len() != rows * weights.out_dim()) {
                candle_core::bail!("packed linear layer: the residual is not rows x {}", weights.out_dim());
            }
            weights.matmul(x_data, rows, bias.as_deref(), residual_slice, then)
        };
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = weights.out_dim();
        }
        Tensor::from_vec(y, out_dims, x.device())
    }
}

/// The f32 data of a contiguous CPU tensor.
fn f32_slice<'a>(storage: &'a Storage, layout: &Layout) -> Option<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) => Some(&data[start..end]),
        _ => None,
    }
}

impl Linear {
    /// `x W^T + b (+ residual)` for a contiguous f32 `[rows, in]` on the CPU in one gemm call: the
    /// output starts as the bias rows (plus the residual) and the product is accumulated onto it,
    /// instead of further passes (candle's broadcast add, the residual add) over the output.
    /// `None` when the inputs do not qualify.
    fn forward_fused(&self, x: &Tensor, residual: Option<&Tensor>) -> candle_core::Result<Option<Tensor>> {
        let (Some(bias), [rows, features]) = (&self.bias, x.dims()) else {
            return Ok(None);
        };
        let (rows, features, out) = (*rows, *features, self.out_dim());
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = self.weight_t.storage_and_layout();
        let (bs, bl) = bias.storage_and_layout();
        let (Some(xd), Some(wd), Some(bd)) = (f32_slice(&xs, xl), f32_slice(&ws, wl), f32_slice(&bs, bl)) else {
            return Ok(None);
        };
        if wd.len() != features * out || bd.len() != out || xd.len() != rows * features {
            return Ok(None);
        }
        let residual_dims = residual.and_then(|r| <[usize; 2]>::try_from(r.dims()).ok());
        let residual = residual.map(|r| r.storage_and_layout());
        let mut y: Vec<f32> = Vec::with_capacity(rows * out);
        match &residual {
            None => (0..rows).for_each(|_| y.extend_from_slice(bd)),
            Some((rs, rl)) => match f32_slice(rs, rl) {
                Some(rd) if residual_dims == Some([rows, out]) => {
                    for row in rd.chunks_exact(out) {
                        y.extend(row.iter().zip(bd).map(|(r, b)| r + b));
                    }
                }
                _ => return Ok(None),
            },
        }
        let threads = candle_core::utils::get_num_threads();
        let parallelism = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: y is rows x out, x rows x features and w features x out, all row-major and
        // contiguous with the lengths checked above.
        unsafe {
            gemm::gemm(
                rows,
                out,
                features,
                y.as_mut_ptr(),
                1,
                out as isize,
                true,
                xd.as_ptr(),
                1,
                features as isize,
                wd.as_ptr(),
                1,
                out as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
        drop((xs, ws, bs, residual));
        Tensor::from_vec(y, (rows, out), x.device()).map(Some)
    }

    /// `act(x W^T + b)`; packed layers apply the activation to each job's rows as they are
    /// written (one pass over the wide intermediate fewer).
    pub fn forward_activated(&self, x: &Tensor, act: crate::HiddenAct) -> candle_core::Result<Tensor> {
        match &self.packed {
            Some(q) => self.forward_packed(q, x, None, Some(act.in_place())),
            None => act.apply(&self.forward(x)?),
        }
    }

    /// `x W^T + b + residual`, the residual added while the output is laid out on the fused path.
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        if let Some(q) = &self.packed {
            return self.forward_packed(q, x, Some(residual), None);
        }
        match self.forward_fused(x, Some(residual))? {
            Some(y) => Ok(y),
            None => self.forward(x)? + residual,
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if let Some(q) = &self.packed {
            return self.forward_packed(q, x, None, None);
        }
        if let Some(y) = self.forward_fused(x, None)? {
            return Ok(y);
        }
        let y = match x.dims() {
            [_, _] => x.matmul(&self.weight_t)?,
            [batch, seq, features] => {
                x.reshape((batch * seq, *features))?
                    .matmul(&self.weight_t)?
                    .reshape((*batch, *seq, self.out_dim()))?
            }
            _ => x.broadcast_matmul(&self.weight_t)?,
        };
        match &self.bias {
            Some(bias) => y.broadcast_add(bias),
            None => Ok(y),
        }
    }
}

/// A `nn.Linear` with bias; `weight` is `[out, in]` as PyTorch stores it.
pub fn linear(vb: &VarBuilder, in_dim: usize, out_dim: usize, name: &str) -> candle_core::Result<Linear> {
    let vb = vb.pp(name);
    Linear::new(vb.get((out_dim, in_dim), "weight")?, Some(vb.get(out_dim, "bias")?))
}

/// A `nn.LayerNorm` with weight and bias (older checkpoints name them gamma and beta).
pub fn layer_norm(vb: &VarBuilder, size: usize, eps: f64, name: &str) -> candle_core::Result<LayerNorm> {
    let vb = vb.pp(name);
    let (weight, bias) = if vb.contains_tensor("weight") || !vb.contains_tensor("gamma") {
        (vb.get(size, "weight")?, vb.get(size, "bias")?)
    } else {
        (vb.get(size, "gamma")?, vb.get(size, "beta")?)
    };
    LayerNorm::new(weight, bias, eps)
}

/// Rows of an embedding table for `ids`: `[ids.len(), dim]`.
pub fn lookup(table: &Tensor, ids: &[u32]) -> candle_core::Result<Tensor> {
    let ids = Tensor::from_slice(ids, ids.len(), table.device())?;
    table.index_select(&ids, 0)
}

/// Splits a fused `[total, 3 * hidden]` QKV projection into its three `[total, hidden]` parts.
pub fn split_qkv(qkv: &Tensor, hidden: usize) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    Ok((
        qkv.narrow(1, 0, hidden)?,
        qkv.narrow(1, hidden, hidden)?,
        qkv.narrow(1, 2 * hidden, hidden)?,
    ))
}

/// Splits a fused `[total, 3 * heads * head_dim]` QKV projection into q, k and v as
/// `[total, heads, head_dim]` views of it, without copying: rows are `3 * heads * head_dim` apart.
/// Kernels that need contiguous inputs copy them themselves.
pub fn split_heads(qkv: &Tensor, heads: usize, head_dim: usize) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let total = qkv.dim(0)?;
    let parts = qkv.reshape((total, 3, heads, head_dim))?;
    let part = |i: usize| parts.narrow(1, i, 1)?.squeeze(1);
    Ok((part(0)?, part(1)?, part(2)?))
}

/// A linear or embedding module's `weight` of `shape`, stored plainly or as a parametrized
/// module's ([`crate::inspection::PARAMETRIZED_WEIGHT`]).
pub fn weight(vb: &VarBuilder, shape: impl Into<candle_core::Shape>) -> candle_core::Result<Tensor> {
    let parametrized = crate::inspection::PARAMETRIZED_WEIGHT;
    match !vb.contains_tensor("weight") && vb.contains_tensor(parametrized) {
        true => vb.get(shape, parametrized),
        false => vb.get(shape, "weight"),
    }
}

/// Projections of the same input stacked into one `[sum of outs, in]` matmul (Q, K and V; a
/// gate and its up-projection), each part `(name, out)`, with or without their biases.
pub fn stacked_linear(
    vb: &VarBuilder,
    parts: &[(&str, usize)],
    input: usize,
    bias: bool,
) -> candle_core::Result<Linear> {
    let weights = parts
        .iter()
        .map(|&(name, out)| weight(&vb.pp(name), (out, input)))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let biases = match bias {
        true => Some(Tensor::cat(
            &parts
                .iter()
                .map(|&(name, out)| vb.pp(name).get(out, "bias"))
                .collect::<candle_core::Result<Vec<_>>>()?,
            0,
        )?),
        false => None,
    };
    Linear::new(Tensor::cat(&weights, 0)?, biases)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap()
    }

    #[test]
    fn the_fused_path_equals_matmul_plus_bias() {
        let (w, b) = (
            crate::testing::random_tensor(&[48, 40], 1),
            crate::testing::random_tensor(&[48], 2),
        );
        let linear = Linear::new(w.clone(), Some(b.clone())).unwrap();
        for rows in [1, 7, 300] {
            let x = crate::testing::random_tensor(&[rows, 40], 3);
            let want = x.matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
            // The fused gemm must be the path taken, not a silent fallback.
            let fused = linear
                .forward_fused(&x, None)
                .unwrap()
                .expect("contiguous f32 takes the fused path");
            let diff = max_diff(&fused, &want);
            assert!(diff < 1e-5, "{rows} rows: {diff}");
            assert_eq!(max_diff(&linear.forward(&x).unwrap(), &fused), 0.0);
            // With a residual: also fused, and equal to adding it afterwards.
            let residual = crate::testing::random_tensor(&[rows, 48], 6);
            let with = linear
                .forward_fused(&x, Some(&residual))
                .unwrap()
                .expect("a contiguous residual takes the fused path");
            let diff = max_diff(&with, &(&want + &residual).unwrap());
            assert!(diff < 1e-5, "{rows} rows with residual: {diff}");
            assert_eq!(max_diff(&linear.forward_residual(&x, &residual).unwrap(), &with), 0.0);
            // A residual of the right size but another shape is not laid out as rows.
            let transposed = residual.t().unwrap().contiguous().unwrap();
            assert!(linear.forward_fused(&x, Some(&transposed)).unwrap().is_none());
        }
        // Non-contiguous input and 3-D input take candle's path and agree too.
        let x = crate::testing::random_tensor(&[40, 5], 4).t().unwrap();
        let want = x.matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
        let diff = max_diff(&linear.forward(&x).unwrap(), &want);
        assert!(diff < 1e-5, "{diff}");
        let x3 = crate::testing::random_tensor(&[2, 3, 40], 5);
        assert_eq!(linear.forward(&x3).unwrap().dims(), &[2, 3, 48]);
    }

    #[test]
    fn a_packed_layer_applies_its_activation_as_the_activation_would() {
        let (w, b) = (
            crate::testing::random_tensor(&[48, 40], 1),
            crate::testing::random_tensor(&[48], 2),
        );
        for format in [Format::Int8, Format::Bf16] {
            let mut linear = Linear::new(w.clone(), Some(b.clone())).unwrap();
            linear.quantize(format).unwrap();
            for act in [
                crate::HiddenAct::Gelu,
                crate::HiddenAct::GeluTanh,
                crate::HiddenAct::Relu,
                crate::HiddenAct::Silu,
            ] {
                // 100 rows: several jobs, each activating its own rows.
                let x = crate::testing::random_tensor(&[100, 40], 3);
                let want = act.apply(&linear.forward(&x).unwrap()).unwrap();
                let got = linear.forward_activated(&x, act).unwrap();
                // candle's tanh and exp and ours may differ in the last ulp.
                assert!(max_diff(&got, &want) <= 1e-6, "{format:?} {act:?}");
            }
        }
    }
}
