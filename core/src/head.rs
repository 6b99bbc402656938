//! What sentence-transformers applies after pooling: `Dense` modules, then normalization.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

use crate::layers::Linear;

use crate::error::LoadError;
use crate::inspection::DenseModule;

/// Activations a sentence-transformers `Dense` module may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseActivation {
    /// `torch.nn.modules.linear.Identity`.
    Identity,
    /// `torch.nn.modules.activation.Tanh` (the sentence-transformers default).
    Tanh,
    /// `torch.nn.modules.activation.ReLU`.
    Relu,
    /// `torch.nn.modules.activation.GELU` (exact erf form).
    Gelu,
    /// `torch.nn.modules.activation.Sigmoid`.
    Sigmoid,
    /// `torch.nn.modules.activation.SiLU`.
    Silu,
    /// `torch.nn.modules.activation.LeakyReLU` (slope 0.01).
    LeakyRelu,
    /// `torch.nn.modules.activation.ELU` (alpha 1).
    Elu,
    /// `torch.nn.modules.activation.Softplus`.
    Softplus,
}

const ACTIVATIONS: &[(&str, DenseActivation)] = &[
    ("Identity", DenseActivation::Identity),
    ("Tanh", DenseActivation::Tanh),
    ("ReLU", DenseActivation::Relu),
    ("GELU", DenseActivation::Gelu),
    ("Sigmoid", DenseActivation::Sigmoid),
    ("SiLU", DenseActivation::Silu),
    ("LeakyReLU", DenseActivation::LeakyRelu),
    ("ELU", DenseActivation::Elu),
    ("Softplus", DenseActivation::Softplus),
];

impl DenseActivation {
    /// Parses a Python class path; the last segment decides (`torch.nn.Tanh` works too).
    pub fn parse(path: &str) -> Option<Self> {
        let class = path.rsplit('.').next().unwrap_or(path);
        ACTIVATIONS.iter().find(|(name, _)| *name == class).map(|(_, a)| *a)
    }

    /// The supported class names, for messages.
    pub fn supported_names() -> String {
        ACTIVATIONS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
    }

    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            DenseActivation::Identity => Ok(x.clone()),
            DenseActivation::Tanh => x.tanh(),
            DenseActivation::Relu => x.relu(),
            DenseActivation::Gelu => crate::gelu::gelu_erf(x),
            DenseActivation::Sigmoid => candle_nn::ops::sigmoid(x),
            DenseActivation::Silu => x.silu(),
            DenseActivation::LeakyRelu => candle_nn::ops::leaky_relu(x, 0.01),
            DenseActivation::Elu => x.elu(1.0),
            // log(1 + e^x), written to stay finite for large x.
            DenseActivation::Softplus => {
                let relu = x.relu()?;
                relu.broadcast_add(&(x.abs()?.neg()?.exp()? + 1.0)?.log()?)
            }
        }
    }
}

/// One loaded `Dense` module.
#[derive(Debug)]
struct Dense {
    linear: Linear,
    activation: DenseActivation,
}

/// The `model_type` of pplx-embed (Perplexity's bidirectional Qwen3), whose own code returns
/// pooled vectors quantized to int8 values.
pub const PPLX_MODEL_TYPE: &str = "bidirectional_pplx_qwen3";

/// Whether the model's own code quantizes its pooled vectors to int8 values
/// (`round(127 * tanh(x))`: pplx-embed, as its model card says and TEI computes it).
pub fn int8_output(config: Option<&crate::inspection::ModelConfig>) -> bool {
    config.and_then(|c| c.str("model_type")) == Some(PPLX_MODEL_TYPE)
}

/// The modules after pooling, loaded.
#[derive(Debug, Default)]
pub struct EmbeddingHead {
    dense: Vec<Dense>,
    /// pplx-embed's int8 values, before any Dense module and normalization.
    int8: bool,
}

impl EmbeddingHead {
    /// Loads every `Dense` module on `device` in f32 (they are small).
    pub fn load(modules: &[DenseModule], device: &Device) -> Result<Self, LoadError> {
        let dense = modules
            .iter()
            .map(|m| load_dense(m, device))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { dense, int8: false })
    }

    /// The head with pooled vectors quantized to int8 values first ([`int8_output`]).
    pub fn with_int8_output(self, int8: bool) -> Self {
        Self { int8, ..self }
    }

    /// Output dimension given the backbone's hidden size.
    pub fn output_dim(&self, hidden_size: usize) -> usize {
        self.dense.last().map(|d| d.linear.out_dim()).unwrap_or(hidden_size)
    }

    /// Applies the modules to pooled vectors `[n, hidden]` (f32).
    pub fn forward(&self, pooled: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = match self.int8 {
            true => (pooled.tanh()? * 127.0)?.round()?,
            false => pooled.clone(),
        };
        for d in &self.dense {
            x = d.activation.apply(&d.linear.forward(&x)?)?;
        }
        Ok(x)
    }
}

