//! What an encoder family is, as data: its tensor names, its config keys and its position
//! scheme. The loader ([`crate::blocks`]) and `validate-model`'s expected tensor list
//! ([`EncoderSpec::expected_tensors`]) both read the same [`Names`] table, so they cannot drift.

use tessera_core::rotary::Rope;
use tessera_core::{Dim, ExpectedTensor, HiddenAct, Mask};

/// Where a family keeps each tensor, relative to the weight prefix (`bert.`, `roberta.`...).
/// A linear layer `x` is `x.weight` `[out, in]` and `x.bias` `[out]`; a norm `n` is `n.weight`
/// and `n.bias` (or the legacy `gamma`/`beta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names {
    /// The word (token id) table.
    pub word_embeddings: &'static str,
    /// The position table, where the family has one.
    pub position_embeddings: Option<&'static str>,
    /// `None`: the family has no token types (DistilBERT, MPNet).
    pub token_type_embeddings: Option<&'static str>,
    /// The norm of the embeddings (`None`: decoders feed the word vectors to layer 0 as they are).
    pub embeddings_norm: Option<&'static str>,
    /// Layer `N` lives under `{layers}.N.`.
    pub layers: &'static str,
    /// The query, key and value projections; this and the following names are relative to a layer.
    pub qkv: Qkv,
    /// The attention output projection.
    pub attention_output: &'static str,
    /// The attention block's norm: after attention and its residual (post-norm), or of the
    /// block's input (pre-norm).
    pub attention_norm: &'static str,
    /// The feed-forward up-projection (with [`FeedForward::Gated`] and no [`Names::gate`], both
    /// halves in one tensor).
    pub intermediate: &'static str,
    /// A gate projection kept apart from the up-projection (Qwen3's `gate_proj`): the activated
    /// half of a gated feed-forward; `None` where one tensor holds both halves.
    pub gate: Option<&'static str>,
    /// The feed-forward down-projection.
    pub output: &'static str,
    /// The feed-forward block's norm, placed as [`Names::attention_norm`] is.
    pub output_norm: &'static str,
    /// Norms of Q and K.
    pub qk_norms: QkNorms,
    /// A LayerNorm over the layer input plus the attention output, which the feed-forward then
    /// reads and adds back (JinaBERT's code variant: a doubled residual); `None` elsewhere.
    pub feed_forward_input_norm: Option<&'static str>,
    /// The norm after the last layer (pre-norm models); `None` for post-norm ones.
    pub final_norm: Option<&'static str>,
}

/// Where the query, key and value projections are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qkv {
    /// Three tensors.
    Separate {
        /// The query projection.
        query: &'static str,
        /// The key projection.
        key: &'static str,
        /// The value projection.
        value: &'static str,
    },
    /// One `[q; k; v]` tensor (ModernBERT's `attn.Wqkv`).
    Fused(&'static str),
}

/// Norms of the queries and keys before attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNorms {
    /// None.
    None,
    /// Over the full width, before the split into heads (JinaBERT's code variant).
    Width(&'static str, &'static str),
    /// Over each head, with one `[head_dim]` weight shared by the heads (Qwen3's `q_norm`,
    /// `k_norm`).
    PerHead(&'static str, &'static str),
}

/// The position table of BERT and the families named after it (RoBERTa, DistilBERT, MPNet).
pub const BERT_POSITION_TABLE: &str = "embeddings.position_embeddings";

/// BERT's names, which RoBERTa, XLM-RoBERTa and CamemBERT share.
pub const BERT_NAMES: Names = Names {
    word_embeddings: "embeddings.word_embeddings",
    position_embeddings: Some(BERT_POSITION_TABLE),
    token_type_embeddings: Some("embeddings.token_type_embeddings"),
    embeddings_norm: Some("embeddings.LayerNorm"),
    layers: "encoder.layer",
    qkv: Qkv::Separate {
        query: "attention.self.query",
        key: "attention.self.key",
        value: "attention.self.value",
    },
    attention_output: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    intermediate: "intermediate.dense",
    gate: None,
    output: "output.dense",
    output_norm: "output.LayerNorm",
    qk_norms: QkNorms::None,
    feed_forward_input_norm: None,
    final_norm: None,
};

/// DeBERTa-v2/v3's names: BERT's, with `*_proj` attention projections.
pub const DEBERTA_NAMES: Names = Names {
    qkv: Qkv::Separate {
        query: "attention.self.query_proj",
        key: "attention.self.key_proj",
        value: "attention.self.value_proj",
    },
    ..BERT_NAMES
};

/// DistilBERT's names.
pub const DISTILBERT_NAMES: Names = Names {
    token_type_embeddings: None,
    layers: "transformer.layer",
    qkv: Qkv::Separate {
        query: "attention.q_lin",
        key: "attention.k_lin",
        value: "attention.v_lin",
    },
    attention_output: "attention.out_lin",
    attention_norm: "sa_layer_norm",
    intermediate: "ffn.lin1",
    output: "ffn.lin2",
    output_norm: "output_layer_norm",
    ..BERT_NAMES
};

/// MPNet's names.
pub const MPNET_NAMES: Names = Names {
    token_type_embeddings: None,
    qkv: Qkv::Separate {
        query: "attention.attn.q",
        key: "attention.attn.k",
        value: "attention.attn.v",
    },
    attention_output: "attention.attn.o",
    attention_norm: "attention.LayerNorm",
    ..BERT_NAMES
};

