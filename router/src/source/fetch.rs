//! Fetching a hub revision: resolve it to a commit, take what the cache already has, download the
//! rest of that exact commit (so a push during the download cannot mix two versions), weights in
//! parallel. Offline, or when the hub cannot be reached, the cached snapshot is served instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::cache::{is_commit_sha, CachedRepo};
use super::files::{self, Weights};
use super::hub::{Hub, InfoError};
use super::options::HubOptions;
use super::progress::Transfer;
use super::{ResolvedModel, Wanted};

/// Files downloaded at once; each may also fetch several chunks in parallel.
const PARALLEL_FILES: usize = 4;

pub(super) async fn fetch(
    opts: &HubOptions,
    id: &str,
    revision: &str,
    wanted: Wanted,
    dense_path: Option<&str>,
) -> anyhow::Result<ResolvedModel> {
    let cached = CachedRepo::new(&opts.cache, id);
    if opts.offline {
        let (sha, dir) = cached
            .lookup(revision)
            .ok_or_else(|| not_cached(opts, &cached, id, revision, "HF_HUB_OFFLINE is set"))?;
        tracing::info!(
            "HF_HUB_OFFLINE: {id}@{revision} is commit {sha}, served from {}",
            dir.display()
        );
        return Ok(from_snapshot(sha, dir));
    }
    let hub = Arc::new(Hub::new(opts, id)?);
    let state = match hub.info(revision).await {
        Ok(state) => state,
        Err(InfoError::Refused(e)) => return Err(e),
        Err(InfoError::Unreachable(why)) => {
            let why = format!("the hub at {} cannot be reached ({why})", opts.endpoint);
            let (sha, dir) = cached
                .lookup(revision)
                .ok_or_else(|| not_cached(opts, &cached, id, revision, &why))?;
            tracing::warn!("{why}; serving {id}@{revision} from the cache: commit {sha}");
            return Ok(from_snapshot(sha, dir));
        }
    };
    if !is_commit_sha(&state.sha) {
        bail!(
            "the hub at {} said {id}@{revision} is commit `{}`, which is not a commit sha",
            opts.endpoint,
            state.sha
        );
    }
    let sha = state.sha;
    tracing::info!("{id}@{revision} is commit {sha}");
    let snapshot = cached.snapshot(&sha);
    let label = format!("{id}@{}", &sha[..12]);

    let small = files::small_files(&state.siblings);
    download(&hub, opts, &label, &sha, &snapshot, &small).await?;
    let modules = read_json(&snapshot.join("modules.json"))?;
    let static_dir = modules.as_ref().and_then(files::static_module_dir);
    if static_dir.is_none() && !small.iter().any(|f| f == "config.json") {
        bail!(
            "{id}@{revision} has no config.json, so it is not a transformers model tessera can serve; \
             its files: {}",
            state.siblings.iter().take(20).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let weights = match static_dir.as_deref() {
        Some(dir) if !dir.is_empty() => {
            let (tokenizer, weights) = files::static_module_files(dir, &state.siblings)?;
            download(&hub, opts, &label, &sha, &snapshot, std::slice::from_ref(&tokenizer)).await?;
            weights
        }
        _ => files::weights(&state.siblings)?,
    };
    if let Weights::ShardedSafetensors { index } = &weights {
        download(&hub, opts, &label, &sha, &snapshot, std::slice::from_ref(index)).await?;
    }
    if let Some(modules) = &modules {
        let mut module_files = files::module_files(modules, &state.siblings);
        if let Some(dir) = dense_path {
            let chosen = serde_json::json!([{ "path": dir }]);
            module_files.extend(files::module_files(&chosen, &state.siblings));
        }
        download(&hub, opts, &label, &sha, &snapshot, &module_files).await?;
    }
    let weight_files = match &weights {
        Weights::Safetensors(file) | Weights::PyTorch(file) => vec![file.clone()],
        Weights::ShardedSafetensors { index } => {
            let index = read_json(&snapshot.join(index))?.ok_or_else(|| anyhow!("{index} vanished from the cache"))?;
            files::shards(&index, &state.siblings)?
        }
    };
    let resolved = match wanted {
        Wanted::Everything => {
            download(&hub, opts, &label, &sha, &snapshot, &weight_files).await?;
            ResolvedModel {
                dir: snapshot,
                sha: Some(sha.clone()),
                _scratch: None,
            }
        }
        Wanted::Preflight => preflight(&hub, opts, &label, &sha, &snapshot, &weights, &weight_files).await?,
    };
    if let Err(e) = cached.record(revision, &sha) {
        tracing::warn!("cannot record {revision} → {sha} in the cache (offline runs will not find it): {e}");
    }
    Ok(resolved)
}

/// A cached snapshot, used as is (a preflight reports whatever it lacks).
fn from_snapshot(sha: String, dir: PathBuf) -> ResolvedModel {
    ResolvedModel {
        dir,
        sha: Some(sha),
        _scratch: None,
    }
}

fn not_cached(opts: &HubOptions, cached: &CachedRepo, id: &str, revision: &str, why: &str) -> anyhow::Error {
    anyhow!(
        "{why}, and {id}@{revision} is not in the hub cache (looked in {}). Download it once with network \
         access (run tessera with the same --huggingface-hub-cache, or `hf download {id} --revision {revision}` \
         with HF_HUB_CACHE={}), or pass a local model directory instead",
        cached.dir().display(),
        opts.cache.display()
    )
}

fn read_json(path: &Path) -> anyhow::Result<Option<serde_json::Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text)
        .map(Some)
        .with_context(|| format!("{} is not valid JSON", path.display()))
}

