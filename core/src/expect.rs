//! Checking the weights against the tensors an architecture expects, naming every difference.

use std::collections::BTreeSet;

use crate::inspection::{Finding, WeightsIndex};

/// One dimension of an expected tensor: `factor` times the config.json value of `key`, so that a
/// mismatch can name the key to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dim {
    /// The config.json key the size comes from.
    pub key: &'static str,
    /// The key's value.
    pub value: usize,
    /// How many times the value the dimension holds (2 for a fused gate and up projection).
    pub factor: usize,
}

impl Dim {
    /// The size `config[key] = value`.
    pub const fn of(key: &'static str, value: usize) -> Self {
        Self { key, value, factor: 1 }
    }

    /// `factor` times this size.
    pub fn times(self, factor: usize) -> Self {
        Self {
            factor: self.factor * factor,
            ..self
        }
    }

    /// The size in elements.
    pub fn size(&self) -> usize {
        self.value.saturating_mul(self.factor)
    }
}

/// A tensor an architecture loads, with the shape config.json implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedTensor {
    /// Name without the weight prefix (or, [`ExpectedTensor::at_root`], as it is).
    pub name: String,
    /// Dimensions, each traced to its config key.
    pub dims: Vec<Dim>,
    /// Stored at the weights' root, outside the model's prefix (a module of the model's own
    /// code beside its `model.` backbone).
    pub at_root: bool,
}

impl ExpectedTensor {
    /// `name` with `dims`.
    pub fn new(name: impl Into<String>, dims: &[Dim]) -> Self {
        Self {
            name: name.into(),
            dims: dims.to_vec(),
            at_root: false,
        }
    }

    /// `name` with `dims`, at the weights' root whatever the prefix.
    pub fn at_root(name: impl Into<String>, dims: &[Dim]) -> Self {
        Self {
            at_root: true,
            ..Self::new(name, dims)
        }
    }

    /// The shape in elements.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().map(Dim::size).collect()
    }
}

/// Number of encoder layers the weights hold under `{prefix}{layers}.N.` (`layers` is the
/// family's layer path, `encoder.layer` for BERT), from the tensor names alone.
pub fn layers_in_weights(weights: &WeightsIndex, prefix: &str, layers: &str) -> usize {
    weights
        .tensors
        .keys()
        .filter_map(|k| layer_of(k.strip_prefix(prefix)?, layers))
        .max()
        .map_or(0, |max| max + 1)
}

/// The layer number of `name` (without the weight prefix) under the layer path `layers`.
fn layer_of(name: &str, layers: &str) -> Option<usize> {
    name.strip_prefix(layers)?
        .strip_prefix('.')?
        .split('.')
        .next()?
        .parse::<usize>()
        .ok()
}

/// The suffix of the rotary frequency buffers older Llama/Mistral checkpoints carry per layer.
pub const ROTARY_BUFFER: &str = "rotary_emb.inv_freq";

/// Tensors that checkpoints carry but embeddings never use.
const IGNORED: &[&str] = &[
    "cls.",
    "pooler.",
    "embeddings.position_ids",
    "lm_head.",
    "classifier.",
    // The decoders' classification head.
    "score.",
    // DistilBERT's masked-LM and classification heads.
    "vocab_transform.",
    "vocab_layer_norm.",
    "vocab_projector.",
    "pre_classifier.",
    // ModernBERT's masked-LM head (`head.dense`, `head.norm`, `decoder`).
    "head.",
    "decoder.",
    // T5's tied copy of `shared` (older checkpoints save both); its decoder is `decoder.`.
    "encoder.embed_tokens.",
];

/// Older checkpoints name LayerNorm parameters gamma and beta.
fn legacy_name(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if !(lower.contains("layernorm") || lower.contains("layer_norm")) {
        return None;
    }
    name.strip_suffix(".weight")
        .map(|base| format!("{base}.gamma"))
        .or_else(|| name.strip_suffix(".bias").map(|base| format!("{base}.beta")))
}

