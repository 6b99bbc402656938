//! sentence-transformers files: modules.json, the pooling config, max_seq_length, Dense, Normalize.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tessera_core::chat::MessageFormat;
use tessera_core::inspection::{
    ColbertSettings, DenseModule, InputModality, LogitScore, PoolingFile, SentenceTransformers,
};
use tessera_core::Finding;

use super::read_json;

/// The names sentence-transformers has used for its config, per transformer family.
const ST_CONFIG_NAMES: &[&str] = &[
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
];

/// The sentence-transformers module a `modules.json` type names, by its class: older releases
/// write `sentence_transformers.models.Dense`, 6.x `sentence_transformers.base.modules.dense.Dense`
/// (and `...sentence_transformer.modules.pooling.Pooling`).
fn module_class(kind: &str) -> Option<&str> {
    kind.strip_prefix("sentence_transformers.")?.rsplit('.').next()
}

/// `dense_path` (`--dense-path`) replaces the one Dense module modules.json lists.
pub(super) fn read(root: &Path, dense_path: Option<&str>, findings: &mut Vec<Finding>) -> SentenceTransformers {
    let mut st = SentenceTransformers::default();
    let modules = read_modules(root, findings);
    let mut pooling_dir = None;
    let mut dense_dirs = Vec::new();
    let mut colbert_dirs = Vec::new();
    for (i, (kind, dir)) in modules.iter().enumerate() {
        st.modules.push(kind.clone());
        if PYLATE_DENSE.contains(&kind.as_str()) {
            colbert_dirs.push(dir.clone());
        }
        match module_class(kind) {
            Some("StaticEmbedding") => {
                st.static_embedding = static_embedding(root, i, dir, findings);
                if st.static_embedding {
                    st.module_dir = dir.clone();
                }
            }
            Some("Pooling") => pooling_dir = Some(dir.clone()),
            Some("Dense") => dense_dirs.push(dir.clone()),
            Some("Normalize") => st.normalize = true,
            Some("LogitScore") => st.logit_score = read_logit_score(root, dir, findings),
            _ => {}
        }
    }
    if let Some(chosen) = dense_path {
        dense_dirs = replace_dense(root, &dense_dirs, chosen, findings);
    }
    st.dense = dense_dirs
        .iter()
        .filter_map(|dir| read_dense(root, dir, findings))
        .collect();
    read_processing(root, !modules.is_empty(), &mut st, findings);
    // Models without modules.json still often ship 1_Pooling (TEI reads it the same way).
    let pooling_dir = pooling_dir.unwrap_or_else(|| PathBuf::from("1_Pooling"));
    st.pooling = read_pooling(&root.join(&pooling_dir).join("config.json"), findings);
    // A StaticEmbedding has no length of its own (sentence-transformers' is infinite): its
    // tokenizer's truncation is the only limit, read with the tokenizer (`read_dir`).
    if !st.static_embedding {
        st.max_seq_length = read_max_seq_length(root, findings);
    }
    read_prompts(root, &mut st, findings);
    if !colbert_dirs.is_empty() {
        st.colbert = read_colbert(root, &colbert_dirs, findings);
    }
    st
}

/// The module type PyLate saves its ColBERT projection as.
const PYLATE_DENSE: &[&str] = &["pylate.models.Dense.Dense"];

