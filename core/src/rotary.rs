//! Rotary position embeddings (RoPE) in the rotate-half layout that Llama, Qwen and ModernBERT
//! share: the head's first half pairs with its second half, pair `i` turning by `position *
//! theta^(-2i / head_dim)`. A position scheme of the shared blocks: the model builds the tables
//! once per batch (each token's position restarts at 0 in its sequence) and every layer with
//! that base applies them to its queries and keys before attention.
//!
//! The frequencies and angles are computed in f32 as transformers computes them (`1 / base **
//! (arange(0, d, 2) / d)`, then `position * inv_freq`): the same products taken in f64 moved
//! outputs by up to 3e-4 near position 8191 (`reference/rotary/golden.json`), past the parity
//! tolerance.

use candle_core::{Device, Tensor};

use crate::batch::SeqOffsets;

/// The frequencies of one rotary base for one head size.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotary {
    inv_freq: Vec<f32>,
}

impl Rotary {
    /// `head_dim` (even, > 0) rotated dimensions with base `theta` (finite, > 1). Errors name
    /// what is wrong, for the model's loader to report with the config key.
    pub fn new(head_dim: usize, theta: f64) -> Result<Self, String> {
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(format!("rotary embeddings need an even head size, not {head_dim}"));
        }
        if !(theta.is_finite() && theta > 1.0) {
            return Err(format!("a rotary base must be a finite number above 1, not {theta}"));
        }
        let base = theta as f32;
        let inv_freq = (0..head_dim)
            .step_by(2)
            .map(|i| 1.0 / base.powf(i as f32 / head_dim as f32))
            .collect();
        Ok(Self { inv_freq })
    }

    /// The head size it rotates.
    pub fn head_dim(&self) -> usize {
        2 * self.inv_freq.len()
    }

    /// cos and sin of every token's angles, `[total_tokens, head_dim / 2]`, for the positions
    /// `0..len` of each sequence of `seqs`.
    pub fn tables(&self, seqs: &SeqOffsets, device: &Device) -> candle_core::Result<RotaryTables> {
        let half = self.inv_freq.len();
        let total = seqs.total_tokens();
        let (mut cos, mut sin) = (Vec::with_capacity(total * half), Vec::with_capacity(total * half));
        for range in seqs.ranges() {
            for position in 0..range.len() {
                for freq in &self.inv_freq {
                    let angle = f64::from(position as f32 * freq);
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        Ok(RotaryTables {
            cos: Tensor::from_vec(cos, (total, half), device)?,
            sin: Tensor::from_vec(sin, (total, half), device)?,
        })
    }
}

/// One batch's rotary tables ([`Rotary::tables`]).
#[derive(Debug, Clone)]
pub struct RotaryTables {
    cos: Tensor,
    sin: Tensor,
}

impl RotaryTables {
    /// Rotates `x` (`[total_tokens, heads, head_dim]`, queries or keys of the batch the tables
    /// were built for): `(x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)` with `x1`, `x2` the
    /// head's halves.
    pub fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (total, _, head_dim) = x.dims3()?;
        let (rows, half) = self.cos.dims2()?;
        if rows != total || 2 * half != head_dim {
            candle_core::bail!(
                "rotary tables for {rows} tokens of head size {} applied to {:?}",
                2 * half,
                x.dims()
            );
        }
        let dtype = x.dtype();
        let (cos, sin) = (self.cos.to_dtype(dtype)?, self.sin.to_dtype(dtype)?);
        // candle's kernel reads [batch, tokens, heads, head_dim]: the packed batch is one row.
        candle_nn::rotary_emb::rope_thd(&x.unsqueeze(0)?.contiguous()?, &cos, &sin)?.squeeze(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_odd_heads_and_bases_that_do_not_rotate() {
        assert!(Rotary::new(7, 10000.0).unwrap_err().contains("even head size"));
        assert!(Rotary::new(0, 10000.0).is_err());
        for theta in [0.0, 1.0, -5.0, f64::NAN, f64::INFINITY] {
            assert!(Rotary::new(8, theta).unwrap_err().contains("rotary base"), "{theta}");
        }
        assert_eq!(Rotary::new(8, 10000.0).unwrap().head_dim(), 8);
    }

    #[test]
    fn tables_for_another_batch_are_refused() {
        let rotary = Rotary::new(8, 10000.0).unwrap();
        let tables = rotary.tables(&SeqOffsets::from_lengths([3, 2]), &Device::Cpu).unwrap();
        let x = Tensor::zeros((4, 2, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(tables.apply(&x).unwrap_err().to_string().contains("5 tokens"));
    }

    #[test]
    fn matches_transformers_up_to_position_8191() {
        let path = crate::testing::reference_dir(env!("CARGO_MANIFEST_DIR")).join("rotary/golden.json");
        let golden: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        for case in golden["cases"].as_array().unwrap() {
            let get = |key: &str| case[key].as_u64().unwrap() as usize;
            let (head_dim, heads) = (get("head_dim"), get("heads"));
            let lengths: Vec<usize> = serde_json::from_value(case["lengths"].clone()).unwrap();
            let seqs = SeqOffsets::from_lengths(lengths.iter().copied());
            let total = seqs.total_tokens();
            // The generator's input: 2 sin(0.37 t + 1.3 h + 0.11 d), in f64, stored as f32.
            let x: Vec<f32> = (0..total * heads * head_dim)
                .map(|i| {
                    let (t, h, d) = (i / (heads * head_dim), i / head_dim % heads, i % head_dim);
                    (2.0 * (0.37 * t as f64 + 1.3 * h as f64 + 0.11 * d as f64).sin()) as f32
                })
                .collect();
            let x = Tensor::from_vec(x, (total, heads, head_dim), &Device::Cpu).unwrap();
            let rotary = Rotary::new(head_dim, case["theta"].as_f64().unwrap()).unwrap();
            let y: Vec<Vec<Vec<f32>>> = rotary
                .tables(&seqs, &Device::Cpu)
                .unwrap()
                .apply(&x)
                .unwrap()
                .to_vec3()
                .unwrap();
            let tokens: Vec<usize> = serde_json::from_value(case["tokens"].clone()).unwrap();
            let want: Vec<Vec<f32>> = serde_json::from_value(case["output"].clone()).unwrap();
            for (t, want) in tokens.iter().zip(&want) {
                for (got, want) in y[*t].iter().flatten().zip(want) {
                    assert!(
                        (got - want).abs() <= 1e-5,
                        "head size {head_dim}, token {t}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn position_zero_is_the_identity_and_norms_are_kept() {
        let rotary = Rotary::new(8, 10000.0).unwrap();
        let seqs = SeqOffsets::from_lengths([1, 6]);
        let x = crate::testing::random_tensor(&[7, 3, 8], 4);
        let y = rotary.tables(&seqs, &Device::Cpu).unwrap().apply(&x).unwrap();
        let x: Vec<Vec<Vec<f32>>> = x.to_vec3().unwrap();
        let y: Vec<Vec<Vec<f32>>> = y.to_vec3().unwrap();
        // Tokens 0 and 1 start their sequences.
        assert_eq!(x[0], y[0]);
        assert_eq!(x[1], y[1]);
        for (a, b) in x.iter().flatten().zip(y.iter().flatten()) {
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>();
            assert!((norm(a) - norm(b)).abs() < 1e-4);
        }
    }
}
