//! A Hugging Face Hub stand-in on loopback for the model-source tests: the API shapes `hf-hub` and
//! `huggingface_hub` use (`/api/models/{id}/revision/{rev}` with `sha` and `siblings`,
//! `/{id}/resolve/{rev}/{file}` with `x-repo-commit`, `etag` and byte ranges), the hub's error
//! answers (`x-error-code` RepoNotFound / RevisionNotFound / EntryNotFound, 401 for a private
//! repository without its token), and slow or stalled downloads.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

/// One commit of a mock repository, with the names that lead to it.
#[derive(Clone, Debug)]
pub struct MockRevision {
    /// Branches, tags or `refs/pr/N` pointing at this commit.
    pub names: Vec<String>,
    /// The 40-hex commit id.
    pub sha: String,
    /// The directory whose files the commit holds.
    pub dir: PathBuf,
}

/// How a repository's downloads behave.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Delivery {
    /// At loopback speed.
    #[default]
    Fast,
    /// 16 KiB, then this pause, and so on.
    Throttled(Duration),
    /// File requests never get an answer (metadata still works).
    Stalled,
}

/// A mock repository.
#[derive(Clone, Debug)]
pub struct MockRepo {
    /// `ORG/NAME`.
    pub id: String,
    /// Its commits.
    pub revisions: Vec<MockRevision>,
    /// When set, requests without `Authorization: Bearer TOKEN` get 401.
    pub token: Option<String>,
    /// Download behaviour.
    pub delivery: Delivery,
}

impl MockRepo {
    /// A public repository whose `main` is `dir` at commit `sha`.
    pub fn new(id: &str, sha: &str, dir: &Path) -> MockRepo {
        MockRepo {
            id: id.into(),
            revisions: vec![MockRevision {
                names: vec!["main".into()],
                sha: sha.into(),
                dir: dir.to_path_buf(),
            }],
            token: None,
            delivery: Delivery::Fast,
        }
    }
}

#[derive(Default)]
struct Stats {
    requests: AtomicUsize,
    /// Body bytes sent per file name.
    bytes: Mutex<HashMap<String, u64>>,
}

/// The running mock; stops (and refuses connections) when dropped.
pub struct MockHub {
    /// `http://127.0.0.1:PORT`, for `HF_ENDPOINT`.
    pub url: String,
    stats: Arc<Stats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    repos: Vec<MockRepo>,
    stats: Arc<Stats>,
}

impl MockHub {
    /// Serves `repos` on a free loopback port.
    pub fn start(repos: Vec<MockRepo>) -> MockHub {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the mock hub");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            repos,
            stats: stats.clone(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("mock hub runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(handle).with_state(shared);
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = stopped => {}
                }
            });
            // Stalled answers would otherwise keep the runtime alive.
            runtime.shutdown_background();
        });
        MockHub {
            url,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// Body bytes sent so far for `file` (a repository-relative name), over all repositories.
    pub fn bytes_sent(&self, file: &str) -> u64 {
        self.stats.bytes.lock().unwrap().get(file).copied().unwrap_or(0)
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    shared.stats.requests.fetch_add(1, Ordering::SeqCst);
    let path = request.uri().path().to_string();
    let headers = request.headers().clone();
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let (id, revision) = match rest.split_once("/revision/") {
            Some((id, rev)) => (id.to_string(), decode(rev)),
            None => (rest.to_string(), "main".to_string()),
        };
        return match find(&shared, &id, &revision, &headers) {
            Ok((_, commit)) => info(&id, commit),
            Err((status, code, message)) => error(status, code, &message),
        };
    }
    let Some((id, rest)) = path.trim_start_matches('/').split_once("/resolve/") else {
        return error(StatusCode::NOT_FOUND, "EntryNotFound", "no such route");
    };
    let Some((revision, file)) = rest.split_once('/') else {
        return error(StatusCode::NOT_FOUND, "EntryNotFound", "no file named");
    };
    let (revision, file) = (decode(revision), decode(file));
    let (repo, commit) = match find(&shared, id, &revision, &headers) {
        Ok(found) => found,
        Err((status, code, message)) => return error(status, code, &message),
    };
    let target = commit.dir.join(&file);
    if file.split('/').any(|p| p == ".." || p.is_empty()) || !target.is_file() {
        return error(
            StatusCode::NOT_FOUND,
            "EntryNotFound",
            &format!("{file} does not exist"),
        );
    }
    if repo.delivery == Delivery::Stalled {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let bytes = std::fs::read(&target).expect("read a mock file");
    serve_file(&shared.stats, &file, &commit.sha, bytes, &headers, repo.delivery)
}

fn find<'a>(
    shared: &'a Shared,
    id: &str,
    revision: &str,
    headers: &HeaderMap,
) -> Result<(&'a MockRepo, &'a MockRevision), Refusal> {
    let Some(repo) = shared.repos.iter().find(|r| r.id == id) else {
        return Err((StatusCode::NOT_FOUND, "RepoNotFound", "Repository not found".into()));
    };
    if let Some(token) = &repo.token {
        let sent = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if sent != Some(&format!("Bearer {token}")) {
            return Err((
                StatusCode::UNAUTHORIZED,
                "RepoNotFound",
                "Invalid username or password.".into(),
            ));
        }
    }
    repo.revisions
        .iter()
        .find(|c| c.sha == revision || c.names.iter().any(|n| n == revision))
        .map(|commit| (repo, commit))
        .ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                "RevisionNotFound",
                format!("Invalid rev id: {revision}"),
            )
        })
}

