//! The cluster the `kubectl` and `kind` stand-ins act on, and what both share. Test
//! support only, never part of the shipped xtask binary: xtask's tests put these two
//! programs first on PATH to run every cluster-facing command offline.
//!
//! The "cluster" is a JSON file a test writes, named by `KUBECTL_STANDIN_STATE`:
//!
//! ```json
//! { "kind_clusters": ["monitoring-demo"],
//!   "namespaces": { "services": { "inventory-service": {
//!       "replicas": 2,
//!       "labels": { "app": "inventory-service",
//!                   "app.kubernetes.io/part-of": "observability-playground" },
//!       "pods": [ { "name": "inventory-service-0", "admin_port": 41234,
//!                   "log": "/tmp/.../inventory-service-0.log", "forward_fails": false } ] } } } }
//! ```
//!
//! A Deployment's running pods are the first `replicas` of its `pods` (scaling down
//! "terminates" the others; scaling back up brings them back); a pod's container is named
//! after its Deployment, as in manifests/base/services/. `admin_port` is where a REAL
//! mock-service serves the pod's admin API on 127.0.0.1 (what `port-forward :9901`
//! reaches), `log` the file its stdout goes to (what `logs` reads). `forward_fails` makes
//! `port-forward` to that pod fail as it does for a pod that is not running. A
//! Deployment's `termination_ms` keeps `rollout status` after a scale-down waiting that
//! long for the old pods to terminate. Every call
//! is appended to `<state>.calls` (one JSON line: program, pid, arguments), so a test
//! can check what xtask asked and find the processes it started.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// The variable naming the state file.
pub const STATE_VARIABLE: &str = "KUBECTL_STANDIN_STATE";
/// The variable naming the real kubectl, which `kubectl kustomize` runs (rendering is
/// offline and needs no stand-in).
pub const REAL_KUBECTL_VARIABLE: &str = "KUBECTL_STANDIN_REAL";
/// The only context the stand-in serves: xtask's safety rule (ARCHITECTURE.md,
/// "xtask acts only on its own kind cluster").
pub const CONTEXT: &str = "kind-monitoring-demo";
/// The real `port-forward` and `logs -f` run until killed. The stand-in's end on their
/// own too, when the test removed its state file or after this long: a test that fails
/// midway leaves nothing running.
pub const LONGEST_LIFE: Duration = Duration::from_secs(300);

/// Says `message` on stderr and exits 1, as kubectl does for every error
/// (k8s.io/kubectl pkg/cmd/util/helpers.go, `CheckErr`: "error: ..." and exit code 1).
pub fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(1)
}

/// kubectl and kind are Go programs: with no `signal.Notify` for SIGPIPE, "a write to a
/// broken pipe on file descriptors 1 or 2 (standard output or standard error) will cause
/// the program to exit with a SIGPIPE signal" (Go's os/signal documentation,
/// src/os/signal/doc.go, section SIGPIPE). Rust's runtime ignores SIGPIPE instead (a
/// write then fails with EPIPE), so the stand-ins put back the default disposition.
#[allow(unsafe_code)]
pub fn die_of_sigpipe_like_go() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: installs no handler, only the default disposition, before any thread starts.
    let reset = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    if let Err(error) = reset {
        fail(&format!("error: (stand-in) cannot reset SIGPIPE: {error}"));
    }
}

/// The state file and its contents.
pub struct Cluster {
    path: PathBuf,
    pub state: Value,
}

/// One running pod.
#[derive(Clone, Debug)]
pub struct Pod {
    pub name: String,
    pub deployment: String,
    /// The container's name: the Deployment's, as the manifests have it.
    pub container: String,
    pub labels: serde_json::Map<String, Value>,
    pub admin_port: Option<u16>,
    pub log: Option<PathBuf>,
    pub forward_fails: bool,
}

