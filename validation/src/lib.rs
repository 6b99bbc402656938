//! Reads a model directory (config.json, tokenizer, sentence-transformers files, weight
//! headers) without loading weights, and reports [`Finding`]s with fixes.
//!
//! [`inspect`] produces a [`ModelInspection`]; the router hands it to every compiled backend
//! to assess, so the choice of implementation rests on evidence in the files.
//!
//! ```no_run
//! let inspection = tessera_validation::inspect(std::path::Path::new("models/all-MiniLM-L6-v2"));
//! for finding in &inspection.findings {
//!     println!("{finding}");
//! }
//! ```

mod checks;
mod finite;
mod read;

use std::path::Path;

pub use finite::scan_weights;
pub use tessera_core::{Finding, ModelInspection, Severity};

/// Inspects a model directory. Never panics and never loads tensor data.
pub fn inspect(root: &Path) -> ModelInspection {
    let mut inspection = read::read_dir(root);
    checks::run(&mut inspection);
    inspection
}