fn info(id: &str, commit: &MockRevision) -> Response {
    let mut files = Vec::new();
    list(&commit.dir, &commit.dir, &mut files);
    files.sort();
    let siblings: Vec<_> = files.iter().map(|f| serde_json::json!({"rfilename": f})).collect();
    axum::Json(serde_json::json!({"id": id, "modelId": id, "sha": commit.sha, "siblings": siblings})).into_response()
}

fn list(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("list a mock repository").flatten() {
        let path = entry.path();
        if path.is_dir() {
            list(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
        }
    }
}

fn serve_file(
    stats: &Stats,
    file: &str,
    sha: &str,
    bytes: Vec<u8>,
    headers: &HeaderMap,
    delivery: Delivery,
) -> Response {
    let total = bytes.len() as u64;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    let etag = format!("\"{:016x}{:08x}\"", hasher.finish(), total);
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok().unwrap_or(u64::MAX))));
    let (status, body, content_range) = match range {
        Some((start, _)) if start >= total && total > 0 => {
            return error(StatusCode::RANGE_NOT_SATISFIABLE, "RangeNotSatisfiable", "range");
        }
        Some((start, end)) => {
            let end = end.min(total.saturating_sub(1));
            let slice = if total == 0 {
                Vec::new()
            } else {
                bytes[start as usize..=end as usize].to_vec()
            };
            (
                StatusCode::PARTIAL_CONTENT,
                slice,
                Some(format!("bytes {start}-{end}/{total}")),
            )
        }
        None => (StatusCode::OK, bytes, None),
    };
    *stats.bytes.lock().unwrap().entry(file.to_string()).or_default() += body.len() as u64;
    let mut extra = BTreeMap::new();
    extra.insert("x-repo-commit", sha.to_string());
    extra.insert("etag", etag);
    extra.insert("accept-ranges", "bytes".into());
    if let Some(range) = content_range {
        extra.insert("content-range", range);
    }
    let length = body.len();
    let body = match delivery {
        Delivery::Throttled(pause) => {
            let chunks: Vec<Vec<u8>> = body.chunks(16 << 10).map(<[u8]>::to_vec).collect();
            let stream = futures_util::stream::iter(chunks).then(move |chunk| async move {
                tokio::time::sleep(pause).await;
                Ok::<_, std::io::Error>(chunk)
            });
            Body::from_stream(stream)
        }
        _ => Body::from(body),
    };
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, length);
    for (name, value) in extra {
        response = response.header(name, value);
    }
    response.body(body).expect("a mock response")
}

/// An error answer: status, `x-error-code`, message.
type Refusal = (StatusCode, &'static str, String);

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [
            ("x-error-code", code.to_string()),
            ("x-error-message", message.to_string()),
        ],
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// Percent-decoding of a path segment (`refs%2Fpr%2F1`).
fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}
