//! The blocks every encoder (and decoder embedder) is made of, loaded from an [`EncoderSpec`]:
//! embeddings with a position scheme, self-attention (the swappable kernel, with a position-bias
//! and a mask kind, rotary where the spec says), a plain or gated feed-forward, each block's norm
//! after its residual (post-norm) or before it (pre-norm). Every token-wise layer runs on the
//! packed `[total_tokens, hidden]` stream.
//!
//! References: transformers' `modeling_bert.py` and `modeling_roberta.py` (RoBERTa differs only in
//! how position rows are counted), `modeling_modernbert.py`, `modeling_qwen3.py`.

use std::sync::Arc;

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;
use tessera_core::layers::{layer_norm, lookup, split_heads, split_qkv, stacked_linear, weight, LayerNorm};
use tessera_core::quant::Format;
use tessera_core::rotary::{Rotary, RotaryTables};
use tessera_core::{
    AttentionKernel, Batch, DisentangledBias, HiddenAct, PositionBias, RelativeBias, RelativeColumns, Scoring,
    SeqOffsets,
};

use crate::experts::MixtureOfExperts;
use crate::lora::{Lora, Projection, TaskRows};
use crate::spec::{
    AttentionBias, ConvActivation, Disentangled, EncoderSpec, FeedForward as FeedForwardKind, Half, Norm, NormKind,
    Placement, PositionTable, Positions, QkNorms, Qkv,
};

/// The norm `spec` describes, of width `size`, at `name`.
fn load_norm(vb: &VarBuilder, size: usize, norm: Norm, name: &str) -> candle_core::Result<LayerNorm> {
    load_scaled_norm(vb, size, norm, name, 1.0)
}

/// [`load_norm`] with its gain multiplied by `scale` (an RMSNorm feeding only a linear map, so
/// a constant factor after it can be folded in).
fn load_scaled_norm(
    vb: &VarBuilder,
    size: usize,
    norm: Norm,
    name: &str,
    scale: f64,
) -> candle_core::Result<LayerNorm> {
    let gain = |offset: f64| -> candle_core::Result<Tensor> {
        let weight = vb.pp(name).get(size, "weight")?;
        if offset == 0.0 && scale == 1.0 {
            return Ok(weight);
        }
        // In float32, as Gemma's norm computes `1 + weight`.
        let dtype = weight.dtype();
        ((weight.to_dtype(DType::F32)? + offset)? * scale)?.to_dtype(dtype)
    };
    match norm.kind {
        NormKind::LayerNorm if scale == 1.0 => layer_norm(vb, size, norm.eps, name),
        NormKind::LayerNormWithoutBias if scale == 1.0 => {
            LayerNorm::without_bias(vb.pp(name).get(size, "weight")?, norm.eps)
        }
        NormKind::LayerNorm | NormKind::LayerNormWithoutBias => {
            candle_core::bail!("{name}: only an RMSNorm's gain can absorb a scale")
        }
        NormKind::Rms => LayerNorm::rms(gain(0.0)?, norm.eps),
        NormKind::RmsUnitOffset => LayerNorm::rms(gain(1.0)?, norm.eps),
    }
}

/// The linear layer of one or more stacked parts ([`stacked_linear`]) with its task adapters;
/// adapters are on single-tensor projections only (jina-embeddings-v3's fused QKV and plain
/// feed-forward).
fn projection(
    vb: &VarBuilder,
    spec: &EncoderSpec,
    parts: &[(&str, usize)],
    input: usize,
    bias: bool,
) -> candle_core::Result<Projection> {
    let lora = match (parts, spec.adapters.as_ref()) {
        (_, None) => None,
        (&[(name, output)], adapters) => Lora::linear(&vb.pp(name), adapters, input, output)?,
        (_, Some(_)) => candle_core::bail!(
            "{}: task adapters on a projection stacked from {} tensors",
            spec.architecture,
            parts.len()
        ),
    };
    Ok(Projection {
        linear: stacked_linear(vb, parts, input, bias)?,
        lora,
    })
}

