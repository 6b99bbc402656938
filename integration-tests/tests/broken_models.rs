//! A corpus of broken model directories generated from the tiny models, one defect each. For
//! every case `validate-model --json` must report the code with its severity and name the file
//! and the key or tensor; `serve` must refuse errors before loading weights. Nothing may panic
//! or hang (the harness kills a run after 60 s).

use std::path::PathBuf;

use serde_json::{json, Value};
use tessera_integration_tests::{copy_dir, run, shared_model};

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn from(model: &str) -> Option<Case> {
        let source = shared_model(model)?;
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&source, dir.path());
        Some(Case { dir })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn edit_json(&self, rel: &str, edit: impl FnOnce(&mut Value)) -> &Self {
        let path = self.path(rel);
        let mut value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(&mut value);
        std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
        self
    }

    fn config(&self, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> &Self {
        self.edit_json("config.json", |v| edit(v.as_object_mut().unwrap()))
    }

    /// Rewrites the safetensors header, keeping the data bytes.
    fn header(&self, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> &Self {
        let path = self.path("model.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        edit(header.as_object_mut().unwrap());
        let header = serde_json::to_vec(&header).unwrap();
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&header);
        out.extend_from_slice(&bytes[8 + n..]);
        std::fs::write(&path, out).unwrap();
        self
    }

    fn write(&self, rel: &str, contents: &str) -> &Self {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
        self
    }

    fn remove(&self, rel: &str) -> &Self {
        let path = self.path(rel);
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
        self
    }

    fn validate(&self) -> (Option<i32>, Value) {
        let out = run(&["validate-model", self.dir.path().to_str().unwrap(), "--json"]);
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "--json output does not parse ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (out.status.code(), report)
    }

    /// Asserts a finding with `code` and `severity` whose file ends with `file` and whose
    /// subject contains `subject`; returns it.
    fn expect(&self, code: &str, severity: &str, file: &str, subject: Option<&str>) -> Value {
        let (status, report) = self.validate();
        check_schema(&report);
        let finding = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == code)
            .unwrap_or_else(|| panic!("no `{code}` finding in {:#}", report["findings"]))
            .clone();
        assert_eq!(finding["severity"], severity, "{finding}");
        let path = finding["file"]
            .as_str()
            .unwrap_or_else(|| panic!("finding names no file: {finding}"));
        assert!(path.ends_with(file), "`{code}` names {path}, expected …{file}");
        if let Some(subject) = subject {
            let got = finding["subject"]
                .as_str()
                .unwrap_or_else(|| panic!("finding names no key or tensor: {finding}"));
            assert!(got.contains(subject), "`{code}` is about `{got}`, expected `{subject}`");
        }
        assert!(!finding["message"].as_str().unwrap().is_empty());
        assert!(
            finding["fix"].as_str().is_some_and(|f| !f.is_empty()),
            "no fix: {finding}"
        );
        let servable = report["servable"].as_bool().unwrap();
        if severity == "error" {
            assert_eq!(status, Some(1), "errors exit 1");
            assert!(!servable);
        }
        finding
    }

    /// `serve` refuses with the same code, before binding a port.
    fn serve_refuses(&self, code: &str) {
        let out = run(&["serve", "--model-id", self.dir.path().to_str().unwrap(), "--port", "0"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(code), "serve does not say `{code}`: {err}");
    }
}

/// The documented `--json` schema (docs/validate-model.md), field by field.
fn check_schema(r: &Value) {
    assert_eq!(r["schema_version"], 1);
    assert!(r["model"].is_string());
    assert!(r["servable"].is_boolean());
    for key in [
        "architecture",
        "backend",
        "max_input_length",
        "dtype",
        "dtype_kernel",
        "pooling",
        "weights",
    ] {
        assert!(r.get(key).is_some(), "missing `{key}`");
    }
    assert!(r["evidence"].is_array() && r["declined"].is_array() && r["passed_over"].is_array());
    assert!(r["tokenizer"].is_object());
    for f in r["findings"].as_array().unwrap() {
        assert!(
            ["error", "warning", "info"].contains(&f["severity"].as_str().unwrap()),
            "{f}"
        );
        assert!(
            f["code"]
                .as_str()
                .unwrap()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '-'),
            "{f}"
        );
        for key in ["file", "subject", "message", "fix"] {
            assert!(f.get(key).is_some(), "finding without `{key}`: {f}");
        }
    }
    for e in r["evidence"].as_array().unwrap() {
        assert!(["tensor", "config", "name"].contains(&e["source"].as_str().unwrap()));
        assert!(e["subject"].is_string() && e["statement"].is_string());
    }
}

