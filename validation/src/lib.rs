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
pub use read::static_embedding_dir;
pub use tessera_core::{Finding, ModelInspection, Severity};

/// Inspects a model directory. Never panics and never loads tensor data.
pub fn inspect(root: &Path) -> ModelInspection {
    inspect_with(root, &ReadOptions::default())
}

/// What a user chose that changes which files are read.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// `--dense-path`: the directory of the Dense module to read instead of the one modules.json
    /// lists (models that ship one per output size, `2_Dense_256`, `2_Dense_1024`...).
    pub dense_path: Option<String>,
}

/// [`inspect`], with the user's choices.
pub fn inspect_with(root: &Path, options: &ReadOptions) -> ModelInspection {
    let mut inspection = read::read_dir(root, options);
    checks::run(&mut inspection);
    inspection
}
