//! BERT, written once: every token-wise layer runs on the packed `[total_tokens, hidden]` stream
//! and attention is the swappable [`AttentionKernel`].
//!
//! Reference: <https://github.com/huggingface/transformers/blob/main/src/transformers/models/bert/modeling_bert.py>

use std::sync::Arc;

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use tessera_core::layers::LayerNorm;
use tessera_core::layers::Linear;
use tessera_core::layers::{fused_qkv, layer_norm, linear, lookup, split_heads};
use tessera_core::{AttentionKernel, Batch, HiddenAct, PositionBias, SeqOffsets};

use crate::config::BertConfig;

/// `BertEmbeddings`: word + position + token type, then LayerNorm.
#[derive(Debug)]
pub(crate) struct BertEmbeddings {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type_embeddings: Tensor,
    layer_norm: LayerNorm,
}

impl BertEmbeddings {
    /// Loads `embeddings.*`.
    pub(crate) fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        Ok(Self {
            word_embeddings: vb.get((cfg.vocab_size, cfg.hidden_size), "word_embeddings.weight")?,
            position_embeddings: vb.get(
                (cfg.max_position_embeddings, cfg.hidden_size),
                "position_embeddings.weight",
            )?,
            token_type_embeddings: vb.get((cfg.type_vocab_size, cfg.hidden_size), "token_type_embeddings.weight")?,
            layer_norm: layer_norm(&vb, cfg.hidden_size, cfg.layer_norm_eps, "LayerNorm")?,
        })
    }

    /// `[total_tokens, hidden]`.
    pub(crate) fn forward(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let words = lookup(&self.word_embeddings, &batch.input_ids)?;
        let positions = lookup(&self.position_embeddings, &batch.position_ids)?;
        let types = lookup(&self.token_type_embeddings, &batch.token_type_ids)?;
        self.layer_norm.forward(&((words + positions)? + types)?)
    }
}

/// `BertSelfAttention` + `BertSelfOutput`, with Q, K and V fused into one matmul.
#[derive(Debug)]
pub(crate) struct BertAttention {
    qkv: Linear,
    output: Linear,
    layer_norm: LayerNorm,
    heads: usize,
    head_dim: usize,
}

impl BertAttention {
    /// Loads `attention.self.{query,key,value}` and `attention.output.{dense,LayerNorm}`.
    pub(crate) fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            qkv: fused_qkv(&vb.pp("self"), h)?,
            output: linear(&vb.pp("output"), h, h, "dense")?,
            layer_norm: layer_norm(&vb.pp("output"), h, cfg.layer_norm_eps, "LayerNorm")?,
            heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
        })
    }

    /// `x`: `[total_tokens, hidden]` -> `[total_tokens, hidden]`.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        seqs: &SeqOffsets,
        kernel: &dyn AttentionKernel,
        bias: &PositionBias,
    ) -> candle_core::Result<Tensor> {
        let total = x.dim(0)?;
        let (q, k, v) = split_heads(&self.qkv.forward(x)?, self.heads, self.head_dim)?;
        let context = kernel
            .attend(&q, &k, &v, seqs, bias)?
            .reshape((total, self.heads * self.head_dim))?;
        self.layer_norm.forward(&self.output.forward_residual(&context, x)?)
    }
}

/// `BertIntermediate` + `BertOutput`: the feed-forward block with its residual and LayerNorm.
#[derive(Debug)]
pub(crate) struct BertFeedForward {
    intermediate: Linear,
    act: HiddenAct,
    output: Linear,
    layer_norm: LayerNorm,
}

impl BertFeedForward {
    /// Loads `intermediate.dense` and `output.{dense,LayerNorm}` from a layer's builder.
    pub(crate) fn load(vb: &VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        Ok(Self {
            intermediate: linear(&vb.pp("intermediate"), cfg.hidden_size, cfg.intermediate_size, "dense")?,
            act: cfg.hidden_act,
            output: linear(&vb.pp("output"), cfg.intermediate_size, cfg.hidden_size, "dense")?,
            layer_norm: layer_norm(&vb.pp("output"), cfg.hidden_size, cfg.layer_norm_eps, "LayerNorm")?,
        })
    }

    /// `[total_tokens, hidden]` -> `[total_tokens, hidden]`.
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.act.apply(&self.intermediate.forward(x)?)?;
        self.layer_norm.forward(&self.output.forward_residual(&h, x)?)
    }
}

/// `BertLayer`: post-LN attention then feed-forward.
#[derive(Debug)]
pub(crate) struct BertLayer {
    attention: BertAttention,
    feed_forward: BertFeedForward,
}

impl BertLayer {
    /// Loads `encoder.layer.N`.
    pub(crate) fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        Ok(Self {
            attention: BertAttention::load(vb.pp("attention"), cfg)?,
            feed_forward: BertFeedForward::load(&vb, cfg)?,
        })
    }
}

/// `BertModel` without the pooler (embeddings do not use it).
#[derive(Debug)]
pub struct BertModel {
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    kernel: Arc<dyn AttentionKernel>,
    config: BertConfig,
}

impl BertModel {
    /// Loads a BERT encoder. `vb` must already point at the weight prefix (`""` or `"bert."`).
    pub fn load(vb: VarBuilder, cfg: &BertConfig, kernel: Arc<dyn AttentionKernel>) -> candle_core::Result<Self> {
        let embeddings = BertEmbeddings::load(vb.pp("embeddings"), cfg)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| BertLayer::load(vb.pp(format!("encoder.layer.{i}")), cfg))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            layers,
            kernel,
            config: cfg.clone(),
        })
    }

    /// The configuration it was loaded with.
    pub fn config(&self) -> &BertConfig {
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
            x = layer
                .attention
                .forward(&x, &batch.seqs, self.kernel.as_ref(), &PositionBias::None)?;
            x = layer.feed_forward.forward(&x)?;
        }
        Ok(x)
    }
}
