//! Checks that hold for every architecture, run after the files are read. Checks that depend on
//! the architecture (required keys, expected tensors) belong to each backend's assessment.

mod colbert;
mod dense;
mod dtype;
mod pairs;
mod vocab;

use tessera_core::ModelInspection;

/// The name and rows of the table whose name ends with `suffix` (any prefix), from the weight
/// headers.
fn table_rows(inspection: &ModelInspection, suffix: &str) -> Option<(String, usize)> {
    let weights = inspection.weights.as_ref()?;
    let prefix = weights.prefix_before(suffix)?;
    let name = format!("{prefix}{suffix}");
    let rows = weights.get(&name)?.shape.first().copied()?;
    Some((name, rows))
}

/// Appends every generic finding to `inspection.findings`.
pub(crate) fn run(inspection: &mut ModelInspection) {
    let mut findings = Vec::new();
    vocab::check(inspection, &mut findings);
    dtype::check(inspection, &mut findings);
    dense::check(inspection, &mut findings);
    pairs::check(inspection, &mut findings);
    colbert::check(inspection, &mut findings);
    inspection.findings.extend(findings);
}