/// JinaBERT v2's names with its gated feed-forward (`mlp.gated_layers`, `mlp.wo`,
/// `mlp.layernorm`); with the original feed-forward it uses [`BERT_NAMES`].
pub const JINA_GLU_NAMES: Names = Names {
    intermediate: "mlp.gated_layers",
    output: "mlp.wo",
    output_norm: "mlp.layernorm",
    ..BERT_NAMES
};

/// JinaBERT v2's code variant (jina-embeddings-v2-base-code).
pub const JINA_CODE_NAMES: Names = Names {
    intermediate: "mlp.up_gated_layer",
    output: "mlp.down_layer",
    output_norm: "layer_norm_2",
    qk_norms: QkNorms::Width("attention.self.layer_norm_q", "attention.self.layer_norm_k"),
    feed_forward_input_norm: Some("layer_norm_1"),
    ..BERT_NAMES
};

/// ModernBERT's names: pre-norm, fused `Wqkv`, GeGLU `Wi` (layer 0 has no `attn_norm`).
pub const MODERNBERT_NAMES: Names = Names {
    word_embeddings: "embeddings.tok_embeddings",
    position_embeddings: None,
    token_type_embeddings: None,
    embeddings_norm: Some("embeddings.norm"),
    layers: "layers",
    qkv: Qkv::Fused("attn.Wqkv"),
    attention_output: "attn.Wo",
    attention_norm: "attn_norm",
    intermediate: "mlp.Wi",
    gate: None,
    output: "mlp.Wo",
    output_norm: "mlp_norm",
    qk_norms: QkNorms::None,
    feed_forward_input_norm: None,
    final_norm: Some("final_norm"),
};

/// Qwen3's names, relative to `model.` where a causal-LM checkpoint has it.
pub const QWEN3_NAMES: Names = Names {
    word_embeddings: "embed_tokens",
    position_embeddings: None,
    token_type_embeddings: None,
    embeddings_norm: None,
    layers: "layers",
    qkv: Qkv::Separate {
        query: "self_attn.q_proj",
        key: "self_attn.k_proj",
        value: "self_attn.v_proj",
    },
    attention_output: "self_attn.o_proj",
    attention_norm: "input_layernorm",
    intermediate: "mlp.up_proj",
    gate: Some("mlp.gate_proj"),
    output: "mlp.down_proj",
    output_norm: "post_attention_layernorm",
    qk_norms: QkNorms::PerHead("self_attn.q_norm", "self_attn.k_norm"),
    feed_forward_input_norm: None,
    final_norm: Some("norm"),
};

/// Gemma 3's names: Qwen3's, with the feed-forward's own pre norm (`post_attention_layernorm`
/// is the attention block's post norm there, see [`Placement::Sandwich`]).
pub const GEMMA3_NAMES: Names = Names {
    output_norm: "pre_feedforward_layernorm",
    ..QWEN3_NAMES
};

/// Gemma 2's names: Gemma 3's without the per-head norms.
pub const GEMMA2_NAMES: Names = Names {
    qk_norms: QkNorms::None,
    ..GEMMA3_NAMES
};

/// Gemma 2's and 3's norm placement: a norm before and after each block.
pub const GEMMA_PLACEMENT: Placement = Placement::Sandwich {
    attention_post: "post_attention_layernorm",
    feed_forward_post: "post_feedforward_layernorm",
};

/// Qwen2's, Llama's and Mistral's names: Qwen3's without the per-head norms.
pub const DECODER_NAMES: Names = Names {
    qk_norms: QkNorms::None,
    ..QWEN3_NAMES
};

/// T5's encoder names (`T5EncoderModel`): `layer.0` is the attention block, `layer.1` the
/// feed-forward (ReLU's `wi`, `wo`), each with its pre-norm `layer_norm`.
pub const T5_NAMES: Names = Names {
    word_embeddings: "shared",
    position_embeddings: None,
    token_type_embeddings: None,
    embeddings_norm: None,
    layers: "encoder.block",
    qkv: Qkv::Separate {
        query: "layer.0.SelfAttention.q",
        key: "layer.0.SelfAttention.k",
        value: "layer.0.SelfAttention.v",
    },
    attention_output: "layer.0.SelfAttention.o",
    attention_norm: "layer.0.layer_norm",
    intermediate: "layer.1.DenseReluDense.wi",
    gate: None,
    output: "layer.1.DenseReluDense.wo",
    output_norm: "layer.1.layer_norm",
    qk_norms: QkNorms::None,
    feed_forward_input_norm: None,
    final_norm: Some("encoder.final_layer_norm"),
};

/// T5 v1.1's gated feed-forward (`gated-gelu`): `act(wi_0) * wi_1`.
pub const T5_GATED_NAMES: Names = Names {
    intermediate: "layer.1.DenseReluDense.wi_1",
    gate: Some("layer.1.DenseReluDense.wi_0"),
    ..T5_NAMES
};

/// NomicBERT's names (its original code's; transformers saves its native class under them too):
/// fused `attn.Wqkv`, SwiGLU/GeGLU `mlp.fc11` (up) and `mlp.fc12` (the activated gate), post-norm
/// `norm1`/`norm2`, the embedding norm `emb_ln` outside `embeddings`.
pub const NOMIC_NAMES: Names = Names {
    embeddings_norm: Some("emb_ln"),
    layers: "encoder.layers",
    qkv: Qkv::Fused("attn.Wqkv"),
    attention_output: "attn.out_proj",
    attention_norm: "norm1",
    intermediate: "mlp.fc11",
    gate: Some("mlp.fc12"),
    output: "mlp.fc2",
    output_norm: "norm2",
    ..BERT_NAMES
};

