//! tokenizer.json: present, parsable, and its vocabulary size.

use std::path::Path;

use tessera_core::inspection::TokenizerInfo;
use tessera_core::Finding;

pub(super) fn read(root: &Path, findings: &mut Vec<Finding>) -> TokenizerInfo {
    let path = root.join("tokenizer.json");
    if !path.is_file() {
        findings.push(
            Finding::error("tokenizer-missing", "tokenizer.json (the fast tokenizer) is missing")
                .in_file(&path)
                .fix("save it with `AutoTokenizer.from_pretrained(model).save_pretrained(dir)`"),
        );
        return TokenizerInfo::default();
    }
    // The tokenizers crate panics on some malformed inputs deep in its deserializers;
    // a bad file must become a finding, never take the process down.
    let parsed = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_file(&path));
    match parsed {
        Ok(Ok(tokenizer)) => TokenizerInfo {
            path: Some(path),
            vocab_size: Some(tokenizer.get_vocab_size(true)),
        },
        Ok(Err(e)) => {
            findings.push(
                Finding::error("tokenizer-unparsable", format!("tokenizer.json cannot be loaded: {e}"))
                    .in_file(&path)
                    .fix("re-save the tokenizer with a current `tokenizers`/`transformers`"),
            );
            TokenizerInfo {
                path: Some(path),
                vocab_size: None,
            }
        }
        Err(_) => {
            findings.push(
                Finding::error("tokenizer-unparsable", "tokenizer.json made the tokenizer library fail")
                    .in_file(&path)
                    .fix("re-save the tokenizer with a current `tokenizers`/`transformers`"),
            );
            TokenizerInfo {
                path: Some(path),
                vocab_size: None,
            }
        }
    }
}
