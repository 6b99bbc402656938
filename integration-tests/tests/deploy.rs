//! The Kubernetes manifests under deploy/kubernetes: every overlay rendered with kustomize and
//! validated against the schemas of Kubernetes [`K8S_VERSION`] (kubernetes-validate, strict),
//! the objects checked against each other and against the Dockerfile, and the rendered
//! containers run: the init container's and the server's own arguments and environment start
//! the real binary (against a mock hub, as the image's non-root user when the test runs as root),
//! and the probes, the metrics endpoint and SIGTERM behave as the manifests expect.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tessera_integration_tests::mock_hub::{MockHub, MockRepo};
use tessera_integration_tests::{
    binary, free_port, is_root, minilm, python_venv, run_command, skip, workspace, Server,
};

/// The Kubernetes version the manifests are validated against.
const K8S_VERSION: &str = "1.33";
/// The kubernetes-validate release (its schemas reach 1.37).
const VALIDATOR: &str = "kubernetes-validate==1.37.0";
/// Every directory a user applies.
const RENDERED: [&str; 4] = [
    "overlays/cpu",
    "overlays/gpu",
    "overlays/cpu-keda",
    "prometheus-adapter",
];
/// Custom resources: no Kubernetes schema covers them (checked here by their references).
const CUSTOM_KINDS: [&str; 2] = ["ServiceMonitor", "ScaledObject"];

fn manifests() -> PathBuf {
    workspace().join("deploy/kubernetes")
}

/// `kubectl kustomize DIR`, `kustomize build DIR`, or the standalone kustomize .ci/run installs
/// under target/tools; `None` after [`skip`] when there is none.
fn render(dir: &str) -> Option<String> {
    let path = manifests().join(dir);
    let tools = workspace().join("target/tools/kustomize");
    let candidates: [(PathBuf, &[&str]); 3] = [
        ("kubectl".into(), &["kustomize"]),
        ("kustomize".into(), &["build"]),
        (tools, &["build"]),
    ];
    for (program, args) in candidates {
        let Ok(out) = Command::new(&program).args(args).arg(&path).output() else {
            continue;
        };
        assert!(
            out.status.success(),
            "{} {} {dir}: {}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        return Some(String::from_utf8(out.stdout).expect("utf-8 YAML"));
    }
    skip("neither kubectl nor kustomize is installed (.ci/run installs kustomize)");
    None
}

/// The rendered objects of `dir`, after kubernetes-validate has passed them.
fn validated(dir: &str) -> Option<Vec<Value>> {
    let yaml = render(dir)?;
    static VENV: OnceLock<Option<PathBuf>> = OnceLock::new();
    let python = VENV.get_or_init(|| python_venv("py-deploy", &[VALIDATOR])).clone()?;
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), &yaml).expect("write rendering");
    let validator = python.with_file_name("kubernetes-validate");
    let out = Command::new(&validator)
        .args(["--strict", "--kubernetes-version", K8S_VERSION])
        .arg(file.path())
        .output()
        .expect("run kubernetes-validate");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{dir} does not validate:\n{report}");
    for line in report.lines().filter(|l| l.starts_with("WARN")) {
        assert!(
            CUSTOM_KINDS.iter().any(|k| line.contains(&format!("kind {k} "))),
            "{dir}: {line}"
        );
    }
    let mut to_json = Command::new(&python);
    to_json.args([
        "-c",
        "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], sys.stdout)",
    ]);
    to_json.arg(file.path());
    let out = run_command(to_json);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let objects: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON objects");
    assert!(!objects.is_empty(), "{dir} renders nothing");
    Some(objects)
}

fn only<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} expected, found {}", found.len());
    found[0]
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["kind"] == kind)
}

/// Whether every `key: value` of `selector` is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("selector labels");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn container<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod[list]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("{list} {name} in the pod"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().expect("a string").to_string()).collect())
        .unwrap_or_default()
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// CPU quantities as Kubernetes writes them ("4", "500m"), in CPUs.
fn cpus(quantity: &Value) -> f64 {
    let q = quantity.as_str().expect("a quantity string");
    match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().expect("millicpus") / 1000.0,
        None => q.parse().expect("cpus"),
    }
}