/// Word + position (+ token type) embeddings, then the embedding norm where the family has one.
#[derive(Debug)]
struct Embeddings {
    words: Tensor,
    /// `None` for ALiBi and rotary models.
    positions: Option<Tensor>,
    scheme: Positions,
    token_types: Option<Tensor>,
    /// Task adapters of the word and token-type tables.
    words_lora: Option<Lora>,
    token_types_lora: Option<Lora>,
    /// DeBERTa's `embed_proj`, ELECTRA's `embeddings_project`: narrower tables projected to the
    /// layers' width.
    projection: Option<tessera_core::layers::Linear>,
    /// The norm runs before the projection (ELECTRA), not after it (DeBERTa).
    norm_first: bool,
    norm: Option<LayerNorm>,
    /// The word vectors' factor (Gemma's `sqrt(hidden_size)`).
    scale: Option<f64>,
}

impl Embeddings {
    fn load(vb: &VarBuilder, spec: &EncoderSpec) -> candle_core::Result<Self> {
        let (n, h) = (&spec.names, spec.embedding_width().size());
        let table = |name: &str, rows: usize| weight(&vb.pp(name), (rows, h));
        let adapters = spec.adapters.as_ref();
        let rows = spec.dims.positions.size();
        let positions = match (spec.position_table, n.position_embeddings) {
            (PositionTable::Weights, Some(name)) => Some(table(name, rows)?),
            (PositionTable::Weights, None) => {
                candle_core::bail!("{}: a position table without a name", spec.architecture)
            }
            (PositionTable::Sinusoidal, _) => Some(
                Tensor::from_vec(PositionTable::sinusoids(rows, h), (rows, h), vb.device())?.to_dtype(vb.dtype())?,
            ),
            (PositionTable::Absent, _) => None,
        };
        Ok(Self {
            words: table(n.word_embeddings, spec.dims.vocab.size())?,
            positions,
            scheme: spec.positions,
            token_types: match (n.token_type_embeddings, spec.dims.token_types) {
                (Some(name), Some(rows)) => Some(table(name, rows.size())?),
                _ => None,
            },
            words_lora: Lora::embedding(&vb.pp(n.word_embeddings), adapters, spec.dims.vocab.size(), h)?,
            token_types_lora: match (n.token_type_embeddings, spec.dims.token_types) {
                (Some(name), Some(rows)) => Lora::embedding(&vb.pp(name), adapters, rows.size(), h)?,
                _ => None,
            },
            projection: match spec.extras.embedding_projection {
                Some(p) => Some(stacked_linear(
                    vb,
                    &[(p.name, spec.hidden_size())],
                    p.width.size(),
                    p.bias,
                )?),
                None => None,
            },
            norm_first: spec.extras.embedding_projection.is_some_and(|p| p.norm_first),
            norm: match n.embeddings_norm {
                Some(name) => {
                    let width = spec
                        .extras
                        .embedding_projection
                        .map_or(spec.dims.hidden, |p| p.norm_width(spec.dims.hidden));
                    Some(load_norm(vb, width.size(), spec.norm, name)?)
                }
                None => None,
            },
            scale: spec.scales.embeddings,
        })
    }

    fn forward(&self, batch: &Batch, tasks: &TaskRows) -> candle_core::Result<Tensor> {
        let device = self.words.device();
        let ids = Tensor::from_slice(&batch.input_ids, batch.input_ids.len(), device)?;
        let mut x = self.words.index_select(&ids, 0)?;
        if let Some(scale) = self.scale {
            x = (x * scale)?;
        }
        if let Some(lora) = &self.words_lora {
            x = lora.adapt_rows(x, &ids, tasks)?;
        }
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
            let ids = Tensor::from_slice(&batch.token_type_ids, batch.token_type_ids.len(), device)?;
            let mut rows = types.index_select(&ids, 0)?;
            if let Some(lora) = &self.token_types_lora {
                rows = lora.adapt_rows(rows, &ids, tasks)?;
            }
            x = (x + rows)?;
        }
        let norm = |x: Tensor| match &self.norm {
            Some(norm) => norm.forward(&x),
            None => Ok(x),
        };
        if self.norm_first {
            x = norm(x)?;
        }
        if let Some(projection) = &self.projection {
            x = projection.forward(&x)?;
        }
        match self.norm_first {
            true => Ok(x),
            false => norm(x),
        }
    }
}

/// DeBERTa-v2's convolution over the embeddings, loaded: one `[hidden, hidden]` matrix per tap
/// (`[in, out]`, applied to the tokens that tap reads), the bias, the activation and the norm.
#[derive(Debug)]
struct Convolution {
    taps: Vec<Tensor>,
    bias: Tensor,
    act: ConvActivation,
    norm: LayerNorm,
}

