//! Fast tokenizers built from SentencePiece models give the token ids transformers' AutoTokenizer
//! (what sentence-transformers encodes with) gives on the same directory. The fixtures and the
//! expected ids come from `fixtures/sentencepiece/make.py` (transformers 5.24, sentencepiece 0.2):
//! small Unigram models trained with XLM-RoBERTa's, CamemBERT's, T5's, ALBERT's and DeBERTa-v2's piece layouts, on the
//! golden texts of the shared models plus edge cases (typed special tokens, `` and '', full-width
//! characters, runs of spaces).

use std::path::{Path, PathBuf};

use serde_json::Value;
use tessera_core::sentencepiece::{self, Family};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sentencepiece")
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap()
}

fn check(dir: &str, family: Family) {
    let expected = expected();
    let texts: Vec<String> = serde_json::from_value(expected["texts"].clone()).unwrap();
    let want = &expected["families"][dir];
    let root = fixtures().join(dir);
    let file = sentencepiece::find(&root).unwrap();
    let (tokenizer, found) = sentencepiece::from_model(&root, &file).unwrap();
    assert_eq!(found, family);
    assert_eq!(want["tokenizer_class"], family.class_name());
    assert_eq!(
        tokenizer.get_vocab_size(true) as u64,
        want["vocab_size"].as_u64().unwrap()
    );
    let want_ids: Vec<Vec<u32>> = serde_json::from_value(want["transformers"].clone()).unwrap();
    assert_eq!(want_ids.len(), texts.len());
    for (text, want) in texts.iter().zip(&want_ids) {
        let got = tokenizer.encode(text.as_str(), true).unwrap();
        assert_eq!(got.get_ids(), want.as_slice(), "{family:?} on {text:?}");
    }
}

#[test]
fn xlm_roberta_ids_match_transformers() {
    check("xlm-roberta", Family::XlmRoberta);
}

#[test]
fn camembert_ids_match_transformers() {
    check("camembert", Family::Camembert);
}

#[test]
fn t5_ids_match_transformers() {
    check("t5", Family::T5);
}

#[test]
fn albert_ids_match_transformers() {
    check("albert", Family::Albert);
}

/// DeBERTa-v3's `spm.model` as transformers 5 builds it, as configured and with
/// `do_lower_case`, `split_by_punct` and no prefix space.
#[test]
fn deberta_v2_ids_match_transformers() {
    check("deberta-v2", Family::DebertaV2);
    check("deberta-v2-lower-punct", Family::DebertaV2);
}

/// A copy of a fixture family with `tokenizer_config.json` replaced (or removed when `None`).
fn with_config(family: &str, config: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixtures().join(family)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let config_path = dir.path().join("tokenizer_config.json");
    match config {
        Some(text) => std::fs::write(&config_path, text).unwrap(),
        None => std::fs::remove_file(&config_path).unwrap(),
    }
    dir
}

fn error_of(dir: &Path) -> String {
    let file = sentencepiece::find(dir).unwrap();
    match sentencepiece::from_model(dir, &file) {
        Ok((_, family)) => panic!("built a {family:?} tokenizer"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_class_comes_from_config_json_when_tokenizer_config_is_silent() {
    let dir = with_config("albert", None);
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "albert"}"#).unwrap();
    let file = sentencepiece::find(dir.path()).unwrap();
    let (_, family) = sentencepiece::from_model(dir.path(), &file).unwrap();
    assert_eq!(family, Family::Albert);

    // XLM-RoBERTa's file name is enough on its own.
    let dir = with_config("xlm-roberta", None);
    let file = sentencepiece::find(dir.path()).unwrap();
    let (_, family) = sentencepiece::from_model(dir.path(), &file).unwrap();
    assert_eq!(family, Family::XlmRoberta);
}

#[test]
fn spiece_model_without_a_class_asks_for_one() {
    let dir = with_config("t5", None);
    let message = error_of(dir.path());
    assert!(
        message.contains("spiece.model") && message.contains("tokenizer_class"),
        "{message}"
    );
}

#[test]
fn an_unknown_class_is_named() {
    let dir = with_config("t5", Some(r#"{"tokenizer_class": "PegasusTokenizerFast"}"#));
    let message = error_of(dir.path());
    assert!(
        message.contains("PegasusTokenizerFast") && message.contains("save_pretrained"),
        "{message}"
    );
}

#[test]
fn a_bpe_model_is_refused_with_the_reason() {
    let message = error_of(&fixtures().join("bpe"));
    assert!(message.contains("Bpe") && message.contains("Unigram"), "{message}");
}

#[test]
fn a_file_that_is_not_a_sentencepiece_model_is_refused() {
    let dir = with_config("xlm-roberta", None);
    std::fs::write(
        dir.path().join("sentencepiece.bpe.model"),
        b"\xff\xff\xff\xff not protobuf",
    )
    .unwrap();
    let message = error_of(dir.path());
    assert!(message.contains("not a SentencePiece model"), "{message}");
    std::fs::write(dir.path().join("sentencepiece.bpe.model"), b"").unwrap();
    let message = error_of(dir.path());
    assert!(
        message.contains("XLM-RoBERTa") || message.contains("pieces"),
        "{message}"
    );
}

#[test]
fn declared_added_tokens_keep_their_ids() {
    let expected = expected();
    let size = expected["families"]["t5"]["vocab_size"].as_u64().unwrap();
    let config = format!(
        r#"{{"tokenizer_class": "T5Tokenizer", "added_tokens_decoder": {{
            "1": {{"content": "</s>", "special": true}},
            "{size}": {{"content": "<domain>", "special": true, "normalized": false}}}}}}"#
    );
    let dir = with_config("t5", Some(&config));
    let file = sentencepiece::find(dir.path()).unwrap();
    let (tokenizer, _) = sentencepiece::from_model(dir.path(), &file).unwrap();
    assert_eq!(tokenizer.token_to_id("<domain>"), Some(size as u32));
    let ids = tokenizer.encode("the <domain> text", true).unwrap();
    assert!(ids.get_ids().contains(&(size as u32)), "{:?}", ids.get_ids());

    let wrong = r#"{"tokenizer_class": "T5Tokenizer", "added_tokens_decoder": {"7": {"content": "<domain>"}}}"#;
    let dir = with_config("t5", Some(wrong));
    let message = error_of(dir.path());
    assert!(message.contains("<domain>") && message.contains("token 7"), "{message}");
}

#[test]
fn custom_special_token_strings_are_used_in_the_template() {
    let config = r#"{"tokenizer_class": "AlbertTokenizer", "cls_token": {"content": "[CLS]", "__type": "AddedToken"},
        "sep_token": "[SEP]", "do_lower_case": false, "keep_accents": true}"#;
    let dir = with_config("albert", Some(config));
    let file = sentencepiece::find(dir.path()).unwrap();
    let (tokenizer, _) = sentencepiece::from_model(dir.path(), &file).unwrap();
    let encoding = tokenizer.encode("Café", true).unwrap();
    let tokens = encoding.get_tokens();
    assert_eq!(tokens.first().map(String::as_str), Some("[CLS]"));
    assert_eq!(tokens.last().map(String::as_str), Some("[SEP]"));
    // keep_accents and no lower-casing: the accented capitalized word is not folded.
    let text: String = tokens[1..tokens.len() - 1].concat();
    assert!(text.contains('C'), "{tokens:?}");
}
