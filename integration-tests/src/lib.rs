//! Harness for end-to-end tests: builds the real `tessera` binary once, starts it on a free
//! port with a fresh temp dir, waits for `/health`, and stops it when dropped.

pub mod mock_hub;
pub mod otlp_collector;
pub mod reference;

/// A client of the gRPC API (TEI's `tei.v1`), generated from proto/tei.proto as TEI's clients are.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod grpc {
    tonic::include_proto!("tei.v1");
}

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Runs `future` to its end on a runtime of its own: the gRPC client is async, the tests are not.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

/// Every message of a gRPC answer stream, until it ends (a failure panics).
pub async fn all_messages<T>(mut stream: tonic::Streaming<T>) -> Vec<T> {
    let mut messages = Vec::new();
    while let Some(message) = stream.message().await.expect("the stream's next message") {
        messages.push(message);
    }
    messages
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub use tessera_core::testing::skip;

/// `shared/` beside the checkout (or `TESSERA_SHARED`), when present.
pub fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("TESSERA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared"));
    dir.is_dir().then_some(dir)
}

/// A model directory from `shared/models`, or `None` after [`skip`] (which fails under `CI=true`).
pub fn shared_model(name: &str) -> Option<PathBuf> {
    let dir = shared()
        .unwrap_or_else(|| workspace().join("../shared"))
        .join("models")
        .join(name);
    if dir.is_dir() {
        Some(dir)
    } else {
        skip(&format!("{} not found", dir.display()));
        None
    }
}

/// all-MiniLM-L6-v2: `TESSERA_TEST_MODEL`, `shared/models`, or fetched by `scripts/fetch-model.sh`.
pub fn minilm() -> PathBuf {
    if let Some(dir) = std::env::var_os("TESSERA_TEST_MODEL") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = shared()
        .map(|s| s.join("models/all-MiniLM-L6-v2"))
        .filter(|d| d.is_dir())
    {
        return dir;
    }
    let out = Command::new(workspace().join("scripts/fetch-model.sh"))
        .output()
        .expect("run scripts/fetch-model.sh");
    assert!(
        out.status.success(),
        "fetch-model.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A golden JSON file from `shared/`, or `None` after [`skip`] (which fails under `CI=true`).
pub fn golden(relative: &str) -> Option<serde_json::Value> {
    let path = shared().unwrap_or_else(|| workspace().join("../shared")).join(relative);
    if !path.is_file() {
        skip(&format!("{} not found", path.display()));
        return None;
    }
    Some(serde_json::from_slice(&std::fs::read(path).ok()?).expect("golden parses"))
}

/// Copies a model directory (read-only files become writable copies).
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read model dir") {
        let path = entry.expect("dir entry").path();
        let dest = to.join(path.file_name().expect("file name"));
        if path.is_dir() {
            std::fs::create_dir_all(&dest).expect("create dir");
            copy_dir(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).expect("copy file");
            let mut perms = std::fs::metadata(&dest).expect("metadata").permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&dest, perms).expect("permissions");
        }
    }
}

/// Path of the `tessera` binary, built once per test process (a no-op when up to date).
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("TESSERA_BIN") {
            return PathBuf::from(bin);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        // The same build as `cargo test --workspace` and scripts/test.sh make: building the
        // binary alone resolves other features, recompiles, and overwrites theirs.
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--workspace", "--all-targets"])
            .current_dir(workspace())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building tessera failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"));
        target.join("debug/tessera")
    })
    .clone()
}

/// TEI's environment variables, which tessera reads as settings, and the log filter: a test's
/// server must not pick them up from the machine running the tests (an `API_KEY` or `PORT` of
/// its own).
const TEI_ENV: &[&str] = &[
    "MODEL_ID",
    "REVISION",
    "TOKENIZATION_WORKERS",
    "DTYPE",
    "SERVED_MODEL_NAME",
    "POOLING",
    "MAX_CONCURRENT_REQUESTS",
    "MAX_BATCH_TOKENS",
    "MAX_BATCH_REQUESTS",
    "MAX_CLIENT_BATCH_SIZE",
    "GRPC_MAX_PARALLEL_STREAM_REQUESTS",
    "AUTO_TRUNCATE",
    "DEFAULT_PROMPT_NAME",
    "DEFAULT_PROMPT",
    "DENSE_PATH",
    "HF_API_TOKEN",
    "HOSTNAME",
    "PORT",
    "UDS_PATH",
    "PAYLOAD_LIMIT",
    "API_KEY",
    "JSON_OUTPUT",
    "DISABLE_SPANS",
    "OTLP_ENDPOINT",
    "OTLP_SERVICE_NAME",
    "PROMETHEUS_PORT",
    "CORS_ALLOW_ORIGIN",
    "LOG_LEVEL",
    "AIP_PREDICT_ROUTE",
    "AIP_HEALTH_ROUTE",
    "RUST_LOG",
];

