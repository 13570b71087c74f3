//! `--dry-run` plans: the exact commands `up`, `clean` and friends would run. They act on
//! the project's cluster only (`--name monitoring-demo`, `--context kind-monitoring-demo`)
//! and never on the current context, which only `cluster up` and `up` change: to
//! kind-monitoring-demo, as kind itself does. Dry runs need none of the tools installed;
//! `cluster up` also runs for real here, against a stand-in kind and the real kubectl.

use std::{
    path::Path,
    process::{Command, Output},
};

fn plan(args: &[&str]) -> Vec<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("run xtask");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

const IMAGE: &str = "'mock-service:<sha256 of target/image/mock-service>'";

/// The one kubectl call without `--context`: it makes the project's context the current
/// one, as `kind create cluster` does, so that plain `kubectl` and `tilt up` use it.
const USE_CONTEXT: &str = "kubectl config use-context kind-monitoring-demo";

fn rollouts() -> Vec<String> {
    let topology = contract::topology::Topology::built_in();
    let services = topology.service_names();
    let monitoring = [
        "prometheus",
        "alertmanager",
        "grafana",
        "otel-collector",
        "jaeger",
    ];
    services
        .iter()
        .map(|name| ("services", name))
        .chain(monitoring.iter().map(|name| ("monitoring", name)))
        .map(|(namespace, name)| {
            format!(
                "kubectl --context kind-monitoring-demo rollout status -n {namespace} deployment/{name} --timeout=180s"
            )
        })
        .collect()
}

#[test]
fn up_creates_builds_loads_deploys_and_smoke_tests_in_order() {
    let target = format!("{}-unknown-linux-musl", std::env::consts::ARCH);
    let build = if cfg!(target_os = "linux") {
        "build"
    } else {
        "zigbuild"
    };
    let mut expected = vec![
        "kind create cluster --name monitoring-demo --config manifests/kind.yaml --wait 120s"
            .to_owned(),
        USE_CONTEXT.to_owned(),
        format!("cargo {build} --profile container --target {target} --package mock-service"),
        format!(
            "docker build --tag {IMAGE} --label io.observability-playground.built-by=xtask --file Dockerfile target/image"
        ),
        format!("kind load docker-image {IMAGE} --name monitoring-demo"),
        "kubectl kustomize --load-restrictor=LoadRestrictionsNone target/cluster".to_owned(),
        "kubectl --context kind-monitoring-demo apply -f target/cluster/rendered.yaml".to_owned(),
    ];
    expected.extend(rollouts());
    expected.push("cargo xtask smoke --target http://localhost:30080".to_owned());
    assert_eq!(plan(&["up", "--dry-run"]), expected);
}

#[test]
fn cluster_up_creates_the_cluster_and_makes_its_context_current() {
    assert_eq!(
        plan(&["cluster", "up", "--dry-run"]),
        [
            "kind create cluster --name monitoring-demo --config manifests/kind.yaml --wait 120s",
            USE_CONTEXT,
        ]
    );
}

#[test]
fn every_kubectl_and_kind_command_names_the_project_cluster() {
    for args in [
        &["up", "--dry-run"][..],
        &["clean", "--dry-run"],
        &["cluster", "up", "--dry-run"],
        &["cluster", "status", "--dry-run"],
        &["cluster", "down", "--dry-run"],
        &["load", "--dry-run"],
        &["deploy", "--dry-run"],
    ] {
        let brings_the_cluster_up = args[0] == "up" || args[..2] == ["cluster", "up"];
        for line in plan(args) {
            let offline_render = line.starts_with("kubectl kustomize ");
            if line == USE_CONTEXT {
                assert!(brings_the_cluster_up, "{args:?} switches contexts: {line}");
            } else if line.starts_with("kubectl ") && !offline_render {
                assert!(
                    line.starts_with("kubectl --context kind-monitoring-demo "),
                    "{args:?}: {line}"
                );
            }
            if line.starts_with("kind ") && !line.starts_with("kind load") {
                assert!(
                    line.ends_with("--name monitoring-demo")
                        || line.contains("--name monitoring-demo "),
                    "{line}"
                );
            }
            if line.starts_with("kind load") {
                assert!(line.ends_with("--name monitoring-demo"), "{line}");
            }
        }
    }
}

#[test]
fn status_and_deploy_plans() {
    assert_eq!(
        plan(&["cluster", "status", "--dry-run"]),
        [
            "kubectl --context kind-monitoring-demo get nodes -o wide",
            "kubectl --context kind-monitoring-demo get pods -n services -o wide",
            "kubectl --context kind-monitoring-demo get pods -n monitoring -o wide",
        ]
    );
    let deploy = plan(&["deploy", "--dry-run"]);
    assert_eq!(
        deploy[..2],
        [
            "kubectl kustomize --load-restrictor=LoadRestrictionsNone target/cluster",
            "kubectl --context kind-monitoring-demo apply -f target/cluster/rendered.yaml"
        ]
    );
    assert_eq!(deploy[2..], rollouts()[..]);
}

/// A kubeconfig whose current context is another cluster's, as a developer's may be.
const KUBECONFIG: &str = "\
apiVersion: v1
kind: Config
clusters:
  - name: prod-eu
    cluster: {server: 'https://127.0.0.1:9'}
