//! Models without tokenizer.json: the WordPiece tokenizer built from `vocab.txt` and
//! `tokenizer_config.json` gives sentence-transformers' token ids on the 40 golden texts.

use std::path::Path;

use serde_json::{json, Value};
use tessera_integration_tests::{assert_parity, run, shared_model, Server};

/// A copy of `model` with tokenizer.json replaced by the vocab.txt it was made from.
fn without_tokenizer_json(model: &Path, dir: &Path) {
    for entry in std::fs::read_dir(model).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        if path.is_dir() {
            std::fs::create_dir_all(dir.join(&name)).unwrap();
            for inner in std::fs::read_dir(&path).unwrap() {
                let inner = inner.unwrap().path();
                std::fs::copy(&inner, dir.join(&name).join(inner.file_name().unwrap())).unwrap();
            }
        } else if name != "tokenizer.json" {
            std::fs::copy(&path, dir.join(&name)).unwrap();
        }
    }
    let tokenizer: Value = serde_json::from_slice(&std::fs::read(model.join("tokenizer.json")).unwrap()).unwrap();
    let vocab = tokenizer["model"]["vocab"].as_object().unwrap();
    let mut tokens: Vec<(u64, &str)> = vocab.iter().map(|(t, id)| (id.as_u64().unwrap(), t.as_str())).collect();
    tokens.sort();
    let text: String = tokens.iter().map(|(_, t)| format!("{t}\n")).collect();
    std::fs::write(dir.join("vocab.txt"), text).unwrap();
}

/// The finding with `code` in a `validate-model --json` report.
fn finding(stdout: &[u8], code: &str) -> Value {
    let report: Value = serde_json::from_slice(stdout).unwrap();
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == code)
        .cloned()
        .unwrap_or_else(|| panic!("no {code} in {report}"))
}

