//! PyLate ColBERT models: how queries and documents become token sequences, as PyLate's
//! `ColBERT.tokenize` and `encode` make them (the projection and the choice of vectors are
//! [`crate::MultiVectorHead`]'s).
//!
//! An input is stripped of surrounding whitespace and cut to its side's length less one (`query_length`, `document_length`: these are
//! part of the model, so inputs are always cut, as PyLate cuts them), then the side's prefix
//! token (`[Q] `, `[D] `) goes after the first token. A query with `do_query_expansion` is then
//! padded to `query_length` with the mask token (the EOS token where there is none, then the
//! padding token): those expansion tokens attend to the query, but nothing attends to them unless
//! `attend_to_expansion_tokens`, as PyLate's attention mask of 0 on them makes it. A query keeps
//! the vector of every token, expansion tokens included; a document drops those of its
//! `skiplist_words` (punctuation by default).
//!
//! Reference: PyLate's `pylate/models/colbert.py`.

use crate::error::LoadError;
use crate::inspection::{ColbertSettings, ModelInspection};
use crate::tokenize::{Encoded, TextTokenizer, TokenizeError, TruncationDirection};

/// Which side of retrieval an input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColbertSide {
    /// A query: prefixed with `query_prefix`, expanded, every token's vector kept.
    Query,
    /// A document: prefixed with `document_prefix`, its skiplist's vectors dropped.
    Document,
}

/// One side's tokenizer and prefix.
#[derive(Debug, Clone)]
struct Side {
    /// Truncates at the side's length less the prefix.
    tokenizer: TextTokenizer,
    prefix: Option<u32>,
}

/// PyLate's tokenization of a ColBERT model, loaded.
#[derive(Debug, Clone)]
pub struct ColbertEncoder {
    query: Side,
    document: Side,
    query_length: usize,
    /// The token expansion pads queries with, and whether expansion tokens are keys too.
    expansion: Option<(u32, bool)>,
    /// Token ids whose vectors a document leaves out, sorted.
    skiplist: Vec<u32>,
}

impl ColbertEncoder {
    /// The encoder of the ColBERT model `inspection` describes, over its `tokenizer`; names the
    /// file and key of a prefix or expansion token the tokenizer does not have.
    pub fn load(
        inspection: &ModelInspection,
        settings: &ColbertSettings,
        tokenizer: &TextTokenizer,
    ) -> Result<Self, LoadError> {
        let missing = |key: &str, token: &str| {
            LoadError::InvalidValue {
            file: settings.path.clone(),
            key: key.into(),
            value: token.into(),
            reason: "the tokenizer has no such token: PyLate adds the prefixes to the vocabulary when it builds the model, so tokenizer.json of a saved model has them".into(),
        }
        };
        let side = |(key, prefix): (&str, &str), (length_key, length): (&str, usize)| -> Result<Side, LoadError> {
            let longest = tokenizer.max_input_length();
            if length > longest {
                return Err(LoadError::InvalidValue {
                    file: settings.path.clone(),
                    key: length_key.into(),
                    value: length.to_string(),
                    reason: format!("the model takes inputs of at most {longest} tokens"),
                });
            }
            let prefix = match prefix {
                "" => None,
                token => Some(tokenizer.token_id(token).ok_or_else(|| missing(key, token))?),
            };
            let tokenizer = tokenizer
                .with_max_input_length(length - usize::from(prefix.is_some()))
                .map_err(|message| LoadError::Tokenizer {
                    file: settings.path.clone(),
                    message,
                })?;
            Ok(Side { tokenizer, prefix })
        };
        let root = inspection.module_files_dir();
        let expansion = match settings.query_expansion {
            false => None,
            true => {
                let token = ["mask_token", "eos_token", "pad_token"]
                    .iter()
                    .find_map(|key| crate::lexical::special_token(&root, key))
                    .and_then(|token| tokenizer.token_id(&token))
                    .ok_or_else(|| LoadError::InvalidValue {
                        file: settings.path.clone(),
                        key: "do_query_expansion".into(),
                        value: "true".into(),
                        reason: "queries are padded with the tokenizer's mask token (else its EOS, else its padding token), and tokenizer_config.json names none the tokenizer has".into(),
                    })?;
                Some((token, settings.attend_to_expansion))
            }
        };
        // As PyLate's `convert_tokens_to_ids`: a word the vocabulary lacks stands for the
        // unknown token, whose vectors documents then leave out too.
        let unknown = crate::lexical::special_token(&root, "unk_token").and_then(|t| tokenizer.token_id(&t));
        let mut skiplist: Vec<u32> = settings
            .skiplist_words
            .iter()
            .filter_map(|word| tokenizer.token_id(word).or(unknown))
            .collect();
        skiplist.sort_unstable();
        skiplist.dedup();
        Ok(Self {
            query: side(
                ("query_prefix", &settings.query_prefix),
                ("query_length", settings.query_length),
            )?,
            document: side(
                ("document_prefix", &settings.document_prefix),
                ("document_length", settings.document_length),
            )?,
            query_length: settings.query_length,
            expansion,
            skiplist,
        })
    }

