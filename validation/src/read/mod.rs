//! Readers that fill a [`ModelInspection`] from files, each turning a bad file into findings.

mod config;
mod safetensors;
mod st_modules;
mod tokenizer;

pub use st_modules::static_embedding_dir;

use std::path::Path;

use tessera_core::ModelInspection;

/// Reads a model directory without loading weights.
pub(crate) fn read_dir(root: &Path, options: &crate::ReadOptions) -> ModelInspection {
    let mut inspection = ModelInspection {
        root: root.to_path_buf(),
        ..ModelInspection::default()
    };
    let mut findings = Vec::new();
    inspection.sentence_transformers = st_modules::read(root, options.dense_path.as_deref(), &mut findings);
    // A static embedding model has no transformer, so nothing for config.json to configure.
    let config_required = !inspection.sentence_transformers.static_embedding;
    inspection.config = config::read(root, config_required, &mut findings);
    let module_files = inspection.module_files_dir();
    inspection.tokenizer = tokenizer::read(&module_files, &mut findings);
    if inspection.sentence_transformers.static_embedding {
        // The module truncates as its tokenizer.json says (model2vec saves 512), and only so.
        inspection.sentence_transformers.max_seq_length = inspection.tokenizer.truncation.filter(|&n| n > 0);
    }
    inspection.weights = safetensors::read(&module_files, &mut findings);
    inspection.findings = findings;
    inspection
}

/// Reads and parses a JSON file; `None` when absent. Syntax errors keep line and column.
pub(crate) fn read_json(path: &Path) -> Option<Result<serde_json::Value, JsonProblem>> {
    if !path.is_file() {
        return None;
    }
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) => return Some(Err(JsonProblem::Io(e.to_string()))),
    };
    Some(serde_json::from_slice(&text).map_err(|e| JsonProblem::Syntax {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    }))
}

/// Why a JSON file could not be used.
#[derive(Debug)]
pub(crate) enum JsonProblem {
    Io(String),
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
}

impl JsonProblem {
    pub(crate) fn describe(&self) -> String {
        match self {
            JsonProblem::Io(e) => format!("cannot be read: {e}"),
            JsonProblem::Syntax { line, column, message } => {
                format!("is not valid JSON (line {line}, column {column}): {message}")
            }
        }
    }
}
