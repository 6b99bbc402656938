//! The three feed-forward blocks of JinaBERT v2, each with its residual and LayerNorm.
//!
//! Reference: <https://huggingface.co/jinaai/jina-bert-implementation/blob/main/modeling_bert.py>
//! (`JinaBertGLUMLP`) and `jinaai/jina-bert-v2-qk-post-norm` for the code variant.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use tessera_core::layers::LayerNorm;
use tessera_core::layers::Linear;
use tessera_core::HiddenAct;

use crate::config::{FeedForward, JinaConfig};
use crate::model::{layer_norm, linear, linear_no_bias};

/// One layer's feed-forward block. `forward` takes the attention block's output and returns the
/// layer's output (residuals and norms included).
#[derive(Debug)]
pub(crate) enum Mlp {
    /// `x = mlp.layernorm(mlp.wo(act(g[:I]) * g[I:]) + x)` with `g = mlp.gated_layers(x)`.
    Glu {
        gated_layers: Linear,
        wo: Linear,
        layernorm: LayerNorm,
        act: HiddenAct,
        inter: usize,
    },
    /// BERT's `intermediate` + `output` blocks.
    Original {
        intermediate: Linear,
        act: HiddenAct,
        output: Linear,
        layer_norm: LayerNorm,
    },
    /// `h1 = layer_norm_1(h + a)`; `out = layer_norm_2(h1 + down(up * act(gate)))`, up/gate
    /// from `up_gated_layer(h1)`. Needs the layer input `h` too (the doubled residual).
    Code {
        up_gated_layer: Linear,
        down_layer: Linear,
        layer_norm_1: LayerNorm,
        layer_norm_2: LayerNorm,
        act: HiddenAct,
        inter: usize,
    },
}

impl Mlp {
    /// Loads from a layer's builder (`encoder.layer.N`).
    pub(crate) fn load(vb: &VarBuilder, cfg: &JinaConfig) -> candle_core::Result<Self> {
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        Ok(match cfg.feed_forward {
            FeedForward::Glu(act) => {
                let mlp = vb.pp("mlp");
                Mlp::Glu {
                    gated_layers: linear_no_bias(&mlp, h, 2 * i, "gated_layers")?,
                    wo: linear(&mlp, i, h, "wo")?,
                    layernorm: layer_norm(&mlp, h, eps, "layernorm")?,
                    act: act.hidden_act(),
                    inter: i,
                }
            }
            FeedForward::Original => Mlp::Original {
                intermediate: linear(&vb.pp("intermediate"), h, i, "dense")?,
                act: cfg.hidden_act,
                output: linear(&vb.pp("output"), i, h, "dense")?,
                layer_norm: layer_norm(&vb.pp("output"), h, eps, "LayerNorm")?,
            },
            FeedForward::Code(act) => {
                let mlp = vb.pp("mlp");
                Mlp::Code {
                    up_gated_layer: linear_no_bias(&mlp, h, 2 * i, "up_gated_layer")?,
                    down_layer: linear(&mlp, i, h, "down_layer")?,
                    layer_norm_1: layer_norm(vb, h, eps, "layer_norm_1")?,
                    layer_norm_2: layer_norm(vb, h, eps, "layer_norm_2")?,
                    act: act.hidden_act(),
                    inter: i,
                }
            }
        })
    }

    /// `input`: the layer input `h`; `attended`: the attention block output `a` (both
    /// `[total_tokens, hidden]`). Returns the layer output.
    pub(crate) fn forward(&self, input: &Tensor, attended: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Mlp::Glu {
                gated_layers,
                wo,
                layernorm,
                act,
                inter,
            } => {
                let g = gated_layers.forward(attended)?;
                let gated = act.apply(&g.narrow(1, 0, *inter)?)?;
                let h = (gated * g.narrow(1, *inter, *inter)?)?;
                layernorm.forward(&wo.forward_residual(&h, attended)?)
            }
            Mlp::Original {
                intermediate,
                act,
                output,
                layer_norm,
            } => {
                let h = act.apply(&intermediate.forward(attended)?)?;
                layer_norm.forward(&output.forward_residual(&h, attended)?)
            }
            Mlp::Code {
                up_gated_layer,
                down_layer,
                layer_norm_1,
                layer_norm_2,
                act,
                inter,
            } => {
                let h1 = layer_norm_1.forward(&(input + attended)?)?;
                let g = up_gated_layer.forward(&h1)?;
                let up = g.narrow(1, 0, *inter)?;
                let gate = act.apply(&g.narrow(1, *inter, *inter)?)?;
                layer_norm_2.forward(&down_layer.forward_residual(&(up * gate)?, &h1)?)
            }
        }
    }
}
