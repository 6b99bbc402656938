//! The segment ids the tokenizer gives a pair of texts against the model's token-type table: a
//! BERT pair template (`[CLS] A [SEP] B [SEP]`, B with segment id 1) on a model with one token
//! type has no row for B, so every pair a reranker or pair classifier scores would fail in the
//! model (transformers fails alike). Embedders never see pairs, so they are not checked.

use tessera_core::{ClassifierSpec, Finding, ModelInspection};

const TOKEN_TYPES: &str = "embeddings.token_type_embeddings.weight";

pub(super) fn check(inspection: &ModelInspection, findings: &mut Vec<Finding>) {
    let (Some(path), Some(segment)) = (&inspection.tokenizer.path, inspection.tokenizer.pair_segment) else {
        return;
    };
    let Some((table, rows)) = super::table_rows(inspection, TOKEN_TYPES) else {
        return;
    };
    // The same detection that decides the server's task: a head, usable or not.
    if (segment as usize) < rows || ClassifierSpec::detect(inspection).is_none() {
        return;
    }
    findings.push(
        Finding::error(
            "pair-segment-beyond-token-types",
            format!(
                "the tokenizer gives the second text of a pair segment id {segment}, but `{table}` has {rows} row(s): every pair this classifier scores (/rerank, /predict with pairs) would fail in the model"
            ),
        )
        .in_file(path)
        .about("post_processor")
        .fix("use the tokenizer saved with the model (an XLM-RoBERTa-style model gives both texts segment 0: set the pair template's type ids to 0)"),
    );
}
