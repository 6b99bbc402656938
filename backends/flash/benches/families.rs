//! `cargo bench -p tessera-flash --bench families`
//!
//! Cost per token of each encoder family against BERT of the same shape (all-MiniLM-L6-v2's:
//! 6 layers, hidden 384, 12 heads, feed-forward 1536) on the unpadded path with the tiled
//! kernel, over one batch of 32 inputs of mixed lengths (16 to 256 tokens). The families are the
//! same blocks, so they should cost the same; MPNet adds its relative bias table per batch and a
//! bias add per score; DeBERTa-v3 adds, per layer, the products of queries and keys with the
//! projected relative-position table (c2p and p2c) and two gathered terms per score. ModernBERT (GeGLU, rotary, two of three layers in 128-token windows) and
//! a Qwen3 decoder (SwiGLU, rotary, causal, 12 query heads on 4 key/value heads) of the same
//! widths show what the rotary and gated blocks cost and the masks save; nomic-embed-text-v2-moe's
//! experts (top 2 of 8 on every other layer) what routing costs beyond the doubled work. jina-embeddings-v3's
//! blocks (rotary, plain GELU feed-forward, five LoRA task adapters of rank 4) run three ways: no
//! task (the adapters off, which is also what weights merged for one task cost), every sequence
//! with one task, and a batch mixing the five tasks and none (the adapters' terms per run). Rounds alternate the families (each round runs every family once, in a
//! rotating order) so that a machine's drift lands on all of them; the median per family is
//! reported with its ratio to BERT (`FAMILIES=a,b` keeps only those besides BERT). Last, BERT with `--dtype int8`'s and `--dtype bfloat16`'s packed weights.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tessera_core::rotary::Rope;
use tessera_core::{Batch, Dim, HiddenAct, Mask};
use tessera_encoder::{
    Adapters, AttentionBias, Biases, Dims, Encoder, EncoderSpec, FeedForward, Half, LayerAttention, Names, Norm,
    NormKind, Placement, PositionTable, Positions, BERT_NAMES, DEBERTA_NAMES, DISTILBERT_NAMES, JINA_V3_NAMES,
    MODERNBERT_NAMES, MPNET_NAMES, NOMIC_EXPERTS, NOMIC_PLAIN_NAMES, QWEN3_NAMES,
};
use tessera_flash::kernels::TiledCpu;

fn spec(architecture: &str, names: Names, positions: Positions, attention_bias: AttentionBias) -> EncoderSpec {
    EncoderSpec {
        architecture: architecture.into(),
        names,
        dims: Dims {
            vocab: Dim::of("vocab_size", 30522),
            hidden: Dim::of("hidden_size", 384),
            layers: Dim::of("num_hidden_layers", 6),
            heads: Dim::of("num_attention_heads", 12),
            kv_heads: Dim::of("num_attention_heads", 12),
            head_dim: Dim::of("num_attention_heads", 32),
            intermediate: Dim::of("intermediate_size", 1536),
            positions: Dim::of("max_position_embeddings", 514),
            token_types: names.token_type_embeddings.map(|_| Dim::of("type_vocab_size", 2)),
        },
        positions,
        position_table: PositionTable::Weights,
        attention_bias,
        feed_forward: FeedForward::Plain,
        act: HiddenAct::Gelu,
        norm: Norm::post(1e-12),
        biases: Biases::ALL,
        scales: tessera_encoder::Scales::NONE,
        extras: tessera_encoder::Extras::NONE,
        adapters: None,
        layer_attention: LayerAttention::bidirectional(6),
    }
}

/// DeBERTa-v3 of the same shape: no position table or token types, disentangled attention with
/// both terms over 256 log buckets to 512, the relative table normed and projected by the
/// content projections (`share_att_key`).
fn deberta() -> EncoderSpec {
    let d = tessera_encoder::Disentangled {
        table: "encoder.rel_embeddings",
        rows: Dim::of("position_buckets", 512),
        norm: Some("encoder.LayerNorm"),
        buckets: Some(256),
        max_distance: 512,
        c2p: true,
        p2c: true,
        projections: None,
    };
    let base = spec(
        "deberta-v3",
        DEBERTA_NAMES,
        Positions::Absolute,
        AttentionBias::Disentangled(d),
    );
    EncoderSpec {
        dims: Dims {
            token_types: None,
            ..base.dims
        },
        position_table: PositionTable::Absent,
        scales: tessera_encoder::Scales {
            attention: Some(d.score_scale(32)),
            ..tessera_encoder::Scales::NONE
        },
        ..base
    }
}