/// The Dockerfile's instruction `name` in the stage `stage` (`FROM ... AS stage`), joined.
fn dockerfile(stage: &str, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(workspace().join("Dockerfile")).expect("Dockerfile");
    let mut current = String::new();
    let mut found = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(from) = line.strip_prefix("FROM ") {
            current = from.rsplit(" AS ").next().unwrap_or_default().to_string();
        } else if current == stage {
            if let Some(rest) = line.strip_prefix(&format!("{name} ")) {
                found.push(rest.to_string());
            }
        }
    }
    found
}

/// Seconds of the server's preStop pause (`/bin/sleep N`).
fn pre_stop_pause(server: &Value) -> u64 {
    let command = strings(&server["lifecycle"]["preStop"]["exec"]["command"]);
    assert_eq!(
        command.first().map(String::as_str),
        Some("/bin/sleep"),
        "preStop: {command:?}"
    );
    command[1].parse().expect("preStop seconds")
}

/// The checks every overlay passes, given the image tag (the Dockerfile target) it runs.
fn check_overlay(dir: &str, objects: &[Value], target: &str, autoscaler: &str) {
    let deployment = only(objects, "Deployment");
    let name = deployment["metadata"]["name"].as_str().expect("deployment name");
    let template = &deployment["spec"]["template"];
    let pod = &template["spec"];
    let labels = &template["metadata"]["labels"];
    assert!(selects(&deployment["spec"]["selector"]["matchLabels"], labels), "{dir}");
    assert!(
        deployment["spec"].get("replicas").is_none(),
        "{dir}: the autoscaler owns the replica count"
    );

    let service = only(objects, "Service");
    assert!(
        selects(&service["spec"]["selector"], labels),
        "{dir}: Service selects no pod"
    );
    let pdb = only(objects, "PodDisruptionBudget");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], labels), "{dir}: PDB");
    let server = container(pod, "containers", "tessera");
    let port_names: Vec<&Value> = server["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| &p["name"])
        .collect();
    for port in service["spec"]["ports"].as_array().expect("service ports") {
        assert!(port_names.contains(&&port["targetPort"]), "{dir}: {port}");
    }
    let monitor = only(objects, "ServiceMonitor");
    assert!(
        selects(
            &monitor["spec"]["selector"]["matchLabels"],
            &service["metadata"]["labels"]
        ),
        "{dir}: the ServiceMonitor selects no Service"
    );
    for endpoint in monitor["spec"]["endpoints"].as_array().expect("endpoints") {
        let served = service["spec"]["ports"]
            .as_array()
            .expect("service ports")
            .iter()
            .any(|p| p["name"] == endpoint["port"]);
        assert!(served, "{dir}: ServiceMonitor port {}", endpoint["port"]);
    }

    // Exactly one autoscaler, aimed at this Deployment, on the queue gauge.
    for kind in ["HorizontalPodAutoscaler", "ScaledObject"] {
        assert_eq!(find(objects, kind).is_some(), kind == autoscaler, "{dir}: {kind}");
    }
    let scaler = only(objects, autoscaler);
    assert_eq!(scaler["spec"]["scaleTargetRef"]["kind"], "Deployment", "{dir}");
    assert_eq!(scaler["spec"]["scaleTargetRef"]["name"], name, "{dir}");
    let metric = if autoscaler == "ScaledObject" {
        scaler["spec"]["triggers"][0]["metadata"]["query"].clone()
    } else {
        scaler["spec"]["metrics"][0]["pods"]["metric"]["name"].clone()
    };
    assert!(
        metric.as_str().is_some_and(|m| m.contains("te_queue_size")),
        "{dir}: {metric}"
    );

    // Shutdown: the kubelet's SIGKILL comes after the preStop pause and tessera's own grace.
    let args = strings(&server["args"]);
    let grace: u64 = flag(&args, "--shutdown-grace")
        .expect("--shutdown-grace")
        .parse()
        .expect("secs");
    let pause = pre_stop_pause(server);
    let termination = pod["terminationGracePeriodSeconds"].as_u64().expect("grace period");
    assert!(termination > pause + grace, "{dir}: {termination} <= {pause} + {grace}");

    // Locked down, as the image's own user.
    let user: Vec<String> = dockerfile(target, "USER");
    let uid = user.last().and_then(|u| u.split(':').next()).expect("Dockerfile USER");
    assert_eq!(pod["securityContext"]["runAsUser"].to_string(), uid, "{dir}");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{dir}");
    let init = container(pod, "initContainers", "download");
    for c in [server, init] {
        let security = &c["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{dir} {}", c["name"]);
        assert_eq!(security["allowPrivilegeEscalation"], false, "{dir} {}", c["name"]);
        assert_eq!(security["capabilities"]["drop"], json!(["ALL"]), "{dir} {}", c["name"]);
        assert_eq!(
            c["image"],
            format!("tessera:{target}"),
            "{dir}: the image is the {target} target"
        );
        let volumes: Vec<&Value> = pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .map(|v| &v["name"])
            .collect();
        for mount in c["volumeMounts"].as_array().expect("mounts") {
            assert!(volumes.contains(&&mount["name"]), "{dir}: {mount}");
        }
    }
    let entrypoint = dockerfile(target, "ENTRYPOINT");
    assert_eq!(
        entrypoint,
        [r#"["/usr/local/bin/tessera"]"#],
        "{dir}: the args need tessera as the entrypoint"
    );
    let exposed: Vec<String> = dockerfile(target, "EXPOSE")
        .join(" ")
        .split_whitespace()
        .map(String::from)
        .collect();
    for port in server["ports"].as_array().expect("ports") {
        assert!(
            exposed.contains(&port["containerPort"].to_string()),
            "{dir}: {port} not exposed"
        );
    }

    // tessera sizes its thread pool to its CPU quota rounded up: a whole-CPU limit equal to the
    // request wastes nothing and gives Guaranteed QoS.
    let resources = &server["resources"];
    let limit = cpus(&resources["limits"]["cpu"]);
    assert_eq!(limit.fract(), 0.0, "{dir}: CPU limit {limit} is not whole CPUs");
    assert_eq!(
        cpus(&resources["requests"]["cpu"]),
        limit,
        "{dir}: CPU request != limit"
    );
    assert_eq!(
        resources["requests"]["memory"], resources["limits"]["memory"],
        "{dir}: memory"
    );
}

/// Directories under deploy/kubernetes with a kustomization a user applies (not the base, not
/// the components), so that a new overlay cannot go untested.
fn applicable() -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![manifests()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read deploy/kubernetes").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
                let text = std::fs::read_to_string(&path).expect("kustomization");
                let relative = dir
                    .strip_prefix(manifests())
                    .expect("under deploy")
                    .display()
                    .to_string();
                if relative != "base" && !text.contains("kind: Component") {
                    found.push(relative);
                }
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_overlay_renders_and_validates_against_kubernetes_schemas() {
    let mut listed: Vec<String> = RENDERED.iter().map(|d| d.to_string()).collect();
    listed.sort();
    assert_eq!(applicable(), listed, "RENDERED must name every overlay");
    for dir in RENDERED {
        let Some(objects) = validated(dir) else { return };
        match dir {
            "overlays/cpu" => check_overlay(dir, &objects, "cpu", "HorizontalPodAutoscaler"),
            "overlays/gpu" => {
                check_overlay(dir, &objects, "cuda", "HorizontalPodAutoscaler");
                let pod = &only(&objects, "Deployment")["spec"]["template"]["spec"];
                let server = container(pod, "containers", "tessera");
                assert_eq!(server["resources"]["limits"]["nvidia.com/gpu"], "1");
                assert_eq!(flag(&strings(&server["args"]), "--dtype"), Some("float16"));
            }
            "overlays/cpu-keda" => check_overlay(dir, &objects, "cpu", "ScaledObject"),
            _ => {
                let config = &only(&objects, "ConfigMap")["data"]["config.yaml"];
                let rule = config.as_str().expect("the adapter's rules");
                assert!(
                    rule.contains("te_queue_size") && rule.contains("pod: {resource: pod}"),
                    "{rule}"
                );
            }
        }
    }
}

/// A rendered container's environment: literals and ConfigMap keys resolved, optional Secrets
/// absent, paths under a volume's mount moved to the directory standing in for that volume.
fn environment(c: &Value, objects: &[Value], volumes: &BTreeMap<String, PathBuf>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for var in c["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().expect("env name").to_string();
        let value = if let Some(v) = var["value"].as_str() {
            v.to_string()
        } else if let Some(key) = var["valueFrom"].get("configMapKeyRef") {
            let map = objects
                .iter()
                .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == key["name"])
                .unwrap_or_else(|| panic!("ConfigMap {} is not rendered", key["name"]));
            map["data"][key["key"].as_str().expect("key")]
                .as_str()
                .expect("ConfigMap key")
                .to_string()
        } else {
            let secret = &var["valueFrom"]["secretKeyRef"];
            assert_eq!(
                secret["optional"], true,
                "{name}: only optional Secrets can be absent here"
            );
            continue;
        };
        env.insert(name, value);
    }
    for value in env.values_mut() {
        for mount in c["volumeMounts"].as_array().into_iter().flatten() {
            let at = mount["mountPath"].as_str().expect("mountPath");
            if let Some(rest) = value.strip_prefix(at) {
                let dir = &volumes[mount["name"].as_str().expect("volume")];
                *value = format!("{}{rest}", dir.display());
            }
        }
    }
    env
}

/// Kubernetes' `$(VAR)` expansion of container args.
fn expand(args: &[String], env: &BTreeMap<String, String>) -> Vec<String> {
    args.iter()
        .map(|a| env.iter().fold(a.clone(), |a, (k, v)| a.replace(&format!("$({k})"), v)))
        .collect()
}

/// `tessera ARGS` with `env` only (no inherited variables but PATH), run from `/` as the image's
/// user when this test is root, with TMPDIR on the `tmp` volume's stand-in.
fn container_command(args: &[String], env: &BTreeMap<String, String>, user: (u32, u32), tmp: &Path) -> Command {
    let mut command = if is_root() {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", user.0))
            .arg(format!("--regid={}", user.1))
            .args(["--clear-groups", "--"])
            .arg(binary());
        c
    } else {
        Command::new(binary())
    };
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TMPDIR", tmp)
        .envs(env)
        .current_dir("/");
    command
}

/// A directory the container's user may write, standing in for an emptyDir volume.
fn volume(user: (u32, u32)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    if is_root() {
        std::os::unix::fs::chown(dir.path(), Some(user.0), Some(user.1)).expect("chown");
    }
    dir
}

/// Makes a tree read-only for everyone, its owner included.
fn read_only(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path).expect("metadata");
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).expect("read dir") {
            read_only(&entry.expect("entry").path());
        }
    }
    if !meta.file_type().is_symlink() {
        let mode = if meta.is_dir() { 0o555 } else { 0o444 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

fn wait_for(server: &mut Server, url: &str, status: u16, within: Duration) {
    let deadline = Instant::now() + within;
    let client = reqwest::blocking::Client::new();
    loop {
        if let Some(exit) = server.exited() {
            panic!(
                "tessera exited ({exit}) before {url} answered {status}:\n{}",
                server.log()
            );
        }
        if let Ok(response) = client.get(url).send() {
            let got = response.status().as_u16();
            if got == status {
                return;
            }
            // A probe path the binary does not serve never becomes healthy: say so at once.
            assert!(!(400..500).contains(&got), "{url} answered {got}");
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer {status} within {within:?}:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The overlay's download init container, then its server container, run as rendered.
fn run_rendered_pod(dir: &str) {
    let Some(objects) = validated(dir) else { return };
    let pod = &only(&objects, "Deployment")["spec"]["template"]["spec"];
    let id = |key: &str| -> u32 {
        let id = pod["securityContext"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("{dir}: {key}"));
        u32::try_from(id).expect("a user id")
    };
    let user = (id("runAsUser"), id("runAsGroup"));
    let stand_ins: BTreeMap<String, tempfile::TempDir> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| (v["name"].as_str().expect("volume name").to_string(), volume(user)))
        .collect();
    let volumes: BTreeMap<String, PathBuf> = stand_ins
        .iter()
        .map(|(k, v)| (k.clone(), v.path().to_path_buf()))
        .collect();
    let tmp = &volumes["tmp"];

    // The init container downloads the configured model from the (mock) hub.
    let init = container(pod, "initContainers", "download");
    let mut env = environment(init, &objects, &volumes);
    let model_id = env["MODEL_ID"].clone();
    let hub = MockHub::start(vec![MockRepo::new(&model_id, &"d".repeat(40), &minilm())]);
    env.insert("HF_ENDPOINT".into(), hub.url.clone());
    let args = expand(&strings(&init["args"]), &env);
    let out = run_command(container_command(&args, &env, user, tmp));
    assert!(
        out.status.success(),
        "{dir}: the download init container failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snapshot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        snapshot.join("config.json").is_file(),
        "{dir}: nothing downloaded into {}",
        snapshot.display()
    );
    drop(hub);
    // What the server mounts read-only it may not write (a lock file, say) even as its owner.
    for mount in container(pod, "containers", "tessera")["volumeMounts"]
        .as_array()
        .expect("mounts")
    {
        if mount["readOnly"] == true {
            read_only(&volumes[mount["name"].as_str().expect("volume")]);
        }
    }

    // The server container, offline, on free ports in place of its container ports.
    let server = container(pod, "containers", "tessera");
    let env = environment(server, &objects, &volumes);
    assert_eq!(env.get("HF_HUB_OFFLINE").map(String::as_str), Some("1"), "{dir}");
    let mut args = expand(&strings(&server["args"]), &env);
    let mut ports = BTreeMap::new();
    for port in server["ports"].as_array().expect("ports") {
        let name = port["name"].as_str().expect("port name").to_string();
        let flag_name = if name == "http" { "--port" } else { "--prometheus-port" };
        let at = args
            .iter()
            .position(|a| a == flag_name)
            .unwrap_or_else(|| panic!("{dir}: {flag_name} not in the args"));
        assert_eq!(
            args[at + 1],
            port["containerPort"].to_string(),
            "{dir}: {flag_name} and the {name} port"
        );
        let free = free_port();
        args[at + 1] = free.to_string();
        ports.insert(name, free);
    }
    let url = |probe: &Value| {
        let get = &probe["httpGet"];
        let port = ports[get["port"].as_str().expect("a named probe port")];
        format!("http://127.0.0.1:{port}{}", get["path"].as_str().expect("probe path"))
    };
    let mut running = Server::spawn_command(
        container_command(&args, &env, user, tmp),
        format!("http://127.0.0.1:{}", ports["http"]),
    );
    let budget = |probe: &Value| {
        Duration::from_secs(
            probe["periodSeconds"].as_u64().unwrap_or(10) * probe["failureThreshold"].as_u64().unwrap_or(3),
        )
    };
    let startup = &server["startupProbe"];
    wait_for(&mut running, &url(startup), 200, budget(startup));
    wait_for(
        &mut running,
        &url(&server["readinessProbe"]),
        200,
        Duration::from_secs(60),
    );
    wait_for(
        &mut running,
        &url(&server["livenessProbe"]),
        200,
        Duration::from_secs(1),
    );
    let embedded = reqwest::blocking::Client::new()
        .post(format!("{}/embed", running.url))
        .json(&json!({"inputs": ["a rendered pod"]}))
        .send()
        .expect("embed");
    assert_eq!(embedded.status(), 200, "{dir}");
    let service = only(&objects, "Service");
    let monitor = &only(&objects, "ServiceMonitor")["spec"]["endpoints"][0];
    let target = service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == monitor["port"])
        .expect("the monitored port")["targetPort"]
        .as_str()
        .expect("a named target port");
    let scraped = reqwest::blocking::get(format!(
        "http://127.0.0.1:{}{}",
        ports[target],
        monitor["path"].as_str().expect("path")
    ))
    .and_then(|r| r.text())
    .expect("scrape");
    assert!(
        scraped.contains("te_queue_size"),
        "{dir}: the autoscaler's gauge is not exposed; scraped:\n{scraped}\nlog:\n{}",
        running.log()
    );

    // The kubelet's SIGTERM after the preStop pause: tessera drains and exits well within the
    // grace period that remains.
    running.terminate();
    let left = pod["terminationGracePeriodSeconds"].as_u64().expect("grace") - pre_stop_pause(server);
    running.assert_exits_cleanly(Duration::from_secs(left));
}

#[test]
fn the_cpu_pod_downloads_then_serves_with_its_rendered_args_and_probes() {
    run_rendered_pod("overlays/cpu");
}

#[test]
fn the_gpu_pods_args_are_accepted_too() {
    // float16 on a CPU: the arguments, probes and shutdown are the same as on a GPU.
    run_rendered_pod("overlays/gpu");
}
