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
        Ok(Ok(tokenizer)) => {
            if let Some(finding) = custom_code(root, &tokenizer) {
                findings.push(finding);
            }
            info(path, &tokenizer)
        }
        Ok(Err(e)) => {
            findings.push(
                Finding::error("tokenizer-unparsable", format!("tokenizer.json cannot be loaded: {e}"))
                    .in_file(&path)
                    .fix("re-save the tokenizer with a current `tokenizers`/`transformers`"),
            );
            TokenizerInfo {
                path: Some(path),
                ..TokenizerInfo::default()
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
                ..TokenizerInfo::default()
            }
        }
    }
}

/// tokenizer_config.json naming tokenizer code of its own (`auto_map.AutoTokenizer`), which is
/// not run: whatever it adds to inputs that tokenizer.json does not (gte-Qwen2's appends the
/// `<|endoftext|>` its last-token pooling reads) is missing, so say what tokenizer.json appends.
fn custom_code(root: &Path, tokenizer: &tokenizers::Tokenizer) -> Option<Finding> {
    let path = root.join("tokenizer_config.json");
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    let code = match config.get("auto_map")?.get("AutoTokenizer")? {
        serde_json::Value::Array(classes) => classes.iter().filter_map(|c| c.as_str()).collect::<Vec<_>>().join(", "),
        other => other.as_str()?.to_string(),
    };
    // Encoding a probe runs the file's normalizer and templates: a malformed one must not panic.
    let appended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| appended_after_text(tokenizer)))
        .unwrap_or_else(|_| "an unknown suffix (encoding a probe fails)".into());
    Some(
        Finding::warning(
            "tokenizer-custom-code",
            format!("tokenizer_config.json names tokenizer code of its own (`auto_map.AutoTokenizer`: {code}), which tessera does not run: tokenizer.json is used as saved, and it appends {appended} after the text"),
        )
        .in_file(&path)
        .about("auto_map.AutoTokenizer")
        .fix("check with `/tokenize` that inputs end as the model's own code ends them (gte-Qwen2's appends `<|endoftext|>`); if not, add that to tokenizer.json's post_processor"),
    )
}

/// What the tokenizer's post-processor puts after a text: the tokens, or "nothing".
fn appended_after_text(tokenizer: &tokenizers::Tokenizer) -> String {
    let probe = "tessera";
    let (Ok(with), Ok(without)) = (tokenizer.encode(probe, true), tokenizer.encode(probe, false)) else {
        return "an unknown suffix (it fails to encode a probe)".into();
    };
    let bare = without.get_ids();
    let position = with.get_ids().windows(bare.len().max(1)).position(|w| w == bare);
    match position.map(|p| &with.get_tokens()[p + bare.len()..]) {
        Some([]) => "nothing".into(),
        Some(tokens) => tokens.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(" "),
        None => "an unknown suffix".into(),
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
            info(file, &tokenizer)
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
                ..TokenizerInfo::default()
            }
        }
    }
}

/// What the checks and backends read of a loaded tokenizer.
fn info(path: std::path::PathBuf, tokenizer: &tokenizers::Tokenizer) -> TokenizerInfo {
    TokenizerInfo {
        path: Some(path),
        vocab_size: Some(tokenizer.get_vocab_size(true)),
        max_id: max_id(tokenizer),
        truncation: tokenizer.get_truncation().map(|t| t.max_length),
        pair_segment: pair_segment(tokenizer),
    }
}

/// The highest segment id of a probe pair as the tokenizer encodes it (its post-processor
/// decides, whatever its kind); `None` where encoding fails, or panics on a malformed file.
fn pair_segment(tokenizer: &tokenizers::Tokenizer) -> Option<u32> {
    let encode = std::panic::AssertUnwindSafe(|| tokenizer.encode(("tessera", "probe"), true));
    let encoding = std::panic::catch_unwind(encode).ok()?.ok()?;
    encoding.get_type_ids().iter().copied().max()
}