impl Convolution {
    fn load(vb: &VarBuilder, spec: &EncoderSpec, c: &crate::spec::Convolution) -> candle_core::Result<Self> {
        let (h, kernel) = (spec.hidden_size(), c.kernel.size());
        let weight = vb.pp(c.conv).get((h, h, kernel), "weight")?;
        let taps = (0..kernel)
            .map(|j| weight.narrow(2, j, 1)?.squeeze(2)?.t()?.contiguous())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            taps,
            bias: vb.pp(c.conv).get(h, "bias")?,
            act: c.act,
            norm: layer_norm(vb, h, spec.norm.eps, c.norm)?,
        })
    }

    /// `norm(layer0 + act(conv(embedded)))`, each sequence convolved on its own: a tap reaching
    /// past the sequence reads zeros, as transformers' padded, masked input does.
    fn forward(&self, embedded: &Tensor, layer0: &Tensor, seqs: &SeqOffsets) -> candle_core::Result<Tensor> {
        let (total, h) = embedded.dims2()?;
        let device = embedded.device();
        let padded = Tensor::cat(&[embedded, &Tensor::zeros((1, h), embedded.dtype(), device)?], 0)?;
        let reach = (self.taps.len() / 2) as i64;
        let mut out = self.bias.broadcast_as((total, h))?.contiguous()?;
        for (j, tap) in self.taps.iter().enumerate() {
            let shift = j as i64 - reach;
            let rows: Vec<u32> = seqs
                .ranges()
                .flat_map(|range| {
                    let (start, end) = (range.start as i64, range.end as i64);
                    range.map(move |t| match t as i64 + shift {
                        read if (start..end).contains(&read) => read as u32,
                        _ => total as u32,
                    })
                })
                .collect();
            let read = padded.index_select(&Tensor::from_vec(rows, total, device)?, 0)?;
            out = (out + read.matmul(tap)?)?;
        }
        let out = match self.act {
            ConvActivation::Tanh => out.tanh()?,
            ConvActivation::Hidden(act) => act.apply(&out)?,
        };
        self.norm.forward(&(layer0 + out)?)
    }
}

/// Norms of Q and K, loaded.
#[derive(Debug)]
enum QkNormLayers {
    None,
    Width(LayerNorm, LayerNorm),
    PerHead(LayerNorm, LayerNorm),
}

/// What a layer's attention needs from the batch besides its input.
struct AttendWith<'a> {
    seqs: &'a SeqOffsets,
    kernel: &'a dyn AttentionKernel,
    bias: &'a PositionBias,
    /// This layer's rotary tables, if positions are rotary.
    rotary: Option<&'a RotaryTables>,
    /// Which rows run with which task adapter.
    tasks: &'a TaskRows,
    /// The relative-position column of each offset in this batch (DeBERTa).
    columns: Option<&'a RelativeColumns>,
}

/// The bytes of disentangled-attention terms one group of heads may hold at once.
const TERMS_BUDGET: usize = 64 << 20;

/// DeBERTa's relative-position embeddings as one layer projects them, `[heads, rows, head_dim]`
/// each, scaled so that the kernel's scores get `1 / sqrt(head_dim * (1 + terms))` throughout:
/// the keys by `1 / sqrt(head_dim)` (they meet the already scaled queries), the queries by the
/// whole factor (they meet the unscaled keys).
#[derive(Debug)]
struct RelativeProjections {
    /// The c2p term's position keys.
    keys: Option<Tensor>,
    /// The p2c term's position queries.
    queries: Option<Tensor>,
}

impl RelativeProjections {
    /// Projects `table` (`[rows, hidden]`, normed) with the layer's own projections or, where
    /// `share_att_key` says so, its content query and key projections.
    fn load(
        vb: &VarBuilder,
        spec: &EncoderSpec,
        d: &Disentangled,
        table: &Tensor,
        qkv: (&str, &str),
    ) -> candle_core::Result<Self> {
        let (h, heads, head_dim) = (spec.hidden_size(), spec.heads(), spec.head_dim());
        let (keys_name, queries_name) = d.projections.unwrap_or((qkv.1, qkv.0));
        let score_scale = d.score_scale(head_dim);
        let project = |name: &str, scale: f64| -> candle_core::Result<Tensor> {
            let linear = stacked_linear(vb, &[(name, heads * head_dim)], h, true)?;
            let rows = table.dim(0)?;
            (linear.forward(table)? * scale)?
                .reshape((rows, heads, head_dim))?
                .transpose(0, 1)?
                .contiguous()
        };
        Ok(Self {
            keys: match d.c2p {
                true => Some(project(keys_name, 1.0 / (head_dim as f64).sqrt())?),
                false => None,
            },
            queries: match d.p2c {
                true => Some(project(queries_name, score_scale)?),
                false => None,
            },
        })
    }