macro_rules! case {
    ($model:expr) => {
        match Case::from($model) {
            Some(case) => case,
            None => return,
        }
    };
}

#[test]
fn config_defects() {
    let c = case!("bert-tiny");
    c.remove("config.json")
        .expect("config-missing", "error", "config.json", None);
    c.serve_refuses("config-missing");

    let c = case!("bert-tiny");
    c.write("config.json", "{\n  \"hidden_size\": 32,\n  \"vocab_size\": ,\n}");
    let f = c.expect("config-invalid-json", "error", "config.json", None);
    assert!(f["message"].as_str().unwrap().contains("line 3"), "{f}");

    let c = case!("bert-tiny");
    c.write("config.json", "[1, 2]")
        .expect("config-invalid-json", "error", "config.json", None);

    let c = case!("bert-tiny");
    c.config(|m| {
        m.remove("hidden_size");
    })
    .expect("config-key-missing", "error", "config.json", Some("hidden_size"));

    let c = case!("jina-tiny-finetuned");
    c.config(|m| {
        m.remove("num_attention_heads");
    })
    .expect(
        "config-key-missing",
        "error",
        "config.json",
        Some("num_attention_heads"),
    );

    let c = case!("bert-tiny");
    c.config(|m| {
        m.insert("num_attention_heads".into(), json!(5));
    })
    .expect(
        "heads-not-dividing-hidden",
        "error",
        "config.json",
        Some("num_attention_heads"),
    );
    c.serve_refuses("heads-not-dividing-hidden");

    let c = case!("bert-tiny");
    c.config(|m| {
        m.insert("num_attention_heads".into(), json!(0));
    })
    .expect(
        "config-value-invalid",
        "error",
        "config.json",
        Some("num_attention_heads"),
    );

    let c = case!("bert-tiny");
    let f = c
        .config(|m| {
            m.insert("hidden_act".into(), json!("mish"));
        })
        .expect("hidden-act-unsupported", "error", "config.json", Some("hidden_act"));
    assert!(
        f["message"].as_str().unwrap().contains("gelu_new"),
        "lists the supported values: {f}"
    );
}

#[test]
fn position_and_feed_forward_defects() {
    let c = case!("bert-tiny");
    let f = c
        .config(|m| {
            m.insert("position_embedding_type".into(), json!("relative_key"));
        })
        .expect(
            "position-type-unsupported",
            "error",
            "config.json",
            Some("position_embedding_type"),
        );
    assert!(f["message"].as_str().unwrap().contains("absolute"), "{f}");

    let c = case!("jina-tiny-finetuned");
    let f = c
        .config(|m| {
            m.insert("feed_forward_type".into(), json!("swiglu"));
        })
        .expect(
            "feed-forward-type-unsupported",
            "error",
            "config.json",
            Some("feed_forward_type"),
        );
    assert!(f["message"].as_str().unwrap().contains("reglu"), "{f}");

    // The tensors win over config.json, with a warning naming the key.
    let c = case!("jina-tiny-finetuned");
    c.config(|m| {
        m.remove("position_embedding_type");
    })
    .expect(
        "position-type-contradicts-weights",
        "warning",
        "config.json",
        Some("position_embedding_type"),
    );
    let (status, report) = c.validate();
    assert_eq!((status, report["backend"].clone()), (Some(0), json!("flash")));
    assert!(report["architecture"].as_str().unwrap().starts_with("jina-bert"));

    let c = case!("jina-tiny-finetuned");
    c.config(|m| {
        m.insert("feed_forward_type".into(), json!("original"));
    })
    .expect(
        "feed-forward-type-contradicts-weights",
        "warning",
        "config.json",
        Some("feed_forward_type"),
    );

    let c = case!("bert-tiny");
    c.config(|m| {
        m.insert("position_embedding_type".into(), json!("alibi"));
    })
    .expect(
        "position-type-contradicts-weights",
        "warning",
        "config.json",
        Some("position_embedding_type"),
    );
    let (status, report) = c.validate();
    assert_eq!((status, report["backend"].clone()), (Some(0), json!("flash")));
    assert!(report["architecture"].as_str().unwrap().starts_with("bert"));
}

