//! LayerNorm and RMSNorm over the last dimension.
//!
//! candle's CPU LayerNorm is compiled for the baseline x86-64 (SSE2) and computes the variance as
//! `E[x^2] - E[x]^2` in one f32 pass. Here each row is normalized in two passes (mean, then the
//! squared deviations) over 16 independent lanes, under `pulp`'s runtime dispatch so the loops
//! use AVX-512 or AVX2 where the CPU has them; rows are spread over the rayon pool for large batches.

use candle_core::{Module, Tensor};
use rayon::prelude::*;

use crate::simd::lane_sum_by;

/// Rows per parallel task; below about this many elements one thread is faster than waking others.
const PARALLEL_ELEMENTS: usize = 1 << 15;

/// A `nn.LayerNorm` over the last dimension (with or without a bias), or an RMSNorm (no mean
/// removed, no bias: `x / sqrt(mean(x^2) + eps) * weight`, as Llama's and Qwen's).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    candle: candle_nn::LayerNorm,
    weight: Vec<f32>,
    /// Zeros where the norm has no bias.
    bias: Vec<f32>,
    /// False for RMSNorm.
    remove_mean: bool,
    eps: f32,
}

fn to_vec(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

impl LayerNorm {
    /// From `[size]` weight and bias tensors.
    pub fn new(weight: Tensor, bias: Tensor, eps: f64) -> candle_core::Result<Self> {
        let bias_values = to_vec(&bias)?;
        Self::build(
            &weight,
            Some(bias_values),
            true,
            eps,
            candle_nn::LayerNorm::new(weight.clone(), bias, eps),
        )
    }

    /// A LayerNorm without bias (ModernBERT's, where `norm_bias` is false).
    pub fn without_bias(weight: Tensor, eps: f64) -> candle_core::Result<Self> {
        Self::build(
            &weight,
            None,
            true,
            eps,
            candle_nn::LayerNorm::new_no_bias(weight.clone(), eps),
        )
    }

    /// An RMSNorm from its `[size]` weight.
    pub fn rms(weight: Tensor, eps: f64) -> candle_core::Result<Self> {
        Self::build(
            &weight,
            None,
            false,
            eps,
            candle_nn::LayerNorm::rms_norm(weight.clone(), eps),
        )
    }

    fn build(
        weight: &Tensor,
        bias: Option<Vec<f32>>,
        remove_mean: bool,
        eps: f64,
        candle: candle_nn::LayerNorm,
    ) -> candle_core::Result<Self> {
        let weight = to_vec(weight)?;
        Ok(Self {
            bias: bias.unwrap_or_else(|| vec![0.0; weight.len()]),
            weight,
            remove_mean,
            eps: eps as f32,
            candle,
        })
    }

    /// The fast path: a contiguous f32 CPU tensor whose last dimension is the norm's size.
    fn forward_rows(&self, x: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let size = self.weight.len();
        if x.dims().last() != Some(&size) || size == 0 {
            return Ok(None);
        }
        let (storage, layout) = x.storage_and_layout();
        let (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)), Some((start, end))) =
            (&*storage, layout.contiguous_offsets())
        else {
            return Ok(None);
        };
        let input = &data[start..end];
        let mut output = vec![0f32; input.len()];
        let rows_per_task = (PARALLEL_ELEMENTS / size).max(1);
        let arch = pulp::Arch::new();
        let normalize = |(output, input): (&mut [f32], &[f32])| {
            arch.dispatch(NormalizeRows {
                norm: self,
                input,
                output,
            })
        };
        if input.len() <= PARALLEL_ELEMENTS {
            normalize((&mut output, input));
        } else {
            output
                .par_chunks_mut(rows_per_task * size)
                .zip(input.par_chunks(rows_per_task * size))
                .for_each(normalize);
        }
        drop(storage);
        Tensor::from_vec(output, x.shape(), x.device()).map(Some)
    }

    #[inline(always)]
    fn normalize_row(&self, row: &[f32], out: &mut [f32]) {
        let n = row.len() as f32;
        let mean = if self.remove_mean {
            lane_sum_by(row, |v| v) / n
        } else {
            0.0
        };
        let variance = lane_sum_by(row, |v| (v - mean) * (v - mean)) / n;
        let inverse = 1.0 / (variance + self.eps).sqrt();
        for (((o, v), w), b) in out.iter_mut().zip(row).zip(&self.weight).zip(&self.bias) {
            *o = (v - mean) * inverse * w + b;
        }
    }
}