/// A PyLate ColBERT model's settings (`config_sentence_transformers.json`, PyLate's defaults for
/// what it leaves out) and its Dense modules; `None`, with findings, when they are unusable.
fn read_colbert(root: &Path, dirs: &[PathBuf], findings: &mut Vec<Finding>) -> Option<ColbertSettings> {
    let path = root.join("config_sentence_transformers.json");
    // An unparsable file is reported by `read_prompts`.
    let config = match read_json(&path) {
        Some(Ok(Value::Object(config))) => config,
        Some(_) => return None,
        None => serde_json::Map::new(),
    };
    let mut ok = true;
    let mut invalid = |key: &str, message: String, fix: &str| {
        ok = false;
        findings.push(
            Finding::error("config-value-invalid", message)
                .in_file(&path)
                .about(key)
                .fix(fix),
        );
    };
    let text = |key: &str, default: &str, invalid: &mut dyn FnMut(&str, String, &str)| match config.get(key) {
        None | Some(Value::Null) => default.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            invalid(
                key,
                format!("`{key}: {other}` is not a string"),
                "set it to the prefix token, or \"\" for none",
            );
            default.to_string()
        }
    };
    let query_prefix = text("query_prefix", "[Q] ", &mut invalid);
    let document_prefix = text("document_prefix", "[D] ", &mut invalid);
    let length = |key: &str, default: u64, prefix: &str, invalid: &mut dyn FnMut(&str, String, &str)| {
        // Room for the first and last special tokens and the prefix.
        let least = 2 + u64::from(!prefix.is_empty());
        match config.get(key) {
            None | Some(Value::Null) => default as usize,
            Some(value) => match value.as_u64() {
                Some(n) if n > least && n <= 1 << 20 => n as usize,
                _ => {
                    invalid(
                        key,
                        format!("`{key}: {value}`: a ColBERT input holds at least its two special tokens, its prefix and one token of text"),
                        "set it to the length the model was trained with (PyLate: 32 for queries, 180 for documents)",
                    );
                    default as usize
                }
            },
        }
    };
    let query_length = length("query_length", 32, &query_prefix, &mut invalid);
    let document_length = length("document_length", 180, &document_prefix, &mut invalid);
    let flag = |key: &str, default: bool, invalid: &mut dyn FnMut(&str, String, &str)| match config.get(key) {
        None | Some(Value::Null) => default,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            invalid(
                key,
                format!("`{key}: {other}` is not true or false"),
                "set it to true or false",
            );
            default
        }
    };
    let query_expansion = flag("do_query_expansion", true, &mut invalid);
    let attend_to_expansion = flag("attend_to_expansion_tokens", false, &mut invalid) && query_expansion;
    let skiplist_words = match config.get("skiplist_words") {
        None | Some(Value::Null) => ColbertSettings::DEFAULT_SKIPLIST.chars().map(String::from).collect(),
        Some(Value::Array(words)) if words.iter().all(Value::is_string) => {
            words.iter().filter_map(Value::as_str).map(str::to_string).collect()
        }
        Some(other) => {
            invalid(
                "skiplist_words",
                format!("`skiplist_words: {other}` is not a list of tokens"),
                "list the tokens whose vectors documents leave out",
            );
            Vec::new()
        }
    };
    let mut dense = Vec::new();
    for dir in dirs {
        let residual = read_json(&root.join(dir).join("config.json"))
            .and_then(Result::ok)
            .and_then(|c| c.get("use_residual").and_then(Value::as_bool))
            .unwrap_or(false);
        if residual {
            ok = false;
            findings.push(
                Finding::error(
                    "dense-config-unsupported",
                    "`use_residual: true`: PyLate's residual Dense layer is not served",
                )
                .in_file(root.join(dir).join("config.json"))
                .about("use_residual")
                .fix("serve the model with PyLate"),
            );
        }
        match read_dense(root, dir, findings) {
            Some(module) => dense.push(module),
            None => ok = false,
        }
    }
    ok.then_some(ColbertSettings {
        path,
        query_prefix,
        document_prefix,
        query_length,
        document_length,
        query_expansion,
        attend_to_expansion,
        skiplist_words,
        dense,
    })
}

/// Whether the `StaticEmbedding` module listed `index`-th at `dir` is one tessera serves: the
/// input module (first), at the root (model2vec, sentence-transformers 5 and later) or in its
/// own directory inside the model (`0_StaticEmbedding`, as sentence-transformers 3 and 4 saved
/// static-retrieval-mrl-en-v1).
fn static_embedding(root: &Path, index: usize, dir: &Path, findings: &mut Vec<Finding>) -> bool {
    if index == 0 && inside_model(dir) {
        return true;
    }
    findings.push(
        Finding::error(
            "static-embedding-misplaced",
            format!(
                "modules.json lists a StaticEmbedding module {} (path `{}`); tessera serves it as the first module, inside the model's directory",
                if index == 0 { "first".to_string() } else { format!("at position {index}") },
                dir.display()
            ),
        )
        .in_file(root.join("modules.json"))
        .about("path")
        .fix("save the model with sentence-transformers or model2vec, which list the StaticEmbedding (its model.safetensors and tokenizer.json) first"),
    );
    false
}