    /// The layer's bias for queries `q` and keys `k` (`[total, heads.len(), head_dim]`) of the
    /// heads `heads`.
    fn bias(
        &self,
        q: &Tensor,
        k: &Tensor,
        heads: std::ops::Range<usize>,
        columns: &RelativeColumns,
    ) -> candle_core::Result<PositionBias> {
        let total = q.dim(0)?;
        let rows = columns.rows();
        let term = |x: &Tensor, table: &Option<Tensor>| -> candle_core::Result<Option<Tensor>> {
            let Some(table) = table else { return Ok(None) };
            let table = table
                .narrow(0, heads.start, heads.len())?
                .narrow(1, rows.start, rows.len())?
                .transpose(1, 2)?
                .contiguous()?;
            Ok(Some(x.transpose(0, 1)?.contiguous()?.matmul(&table)?))
        };
        let bias = DisentangledBias::new(
            term(q, &self.keys)?,
            term(k, &self.queries)?,
            heads.len(),
            total,
            columns.clone(),
        )?;
        Ok(PositionBias::Disentangled(bias))
    }

    /// Attention of a layer with these terms, in groups of heads whose terms fit `budget` bytes
    /// ([`TERMS_BUDGET`]): the terms hold `tokens x columns` values per head and term, which for
    /// a full batch of 512-token inputs is far more than its queries and keys.
    fn attend(
        &self,
        (q, k, v): (&Tensor, &Tensor, &Tensor),
        (kernel, seqs, scoring): (&dyn AttentionKernel, &SeqOffsets, Scoring),
        columns: &RelativeColumns,
        budget: usize,
    ) -> candle_core::Result<Tensor> {
        let (total, heads, _) = q.dims3()?;
        let terms = usize::from(self.keys.is_some()) + usize::from(self.queries.is_some());
        let per_head = (total * columns.rows().len() * terms * std::mem::size_of::<f32>()).max(1);
        let group = (budget / per_head).clamp(1, heads);
        let mut outputs = Vec::with_capacity(heads.div_ceil(group));
        for first in (0..heads).step_by(group) {
            let n = group.min(heads - first);
            let (q, k, v) = (q.narrow(1, first, n)?, k.narrow(1, first, n)?, v.narrow(1, first, n)?);
            let bias = self.bias(&q, &k, first..first + n, columns)?;
            outputs.push(kernel.attend(&q, &k, &v, seqs, &bias, scoring)?);
        }
        Tensor::cat(&outputs, 1)
    }
}

/// Self-attention with Q, K and V fused into one matmul, its output projection and residual,
/// and its norm where the placement puts it.
#[derive(Debug)]
struct Attention {
    qkv: Projection,
    qk_norms: QkNormLayers,
    output: Projection,
    /// `None`: the block reads its input unnormed (ModernBERT's layer 0).
    norm: Option<LayerNorm>,
    /// The norm of the block's output before the residual (Gemma's sandwich).
    post_norm: Option<LayerNorm>,
    placement: Placement,
    /// The layer's mask, and the family's soft cap.
    scoring: Scoring,
    /// Index of this layer's rotary scheme in [`Encoder::rotaries`].
    rotary: Option<usize>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// The queries' factor where no query norm absorbs the family's score scale (DeBERTa).
    query_scale: Option<f64>,
    relative: Option<RelativeProjections>,
}

