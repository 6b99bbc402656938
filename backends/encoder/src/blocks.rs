//! The blocks every BERT-shaped encoder is made of, loaded from an [`EncoderSpec`]: embeddings
//! with a position scheme, post-norm self-attention (the swappable kernel, with a position-bias
//! kind), a plain or gated feed-forward. Every token-wise layer runs on the packed
//! `[total_tokens, hidden]` stream.
//!
//! References: transformers' `modeling_bert.py` and `modeling_roberta.py` (the same blocks; RoBERTa
//! differs only in how position rows are counted).

use std::sync::Arc;

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use tessera_core::layers::{layer_norm, linear, linear_no_bias, lookup, split_heads, split_qkv, LayerNorm, Linear};
use tessera_core::quant::Format;
use tessera_core::{AttentionKernel, Batch, HiddenAct, Mask, PositionBias, RelativeBias, SeqOffsets};

use crate::spec::{AttentionBias, EncoderSpec, FeedForward as FeedForwardKind, Half, PositionTable, Positions};

/// Word + position (+ token type) embeddings, then LayerNorm.
#[derive(Debug)]
struct Embeddings {
    words: Tensor,
    /// `None` for ALiBi models.
    positions: Option<Tensor>,
    scheme: Positions,
    token_types: Option<Tensor>,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: &VarBuilder, spec: &EncoderSpec) -> candle_core::Result<Self> {
        let (n, h) = (&spec.names, spec.hidden_size());
        let table = |name: &str, rows: usize| vb.pp(name).get((rows, h), "weight");
        let rows = spec.dims.positions.size();
        let positions = match spec.position_table {
            PositionTable::Weights => Some(table(n.position_embeddings, rows)?),
            PositionTable::Sinusoidal => Some(
                Tensor::from_vec(PositionTable::sinusoids(rows, h), (rows, h), vb.device())?.to_dtype(vb.dtype())?,
            ),
            PositionTable::Absent => None,
        };
        Ok(Self {
            words: table(n.word_embeddings, spec.dims.vocab.size())?,
            positions,
            scheme: spec.positions,
            token_types: match (n.token_type_embeddings, spec.dims.token_types) {
                (Some(name), Some(rows)) => Some(table(name, rows.size())?),
                _ => None,
            },
            norm: layer_norm(vb, h, spec.layer_norm_eps, n.embeddings_norm)?,
        })
    }

    fn forward(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let mut x = lookup(&self.words, &batch.input_ids)?;
        if let Some(table) = &self.positions {
            let rows = match self.scheme {
                Positions::Absolute => lookup(table, &batch.position_ids)?,
                scheme => {
                    let ranges = (0..batch.seqs.len()).map(|i| batch.seqs.range(i));
                    lookup(table, &scheme.rows(&batch.input_ids, ranges))?
                }
            };
            x = (x + rows)?;
        }
        if let Some(types) = &self.token_types {
            x = (x + lookup(types, &batch.token_type_ids)?)?;
        }
        self.norm.forward(&x)
    }
}

/// Self-attention with Q, K and V fused into one matmul, its output projection, residual and
/// LayerNorm (post-norm).
#[derive(Debug)]
struct Attention {
    qkv: Linear,
    /// LayerNorms of Q and K over the full width, before the head split.
    qk_norms: Option<(LayerNorm, LayerNorm)>,
    output: Linear,
    norm: LayerNorm,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(vb: &VarBuilder, spec: &EncoderSpec) -> candle_core::Result<Self> {
        let (n, h) = (&spec.names, spec.hidden_size());
        Ok(Self {
            qkv: fused_linear(vb, [n.query, n.key, n.value], h, h)?,
            qk_norms: match n.qk_norms {
                Some((q, k)) => Some((
                    layer_norm(vb, h, spec.layer_norm_eps, q)?,
                    layer_norm(vb, h, spec.layer_norm_eps, k)?,
                )),
                None => None,
            },
            output: linear(vb, h, h, n.attention_output)?,
            norm: layer_norm(vb, h, spec.layer_norm_eps, n.attention_norm)?,
            heads: spec.heads(),
            head_dim: spec.head_dim(),
        })
    }

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
            .attend(&q, &k, &v, seqs, bias, Mask::Bidirectional)?
            .reshape((total, self.heads * self.head_dim))?;
        self.norm.forward(&self.output.forward_residual(&context, x)?)
    }
}

