//! The tokenizer: tokenizer.json present and parsable, or one buildable from the slow tokenizer's
//! files (vocab.txt, a SentencePiece model), and its vocabulary size.

use std::path::Path;

use tessera_core::inspection::TokenizerInfo;
use tessera_core::{Finding, LoadError, TokenizerSource};

pub(super) fn read(root: &Path, findings: &mut Vec<Finding>) -> TokenizerInfo {
    let path = root.join("tokenizer.json");
    if !path.is_file() {
        return build_from_slow_files(root, &path, findings);
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

/// No tokenizer.json: build the tokenizer the server would build, and say from what.
fn build_from_slow_files(root: &Path, json: &Path, findings: &mut Vec<Finding>) -> TokenizerInfo {
    let Some(tessera_core::SlowFilesBuild { file, built }) = tessera_core::build_from_slow_files(root) else {
        findings.push(
            Finding::error(
                "tokenizer-missing",
                format!(
                    "no tokenizer: looked for tokenizer.json, for vocab.txt (+ tokenizer_config.json), and for a \
                     SentencePiece model ({})",
                    tessera_core::sentencepiece::FILES.join(", ")
                ),
            )
            .in_file(json)
            .fix("save it with `AutoTokenizer.from_pretrained(model).save_pretrained(dir)`, or add the model's vocab.txt"),
        );
        return TokenizerInfo::default();
    };
    match built {
        Ok((tokenizer, source)) => {
            let what = source.built_from().unwrap_or_default();
            let code = match source {
                TokenizerSource::BuiltFromSentencePiece(_) => "tokenizer-built-from-sentencepiece",
                _ => "tokenizer-built-from-vocab",
            };
            findings.push(
                Finding::info(code, format!("no tokenizer.json: {what} is built in memory"))
                    .in_file(&file)
                    .fix("save tokenizer.json with `AutoTokenizer.from_pretrained(model).save_pretrained(dir)` to skip this step"),
            );
            TokenizerInfo {
                path: Some(file),
                vocab_size: Some(tokenizer.get_vocab_size(true)),
            }
        }
        Err(e) => {
            findings.push(
                Finding::error(
                    "tokenizer-unparsable",
                    format!("no tokenizer.json, and no tokenizer can be built from this file: {}", reason(&e)),
                )
                .in_file(&file)
                .fix("add the model's tokenizer.json (`AutoTokenizer.from_pretrained(model).save_pretrained(dir)` writes it)"),
            );
            TokenizerInfo {
                path: Some(file),
                vocab_size: None,
            }
        }
    }
}

/// The error without the file name the finding already carries.
fn reason(error: &LoadError) -> String {
    match error {
        LoadError::Tokenizer { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
