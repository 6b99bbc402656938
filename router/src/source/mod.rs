//! Where a model's files come from: a local directory, or a Hugging Face Hub repository fetched
//! into the standard hub cache (online, offline, or from the cache when the hub is unreachable).

mod cache;
mod fetch;
mod files;
mod hub;
mod options;
mod progress;

use std::path::{Path, PathBuf};

use anyhow::bail;

pub(crate) use options::HubOptions;
pub(crate) use progress::Bytes;

/// How much of a hub repository to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// Everything serving needs, weights included.
    Everything,
    /// The small files and only the headers of the safetensors weights (`validate-model`).
    Preflight,
}

/// A model directory ready to be inspected and loaded.
#[derive(Debug)]
pub(crate) struct ResolvedModel {
    /// The directory holding config.json and the rest.
    pub(crate) dir: PathBuf,
    /// The hub commit the files come from; `None` for local directories.
    pub(crate) sha: Option<String>,
    /// Scratch directory of a preflight; deleted when this is dropped.
    pub(crate) _scratch: Option<tempfile::TempDir>,
}

impl ResolvedModel {
    /// Shows a path under [`ResolvedModel::dir`] as `label/relative` (hub snapshots and preflight
    /// scratch directories are implementation details a user should not have to read).
    pub(crate) fn shown(&self, label: &str, path: &Path) -> String {
        match path.strip_prefix(&self.dir) {
            Ok(rel) if self.sha.is_some() => format!("{label}/{}", rel.display()),
            _ => path.display().to_string(),
        }
    }
}

/// Resolves a model argument (`serve --model-id`, `validate-model MODEL`): an existing directory is used as is; otherwise it must be a hub id.
/// `dense_path` (`--dense-path`): a Dense module directory fetched besides those modules.json lists.
pub(crate) async fn resolve(
    model_id: &str,
    revision: Option<&str>,
    hub: impl FnOnce() -> anyhow::Result<HubOptions>,
    wanted: Wanted,
    dense_path: Option<&str>,
) -> anyhow::Result<ResolvedModel> {
    let path = Path::new(model_id);
    if path.is_dir() {
        if revision.is_some() {
            tracing::warn!("--revision is ignored: `{model_id}` is a local directory");
        }
        return Ok(ResolvedModel {
            dir: path.to_path_buf(),
            sha: None,
            _scratch: None,
        });
    }
    if path.exists() {
        bail!("`{model_id}` is a file, not a model directory");
    }
    if !is_hub_id(model_id) {
        bail!("`{model_id}`: no such directory, and it is not a hub id (ORG/NAME)");
    }
    fetch::fetch(&hub()?, model_id, revision.unwrap_or("main"), wanted, dense_path).await
}

/// `NAME` or `ORG/NAME` with the hub's characters; anything else can only be a path.
fn is_hub_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    parts.len() <= 2
        && id.len() <= 96
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with(['.', '-'])
                && !p.contains("..")
                && !p.contains("--")
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_told_from_paths() {
        for id in [
            "bert-base-uncased",
            "sentence-transformers/all-MiniLM-L6-v2",
            "BAAI/bge_small.en",
        ] {
            assert!(is_hub_id(id), "{id}");
        }
        for id in [
            "./model",
            "/abs/model",
            "a/b/c",
            "",
            "org/",
            "../x",
            "org/na me",
            "org--x/y",
            ".hidden/x",
        ] {
            assert!(!is_hub_id(id), "{id}");
        }
    }
}