/// The feed-forward block with its residual and LayerNorm: `norm(down(act(up(x))) + x)`, or
/// gated (`up` to twice the width, one half activated times the other). With an input norm (the
/// code variant's doubled residual) it reads `input_norm(layer input + x)` instead of `x`.
#[derive(Debug)]
struct FeedForward {
    input_norm: Option<LayerNorm>,
    up: Linear,
    kind: FeedForwardKind,
    act: HiddenAct,
    width: usize,
    down: Linear,
    norm: LayerNorm,
}

impl FeedForward {
    fn load(vb: &VarBuilder, spec: &EncoderSpec) -> candle_core::Result<Self> {
        let (n, h, i, eps) = (
            &spec.names,
            spec.hidden_size(),
            spec.dims.intermediate.size(),
            spec.layer_norm_eps,
        );
        Ok(Self {
            input_norm: match n.feed_forward_input_norm {
                Some(name) => Some(layer_norm(vb, h, eps, name)?),
                None => None,
            },
            up: match spec.feed_forward {
                FeedForwardKind::Plain => linear(vb, h, i, n.intermediate)?,
                FeedForwardKind::Gated { .. } => linear_no_bias(vb, h, 2 * i, n.intermediate)?,
            },
            kind: spec.feed_forward,
            act: spec.act,
            width: i,
            down: linear(vb, i, h, n.output)?,
            norm: layer_norm(vb, h, eps, n.output_norm)?,
        })
    }

    /// `input`: the layer's input; `attended`: the attention block's output.
    fn forward(&self, input: &Tensor, attended: &Tensor) -> candle_core::Result<Tensor> {
        let x = match &self.input_norm {
            Some(norm) => norm.forward(&(input + attended)?)?,
            None => attended.clone(),
        };
        let h = match self.kind {
            FeedForwardKind::Plain => self.up.forward_activated(&x, self.act)?,
            FeedForwardKind::Gated { activated } => {
                let up = self.up.forward(&x)?;
                let (first, second) = (up.narrow(1, 0, self.width)?, up.narrow(1, self.width, self.width)?);
                match activated {
                    Half::First => (self.act.apply(&first)? * second)?,
                    Half::Second => (first * self.act.apply(&second)?)?,
                }
            }
        };
        self.norm.forward(&self.down.forward_residual(&h, &x)?)
    }
}

#[derive(Debug)]
struct Layer {
    attention: Attention,
    feed_forward: FeedForward,
}

/// MPNet's relative bias: the learned `[buckets, heads]` table, tabulated per batch by offset.
#[derive(Debug)]
struct RelativeBuckets {
    /// `[buckets][heads]`, row-major.
    table: Vec<f32>,
    heads: usize,
    buckets: usize,
    max_distance: usize,
}

impl RelativeBuckets {
    /// The bias every layer adds for a batch whose longest sequence has `longest` tokens.
    fn for_batch(&self, longest: usize) -> PositionBias {
        let reach = longest.saturating_sub(1);
        PositionBias::Relative(RelativeBias::tabulate(self.heads, reach, |h, d| {
            self.table[AttentionBias::bucket(self.buckets, self.max_distance, d) * self.heads + h]
        }))
    }
}

/// The bias every layer adds, decided at load: fixed for the model (none, ALiBi's slopes) or
/// tabulated per batch (MPNet's relative buckets).
#[derive(Debug)]
enum LayerBias {
    Fixed(PositionBias),
    Relative(RelativeBuckets),
}

