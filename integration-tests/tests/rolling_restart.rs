//! A rolling restart loses nothing: two replicas behind nginx (standing in for a Kubernetes
//! Service and its endpoints), steady client load through nginx, and each replica in turn sent
//! SIGTERM, left down a while, and started again on its port. Every request the clients sent
//! must get a 200 with its vectors.
//!
//! What makes it work, and what a Kubernetes rollout relies on the same way: a draining replica
//! answers new requests 503 at once while it finishes the ones it accepted, a starting replica
//! answers 503 until its model serves, and a stopped one refuses connections; nginx passes a
//! request that met any of these to the other replica (`proxy_next_upstream error timeout
//! http_503 non_idempotent`: embedding requests have no side effects, so a POST is safe to
//! resend) and stops choosing a replica for `fail_timeout` after one such failure (`max_fails=1`,
//! its passive health check).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tessera_integration_tests::{free_port, is_root, minilm, skip, Server};

/// Clients sending requests through nginx all along.
const CLIENTS: usize = 4;
/// How long a stopped replica stays down: longer than nginx's `fail_timeout`, so nginx tries it
/// again while it is down and while it loads.
const DOWN: Duration = Duration::from_millis(1500);

fn nginx_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|path| path.is_file());
    if found.is_none() {
        skip("nginx is not installed (.ci/run installs the Debian package)");
    }
    found
}

/// nginx in the foreground on `port`, balancing over `upstreams`, everything under `dir`.
struct Nginx {
    child: Child,
    url: String,
    access_log: PathBuf,
}

impl Nginx {
    fn start(binary: &Path, dir: &Path, upstreams: &[u16]) -> Nginx {
        let port = free_port();
        let d = dir.display();
        let servers: String = upstreams
            .iter()
            .map(|p| format!("    server 127.0.0.1:{p} max_fails=1 fail_timeout=1s;\n"))
            .collect();
        // Run as root (CI), nginx's workers would switch to `nobody`, who cannot read `dir`.
        let user = if is_root() { "user root;" } else { "" };
        let conf = format!(
            r#"{user}
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 1024; }}
http {{
  log_format upstreams '$status "$upstream_addr" "$upstream_status"';
  access_log {d}/access.log upstreams;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  upstream tessera {{
{servers}    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://tessera;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_connect_timeout 1s;
      proxy_read_timeout 60s;
      client_body_buffer_size 1m;
      proxy_buffer_size 64k;
      proxy_buffers 16 64k;
      proxy_max_temp_file_size 0;
    }}
  }}
}}
"#
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).expect("write nginx.conf");
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        Nginx {
            child,
            url: format!("http://127.0.0.1:{port}"),
            access_log: dir.join("access.log"),
        }
    }

    fn wait_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::blocking::Client::new();
        loop {
            assert!(self.child.try_wait().ok().flatten().is_none(), "nginx exited");
            let answered = client.get(format!("{}/health", self.url)).send();
            if answered.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "nginx did not serve within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The access log's lines: `STATUS "UPSTREAMS TRIED" "THEIR STATUSES"`.
    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the clients saw: one entry per request, `Ok` for a 200 with one vector per input.
type Outcomes = Arc<Mutex<Vec<Result<(), String>>>>;

fn client(url: String, id: usize, stop: Arc<AtomicBool>, outcomes: Outcomes) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let inputs: Vec<String> = (0..4).map(|i| format!("client {id} request {n} input {i}")).collect();
        let outcome = match client
            .post(format!("{url}/embed"))
            .json(&json!({ "inputs": inputs }))
            .send()
        {
            Ok(r) if r.status() == 200 => match r.json::<Vec<Vec<f32>>>() {
                Ok(v) if v.len() == inputs.len() => Ok(()),
                other => Err(format!("200 with {other:?}")),
            },
            Ok(r) => {
                let status = r.status();
                Err(format!("{status}: {}", r.text().unwrap_or_default()))
            }
            Err(e) => Err(format!("no answer: {e}")),
        };
        outcomes.lock().unwrap().push(outcome);
    }
}

fn stop_replica(server: &mut Server) {
    server.terminate();
    server.assert_exits_cleanly(Duration::from_secs(30));
}

#[test]
fn a_rolling_restart_behind_nginx_answers_every_request() {
    let Some(nginx_bin) = nginx_binary() else { return };
    let model = minilm();
    let ports = [free_port(), free_port()];
    let args = ["--shutdown-grace", "30"];
    let mut replicas: Vec<Server> = ports.iter().map(|&p| Server::spawn_on(p, &model, &args, &[])).collect();
    for replica in &mut replicas {
        replica.wait_ready();
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut nginx = Nginx::start(&nginx_bin, dir.path(), &ports);
    nginx.wait_serving();

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Outcomes = Arc::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (url, stop, outcomes) = (nginx.url.clone(), stop.clone(), outcomes.clone());
            std::thread::spawn(move || client(url, id, stop, outcomes))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));

    let mut served_after_restart = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        stop_replica(&mut replicas[i]);
        std::thread::sleep(DOWN);
        let before = nginx.log().len();
        replicas[i] = Server::spawn_on(*port, &model, &args, &[]);
        replicas[i].wait_ready();
        // Back in rotation: nginx sends it requests again before the next one goes down.
        let deadline = Instant::now() + Duration::from_secs(20);
        let upstream = format!("127.0.0.1:{port}\" \"200");
        while !nginx.log()[before..].iter().any(|l| l.contains(&upstream)) {
            assert!(
                Instant::now() < deadline,
                "replica {i} got no request after its restart"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        served_after_restart.push(i);
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client thread");
    }

    let outcomes = outcomes.lock().unwrap();
    let failed: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    let log = nginx.log();
    // A request nginx had to resend lists more than one upstream.
    let resent = log.iter().filter(|l| l.contains(", ")).count();
    for line in log.iter().filter(|l| l.contains(", ")) {
        eprintln!("resent: {line}");
    }
    eprintln!(
        "{} requests through nginx, {} failed, {resent} resent to the other replica",
        outcomes.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        outcomes.len() >= 50,
        "only {} requests: the load was not steady",
        outcomes.len()
    );
    assert!(
        resent >= 2,
        "no request met a stopped or starting replica: the test proves nothing"
    );
    assert_eq!(served_after_restart, [0, 1]);
}