#[test]
fn vocab_txt_gives_the_golden_token_ids_and_vectors() {
    let Some(model) = shared_model("bert-tiny") else { return };
    let dir = tempfile::tempdir().unwrap();
    without_tokenizer_json(&model, dir.path());

    let out = run(&["validate-model", dir.path().to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    finding(&out.stdout, "tokenizer-built-from-vocab");

    let golden: Value = serde_json::from_slice(&std::fs::read(model.join("golden.json")).unwrap()).unwrap();
    let server = Server::start(dir.path(), &["--max-client-batch-size", "64", "--auto-truncate"]);
    assert!(
        server.log().contains("built the WordPiece tokenizer"),
        "{}",
        server.log()
    );
    let tokens: Vec<Vec<Value>> = server
        .post("/tokenize", &json!({"inputs": golden["texts"]}))
        .json()
        .unwrap();
    let want: Vec<Vec<u32>> = serde_json::from_value(golden["token_ids"].clone()).unwrap();
    let max_len = golden["max_seq_length"].as_u64().unwrap_or(512) as usize;
    for (i, (got, want)) in tokens.iter().zip(&want).enumerate() {
        let ids: Vec<u32> = got
            .iter()
            .map(|t| t["id"].as_u64().unwrap() as u32)
            .take(max_len)
            .collect();
        // /tokenize does not truncate; the goldens are truncated at max_seq_length.
        let full_prefix = ids.len() >= want.len() - 1 && ids[..want.len() - 1] == want[..want.len() - 1];
        assert!(ids == *want || full_prefix, "token ids of text {i}");
    }
    let vectors: Vec<Vec<f32>> = server
        .post("/embed", &json!({"inputs": golden["texts"]}))
        .json()
        .unwrap();
    let want_vectors: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings"].clone()).unwrap();
    for (i, (g, w)) in vectors.iter().zip(&want_vectors).enumerate() {
        assert_parity(g, w, &format!("text {i} with the built tokenizer"));
    }
}

#[test]
fn no_tokenizer_at_all_lists_what_was_looked_for() {
    let Some(model) = shared_model("bert-tiny") else { return };
    let dir = tempfile::tempdir().unwrap();
    without_tokenizer_json(&model, dir.path());
    std::fs::remove_file(dir.path().join("vocab.txt")).unwrap();
    let out = run(&["serve", "--model-id", dir.path().to_str().unwrap(), "--port", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tokenizer.json") && err.contains("vocab.txt") && err.contains("spiece.model"),
        "{err}"
    );
}

fn sentencepiece_fixture(family: &str) -> std::path::PathBuf {
    tessera_integration_tests::workspace()
        .join("core/tests/fixtures/sentencepiece")
        .join(family)
}

/// bert-tiny's weights with an XLM-RoBERTa SentencePiece tokenizer in place of tokenizer.json:
/// the ids must be transformers' (the fixture's expected.json), over HTTP.
#[test]
fn a_sentencepiece_model_builds_the_tokenizer_its_class_uses() {
    let Some(model) = shared_model("bert-tiny") else { return };
    let dir = tempfile::tempdir().unwrap();
    without_tokenizer_json(&model, dir.path());
    std::fs::remove_file(dir.path().join("vocab.txt")).unwrap();
    let fixture = sentencepiece_fixture("xlm-roberta");
    for file in ["sentencepiece.bpe.model", "tokenizer_config.json"] {
        std::fs::copy(fixture.join(file), dir.path().join(file)).unwrap();
    }

    let out = run(&["validate-model", dir.path().to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let finding = finding(&out.stdout, "tokenizer-built-from-sentencepiece");
    assert!(
        finding["message"].as_str().unwrap().contains("XLMRobertaTokenizer"),
        "{finding}"
    );

    let expected: Value =
        serde_json::from_slice(&std::fs::read(fixture.parent().unwrap().join("expected.json")).unwrap()).unwrap();
    let server = Server::start(dir.path(), &["--max-client-batch-size", "64"]);
    assert!(
        server.log().contains("built the XLMRobertaTokenizer tokenizer"),
        "{}",
        server.log()
    );
    let tokens: Vec<Vec<Value>> = server
        .post("/tokenize", &json!({"inputs": expected["texts"]}))
        .json()
        .unwrap();
    let want: Vec<Vec<u32>> =
        serde_json::from_value(expected["families"]["xlm-roberta"]["transformers"].clone()).unwrap();
    assert_eq!(tokens.len(), want.len());
    for (i, (got, want)) in tokens.iter().zip(&want).enumerate() {
        let ids: Vec<u32> = got.iter().map(|t| t["id"].as_u64().unwrap() as u32).collect();
        assert_eq!(&ids, want, "token ids of text {i}");
    }
    let vectors: Vec<Vec<f32>> = server
        .post("/embed", &json!({"inputs": ["Hello world", "Café au lait"]}))
        .json()
        .unwrap();
    assert_eq!(vectors.len(), 2);
}

#[test]
fn a_sentencepiece_model_that_cannot_be_converted_is_named_with_the_reason() {
    let Some(model) = shared_model("bert-tiny") else { return };
    let dir = tempfile::tempdir().unwrap();
    without_tokenizer_json(&model, dir.path());
    std::fs::remove_file(dir.path().join("vocab.txt")).unwrap();
    std::fs::remove_file(dir.path().join("tokenizer_config.json")).unwrap();
    std::fs::write(dir.path().join("sentencepiece.bpe.model"), b"\x0a\x03abc").unwrap();
    let out = run(&["validate-model", dir.path().to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let finding = finding(&out.stdout, "tokenizer-unparsable");
    assert!(
        finding["file"].as_str().unwrap().ends_with("sentencepiece.bpe.model"),
        "{finding}"
    );
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("not a SentencePiece model"),
        "{finding}"
    );
    assert!(
        finding["fix"].as_str().unwrap().contains("save_pretrained"),
        "{finding}"
    );

    // A real model whose class tessera cannot convert: the class is named.
    std::fs::copy(
        sentencepiece_fixture("t5").join("spiece.model"),
        dir.path().join("sentencepiece.bpe.model"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"tokenizer_class": "BarthezTokenizer"}"#,
    )
    .unwrap();
    let out = run(&["serve", "--model-id", dir.path().to_str().unwrap(), "--port", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("BarthezTokenizer") && err.contains("sentencepiece.bpe.model"),
        "{err}"
    );
}