/// An encoder without pooler or task head: embeddings, then post-norm layers.
#[derive(Debug)]
pub struct Encoder {
    embeddings: Embeddings,
    bias: LayerBias,
    layers: Vec<Layer>,
    kernel: Arc<dyn AttentionKernel>,
    spec: EncoderSpec,
}

impl Encoder {
    /// Loads the encoder `spec` describes. `vb` must already point at the weight prefix.
    pub fn load(vb: &VarBuilder, spec: &EncoderSpec, kernel: Arc<dyn AttentionKernel>) -> candle_core::Result<Self> {
        let embeddings = Embeddings::load(vb, spec)?;
        let bias = match spec.attention_bias {
            AttentionBias::None => LayerBias::Fixed(PositionBias::None),
            AttentionBias::Alibi => LayerBias::Fixed(PositionBias::Alibi {
                slopes: crate::alibi_slopes(spec.heads()),
            }),
            AttentionBias::RelativeBuckets {
                tensor,
                buckets,
                max_distance,
            } => {
                let (buckets, heads) = (buckets.size(), spec.heads());
                let table = vb.pp(tensor).get((buckets, heads), "weight")?;
                LayerBias::Relative(RelativeBuckets {
                    table: table.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1()?,
                    heads,
                    buckets,
                    max_distance,
                })
            }
        };
        let layers = (0..spec.dims.layers.size())
            .map(|l| {
                let vb = vb.pp(format!("{}.{l}", spec.names.layers));
                Ok(Layer {
                    attention: Attention::load(&vb, spec)?,
                    feed_forward: FeedForward::load(&vb, spec)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            bias,
            layers,
            kernel,
            spec: spec.clone(),
        })
    }

    /// Every linear layer's weights packed in `format` (embeddings, norms, attention and the
    /// activations stay f32); returns the weight bytes of the linear layers before and after.
    pub fn quantize(&mut self, format: Format) -> candle_core::Result<(usize, usize)> {
        let (mut before, mut after) = (0, 0);
        for layer in &mut self.layers {
            for linear in [
                &mut layer.attention.qkv,
                &mut layer.attention.output,
                &mut layer.feed_forward.up,
                &mut layer.feed_forward.down,
            ] {
                before += linear.weight_bytes();
                linear.quantize(format)?;
                after += linear.weight_bytes();
            }
        }
        Ok((before, after))
    }

    /// What it was loaded from.
    pub fn spec(&self) -> &EncoderSpec {
        &self.spec
    }

    /// The attention kernel in use.
    pub fn kernel(&self) -> &dyn AttentionKernel {
        self.kernel.as_ref()
    }

    /// Last hidden states `[total_tokens, hidden]` for a packed batch.
    pub fn forward(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let mut x = self.embeddings.forward(batch)?;
        let per_batch;
        let bias = match &self.bias {
            LayerBias::Fixed(bias) => bias,
            LayerBias::Relative(relative) => {
                per_batch = relative.for_batch(batch.seqs.max_len());
                &per_batch
            }
        };
        for layer in &self.layers {
            let attended = layer.attention.forward(&x, &batch.seqs, self.kernel.as_ref(), bias)?;
            x = layer.feed_forward.forward(&x, &attended)?;
        }
        Ok(x)
    }
}

/// Three `[out, in]` projections of the same input as one `[3 * out, in]` matmul.
fn fused_linear(vb: &VarBuilder, names: [&str; 3], input: usize, output: usize) -> candle_core::Result<Linear> {
    let parts = names.map(|name| vb.pp(name));
    let weights = parts
        .iter()
        .map(|p| p.get((output, input), "weight"))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let biases = parts
        .iter()
        .map(|p| p.get(output, "bias"))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Linear::new(Tensor::cat(&weights, 0)?, Some(Tensor::cat(&biases, 0)?))
}
