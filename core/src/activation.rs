//! Hidden activations named in config.json, each spelled out as Hugging Face defines it.

use candle_core::Tensor;

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

    /// The activation on a slice in place, where it has that form (GELU's erf form and ReLU).
    pub fn in_place(self) -> Option<fn(&mut [f32])> {
        match self {
            HiddenAct::Gelu => Some(crate::gelu::gelu_erf_in_place),
            HiddenAct::Relu => Some(|values| values.iter_mut().for_each(|v| *v = v.max(0.0))),
            HiddenAct::GeluTanh | HiddenAct::Silu => None,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