/// ModernBERT of the same shape: pre-norm without biases, GeGLU, a global layer every third,
/// local windows of 128 tokens.
fn modernbert() -> EncoderSpec {
    let base = spec("modernbert", MODERNBERT_NAMES, Positions::Absolute, AttentionBias::None);
    EncoderSpec {
        position_table: PositionTable::Absent,
        feed_forward: FeedForward::Gated { activated: Half::First },
        norm: Norm {
            kind: NormKind::LayerNormWithoutBias,
            placement: Placement::Pre {
                first_attention_unnormed: true,
            },
            eps: 1e-5,
        },
        biases: Biases {
            attention: false,
            attention_output: false,
            up: false,
            down: false,
        },
        scales: tessera_encoder::Scales::NONE,

        adapters: None,
        layer_attention: (0..6)
            .map(|l| LayerAttention {
                mask: if l % 3 == 0 {
                    Mask::Bidirectional
                } else {
                    Mask::Window { radius: 64 }
                },
                rope: Some(Rope::plain(if l % 3 == 0 { 160_000.0 } else { 10_000.0 }, 32)),
            })
            .collect(),
        ..base
    }
}

/// A Qwen3 decoder of the same shape: RMSNorm, 12 query heads on 4 key/value heads, causal,
/// SwiGLU.
fn qwen3() -> EncoderSpec {
    let base = spec("qwen3", QWEN3_NAMES, Positions::Absolute, AttentionBias::None);
    EncoderSpec {
        dims: Dims {
            kv_heads: Dim::of("num_key_value_heads", 4),
            ..base.dims
        },
        position_table: PositionTable::Absent,
        feed_forward: FeedForward::Gated { activated: Half::First },
        act: HiddenAct::Silu,
        norm: Norm {
            kind: NormKind::Rms,
            placement: Placement::Pre {
                first_attention_unnormed: false,
            },
            eps: 1e-6,
        },
        biases: Biases {
            attention: false,
            attention_output: false,
            up: false,
            down: false,
        },
        scales: tessera_encoder::Scales::NONE,

        adapters: None,
        layer_attention: vec![
            LayerAttention {
                mask: Mask::Causal,
                rope: Some(Rope::plain(1e6, 32)),
            };
            6
        ],
        ..base
    }
}

/// jina-embeddings-v3's blocks at this shape: rotary positions, no position table, five task
/// adapters of rank 4 on every weight.
fn jina_v3() -> EncoderSpec {
    let base = spec("jina-v3", JINA_V3_NAMES, Positions::Absolute, AttentionBias::None);
    EncoderSpec {
        position_table: PositionTable::Absent,
        scales: tessera_encoder::Scales::NONE,

        adapters: Some(Adapters {
            tasks: [
                "retrieval.query",
                "retrieval.passage",
                "separation",
                "classification",
                "text-matching",
            ]
            .map(String::from)
            .to_vec(),
            rank: Dim::of("lora_rank", 4),
            alpha: 1.0,
        }),
        layer_attention: vec![
            LayerAttention {
                mask: Mask::Bidirectional,
                rope: Some(Rope::plain(20_000.0, 32)),
            };
            6
        ],
        ..base
    }
}

/// nomic-embed-text-v2-moe's feed-forward in BERT's blocks of the same shape: layers 1, 3 and 5
/// route each token through the top 2 of 8 experts as wide as BERT's feed-forward, so those
/// layers' feed-forward does twice the dense work, plus the routing.
fn nomic_moe() -> EncoderSpec {
    let base = spec("nomic-moe", NOMIC_PLAIN_NAMES, Positions::Absolute, AttentionBias::None);
    EncoderSpec {
        extras: tessera_encoder::Extras {
            experts: Some(tessera_encoder::Experts {
                count: Dim::of("num_experts", 8),
                top_k: 2,
                width: base.dims.intermediate,
                every: 2,
                ..NOMIC_EXPERTS
            }),
            ..tessera_encoder::Extras::NONE
        },
        ..base
    }
}