/// The first sentence-transformers config file present: `None` when there is none, `Err` when
/// it does not parse (a finding says so).
fn st_config(root: &Path, findings: &mut Vec<Finding>) -> Option<Result<(PathBuf, Value), ()>> {
    let name = ST_CONFIG_NAMES.iter().find(|name| root.join(name).is_file())?;
    let path = root.join(name);
    Some(match read_json(&path)? {
        Err(problem) => {
            findings.push(
                Finding::error("st-file-invalid", format!("{name} {}", problem.describe()))
                    .in_file(&path)
                    .fix("repair the file"),
            );
            Err(())
        }
        Ok(value) => Ok((path, value)),
    })
}

/// How texts reach the model (`modality_config`) and the chat template's variables
/// (`processing_kwargs.chat_template`), as sentence-transformers 6 reads them: a modules.json
/// saved without `modality_config` is text-only.
fn read_processing(root: &Path, has_modules: bool, st: &mut SentenceTransformers, findings: &mut Vec<Finding>) {
    // An unparsable file is reported once, by `read_max_seq_length`.
    let config = st_config(root, &mut Vec::new()).and_then(Result::ok);
    let value = config.as_ref().map(|(_, v)| v);
    st.inputs = match value.and_then(|v| v.get("modality_config")) {
        Some(modalities) => match modalities.get("message") {
            Some(message) => InputModality::Messages(match message.get("format").and_then(Value::as_str) {
                Some("flat") => Some(MessageFormat::Flat),
                Some("structured") => Some(MessageFormat::Structured),
                _ => None,
            }),
            None => InputModality::Text,
        },
        None if has_modules => InputModality::Text,
        None => InputModality::Unsaved,
    };
    let Some(kwargs) = value
        .and_then(|v| v.get("processing_kwargs"))
        .and_then(|p| p.get("chat_template"))
    else {
        return;
    };
    let path = config.as_ref().map(|(p, _)| p.clone()).unwrap_or_default();
    let Some(kwargs) = kwargs.as_object() else {
        findings.push(
            Finding::error("st-file-invalid", "`processing_kwargs.chat_template` is not an object")
                .in_file(&path)
                .about("processing_kwargs.chat_template")
                .fix("write the chat template's keyword arguments as an object"),
        );
        return;
    };
    // Sizes are tokenization settings, not template variables; tessera takes them from
    // max_seq_length.
    const SIZE_KEYS: [&str; 5] = [
        "truncation",
        "max_length",
        "padding",
        "return_tensors",
        "pad_to_multiple_of",
    ];
    for (key, value) in kwargs {
        match key.as_str() {
            "restore_suffix" => st.restore_suffix = value.as_bool(),
            key if SIZE_KEYS.contains(&key) => {}
            _ => {
                st.chat_template_kwargs.insert(key.clone(), value.clone());
            }
        }
    }
}

