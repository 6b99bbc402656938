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
    // The highest id, not the number of entries: ids can have gaps, and a post-processor can
    // insert special tokens that are not in the vocabulary.
    if let Some((max_id, token)) = &inspection.tokenizer.max_id {
        if *max_id as usize >= vocab {
            let file = inspection.tokenizer.path.clone().unwrap_or_else(|| config.path.clone());
            findings.push(
                Finding::error(
                    "vocab-smaller-than-tokenizer",
                    format!(
                        "the tokenizer produces token ids up to {max_id} (`{token}`) but `vocab_size` is {vocab}: a text with that token would fail"
                    ),
                )
                .in_file(file)
                .about("vocab_size")
                .fix(format!(
                    "use the model's own tokenizer; if the embedding matrix really has more rows, set `vocab_size` to at least {}",
                    u64::from(*max_id) + 1
                )),
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
