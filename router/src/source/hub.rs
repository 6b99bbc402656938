//! Talking to the hub through `hf-hub`: the repository's commit and file list, whole files into the
//! cache, and byte ranges (safetensors headers) without downloading the weights.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use hf_hub::api::tokio::{Api, ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};

use super::options::HubOptions;
use super::progress::Transfer;

/// Largest safetensors header accepted (the format's own limit).
const MAX_HEADER: u64 = 100 << 20;

/// What the hub says a revision is.
#[derive(Debug)]
pub(super) struct RepoState {
    pub(super) sha: String,
    pub(super) siblings: BTreeSet<String>,
}

/// Why the repository's state is unknown.
#[derive(Debug)]
pub(super) enum InfoError {
    /// No answer (connection, timeout, 5xx): a cached copy may stand in.
    Unreachable(String),
    /// The hub answered no (401/403/404...): that is final.
    Refused(anyhow::Error),
}

#[derive(serde::Deserialize)]
struct InfoBody {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(serde::Deserialize)]
struct Sibling {
    rfilename: String,
}

/// One repository on one hub.
pub(super) struct Hub {
    api: Api,
    opts: HubOptions,
    id: String,
}

impl Hub {
    pub(super) fn new(opts: &HubOptions, id: &str) -> anyhow::Result<Self> {
        let api = ApiBuilder::from_cache(Cache::new(opts.cache.clone()))
            .with_endpoint(opts.endpoint.clone())
            .with_token(opts.token.clone())
            .with_progress(false)
            .with_user_agent("tessera", env!("CARGO_PKG_VERSION"))
            .build()
            .context("cannot set up the hub client")?;
        Ok(Self {
            api,
            opts: opts.clone(),
            id: id.to_string(),
        })
    }

    fn repo(&self, revision: &str) -> ApiRepo {
        self.api.repo(Repo::with_revision(
            self.id.clone(),
            RepoType::Model,
            revision.to_string(),
        ))
    }

    /// The commit `revision` points at and the files it has.
    pub(super) async fn info(&self, revision: &str) -> Result<RepoState, InfoError> {
        let response = self
            .repo(revision)
            .info_request()
            .timeout(self.opts.timeout)
            .send()
            .await
            .map_err(|e| InfoError::Unreachable(transport(&e)))?;
        let status = response.status().as_u16();
        let error_code = header(&response, "x-error-code");
        if status >= 500 || status == 429 {
            return Err(InfoError::Unreachable(format!("HTTP {status}")));
        }
        if status != 200 {
            let message = header(&response, "x-error-message");
            let body = response.text().await.unwrap_or_default();
            let said = message.or_else(|| server_message(&body));
            return Err(InfoError::Refused(self.refusal(revision, status, error_code, said)));
        }
        let body: InfoBody = response.json().await.map_err(|e| {
            InfoError::Refused(anyhow!(
                "the hub at {} answered for {} with something that is not a repository description: {e}",
                self.opts.endpoint,
                self.id
            ))
        })?;
        let sha = body.sha.ok_or_else(|| {
            InfoError::Refused(anyhow!(
                "the hub at {} did not say which commit {}@{revision} is (no `sha`)",
                self.opts.endpoint,
                self.id
            ))
        })?;
        Ok(RepoState {
            sha,
            siblings: body.siblings.into_iter().map(|s| s.rfilename).collect(),
        })
    }

    fn refusal(&self, revision: &str, status: u16, code: Option<String>, said: Option<String>) -> anyhow::Error {
        let (id, endpoint) = (&self.id, &self.opts.endpoint);
        let said = said.map(|s| format!(" (the hub says: {s})")).unwrap_or_default();
        match status {
            401 | 403 => {
                let hint = if self.opts.token.is_some() {
                    "the token sent is not accepted for it: check that it has read access, and for a gated \
                     model that its terms are accepted on the model page"
                } else {
                    "no token was sent: pass --hf-token TOKEN or set HF_TOKEN (or log in with `hf auth login`)"
                };
                anyhow!(
                    "the hub at {endpoint} refused access to {id} (HTTP {status}){said}: the repository is \
                     private or gated, or does not exist; {hint}"
                )
            }
            404 if code.as_deref() == Some("RevisionNotFound") || said.to_lowercase().contains("rev") => {
                anyhow!(
                    "revision `{revision}` does not exist in {id} at {endpoint} (HTTP 404){said}: pass a branch, \
                     tag, commit sha or refs/pr/N of that repository to --revision"
                )
            }
            404 => anyhow!(
                "model {id} does not exist at {endpoint} (HTTP 404){said}, and there is no local directory \
                 named `{id}`: check the id, or pass the path of a model directory"
            ),
            _ => anyhow!("the hub at {endpoint} answered HTTP {status} for {id}@{revision}{said}"),
        }
    }