/// A `LogitScore` module's config: `true_token_id`, and `false_token_id` or null.
fn read_logit_score(root: &Path, dir: &Path, findings: &mut Vec<Finding>) -> Option<LogitScore> {
    let path = root.join(dir).join("config.json");
    let values = match read_json(&path) {
        Some(Ok(Value::Object(values))) => values,
        Some(Err(problem)) => {
            findings.push(
                Finding::error(
                    "st-file-invalid",
                    format!("the LogitScore config {}", problem.describe()),
                )
                .in_file(&path)
                .fix("repair the LogitScore module's config.json"),
            );
            return None;
        }
        _ => Default::default(),
    };
    let id = |key: &str| {
        values
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    let false_token = match values.get("false_token_id") {
        None | Some(Value::Null) => None,
        Some(_) => match id("false_token_id") {
            Some(token) => Some(token),
            None => {
                findings.push(
                    Finding::error("st-file-invalid", "`false_token_id` is not a token id")
                        .in_file(&path)
                        .about("false_token_id")
                        .fix("set the id of the token whose logit is subtracted, or null"),
                );
                return None;
            }
        },
    };
    match id("true_token_id") {
        Some(true_token) => Some(LogitScore {
            true_token,
            false_token,
        }),
        None => {
            findings.push(
                Finding::error("st-file-invalid", "the LogitScore module has no `true_token_id`")
                    .in_file(&path)
                    .about("true_token_id")
                    .fix("set the id of the token whose logit scores the pair (`yes`)"),
            );
            None
        }
    }
}

fn read_prompts(root: &Path, st: &mut SentenceTransformers, findings: &mut Vec<Finding>) {
    let path = root.join("config_sentence_transformers.json");
    let value = match read_json(&path) {
        None => return,
        Some(Ok(value)) => value,
        Some(Err(problem)) => {
            findings.push(
                Finding::error(
                    "st-file-invalid",
                    format!("config_sentence_transformers.json {}", problem.describe()),
                )
                .in_file(&path)
                .fix("repair the file"),
            );
            return;
        }
    };
    if let Some(prompts) = value.get("prompts").and_then(Value::as_object) {
        for (name, text) in prompts {
            match text.as_str() {
                Some(text) => {
                    st.prompts.insert(name.clone(), text.to_string());
                }
                None => findings.push(
                    Finding::error("prompt-invalid", format!("prompt `{name}` is not a string"))
                        .in_file(&path)
                        .about(format!("prompts.{name}"))
                        .fix("each prompt must be the text to prepend"),
                ),
            }
        }
    }
    st.default_prompt_name = value
        .get("default_prompt_name")
        .and_then(Value::as_str)
        .map(str::to_string);
}

fn read_modules(root: &Path, findings: &mut Vec<Finding>) -> Vec<(String, PathBuf)> {
    let path = root.join("modules.json");
    let value = match read_json(&path) {
        None => return Vec::new(),
        Some(Err(problem)) => {
            findings.push(
                Finding::error("st-file-invalid", format!("modules.json {}", problem.describe()))
                    .in_file(&path)
                    .fix("repair modules.json or remove it and pass --pooling"),
            );
            return Vec::new();
        }
        Some(Ok(value)) => value,
    };
    let Some(entries) = value.as_array() else {
        findings.push(
            Finding::error("st-file-invalid", "modules.json is not a list of modules")
                .in_file(&path)
                .fix("modules.json must be a JSON list of {idx, name, path, type}"),
        );
        return Vec::new();
    };
    listed_modules(entries)
}

/// modules.json's entries as (type, path), in order; entries without a type are skipped.
pub(crate) fn listed_modules(entries: &[Value]) -> Vec<(String, PathBuf)> {
    entries
        .iter()
        .filter_map(|entry| {
            let kind = entry.get("type")?.as_str()?.to_string();
            let dir = entry.get("path").and_then(Value::as_str).unwrap_or("");
            Some((kind, PathBuf::from(dir)))
        })
        .collect()
}

/// A path relative to the model's directory that stays inside it (`""` and `.` are the root).
fn inside_model(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir))
}

/// Where a `StaticEmbedding` that modules.json lists first keeps its files, relative to the
/// root, when it is one tessera serves (see [`static_embedding`]): the reader's rule, for
/// callers holding modules.json before the model directory is complete (a hub download).
pub fn static_embedding_dir(modules: &Value) -> Option<PathBuf> {
    let listed = listed_modules(modules.as_array()?);
    let (kind, dir) = listed.first()?;
    (module_class(kind) == Some("StaticEmbedding") && inside_model(dir)).then(|| dir.clone())
}

fn read_pooling(path: &Path, findings: &mut Vec<Finding>) -> Option<PoolingFile> {
    match read_json(path)? {
        Ok(Value::Object(values)) => Some(PoolingFile {
            path: path.to_path_buf(),
            values,
        }),
        Ok(_) => {
            findings.push(
                Finding::error("st-file-invalid", "the pooling config is not a JSON object")
                    .in_file(path)
                    .fix("write {\"pooling_mode_mean_tokens\": true, ...} or pass --pooling"),
            );
            None
        }
        Err(problem) => {
            findings.push(
                Finding::error("st-file-invalid", format!("the pooling config {}", problem.describe()))
                    .in_file(path)
                    .fix("repair the file or pass --pooling"),
            );
            None
        }
    }
}