/// The error without the file name the finding already carries.
fn reason(error: &LoadError) -> String {
    match error {
        LoadError::Tokenizer { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The highest id `tokenizer` can emit: over its vocabulary with added tokens, and over the ids
/// its post-processor inserts (which need not be in the vocabulary).
fn max_id(tokenizer: &tokenizers::Tokenizer) -> Option<(u32, String)> {
    let vocab = tokenizer
        .get_vocab(true)
        .into_iter()
        .map(|(token, id)| (id, token))
        .max_by_key(|(id, _)| *id);
    let special = tokenizer
        .get_post_processor()
        .and_then(|p| serde_json::to_value(p).ok())
        .map(|v| {
            let mut ids = Vec::new();
            post_processor_ids(&v, &mut ids);
            ids
        })
        .unwrap_or_default()
        .into_iter()
        .max_by_key(|(id, _)| *id);
    vocab.into_iter().chain(special).max_by_key(|(id, _)| *id)
}

/// Ids in a serialized post-processor: TemplateProcessing's `special_tokens.*.{ids, tokens}`,
/// Bert/RobertaProcessing's `cls`/`sep` pairs, and those of a `Sequence`'s processors.
fn post_processor_ids(value: &serde_json::Value, out: &mut Vec<(u32, String)>) {
    use serde_json::Value;
    let Value::Object(map) = value else {
        return;
    };
    for key in ["cls", "sep"] {
        if let Some(Value::Array(pair)) = map.get(key) {
            if let (Some(token), Some(id)) = (
                pair.first().and_then(Value::as_str),
                pair.get(1).and_then(Value::as_u64),
            ) {
                out.push((u32::try_from(id).unwrap_or(u32::MAX), token.to_string()));
            }
        }
    }
    if let Some(Value::Object(specials)) = map.get("special_tokens") {
        for (name, special) in specials {
            let ids = special.get("ids").and_then(Value::as_array).into_iter().flatten();
            out.extend(
                ids.filter_map(Value::as_u64)
                    .map(|id| (u32::try_from(id).unwrap_or(u32::MAX), name.clone())),
            );
        }
    }
    if let Some(Value::Array(processors)) = map.get("processors") {
        for processor in processors {
            post_processor_ids(processor, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_tokenizer(model: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../reference/models")
            .join(model)
            .join("tokenizer.json")
    }

    /// A copy of `model`'s tokenizer.json beside `tokenizer_config` (and the tokenizer itself with
    /// its post-processor removed when `bare`).
    fn dir_with(model: &str, tokenizer_config: serde_json::Value, bare: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(reference_tokenizer(model)).unwrap()).unwrap();
        if bare {
            json["post_processor"] = serde_json::Value::Null;
        }
        std::fs::write(dir.path().join("tokenizer.json"), serde_json::to_vec(&json).unwrap()).unwrap();
        std::fs::write(dir.path().join("tokenizer_config.json"), tokenizer_config.to_string()).unwrap();
        dir
    }

    #[test]
    fn tokenizer_code_of_its_own_is_a_warning_saying_what_tokenizer_json_appends() {
        let custom = serde_json::json!({"auto_map": {"AutoTokenizer": ["tokenization_qwen.Qwen2Tokenizer", "tokenization_qwen.Qwen2TokenizerFast"]}});
        for (bare, appended) in [(false, "`<|endoftext|>`"), (true, "nothing")] {
            let dir = dir_with("qwen2-tiny", custom.clone(), bare);
            let mut findings = Vec::new();
            read(dir.path(), &mut findings);
            let f = findings
                .iter()
                .find(|f| f.code == "tokenizer-custom-code")
                .expect("a finding");
            assert_eq!(f.severity, tessera_core::Severity::Warning);
            assert_eq!(f.subject.as_deref(), Some("auto_map.AutoTokenizer"));
            assert!(
                f.message.contains("tokenization_qwen.Qwen2TokenizerFast"),
                "{}",
                f.message
            );
            assert!(
                f.message.ends_with(&format!("appends {appended} after the text")),
                "{}",
                f.message
            );
        }
        let plain = dir_with("qwen2-tiny", serde_json::json!({"model_max_length": 512}), false);
        let mut findings = Vec::new();
        read(plain.path(), &mut findings);
        assert!(findings.is_empty(), "{findings:?}");
    }

    /// The pair segment comes from the tokenizer's own encoding of a pair, whatever its
    /// post-processor: BERT's template gives the second text 1, RoBERTa's processor 0, a
    /// `Sequence` holding BERT's 1, and no post-processor 1 (the library marks the second text so,
    /// and the server encodes pairs with it); the truncation is tokenizer.json's own.
    #[test]
    fn the_pair_segment_and_truncation_are_the_tokenizers_own() {
        let info = |model: &str, edit: &dyn Fn(&mut serde_json::Value)| {
            let dir = tempfile::tempdir().unwrap();
            let mut json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(reference_tokenizer(model)).unwrap()).unwrap();
            edit(&mut json);
            std::fs::write(dir.path().join("tokenizer.json"), serde_json::to_vec(&json).unwrap()).unwrap();
            read(dir.path(), &mut Vec::new())
        };
        let same = |_: &mut serde_json::Value| {};
        assert_eq!(info("bert-classifier-tiny", &same).pair_segment, Some(1));
        assert_eq!(info("xlm-roberta-reranker-tiny", &same).pair_segment, Some(0));
        let bare = info("bert-classifier-tiny", &|t| {
            t["post_processor"] = serde_json::Value::Null
        });
        assert_eq!(bare.pair_segment, Some(1));
        let bert = info("bert-classifier-tiny", &same);
        let sequence = info("bert-classifier-tiny", &|t| {
            let template = t["post_processor"].take();
            t["post_processor"] = serde_json::json!({"type": "Sequence", "processors": [
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
                template]});
        });
        assert_eq!(sequence.pair_segment, Some(1));
        assert_eq!(bert.truncation, None);
        assert_eq!(info("model2vec-tiny", &same).truncation, Some(512));
    }
}