impl Attention {
    /// `relative_table`: DeBERTa's relative-position embeddings, normed.
    fn load(
        vb: &VarBuilder,
        spec: &EncoderSpec,
        l: usize,
        rotary: Option<usize>,
        relative_table: Option<&Tensor>,
    ) -> candle_core::Result<Self> {
        let (n, h, d) = (&spec.names, spec.hidden_size(), spec.head_dim());
        let (heads, kv_heads) = (spec.heads(), spec.kv_heads());
        let bias = spec.biases.attention;
        let qkv = match n.qkv {
            Qkv::Separate { query, key, value } => projection(
                vb,
                spec,
                &[(query, heads * d), (key, kv_heads * d), (value, kv_heads * d)],
                h,
                bias,
            )?,
            Qkv::Fused(name) => projection(vb, spec, &[(name, 3 * heads * d)], h, bias)?,
        };
        let norm = |size: usize, name: &str| load_norm(vb, size, spec.norm, name);
        // A score scale of the family's own is folded into the query norm's gain: the norm's
        // output reaches the scores only through the (linear) rotation and the dot product.
        // Without one, the queries are multiplied by it.
        let query_scale = spec.scales.attention.map(|s| s * (d as f64).sqrt());
        let relative = match (spec.attention_bias, relative_table, n.qkv) {
            (AttentionBias::Disentangled(disentangled), Some(table), Qkv::Separate { query, key, .. }) => {
                Some(RelativeProjections::load(vb, spec, &disentangled, table, (query, key))?)
            }
            (AttentionBias::Disentangled(_), ..) => candle_core::bail!(
                "{}: disentangled attention needs its relative table and separate query and key projections",
                spec.architecture
            ),
            _ => None,
        };
        Ok(Self {
            qkv,
            qk_norms: match (n.qk_norms, query_scale) {
                (QkNorms::None, _) => QkNormLayers::None,
                (QkNorms::Width(q, k), None) => QkNormLayers::Width(norm(h, q)?, norm(h, k)?),
                (QkNorms::PerHead(q, k), scale) => QkNormLayers::PerHead(
                    load_scaled_norm(vb, d, spec.norm, q, scale.unwrap_or(1.0))?,
                    norm(d, k)?,
                ),
                (QkNorms::Width(..), Some(_)) => {
                    candle_core::bail!("{}: an attention scale with full-width query norms", spec.architecture)
                }
            },
            query_scale: match n.qk_norms {
                QkNorms::None => query_scale,
                _ => None,
            },
            relative,
            output: projection(
                vb,
                spec,
                &[(n.attention_output, h)],
                heads * d,
                spec.biases.attention_output,
            )?,
            norm: match spec.has_attention_norm(l) {
                true => Some(norm(h, n.attention_norm)?),
                false => None,
            },
            post_norm: match spec.norm.placement {
                Placement::Sandwich { attention_post, .. } => Some(norm(h, attention_post)?),
                _ => None,
            },
            placement: spec.norm.placement,
            scoring: Scoring {
                mask: spec.layer_attention[l].mask,
                softcap: spec.scales.softcap.map(|cap| cap as f32),
            },
            rotary,
            heads,
            kv_heads,
            head_dim: d,
        })
    }

    /// The query, key and value heads of `input`, normed and rotated as the family does.
    fn heads_of(&self, input: &Tensor, with: &AttendWith<'_>) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let total = input.dim(0)?;
        let qkv = self.qkv.forward(input, with.tasks)?;
        let heads = |t: Tensor, n: usize| t.contiguous()?.reshape((total, n, self.head_dim));
        let (q_width, kv_width) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
        let (mut q, mut k, v) = match &self.qk_norms {
            // Views of the one projection: no copy until a kernel needs one.
            QkNormLayers::None | QkNormLayers::PerHead(..) if q_width == kv_width => {
                split_heads(&qkv, self.heads, self.head_dim)?
            }
            QkNormLayers::Width(norm_q, norm_k) => {
                let (q, k, v) = split_qkv(&qkv, q_width)?;
                (
                    heads(norm_q.forward(&q.contiguous()?)?, self.heads)?,
                    heads(norm_k.forward(&k.contiguous()?)?, self.heads)?,
                    heads(v, self.heads)?,
                )
            }
            _ => (
                heads(qkv.narrow(1, 0, q_width)?, self.heads)?,
                heads(qkv.narrow(1, q_width, kv_width)?, self.kv_heads)?,
                heads(qkv.narrow(1, q_width + kv_width, kv_width)?, self.kv_heads)?,
            ),
        };
        if let QkNormLayers::PerHead(norm_q, norm_k) = &self.qk_norms {
            let per_head = |norm: &LayerNorm, t: &Tensor| {
                let (total, n, d) = t.dims3()?;
                norm.forward(&t.contiguous()?.reshape((total * n, d))?)?
                    .reshape((total, n, d))
            };
            q = per_head(norm_q, &q)?;
            k = per_head(norm_k, &k)?;
        }
        if let Some(scale) = self.query_scale {
            q = (q * scale)?;
        }
        if let Some(tables) = with.rotary {
            q = tables.apply(&q)?;
            k = tables.apply(&k)?;
        }
        Ok((q, k, v))
    }

