//! Rotary position embeddings (RoPE) in the rotate-half layout that Llama, Qwen, ModernBERT,
//! NomicBERT and GTE share: within the rotated width `r` of each head (the whole head, or its
//! first part), the first half pairs with the second, pair `i` turning by `position * inv_freq_i`
//! with `inv_freq_i = theta^(-2i / r)`; the rest of the head passes unrotated. A position scheme
//! of the shared blocks: the model builds the tables once per batch (each token's position
//! restarts at 0 in its sequence) and every layer with that [`Rope`] applies them to its queries
//! and keys before attention.
//!
//! The frequencies and angles are computed in f32 as transformers computes them (`1 / base **
//! (arange(0, r, 2) / r)`, then `position * inv_freq`): the same products taken in f64 moved
//! outputs by up to 3e-4 near position 8191 (`reference/rotary/golden.json`), past the parity
//! tolerance.

use std::borrow::Cow;

use candle_core::{Device, Tensor};

use crate::batch::SeqOffsets;

/// One rotary scheme: base, rotated width and scaling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    /// The base (`rope_theta`, `rotary_emb_base`).
    pub theta: f64,
    /// How many leading dimensions of each head rotate (even; the head size unless the model
    /// rotates only a fraction, NomicBERT's `rotary_emb_fraction`).
    pub rotated: usize,
    /// How the frequencies stretch for long inputs.
    pub scaling: Scaling,
}

impl Rope {
    /// Plain RoPE over `rotated` dimensions with base `theta`.
    pub fn plain(theta: f64, rotated: usize) -> Self {
        Self {
            theta,
            rotated,
            scaling: Scaling::None,
        }
    }
}

/// How a RoPE's frequencies change to reach beyond the trained length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scaling {
    /// Plain RoPE.
    None,
    /// GTE's fixed NTK scaling (`rope_scaling: {type: ntk}`), the same at every length. Without
    /// `mixed_b`: base `theta * factor` and every frequency divided by `factor^(2 / r)`; with
    /// it, frequency `i` (from 1) divided by `exp(ln(factor) / (r / 2)^b * i^b)` instead.
    FixedNtk {
        /// `factor` (at most 1: no scaling).
        factor: f64,
        /// `mixed_b`.
        mixed_b: Option<f64>,
    },
    /// Dynamic NTK (NomicBERT's `rotary_scaling_factor`, transformers' `rope_type: dynamic`): a
    /// sequence of `len` tokens beyond `trained` uses the base
    /// `theta * (factor * len / trained - (factor - 1))^(r / (r - 2))`. Applied per sequence, from
    /// its own length: the references take the padded length of the batch, so there a text's
    /// vector depends on its neighbours; here it is the vector the text gets alone.
    DynamicNtk {
        /// `factor`.
        factor: f64,
        /// The trained length (`max_trained_positions`, `max_position_embeddings`).
        trained: usize,
    },
    /// Position interpolation (`rope_type: linear`): every frequency divided by `factor`.
    Linear {
        /// `factor`.
        factor: f64,
    },
    /// Llama 3.1's (`rope_type: llama3`): frequencies whose wavelength exceeds
    /// `original / low_freq_factor` divided by `factor`, those under `original / high_freq_factor`
    /// kept, the ones between blended by where the wavelength falls.
    Llama3 {
        /// `factor`.
        factor: f64,
        /// `low_freq_factor`.
        low_freq_factor: f64,
        /// `high_freq_factor`.
        high_freq_factor: f64,
        /// `original_max_position_embeddings`.
        original: usize,
    },
}

/// A [`Rope`]'s frequencies, ready to build tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotary {
    rope: Rope,
    /// The frequencies of inputs within the trained length (all of them unless dynamic).
    inv_freq: Vec<f32>,
}

/// `1 / base^(i / rotated)` for even `i < rotated`, in f32 as torch computes it.
fn inv_freq(base: f64, rotated: usize) -> Vec<f32> {
    let base = base as f32;
    (0..rotated)
        .step_by(2)
        .map(|i| 1.0 / base.powf(i as f32 / rotated as f32))
        .collect()
}

