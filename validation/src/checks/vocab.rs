//! `vocab_size` against the tokenizer and the embedding matrix: a token id beyond the matrix
//! would fail at request time, so it is caught here.

use tessera_core::{Finding, ModelInspection};

const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";

pub(super) fn check(inspection: &ModelInspection, findings: &mut Vec<Finding>) {
    let Some(config) = &inspection.config else {
        return;
    };
    let vocab = config.usize("vocab_size");
    let rows = super::table_rows(inspection, WORD_EMBEDDINGS);
    if let (Some(vocab), Some((name, rows))) = (vocab, &rows) {
        if *rows > vocab {
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
    // The highest id, not the number of entries: ids can have gaps, and a post-processor can
    // insert special tokens that are not in the vocabulary. Compared with the table's real rows
    // when the weights say them: then a too-high id is the tokenizer's fault.
    let Some((max_id, token)) = &inspection.tokenizer.max_id else {
        return;
    };
    let max_id = u64::from(*max_id);
    match (rows, vocab) {
        (Some((name, rows)), _) if max_id >= rows as u64 => findings.push(
            Finding::error(
                "tokenizer-id-beyond-embeddings",
                format!(
                    "the tokenizer produces token id {max_id} (`{token}`) but `{name}` has {rows} rows: a text with that token cannot be embedded"
                ),
            )
            .in_file(inspection.tokenizer.path.clone().unwrap_or_else(|| inspection.root.join("tokenizer.json")))
            .about(token.clone())
            .fix("use the tokenizer saved with these weights (`AutoTokenizer.from_pretrained(model).save_pretrained(dir)`)"),
        ),
        (None, Some(vocab)) if max_id >= vocab as u64 => findings.push(
            Finding::error(
                "vocab-smaller-than-tokenizer",
                format!("`vocab_size` is {vocab} but the tokenizer produces ids up to {max_id} (`{token}`)"),
            )
            .in_file(&config.path)
            .about("vocab_size")
            .fix(format!(
                "set `vocab_size` to at least {} (the embedding matrix's rows), or use the model's own tokenizer",
                max_id + 1
            )),
        ),
        _ => {}
    }
}