/// A command for the tessera binary with none of [`TEI_ENV`] inherited.
pub fn tessera_command() -> Command {
    let mut command = Command::new(binary());
    for name in TEI_ENV {
        command.env_remove(name);
    }
    command
}

/// Runs `tessera ARGS` to completion; a run still going after 60 s is killed and fails the test.
pub fn run(args: &[&str]) -> Output {
    run_with_env(args, &[])
}

/// Like [`run`], with extra environment variables.
pub fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tessera_command();
    command.args(args).envs(env.iter().copied());
    run_command(command)
}

/// Runs `command` to completion, capturing its output; a run still going after 60 s is killed
/// and fails the test.
pub fn run_command(mut command: Command) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = command
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("run tessera");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(&out).unwrap_or_default(),
        stderr: std::fs::read(&err).unwrap_or_default(),
    }
}

/// A venv under `target/NAME` with `packages` installed (once: a marker file remembers), or
/// `None` after [`skip`] when python3 or pip cannot provide them.
pub fn python_venv(name: &str, packages: &[&str]) -> Option<PathBuf> {
    let venv = workspace().join("target").join(name);
    let python = venv.join("bin/python");
    let marker = venv.join(format!(".installed-{}", packages.join(",").replace(['/', ' '], "_")));
    if marker.is_file() {
        return Some(python);
    }
    let ok = (python.is_file()
        || Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success()))
        && Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(packages)
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        skip(&format!(
            "could not install {} into {}",
            packages.join(" "),
            venv.display()
        ));
        return None;
    }
    std::fs::write(&marker, "").ok()?;
    Some(python)
}

/// Whether the tests run as root (CI does): then servers can be run as another user.
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// A free TCP port on loopback, for a server the test starts later.
///
/// Taken below the kernel's ephemeral range and never handed out twice in one process: a port
/// from `bind(0)` is free only until the next `bind(0)` or outgoing connection, which the kernel
/// may give that same port (a mock hub's listener, a client's socket) before the server binds it.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let (low, span) = reserved_range();
    // Test binaries run one after another, but each starts its count apart from the last's.
    let start = std::process::id() % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) % span;
        let port = u16::try_from(low + offset).expect("a port below 65536");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{}", low + span);
}

/// Ports outside `/proc/sys/net/ipv4/ip_local_port_range` (32768..=60999 by default): the
/// larger stretch of unprivileged ports below or above it, as `(first, count)`.
fn reserved_range() -> (u32, u32) {
    let (first, last) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut bounds = s.split_whitespace().map(str::parse::<u32>);
            Some((bounds.next()?.ok()?, bounds.next()?.ok()?))
        })
        .unwrap_or((32768, 60999));
    let below = (1024, first.saturating_sub(1024));
    let above = (last + 1, 65536u32.saturating_sub(last + 1));
    let (low, span) = if below.1 >= above.1 { below } else { above };
    assert!(
        span >= 1000,
        "too few ports outside the ephemeral range {first}..={last}"
    );
    (low, span)
}