/// NomicBERT with the plain feed-forward (`activation_function: gelu`): `mlp.fc1`, `mlp.fc2`.
pub const NOMIC_PLAIN_NAMES: Names = Names {
    intermediate: "mlp.fc1",
    gate: None,
    ..NOMIC_NAMES
};

/// nomic-embed-text-v2-moe's experts (megablocks' names); the count, width and routing come
/// from the config.
pub const NOMIC_EXPERTS: Experts = Experts {
    router: "mlp.router.layer",
    up: "mlp.experts.mlp.w1",
    down: "mlp.experts.mlp.w2",
    bias: "mlp.experts.bias",
    count: Dim::of("num_experts", 0),
    top_k: 0,
    width: Dim::of("n_inner", 0),
    every: 0,
};

/// GTE's ("new" remote code, saved the same way by transformers' `GteModel`): fused
/// `attention.qkv_proj`, `mlp.up_gate_proj` (up, then the activated gate), post-norm
/// `attn_ln`/`mlp_ln`.
pub const GTE_NAMES: Names = Names {
    qkv: Qkv::Fused("attention.qkv_proj"),
    attention_output: "attention.o_proj",
    attention_norm: "attn_ln",
    intermediate: "mlp.up_gate_proj",
    output: "mlp.down_proj",
    output_norm: "mlp_ln",
    ..BERT_NAMES
};

/// GTE saved with `pack_qkv: false`: separate `attention.q_proj`, `k_proj`, `v_proj`.
pub const GTE_SEPARATE_NAMES: Names = Names {
    qkv: Qkv::Separate {
        query: "attention.q_proj",
        key: "attention.k_proj",
        value: "attention.v_proj",
    },
    ..GTE_NAMES
};

/// jina-embeddings-v3's (its remote code's, which transformers' native class saves under too):
/// an XLM-RoBERTa body with fused `mixer.Wqkv`, `mixer.out_proj`, `mlp.fc1`/`fc2`, post-norm
/// `norm1`/`norm2` and the embedding norm `emb_ln`; its weights parametrized where it carries
/// task adapters.
pub const JINA_V3_NAMES: Names = Names {
    embeddings_norm: Some("emb_ln"),
    layers: "encoder.layers",
    qkv: Qkv::Fused("mixer.Wqkv"),
    attention_output: "mixer.out_proj",
    attention_norm: "norm1",
    intermediate: "mlp.fc1",
    output: "mlp.fc2",
    output_norm: "norm2",
    ..BERT_NAMES
};

impl Names {
    /// The tensor (without prefix) that only this table's layers have: layer 0's query weight.
    pub fn signature(&self) -> String {
        let query = match self.qkv {
            Qkv::Separate { query, .. } => query,
            Qkv::Fused(qkv) => qkv,
        };
        format!("{}.0.{query}.weight", self.layers)
    }
}

/// A bias added to every layer's attention scores by relative position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionBias {
    /// None: positions enter through the embeddings only.
    None,
    /// ALiBi: `-slope_h * |i - j|`, the slopes from the head count ([`crate::alibi_slopes`]).
    Alibi,
    /// MPNet's: a `[buckets, heads]` table (`tensor.weight`), one learned value per head and
    /// bucket of `j - i`, shared by every layer. The bucketing is T5's, bidirectional: half the
    /// buckets for keys after the query; exact below a quarter of the buckets, logarithmic up
    /// to `max_distance`.
    RelativeBuckets {
        /// The table, relative to the weight prefix (without `.weight`).
        tensor: &'static str,
        /// Rows of the table (`relative_attention_num_buckets`).
        buckets: Dim,
        /// Distance at which the last bucket starts.
        max_distance: usize,
    },
    /// DeBERTa's disentangled attention: each layer projects a table of relative-position
    /// embeddings into keys and queries and adds, by relative position, query-to-position-key
    /// (c2p) and key-to-position-query (p2c) products to the scores.
    Disentangled(Disentangled),
}

/// DeBERTa's disentangled attention, as config.json describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disentangled {
    /// The relative-position embeddings `[rows, hidden]` (without `.weight`).
    pub table: &'static str,
    /// Rows of the table: twice `position_buckets`, or twice `max_relative_positions`.
    pub rows: Dim,
    /// The LayerNorm applied to the table (`norm_rel_ebd: layer_norm`).
    pub norm: Option<&'static str>,
    /// `position_buckets`: offsets beyond half of it are bucketed logarithmically; `None`: exact.
    pub buckets: Option<usize>,
    /// `max_relative_positions`: where the logarithmic buckets end.
    pub max_distance: usize,
    /// The content-to-position term (`c2p` in `pos_att_type`).
    pub c2p: bool,
    /// The position-to-content term (`p2c`).
    pub p2c: bool,
    /// The layer's projections of the table, relative to a layer: `None` shares the content key
    /// and query projections (`share_att_key`); else (`pos_key_proj`, `pos_query_proj`).
    pub projections: Option<(&'static str, &'static str)>,
}

impl Disentangled {
    /// Half the table: the offset of relative position 0.
    pub fn span(&self) -> usize {
        self.rows.size() / 2
    }

