//! Building the fast tokenizer in memory when a BERT-family model ships only what the slow
//! tokenizer used (`vocab.txt` and `tokenizer_config.json`), with the same normalization and
//! special tokens as transformers' `BertTokenizerFast`.

use std::path::Path;

use serde_json::Value;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::LoadError;

/// Classes whose fast tokenizer is exactly `BertTokenizerFast` over their vocab.txt.
const BERT_CLASSES: [&str; 4] = [
    "BertTokenizer",
    "DistilBertTokenizer",
    "ElectraTokenizer",
    "LayoutLMTokenizer",
];

/// A WordPiece tokenizer from `root/vocab.txt`, configured by `root/tokenizer_config.json`.
pub fn from_vocab(root: &Path) -> Result<Tokenizer, LoadError> {
    let vocab = root.join("vocab.txt");
    let config_path = root.join("tokenizer_config.json");
    let config: Value = match std::fs::read(&config_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| LoadError::json(&config_path, &e))?,
        Err(_) => Value::Null,
    };
    if let Some(class) = config.get("tokenizer_class").and_then(Value::as_str) {
        if !BERT_CLASSES.contains(&class.strip_suffix("Fast").unwrap_or(class)) {
            return Err(LoadError::Tokenizer {
                file: config_path,
                message: format!(
                    "`tokenizer_class` is `{class}`; a tokenizer is built from vocab.txt only for BERT-style \
                     WordPiece classes ({}), because other classes wrap inputs differently; save tokenizer.json \
                     with `AutoTokenizer.from_pretrained(dir).save_pretrained(dir)`",
                    BERT_CLASSES.join(", ")
                ),
            });
        }
    }
    let text = |key: &str, default: &str| config.get(key).and_then(Value::as_str).unwrap_or(default).to_string();
    let lowercase = config.get("do_lower_case").and_then(Value::as_bool).unwrap_or(true);
    let strip_accents = config.get("strip_accents").and_then(Value::as_bool);
    let chinese = config
        .get("tokenize_chinese_chars")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let (unk, sep, cls, pad, mask) = (
        text("unk_token", "[UNK]"),
        text("sep_token", "[SEP]"),
        text("cls_token", "[CLS]"),
        text("pad_token", "[PAD]"),
        text("mask_token", "[MASK]"),
    );

    let broken = |message: String| LoadError::Tokenizer {
        file: vocab.clone(),
        message,
    };
    let path = vocab.to_str().ok_or_else(|| broken("the path is not UTF-8".into()))?;
    let model = WordPiece::from_file(path)
        .unk_token(unk.clone())
        .build()
        .map_err(|e| broken(e.to_string()))?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(true, chinese, strip_accents, lowercase)))
        .map_err(|e| broken(e.to_string()))?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_decoder(Some(WordPieceDecoder::default()));
    let id = |token: &str| {
        tokenizer
            .token_to_id(token)
            .ok_or_else(|| broken(format!("`{token}` is not in the vocabulary")))
    };
    let (sep_id, cls_id) = (id(&sep)?, id(&cls)?);
    tokenizer.with_post_processor(Some(BertProcessing::new((sep.clone(), sep_id), (cls.clone(), cls_id))));
    let specials: Vec<AddedToken> = [pad, unk, cls, sep, mask]
        .into_iter()
        .map(|t| AddedToken::from(t, true))
        .collect();
    tokenizer
        .add_special_tokens(specials)
        .map_err(|e| broken(e.to_string()))?;
    Ok(tokenizer)
}
