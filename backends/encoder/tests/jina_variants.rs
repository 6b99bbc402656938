//! The variants the shared goldens do not cover (reglu, original FFN, code variant, 12 and 6
//! heads, `bert.` prefix), on tiny random checkpoints built here, checked against a
//! straightforward float64 reference written with explicit loops over heads and positions, so a
//! mistake in the fast path cannot hide in both.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde_json::json;
use tessera_core::testing::assert_close;
use tessera_core::{Assessment, BackendFactory, Batch, LoadRequest};
use tessera_encoder::{alibi_slopes, JINA_BERT};

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Geglu,
    Reglu,
    Original,
    Code,
}

#[derive(Clone, Copy)]
struct Shape {
    hidden: usize,
    heads: usize,
    inter: usize,
    layers: usize,
    vocab: usize,
}

type Weights = HashMap<String, (Vec<usize>, Vec<f32>)>;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    }

    fn tensor(&mut self, shape: &[usize], scale: f32, offset: f32) -> (Vec<usize>, Vec<f32>) {
        let n = shape.iter().product();
        (shape.to_vec(), (0..n).map(|_| offset + scale * self.next()).collect())
    }
}

fn checkpoint(variant: Variant, s: Shape, seed: u64) -> Weights {
    let mut rng = Rng(seed);
    let mut w = Weights::new();
    let (h, i) = (s.hidden, s.inter);
    let mut put = |name: String, t: (Vec<usize>, Vec<f32>)| {
        w.insert(name, t);
    };
    put(
        "embeddings.word_embeddings.weight".into(),
        rng.tensor(&[s.vocab, h], 0.5, 0.0),
    );
    put(
        "embeddings.token_type_embeddings.weight".into(),
        rng.tensor(&[2, h], 0.5, 0.0),
    );
    put("embeddings.LayerNorm.weight".into(), rng.tensor(&[h], 0.1, 1.0));
    put("embeddings.LayerNorm.bias".into(), rng.tensor(&[h], 0.1, 0.0));
    for l in 0..s.layers {
        let p = format!("encoder.layer.{l}.");
        for name in ["query", "key", "value"] {
            put(
                format!("{p}attention.self.{name}.weight"),
                rng.tensor(&[h, h], 0.4, 0.0),
            );
            put(format!("{p}attention.self.{name}.bias"), rng.tensor(&[h], 0.1, 0.0));
        }
        put(
            format!("{p}attention.output.dense.weight"),
            rng.tensor(&[h, h], 0.3, 0.0),
        );
        put(format!("{p}attention.output.dense.bias"), rng.tensor(&[h], 0.1, 0.0));
        let mut norm = |name: String, rng: &mut Rng| {
            put(format!("{name}.weight"), rng.tensor(&[h], 0.1, 1.0));
            put(format!("{name}.bias"), rng.tensor(&[h], 0.1, 0.0));
        };
        norm(format!("{p}attention.output.LayerNorm"), &mut rng);
        match variant {
            Variant::Geglu | Variant::Reglu => {
                norm(format!("{p}mlp.layernorm"), &mut rng);
                put(format!("{p}mlp.gated_layers.weight"), rng.tensor(&[2 * i, h], 0.3, 0.0));
                put(format!("{p}mlp.wo.weight"), rng.tensor(&[h, i], 0.3, 0.0));
                put(format!("{p}mlp.wo.bias"), rng.tensor(&[h], 0.1, 0.0));
            }
            Variant::Original => {
                norm(format!("{p}output.LayerNorm"), &mut rng);
                put(format!("{p}intermediate.dense.weight"), rng.tensor(&[i, h], 0.3, 0.0));
                put(format!("{p}intermediate.dense.bias"), rng.tensor(&[i], 0.1, 0.0));
                put(format!("{p}output.dense.weight"), rng.tensor(&[h, i], 0.3, 0.0));
                put(format!("{p}output.dense.bias"), rng.tensor(&[h], 0.1, 0.0));
            }
            Variant::Code => {
                norm(format!("{p}attention.self.layer_norm_q"), &mut rng);
                norm(format!("{p}attention.self.layer_norm_k"), &mut rng);
                norm(format!("{p}layer_norm_1"), &mut rng);
                norm(format!("{p}layer_norm_2"), &mut rng);
                put(
                    format!("{p}mlp.up_gated_layer.weight"),
                    rng.tensor(&[2 * i, h], 0.3, 0.0),
                );
                put(format!("{p}mlp.down_layer.weight"), rng.tensor(&[h, i], 0.3, 0.0));
                put(format!("{p}mlp.down_layer.bias"), rng.tensor(&[h], 0.1, 0.0));
            }
        }
    }
    w
}

