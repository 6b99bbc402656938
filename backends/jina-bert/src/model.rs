//! JinaBERT v2, written once over the swappable attention kernel: token-wise layers on the packed
//! `[total_tokens, hidden]` stream, ALiBi applied by the kernel from the slopes.
//!
//! Reference: <https://huggingface.co/jinaai/jina-bert-implementation/blob/main/modeling_bert.py>

use std::sync::Arc;

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use tessera_core::layers::LayerNorm;
use tessera_core::layers::Linear;
use tessera_core::layers::{fused_qkv, lookup, split_heads, split_qkv};
pub(crate) use tessera_core::layers::{layer_norm, linear, linear_no_bias};
use tessera_core::{AttentionKernel, Batch, PositionBias, SeqOffsets};

use crate::alibi::alibi_slopes;
use crate::config::{FeedForward, JinaConfig};
use crate::mlp::Mlp;

/// `JinaBertEmbeddings`: word + token type, then LayerNorm (ALiBi has no position table).
#[derive(Debug)]
struct Embeddings {
    word_embeddings: Tensor,
    token_type_embeddings: Tensor,
    layer_norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, cfg: &JinaConfig) -> candle_core::Result<Self> {
        Ok(Self {
            word_embeddings: vb.get((cfg.vocab_size, cfg.hidden_size), "word_embeddings.weight")?,
            token_type_embeddings: vb.get((cfg.type_vocab_size, cfg.hidden_size), "token_type_embeddings.weight")?,
            layer_norm: layer_norm(&vb, cfg.hidden_size, cfg.layer_norm_eps, "LayerNorm")?,
        })
    }

    fn forward(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let words = lookup(&self.word_embeddings, &batch.input_ids)?;
        let types = lookup(&self.token_type_embeddings, &batch.token_type_ids)?;
        self.layer_norm.forward(&(words + types)?)
    }
}

/// `JinaBertAttention`: self-attention (Q/K LayerNorms in the code variant) and its output block.
#[derive(Debug)]
struct Attention {
    qkv: Linear,
    qk_norms: Option<(LayerNorm, LayerNorm)>,
    output: Linear,
    layer_norm: LayerNorm,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &JinaConfig) -> candle_core::Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        let sa = vb.pp("self");
        let qk_norms = match cfg.feed_forward {
            FeedForward::Code(_) => Some((
                layer_norm(&sa, h, eps, "layer_norm_q")?,
                layer_norm(&sa, h, eps, "layer_norm_k")?,
            )),
            FeedForward::Glu(_) | FeedForward::Original => None,
        };
        Ok(Self {
            qkv: fused_qkv(&sa, h)?,
            qk_norms,
            output: linear(&vb.pp("output"), h, h, "dense")?,
            layer_norm: layer_norm(&vb.pp("output"), h, eps, "LayerNorm")?,
            heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
        })
    }

    /// `x`: `[total_tokens, hidden]` -> `LayerNorm(dense(attention(x)) + x)`.
    fn forward(
        &self,
        x: &Tensor,
        seqs: &SeqOffsets,
        kernel: &dyn AttentionKernel,
        bias: &PositionBias,
    ) -> candle_core::Result<Tensor> {
        let total = x.dim(0)?;
        let qkv = self.qkv.forward(x)?;
        let (q, k, v) = match &self.qk_norms {
            None => split_heads(&qkv, self.heads, self.head_dim)?,
            Some((norm_q, norm_k)) => {
                // Over the full hidden size, before the split into heads.
                let (q, k, v) = split_qkv(&qkv, self.heads * self.head_dim)?;
                let heads = |t: Tensor| t.reshape((total, self.heads, self.head_dim));
                (
                    heads(norm_q.forward(&q.contiguous()?)?)?,
                    heads(norm_k.forward(&k.contiguous()?)?)?,
                    heads(v)?,
                )
            }
        };
        let context = kernel
            .attend(&q, &k, &v, seqs, bias)?
            .reshape((total, self.heads * self.head_dim))?;
        self.layer_norm.forward(&self.output.forward_residual(&context, x)?)
    }
}

#[derive(Debug)]
struct Layer {
    attention: Attention,
    mlp: Mlp,
}

/// A JinaBERT v2 encoder (any variant) without the pooler.
#[derive(Debug)]
pub struct JinaBertModel {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    bias: PositionBias,
    kernel: Arc<dyn AttentionKernel>,
    config: JinaConfig,
}

impl JinaBertModel {
    /// Loads the encoder. `vb` must already point at the weight prefix (`""` or `"bert."`).
    pub fn load(vb: VarBuilder, cfg: &JinaConfig, kernel: Arc<dyn AttentionKernel>) -> candle_core::Result<Self> {
        let embeddings = Embeddings::load(vb.pp("embeddings"), cfg)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let vb = vb.pp(format!("encoder.layer.{i}"));
                Ok(Layer {
                    attention: Attention::load(vb.pp("attention"), cfg)?,
                    mlp: Mlp::load(&vb, cfg)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let bias = PositionBias::Alibi {
            slopes: alibi_slopes(cfg.num_attention_heads),
        };
        Ok(Self {
            embeddings,
            layers,
            bias,
            kernel,
            config: cfg.clone(),
        })
    }

    /// The configuration it was loaded with.
    pub fn config(&self) -> &JinaConfig {
        &self.config
    }

    /// The attention kernel in use.
    pub fn kernel(&self) -> &dyn AttentionKernel {
        self.kernel.as_ref()
    }

    /// Last hidden states `[total_tokens, hidden]` for a packed batch.
    pub fn forward(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let mut x = self.embeddings.forward(batch)?;
        for layer in &self.layers {
            let attended = layer
                .attention
                .forward(&x, &batch.seqs, self.kernel.as_ref(), &self.bias)?;
            x = layer.mlp.forward(&x, &attended)?;
        }
        Ok(x)
    }
}
