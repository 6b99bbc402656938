//! Loading helpers shared by every architecture, so each model file holds only its structure.

use candle_core::{Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

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
}

impl Linear {
    /// From PyTorch's `[out, in]` weight and optional `[out]` bias.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> candle_core::Result<Self> {
        Ok(Self {
            weight_t: weight.t()?.contiguous()?,
            bias,
        })
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        self.weight_t.dims().last().copied().unwrap_or(0)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
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

/// A `nn.Linear(bias=False)`.
pub fn linear_no_bias(vb: &VarBuilder, in_dim: usize, out_dim: usize, name: &str) -> candle_core::Result<Linear> {
    Linear::new(vb.pp(name).get((out_dim, in_dim), "weight")?, None)
}

/// A `nn.LayerNorm` with weight and bias (older checkpoints name them gamma and beta).
pub fn layer_norm(vb: &VarBuilder, size: usize, eps: f64, name: &str) -> candle_core::Result<LayerNorm> {
    let vb = vb.pp(name);
    let (weight, bias) = if vb.contains_tensor("weight") || !vb.contains_tensor("gamma") {
        (vb.get(size, "weight")?, vb.get(size, "bias")?)
    } else {
        (vb.get(size, "gamma")?, vb.get(size, "beta")?)
    };
    Ok(LayerNorm::new(weight, bias, eps))
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

/// Fuses the query, key and value projections into one matmul.
pub fn fused_qkv(vb: &VarBuilder, hidden: usize) -> candle_core::Result<Linear> {
    let parts = ["query", "key", "value"].map(|name| vb.pp(name));
    let weights = parts
        .iter()
        .map(|p| p.get((hidden, hidden), "weight"))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let biases = parts
        .iter()
        .map(|p| p.get(hidden, "bias"))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Linear::new(Tensor::cat(&weights, 0)?, Some(Tensor::cat(&biases, 0)?))
}
