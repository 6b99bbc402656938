//! tokenizer.json: present, parsable, and its vocabulary size.

use std::path::Path;

use tessera_core::inspection::TokenizerInfo;
use tessera_core::Finding;

pub(super) fn read(root: &Path, findings: &mut Vec<Finding>) -> TokenizerInfo {
    let path = root.join("tokenizer.json");
    if !path.is_file() {
        let vocab = root.join("vocab.txt");
        if vocab.is_file() {
            return match tessera_core::wordpiece::from_vocab(root) {
                Ok(tokenizer) => {
                    findings.push(
                        Finding::info(
                            "tokenizer-built-from-vocab",
                            "no tokenizer.json: the WordPiece tokenizer is built from vocab.txt and tokenizer_config.json",
                        )
                        .in_file(&vocab)
                        .fix("save tokenizer.json with `AutoTokenizer.from_pretrained(model).save_pretrained(dir)` to skip this step"),
                    );
                    TokenizerInfo {
                        path: Some(vocab),
                        vocab_size: Some(tokenizer.get_vocab_size(true)),
                    }
                }
                Err(e) => {
                    findings.push(
                        Finding::error(
                            "tokenizer-unparsable",
                            format!("no tokenizer.json, and vocab.txt cannot be used: {e}"),
                        )
                        .in_file(&vocab)
                        .fix("add the model's tokenizer.json"),
                    );
                    TokenizerInfo {
                        path: Some(vocab),
                        vocab_size: None,
                    }
                }
            };
        }
        let sentencepiece = ["sentencepiece.bpe.model", "spiece.model"]
            .into_iter()
            .find(|f| root.join(f).is_file());
        let finding = match sentencepiece {
            // A SentencePiece model needs the slow tokenizer's model-specific conversion (special
            // tokens, id offsets), which only transformers knows for each model class.
            Some(spm) => Finding::error(
                "tokenizer-missing",
                format!(
                    "no tokenizer.json, and the SentencePiece model {spm} cannot be converted by tessera                      (looked for tokenizer.json, and for vocab.txt + tokenizer_config.json)"
                ),
            )
            .in_file(root.join(spm))
            .fix("write tokenizer.json with `AutoTokenizer.from_pretrained(dir).save_pretrained(dir)` (transformers converts it)"),
            None => Finding::error(
                "tokenizer-missing",
                "no tokenizer: looked for tokenizer.json, and for vocab.txt (+ tokenizer_config.json) to build one",
            )
            .in_file(&path)
            .fix("save it with `AutoTokenizer.from_pretrained(model).save_pretrained(dir)`, or add the model's vocab.txt"),
        };
        findings.push(finding);
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