/// Compares the weights with the tensors `expected(layers)` lists for `layers` encoder layers:
/// missing tensors are errors, mis-shaped ones one error per config key whose value the weights
/// contradict, tensors nobody loads one warning, layers in config.json but not in the weights
/// an error.
///
/// `expected` is asked only for the layers the weights hold, so a config.json that claims a
/// million layers costs nothing before it is refused.
pub fn check_tensors(
    weights: &WeightsIndex,
    prefix: &str,
    layers: &str,
    config_layers: usize,
    expected: impl FnOnce(usize) -> Vec<ExpectedTensor>,
) -> Vec<Finding> {
    let file = weights.display_file();
    let mut findings = Vec::new();
    let mut used = BTreeSet::new();

    let weight_layers = layers_in_weights(weights, prefix, layers);
    let expected = expected(config_layers.min(weight_layers));
    if config_layers > weight_layers {
        findings.push(
            Finding::error(
                "layers-missing-in-weights",
                format!("config.json says {config_layers} layers but the weights hold {weight_layers}"),
            )
            .in_file("config.json")
            .about("num_hidden_layers")
            .fix(format!(
                "set `num_hidden_layers` to {weight_layers}, or supply the complete weights"
            )),
        );
    }

    let mut missing = Vec::new();
    let mut mismatches = SizeMismatches::default();
    for t in &expected {
        let full = match t.at_root {
            true => t.name.clone(),
            false => format!("{prefix}{}", t.name),
        };
        let found = weights
            .resolve(&full)
            .or_else(|| legacy_name(&full).and_then(|alt| weights.get(&alt).map(|info| (alt, info))));
        match found {
            None => {
                let layer = layer_of(&t.name, layers);
                // One finding for all of a layer config.json invents covers it.
                if layer.is_none_or(|l| l < weight_layers) {
                    missing.push(full);
                }
            }
            Some((name, info)) => {
                used.insert(name.clone());
                if info.shape != t.shape() {
                    mismatches.add(name, &info.shape, t);
                }
            }
        }
    }
    findings.extend(mismatches.findings(&file));
    for name in &missing {
        findings.push(
            Finding::error("tensor-missing", format!("tensor `{name}` is missing from the weights"))
                .in_file(&file)
                .about(name.clone())
                .fix("re-save the model; the weights are incomplete or from another architecture"),
        );
    }

    let unexpected: Vec<&String> = weights
        .tensors
        .keys()
        .filter(|k| !used.contains(*k))
        .filter(|k| {
            let rest = k.strip_prefix(prefix).unwrap_or(k);
            !IGNORED
                .iter()
                .any(|ignored| rest.starts_with(ignored) || k.starts_with(ignored))
        })
        // Rotary frequencies older decoder checkpoints saved as buffers: recomputed, never read.
        .filter(|k| !k.ends_with(ROTARY_BUFFER))
        .filter(|k| {
            // Layers beyond num_hidden_layers are reported by their own finding's fix.
            k.strip_prefix(prefix)
                .and_then(|r| layer_of(r, layers))
                .is_none_or(|l| l < config_layers)
        })
        .collect();
    if let Some(first) = unexpected.first() {
        let listed = unexpected
            .iter()
            .take(5)
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ");
        findings.push(
            Finding::warning(
                "tensor-unexpected",
                format!(
                    "{} tensor(s) are not used by the detected architecture: {listed}",
                    unexpected.len()
                ),
            )
            .in_file(&file)
            .about(first.to_string())
            .fix("check that the architecture detected is the one trained; a misspelled tensor name is also missing"),
        );
    }
    if weight_layers > config_layers && config_layers > 0 {
        findings.push(
            Finding::warning(
                "layers-unused",
                format!("the weights hold {weight_layers} layers but config.json says {config_layers}; the rest are ignored"),
            )
            .in_file("config.json")
            .about("num_hidden_layers")
            .fix(format!("set `num_hidden_layers` to {weight_layers} if all layers were trained")),
        );
    }
    findings
}