fn config(variant: Variant, s: Shape, name: &str) -> serde_json::Value {
    let feed_forward_type = match variant {
        Variant::Geglu | Variant::Code => "geglu",
        Variant::Reglu => "reglu",
        Variant::Original => "original",
    };
    json!({
        "_name_or_path": name, "model_type": "bert", "position_embedding_type": "alibi",
        "feed_forward_type": feed_forward_type, "hidden_act": "gelu",
        "hidden_size": s.hidden, "num_attention_heads": s.heads, "intermediate_size": s.inter,
        "num_hidden_layers": s.layers, "vocab_size": s.vocab, "type_vocab_size": 2,
        "max_position_embeddings": 8192, "layer_norm_eps": 1e-12
    })
}

fn write_model(dir: &Path, config: &serde_json::Value, weights: &Weights, prefix: &str, extra: &[(&str, Vec<usize>)]) {
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut tensors = HashMap::new();
    for (name, (shape, data)) in weights {
        let t = Tensor::from_vec(data.clone(), shape.as_slice(), &Device::Cpu).unwrap();
        tensors.insert(format!("{prefix}{name}"), t);
    }
    for (name, shape) in extra {
        let n: usize = shape.iter().product();
        tensors.insert(
            name.to_string(),
            Tensor::from_vec(vec![0.5f32; n], shape.as_slice(), &Device::Cpu).unwrap(),
        );
    }
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
}

// ---------- the float64 reference ----------

fn erf(x: f64) -> f64 {
    // Maclaurin series where it is exact in f64, the asymptotic erfc expansion beyond.
    if x.abs() < 3.0 {
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let z = x.abs();
        let mut series = 1.0;
        let mut term = 1.0;
        for n in 1..8 {
            term *= -((2 * n - 1) as f64) / (2.0 * z * z);
            series += term;
        }
        let erfc = (-z * z).exp() / (z * std::f64::consts::PI.sqrt()) * series;
        x.signum() * (1.0 - erfc)
    }
}

fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

fn relu(x: f64) -> f64 {
    x.max(0.0)
}

struct Ref<'a> {
    w: &'a Weights,
}

