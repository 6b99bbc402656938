//! sentence-transformers `Dense` modules: a known activation and weights present.

use tessera_core::{DenseActivation, Finding, ModelInspection};

pub(super) fn check(inspection: &ModelInspection, findings: &mut Vec<Finding>) {
    let st = &inspection.sentence_transformers;
    // A PyLate ColBERT model's Dense modules run on every token; they are checked alike.
    let colbert = st.colbert.iter().flat_map(|c| &c.dense);
    for module in st.dense.iter().chain(colbert) {
        let config = module.dir.join("config.json");
        if DenseActivation::parse(&module.activation).is_none() {
            findings.push(
                Finding::error(
                    "dense-activation-unsupported",
                    format!(
                        "activation `{}` is not supported (supported: {})",
                        module.activation,
                        DenseActivation::supported_names()
                    ),
                )
                .in_file(&config)
                .about("activation_function")
                .fix(format!("use one of: {}", DenseActivation::supported_names())),
            );
        }
        if !module.dir.join("model.safetensors").is_file() && !module.dir.join("pytorch_model.bin").is_file() {
            findings.push(
                Finding::error("dense-weights-missing", "the Dense module has no weights")
                    .in_file(module.dir.join("model.safetensors"))
                    .about("linear.weight")
                    .fix("add the module's model.safetensors (or pytorch_model.bin)"),
            );
        }
    }
}
