//! Hub settings from tessera's flags first, then the variables `huggingface_hub` users already set.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Everything needed to reach the hub and its cache.
#[derive(Clone)]
pub(crate) struct HubOptions {
    /// Base URL (`HF_ENDPOINT`), without a trailing slash.
    pub(crate) endpoint: String,
    /// The hub cache (`models--ORG--NAME/{refs,blobs,snapshots}` below it).
    pub(crate) cache: PathBuf,
    pub(crate) token: Option<String>,
    /// `HF_HUB_OFFLINE`: never touch the network.
    pub(crate) offline: bool,
    /// Longest wait for an answer, or between two pieces of a download.
    pub(crate) timeout: Duration,
    /// Where download byte counts are reported, if anywhere.
    pub(crate) bytes: Option<std::sync::Arc<super::progress::Bytes>>,
}

impl std::fmt::Debug for HubOptions {
    // The token must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubOptions")
            .field("endpoint", &self.endpoint)
            .field("cache", &self.cache)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("offline", &self.offline)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HubOptions {
    /// Flags win; then `HF_TOKEN`/`HUGGING_FACE_HUB_TOKEN`/the token file, `HUGGINGFACE_HUB_CACHE`/
    /// `HF_HUB_CACHE`/`HF_HOME`, `HF_ENDPOINT` and `HF_HUB_OFFLINE`, as `huggingface_hub` reads them.
    pub(crate) fn new(token: Option<String>, cache: Option<PathBuf>, timeout_s: u64) -> anyhow::Result<Self> {
        Self::with_env(token, cache, timeout_s, |key| std::env::var(key).ok())
    }

    fn with_env(
        token: Option<String>,
        cache: Option<PathBuf>,
        timeout_s: u64,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let set = |key: &str| env(key).filter(|v| !v.trim().is_empty());
        let hf_home = set("HF_HOME").map(PathBuf::from).or_else(|| {
            let base = set("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| set("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(base.join("huggingface"))
        });
        let cache = cache
            .or_else(|| set("HUGGINGFACE_HUB_CACHE").map(PathBuf::from))
            .or_else(|| set("HF_HUB_CACHE").map(PathBuf::from))
            .or_else(|| hf_home.as_ref().map(|home| home.join("hub")))
            .ok_or_else(|| anyhow!("no hub cache directory: pass --huggingface-hub-cache DIR or set HF_HOME"))?;
        let token_file = set("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .or_else(|| hf_home.map(|home| home.join("token")));
        let token = token
            .filter(|t| !t.trim().is_empty())
            .or_else(|| set("HF_TOKEN"))
            .or_else(|| set("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| token_file.and_then(|f| std::fs::read_to_string(f).ok()))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let endpoint = set("HF_ENDPOINT")
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
            .trim_end_matches('/')
            .to_string();
        let offline = set("HF_HUB_OFFLINE")
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        if timeout_s == 0 {
            return Err(anyhow!("--hub-timeout must be at least 1 second"));
        }
        Ok(Self {
            endpoint,
            cache,
            token,
            offline,
            timeout: Duration::from_secs(timeout_s),
            bytes: None,
        })
    }

    /// The same options, counting downloaded bytes into `bytes`.
    pub(crate) fn reporting_to(self, bytes: std::sync::Arc<super::progress::Bytes>) -> Self {
        Self {
            bytes: Some(bytes),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn opts(token: Option<&str>, cache: Option<&str>, env: &[(&str, &str)]) -> HubOptions {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        HubOptions::with_env(token.map(Into::into), cache.map(Into::into), 60, |k| {
            env.get(k).cloned()
        })
        .unwrap()
    }

    #[test]
    fn flags_win_over_the_environment() {
        let env = [
            ("HF_TOKEN", "env"),
            ("HUGGINGFACE_HUB_CACHE", "/env/cache"),
            ("HOME", "/h"),
        ];
        let o = opts(Some("flag"), Some("/flag/cache"), &env);
        assert_eq!(
            (o.token.as_deref(), o.cache.to_str()),
            (Some("flag"), Some("/flag/cache"))
        );
        let o = opts(None, None, &env);
        assert_eq!(
            (o.token.as_deref(), o.cache.to_str()),
            (Some("env"), Some("/env/cache"))
        );
    }

    #[test]
    fn cache_follows_hf_home_then_home() {
        assert_eq!(opts(None, None, &[("HF_HOME", "/hf")]).cache, PathBuf::from("/hf/hub"));
        assert_eq!(
            opts(None, None, &[("HOME", "/h")]).cache,
            PathBuf::from("/h/.cache/huggingface/hub")
        );
        assert!(HubOptions::with_env(None, None, 60, |_| None).is_err());
    }

    #[test]
    fn endpoint_and_offline_come_from_the_environment() {
        let o = opts(
            None,
            None,
            &[
                ("HOME", "/h"),
                ("HF_ENDPOINT", "http://mirror:8080/"),
                ("HF_HUB_OFFLINE", "1"),
            ],
        );
        assert_eq!(o.endpoint, "http://mirror:8080");
        assert!(o.offline);
        let o = opts(None, None, &[("HOME", "/h"), ("HF_HUB_OFFLINE", "0")]);
        assert!(!o.offline);
        assert_eq!(o.endpoint, DEFAULT_ENDPOINT);
    }

    #[test]
    fn the_token_file_is_read_last_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hf_file\n").unwrap();
        let home = dir.path().to_str().unwrap();
        let o = opts(None, None, &[("HF_HOME", home)]);
        assert_eq!(o.token.as_deref(), Some("hf_file"));
        assert!(!format!("{o:?}").contains("hf_file"));
        let o = opts(None, None, &[("HF_HOME", home), ("HF_TOKEN", "hf_env")]);
        assert_eq!(o.token.as_deref(), Some("hf_env"));
    }
}
