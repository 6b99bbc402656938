//! Weight dtypes: parameters must be floating point in a type candle runs on the CPU.

use tessera_core::{Finding, ModelInspection};

const RUNNABLE: &[&str] = &["F32", "F16", "BF16", "F64"];

pub(super) fn check(inspection: &ModelInspection, findings: &mut Vec<Finding>) {
    let Some(weights) = &inspection.weights else {
        return;
    };
    let bad: Vec<(&String, &String)> = weights
        .tensors
        .iter()
        .filter(|(name, _)| is_parameter(name))
        .filter(|(_, info)| !RUNNABLE.contains(&info.dtype.as_str()))
        .map(|(name, info)| (name, &info.dtype))
        .collect();
    if let Some((name, dtype)) = bad.first() {
        let file = weights.get(name).map(|t| t.file.clone()).unwrap_or_default();
        findings.push(
            Finding::error(
                "weights-dtype-unsupported",
                format!(
                    "{} parameter tensor(s) are stored as a type tessera cannot compute with; `{name}` is {dtype} (supported: {})",
                    bad.len(),
                    RUNNABLE.join(", ")
                ),
            )
            .in_file(file)
            .about(name.to_string())
            .fix("convert the checkpoint to float32, float16 or bfloat16 (quantized checkpoints are not supported)"),
        );
    }
}

/// Learned parameters, as opposed to buffers such as `position_ids`.
fn is_parameter(name: &str) -> bool {
    [".weight", ".bias", ".gamma", ".beta"]
        .iter()
        .any(|s| name.ends_with(s))
}
