//! The hub cache layout shared with `huggingface_hub`: `models--ORG--NAME/refs/REVISION` holds a commit
//! sha, `snapshots/SHA/FILE` links to `blobs/ETAG`. A cache filled by Python serves tessera and back.

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};

/// One repository's place in the cache.
pub(super) struct CachedRepo {
    cache: Cache,
    id: String,
}

impl CachedRepo {
    pub(super) fn new(cache_dir: &Path, id: &str) -> Self {
        Self {
            cache: Cache::new(cache_dir.to_path_buf()),
            id: id.to_string(),
        }
    }

    /// `CACHE/models--ORG--NAME`.
    pub(super) fn dir(&self) -> PathBuf {
        self.cache.path().join(Repo::model(self.id.clone()).folder_name())
    }

    pub(super) fn snapshot(&self, sha: &str) -> PathBuf {
        self.dir().join("snapshots").join(sha)
    }

    /// The commit a revision pointed at when it was last fetched, with its snapshot, if that
    /// snapshot has a config.json (a revision that is itself a sha needs no ref).
    pub(super) fn lookup(&self, revision: &str) -> Option<(String, PathBuf)> {
        let sha = if is_commit_sha(revision) && self.snapshot(revision).is_dir() {
            revision.to_string()
        } else {
            let recorded = std::fs::read_to_string(self.dir().join("refs").join(revision)).ok()?;
            recorded.trim().to_string()
        };
        if !is_commit_sha(&sha) {
            return None;
        }
        let snapshot = self.snapshot(&sha);
        snapshot.join("config.json").is_file().then_some((sha, snapshot))
    }

    /// Records that `revision` resolved to `sha`, so offline runs find it by name.
    pub(super) fn record(&self, revision: &str, sha: &str) -> std::io::Result<()> {
        self.cache
            .repo(Repo::with_revision(
                self.id.clone(),
                RepoType::Model,
                revision.to_string(),
            ))
            .create_ref(sha)
    }
}

/// A full 40-hex git commit id.
pub(super) fn is_commit_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn refs_lead_to_snapshots_with_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let repo = CachedRepo::new(dir.path(), "org/name");
        assert!(repo.dir().ends_with("models--org--name"));
        assert_eq!(repo.lookup("main"), None);
        repo.record("refs/pr/3", SHA).unwrap();
        assert_eq!(repo.lookup("refs/pr/3"), None, "no snapshot yet");
        std::fs::create_dir_all(repo.snapshot(SHA)).unwrap();
        std::fs::write(repo.snapshot(SHA).join("config.json"), "{}").unwrap();
        assert_eq!(repo.lookup("refs/pr/3"), Some((SHA.to_string(), repo.snapshot(SHA))));
        assert_eq!(repo.lookup(SHA).map(|(sha, _)| sha), Some(SHA.to_string()));
        assert_eq!(repo.lookup("main"), None);
    }
}
