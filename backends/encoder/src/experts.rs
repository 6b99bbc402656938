//! A mixture-of-experts feed-forward ([`crate::spec::Experts`]): each token goes through the
//! experts its router finds most probable, on the packed `[total_tokens, hidden]` stream.
//!
//! References: nomic's `MoEBlock` (github.com/nomic-ai/contrastors, `layers/moe.py`) and the
//! hub's remote code for nomic-embed-text-v2-moe, whose packed layout (megablocks') TEI, vLLM
//! and llama.cpp read the same way (`reference/make_nomic_moe.py`).

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;
use tessera_core::layers::{weight, Linear};
use tessera_core::HiddenAct;

use crate::spec::Experts;

/// One expert: `down(act(up(x)))`, without biases.
#[derive(Debug)]
struct Expert {
    up: Linear,
    down: Linear,
}

/// The router, the experts and their shared bias.
#[derive(Debug)]
pub(crate) struct MixtureOfExperts {
    router: Linear,
    experts: Vec<Expert>,
    bias: Tensor,
    top_k: usize,
    act: HiddenAct,
}

impl MixtureOfExperts {
    /// Loads `spec`'s tensors from `vb`, which points at one layer.
    pub(crate) fn load(vb: &VarBuilder, spec: &Experts, hidden: usize, act: HiddenAct) -> candle_core::Result<Self> {
        let (count, width) = (spec.count.size(), spec.width.size());
        if spec.top_k == 0 || spec.top_k > count {
            candle_core::bail!("{} experts per token out of {count}", spec.top_k);
        }
        let up = vb.get((count * width, hidden), spec.up)?;
        let down = vb.get((count * width, hidden), spec.down)?;
        let experts = (0..count)
            .map(|e| {
                let rows = |packed: &Tensor| packed.narrow(0, e * width, width);
                Ok(Expert {
                    up: Linear::new(rows(&up)?, None)?,
                    // Applied as `h down[e]`: as a linear layer's `[out, in]` weight, `down[e]^T`.
                    down: Linear::new(rows(&down)?.t()?, None)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            router: Linear::new(weight(&vb.pp(spec.router), (count, hidden))?, None)?,
            experts,
            bias: vb.get(hidden, spec.bias)?,
            top_k: spec.top_k,
            act,
        })
    }

    /// The block's output for `x` `[tokens, hidden]`, before its residual.
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // The routing is decided on the host: a `[tokens, experts]` table, small beside the
        // experts' matmuls, in float32 as the reference's softmax is.
        let logits = self.router.forward(x)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let routes = route(&logits, self.experts.len(), self.top_k);
        // Each expert's weighted outputs, then one scatter-add of them all in expert order (the
        // order the reference sums in), rather than a pass over the whole output per expert.
        let (mut rows, mut outputs) = (Vec::new(), Vec::new());
        for (expert, tokens) in self.experts.iter().zip(routes) {
            if tokens.is_empty() {
                continue;
            }
            let n = tokens.len();
            let (ids, weights): (Vec<u32>, Vec<f32>) = tokens.into_iter().unzip();
            let ids = Tensor::from_vec(ids, n, x.device())?;
            let weights = Tensor::from_vec(weights, (n, 1), x.device())?.to_dtype(x.dtype())?;
            let h = expert.up.forward_activated(&x.index_select(&ids, 0)?, self.act)?;
            outputs.push(expert.down.forward(&h)?.broadcast_mul(&weights)?);
            rows.push(ids);
        }
        x.zeros_like()?
            .index_add(&Tensor::cat(&rows, 0)?, &Tensor::cat(&outputs, 0)?, 0)?
            .broadcast_add(&self.bias)
    }

    /// The experts' linear layers (the router stays float32: rounding its logits could move a
    /// token whose two candidate experts are close to another one).
    pub(crate) fn expert_linears_mut(&mut self) -> impl Iterator<Item = &mut Linear> {
        self.experts.iter_mut().flat_map(|e| [&mut e.up, &mut e.down])
    }
}

/// Per expert, the tokens routed to it with their weights, in token order: each token (a row of
/// `logits`) goes to its `top_k` most probable experts under the softmax of its row, weighted by
/// those probabilities; of equal probabilities the lower expert index wins.
pub(crate) fn route(logits: &[Vec<f32>], experts: usize, top_k: usize) -> Vec<Vec<(u32, f32)>> {
    let mut routes = vec![Vec::new(); experts];
    let mut order: Vec<usize> = Vec::with_capacity(experts);
    for (token, row) in logits.iter().enumerate() {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = row.iter().map(|&l| (l - max).exp()).collect();
        let sum: f32 = exps.iter().sum();
        order.clear();
        order.extend(0..row.len().min(experts));
        order.sort_by(|&a, &b| exps[b].total_cmp(&exps[a]).then(a.cmp(&b)));
        for &e in order.iter().take(top_k) {
            routes[e].push((token as u32, exps[e] / sum));
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_to_their_most_probable_experts_with_unnormalised_weights() {
        let logits = vec![vec![0.0, 2.0, 1.0, -1.0], vec![3.0, 3.0, 0.0, 0.0]];
        let routes = route(&logits, 4, 2);
        let softmax = |row: &[f32], i: usize| row[i].exp() / row.iter().map(|l| l.exp()).sum::<f32>();
        // Token 0: experts 1 and 2; token 1: a tie between 0 and 1, both taken.
        assert_eq!(routes[0].len(), 1);
        assert_eq!(routes[0][0].0, 1);
        assert_eq!(routes[1].iter().map(|r| r.0).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(routes[2].iter().map(|r| r.0).collect::<Vec<_>>(), vec![0]);
        assert!(routes[3].is_empty());
        assert!((routes[1][0].1 - softmax(&logits[0], 1)).abs() < 1e-7);
        assert!((routes[2][0].1 - softmax(&logits[0], 2)).abs() < 1e-7);
        // Not renormalised: token 0's two weights sum to less than one.
        assert!(routes[1][0].1 + routes[2][0].1 < 0.95);
    }

    #[test]
    fn equal_probabilities_go_to_the_lower_expert() {
        let routes = route(&[vec![1.0, 5.0, 5.0, 5.0]], 4, 2);
        assert_eq!(routes.iter().map(Vec::len).collect::<Vec<_>>(), vec![0, 1, 1, 0]);
    }
}