/// The Dense directories to read once `--dense-path` replaces the one modules.json lists (as TEI
/// does). Where it cannot (no Dense module, several, or a path outside the model) the model is
/// refused rather than served with other dimensions than the user asked for (TEI ignores it).
fn replace_dense(root: &Path, listed: &[PathBuf], chosen: &str, findings: &mut Vec<Finding>) -> Vec<PathBuf> {
    let path = Path::new(chosen.trim_end_matches('/'));
    let inside = !chosen.is_empty() && inside_model(path);
    let problem = match listed {
        _ if !inside => Some(format!(
            "--dense-path `{chosen}` is not a directory inside the model"
        )),
        [] => Some(format!(
            "--dense-path `{chosen}` replaces the Dense module modules.json lists, and it lists none"
        )),
        [_] => None,
        several => Some(format!(
            "--dense-path `{chosen}` replaces the one Dense module modules.json lists, and it lists {} applied in turn ({})",
            several.len(),
            several.iter().map(|d| format!("`{}`", d.display())).collect::<Vec<_>>().join(", ")
        )),
    };
    if let Some(problem) = problem {
        findings.push(
            Finding::error("dense-path-unusable", problem)
                .in_file(root.join("modules.json"))
                .about("--dense-path")
                .fix("leave --dense-path out, or name a directory of the model holding a Dense module (config.json and weights) for a model that lists one"),
        );
        return listed.to_vec();
    }
    if listed[0] != path {
        findings.push(
            Finding::info(
                "dense-path-applied",
                format!(
                    "the Dense module in `{}` (--dense-path) replaces `{}`, which modules.json lists",
                    path.display(),
                    listed[0].display()
                ),
            )
            .in_file(root.join(path))
            .about("--dense-path"),
        );
    }
    vec![path.to_path_buf()]
}

fn read_dense(root: &Path, dir: &Path, findings: &mut Vec<Finding>) -> Option<DenseModule> {
    let path = root.join(dir).join("config.json");
    let values = match read_json(&path) {
        Some(Ok(Value::Object(values))) => values,
        Some(Err(problem)) => {
            findings.push(
                Finding::error("st-file-invalid", format!("the Dense config {}", problem.describe()))
                    .in_file(&path)
                    .fix("repair the Dense module's config.json"),
            );
            return None;
        }
        _ => {
            findings.push(
                Finding::error(
                    "dense-config-missing",
                    "a Dense module in modules.json has no config.json",
                )
                .in_file(&path)
                .fix("add the module's config.json (in_features, out_features, bias, activation_function)"),
            );
            return None;
        }
    };
    let size = |key: &str, findings: &mut Vec<Finding>| {
        let value = values.get(key).and_then(Value::as_u64).map(|v| v as usize);
        if value.is_none() {
            findings.push(
                Finding::error("dense-config-invalid", format!("`{key}` is missing or not a number"))
                    .in_file(&path)
                    .about(key)
                    .fix(format!("set `{key}` to the layer's size")),
            );
        }
        value
    };
    let in_features = size("in_features", findings);
    let out_features = size("out_features", findings);
    Some(DenseModule {
        dir: root.join(dir),
        in_features: in_features?,
        out_features: out_features?,
        bias: values.get("bias").and_then(Value::as_bool).unwrap_or(true),
        activation: values
            .get("activation_function")
            .and_then(Value::as_str)
            .unwrap_or("torch.nn.modules.activation.Tanh")
            .to_string(),
    })
}

/// sentence-transformers 6 saves no `max_seq_length` in sentence_bert_config.json: it reads the
/// tokenizer's `model_max_length` instead (tokenizer_config.json). Transformers writes a huge
/// sentinel there when the tokenizer has no limit; that means none.
fn tokenizer_max_length(root: &Path) -> Option<usize> {
    const NO_LIMIT: u64 = 1 << 40;
    let value = read_json(&root.join("tokenizer_config.json"))?.ok()?;
    value
        .get("model_max_length")?
        .as_u64()
        .filter(|n| (1..NO_LIMIT).contains(n))
        .map(|n| n as usize)
}

