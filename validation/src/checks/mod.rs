//! Checks that hold for every architecture, run after the files are read. Checks that depend on
//! the architecture (required keys, expected tensors) belong to each backend's assessment.

mod dense;
mod dtype;
mod pairs;
mod vocab;

use tessera_core::ModelInspection;

/// Appends every generic finding to `inspection.findings`.
pub(crate) fn run(inspection: &mut ModelInspection) {
    let mut findings = Vec::new();
    vocab::check(inspection, &mut findings);
    dtype::check(inspection, &mut findings);
    dense::check(inspection, &mut findings);
    pairs::check(inspection, &mut findings);
    inspection.findings.extend(findings);
}