    /// The factor of every score term: `1 / sqrt(head_dim * (1 + terms))`.
    pub fn score_scale(&self, head_dim: usize) -> f64 {
        1.0 / ((head_dim * (1 + usize::from(self.c2p) + usize::from(self.p2c))) as f64).sqrt()
    }

    /// The table row of offset `d = i - j` (query minus key position): its bucket shifted by
    /// the span and clamped to the table, as transformers' `make_log_bucket_position` and
    /// `disentangled_attention_bias` compute it (in float32, so bucket edges fall where theirs do).
    pub fn column(&self, d: i64) -> usize {
        let bucket = match self.buckets {
            Some(size) if size > 1 => {
                let mid = (size / 2) as i64;
                let magnitude = if d < mid && d > -mid { mid - 1 } else { d.abs() };
                if magnitude <= mid {
                    d
                } else {
                    let ratio = ((self.max_distance as f64 - 1.0) / mid as f64) as f32;
                    let log =
                        ((magnitude as f32 / mid as f32).ln() / ratio.ln() * (mid - 1) as f32).ceil() + mid as f32;
                    log as i64 * d.signum()
                }
            }
            _ => d,
        };
        let span = self.span() as i64;
        (bucket + span).clamp(0, (2 * span - 1).max(0)) as usize
    }
}

impl AttentionBias {
    /// The bucket of offset `d = j - i` (key minus query position) under MPNet's scheme, in
    /// float32 as transformers computes it (so the boundaries fall where its do).
    pub fn bucket(buckets: usize, max_distance: usize, d: i64) -> usize {
        let half = buckets / 2;
        let n = -d;
        let mut bucket = if n < 0 { half } else { 0 };
        let n = n.unsigned_abs() as usize;
        let max_exact = half / 2;
        if n < max_exact {
            bucket += n;
        } else {
            let scale = ((max_distance as f64) / (max_exact as f64)).ln() as f32;
            let large = max_exact as f32 + (n as f32 / max_exact as f32).ln() / scale * (half - max_exact) as f32;
            bucket += (large as usize).min(half - 1);
        }
        bucket
    }
}

/// The feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedForward {
    /// `down(act(up(x)))`.
    Plain,
    /// `up` projects to twice the intermediate width without bias; the activation applies to
    /// one half, which multiplies the other (JinaBERT's GLU: the first half; its code variant:
    /// the second).
    Gated {
        /// Which half is activated.
        activated: Half,
    },
}

/// One half of a gated projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    /// Columns `0..I`.
    First,
    /// Columns `I..2I`.
    Second,
}

/// Where the position table comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionTable {
    /// Stored in the weights (learned, or sinusoids saved with the model).
    Weights,
    /// None at all: positions enter through the attention bias only (ALiBi).
    Absent,
    /// Not stored: the fixed sinusoids DistilBERT's `sinusoidal_pos_embds` fills it with
    /// (`sin(p / 10000^(2i/d))` in even columns, `cos` of the same angle in odd ones).
    Sinusoidal,
}

impl PositionTable {
    /// The table of `rows` x `dim` sinusoids.
    pub fn sinusoids(rows: usize, dim: usize) -> Vec<f32> {
        let mut table = Vec::with_capacity(rows * dim);
        for pos in 0..rows {
            for j in 0..dim {
                let angle = pos as f64 / 10000f64.powf((2 * (j / 2)) as f64 / dim as f64);
                table.push(if j % 2 == 0 { angle.sin() } else { angle.cos() } as f32);
            }
        }
        table
    }
}

/// How a token's position becomes its row of the position table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// BERT: the i-th token of a sequence uses row i.
    Absolute,
    /// RoBERTa: rows count non-padding tokens after `padding_idx`: the i-th real token uses
    /// row `padding_idx + 1 + i`, and a padding token inside a sequence uses row `padding_idx`.
    AfterPadding {
        /// `pad_token_id`.
        padding_idx: u32,
    },
}

impl Positions {
    /// Rows of the table a sequence of `len` tokens can use at most, i.e. the longest input.
    pub fn max_input(&self, table_rows: usize) -> usize {
        match self {
            Positions::Absolute => table_rows,
            Positions::AfterPadding { padding_idx } => table_rows.saturating_sub(*padding_idx as usize + 1),
        }
    }

    /// The table row of each token of a packed batch (`ids`), sequence by sequence.
    pub fn rows(&self, ids: &[u32], seq_ranges: impl Iterator<Item = std::ops::Range<usize>>) -> Vec<u32> {
        let mut rows = vec![0u32; ids.len()];
        for range in seq_ranges {
            match *self {
                Positions::Absolute => {
                    for (i, row) in rows[range].iter_mut().enumerate() {
                        *row = i as u32;
                    }
                }
                Positions::AfterPadding { padding_idx } => {
                    let mut seen = 0u32;
                    for (row, &id) in rows[range.clone()].iter_mut().zip(&ids[range]) {
                        if id == padding_idx {
                            *row = padding_idx;
                        } else {
                            seen += 1;
                            *row = padding_idx + seen;
                        }
                    }
                }
            }
        }
        rows
    }
}