    fn forward(&self, x: &Tensor, with: &AttendWith<'_>) -> candle_core::Result<Tensor> {
        let total = x.dim(0)?;
        let input = match (self.placement, &self.norm) {
            (Placement::Pre { .. } | Placement::Sandwich { .. }, Some(norm)) => norm.forward(x)?,
            _ => x.clone(),
        };
        let (q, k, v) = self.heads_of(&input, with)?;
        let context = match (&self.relative, with.columns) {
            (Some(relative), Some(columns)) => relative.attend(
                (&q, &k, &v),
                (with.kernel, with.seqs, self.scoring),
                columns,
                TERMS_BUDGET,
            )?,
            _ => with.kernel.attend(&q, &k, &v, with.seqs, with.bias, self.scoring)?,
        }
        .reshape((total, self.heads * self.head_dim))?;
        if let Some(post) = &self.post_norm {
            return x + post.forward(&self.output.forward(&context, with.tasks)?)?;
        }
        let out = self.output.forward_residual(&context, x, with.tasks)?;
        match (self.placement, &self.norm) {
            (Placement::Post, Some(norm)) => norm.forward(&out),
            _ => Ok(out),
        }
    }
}

/// The feed-forward block with its residual and norm: post-norm `norm(down(act(up(x))) + x)`
/// or pre-norm `x + down(act(up(norm(x))))`; gated, `up` projects to twice the width and one
/// half, activated, multiplies the other. With an input norm (JinaBERT's code variant: a
/// doubled residual) it reads `input_norm(layer input + x)` instead of `x`. On a mixture-of-
/// experts layer the experts take the place of `down(act(up(.)))`.
#[derive(Debug)]
struct FeedForward {
    input_norm: Option<LayerNorm>,
    body: Body,
    act: HiddenAct,
    norm: LayerNorm,
    /// The norm of the block's output before the residual (Gemma's sandwich).
    post_norm: Option<LayerNorm>,
    placement: Placement,
}

/// What maps the feed-forward block's input to its output before the residual.
#[derive(Debug)]
enum Body {
    Dense {
        up: Projection,
        kind: FeedForwardKind,
        down: Projection,
    },
    Experts(MixtureOfExperts),
}

impl FeedForward {
    /// Layer `l`'s block; `vb` points at the layer.
    fn load(vb: &VarBuilder, spec: &EncoderSpec, l: usize) -> candle_core::Result<Self> {
        let (n, h, i) = (&spec.names, spec.hidden_size(), spec.dims.intermediate.size());
        let bias = spec.biases.up;
        let body = match spec.extras.experts {
            Some(experts) if experts.on_layer(l) => Body::Experts(MixtureOfExperts::load(vb, &experts, h, spec.act)?),
            _ => Body::Dense {
                up: match (spec.feed_forward, n.gate) {
                    (FeedForwardKind::Plain, _) => projection(vb, spec, &[(n.intermediate, i)], h, bias)?,
                    (FeedForwardKind::Gated { .. }, None) => projection(vb, spec, &[(n.intermediate, 2 * i)], h, bias)?,
                    // A separate gate goes first, as the activated half.
                    (FeedForwardKind::Gated { .. }, Some(gate)) => {
                        projection(vb, spec, &[(gate, i), (n.intermediate, i)], h, bias)?
                    }
                },
                kind: spec.feed_forward,
                down: projection(vb, spec, &[(n.output, h)], i, spec.biases.down)?,
            },
        };
        Ok(Self {
            input_norm: match n.feed_forward_input_norm {
                Some(name) => Some(load_norm(vb, h, spec.norm, name)?),
                None => None,
            },
            body,
            act: spec.act,
            norm: load_norm(vb, h, spec.norm, n.output_norm)?,
            post_norm: match spec.norm.placement {
                Placement::Sandwich { feed_forward_post, .. } => Some(load_norm(vb, h, spec.norm, feed_forward_post)?),
                _ => None,
            },
            placement: spec.norm.placement,
        })
    }