/// Downloads the files of `files` that the snapshot lacks, [`PARALLEL_FILES`] at a time, failing
/// when the hub goes silent for the timeout.
async fn download(
    hub: &Arc<Hub>,
    opts: &HubOptions,
    label: &str,
    sha: &str,
    snapshot: &Path,
    files: &[String],
) -> anyhow::Result<()> {
    let missing: Vec<&String> = files.iter().filter(|f| !snapshot.join(f).is_file()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if missing.len() < files.len() {
        tracing::info!(
            "{label}: {} of {} files already in the cache",
            files.len() - missing.len(),
            files.len()
        );
    }
    let transfer = Transfer::new(label.to_string(), missing.len(), opts.bytes.clone());
    let slots = Arc::new(Semaphore::new(PARALLEL_FILES));
    let mut tasks = JoinSet::new();
    for file in missing {
        let (hub, transfer, slots) = (hub.clone(), transfer.clone(), slots.clone());
        let (file, sha) = (file.clone(), sha.to_string());
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await?;
            transfer.touch(&file);
            let started = Instant::now();
            let path = hub.download(&sha, &file, transfer.clone()).await?;
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            transfer.file_done(&file, bytes, started.elapsed());
            anyhow::Ok(())
        });
    }
    let all = async {
        while let Some(joined) = tasks.join_next().await {
            joined.map_err(|e| anyhow!("a download task failed: {e}"))??;
        }
        anyhow::Ok(())
    };
    let outcome = tokio::select! {
        outcome = all => outcome,
        stalled = transfer.watch(opts.timeout) => Err(stalled),
    };
    transfer.finish();
    // Dropping the set aborts downloads still running after a failure.
    outcome
}

/// A scratch directory for `validate-model`: the small files linked from the cache, and for each
/// safetensors file not cached a sparse stand-in holding only its header at its real length, so the
/// validator reads the same header it would read from the whole file.
async fn preflight(
    hub: &Arc<Hub>,
    opts: &HubOptions,
    label: &str,
    sha: &str,
    snapshot: &Path,
    weights: &Weights,
    weight_files: &[String],
) -> anyhow::Result<ResolvedModel> {
    if let Weights::PyTorch(_) = weights {
        // A pickle's tensor list sits in a zip at the end of the file; the whole file is fetched.
        download(hub, opts, label, sha, snapshot, weight_files).await?;
    }
    std::fs::create_dir_all(&opts.cache).with_context(|| format!("creating {}", opts.cache.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix(".tessera-preflight-")
        .tempdir_in(&opts.cache)
        .with_context(|| format!("creating a scratch directory in {}", opts.cache.display()))?;
    for cached in walk(snapshot)? {
        let rel = cached.strip_prefix(snapshot).expect("walked below the snapshot");
        link_or_copy(&cached, &scratch.path().join(rel))?;
    }
    for file in weight_files {
        let target = scratch.path().join(file);
        if target.exists() {
            continue;
        }
        let (header, total) = hub
            .safetensors_header(sha, file)
            .await
            .with_context(|| format!("reading the header of {file} of {label}"))?;
        write_sparse(&target, &header, total)?;
        tracing::info!(
            "{label}: read the {}-byte header of {file} ({total} bytes in all)",
            header.len()
        );
    }
    Ok(ResolvedModel {
        dir: scratch.path().to_path_buf(),
        sha: Some(sha.to_string()),
        _scratch: Some(scratch),
    })
}

fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.is_file() {
                found.push(path);
            }
        }
    }
    Ok(found)
}

fn link_or_copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let real = std::fs::canonicalize(from)?;
    if std::fs::hard_link(&real, to).is_err() {
        std::fs::copy(&real, to).with_context(|| format!("copying {}", from.display()))?;
    }
    Ok(())
}

fn write_sparse(path: &Path, header: &[u8], total: u64) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(header)?;
    file.set_len(total)?;
    Ok(())
}