/// The sizes a family's config gives, each with the key it came from so a shape mismatch can
/// name the key to fix.
#[derive(Debug, Clone, PartialEq)]
pub struct Dims {
    /// Rows of the word table.
    pub vocab: Dim,
    /// Width of the token vectors.
    pub hidden: Dim,
    /// Number of layers.
    pub layers: Dim,
    /// Attention (query) heads.
    pub heads: Dim,
    /// Key/value heads: [`Dims::heads`], or fewer (grouped-query attention), each serving
    /// `heads / kv_heads` query heads.
    pub kv_heads: Dim,
    /// Width of one head: `hidden / heads`, or its own key (Qwen3's `head_dim`).
    pub head_dim: Dim,
    /// Width of the feed-forward.
    pub intermediate: Dim,
    /// Rows of the position table.
    pub positions: Dim,
    /// Rows of the token-type table, when the family has one.
    pub token_types: Option<Dim>,
}

impl Dims {
    /// Width of all query heads together (the query and output projections).
    pub fn query_width(&self) -> Dim {
        self.width_of(self.heads)
    }

    /// Width of all key (or value) heads together.
    pub fn kv_width(&self) -> Dim {
        self.width_of(self.kv_heads)
    }

    /// `heads` heads of [`Dims::head_dim`], traced to `hidden_size` where that is what they make.
    fn width_of(&self, heads: Dim) -> Dim {
        if heads.size() * self.head_dim.size() == self.hidden.size() {
            self.hidden
        } else {
            heads.times(self.head_dim.size())
        }
    }
}

/// The norm every block uses, and where it sits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Norm {
    /// LayerNorm (with or without bias) or RMSNorm.
    pub kind: NormKind,
    /// Post-norm (BERT) or pre-norm (ModernBERT, decoders).
    pub placement: Placement,
    /// Epsilon of every norm.
    pub eps: f64,
}

impl Norm {
    /// BERT's: LayerNorm with bias after each block's residual.
    pub fn post(eps: f64) -> Self {
        Self {
            kind: NormKind::LayerNorm,
            placement: Placement::Post,
            eps,
        }
    }
}

/// The kind of norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// `(x - mean) / sqrt(var + eps) * weight + bias`.
    LayerNorm,
    /// A LayerNorm without bias (ModernBERT's `norm_bias: false`).
    LayerNormWithoutBias,
    /// `x / sqrt(mean(x^2) + eps) * weight`.
    Rms,
    /// `x / sqrt(mean(x^2) + eps) * (1 + weight)` (Gemma: the weight stored as an offset from 1).
    RmsUnitOffset,
}

/// Where each block's norm sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// `norm(x + block(x))`.
    Post,
    /// `x + block(norm(x))`, and a final norm after the last layer.
    Pre {
        /// Layer 0's attention reads the (already normed) embeddings without a norm of its own
        /// (ModernBERT).
        first_attention_unnormed: bool,
    },
    /// `x + post(block(pre(x)))` for both blocks, and a final norm (Gemma 3); the pre norms are
    /// [`Names::attention_norm`] and [`Names::output_norm`], the post norms named here.
    Sandwich {
        /// After the attention output projection.
        attention_post: &'static str,
        /// After the feed-forward down-projection.
        feed_forward_post: &'static str,
    },
}

/// Which projections have a bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Biases {
    /// Query, key and value.
    pub attention: bool,
    /// The attention output projection (apart from Q/K/V's: Qwen2 has those, not this).
    pub attention_output: bool,
    /// The feed-forward up-projection (and gate).
    pub up: bool,
    /// The feed-forward down-projection.
    pub down: bool,
}

impl Biases {
    /// Every projection has one (BERT).
    pub const ALL: Biases = Biases {
        attention: true,
        attention_output: true,
        up: true,
        down: true,
    };
}

/// What one layer's attention does: the keys each query sees, and the rotary scheme if
/// positions are rotary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerAttention {
    /// The keys each query sees.
    pub mask: Mask,
    /// The rotary scheme of this layer's queries and keys; `None`: no rotary.
    pub rope: Option<Rope>,
}

impl LayerAttention {
    /// Every one of `layers` layers sees every key, without rotary positions (BERT).
    pub fn bidirectional(layers: usize) -> Vec<LayerAttention> {
        vec![
            LayerAttention {
                mask: Mask::Bidirectional,
                rope: None,
            };
            layers
        ]
    }
}

/// One encoder, fully described: what [`crate::blocks::Encoder::load`] builds and what
/// `validate-model` expects to find.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderSpec {
    /// The family and variant in words (`bert`, `xlm-roberta`).
    pub architecture: String,
    /// Where each tensor is.
    pub names: Names,
    /// Sizes, each traced to its config key.
    pub dims: Dims,
    /// How position rows are counted.
    pub positions: Positions,
    /// Where the position table comes from.
    pub position_table: PositionTable,
    /// The bias added to attention scores.
    pub attention_bias: AttentionBias,
    /// The feed-forward block.
    pub feed_forward: FeedForward,
    /// The feed-forward activation.
    pub act: HiddenAct,
    /// The norms.
    pub norm: Norm,
    /// Which projections have biases.
    pub biases: Biases,
    /// Each layer's attention, one per layer.
    pub layer_attention: Vec<LayerAttention>,
    /// Task adapters on every linear and embedding weight (jina-embeddings-v3's LoRA).
    pub adapters: Option<Adapters>,
    /// Factors the family's code applies that its weights do not hold.
    pub scales: Scales,
    /// What the family adds around the shared layers (DeBERTa-v2's largest checkpoints).
    pub extras: Extras,
}