    /// `text` as PyLate encodes it on `side`: cut, prefixed, and a query expanded.
    pub fn encode(&self, text: &str, side: ColbertSide) -> Result<Encoded, TokenizeError> {
        let Side { tokenizer, prefix } = match side {
            ColbertSide::Query => &self.query,
            ColbertSide::Document => &self.document,
        };
        // sentence-transformers 5's `Transformer.tokenize`, which PyLate runs, strips each text
        // (a byte-level BPE would otherwise give leading or trailing spaces tokens of their own).
        let mut encoded = tokenizer.encode(text.trim(), Some(TruncationDirection::Right))?;
        if let Some(prefix) = *prefix {
            let at = encoded.ids.len().min(1);
            encoded.ids.insert(at, prefix);
            encoded.type_ids.insert(at, 0);
        }
        if let (ColbertSide::Query, Some((token, attended))) = (side, self.expansion) {
            let pad = self.query_length.saturating_sub(encoded.ids.len());
            encoded.ids.extend(std::iter::repeat_n(token, pad));
            encoded.type_ids.extend(std::iter::repeat_n(0, pad));
            if !attended {
                encoded.query_only = pad;
            }
        }
        Ok(encoded)
    }

    /// The token ids documents leave out, sorted.
    pub fn skiplist(&self) -> &[u32] {
        &self.skiplist
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// colbert-tiny's settings as PyLate saved them (reference/make_colbert.py).
    fn fixture() -> (ModelInspection, ColbertSettings, TextTokenizer, serde_json::Value) {
        let dir = crate::testing::reference_dir(env!("CARGO_MANIFEST_DIR")).join("models/colbert-tiny");
        let inspection = ModelInspection {
            root: dir.clone(),
            ..Default::default()
        };
        let settings = ColbertSettings {
            path: dir.join("config_sentence_transformers.json"),
            query_prefix: "[Q] ".into(),
            document_prefix: "[D] ".into(),
            query_length: 16,
            document_length: 40,
            query_expansion: true,
            attend_to_expansion: false,
            skiplist_words: ColbertSettings::DEFAULT_SKIPLIST.chars().map(String::from).collect(),
            dense: Vec::new(),
        };
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"), 512).unwrap();
        let golden = serde_json::from_slice(&std::fs::read(dir.join("golden.json")).unwrap()).unwrap();
        (inspection, settings, tokenizer, golden)
    }

    fn ids(golden: &serde_json::Value, side: &str) -> Vec<(String, Vec<u32>)> {
        let texts: Vec<String> = serde_json::from_value(golden[side]["texts"].clone()).unwrap();
        let ids: Vec<Vec<u32>> = serde_json::from_value(golden[side]["token_ids"].clone()).unwrap();
        texts.into_iter().zip(ids).collect()
    }

    #[test]
    fn queries_and_documents_get_pylates_tokens() {
        let (inspection, settings, tokenizer, golden) = fixture();
        let encoder = ColbertEncoder::load(&inspection, &settings, &tokenizer).unwrap();
        let mask = tokenizer.token_id("[MASK]").unwrap();
        for (text, want) in ids(&golden, "queries") {
            let got = encoder.encode(&text, ColbertSide::Query).unwrap();
            assert_eq!(got.ids, want, "{text}");
            let expanded = got.ids.iter().rev().take_while(|&&id| id == mask).count();
            assert_eq!(got.query_only, expanded, "{text}");
            assert_eq!(got.type_ids, vec![0; 16]);
        }
        for (text, want) in ids(&golden, "documents") {
            let got = encoder.encode(&text, ColbertSide::Document).unwrap();
            assert_eq!(got.ids, want, "{text}");
            assert_eq!(got.query_only, 0);
        }
        let skiplist: Vec<u32> = serde_json::from_value(golden["skiplist"].clone()).unwrap();
        assert_eq!(
            encoder.skiplist(),
            skiplist,
            "punctuation, and [UNK] for what the vocabulary lacks"
        );
    }

    #[test]
    fn expansion_tokens_are_keys_when_attended_and_absent_without_expansion() {
        let (inspection, mut settings, tokenizer, _) = fixture();
        settings.attend_to_expansion = true;
        let attended = ColbertEncoder::load(&inspection, &settings, &tokenizer).unwrap();
        let query = attended.encode("a short query", ColbertSide::Query).unwrap();
        assert_eq!((query.ids.len(), query.query_only), (16, 0));
        settings.query_expansion = false;
        settings.query_prefix = String::new();
        let plain = ColbertEncoder::load(&inspection, &settings, &tokenizer).unwrap();
        let query = plain.encode("a short query", ColbertSide::Query).unwrap();
        let bare = tokenizer.encode("a short query", None).unwrap();
        assert_eq!(query.ids, bare.ids, "no prefix, no expansion");
    }

    #[test]
    fn a_length_past_the_models_inputs_is_refused_naming_the_key() {
        let (inspection, mut settings, tokenizer, _) = fixture();
        settings.document_length = 513;
        let err = ColbertEncoder::load(&inspection, &settings, &tokenizer)
            .unwrap_err()
            .to_string();
        assert!(err.contains("document_length") && err.contains("512"), "{err}");
    }

    #[test]
    fn a_prefix_the_tokenizer_lacks_is_refused_naming_the_key() {
        let (inspection, mut settings, tokenizer, _) = fixture();
        settings.document_prefix = "[DOC] ".into();
        let err = ColbertEncoder::load(&inspection, &settings, &tokenizer)
            .unwrap_err()
            .to_string();
        assert!(err.contains("document_prefix") && err.contains("[DOC] "), "{err}");
    }
}
