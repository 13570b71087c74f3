//! A kind cluster for the tests, offline: the `kubectl` and `kind` stand-ins
//! (xtask/tests/kubectl-standin) first on the PATH of the xtask under test, their
//! cluster a JSON file in a temporary directory, and every pod a REAL mock-service
//! process (its admin API on 127.0.0.1, its stdout in the pod's log file). The gateway's
//! pod listens where the cluster's NodePort does (30080), so a test holds
//! `support::serial()` and runs under `flock /tmp/mesh-ports.lock`.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::support::TraceReceiver;
use contract::topology::{Topology, url_variable};
use serde_json::{Value, json};
use xtask::{
    cmd::find_on_path,
    paths::{target_dir, workspace_root},
    ports::GATEWAY_PORT,
};

/// The binaries the cluster needs, built once per test run: mock-service and the two
/// stand-ins (with xtask too, as `cargo xtask local` builds, so that cargo keeps the
/// features it built the suite with).
fn binaries() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace_root())
            .args(["build", "--package", "mock-service", "--package", "xtask"])
            .args(["--package", "kubectl-standin"])
            .status()
            .expect("run cargo build");
        assert!(
            status.success(),
            "building mock-service and the stand-ins failed"
        );
        target_dir().join("debug")
    })
}

/// One pod: a mock-service process.
pub struct PodProcess {
    pub name: String,
    pub deployment: String,
    pub admin_port: u16,
    child: Child,
}

/// The stand-in cluster; its processes stop and its directory goes when dropped (the
/// stand-ins still running, a port-forward or `logs -f`, end once the state is gone).
pub struct StandinCluster {
    dir: PathBuf,
    pub pods: Vec<PodProcess>,
    /// Where the pods' spans go: traced answers carry `x-trace-id`, and their log lines
    /// the trace id, as in the cluster.
    spans: TraceReceiver,
}