/// Steps a family adds around the shared layers, or swaps into some of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extras {
    /// Embedding tables narrower than the layers, projected to `hidden_size`.
    pub embedding_projection: Option<EmbeddingProjection>,
    /// A convolution over the embeddings added to layer 0's output (DeBERTa-v2's `ConvLayer`).
    pub convolution: Option<Convolution>,
    /// A mixture of experts in place of some layers' feed-forward (nomic-embed-text-v2-moe).
    pub experts: Option<Experts>,
    /// A linear layer without bias applied to every token's output after the final norm,
    /// stored at the weights' root beside the backbone: the tensor's name and its output width
    /// (voyage-4-nano's `linear`, 1024 -> 2048, before mean pooling).
    pub output_projection: Option<(&'static str, Dim)>,
}

impl Extras {
    /// Nothing beyond the shared layers.
    pub const NONE: Extras = Extras {
        embedding_projection: None,
        convolution: None,
        experts: None,
        output_projection: None,
    };
}

/// The linear layer from embedding tables narrower than the layers to `hidden_size`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmbeddingProjection {
    /// The layer's tensor name, without `.weight`.
    pub name: &'static str,
    /// The tables' width (`embedding_size`).
    pub width: Dim,
    pub bias: bool,
    /// Whether the embeddings norm runs before the projection, at the tables' width
    /// (ELECTRA's `embeddings_project`), or after it (DeBERTa's `embed_proj`).
    pub norm_first: bool,
}

impl EmbeddingProjection {
    /// The width the embeddings norm runs at.
    pub fn norm_width(&self, hidden: Dim) -> Dim {
        match self.norm_first {
            true => self.width,
            false => hidden,
        }
    }
}

/// A mixture-of-experts feed-forward in megablocks' layout, as NomicBERT's MoE checkpoints store
/// it: a router without bias gives each token a softmax over the experts; the token goes through
/// its `top_k` most probable experts (each `down(act(up(x)))`, without biases), whose outputs are
/// weighted by those probabilities as they are (not renormalised) and summed; then one shared
/// bias is added.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Experts {
    /// The router's `[count, hidden]` linear layer, relative to a layer.
    pub router: &'static str,
    /// Every expert's up-projection, one `[count * width, hidden]` parameter with the expert
    /// axis outer, applied as `x up[e]^T`.
    pub up: &'static str,
    /// Every expert's down-projection, stored like `up` and applied as `h down[e]` (not
    /// transposed).
    pub down: &'static str,
    /// The shared `[hidden]` bias.
    pub bias: &'static str,
    /// `num_experts`.
    pub count: Dim,
    /// Experts each token goes through (`moe_top_k`).
    pub top_k: usize,
    /// Each expert's intermediate width.
    pub width: Dim,
    /// `moe_every_n_layers`: layer `l` has the experts when `l % every == 1`.
    pub every: usize,
}

impl Experts {
    /// Whether layer `l` has the experts in place of the plain feed-forward.
    pub fn on_layer(&self, l: usize) -> bool {
        self.every > 0 && l % self.every == 1
    }
}

/// DeBERTa-v2's convolution: `norm(layer0 + act(conv(embeddings)))`, a 1-d convolution over
/// each sequence's tokens (zero beyond its ends) with `kernel` taps centred on the token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Convolution {
    /// The `[hidden, hidden, kernel]` weight and `[hidden]` bias (without `.weight`).
    pub conv: &'static str,
    /// The LayerNorm after the residual.
    pub norm: &'static str,
    /// Taps (`conv_kernel_size`), odd.
    pub kernel: Dim,
    /// `conv_act`.
    pub act: ConvActivation,
}

/// The convolution's activation: transformers' default `tanh`, or a hidden activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConvActivation {
    /// `tanh`.
    Tanh,
    /// One of the feed-forward activations.
    Hidden(HiddenAct),
}

/// Constant factors of a family's forward pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scales {
    /// The word vectors multiplied by this (Gemma: `sqrt(hidden_size)`).
    pub embeddings: Option<f64>,
    /// Attention scores scaled by this instead of `1 / sqrt(head_dim)` (Gemma:
    /// `query_pre_attn_scalar ** -0.5`, absorbed by its per-head query norms; T5: 1, the
    /// queries multiplied by it).
    pub attention: Option<f64>,
    /// Scaled scores soft-capped, `cap * tanh(s / cap)` (Gemma 2's `attn_logit_softcapping`).
    pub softcap: Option<f64>,
}

impl Scales {
    /// None beyond the weights and `1 / sqrt(head_dim)`.
    pub const NONE: Scales = Scales {
        embeddings: None,
        attention: None,
        softcap: None,
    };
}

/// LoRA adapters, one per task, on every linear and embedding weight `W`: task `t` uses
/// `W + alpha / rank * B_t A_t`. Stored beside the parametrized weight as
/// `parametrizations.weight.0.lora_A` and `lora_B`: for a linear `[tasks, rank, in]` and
/// `[tasks, out, rank]`, for an embedding `[tasks, rows, rank]` and `[tasks, rank, width]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Adapters {
    /// The tasks in adapter order (`lora_adaptations`).
    pub tasks: Vec<String>,
    /// `lora_rank`.
    pub rank: Dim,
    /// `lora_alpha`.
    pub alpha: f64,
}

