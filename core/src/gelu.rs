//! GELU (erf form) on f32 CPU tensors.
//!
//! candle computes it with a scalar `libm::erff` per element: 59 µs on one short input's
//! [14 x 1536] intermediate, six times per MiniLM forward pass. A rational approximation of erf
//! (odd degree-13 numerator over a degree-8 denominator, on [-4, 4]; erf saturates beyond f32
//! resolution) is branch-free, so the compiler vectorizes it; its error against f64 erf is below
//! 6e-7 (a few f32 ulps), well inside the rounding of the rest of the layer. `cargo bench -p
//! tessera-flash --bench kernels`: 5 µs instead of 60 µs on that intermediate (18 µs before the loop
//! ran under runtime SIMD dispatch).

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel task; below this a single thread is faster than waking others.
const CHUNK: usize = 1 << 16;

const NUMERATOR: [f32; 7] = [
    -2.726_142_3e-10,
    2.770_681_4e-8,
    -2.101_024e-6,
    -5.692_506_6e-5,
    -7.349_906_6e-4,
    -2.954_600_2e-3,
    -1.609_603_3e-2,
];
const DENOMINATOR: [f32; 5] = [
    -1.456_607_2e-5,
    -2.133_740_6e-4,
    -1.682_827e-3,
    -7.373_329_2e-3,
    -1.426_473_9e-2,
];

#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    // Plain multiply-add: `mul_add` is a libm call unless the build targets FMA (the dispatch's
    // FMA targets fuse these where they may).
    let p = NUMERATOR[1..].iter().fold(NUMERATOR[0], |acc, c| acc * x2 + c);
    let q = DENOMINATOR[1..].iter().fold(DENOMINATOR[0], |acc, c| acc * x2 + c);
    x * p / q
}

#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Under `pulp`'s dispatch so the loop is compiled for AVX-512 or AVX2 where the CPU has them.
fn gelu_slice(input: &[f32], output: &mut [f32]) {
    pulp::Arch::new().dispatch(GeluSlice { input, output });
}

/// The loop as a `pulp` operation: a struct with an `#[inline(always)]` method is inlined into the
/// dispatched function for certain, where a closure may stay an out-of-line baseline function.
struct GeluSlice<'a> {
    input: &'a [f32],
    output: &'a mut [f32],
}

impl pulp::WithSimd for GeluSlice<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for (o, &x) in self.output.iter_mut().zip(self.input) {
            *o = gelu(x);
        }
    }
}

/// GELU in place on a slice (the packed linear layers apply it to each job's rows as they are
/// written, rather than in a pass of their own).
pub fn gelu_erf_in_place(values: &mut [f32]) {
    pulp::Arch::new().dispatch(GeluInPlace { values });
}

struct GeluInPlace<'a> {
    values: &'a mut [f32],
}

impl pulp::WithSimd for GeluInPlace<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for v in self.values.iter_mut() {
            *v = gelu(*v);
        }
    }
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("gelu-erf-f32 takes a contiguous f32 tensor");
        };
        let input = &data[start..end];
        let mut output = vec![0f32; input.len()];
        if input.len() <= CHUNK {
            gelu_slice(input, &mut output);
        } else {
            output
                .par_chunks_mut(CHUNK)
                .zip(input.par_chunks(CHUNK))
                .for_each(|(o, i)| gelu_slice(i, o));
        }
        Ok((CpuStorage::F32(output), layout.shape().clone()))
    }
}

/// `0.5 x (1 + erf(x / sqrt 2))`: the fast kernel for contiguous f32 on the CPU, candle's otherwise.
pub fn gelu_erf(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.dtype() == DType::F32 && x.device().is_cpu() && x.is_contiguous() {
        x.apply_op1_no_bwd(&GeluErf)
    } else {
        x.gelu_erf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// erf in f64 from its Maclaurin series (|x| <= 3) and continued fraction (beyond): an
    /// independent reference, not the approximation under test.
    fn erf_reference(x: f64) -> f64 {
        let sign = x.signum();
        let a = x.abs();
        if a <= 3.0 {
            let (mut term, mut sum, mut n) = (a, a, 0.0);
            while term.abs() > 1e-17 * sum.abs() {
                n += 1.0;
                term *= -a * a / n;
                sum += term / (2.0 * n + 1.0);
            }
            sign * sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(a) = exp(-a^2)/sqrt(pi) * 1/(a + 1/2/(a + 1/(a + 3/2/(a + ...))))
            let mut fraction = a;
            for k in (1..60).rev() {
                fraction = a + (k as f64 / 2.0) / fraction;
            }
            sign * (1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / fraction)
        }
    }

    #[test]
    fn erf_is_within_a_few_ulp_of_the_reference_everywhere() {
        let worst = (-80_000..=80_000)
            .map(|i| i as f64 / 10_000.0)
            .map(|x| (f64::from(erf(x as f32)) - erf_reference(x)).abs())
            .fold(0.0, f64::max);
        // 6e-7 is about ten f32 ulps near 1, where erf spends most of its range.
        assert!(worst < 6e-7, "max |erf error| = {worst:e}");
        assert_eq!(erf(f32::INFINITY), erf(4.0));
    }

    #[test]
    fn matches_candles_gelu_on_tensors_of_every_layout() {
        let x = crate::testing::random_tensor(&[3, 70_001], 5).affine(6.0, 0.0).unwrap();
        let ours: Vec<f32> = gelu_erf(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        // The fast kernel itself, so a silent fallback to candle cannot pass this test.
        let kernel: Vec<f32> = x
            .apply_op1_no_bwd(&GeluErf)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(ours, kernel, "contiguous f32 takes the fast kernel");
        let candle: Vec<f32> = x.gelu_erf().unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let worst = ours
            .iter()
            .zip(&candle)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .fold(0f32, f32::max);
        // For negative x, 1 + erf cancels and keeps erf's absolute error: at most 0.5 |x| 6e-7.
        assert!(worst < 2e-6, "largest difference {worst}");
        let strided = x.t().unwrap();
        let ours: Vec<f32> = gelu_erf(&strided).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let candle: Vec<f32> = strided.gelu_erf().unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(ours, candle, "non-contiguous input takes candle's path");
        let half = Tensor::new(&[1.0f32, -2.0], &Device::Cpu)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        assert_eq!(gelu_erf(&half).unwrap().dtype(), DType::BF16);
    }
}
