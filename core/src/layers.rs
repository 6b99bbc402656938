//! Loading helpers shared by every architecture, so each model file holds only its structure.

use candle_core::Tensor;
use candle_nn::{LayerNorm, Linear, VarBuilder};

/// A `nn.Linear` with bias; `weight` is `[out, in]` as PyTorch stores it.
pub fn linear(vb: &VarBuilder, in_dim: usize, out_dim: usize, name: &str) -> candle_core::Result<Linear> {
    let vb = vb.pp(name);
    Ok(Linear::new(
        vb.get((out_dim, in_dim), "weight")?,
        Some(vb.get(out_dim, "bias")?),
    ))
}

/// A `nn.Linear(bias=False)`.
pub fn linear_no_bias(vb: &VarBuilder, in_dim: usize, out_dim: usize, name: &str) -> candle_core::Result<Linear> {
    Ok(Linear::new(vb.pp(name).get((out_dim, in_dim), "weight")?, None))
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
    let (q, k, v) = (
        linear(vb, hidden, hidden, "query")?,
        linear(vb, hidden, hidden, "key")?,
        linear(vb, hidden, hidden, "value")?,
    );
    let weight = Tensor::cat(&[q.weight(), k.weight(), v.weight()], 0)?;
    let bias = match (q.bias(), k.bias(), v.bias()) {
        (Some(qb), Some(kb), Some(vb)) => Some(Tensor::cat(&[qb, kb, vb], 0)?),
        _ => None,
    };
    Ok(Linear::new(weight, bias))
}