fn load_dense(module: &DenseModule, device: &Device) -> Result<Dense, LoadError> {
    let activation = DenseActivation::parse(&module.activation).ok_or_else(|| LoadError::UnsupportedValue {
        file: module.dir.join("config.json"),
        key: "activation_function".into(),
        value: module.activation.clone(),
        supported: DenseActivation::supported_names(),
    })?;
    let (file, vb) = dense_weights(&module.dir, device)?;
    let weight = vb
        .get((module.out_features, module.in_features), "linear.weight")
        .map_err(|e| LoadError::from_candle(&file, e))?;
    let bias = if module.bias {
        Some(
            vb.get(module.out_features, "linear.bias")
                .map_err(|e| LoadError::from_candle(&file, e))?,
        )
    } else {
        None
    };
    Ok(Dense {
        linear: Linear::new(weight, bias).map_err(|e| LoadError::from_candle(&file, e))?,
        activation,
    })
}

fn dense_weights(dir: &Path, device: &Device) -> Result<(PathBuf, VarBuilder<'static>), LoadError> {
    let safetensors = dir.join("model.safetensors");
    if safetensors.is_file() {
        let data = std::fs::read(&safetensors).map_err(|source| LoadError::Io {
            file: safetensors.clone(),
            source,
        })?;
        let vb = VarBuilder::from_buffered_safetensors(data, DType::F32, device)
            .map_err(|e| LoadError::from_candle(&safetensors, e))?;
        return Ok((safetensors, vb));
    }
    let pth = dir.join("pytorch_model.bin");
    if pth.is_file() {
        let vb = VarBuilder::from_pth(&pth, DType::F32, device).map_err(|e| LoadError::from_candle(&pth, e))?;
        return Ok((pth, vb));
    }
    Err(LoadError::MissingFile {
        file: safetensors,
        what: "the Dense module's weights",
        fix: format!("add model.safetensors or pytorch_model.bin to {}", dir.display()),
    })
}

/// Cuts a vector to `dimensions` (Matryoshka) and L2-normalizes it when asked.
///
/// A zero vector stays zero instead of becoming NaN.
pub fn finish_embedding(mut v: Vec<f32>, dimensions: Option<usize>, normalize: bool) -> Vec<f32> {
    if let Some(d) = dimensions {
        v.truncate(d);
    }
    if normalize {
        let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
        // sentence-transformers uses F.normalize, which divides by max(norm, 1e-12).
        let norm = norm.max(1e-12) as f32;
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_parse_from_python_paths() {
        assert_eq!(
            DenseActivation::parse("torch.nn.modules.activation.Tanh"),
            Some(DenseActivation::Tanh)
        );
        assert_eq!(
            DenseActivation::parse("torch.nn.modules.linear.Identity"),
            Some(DenseActivation::Identity)
        );
        assert_eq!(DenseActivation::parse("torch.nn.Mish"), None);
    }

    #[test]
    fn int8_output_is_rounded_127_tanh() {
        let pooled = Tensor::new(&[[0.0f32, 10.0, -0.5, 0.004]], &Device::Cpu).unwrap();
        let head = EmbeddingHead::default().with_int8_output(true);
        let got = head.forward(&pooled).unwrap().to_vec2::<f32>().unwrap();
        // 127 tanh(-0.5) = -58.68; 127 tanh(0.004) = 0.508.
        assert_eq!(got, vec![vec![0.0, 127.0, -59.0, 1.0]]);
        let config = crate::inspection::ModelConfig {
            path: "config.json".into(),
            values: serde_json::json!({"model_type": PPLX_MODEL_TYPE})
                .as_object()
                .cloned()
                .unwrap(),
        };
        assert!(int8_output(Some(&config)) && !int8_output(None));
    }

    #[test]
    fn normalizing_zero_is_zero() {
        assert_eq!(finish_embedding(vec![0.0; 3], None, true), vec![0.0; 3]);
        let v = finish_embedding(vec![3.0, 4.0, 12.0], Some(2), true);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn softplus_is_stable() {
        let x = Tensor::new(&[-100f32, 0.0, 100.0], &Device::Cpu).unwrap();
        let y: Vec<f32> = DenseActivation::Softplus.apply(&x).unwrap().to_vec1().unwrap();
        assert!(y[0] >= 0.0 && y[0] < 1e-30);
        assert!((y[1] - 2f32.ln()).abs() < 1e-6);
        assert!((y[2] - 100.0).abs() < 1e-4);
    }
}
