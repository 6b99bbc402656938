//! The repository's own reference models (`reference/models`, made by `reference/make_*.py`)
//! and what the end-to-end tests do with them: read their goldens, copy and edit them, and ask
//! `validate-model` about them.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// `reference/models/NAME`.
pub fn model(name: &str) -> PathBuf {
    crate::workspace().join("reference/models").join(name)
}

/// The model's `golden.json`.
pub fn golden(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(model(name).join("golden.json")).expect("golden.json"))
        .expect("golden parses")
}

/// A writable copy of the model.
pub fn copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    crate::copy_dir(&model(name), dir.path());
    dir
}

/// A copy of the static embedding model `name` laid out as sentence-transformers 3 and 4 saved
/// one (static-retrieval-mrl-en-v1): the module's tokenizer.json and vectors in
/// `0_StaticEmbedding/`, the modules under their old type names.
pub fn static_in_module_dir(name: &str) -> tempfile::TempDir {
    let dir = copy(name);
    let module = dir.path().join("0_StaticEmbedding");
    std::fs::create_dir(&module).expect("module directory");
    for file in ["tokenizer.json", "model.safetensors"] {
        std::fs::rename(dir.path().join(file), module.join(file)).expect("move into the module");
    }
    edit_json(&dir.path().join("modules.json"), |modules| {
        for module in modules.as_array_mut().expect("a list") {
            let class = module["type"]
                .as_str()
                .and_then(|t| t.rsplit('.').next())
                .unwrap_or_default();
            module["type"] = Value::from(format!("sentence_transformers.models.{class}"));
        }
        modules[0]["path"] = Value::from("0_StaticEmbedding");
    });
    dir
}

/// Rewrites the JSON file at `path` through `edit`.
pub fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let read = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut value: Value = serde_json::from_slice(&read).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    edit(&mut value);
    std::fs::write(path, serde_json::to_vec_pretty(&value).expect("json")).expect("write the file");
}

/// Rewrites `dir/config.json` through `edit`.
pub fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    edit_json(&dir.join("config.json"), |config| {
        edit(config.as_object_mut().expect("an object"))
    });
}

/// `tessera validate-model DIR --json`: the exit code and the report.
pub fn validate(dir: &Path) -> (Option<i32>, Value) {
    let out = crate::run(&["validate-model", dir.to_str().expect("utf-8 path"), "--json"]);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--json does not parse ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), report)
}

/// A golden's list of vectors.
pub fn vectors(value: &Value) -> Vec<Vec<f32>> {
    serde_json::from_value(value.clone()).expect("a list of vectors")
}

/// The subjects (key or tensor names) of the report's evidence.
pub fn evidence_subjects(report: &Value) -> Vec<&str> {
    report["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .filter_map(|e| e["subject"].as_str())
        .collect()
}

/// A copy of `model` edited by `edit` is not servable, for the reason `code` about `subject`
/// (the key or tensor), with a fix.
pub fn assert_refused(model: &str, edit: impl Fn(&Path), code: &str, subject: &str) {
    let dir = copy(model);
    edit(dir.path());
    let (status, report) = validate(dir.path());
    assert_ne!(status, Some(0), "{model} {code}: {report:#}");
    let f = finding(&report, code);
    assert_eq!(f["subject"], subject, "{model} {code}: {f:#}");
    assert!(f["fix"].as_str().is_some_and(|s| !s.is_empty()), "{f:#}");
}

/// The report's finding with `code`; panics listing the findings when there is none.
pub fn finding<'a>(report: &'a Value, code: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["code"] == code)
        .unwrap_or_else(|| panic!("no `{code}` in {:#}", report["findings"]))
}

/// `/rerank` with `raw_scores` of the golden's first query against its first two passages:
/// each score equals the classifier's logit for that pair (within 1e-4).
pub fn assert_raw_rerank_matches(server: &crate::Server, golden: &Value) {
    let pairs: Vec<(String, String)> = serde_json::from_value(golden["pairs"].clone()).expect("pairs");
    let logits: Vec<Vec<f64>> = serde_json::from_value(golden["pair_logits"].clone()).expect("pair_logits");
    let (query, _) = &pairs[0];
    let texts: Vec<&str> = pairs[..2].iter().map(|(_, p)| p.as_str()).collect();
    let raw: Vec<Value> = server
        .post(
            "/rerank",
            &serde_json::json!({ "query": query, "texts": texts, "raw_scores": true }),
        )
        .json()
        .expect("a list of ranks");
    assert_eq!(raw.len(), 2, "{raw:?}");
    for rank in &raw {
        let i = rank["index"].as_u64().expect("index") as usize;
        let score = rank["score"].as_f64().expect("score");
        assert!((score - logits[i][0]).abs() < 1e-4, "{rank} vs {}", logits[i][0]);
    }
}