impl Adapters {
    /// The tensor names of the adapter of module `module` (without `.weight`).
    pub fn names(module: &str) -> (String, String) {
        (
            format!("{module}.parametrizations.weight.0.lora_A"),
            format!("{module}.parametrizations.weight.0.lora_B"),
        )
    }

    /// The count of tasks as the dimension its key gives.
    pub fn task_dim(&self) -> Dim {
        Dim::of("lora_adaptations", self.tasks.len())
    }
}

impl EncoderSpec {
    /// Width of the token vectors.
    pub fn hidden_size(&self) -> usize {
        self.dims.hidden.size()
    }

    /// Width of the embedding tables: `hidden_size` unless they are projected to it.
    pub fn embedding_width(&self) -> Dim {
        match self.extras.embedding_projection {
            Some(projection) => projection.width,
            None => self.dims.hidden,
        }
    }

    /// Attention heads.
    pub fn heads(&self) -> usize {
        self.dims.heads.size()
    }

    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.dims.head_dim.size()
    }

    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.dims.kv_heads.size()
    }

    /// The longest input the position table supports.
    pub fn max_input(&self) -> usize {
        self.positions.max_input(self.dims.positions.size())
    }

    /// Rows of the token-type table; `None` when the family has none (type ids are then
    /// ignored, as its model ignores them).
    pub fn type_vocab_size(&self) -> Option<usize> {
        self.dims.token_types.map(|d| d.size())
    }

    /// Every tensor the encoder loads with `layers` layers, with its shape (names without the
    /// weight prefix).
    pub fn expected_tensors(&self, layers: usize) -> Vec<ExpectedTensor> {
        let Dims {
            vocab,
            hidden: h,
            intermediate: i,
            positions,
            token_types,
            ..
        } = self.dims;
        let (n, biases) = (&self.names, self.biases);
        let norm = |t: &mut Vec<ExpectedTensor>, name: &str, size: Dim| push_norm(t, name, size, self.norm.kind);
        let e = self.embedding_width();
        let mut t = vec![ExpectedTensor::new(
            format!("{}.weight", n.word_embeddings),
            &[vocab, e],
        )];
        let adapted = |t: &mut Vec<ExpectedTensor>, module: &str, a: [Dim; 2], b: [Dim; 2]| {
            if let Some(adapters) = &self.adapters {
                let (name_a, name_b) = Adapters::names(module);
                t.push(ExpectedTensor::new(name_a, &[adapters.task_dim(), a[0], a[1]]));
                t.push(ExpectedTensor::new(name_b, &[adapters.task_dim(), b[0], b[1]]));
            }
        };
        let rank = self.adapters.as_ref().map(|a| a.rank).unwrap_or(h);
        let linear = |t: &mut Vec<ExpectedTensor>, module: &str, input: Dim, output: Dim| {
            adapted(t, module, [rank, input], [output, rank]);
        };
        adapted(&mut t, n.word_embeddings, [vocab, rank], [rank, h]);
        if let (PositionTable::Weights, Some(name)) = (self.position_table, n.position_embeddings) {
            t.push(ExpectedTensor::new(format!("{name}.weight"), &[positions, e]));
        }
        if let (Some(name), Some(rows)) = (n.token_type_embeddings, token_types) {
            t.push(ExpectedTensor::new(format!("{name}.weight"), &[rows, e]));
            adapted(&mut t, name, [rows, rank], [rank, h]);
        }
        if let Some(p) = self.extras.embedding_projection {
            push_linear(&mut t, p.name, p.width, h, p.bias);
        }
        if let Some(name) = n.embeddings_norm {
            let width = self.extras.embedding_projection.map_or(h, |p| p.norm_width(h));
            norm(&mut t, name, width);
        }
        if let Some(c) = self.extras.convolution {
            t.push(ExpectedTensor::new(format!("{}.weight", c.conv), &[h, h, c.kernel]));
            t.push(ExpectedTensor::new(format!("{}.bias", c.conv), &[h]));
            push_norm(&mut t, c.norm, h, NormKind::LayerNorm);
        }
        if let AttentionBias::RelativeBuckets { tensor, buckets, .. } = self.attention_bias {
            t.push(ExpectedTensor::new(
                format!("{tensor}.weight"),
                &[buckets, self.dims.heads],
            ));
        }
        if let AttentionBias::Disentangled(d) = self.attention_bias {
            t.push(ExpectedTensor::new(format!("{}.weight", d.table), &[d.rows, h]));
            if let Some(name) = d.norm {
                push_norm(&mut t, name, h, NormKind::LayerNorm);
            }
        }
        let (q, kv) = (self.dims.query_width(), self.dims.kv_width());
        for l in 0..layers {
            let p = |name: &str| format!("{}.{l}.{name}", n.layers);
            if let AttentionBias::Disentangled(Disentangled {
                projections: Some((keys, queries)),
                c2p,
                p2c,
                ..
            }) = self.attention_bias
            {
                for (name, used) in [(keys, c2p), (queries, p2c)] {
                    if used {
                        push_linear(&mut t, &p(name), h, q, true);
                    }
                }
            }
            match n.qkv {
                Qkv::Separate { query, key, value } => {
                    push_linear(&mut t, &p(query), h, q, biases.attention);
                    push_linear(&mut t, &p(key), h, kv, biases.attention);
                    push_linear(&mut t, &p(value), h, kv, biases.attention);
                }
                // Fused only where every head has its own key and value (ModernBERT).
                Qkv::Fused(name) => {
                    push_linear(&mut t, &p(name), h, q.times(3), biases.attention);
                    linear(&mut t, &p(name), h, q.times(3));
                }
            }
            push_linear(&mut t, &p(n.attention_output), q, h, biases.attention_output);
            linear(&mut t, &p(n.attention_output), q, h);
            if self.has_attention_norm(l) {
                norm(&mut t, &p(n.attention_norm), h);
            }
            match n.qk_norms {
                QkNorms::None => {}
                QkNorms::Width(qn, kn) => {
                    norm(&mut t, &p(qn), h);
                    norm(&mut t, &p(kn), h);
                }
                QkNorms::PerHead(qn, kn) => {
                    norm(&mut t, &p(qn), self.dims.head_dim);
                    norm(&mut t, &p(kn), self.dims.head_dim);
                }
            }
            if let Some(name) = n.feed_forward_input_norm {
                norm(&mut t, &p(name), h);
            }
            match self.extras.experts {
                Some(experts) if experts.on_layer(l) => {
                    let stacked = experts.count.times(experts.width.size());
                    push_linear(&mut t, &p(experts.router), h, experts.count, false);
                    t.push(ExpectedTensor::new(p(experts.up), &[stacked, h]));
                    t.push(ExpectedTensor::new(p(experts.down), &[stacked, h]));
                    t.push(ExpectedTensor::new(p(experts.bias), &[h]));
                }
                _ => {
                    match (self.feed_forward, n.gate) {
                        (FeedForward::Plain, _) => {
                            push_linear(&mut t, &p(n.intermediate), h, i, biases.up);
                            linear(&mut t, &p(n.intermediate), h, i);
                        }
                        (FeedForward::Gated { .. }, None) => {
                            push_linear(&mut t, &p(n.intermediate), h, i.times(2), biases.up)
                        }
                        (FeedForward::Gated { .. }, Some(gate)) => {
                            push_linear(&mut t, &p(gate), h, i, biases.up);
                            push_linear(&mut t, &p(n.intermediate), h, i, biases.up);
                        }
                    }
                    push_linear(&mut t, &p(n.output), i, h, biases.down);
                    linear(&mut t, &p(n.output), i, h);
                }
            }
            norm(&mut t, &p(n.output_norm), h);
            if let Placement::Sandwich {
                attention_post,
                feed_forward_post,
            } = self.norm.placement
            {
                norm(&mut t, &p(attention_post), h);
                norm(&mut t, &p(feed_forward_post), h);
            }
        }
        if let Some(name) = n.final_norm {
            norm(&mut t, name, h);
        }
        if let Some((name, width)) = self.extras.output_projection {
            t.push(ExpectedTensor::at_root(format!("{name}.weight"), &[width, h]));
        }
        t
    }

    /// Width of the vectors the model returns per token: `hidden_size`, or the output
    /// projection's.
    pub fn output_width(&self) -> usize {
        self.extras
            .output_projection
            .map_or_else(|| self.hidden_size(), |(_, width)| width.size())
    }

    /// Whether layer `l` has an attention norm (ModernBERT's layer 0 has none).
    pub fn has_attention_norm(&self, l: usize) -> bool {
        l > 0
            || !matches!(
                self.norm.placement,
                Placement::Pre {
                    first_attention_unnormed: true
                }
            )
    }
}