/// Random weights for every tensor the spec expects (norm gains near 1, others small).
fn load(spec: &EncoderSpec) -> Encoder {
    let tensors: HashMap<String, Tensor> = spec
        .expected_tensors(6)
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let shape = t.shape();
            let values = tessera_core::testing::random_tensor(&shape, i as u64 + 1);
            let norm_gain = t.name.to_ascii_lowercase().contains("norm") && t.name.ends_with("weight");
            let values = if norm_gain {
                values.affine(0.1, 1.0).unwrap()
            } else {
                values.affine(0.05, 0.0).unwrap()
            };
            (t.name, values)
        })
        .collect();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    Encoder::load(&vb, spec, Arc::new(TiledCpu)).expect("loads")
}

fn main() {
    let mpnet_bias = AttentionBias::RelativeBuckets {
        tensor: "encoder.relative_attention_bias",
        buckets: Dim::of("relative_attention_num_buckets", 32),
        max_distance: 128,
    };
    let roberta = Positions::AfterPadding { padding_idx: 1 };
    let mut models: Vec<(String, Encoder, Vec<Option<usize>>)> = [
        spec("bert", BERT_NAMES, Positions::Absolute, AttentionBias::None),
        spec("roberta", BERT_NAMES, roberta, AttentionBias::None),
        spec("distilbert", DISTILBERT_NAMES, Positions::Absolute, AttentionBias::None),
        spec("mpnet", MPNET_NAMES, roberta, mpnet_bias),
        deberta(),
        modernbert(),
        qwen3(),
        nomic_moe(),
    ]
    .iter()
    .map(|s| (s.architecture.clone(), load(s), Vec::new()))
    .collect();
    let mut int8 = load(&spec("bert", BERT_NAMES, Positions::Absolute, AttentionBias::None));
    int8.quantize(tessera_core::quant::Format::Int8).expect("int8");
    models.push(("bert int8".into(), int8, Vec::new()));
    let mut bf16 = load(&spec("bert", BERT_NAMES, Positions::Absolute, AttentionBias::None));
    bf16.quantize(tessera_core::quant::Format::Bf16).expect("bf16");
    models.push(("bert bf16".into(), bf16, Vec::new()));
    // Tasks per sequence: none, all the first, or the five and none in turn.
    for (name, tasks) in [
        ("jina-v3", vec![None; 32]),
        ("jina-v3 1 task", vec![Some(0); 32]),
        ("jina-v3 mixed", (0..32).map(|i| (i % 6 < 5).then_some(i % 6)).collect()),
    ] {
        models.push((name.into(), load(&jina_v3()), tasks));
    }
    // `FAMILIES=deberta-v3,mpnet` runs only those (and BERT, the baseline).
    if let Ok(only) = std::env::var("FAMILIES") {
        let only: Vec<&str> = only.split(',').collect();
        models.retain(|(name, _, _)| name == "bert" || only.contains(&name.as_str()));
    }

    let lengths: Vec<usize> = (0..32).map(|i| 16 + (i * 37) % 241).collect();
    let tokens: usize = lengths.iter().sum();
    let seqs: Vec<(Vec<u32>, Vec<u32>)> = lengths
        .iter()
        .enumerate()
        .map(|(s, &n)| {
            let ids = (0..n).map(|i| 5 + ((s * 131 + i * 17) % 30000) as u32).collect();
            (ids, vec![0; n])
        })
        .collect();
    let batch = Batch::from_sequences(seqs.iter().map(|(i, t)| (&i[..], &t[..])));
    println!(
        "one batch of 32 inputs, {tokens} tokens (16..256 each), 6 layers x 384, tiled-cpu, threads: {}",
        candle_core::utils::get_num_threads()
    );
    let batches: Vec<Batch> = models
        .iter()
        .map(|(_, _, tasks)| batch.clone().with_tasks(tasks.clone()))
        .collect();
    for ((_, model, _), batch) in models.iter().zip(&batches) {
        model.forward(batch).expect("warm-up");
    }
    let rounds = 9;
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); models.len()];
    for round in 0..rounds {
        for k in 0..models.len() {
            let m = (k + round) % models.len();
            let started = Instant::now();
            models[m].1.forward(&batches[m]).expect("forward");
            times[m].push(started.elapsed());
        }
    }
    let medians: Vec<Duration> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect();
    for ((name, _, _), median) in models.iter().zip(&medians) {
        println!(
            "{name:>10}: {:>7.1} ms per batch, {:>6.2} us per token, {:.3}x bert",
            median.as_secs_f64() * 1e3,
            median.as_secs_f64() * 1e6 / tokens as f64,
            median.as_secs_f64() / medians[0].as_secs_f64()
        );
    }
}