impl StandinCluster {
    /// The seven services of the built-in graph in namespace `services`, one pod each
    /// unless `replicas` says more; the first pod of each receives the calls of the
    /// others, the gateway's on port 30080.
    pub fn start(replicas: &[(&str, usize)]) -> StandinCluster {
        let built = binaries();
        let dir = std::env::temp_dir().join(format!(
            "xtask-standin-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(dir.join("bin")).expect("temp dir");
        std::fs::create_dir_all(dir.join("logs")).expect("log dir");
        for program in ["kubectl", "kind"] {
            std::os::unix::fs::symlink(built.join(program), dir.join("bin").join(program))
                .expect("link the stand-in");
        }
        write_kubeconfig(&dir.join("kubeconfig.json"));
        let mut cluster = StandinCluster {
            dir,
            pods: Vec::new(),
            spans: TraceReceiver::start(),
        };
        cluster.start_pods(&built.join("mock-service"), replicas);
        cluster.write_state();
        cluster
    }

    fn start_pods(&mut self, binary: &Path, replicas: &[(&str, usize)]) {
        let topology = Topology::built_in();
        let names = topology.service_names();
        let count = |name: &str| replicas.iter().find(|(n, _)| *n == name).map_or(1, |r| r.1);
        let total: usize = names.iter().map(|n| count(n)).sum();
        let mut free = xtask::ports::free_ports(total * 2)
            .expect("free ports")
            .into_iter();
        let mut ports: Vec<(String, usize, u16, u16)> = Vec::new();
        for name in &names {
            for index in 0..count(name) {
                let port = if *name == "gateway-service" && index == 0 {
                    GATEWAY_PORT
                } else {
                    free.next().expect("a port")
                };
                ports.push((
                    (*name).to_owned(),
                    index,
                    port,
                    free.next().expect("a port"),
                ));
            }
        }
        let first: BTreeMap<&str, u16> = ports
            .iter()
            .filter(|(_, index, _, _)| *index == 0)
            .map(|(name, _, port, _)| (name.as_str(), *port))
            .collect();
        for (name, index, port, admin_port) in &ports {
            let service = topology.service(name).expect("a service of the graph");
            let pod = format!("{name}-{index}");
            let log = std::fs::File::create(self.log_of(&pod)).expect("log file");
            let mut command = Command::new(binary);
            command
                .env("SERVICE_NAME", name)
                .env("HOST", "127.0.0.1")
                .env("PORT", port.to_string())
                .env("ADMIN_PORT", admin_port.to_string())
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", &self.spans.endpoint)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log);
            for dependency in service.dependencies() {
                command.env(
                    url_variable(dependency),
                    format!("http://127.0.0.1:{}", first[dependency]),
                );
            }
            let child = command.spawn().expect("start mock-service");
            self.pods.push(PodProcess {
                name: pod,
                deployment: name.clone(),
                admin_port: *admin_port,
                child,
            });
            wait_for_ports(&[*port, *admin_port]);
        }
    }

    pub fn log_of(&self, pod: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{pod}.log"))
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join("cluster.json")
    }

    fn write_state(&self) {
        let mut services = serde_json::Map::new();
        for pod in &self.pods {
            let deployment = services.entry(pod.deployment.clone()).or_insert_with(|| {
                json!({
                    "replicas": 0,
                    "labels": {
                        "app": pod.deployment,
                        "app.kubernetes.io/part-of": "observability-playground",
                    },
                    "pods": [],
                })
            });
            deployment["replicas"] = json!(deployment["replicas"].as_u64().unwrap_or(0) + 1);
            if let Some(pods) = deployment["pods"].as_array_mut() {
                pods.push(json!({
                    "name": pod.name,
                    "admin_port": pod.admin_port,
                    "log": self.log_of(&pod.name),
                }));
            }
        }
        let state = json!({
            "kind_clusters": ["monitoring-demo"],
            "namespaces": { "services": services, "monitoring": {} },
        });
        self.save(&state);
    }

    /// The cluster as the stand-ins left it.
    pub fn state(&self) -> Value {
        let text = std::fs::read_to_string(self.state_file()).expect("the cluster's state");
        serde_json::from_str(&text).expect("JSON")
    }

    fn save(&self, state: &Value) {
        let text = serde_json::to_string_pretty(state).expect("JSON");
        std::fs::write(self.state_file(), text).expect("write the cluster's state");
    }

    /// The replicas a Deployment of `services` asks for now.
    pub fn replicas(&self, deployment: &str) -> u64 {
        self.state()["namespaces"]["services"][deployment]["replicas"]
            .as_u64()
            .expect("replicas")
    }

    /// Makes `kubectl port-forward` to `pod` fail as it does for a pod not running.
    pub fn fail_forwards_to(&self, pod: &str) {
        let mut state = self.state();
        let pods = state["namespaces"]["services"]
            .as_object_mut()
            .expect("deployments")
            .values_mut()
            .flat_map(|d| d["pods"].as_array_mut().expect("pods").iter_mut());
        let mut found = false;
        for entry in pods.filter(|p| p["name"] == pod) {
            entry["forward_fails"] = json!(true);
            found = true;
        }
        assert!(found, "no pod {pod}");
        self.save(&state);
    }

    /// After a scale-down of `deployment`, `rollout status` waits this long for the old
    /// pods to terminate.
    pub fn slow_termination(&self, deployment: &str, wait: Duration) {
        let mut state = self.state();
        state["namespaces"]["services"][deployment]["termination_ms"] =
            json!(u64::try_from(wait.as_millis()).expect("a short wait"));
        self.save(&state);
    }

    /// The pid of the first stand-in call whose arguments include `word`.
    pub fn pid_of_call_with(&self, word: &str) -> Option<u32> {
        self.calls()
            .iter()
            .find(|call| {
                call["args"]
                    .as_array()
                    .is_some_and(|args| args.iter().any(|a| a == word))
            })
            .and_then(|call| call["pid"].as_u64())
            .and_then(|pid| u32::try_from(pid).ok())
    }

    /// Every call the stand-ins answered: `{"program", "pid", "args"}`.
    pub fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("cluster.calls"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON call"))
            .collect()
    }

    /// The kubectl calls' arguments after `--context kind-monitoring-demo`, as one string.
    pub fn kubectl_calls(&self) -> Vec<String> {
        self.calls()
            .iter()
            .filter(|call| call["program"] == "kubectl")
            .map(|call| {
                let args: Vec<&str> = call["args"]
                    .as_array()
                    .expect("args")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                args.join(" ")
            })
            .collect()
    }

    /// Each pod of `deployment` with its fault, as its own admin API reports it: `null`
    /// for none, `{"hidden": true}` for a quiet (a drill's) one.
    pub fn faults(&self, deployment: &str) -> Vec<(String, Value)> {
        self.pods
            .iter()
            .filter(|pod| pod.deployment == deployment)
            .map(|pod| (pod.name.clone(), fault_of(pod.admin_port)))
            .collect()
    }

    /// Whether no pod of any service has a fault, hidden ones included.
    pub fn no_faults_anywhere(&self) -> bool {
        self.pods
            .iter()
            .all(|pod| fault_of(pod.admin_port).is_null())
    }

    /// `xtask ARGS` with the stand-ins first on its PATH and this cluster as theirs.
    pub fn command(&self, args: &[&str]) -> Command {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.dir.join("bin")];
        paths.extend(std::env::split_paths(&path));
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        command
            .args(args)
            .env("PATH", std::env::join_paths(paths).expect("PATH"))
            .env("KUBECONFIG", self.dir.join("kubeconfig.json"))
            .env("KUBECTL_STANDIN_STATE", self.state_file());
        // `kubectl kustomize` renders with the real kubectl, where there is one.
        if let Some(real) = find_on_path("kubectl") {
            command.env("KUBECTL_STANDIN_REAL", real);
        }
        command
    }

    /// Runs `xtask ARGS` to completion.
    pub fn xtask(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run xtask")
    }
}

/// The fault a pod's admin API reports: `null` for none, `{"hidden": true}` for a quiet
/// one (whose `fault` the API leaves `null`).
fn fault_of(admin_port: u16) -> Value {
    let (_, _, body) = http(admin_port, "GET", "/faults");
    let json: Value = serde_json::from_str(&body).expect("the admin API answers JSON");
    if json["hidden"] == true {
        return serde_json::json!({ "hidden": true });
    }
    json["fault"].clone()
}

impl Drop for StandinCluster {
    fn drop(&mut self) {
        for pod in &mut self.pods {
            let _ = pod.child.kill();
            let _ = pod.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A kubeconfig (JSON is YAML) with the project's context, current, as `kind create
/// cluster` leaves it.
fn write_kubeconfig(path: &Path) {
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "kind-monitoring-demo",
        "contexts": [{ "name": "kind-monitoring-demo",
                       "context": { "cluster": "kind-monitoring-demo", "user": "kind-monitoring-demo" } }],
        "clusters": [{ "name": "kind-monitoring-demo", "cluster": { "server": "https://127.0.0.1:6443" } }],
        "users": [{ "name": "kind-monitoring-demo", "user": {} }],
    });
    std::fs::write(path, config.to_string()).expect("write the kubeconfig");
}

/// Waits until every port accepts a connection (at most 15 s).
fn wait_for_ports(ports: &[u16]) {
    let started = Instant::now();
    for port in ports {
        while TcpStream::connect(("127.0.0.1", *port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "nothing listens on 127.0.0.1:{port} after 15 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`: its status, headers and body.
pub fn http(port: u16, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status");
    (status, head.to_owned(), body.to_owned())
}