/// Llama 3.1's frequency blend, in f32 as transformers' `_compute_llama3_parameters` runs it.
fn llama3(inv_freq: &[f32], factor: f64, low: f64, high: f64, original: usize) -> Vec<f32> {
    let (factor, low, high, original) = (factor as f32, low as f32, high as f32, original as f32);
    let (low_freq_wavelen, high_freq_wavelen) = (original / low, original / high);
    inv_freq
        .iter()
        .map(|&f| {
            let wavelen = 2.0 * std::f32::consts::PI / f;
            if wavelen > low_freq_wavelen {
                f / factor
            } else if wavelen < high_freq_wavelen {
                f
            } else {
                let smooth = (original / wavelen - low) / (high - low);
                (1.0 - smooth) * f / factor + smooth * f
            }
        })
        .collect()
}

impl Rotary {
    /// The frequencies of `rope`. Errors name what is wrong, for the model's loader to report
    /// with the config key.
    pub fn new(rope: Rope) -> Result<Self, String> {
        let Rope {
            theta,
            rotated,
            scaling,
        } = rope;
        if rotated == 0 || !rotated.is_multiple_of(2) {
            return Err(format!("rotary embeddings need an even rotated width, not {rotated}"));
        }
        if !(theta.is_finite() && theta > 1.0) {
            return Err(format!("a rotary base must be a finite number above 1, not {theta}"));
        }
        let inv_freq = match scaling {
            Scaling::None => inv_freq(theta, rotated),
            Scaling::FixedNtk { factor, mixed_b } => {
                if !(factor.is_finite() && factor > 0.0) {
                    return Err(format!("an NTK scaling factor must be a positive number, not {factor}"));
                }
                match (factor > 1.0, mixed_b) {
                    (false, _) => inv_freq(theta, rotated),
                    (true, None) => {
                        let shrink = factor.powf(2.0 / rotated as f64) as f32;
                        inv_freq(theta * factor, rotated)
                            .into_iter()
                            .map(|f| f / shrink)
                            .collect()
                    }
                    (true, Some(b)) => {
                        let a = (factor as f32).ln() / ((rotated / 2) as f64).powf(b) as f32;
                        inv_freq(theta, rotated)
                            .into_iter()
                            .enumerate()
                            .map(|(i, f)| f / (a * ((i + 1) as f32).powf(b as f32)).exp())
                            .collect()
                    }
                }
            }
            Scaling::DynamicNtk { factor, trained } => {
                if !(factor.is_finite() && factor >= 1.0) || trained == 0 || rotated <= 2 {
                    return Err(format!(
                        "dynamic NTK scaling needs a factor of at least 1 and a trained length, not {factor} and {trained} (rotating {rotated} dimensions)"
                    ));
                }
                inv_freq(theta, rotated)
            }
            Scaling::Linear { factor } => {
                if !(factor.is_finite() && factor > 0.0) {
                    return Err(format!(
                        "a linear scaling factor must be a positive number, not {factor}"
                    ));
                }
                let factor = factor as f32;
                inv_freq(theta, rotated).into_iter().map(|f| f / factor).collect()
            }
            Scaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original,
            } => {
                if !(factor.is_finite() && factor > 0.0 && low_freq_factor > 0.0 && high_freq_factor > low_freq_factor)
                    || original == 0
                {
                    return Err(format!(
                        "llama3 scaling needs a positive factor, 0 < low_freq_factor < high_freq_factor and an original length, not {factor}, {low_freq_factor}, {high_freq_factor} and {original}"
                    ));
                }
                llama3(
                    &inv_freq(theta, rotated),
                    factor,
                    low_freq_factor,
                    high_freq_factor,
                    original,
                )
            }
        };
        Ok(Self { rope, inv_freq })
    }

    /// The scheme it was built from.
    pub fn rope(&self) -> Rope {
        self.rope
    }

    /// The frequencies for a sequence of `len` tokens.
    fn inv_freq_for(&self, len: usize) -> Cow<'_, [f32]> {
        match self.rope.scaling {
            Scaling::DynamicNtk { factor, trained } if len > trained => {
                let r = self.rope.rotated as f64;
                let stretch = factor * len as f64 / trained as f64 - (factor - 1.0);
                Cow::Owned(inv_freq(
                    self.rope.theta * stretch.powf(r / (r - 2.0)),
                    self.rope.rotated,
                ))
            }
            _ => Cow::Borrowed(&self.inv_freq),
        }
    }

    /// cos and sin of every token's angles, `[total_tokens, rotated / 2]`, for the positions
    /// `0..len` of each sequence of `seqs`.
    pub fn tables(&self, seqs: &SeqOffsets, device: &Device) -> candle_core::Result<RotaryTables> {
        let half = self.inv_freq.len();
        let total = seqs.total_tokens();
        let (mut cos, mut sin) = (Vec::with_capacity(total * half), Vec::with_capacity(total * half));
        for range in seqs.ranges() {
            let inv_freq = self.inv_freq_for(range.len());
            for position in 0..range.len() {
                for freq in inv_freq.iter() {
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
    /// halves of the rotated width; dimensions past it are kept.
    pub fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (total, _, head_dim) = x.dims3()?;
        let (rows, half) = self.cos.dims2()?;
        let rotated = 2 * half;
        if rows != total || rotated > head_dim {
            candle_core::bail!(
                "rotary tables for {rows} tokens rotating {rotated} dimensions applied to {:?}",
                x.dims()
            );
        }
        let dtype = x.dtype();
        let (cos, sin) = (self.cos.to_dtype(dtype)?, self.sin.to_dtype(dtype)?);
        // candle's kernel reads [batch, tokens, heads, rotated]: the packed batch is one row.
        let rope = |x: &Tensor| candle_nn::rotary_emb::rope_thd(&x.unsqueeze(0)?.contiguous()?, &cos, &sin)?.squeeze(0);
        if rotated == head_dim {
            return rope(x);
        }
        let turned = rope(&x.narrow(2, 0, rotated)?)?;
        Tensor::cat(&[&turned, &x.narrow(2, rotated, head_dim - rotated)?], 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_and_llama3_scaling_change_the_frequencies_as_transformers_does() {
        let plain = Rotary::new(Rope::plain(500000.0, 16)).unwrap().inv_freq;
        let linear = Rotary::new(Rope {
            scaling: Scaling::Linear { factor: 4.0 },
            ..Rope::plain(500000.0, 16)
        })
        .unwrap()
        .inv_freq;
        for (p, l) in plain.iter().zip(&linear) {
            assert_eq!(*l, p / 4.0);
        }
        let scaled = Rotary::new(Rope {
            scaling: Scaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original: 64,
            },
            ..Rope::plain(500000.0, 16)
        })
        .unwrap()
        .inv_freq;
        // Wavelengths under 64 / 4 kept, over 64 / 1 divided by 8, the ones between blended.
        for (p, s) in plain.iter().zip(&scaled) {
            let wavelen = 2.0 * std::f32::consts::PI / p;
            match wavelen {
                w if w < 16.0 => assert_eq!(s, p),
                w if w > 64.0 => assert_eq!(*s, p / 8.0),
                _ => assert!(*s < *p && *s > p / 8.0, "{s} not between {p} and {}", p / 8.0),
            }
        }
        assert!(plain
            .iter()
            .any(|p| (16.0..=64.0).contains(&(2.0 * std::f32::consts::PI / p))));
    }

    fn plain(rotated: usize, theta: f64) -> Rope {
        Rope::plain(theta, rotated)
    }

    fn close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() <= 1e-6 * w.abs(), "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn ntk_frequencies_follow_the_reference_formulas() {
        // GTE's fixed NTK, factor 2 over 4 rotated dimensions: base 2e4, every frequency / 2^(1/2).
        let fixed = |mixed_b| {
            Rotary::new(Rope {
                scaling: Scaling::FixedNtk { factor: 2.0, mixed_b },
                ..plain(4, 1e4)
            })
            .unwrap()
        };
        let s = 2f64.sqrt();
        close(&fixed(None).inv_freq, &[1.0 / s, 1.0 / 2e4f64.sqrt() / s]);
        // With mixed_b = 2: frequency i (from 1) / exp(ln 2 / 2^2 * i^2).
        let a = 2f64.ln() / 4.0;
        close(&fixed(Some(2.0)).inv_freq, &[1.0 / a.exp(), 0.01 / (4.0 * a).exp()]);
        // No stretch at or below 1.
        let unit = Rope {
            scaling: Scaling::FixedNtk {
                factor: 1.0,
                mixed_b: None,
            },
            ..plain(4, 1e4)
        };
        close(&Rotary::new(unit).unwrap().inv_freq, &[1.0, 0.01]);
        // Dynamic NTK: unchanged up to the trained length, then base 1e4 * (2 * 24 / 16 - 1)^(4 / 2).
        let dynamic = Rotary::new(Rope {
            scaling: Scaling::DynamicNtk {
                factor: 2.0,
                trained: 16,
            },
            ..plain(4, 1e4)
        })
        .unwrap();
        close(&dynamic.inv_freq_for(16), &[1.0, 0.01]);
        close(&dynamic.inv_freq_for(24), &[1.0, 1.0 / (1e4f64 * 4.0).sqrt()]);
    }

    #[test]
    fn a_partial_rotation_keeps_the_rest_of_the_head_and_sequences_scale_alone() {
        let seqs = SeqOffsets::from_lengths([3, 20]);
        let x = crate::testing::random_tensor(&[23, 2, 8], 5);
        let part = Rotary::new(plain(4, 1e4)).unwrap().tables(&seqs, &Device::Cpu).unwrap();
        let y = part.apply(&x).unwrap();
        let whole = Rotary::new(plain(4, 1e4)).unwrap().tables(&seqs, &Device::Cpu).unwrap();
        let first = whole.apply(&x.narrow(2, 0, 4).unwrap().contiguous().unwrap()).unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!(diff(&y.narrow(2, 4, 4).unwrap(), &x.narrow(2, 4, 4).unwrap()), 0.0);
        assert!(diff(&y.narrow(2, 0, 4).unwrap(), &first) < 1e-6);
        assert!(diff(&y.narrow(2, 0, 4).unwrap(), &x.narrow(2, 0, 4).unwrap()) > 1e-2);
        // Dynamic scaling beyond 16 tokens changes the 20-token sequence only.
        let dynamic = Rotary::new(Rope {
            scaling: Scaling::DynamicNtk {
                factor: 2.0,
                trained: 16,
            },
            ..plain(4, 1e4)
        })
        .unwrap()
        .tables(&seqs, &Device::Cpu)
        .unwrap()
        .apply(&x)
        .unwrap();
        assert_eq!(
            diff(&dynamic.narrow(0, 0, 3).unwrap(), &y.narrow(0, 0, 3).unwrap()),
            0.0
        );
        assert!(diff(&dynamic.narrow(0, 3, 20).unwrap(), &y.narrow(0, 3, 20).unwrap()) > 1e-3);
    }

    #[test]
    fn refuses_odd_heads_and_bases_that_do_not_rotate() {
        assert!(Rotary::new(plain(7, 10000.0))
            .unwrap_err()
            .contains("even rotated width"));
        assert!(Rotary::new(plain(0, 10000.0)).is_err());
        for theta in [0.0, 1.0, -5.0, f64::NAN, f64::INFINITY] {
            assert!(
                Rotary::new(plain(8, theta)).unwrap_err().contains("rotary base"),
                "{theta}"
            );
        }
        let dynamic = |factor, trained| Rope {
            scaling: Scaling::DynamicNtk { factor, trained },
            ..plain(8, 1e4)
        };
        assert!(Rotary::new(dynamic(0.5, 16)).is_err());
        assert!(Rotary::new(dynamic(2.0, 0)).is_err());
        let fixed = Rope {
            scaling: Scaling::FixedNtk {
                factor: -1.0,
                mixed_b: None,
            },
            ..plain(8, 1e4)
        };
        assert!(Rotary::new(fixed).is_err());
    }

    #[test]
    fn tables_for_another_batch_are_refused() {
        let rotary = Rotary::new(plain(8, 10000.0)).unwrap();
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
            let rotary = Rotary::new(plain(head_dim, case["theta"].as_f64().unwrap())).unwrap();
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
        let rotary = Rotary::new(plain(8, 10000.0)).unwrap();
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