/// Rows of one task as a `pulp` operation (a struct with an `#[inline(always)]` method, so the
/// whole loop is compiled for the detected instruction set; a closure may stay out of line).
struct NormalizeRows<'a> {
    norm: &'a LayerNorm,
    input: &'a [f32],
    output: &'a mut [f32],
}

impl pulp::WithSimd for NormalizeRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let size = self.norm.weight.len();
        for (o, i) in self.output.chunks_exact_mut(size).zip(self.input.chunks_exact(size)) {
            self.norm.normalize_row(i, o);
        }
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.forward_rows(x)? {
            Some(y) => Ok(y),
            None => self.candle.forward(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_an_f64_reference_and_takes_the_fast_path() {
        let (rows, size) = (300, 384);
        let x: Vec<f32> = (0..rows * size)
            .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 3.0)
            .collect();
        let weight: Vec<f32> = (0..size).map(|i| 0.5 + (i % 7) as f32 / 10.0).collect();
        let bias: Vec<f32> = (0..size).map(|i| (i % 5) as f32 / 10.0 - 0.2).collect();
        let dev = Device::Cpu;
        let norm = LayerNorm::new(
            Tensor::new(weight.as_slice(), &dev).unwrap(),
            Tensor::new(bias.as_slice(), &dev).unwrap(),
            1e-12,
        )
        .unwrap();
        let input = Tensor::from_vec(x.clone(), (rows, size), &dev).unwrap();
        let fast = norm
            .forward_rows(&input)
            .unwrap()
            .expect("contiguous f32 takes the fast path");
        assert_eq!(
            norm.forward(&input).unwrap().to_vec2::<f32>().unwrap(),
            fast.to_vec2::<f32>().unwrap()
        );
        let got = fast.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut worst = 0f64;
        for r in 0..rows {
            let row: Vec<f64> = x[r * size..(r + 1) * size].iter().map(|&v| f64::from(v)).collect();
            let mean = row.iter().sum::<f64>() / size as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / size as f64;
            for (c, v) in row.iter().enumerate() {
                let want = (v - mean) / (var + 1e-12).sqrt() * f64::from(weight[c]) + f64::from(bias[c]);
                worst = worst.max((f64::from(got[r * size + c]) - want).abs());
            }
        }
        assert!(worst < 2e-5, "{worst}");
        // A strided input goes through candle's and agrees.
        let t = input.t().unwrap().contiguous().unwrap().t().unwrap();
        let strided = norm.forward(&t).unwrap().to_vec2::<f32>().unwrap();
        let diff = strided
            .iter()
            .flatten()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn rms_and_bias_free_norms_match_their_definitions() {
        let (rows, size) = (40, 96);
        let x: Vec<f32> = (0..rows * size)
            .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 3.0)
            .collect();
        let weight: Vec<f32> = (0..size).map(|i| 0.5 + (i % 7) as f32 / 10.0).collect();
        let dev = Device::Cpu;
        let input = Tensor::from_vec(x.clone(), (rows, size), &dev).unwrap();
        let w = Tensor::new(weight.as_slice(), &dev).unwrap();
        for (norm, remove_mean) in [
            (LayerNorm::rms(w.clone(), 1e-6).unwrap(), false),
            (LayerNorm::without_bias(w.clone(), 1e-6).unwrap(), true),
        ] {
            let got = norm
                .forward(&input)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for r in 0..rows {
                let row: Vec<f64> = x[r * size..(r + 1) * size].iter().map(|&v| f64::from(v)).collect();
                let mean = if remove_mean {
                    row.iter().sum::<f64>() / size as f64
                } else {
                    0.0
                };
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / size as f64;
                for (c, v) in row.iter().enumerate() {
                    let want = (v - mean) / (var + 1e-6).sqrt() * f64::from(weight[c]);
                    let d = (f64::from(got[r * size + c]) - want).abs();
                    assert!(d < 2e-5, "remove_mean {remove_mean}: {d}");
                }
            }
            // candle's (the strided fallback) agrees.
            let t = input.t().unwrap().contiguous().unwrap().t().unwrap();
            let strided = norm
                .forward(&t)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let diff = strided
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-4, "remove_mean {remove_mean}: {diff}");
        }
    }
}