    /// `input`: the layer's input; `attended`: the attention block's output.
    fn forward(&self, input: &Tensor, attended: &Tensor, tasks: &TaskRows) -> candle_core::Result<Tensor> {
        let x = match &self.input_norm {
            Some(norm) => norm.forward(&(input + attended)?)?,
            None => attended.clone(),
        };
        let normed = match self.placement {
            Placement::Pre { .. } | Placement::Sandwich { .. } => self.norm.forward(&x)?,
            Placement::Post => x.clone(),
        };
        let out = match (&self.body, &self.post_norm) {
            (Body::Dense { up, kind, down }, post_norm) => {
                let h = match kind {
                    FeedForwardKind::Plain => up.forward_activated(&normed, self.act, tasks)?,
                    FeedForwardKind::Gated { activated } => self
                        .act
                        .gated(&up.forward(&normed, tasks)?, *activated == Half::First)?,
                };
                match post_norm {
                    Some(post) => return &x + post.forward(&down.forward(&h, tasks)?)?,
                    None => down.forward_residual(&h, &x, tasks)?,
                }
            }
            (Body::Experts(experts), Some(post)) => return &x + post.forward(&experts.forward(&normed)?)?,
            (Body::Experts(experts), None) => (experts.forward(&normed)? + &x)?,
        };
        match self.placement {
            Placement::Post => self.norm.forward(&out),
            Placement::Pre { .. } | Placement::Sandwich { .. } => Ok(out),
        }
    }