    /// Downloads one file of commit `sha` into the cache.
    pub(super) async fn download(&self, sha: &str, file: &str, transfer: Transfer) -> anyhow::Result<PathBuf> {
        self.repo(sha)
            .download_with_progress(file, transfer)
            .await
            .map_err(|e| self.download_error(sha, file, e))
    }

    fn download_error(&self, sha: &str, file: &str, error: ApiError) -> anyhow::Error {
        let what = format!("downloading {file} of {}@{sha} from {}", self.id, self.opts.endpoint);
        match error {
            ApiError::RequestError(e) => match e.status() {
                Some(status) => anyhow!("{what}: HTTP {status}"),
                None => anyhow!("{what}: {}", transport(&e)),
            },
            ApiError::MissingHeader(h) => anyhow!(
                "{what}: the answer has no `{h}` header; is HF_ENDPOINT ({}) a Hugging Face hub?",
                self.opts.endpoint
            ),
            other => anyhow!("{what}: {other}"),
        }
    }

    /// The first `8 + n` bytes of a safetensors file (its length prefix and JSON header) and the
    /// file's full length, with two range requests.
    pub(super) async fn safetensors_header(&self, sha: &str, file: &str) -> anyhow::Result<(Vec<u8>, u64)> {
        let url = self.repo(sha).url(file);
        let (mut head, total) = self
            .range(&url, 0, 8)
            .await
            .with_context(|| format!("reading {file}"))?;
        let n = u64::from_le_bytes(head[..8].try_into().expect("eight bytes"));
        if n > MAX_HEADER || n + 8 > total {
            bail!("{file} is not a safetensors file: its header length {n} does not fit in {total} bytes");
        }
        let (rest, _) = self
            .range(&url, 8, n as usize)
            .await
            .with_context(|| format!("reading the header of {file}"))?;
        head.extend(rest);
        Ok((head, total))
    }

    /// `len` bytes from `start`, and the file's total length. A server that ignores `Range` is read
    /// only as far as needed.
    async fn range(&self, url: &str, start: usize, len: usize) -> anyhow::Result<(Vec<u8>, u64)> {
        let end = start + len - 1;
        let mut response = self
            .api
            .client()
            .get(url)
            .header("Range", format!("bytes={start}-{end}"))
            .timeout(self.opts.timeout)
            .send()
            .await
            .map_err(|e| anyhow!("{}", transport(&e)))?;
        let status = response.status().as_u16();
        let total = match status {
            206 => header(&response, "content-range")
                .and_then(|r| r.rsplit('/').next().and_then(|t| t.parse().ok()))
                .ok_or_else(|| anyhow!("the hub's partial answer has no usable Content-Range"))?,
            200 => response
                .content_length()
                .ok_or_else(|| anyhow!("the hub ignored the byte range and sent no length"))?,
            _ => bail!("HTTP {status}"),
        };
        let skip = if status == 200 { start } else { 0 };
        let mut bytes = Vec::with_capacity(len);
        while bytes.len() < skip + len {
            match response.chunk().await.map_err(|e| anyhow!("{}", transport(&e)))? {
                Some(chunk) => bytes.extend_from_slice(&chunk),
                None => bail!("the file ended after {} bytes", bytes.len()),
            }
        }
        bytes.truncate(skip + len);
        Ok((bytes.split_off(skip), total))
    }
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The hub's `{"error": "..."}`, shortened.
fn server_message(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let message = value.get("error")?.as_str()?;
    Some(message.chars().take(200).collect())
}

/// A transport failure in a few words (the full reqwest chain repeats the URL).
fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer in time (see --hub-timeout)".into()
    } else if e.is_connect() {
        let mut cause: Option<&dyn std::error::Error> = Some(e);
        let mut last = e.to_string();
        while let Some(c) = cause {
            last = c.to_string();
            cause = c.source();
        }
        format!("cannot connect: {last}")
    } else {
        e.to_string()
    }
}
