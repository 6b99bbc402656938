//! `vocab_size` against the tokenizer and the embedding matrix: a token id beyond the matrix
//! would fail at request time, so it is caught here.

use tessera_core::{Finding, ModelInspection};

const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";

pub(super) fn check(inspection: &ModelInspection, findings: &mut Vec<Finding>) {
    let Some(config) = &inspection.config else {
        return;
    };
    let Some(vocab) = config.usize("vocab_size") else {
        return;
    };
    if let Some(tokenizer) = inspection.tokenizer.vocab_size {
        if tokenizer > vocab {
            findings.push(
                Finding::error(
                    "vocab-smaller-than-tokenizer",
                    format!("`vocab_size` is {vocab} but the tokenizer produces ids up to {}", tokenizer - 1),
                )
                .in_file(&config.path)
                .about("vocab_size")
                .fix(format!("set `vocab_size` to at least {tokenizer} (the embedding matrix's rows), or use the model's own tokenizer")),
            );
        }
    }
    let Some(weights) = &inspection.weights else {
        return;
    };
    let Some(prefix) = weights.prefix_before(WORD_EMBEDDINGS) else {
        return;
    };
    let name = format!("{prefix}{WORD_EMBEDDINGS}");
    let Some(rows) = weights.get(&name).and_then(|t| t.shape.first().copied()) else {
        return;
    };
    if rows > vocab {
        findings.push(
            Finding::error(
                "vocab-smaller-than-embeddings",
                format!("`vocab_size` is {vocab} but `{name}` has {rows} rows"),
            )
            .in_file(&config.path)
            .about("vocab_size")
            .fix(format!("set `vocab_size` to {rows}")),
        );
    }
}