fn push_linear(t: &mut Vec<ExpectedTensor>, name: &str, input: Dim, output: Dim, bias: bool) {
    t.push(ExpectedTensor::new(format!("{name}.weight"), &[output, input]));
    if bias {
        t.push(ExpectedTensor::new(format!("{name}.bias"), &[output]));
    }
}

fn push_norm(t: &mut Vec<ExpectedTensor>, name: &str, size: Dim, kind: NormKind) {
    t.push(ExpectedTensor::new(format!("{name}.weight"), &[size]));
    if kind == NormKind::LayerNorm {
        t.push(ExpectedTensor::new(format!("{name}.bias"), &[size]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roberta_rows_count_real_tokens_after_the_padding_row() {
        let scheme = Positions::AfterPadding { padding_idx: 1 };
        // Two sequences: [0, 5, 6, 2] and [0, 1, 7] with a padding id inside the second.
        let ids = [0, 5, 6, 2, 0, 1, 7];
        let rows = scheme.rows(&ids, [0..4, 4..7].into_iter());
        assert_eq!(rows, vec![2, 3, 4, 5, 2, 1, 3]);
        assert_eq!(scheme.max_input(514), 512);
        let rows = Positions::Absolute.rows(&ids, [0..4, 4..7].into_iter());
        assert_eq!(rows, vec![0, 1, 2, 3, 0, 1, 2]);
        let rows = Positions::AfterPadding { padding_idx: 0 }.rows(&[5, 6, 0], std::iter::once(0..3));
        assert_eq!(rows, vec![1, 2, 0]);
    }

    #[test]
    fn sinusoids_match_distilbert_at_known_points() {
        let t = PositionTable::sinusoids(3, 4);
        // Row 0: sin 0, cos 0 for each pair; row 2, column 2: sin(2 / 10000^(2/4)) = sin(0.02).
        assert_eq!(&t[..4], &[0.0, 1.0, 0.0, 1.0]);
        assert!((t[8 + 2] - 0.02f32.sin()).abs() < 1e-7);
        assert!((t[8 + 1] - 2f32.cos()).abs() < 1e-7);
    }
}
