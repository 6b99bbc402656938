//! A PyLate ColBERT model's tokens: its prefixes and the expansion token must be in the
//! tokenizer, and its lengths within the model's inputs, as serving loads them
//! ([`tessera_core::ColbertEncoder::load`], run here so the preflight and start-up agree).

use tessera_core::{ColbertEncoder, Finding, ModelInspection, TextTokenizer};

pub(super) fn check(inspection: &ModelInspection, findings: &mut Vec<Finding>) {
    let Some(settings) = &inspection.sentence_transformers.colbert else {
        return;
    };
    // Without sentence-transformers' own limit, the lengths are checked at start-up against
    // the one the server settles on.
    let longest = inspection
        .sentence_transformers
        .max_seq_length
        .unwrap_or(usize::MAX >> 1);
    // An unreadable tokenizer is reported by the reader.
    let Ok((tokenizer, _)) = TextTokenizer::from_dir(&inspection.module_files_dir(), longest) else {
        return;
    };
    if let Err(e) = ColbertEncoder::load(inspection, settings, &tokenizer) {
        findings.push(e.to_finding());
    }
}