    /// Its linear layers (every expert's, not a router's).
    fn linears_mut(&mut self) -> Vec<&mut tessera_core::layers::Linear> {
        match &mut self.body {
            Body::Dense { up, down, .. } => vec![&mut up.linear, &mut down.linear],
            Body::Experts(experts) => experts.expert_linears_mut().collect(),
        }
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

/// The bias every layer adds, decided at load: fixed for the model (none, ALiBi's slopes),
/// tabulated per batch (MPNet's relative buckets), or computed by each layer from its queries
/// and keys over the batch's relative-position columns (DeBERTa).
#[derive(Debug)]
enum LayerBias {
    Fixed(PositionBias),
    Relative(RelativeBuckets),
    Disentangled(Disentangled),
}

/// An encoder (or decoder embedder) without pooler or task head: embeddings, the layers, and
/// the final norm of pre-norm models.
#[derive(Debug)]
pub struct Encoder {
    embeddings: Embeddings,
    bias: LayerBias,
    layers: Vec<Layer>,
    /// The distinct rotary schemes of the layers (ModernBERT: a global and a local base).
    rotaries: Vec<Rotary>,
    final_norm: Option<LayerNorm>,
    /// DeBERTa-v2's convolution after layer 0.
    convolution: Option<Convolution>,
    kernel: Arc<dyn AttentionKernel>,
    spec: EncoderSpec,
}

impl Encoder {
    /// Loads the encoder `spec` describes. `vb` must already point at the weight prefix.
    pub fn load(vb: &VarBuilder, spec: &EncoderSpec, kernel: Arc<dyn AttentionKernel>) -> candle_core::Result<Self> {
        let embeddings = Embeddings::load(vb, spec)?;
        let relative_table = match spec.attention_bias {
            AttentionBias::Disentangled(d) => {
                let table = weight(&vb.pp(d.table), (d.rows.size(), spec.hidden_size()))?;
                Some(match d.norm {
                    Some(name) => layer_norm(vb, spec.hidden_size(), spec.norm.eps, name)?.forward(&table)?,
                    None => table,
                })
            }
            _ => None,
        };
        let bias = match spec.attention_bias {
            AttentionBias::Disentangled(d) => LayerBias::Disentangled(d),
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
        if spec.layer_attention.len() != spec.dims.layers.size() {
            candle_core::bail!(
                "{}: {} layers but attention described for {}",
                spec.architecture,
                spec.dims.layers.size(),
                spec.layer_attention.len()
            );
        }
        let mut rotaries: Vec<Rotary> = Vec::new();
        let layers = spec
            .layer_attention
            .iter()
            .enumerate()
            .map(|(l, attention)| {
                let rotary = match attention.rope {
                    Some(rope) => Some(match rotaries.iter().position(|r| r.rope() == rope) {
                        Some(i) => i,
                        None => {
                            if rope.rotated > spec.head_dim() {
                                candle_core::bail!(
                                    "{}: {} rotated dimensions in heads of {}",
                                    spec.architecture,
                                    rope.rotated,
                                    spec.head_dim()
                                );
                            }
                            rotaries.push(Rotary::new(rope).map_err(candle_core::Error::msg)?);
                            rotaries.len() - 1
                        }
                    }),
                    None => None,
                };
                let vb = vb.pp(format!("{}.{l}", spec.names.layers));
                Ok(Layer {
                    attention: Attention::load(&vb, spec, l, rotary, relative_table.as_ref())?,
                    feed_forward: FeedForward::load(&vb, spec, l)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            bias,
            layers,
            rotaries,
            final_norm: match spec.names.final_norm {
                Some(name) => Some(load_norm(vb, spec.hidden_size(), spec.norm, name)?),
                None => None,
            },
            convolution: match &spec.extras.convolution {
                Some(c) => Some(Convolution::load(vb, spec, c)?),
                None => None,
            },
            kernel,
            spec: spec.clone(),
        })
    }

    /// Every linear layer's weights packed in `format` (embeddings, norms, attention and the
    /// activations stay f32); returns the weight bytes of the linear layers before and after.
    pub fn quantize(&mut self, format: Format) -> candle_core::Result<(usize, usize)> {
        let (mut before, mut after) = (0, 0);
        for layer in &mut self.layers {
            let attention = [&mut layer.attention.qkv.linear, &mut layer.attention.output.linear];
            for linear in attention.into_iter().chain(layer.feed_forward.linears_mut()) {
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
        let tasks = TaskRows::of(batch, self.spec.adapters.as_ref(), self.embeddings.words.device())?;
        let mut x = self.embeddings.forward(batch, &tasks)?;
        let per_batch;
        let mut columns = None;
        let bias = match &self.bias {
            LayerBias::Fixed(bias) => bias,
            LayerBias::Relative(relative) => {
                per_batch = relative.for_batch(batch.seqs.max_len());
                &per_batch
            }
            LayerBias::Disentangled(d) => {
                let reach = batch.seqs.max_len().saturating_sub(1);
                columns = Some(RelativeColumns::new(reach, |offset| d.column(offset)));
                &PositionBias::None
            }
        };
        let tables = self
            .rotaries
            .iter()
            .map(|rotary| rotary.tables(&batch.seqs, x.device()))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let embedded = self.convolution.as_ref().map(|_| x.clone());
        for (l, layer) in self.layers.iter().enumerate() {
            let with = AttendWith {
                seqs: &batch.seqs,
                kernel: self.kernel.as_ref(),
                bias,
                rotary: layer.attention.rotary.map(|i| &tables[i]),
                tasks: &tasks,
                columns: columns.as_ref(),
            };
            let attended = layer.attention.forward(&x, &with)?;
            x = layer.feed_forward.forward(&x, &attended, &tasks)?;
            if let (0, Some(convolution), Some(embedded)) = (l, &self.convolution, &embedded) {
                x = convolution.forward(embedded, &x, &batch.seqs)?;
            }
        }
        match &self.final_norm {
            Some(norm) => norm.forward(&x),
            None => Ok(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use tessera_core::testing::random_tensor;
    use tessera_core::PaddedAttention;

    use super::*;

    /// Heads attended a group at a time give what all at once give.
    #[test]
    fn disentangled_heads_in_groups_match_all_at_once() {
        let (heads, d, rows) = (5, 8, 40);
        let relative = RelativeProjections {
            keys: Some(random_tensor(&[heads, rows, d], 1)),
            queries: Some(random_tensor(&[heads, rows, d], 2)),
        };
        let seqs = SeqOffsets::from_lengths([7, 19, 1]);
        let total = seqs.total_tokens();
        let (q, k, v) = (
            random_tensor(&[total, heads, d], 3),
            random_tensor(&[total, heads, d], 4),
            random_tensor(&[total, heads, d], 5),
        );
        let columns = RelativeColumns::new(18, |offset| (offset.clamp(-12, 12) + 20) as usize);
        let kernel = PaddedAttention::default();
        let run = |budget| {
            relative
                .attend(
                    (&q, &k, &v),
                    (&kernel, &seqs, tessera_core::Mask::Bidirectional.into()),
                    &columns,
                    budget,
                )
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let (all, one_by_one, pairs) = (run(usize::MAX), run(1), run(2 * total * 25 * 2 * 4));
        assert_eq!(all.len(), total * heads * d);
        for other in [&one_by_one, &pairs] {
            let worst = all
                .iter()
                .zip(other.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-6, "{worst}");
        }
    }
}