contexts:
  - name: prod-eu
    context: {cluster: prod-eu, user: prod-eu}
current-context: prod-eu
users:
  - name: prod-eu
    user: {}
";

/// Stand-in for kind: records its arguments; `get clusters` lists `$KIND_CLUSTERS`;
/// `create cluster` writes the context into the kubeconfig and makes it current, as the
/// real one does (here with the real kubectl, offline).
const KIND: &str = r#"#!/bin/sh
echo "kind $*" >> "$STUB_LOG"
case "$1" in
  get) [ -n "$KIND_CLUSTERS" ] && echo "$KIND_CLUSTERS" ;;
  create)
    kubectl config set-cluster kind-monitoring-demo --server=https://127.0.0.1:9 >/dev/null &&
    kubectl config set-context kind-monitoring-demo --cluster=kind-monitoring-demo >/dev/null &&
    kubectl config use-context kind-monitoring-demo >/dev/null ;;
esac
exit 0
"#;

const CREATE: &str =
    "kind create cluster --name monitoring-demo --config manifests/kind.yaml --wait 120s";
const SWITCHED: &str = "current context: kind-monitoring-demo (was: prod-eu; \
                        back with `kubectl config use-context prod-eu`)";

/// A machine without kind or Docker for `cargo xtask cluster up` to run on for real:
/// stand-ins for both, the real kubectl, and the test's own kubeconfig and HOME.
struct Machine {
    dir: crate::manifests::TempDir,
    kubectl: std::path::PathBuf,
    kind_clusters: &'static str,
}

impl Machine {
    fn new(case: &str, kubectl: &std::path::Path, kind_clusters: &'static str) -> Machine {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = crate::manifests::TempDir::new(&format!("cluster-up-{case}"));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("bin dir");
        std::os::unix::fs::symlink(kubectl, bin.join("kubectl")).expect("link kubectl");
        for (name, script) in [("kind", KIND), ("docker", "#!/bin/sh\nexit 1\n")] {
            std::fs::write(bin.join(name), script).expect("write stand-in");
            std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        std::fs::write(dir.join("kubeconfig"), KUBECONFIG).expect("write kubeconfig");
        Machine {
            dir,
            kubectl: kubectl.to_owned(),
            kind_clusters,
        }
    }

    fn run(&self, program: &Path, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .env("PATH", self.dir.join("bin"))
            .env("HOME", &*self.dir)
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .env("STUB_LOG", self.dir.join("calls"))
            .env("KIND_CLUSTERS", self.kind_clusters)
            .output()
            .expect("run")
    }

    /// `cargo xtask cluster up`: whether it succeeded, and its stderr.
    fn cluster_up(&self) -> (bool, String) {
        let output = self.run(Path::new(env!("CARGO_BIN_EXE_xtask")), &["cluster", "up"]);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.success(), stderr)
    }

    fn current_context(&self) -> String {
        let output = self.run(&self.kubectl, &["config", "current-context"]);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn kind_calls(&self) -> String {
        std::fs::read_to_string(self.dir.join("calls")).unwrap_or_default()
    }
}

fn kubectl() -> Option<std::path::PathBuf> {
    crate::support::require("kubectl", "kubectl 1.32 or later")
}

/// Runs `cluster up` on a machine whose current context is prod-eu: kind-monitoring-demo
/// is current afterwards, xtask says which one was before, and it created the cluster
/// or not as expected.
fn assert_up_switches_from_prod_eu(machine: &Machine, creates: bool) {
    assert_eq!(machine.current_context(), "prod-eu");
    let (ok, stderr) = machine.cluster_up();
    assert!(ok, "{stderr}");
    let calls = machine.kind_calls();
    assert_eq!(calls.contains(CREATE), creates, "{calls}");
    assert_eq!(
        machine.current_context(),
        "kind-monitoring-demo",
        "{stderr}"
    );
    assert!(stderr.contains(SWITCHED), "{stderr}");
}

#[test]
fn cluster_up_creates_the_cluster_leaves_its_context_current_and_names_the_previous_one() {
    let Some(kubectl) = kubectl() else { return };
    assert_up_switches_from_prod_eu(&Machine::new("new", &kubectl, ""), true);
}

/// As after `kind create cluster` then a switch back to another cluster: up makes the
/// demo's context current again, and a second up has nothing to switch.
#[test]
fn cluster_up_on_an_existing_cluster_makes_its_context_current_again() {
    let Some(kubectl) = kubectl() else { return };
    let machine = Machine::new("existing", &kubectl, "monitoring-demo");
    machine.run(&kubectl, &["config", "set-context", "kind-monitoring-demo"]);
    assert_up_switches_from_prod_eu(&machine, false);

    let (ok, stderr) = machine.cluster_up();
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("current context: kind-monitoring-demo (it already was)"),
        "{stderr}"
    );
}

/// The cluster exists but the kubeconfig lost its context: the error says how to get
/// it back, and the current context is left alone.
#[test]
fn cluster_up_without_the_context_says_how_to_restore_it() {
    let Some(kubectl) = kubectl() else { return };
    let machine = Machine::new("lost", &kubectl, "monitoring-demo");
    let (ok, stderr) = machine.cluster_up();
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("`kind export kubeconfig --name monitoring-demo` writes it again"),
        "{stderr}"
    );
    assert_eq!(machine.current_context(), "prod-eu");
}
