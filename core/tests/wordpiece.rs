//! vocab.txt builds a tokenizer only for the classes that are BertTokenizerFast underneath.

use tessera_core::wordpiece;

fn model_dir(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s"].join("\n");
    std::fs::write(dir.path().join("vocab.txt"), vocab).unwrap();
    std::fs::write(dir.path().join("tokenizer_config.json"), config).unwrap();
    dir
}

#[test]
fn bert_classes_build_the_wordpiece_tokenizer() {
    for class in [
        "BertTokenizer",
        "BertTokenizerFast",
        "DistilBertTokenizerFast",
        "ElectraTokenizer",
    ] {
        let dir = model_dir(&format!(r#"{{"tokenizer_class": "{class}"}}"#));
        let tokenizer = wordpiece::from_vocab(dir.path()).unwrap();
        let ids = tokenizer.encode("Hello worlds", true).unwrap();
        assert_eq!(ids.get_ids(), [2, 5, 6, 7, 3], "{class}");
    }
}

#[test]
fn other_classes_are_refused_with_the_class_named() {
    let dir = model_dir(r#"{"tokenizer_class": "MPNetTokenizer"}"#);
    let message = wordpiece::from_vocab(dir.path()).unwrap_err().to_string();
    assert!(
        message.contains("MPNetTokenizer") && message.contains("tokenizer_config.json"),
        "{message}"
    );
    assert!(message.contains("save_pretrained"), "{message}");
}