#[test]
fn vocab_defects() {
    let c = case!("bert-tiny");
    let f = c
        .config(|m| {
            m.insert("vocab_size".into(), json!(30000));
        })
        .expect(
            "vocab-smaller-than-embeddings",
            "error",
            "config.json",
            Some("vocab_size"),
        );
    assert!(f["fix"].as_str().unwrap().contains("30522"), "{f}");
    // One cause, one finding: the table's shape and the tokenizer are consequences.
    let (_, report) = c.validate();
    let errors = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .count();
    assert_eq!(errors, 1, "{report:#}");

    let c = case!("jina-tiny");
    let f = c
        .config(|m| {
            m.insert("vocab_size".into(), json!(30525));
        })
        .expect(
            "vocab-smaller-than-embeddings",
            "error",
            "config.json",
            Some("vocab_size"),
        );
    assert!(f["fix"].as_str().unwrap().contains("30528"), "{f}");
}

#[test]
fn tokenizer_defects() {
    let c = case!("bert-tiny");
    c.remove("tokenizer.json")
        .expect("tokenizer-missing", "error", "tokenizer.json", None);
    c.serve_refuses("tokenizer-missing");

    let c = case!("bert-tiny");
    c.write("tokenizer.json", "{\"version\": \"1.0\", \"model\": 42}")
        .expect("tokenizer-unparsable", "error", "tokenizer.json", None);

    let c = case!("bert-tiny");
    c.write("tokenizer.json", "not json at all")
        .expect("tokenizer-unparsable", "error", "tokenizer.json", None);
}