/// `max_seq_length` as sentence-transformers decides it: sentence_bert_config.json's, else the
/// tokenizer's `model_max_length`. The plan caps it at what the model's positions support.
fn read_max_seq_length(root: &Path, findings: &mut Vec<Finding>) -> Option<usize> {
    let (path, value) = match st_config(root, findings) {
        None => return tokenizer_max_length(root),
        Some(Err(())) => return None,
        Some(Ok(config)) => config,
    };
    match value.get("max_seq_length") {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => n.as_u64().map(|n| n as usize),
        None | Some(Value::Null) => tokenizer_max_length(root),
        Some(other) => {
            findings.push(
                Finding::error(
                    "max-seq-length-invalid",
                    format!("`max_seq_length` = {other} is not a positive integer"),
                )
                .in_file(&path)
                .about("max_seq_length")
                .fix("set `max_seq_length` to the longest input in tokens, e.g. 512"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PyLate model directory: modules.json with one PyLate Dense module (`dense` its config)
    /// and `settings` as config_sentence_transformers.json.
    fn pylate_dir(settings: Value, dense: Value) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let modules = serde_json::json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"}
        ]);
        std::fs::write(dir.path().join("modules.json"), modules.to_string()).unwrap();
        std::fs::write(
            dir.path().join("config_sentence_transformers.json"),
            settings.to_string(),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("1_Dense")).unwrap();
        std::fs::write(dir.path().join("1_Dense/config.json"), dense.to_string()).unwrap();
        dir
    }

    const DENSE: &str = r#"{"in_features": 32, "out_features": 8, "bias": false, "activation_function": "torch.nn.modules.linear.Identity"}"#;

    #[test]
    fn a_pylate_model_gets_pylates_defaults_for_what_it_leaves_out() {
        let dir = pylate_dir(serde_json::json!({}), serde_json::from_str(DENSE).unwrap());
        let mut findings = Vec::new();
        let st = read(dir.path(), None, &mut findings);
        let colbert = st.colbert.expect("a ColBERT model");
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(
            (colbert.query_prefix.as_str(), colbert.document_prefix.as_str()),
            ("[Q] ", "[D] ")
        );
        assert_eq!((colbert.query_length, colbert.document_length), (32, 180));
        assert!(colbert.query_expansion && !colbert.attend_to_expansion);
        assert_eq!(colbert.skiplist_words.len(), 32);
        assert_eq!(colbert.dense[0].out_features, 8);
        assert!(st.dense.is_empty(), "its Dense runs per token, not after pooling");
    }

    #[test]
    fn pylate_settings_tessera_cannot_follow_are_findings() {
        let mut dense: Value = serde_json::from_str(DENSE).unwrap();
        dense["use_residual"] = Value::Bool(true);
        let dir = pylate_dir(
            serde_json::json!({"document_length": 2, "do_query_expansion": "yes"}),
            dense,
        );
        let mut findings = Vec::new();
        assert!(read(dir.path(), None, &mut findings).colbert.is_none());
        let subjects: Vec<_> = findings.iter().map(|f| f.subject.clone().unwrap_or_default()).collect();
        assert_eq!(
            subjects,
            ["document_length", "do_query_expansion", "use_residual"],
            "{findings:?}"
        );
    }

    #[test]
    fn modules_are_known_by_class_in_every_release_layout() {
        for (kind, class) in [
            ("sentence_transformers.models.Dense", Some("Dense")),
            ("sentence_transformers.base.modules.dense.Dense", Some("Dense")),
            (
                "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
                Some("Pooling"),
            ),
            (
                "sentence_transformers.base.modules.normalize.Normalize",
                Some("Normalize"),
            ),
            ("my_package.Dense", None),
        ] {
            assert_eq!(module_class(kind), class, "{kind}");
        }
    }
}
