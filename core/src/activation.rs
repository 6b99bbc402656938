//! Hidden activations named in config.json, each spelled out as Hugging Face defines it.

use candle_core::{CpuStorage, Storage, Tensor};
use rayon::prelude::*;

/// Elements per parallel task; below this a single thread is faster than waking others.
const CHUNK: usize = 1 << 16;

/// A `hidden_act` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenAct {
    /// `gelu`: the exact erf form.
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`: the tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
    /// `silu` / `swish`.
    Silu,
}

const NAMES: &[(&str, HiddenAct)] = &[
    ("gelu", HiddenAct::Gelu),
    ("gelu_new", HiddenAct::GeluTanh),
    ("gelu_pytorch_tanh", HiddenAct::GeluTanh),
    ("gelu_fast", HiddenAct::GeluTanh),
    ("relu", HiddenAct::Relu),
    ("silu", HiddenAct::Silu),
    ("swish", HiddenAct::Silu),
];

impl HiddenAct {
    /// Parses a config value.
    pub fn parse(name: &str) -> Option<Self> {
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }

    /// The accepted values, for messages.
    pub fn supported_names() -> String {
        NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    }

    /// The activation on a slice in place (the packed linear layers apply it to each job's rows
    /// as they are written; a gated feed-forward to its activated half). The formulas are
    /// candle's, so either path gives the same values.
    pub fn in_place(self) -> fn(&mut [f32]) {
        match self {
            HiddenAct::Gelu => crate::gelu::gelu_erf_in_place,
            HiddenAct::GeluTanh => |values| {
                const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
                for v in values {
                    *v = 0.5 * *v * (1.0 + (SQRT_TWO_OVER_PI * *v * (1.0 + 0.044715 * *v * *v)).tanh());
                }
            },
            HiddenAct::Relu => |values| values.iter_mut().for_each(|v| *v = v.max(0.0)),
            HiddenAct::Silu => |values| values.iter_mut().for_each(|v| *v /= (-*v).exp() + 1.0),
        }
    }

    /// Applies the activation element-wise.
    pub fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            HiddenAct::Gelu => crate::gelu::gelu_erf(x),
            HiddenAct::GeluTanh => x.gelu(),
            HiddenAct::Relu => x.relu(),
            HiddenAct::Silu => x.silu(),
        }
    }

    /// A gated unit on `up` = `[a | b]` (`[rows, 2 w]`): `act(a) * b`, or with `first_activated`
    /// false `a * act(b)`; `[rows, w]`. On the CPU in float32, one pass over each row (the halves
    /// are strided views of `up`, which candle's element-wise ops would each copy first).
    pub fn gated(self, up: &Tensor, first_activated: bool) -> candle_core::Result<Tensor> {
        let (rows, double) = up.dims2()?;
        if !double.is_multiple_of(2) {
            candle_core::bail!("a gated unit of odd width {double}");
        }
        let width = double / 2;
        let (storage, layout) = up.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) = (&*storage, layout.contiguous_offsets()) {
            let input = &data[start..end];
            let mut output = vec![0f32; rows * width];
            let activate = self.in_place();
            let gate_rows = |(out, input): (&mut [f32], &[f32])| {
                for (out, row) in out.chunks_exact_mut(width).zip(input.chunks_exact(double)) {
                    let (a, b) = row.split_at(width);
                    let (activated, other) = if first_activated { (a, b) } else { (b, a) };
                    out.copy_from_slice(activated);
                    activate(out);
                    out.iter_mut().zip(other).for_each(|(o, x)| *o *= x);
                }
            };
            let rows_per_task = (CHUNK / double.max(1)).max(1);
            if rows <= rows_per_task || width == 0 {
                gate_rows((&mut output, input));
            } else {
                output
                    .par_chunks_mut(rows_per_task * width)
                    .zip(input.par_chunks(rows_per_task * double))
                    .for_each(gate_rows);
            }
            drop(storage);
            return Tensor::from_vec(output, (rows, width), up.device());
        }
        drop(storage);
        let (a, b) = (up.narrow(1, 0, width)?, up.narrow(1, width, width)?);
        match first_activated {
            true => self.apply(&a)? * b,
            false => a * self.apply(&b)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn gated_units_equal_candles_ops_on_the_halves() {
        // 700 rows of 2 x 96: several parallel tasks.
        let up = crate::testing::random_tensor(&[700, 192], 5).affine(4.0, 0.0).unwrap();
        let (a, b) = (up.narrow(1, 0, 96).unwrap(), up.narrow(1, 96, 96).unwrap());
        let candle = |act: HiddenAct, x: &Tensor| match act {
            HiddenAct::Gelu => x.gelu_erf(),
            HiddenAct::GeluTanh => x.gelu(),
            HiddenAct::Relu => x.relu(),
            HiddenAct::Silu => x.silu(),
        };
        for act in [HiddenAct::Gelu, HiddenAct::GeluTanh, HiddenAct::Relu, HiddenAct::Silu] {
            for first in [true, false] {
                let want = match first {
                    true => (candle(act, &a).unwrap() * &b).unwrap(),
                    false => (&a * candle(act, &b).unwrap()).unwrap(),
                };
                let got = act.gated(&up, first).unwrap();
                let diff = (got - want)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                // GELU's erf is a rational approximation within a few ulps of libm's.
                assert!(diff < 1e-5, "{act:?} first={first}: {diff}");
            }
        }
    }

    #[test]
    fn gelu_is_erf_and_gelu_new_is_tanh() {
        let x = Tensor::new(&[1.0f32], &Device::Cpu).unwrap();
        let erf: Vec<f32> = HiddenAct::Gelu.apply(&x).unwrap().to_vec1().unwrap();
        let tanh: Vec<f32> = HiddenAct::parse("gelu_new")
            .unwrap()
            .apply(&x)
            .unwrap()
            .to_vec1()
            .unwrap();
        // 0.5 * (1 + erf(1/sqrt 2)) = 0.8413447
        assert!((erf[0] - 0.841_344_7).abs() < 1e-6, "{}", erf[0]);
        assert!((tanh[0] - 0.841_192).abs() < 1e-5, "{}", tanh[0]);
    }
}