impl Ref<'_> {
    fn t(&self, name: &str) -> &[f32] {
        &self.w.get(name).unwrap_or_else(|| panic!("no {name}")).1
    }

    fn linear(&self, name: &str, x: &[f64], bias: bool) -> Vec<f64> {
        let (shape, w) = &self.w[&format!("{name}.weight")];
        let (out, inp) = (shape[0], shape[1]);
        let b = bias.then(|| self.t(&format!("{name}.bias")));
        (0..out)
            .map(|o| {
                let dot: f64 = (0..inp).map(|c| f64::from(w[o * inp + c]) * x[c]).sum();
                dot + b.map(|b| f64::from(b[o])).unwrap_or(0.0)
            })
            .collect()
    }

    fn layer_norm(&self, name: &str, x: &[f64]) -> Vec<f64> {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let (w, b) = (self.t(&format!("{name}.weight")), self.t(&format!("{name}.bias")));
        x.iter()
            .enumerate()
            .map(|(i, v)| (v - mean) / (var + 1e-12).sqrt() * f64::from(w[i]) + f64::from(b[i]))
            .collect()
    }

    /// One sequence through the whole encoder.
    fn forward(&self, variant: Variant, s: Shape, ids: &[u32]) -> Vec<Vec<f64>> {
        let (h, d) = (s.hidden, s.hidden / s.heads);
        let slopes = alibi_slopes(s.heads);
        let word = self.t("embeddings.word_embeddings.weight");
        let types = self.t("embeddings.token_type_embeddings.weight");
        let mut x: Vec<Vec<f64>> = ids
            .iter()
            .map(|&id| {
                let e: Vec<f64> = (0..h)
                    .map(|c| f64::from(word[id as usize * h + c]) + f64::from(types[c]))
                    .collect();
                self.layer_norm("embeddings.LayerNorm", &e)
            })
            .collect();
        let n = ids.len();
        for l in 0..s.layers {
            let p = format!("encoder.layer.{l}.");
            let mut q: Vec<Vec<f64>> = x
                .iter()
                .map(|t| self.linear(&format!("{p}attention.self.query"), t, true))
                .collect();
            let mut k: Vec<Vec<f64>> = x
                .iter()
                .map(|t| self.linear(&format!("{p}attention.self.key"), t, true))
                .collect();
            let v: Vec<Vec<f64>> = x
                .iter()
                .map(|t| self.linear(&format!("{p}attention.self.value"), t, true))
                .collect();
            if variant == Variant::Code {
                q = q
                    .iter()
                    .map(|t| self.layer_norm(&format!("{p}attention.self.layer_norm_q"), t))
                    .collect();
                k = k
                    .iter()
                    .map(|t| self.layer_norm(&format!("{p}attention.self.layer_norm_k"), t))
                    .collect();
            }
            let mut ctx = vec![vec![0f64; h]; n];
            for head in 0..s.heads {
                for i in 0..n {
                    let mut scores: Vec<f64> = (0..n)
                        .map(|j| {
                            let dot: f64 = (0..d).map(|c| q[i][head * d + c] * k[j][head * d + c]).sum();
                            dot / (d as f64).sqrt() - f64::from(slopes[head]) * (i as f64 - j as f64).abs()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    scores.iter_mut().for_each(|s| *s = (*s - max).exp());
                    let sum: f64 = scores.iter().sum();
                    for j in 0..n {
                        for c in 0..d {
                            ctx[i][head * d + c] += scores[j] / sum * v[j][head * d + c];
                        }
                    }
                }
            }
            let attended: Vec<Vec<f64>> = (0..n)
                .map(|i| {
                    let o = self.linear(&format!("{p}attention.output.dense"), &ctx[i], true);
                    let r: Vec<f64> = o.iter().zip(&x[i]).map(|(a, b)| a + b).collect();
                    self.layer_norm(&format!("{p}attention.output.LayerNorm"), &r)
                })
                .collect();
            x = (0..n)
                .map(|t| {
                    let a = &attended[t];
                    let inter = s.inter;
                    match variant {
                        Variant::Geglu | Variant::Reglu => {
                            let g = self.linear(&format!("{p}mlp.gated_layers"), a, false);
                            let act = if variant == Variant::Geglu { gelu } else { relu };
                            let hh: Vec<f64> = (0..inter).map(|c| act(g[c]) * g[inter + c]).collect();
                            let o = self.linear(&format!("{p}mlp.wo"), &hh, true);
                            let r: Vec<f64> = o.iter().zip(a).map(|(a, b)| a + b).collect();
                            self.layer_norm(&format!("{p}mlp.layernorm"), &r)
                        }
                        Variant::Original => {
                            let hh: Vec<f64> = self
                                .linear(&format!("{p}intermediate.dense"), a, true)
                                .into_iter()
                                .map(gelu)
                                .collect();
                            let o = self.linear(&format!("{p}output.dense"), &hh, true);
                            let r: Vec<f64> = o.iter().zip(a).map(|(a, b)| a + b).collect();
                            self.layer_norm(&format!("{p}output.LayerNorm"), &r)
                        }
                        Variant::Code => {
                            let r: Vec<f64> = x[t].iter().zip(a).map(|(a, b)| a + b).collect();
                            let h1 = self.layer_norm(&format!("{p}layer_norm_1"), &r);
                            let g = self.linear(&format!("{p}mlp.up_gated_layer"), &h1, false);
                            let hh: Vec<f64> = (0..inter).map(|c| g[c] * gelu(g[inter + c])).collect();
                            let o = self.linear(&format!("{p}mlp.down_layer"), &hh, true);
                            let r: Vec<f64> = o.iter().zip(&h1).map(|(a, b)| a + b).collect();
                            self.layer_norm(&format!("{p}layer_norm_2"), &r)
                        }
                    }
                })
                .collect();
        }
        x
    }
}

// ---------- the checks ----------

fn sequences(vocab: usize) -> Vec<Vec<u32>> {
    let mut rng = Rng(99);
    [1usize, 3, 9, 17]
        .iter()
        .map(|&len| {
            (0..len)
                .map(|_| ((rng.next() + 1.0) * 0.5 * (vocab - 1) as f32) as u32)
                .collect()
        })
        .collect()
}

fn check(variant: Variant, s: Shape, prefix: &str) {
    let weights = checkpoint(variant, s, 7 + s.heads as u64);
    let dir = tempfile::tempdir().unwrap();
    let extra: Vec<(&str, Vec<usize>)> = if prefix.is_empty() {
        vec![]
    } else {
        vec![
            ("cls.predictions.bias", vec![s.vocab]),
            ("bert.pooler.dense.weight", vec![s.hidden, s.hidden]),
        ]
    };
    write_model(
        dir.path(),
        &config(variant, s, "./output/checkpoint-500"),
        &weights,
        prefix,
        &extra,
    );
    let inspection = tessera_validation::inspect(dir.path());
    match JINA_BERT.assess(&inspection) {
        Assessment::Serves { .. } => {}
        Assessment::Declines { reasons } => panic!("declined: {reasons:?}"),
    }
    let request = LoadRequest {
        inspection: &inspection,
        dtype: candle_core::DType::F32,
        device: Device::Cpu,
        kernel: None,
    };
    let backend = JINA_BERT.load(&request).unwrap();

    let seqs = sequences(s.vocab);
    let types: Vec<Vec<u32>> = seqs.iter().map(|s| vec![0; s.len()]).collect();
    let batch = Batch::from_sequences(seqs.iter().zip(&types).map(|(a, b)| (&a[..], &b[..])));
    let hidden: Vec<Vec<f32>> = backend.forward(&batch).unwrap().to_vec2().unwrap();
    let reference = Ref { w: &weights };
    for (n, ids) in seqs.iter().enumerate() {
        let want = reference.forward(variant, s, ids);
        for (t, token) in want.iter().enumerate() {
            let want: Vec<f32> = token.iter().map(|v| *v as f32).collect();
            let got = &hidden[batch.seqs.range(n).start + t];
            assert_close(got, &want, &format!("sequence {n} token {t}"));
        }
    }
}

const SMALL: Shape = Shape {
    hidden: 16,
    heads: 4,
    inter: 24,
    layers: 2,
    vocab: 40,
};

#[test]
fn geglu_matches_the_reference() {
    check(Variant::Geglu, SMALL, "");
}

#[test]
fn reglu_matches_the_reference() {
    check(Variant::Reglu, SMALL, "");
}

#[test]
fn original_ffn_with_alibi_matches_the_reference() {
    check(Variant::Original, SMALL, "");
}

#[test]
fn code_variant_matches_the_reference() {
    check(Variant::Code, SMALL, "");
}

#[test]
fn twelve_and_six_heads_use_the_non_power_of_two_slopes() {
    check(
        Variant::Geglu,
        Shape {
            hidden: 24,
            heads: 12,
            inter: 16,
            layers: 1,
            vocab: 30,
        },
        "",
    );
    check(
        Variant::Code,
        Shape {
            hidden: 12,
            heads: 6,
            inter: 16,
            layers: 1,
            vocab: 30,
        },
        "",
    );
}

#[test]
fn bert_prefix_and_head_tensors_are_handled() {
    check(Variant::Geglu, SMALL, "bert.");
    check(Variant::Code, SMALL, "bert.");
}

#[test]
fn a_jina_name_on_bert_tensors_is_not_jina() {
    let dir = tempfile::tempdir().unwrap();
    let mut weights = checkpoint(Variant::Original, SMALL, 3);
    weights.insert(
        "embeddings.position_embeddings.weight".into(),
        (vec![64, SMALL.hidden], vec![0.0; 64 * SMALL.hidden]),
    );
    write_model(
        dir.path(),
        &config(Variant::Original, SMALL, "jinaai/jina-bert-implementation"),
        &weights,
        "",
        &[],
    );
    let inspection = tessera_validation::inspect(dir.path());
    match JINA_BERT.assess(&inspection) {
        Assessment::Declines { reasons } => {
            assert_eq!(reasons[0].code, "absolute-positions-not-alibi")
        }
        Assessment::Serves { .. } => panic!("a model with a position table is not ALiBi"),
    }
}