impl Cluster {
    /// The cluster named by `KUBECTL_STANDIN_STATE`; fails like kubectl without a server.
    pub fn open() -> Cluster {
        let Some(path) = std::env::var_os(STATE_VARIABLE).map(PathBuf::from) else {
            fail(&format!(
                "error: (stand-in) no cluster: {STATE_VARIABLE} names none. \
                 The connection to the server localhost:8080 was refused"
            ));
        };
        let text = fs::read_to_string(&path).unwrap_or_else(|error| {
            fail(&format!(
                "error: (stand-in) reading the cluster {}: {error}",
                path.display()
            ))
        });
        let state = serde_json::from_str(&text).unwrap_or_else(|error| {
            fail(&format!(
                "error: (stand-in) the cluster {} is not JSON: {error}",
                path.display()
            ))
        });
        Cluster { path, state }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the state back, whole (a rename: a reader never sees half a file).
    pub fn save(&self) {
        let temporary = self.path.with_extension("json.new");
        let text = serde_json::to_string_pretty(&self.state).unwrap_or_default();
        let written = fs::write(&temporary, text).and_then(|()| fs::rename(&temporary, &self.path));
        if let Err(error) = written {
            fail(&format!("error: (stand-in) saving the cluster: {error}"));
        }
    }

    /// Appends this call to `<state>.calls`.
    pub fn record_call(&self, program: &str, args: &[String]) {
        let line = json!({ "program": program, "pid": std::process::id(), "args": args });
        let log = self.path.with_extension("calls");
        let appended = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut file| writeln!(file, "{line}"));
        if let Err(error) = appended {
            fail(&format!(
                "error: (stand-in) writing {}: {error}",
                log.display()
            ));
        }
    }

    /// The Deployments of `namespace`, by name (kubectl lists by name).
    pub fn deployments(&self, namespace: &str) -> Vec<(String, Value)> {
        self.state["namespaces"][namespace]
            .as_object()
            .map(|deployments| {
                deployments
                    .iter()
                    .map(|(name, d)| (name.clone(), d.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn deployment_mut(&mut self, namespace: &str, name: &str) -> Option<&mut Value> {
        self.state["namespaces"][namespace].get_mut(name)
    }

    /// The running pods of `namespace`: the first `replicas` of each Deployment's pods.
    pub fn running_pods(&self, namespace: &str) -> Vec<Pod> {
        let mut pods = Vec::new();
        for (deployment, spec) in self.deployments(namespace) {
            let replicas = spec["replicas"].as_u64().unwrap_or(0) as usize;
            let labels = spec["labels"].as_object().cloned().unwrap_or_default();
            for pod in spec["pods"].as_array().into_iter().flatten().take(replicas) {
                pods.push(Pod {
                    name: pod["name"].as_str().unwrap_or_default().to_owned(),
                    deployment: deployment.clone(),
                    container: deployment.clone(),
                    labels: labels.clone(),
                    admin_port: pod["admin_port"]
                        .as_u64()
                        .and_then(|p| u16::try_from(p).ok()),
                    log: pod["log"].as_str().map(PathBuf::from),
                    forward_fails: pod["forward_fails"].as_bool().unwrap_or(false),
                });
            }
        }
        pods
    }

    /// How many pods a Deployment has in all, running or not.
    pub fn pod_count(&self, namespace: &str, deployment: &str) -> usize {
        self.state["namespaces"][namespace][deployment]["pods"]
            .as_array()
            .map_or(0, Vec::len)
    }
}

impl Pod {
    /// Whether the pod carries every `key=value` of a selector (`a=b,c=d`).
    pub fn matches(&self, selector: &str) -> bool {
        selector.split(',').all(|term| match term.split_once('=') {
            Some((key, value)) => {
                self.labels.get(key.trim()).and_then(Value::as_str) == Some(value.trim())
            }
            None => false,
        })
    }
}

/// Ends this process when the test removed the cluster's state file, or after
/// [`LONGEST_LIFE`]: the long-running calls' one departure from the real programs.
pub fn end_with_the_cluster(state: &Path) {
    let state = state.to_owned();
    std::thread::spawn(move || {
        let started = Instant::now();
        while state.exists() && started.elapsed() < LONGEST_LIFE {
            std::thread::sleep(Duration::from_millis(200));
        }
        std::process::exit(0);
    });
}