/// A running `tessera serve`.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Working directory of the process, removed on drop.
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Server {
    /// Starts `tessera serve --model-id MODEL ARGS` and waits until `/health` answers 200.
    pub fn start(model: &Path, args: &[&str]) -> Server {
        Self::start_with_env(model, args, &[])
    }

    /// Like [`Server::start`], with extra environment variables.
    pub fn start_with_env(model: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut server = Self::spawn(model, args, env);
        server.wait_healthy();
        server
    }

    fn spawn(model: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::spawn_on(free_port(), model, args, env)
    }

    /// Starts `tessera serve` on `port` and returns at once, before it even listens (for a
    /// replica restarted on its old port behind a proxy).
    pub fn spawn_on(port: u16, model: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("server.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = tessera_command();
        command
            .args([
                "serve",
                "--hostname",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--model-id",
            ])
            .arg(model)
            .args(args)
            .current_dir(dir.path())
            .env_remove("TESSERA_CONFIG")
            // Tests run many servers at once; the separate metrics port is tested on its own.
            .env("TESSERA_PROMETHEUS_PORT", "0")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log_file);
        let child = command.spawn().expect("start tessera");
        Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            log,
        }
    }

    /// Starts `command` as it is (its stderr becomes the log) without waiting for anything:
    /// for servers started with arguments a test did not choose, such as rendered manifests'.
    pub fn spawn_command(mut command: Command, url: String) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("server.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start tessera");
        Server { child, url, dir, log }
    }

    /// A gRPC channel to the server (the API is on the HTTP port, over HTTP/2).
    pub async fn grpc_channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.url.clone())
            .expect("endpoint")
            .connect()
            .await
            .expect("gRPC connection")
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Starts `tessera serve` and returns as soon as it listens, before the model serves (for
    /// the lifecycle's phases).
    pub fn start_listening(model: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut server = Self::spawn(model, args, env);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !server.log().contains(&format!("listening on {}", server.url)) {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("tessera exited with {status} before listening:\n{}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "not listening within 60 s:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Waits until `/health` answers 200 (the model serves).
    pub fn wait_ready(&mut self) {
        self.wait_healthy();
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = reqwest::blocking::Client::new();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tessera exited with {status} before it was healthy:\n{}", self.log());
            }
            // The port was free when chosen but another test's server may have taken it since:
            // only this process's own "listening" line proves /health is answered by it.
            let ours = self.log().contains(&format!("listening on {}", self.url));
            if let (true, Ok(r)) = (ours, client.get(format!("{}/health", self.url)).send()) {
                if r.status().is_success() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("tessera was not healthy within 60 s:\n{}", self.log());
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// POSTs JSON to `path`.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> reqwest::blocking::Response {
        reqwest::blocking::Client::new()
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .expect("request")
    }

    /// POSTs `inputs` (one text or a list) to /embed with `truncate`, expecting 200: the vectors.
    pub fn embed(&self, inputs: &serde_json::Value) -> Vec<Vec<f32>> {
        let response = self.post("/embed", &serde_json::json!({ "inputs": inputs, "truncate": true }));
        assert_eq!(response.status(), 200, "/embed of {inputs}");
        response.json().expect("a list of vectors")
    }

    /// GETs `path`.
    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        reqwest::blocking::get(format!("{}{path}", self.url)).expect("request")
    }

    /// The child process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as a process manager or the kubelet does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.pid());
    }

    /// Waits up to `within` for the process to exit and asserts it exited 0 (its log in the
    /// message otherwise): a drain that finishes inside the grace period.
    pub fn assert_exits_cleanly(&mut self, within: Duration) {
        let exit = self
            .wait_exit(within)
            .unwrap_or_else(|| panic!("still running {within:?} after SIGTERM:\n{}", self.log()));
        assert!(exit.success(), "exit status {exit}:\n{}", self.log());
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Largest absolute difference and cosine similarity between two vectors.
pub fn compare(got: &[f32], want: &[f32]) -> (f32, f64) {
    assert_eq!(got.len(), want.len(), "dimension");
    let max = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let dot: f64 = got.iter().zip(want).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    (max, dot / (norm(got) * norm(want)).max(1e-30))
}

/// Asserts the parity tolerances: every component within 1e-4 and cosine >= 0.99999.
pub fn assert_parity(got: &[f32], want: &[f32], what: &str) {
    let (max, cos) = compare(got, want);
    assert!(max <= 1e-4, "{what}: max abs diff {max}");
    assert!(cos >= 0.99999, "{what}: cosine {cos}");
}

/// A safetensors file held in memory: its header and data section, for building test models.
#[derive(Default)]
pub struct Safetensors {
    /// Tensor entries by name (`dtype`, `shape`, `data_offsets`).
    pub header: serde_json::Map<String, serde_json::Value>,
    /// The data section.
    pub data: Vec<u8>,
}

impl Safetensors {
    /// Reads a file.
    pub fn read(path: &Path) -> Safetensors {
        let bytes = std::fs::read(path).expect("read safetensors");
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        let mut header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..8 + n]).expect("header");
        header.remove("__metadata__");
        Safetensors {
            header,
            data: bytes[8 + n..].to_vec(),
        }
    }

    /// An F32 tensor's values.
    pub fn f32(&self, name: &str) -> Vec<f32> {
        let o = &self.header[name]["data_offsets"];
        let (b, e) = (o[0].as_u64().unwrap() as usize, o[1].as_u64().unwrap() as usize);
        self.data[b..e]
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    /// Overwrites element `index` of an F32 tensor.
    pub fn set_f32(&mut self, name: &str, index: usize, value: f32) {
        let begin = self.header[name]["data_offsets"][0].as_u64().expect("offsets") as usize + index * 4;
        self.data[begin..begin + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// Appends an F32 tensor.
    pub fn push(&mut self, name: &str, shape: &[usize], values: &[f32]) {
        let start = self.data.len();
        self.data.extend(values.iter().flat_map(|x| x.to_le_bytes()));
        self.header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, self.data.len()]}),
        );
    }

    /// Writes the file.
    pub fn write(&self, path: &Path) {
        let h = serde_json::to_vec(&self.header).unwrap();
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&h);
        out.extend_from_slice(&self.data);
        std::fs::write(path, out).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_never_ones_the_kernel_hands_out() {
        let ephemeral: Vec<u16> = (0..64)
            .map(|_| {
                TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .unwrap()
                    .port()
            })
            .collect();
        let (low, span) = reserved_range();
        let ours: Vec<u16> = (0..64).map(|_| free_port()).collect();
        let distinct: std::collections::BTreeSet<u16> = ours.iter().copied().collect();
        assert_eq!(distinct.len(), ours.len(), "{ours:?}");
        for port in &ours {
            assert!((low..low + span).contains(&u32::from(*port)), "{port}");
            assert!(!ephemeral.contains(port), "{port} is one bind(0) gave");
        }
    }
}