#[test]
fn weight_file_defects() {
    let c = case!("bert-tiny");
    c.remove("model.safetensors")
        .expect("weights-missing", "error", "model.safetensors", None);

    let c = case!("bert-tiny");
    let bytes = std::fs::read(c.path("model.safetensors")).unwrap();
    c.remove("model.safetensors");
    std::fs::write(c.path("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    c.expect("weights-truncated", "error", "model.safetensors", Some("."));
    c.serve_refuses("weights-truncated");

    let c = case!("bert-tiny");
    c.remove("model.safetensors")
        .write("model.safetensors", "\u{1}\u{2}garbage that is not safetensors");
    c.expect("weights-corrupt", "error", "model.safetensors", None);

    let c = case!("bert-tiny");
    c.remove("model.safetensors").write("model.safetensors", "");
    c.expect("weights-corrupt", "error", "model.safetensors", None);

    let c = case!("bert-tiny");
    c.header(|h| {
        let t = h.get_mut("encoder.layer.0.output.dense.weight").unwrap();
        t["dtype"] = json!("I32");
    })
    .expect(
        "weights-dtype-unsupported",
        "error",
        "model.safetensors",
        Some("encoder.layer.0.output.dense.weight"),
    );

    let c = case!("bert-tiny");
    c.remove("model.safetensors").write(
        "model.safetensors.index.json",
        r#"{"weight_map": {"embeddings.word_embeddings.weight": "model-00001-of-00002.safetensors"}}"#,
    );
    c.expect("weights-missing", "error", "model-00001-of-00002.safetensors", None);

    let c = case!("bert-tiny");
    c.remove("model.safetensors")
        .write("model.safetensors.index.json", "{\"metadata\": {}}");
    c.expect("weights-index-invalid", "error", "model.safetensors.index.json", None);
}

#[test]
fn tensor_defects() {
    let c = case!("bert-tiny");
    c.header(|h| {
        let t = h.remove("encoder.layer.1.output.dense.weight").unwrap();
        h.insert("encoder.layer.1.output.dense.weigth".into(), t);
    });
    c.expect(
        "tensor-missing",
        "error",
        "model.safetensors",
        Some("encoder.layer.1.output.dense.weight"),
    );
    c.expect(
        "tensor-unexpected",
        "warning",
        "model.safetensors",
        Some("encoder.layer.1.output.dense.weigth"),
    );
    c.serve_refuses("tensor-missing");

    let c = case!("bert-tiny");
    c.config(|m| {
        m.insert("intermediate_size".into(), json!(64));
    })
    .expect(
        "tensor-shape-mismatch",
        "error",
        "config.json",
        Some("intermediate_size"),
    );

    let c = case!("jina-tiny-finetuned");
    c.config(|m| {
        m.insert("intermediate_size".into(), json!(64));
    })
    .expect(
        "tensor-shape-mismatch",
        "error",
        "config.json",
        Some("intermediate_size"),
    );

    let c = case!("bert-tiny");
    c.config(|m| {
        m.insert("num_hidden_layers".into(), json!(4));
    })
    .expect(
        "layers-missing-in-weights",
        "error",
        "config.json",
        Some("num_hidden_layers"),
    );

    let c = case!("jina-tiny-finetuned");
    c.header(|h| {
        h.remove("encoder.layer.0.mlp.gated_layers.weight");
    })
    .expect(
        "feed-forward-unrecognized",
        "error",
        "model.safetensors",
        Some("mlp.gated_layers.weight"),
    );
}

#[test]
fn sentence_transformers_defects() {
    let c = case!("bert-tiny");
    c.write(
        "1_Pooling/config.json",
        r#"{"word_embedding_dimension": 32, "pooling_mode_mean_tokens": false}"#,
    )
    .expect(
        "pooling-config-no-mode",
        "error",
        "1_Pooling/config.json",
        Some("pooling_mode"),
    );
    c.serve_refuses("pooling-config-no-mode");

    let c = case!("bert-tiny");
    c.write(
        "1_Pooling/config.json",
        r#"{"pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": true}"#,
    )
    .expect(
        "pooling-config-several-modes",
        "error",
        "1_Pooling/config.json",
        Some("pooling_mode"),
    );

    let c = case!("bert-tiny");
    c.remove("1_Pooling").write("modules.json", "[]");
    c.expect("pooling-not-configured", "error", "1_Pooling/config.json", None);

    let c = case!("bert-tiny");
    c.write("modules.json", "{ not json")
        .expect("st-file-invalid", "error", "modules.json", None);

    let c = case!("bert-tiny");
    c.write("sentence_bert_config.json", r#"{"max_seq_length": "long"}"#)
        .expect(
            "max-seq-length-invalid",
            "error",
            "sentence_bert_config.json",
            Some("max_seq_length"),
        );

    let c = case!("bert-tiny");
    c.write("sentence_bert_config.json", r#"{"max_seq_length": 1024}"#)
        .expect(
            "max-seq-length-exceeds-positions",
            "warning",
            "sentence_bert_config.json",
            Some("max_seq_length"),
        );

    let with_dense = r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
        {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
        {"idx":2,"name":"2","path":"2_Dense","type":"sentence_transformers.models.Dense"}]"#;
    let c = case!("bert-tiny");
    c.write("modules.json", with_dense)
        .expect("dense-config-missing", "error", "2_Dense/config.json", None);

    let c = case!("bert-tiny");
    c.write("modules.json", with_dense).write(
        "2_Dense/config.json",
        r#"{"in_features": 32, "out_features": 8, "bias": true, "activation_function": "torch.nn.modules.activation.Mish"}"#,
    );
    c.expect(
        "dense-activation-unsupported",
        "error",
        "2_Dense/config.json",
        Some("activation_function"),
    );
    c.expect(
        "dense-weights-missing",
        "error",
        "2_Dense/model.safetensors",
        Some("linear.weight"),
    );
}

#[test]
fn no_backend_names_every_backend_tried() {
    let c = case!("bert-tiny");
    c.header(|h| {
        let t = h.remove("embeddings.word_embeddings.weight").unwrap();
        h.insert("tok_embeddings.weight".into(), t);
    });
    let (status, report) = c.validate();
    assert_eq!(status, Some(1));
    let declined: Vec<&str> = report["declined"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["backend"].as_str().unwrap())
        .collect();
    assert!(
        declined.contains(&"bert") && declined.contains(&"jina-bert"),
        "{declined:?}"
    );
    let no_backend = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "no-backend")
        .unwrap();
    assert!(
        no_backend["message"].as_str().unwrap().contains("jina-bert:"),
        "{no_backend}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = run(&["validate-model", "/nonexistent/dir"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["validate-model"]);
    assert_eq!(out.status.code(), Some(2));
}
