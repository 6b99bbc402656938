//! config.json, parsed leniently: every key kept, nothing required at this stage.

use std::path::Path;

use tessera_core::inspection::ModelConfig;
use tessera_core::Finding;

use super::read_json;

/// One fix for `config-invalid-json`, whatever made it invalid.
const FIX_INVALID: &str =
    "repair config.json: it must be one JSON object of keys such as `hidden_size` (a syntax error's position is in the message)";

/// `required`: whether a missing config.json is an error (not for static embedding models).
pub(super) fn read(root: &Path, required: bool, findings: &mut Vec<Finding>) -> Option<ModelConfig> {
    let path = root.join("config.json");
    match read_json(&path) {
        None if !required => None,
        None => {
            findings.push(
                Finding::error("config-missing", "config.json is missing")
                    .in_file(&path)
                    .fix("add the config.json saved with the model (`model.config.save_pretrained(dir)`)"),
            );
            None
        }
        Some(Err(problem)) => {
            findings.push(
                Finding::error("config-invalid-json", format!("config.json {}", problem.describe()))
                    .in_file(&path)
                    .fix(FIX_INVALID),
            );
            None
        }
        Some(Ok(serde_json::Value::Object(values))) => Some(ModelConfig { path, values }),
        Some(Ok(_)) => {
            findings.push(
                Finding::error("config-invalid-json", "config.json is not a JSON object")
                    .in_file(&path)
                    .fix(FIX_INVALID),
            );
            None
        }
    }
}