/// A tensor whose shape config.json contradicts.
#[derive(Debug, Clone)]
struct Mismatch {
    name: String,
    actual: Vec<usize>,
    implied: Vec<usize>,
}

impl Mismatch {
    fn describe(&self) -> String {
        format!(
            "`{}` is {:?} (config.json implies {:?})",
            self.name, self.actual, self.implied
        )
    }
}

/// Mis-shaped tensors grouped by the config key each wrong dimension comes from: a wrong
/// `hidden_size` is one finding, not one per tensor.
#[derive(Debug, Default)]
struct SizeMismatches {
    /// key -> (its config value, the values the weights imply, the tensors).
    by_key: std::collections::BTreeMap<&'static str, (usize, BTreeSet<usize>, Vec<Mismatch>)>,
    /// Tensors of another rank than expected: no single key explains them.
    other: Vec<Mismatch>,
}

/// Tensors listed by name in one finding; the rest are counted.
const LISTED: usize = 3;

impl SizeMismatches {
    fn add(&mut self, name: String, actual: &[usize], expected: &ExpectedTensor) {
        let mismatch = Mismatch {
            name,
            actual: actual.to_vec(),
            implied: expected.shape(),
        };
        if actual.len() != expected.dims.len() {
            self.other.push(mismatch);
            return;
        }
        let wrong: Vec<(Dim, usize)> = expected
            .dims
            .iter()
            .zip(actual)
            .filter(|(dim, &size)| dim.size() != size)
            .map(|(dim, &size)| (*dim, size))
            .collect();
        for (i, (dim, size)) in wrong.iter().enumerate() {
            let entry = self
                .by_key
                .entry(dim.key)
                .or_insert_with(|| (dim.value, BTreeSet::new(), Vec::new()));
            if size % dim.factor == 0 {
                entry.1.insert(size / dim.factor);
            }
            // The tensor is listed under its first wrong key only.
            if i == 0 {
                entry.2.push(mismatch.clone());
            }
        }
    }

    fn findings(self, weights_file: &std::path::Path) -> Vec<Finding> {
        let mut findings = Vec::new();
        for (key, (value, implied, tensors)) in self.by_key {
            let weights_say = match implied.len() {
                0 => "other sizes".to_string(),
                _ => implied.iter().map(ToString::to_string).collect::<Vec<_>>().join(" or "),
            };
            let fix = match implied.iter().next() {
                Some(size) if implied.len() == 1 => format!("set `{key}` to {size} in config.json"),
                _ => format!("make `{key}` in config.json match the weights"),
            };
            findings.push(
                Finding::error(
                    "tensor-shape-mismatch",
                    format!(
                        "config.json says `{key}: {value}` but the weights say {weights_say}: {}",
                        listing(&tensors)
                    ),
                )
                .in_file("config.json")
                .about(key)
                .fix(fix),
            );
        }
        if let Some(first) = self.other.first() {
            findings.push(
                Finding::error(
                    "tensor-shape-mismatch",
                    format!(
                        "tensors have another number of dimensions than the architecture's: {}",
                        listing(&self.other)
                    ),
                )
                .in_file(weights_file)
                .about(first.name.clone())
                .fix("re-save the model; the weights are from another architecture"),
            );
        }
        findings
    }
}

/// The first few tensors described, then how many more.
fn listing(tensors: &[Mismatch]) -> String {
    let mut text = tensors
        .iter()
        .take(LISTED)
        .map(Mismatch::describe)
        .collect::<Vec<_>>()
        .join(", ");
    if tensors.len() > LISTED {
        text.push_str(&format!(" and {} more tensors", tensors.len() - LISTED));
    }
    text
}
