//! The Tiltfile, evaluated offline: Tilt cannot run here (no cluster, no Tilt binary),
//! but its Tiltfile is Starlark. This test evaluates the real file with the `starlark`
//! crate, Tilt's builtins replaced by recording stubs that have the parameters Tilt
//! documents (internal/tiltfile/api/__init__.py in tilt-dev/tilt) and check their types.
//! A misspelled builtin, an unknown keyword or a wrongly typed argument therefore fails
//! here as it would in `tilt up`, and the tests assert what the Tiltfile asks Tilt to do.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::{Map, Value as Json};

use crate::support::tilt::{Call, evaluate_at, evaluate_in, tilt_type};

/// The services the Tiltfile must make resources of: the built-in topology's, which
/// `cargo xtask codegen` writes to manifests/services.json for it.
fn services() -> Vec<String> {
    contract::topology::Topology::built_in()
        .service_names()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

const OBSERVABILITY: [&str; 5] = [
    "prometheus",
    "alertmanager",
    "grafana",
    "otel-collector",
    "jaeger",
];
const BINARY_RESOURCE: &str = "mock-service-binary";

/// The project's kind cluster, the only context the Tiltfile accepts.
const CONTEXT: &str = "kind-monitoring-demo";

/// The calls of Tiltfile text evaluated against the project's cluster, or the error.
fn evaluate(text: &str) -> Result<Vec<Call>, String> {
    let (calls, result) = evaluate_in(CONTEXT, text);
    result.map(|()| calls)
}

// ---------------------------------------------------------------------------------------
// What the Tiltfile asks for
// ---------------------------------------------------------------------------------------

fn tiltfile_text() -> String {
    tiltfile_text_at(&xtask::paths::workspace_root())
}

fn tiltfile_text_at(root: &Path) -> String {
    let path = root.join("Tiltfile");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The recorded calls of the repository's Tiltfile.
struct Plan(Vec<Call>);

impl Plan {
    fn load() -> Self {
        Self::load_at(&xtask::paths::workspace_root())
    }

    /// The calls of the Tiltfile of the checkout at `root`.
    fn load_at(root: &Path) -> Self {
        match evaluate_at(root, CONTEXT, &tiltfile_text_at(root)) {
            (calls, Ok(())) => Self(calls),
            (_, Err(e)) => panic!("the Tiltfile does not evaluate:\n{e}"),
        }
    }

    fn calls(&self, builtin: &str) -> Vec<&Map<String, Json>> {
        self.0
            .iter()
            .filter(|c| c.builtin == builtin)
            .map(|c| &c.args)
            .collect()
    }

    fn only_call(&self, builtin: &str) -> &Map<String, Json> {
        match self.calls(builtin).as_slice() {
            [one] => one,
            calls => panic!("expected one {builtin}() call, found {}", calls.len()),
        }
    }

    fn local_resource(&self, name: &str) -> &Map<String, Json> {
        let found: Vec<_> = self
            .calls("local_resource")
            .into_iter()
            .filter(|a| a.get("name").and_then(Json::as_str) == Some(name))
            .collect();
        match found.as_slice() {
            [one] => one,
            _ => panic!(
                "expected one local_resource named {name}, found {}",
                found.len()
            ),
        }
    }

    fn k8s_resource(&self, workload: &str) -> &Map<String, Json> {
        let found: Vec<_> = self
            .calls("k8s_resource")
            .into_iter()
            .filter(|a| a.get("workload").and_then(Json::as_str) == Some(workload))
            .collect();
        match found.as_slice() {
            [one] => one,
            _ => panic!(
                "expected one k8s_resource for {workload}, found {}",
                found.len()
            ),
        }
    }

    /// Every Tilt resource name: local resources and (renamed) k8s workloads.
    fn resource_names(&self) -> BTreeSet<String> {
        let locals = self
            .calls("local_resource")
            .into_iter()
            .map(|a| str_of(a, "name"));
        let k8s = self.calls("k8s_resource").into_iter().map(|a| {
            a.get("new_name")
                .or_else(|| a.get("workload"))
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned()
        });
        locals.chain(k8s).collect()
    }
}

fn str_of(args: &Map<String, Json>, key: &str) -> String {
    args.get(key)
        .and_then(Json::as_str)
        .unwrap_or_else(|| panic!("`{key}` is not a string in {args:?}"))
        .to_owned()
}

/// A `Union[str, List[str]]` argument as a list (absent: empty).
fn strings(args: &Map<String, Json>, key: &str) -> Vec<String> {
    match args.get(key) {
        None => Vec::new(),
        Some(Json::String(s)) => vec![s.clone()],
        Some(Json::Array(items)) => items
            .iter()
            .map(|i| i.as_str().unwrap_or_default().to_owned())
            .collect(),
        Some(other) => panic!("`{key}` is neither a string nor a list: {other}"),
    }
}

/// The links of a resource as (url, name) pairs.
fn links(args: &Map<String, Json>) -> Vec<(String, String)> {
    let one = |l: &Json| match l {
        Json::String(url) => (url.clone(), String::new()),
        link => (
            link["url"].as_str().unwrap_or_default().to_owned(),
            link["name"].as_str().unwrap_or_default().to_owned(),
        ),
    };
    match args.get("links") {
        None => Vec::new(),
        Some(Json::Array(items)) => items.iter().map(one).collect(),
        Some(single) => vec![one(single)],
    }
}

fn is_manual(args: &Map<String, Json>) -> bool {
    args.get("trigger_mode").and_then(|m| m["mode"].as_str()) == Some("manual")
}

#[test]
fn tilt_deploys_to_the_kind_cluster() {
    let (calls, result) = evaluate_in(CONTEXT, &tiltfile_text());
    assert_eq!(result, Ok(()), "with the context {CONTEXT}");
    assert!(
        calls.iter().any(|call| call.builtin == "k8s_yaml"),
        "with the context {CONTEXT} the manifests are registered: {calls:?}"
    );
}

/// Every other context, the local ones Tilt would accept by itself included, stops the
/// Tiltfile before it registers anything, with one sentence saying what to run instead.
#[test]
fn tilt_refuses_any_other_context_and_says_what_to_run() {
    for other in ["kind-kind", "docker-desktop", "minikube", "prod-eu"] {
        let (calls, result) = evaluate_in(other, &tiltfile_text());
        let error = result.expect_err(other);
        let sentence = format!(
            "Tilt deploys only to kind-monitoring-demo, and the current context is {other}: \
             run `cargo xtask cluster up` (it makes kind-monitoring-demo current), \
             or `tilt up --context kind-monitoring-demo`."
        );
        assert!(
            error.contains(&format!("fail: {sentence}")),
            "{other}: {error}"
        );
        assert!(
            calls.is_empty(),
            "{other}: registered before failing: {calls:?}"
        );
    }
}

#[test]
fn the_binary_is_compiled_on_the_host_by_xtask() {
    let plan = Plan::load();
    let binary = plan.local_resource(BINARY_RESOURCE);
    assert_eq!(str_of(binary, "cmd"), "cargo xtask images --binary-only");
    let deps = strings(binary, "deps");
    for dep in ["services", "Cargo.toml", "Cargo.lock"] {
        assert!(
            deps.iter().any(|d| d == dep),
            "{dep} is not a dep: {deps:?}"
        );
    }
    for dep in &deps {
        let path = xtask::paths::workspace_root().join(dep);
        assert!(path.exists(), "dep {dep} does not exist");
    }
    // In the cluster the topology comes from a ConfigMap: editing it must not recompile.
    let ignored = strings(binary, "ignore");
    assert!(
        ignored
            .iter()
            .any(|i| i == "services/mock-service/topology.yaml"),
        "ignore: {ignored:?}"
    );
    assert_eq!(strings(binary, "labels"), ["build"]);
    assert!(
        !is_manual(binary),
        "the binary must rebuild on every change"
    );
    assert_ne!(binary.get("auto_init"), Some(&Json::Bool(false)));
}

#[test]
fn the_image_is_the_binary_alone_and_has_no_live_update() {
    let plan = Plan::load();
    let build = plan.only_call("docker_build");
    assert_eq!(str_of(build, "ref"), "mock-service");
    assert_eq!(str_of(build, "context"), "target/image");
    assert_eq!(str_of(build, "dockerfile"), "Dockerfile");
    assert_eq!(strings(build, "only"), ["mock-service"]);
    // FROM scratch: no tar, no shell, so nothing Tilt could live-update.
    assert!(
        build
            .get("live_update")
            .is_none_or(|steps| steps.as_array().is_some_and(Vec::is_empty)),
        "live_update needs tar in the container: {build:?}"
    );
    // The Dockerfile copies what `only` lets into the context.
    let dockerfile = std::fs::read_to_string(xtask::paths::workspace_root().join("Dockerfile"))
        .expect("the repository's Dockerfile");
    assert!(
        dockerfile
            .lines()
            .any(|l| l.trim_start().starts_with("COPY mock-service ")),
        "the Dockerfile does not COPY mock-service:\n{dockerfile}"
    );
}

#[test]
fn the_manifests_are_the_kind_overlay_with_the_relaxed_load_restrictor() {
    let plan = Plan::load();
    let call = plan.only_call("k8s_yaml");
    let yaml = &call["yaml"];
    assert_eq!(
        tilt_type(yaml),
        Some("blob"),
        "k8s_yaml({yaml}) is not kustomize()"
    );
    assert_eq!(yaml["kustomize"], "manifests/overlays/kind");
    let flags: Vec<_> = yaml["flags"].as_array().cloned().unwrap_or_default();
    assert!(
        flags.contains(&Json::from("--load-restrictor=LoadRestrictionsNone")),
        "flags: {flags:?}"
    );
}

#[test]
fn every_workload_is_a_labelled_resource() {
    let plan = Plan::load();
    for service in &services() {
        let resource = plan.k8s_resource(service);
        assert_eq!(strings(resource, "labels"), ["services"], "{service}");
        assert!(
            strings(resource, "resource_deps").contains(&BINARY_RESOURCE.to_owned()),
            "{service} does not wait for {BINARY_RESOURCE}"
        );
    }
    for component in OBSERVABILITY {
        let resource = plan.k8s_resource(component);
        assert_eq!(
            strings(resource, "labels"),
            ["observability"],
            "{component}"
        );
    }
    let named: BTreeSet<_> = plan
        .calls("k8s_resource")
        .into_iter()
        .map(|a| str_of(a, "workload"))
        .collect();
    let expected: BTreeSet<_> = services()
        .into_iter()
        .chain(OBSERVABILITY.map(str::to_owned))
        .collect();
    assert_eq!(named, expected);
}

#[test]
fn the_uis_are_linked() {
    let plan = Plan::load();
    for (resource, url) in [
        ("gateway-service", "http://localhost:30080"),
        ("prometheus", "http://localhost:9090"),
        ("alertmanager", "http://localhost:9093"),
        ("grafana", "http://localhost:3000"),
        ("jaeger", "http://localhost:16686"),
    ] {
        let links = links(plan.k8s_resource(resource));
        assert!(
            links.iter().any(|(u, name)| u == url && !name.is_empty()),
            "{resource} has no named link to {url}: {links:?}"
        );
    }
    let grafana = links(plan.k8s_resource("grafana"));
    assert!(
        grafana.iter().any(|(_, name)| name.contains("admin/admin")),
        "the Grafana link should tell the login: {grafana:?}"
    );
}

#[test]
fn config_files_outside_the_overlay_are_watched() {
    let plan = Plan::load();
    let watched: BTreeSet<_> = plan
        .calls("watch_file")
        .into_iter()
        .map(|a| str_of(a, "file_path"))
        .collect();
    for path in [
        "services/mock-service/topology.yaml",
        "grafana/dashboards",
        "grafana/provisioning",
        "prometheus/rules",
        "prometheus/prometheus-kubernetes.yml",
        "prometheus/alertmanager.yml",
        "otel",
    ] {
        assert!(watched.contains(path), "{path} is not watched: {watched:?}");
    }
    for path in &watched {
        let full = xtask::paths::workspace_root().join(path);
        assert!(full.exists(), "watched path {path} does not exist");
    }
}

#[test]
fn resource_dependencies_name_resources_and_manual_ones_stay_manual() {
    let plan = Plan::load();
    let names = plan.resource_names();
    for call in plan
        .calls("local_resource")
        .into_iter()
        .chain(plan.calls("k8s_resource"))
    {
        for dep in strings(call, "resource_deps") {
            assert!(
                names.contains(&dep),
                "resource_deps names {dep}, which is no resource: {call:?}"
            );
        }
    }
    // The smoke tests and the traffic run are buttons: they would fail (or load the
    // cluster) on every `tilt up` otherwise.
    for name in ["smoke", "traffic"] {
        if !names.contains(name) {
            continue;
        }
        let resource = plan.local_resource(name);
        assert!(is_manual(resource), "{name} should be TRIGGER_MODE_MANUAL");
        assert_eq!(
            resource.get("auto_init"),
            Some(&Json::Bool(false)),
            "{name}"
        );
        for service in services() {
            assert!(
                strings(resource, "resource_deps").contains(&service),
                "{name} does not wait for {service}"
            );
        }
    }
    let update = plan.calls("update_settings");
    assert!(
        update.len() <= 1,
        "update_settings is called {} times",
        update.len()
    );
}

/// A button's command line, parsed by xtask's own argument definitions.
fn parses_as_xtask(cmd: &str) -> Result<xtask::Cli, clap::Error> {
    let args = cmd
        .strip_prefix("cargo xtask ")
        .unwrap_or_else(|| panic!("`{cmd}` is not a cargo xtask command"));
    <xtask::Cli as clap::Parser>::try_parse_from(
        std::iter::once("xtask").chain(args.split_whitespace()),
    )
}

/// Next to `smoke` and `traffic`: a button per scenario of `cargo xtask scenario`, one
/// that verifies each, one for a new drill (`cargo xtask drill`) and one that clears
/// every fault, all acting on the cluster, manual, and waiting for the mesh.
#[test]
fn the_scenarios_a_drill_and_clearing_every_fault_are_buttons_next_to_smoke_and_traffic() {
    let plan = Plan::load();
    let smoke_labels = strings(plan.local_resource("smoke"), "labels");
    assert_eq!(
        smoke_labels,
        strings(plan.local_resource("traffic"), "labels")
    );
    // The buttons are the table's scenarios, through the generated list.
    let mut buttons: Vec<(String, String)> = incidents::scenarios::names()
        .into_iter()
        .flat_map(|name| {
            [
                (
                    format!("scenario-{name}"),
                    format!("cargo xtask scenario {name} --cluster"),
                ),
                (
                    format!("verify-{name}"),
                    format!("cargo xtask scenario {name} --verify --cluster"),
                ),
            ]
        })
        .collect();
    assert_eq!(
        buttons.len(),
        8,
        "the four scenarios, run and verified: {buttons:?}"
    );
    buttons.push((
        "clear-faults".to_owned(),
        "cargo xtask chaos all --clear --cluster".to_owned(),
    ));
    // A new incident drill in the cluster; the answer comes from a terminal.
    buttons.push((
        "drill".to_owned(),
        "cargo xtask drill --cluster --duration 900".to_owned(),
    ));
    buttons.extend(["smoke", "traffic"].map(|name| {
        let cmd = str_of(plan.local_resource(name), "cmd");
        (name.to_owned(), cmd)
    }));
    for (name, cmd) in buttons {
        let button = plan.local_resource(&name);
        assert_eq!(str_of(button, "cmd"), cmd, "{name}");
        if let Err(error) = parses_as_xtask(&cmd) {
            panic!("{name}: `{cmd}` is no valid xtask command line:\n{error}");
        }
        assert!(is_manual(button), "{name} should be TRIGGER_MODE_MANUAL");
        assert_eq!(button.get("auto_init"), Some(&Json::Bool(false)), "{name}");
        assert_eq!(strings(button, "labels"), smoke_labels, "{name}");
        assert_eq!(strings(button, "resource_deps"), services(), "{name}");
    }
    // The check itself can fail: a misspelt scenario is no xtask command line.
    assert!(parses_as_xtask("cargo xtask scenario spikes --cluster").is_err());
}

// ---------------------------------------------------------------------------------------
// The stubs are strict: a mistake Tilt would reject fails here too
// ---------------------------------------------------------------------------------------

/// The Tiltfile's text with `from` replaced (once) by `to`; the replacement must happen,
/// so that a reworded Tiltfile cannot turn these tests into no-ops.
fn tiltfile_with(from: &str, to: &str) -> String {
    let text = tiltfile_text();
    assert!(
        text.contains(from),
        "the Tiltfile no longer contains `{from}`"
    );
    text.replacen(from, to, 1)
}

fn evaluation_error(text: &str) -> String {
    match evaluate(text) {
        Ok(calls) => panic!("evaluation should fail, but it made {} calls", calls.len()),
        Err(e) => e,
    }
}

/// The services and the scenarios come from the files codegen writes, read as Tilt's
/// `read_json` reads them: relative to the Tiltfile, an error when missing unless a
/// default is given.
#[test]
fn the_services_are_read_from_the_generated_list() {
    let plan = Plan::load();
    let read: Vec<String> = plan
        .calls("read_json")
        .into_iter()
        .map(|a| str_of(a, "path"))
        .collect();
    assert_eq!(
        read,
        [xtask::paths::TILT_SERVICES, xtask::paths::TILT_SCENARIOS]
    );
    assert!(
        !tiltfile_text().contains("'notification-service'"),
        "the Tiltfile lists services by hand again"
    );
    assert!(
        !tiltfile_text().contains("'degradation'"),
        "the Tiltfile lists scenarios by hand again"
    );
    let missing = evaluation_error("read_json('no-such.json')");
    assert!(missing.contains("no-such.json"), "{missing}");
    let calls = evaluate("x = read_json('no-such.json', default=[])\nwatch_file(str(len(x)))")
        .expect("a default stands in for a missing file");
    assert_eq!(
        calls.last().map(|c| c.args["file_path"].clone()),
        Some(Json::from("0"))
    );
}

#[test]
fn the_unmodified_tiltfile_evaluates() {
    let calls = evaluate(&tiltfile_text()).expect("the Tiltfile evaluates");
    assert!(!calls.is_empty());
}

#[test]
fn a_misspelled_builtin_fails() {
    let error = evaluation_error(&tiltfile_with("k8s_resource(", "k8s_resourse("));
    assert!(error.contains("k8s_resourse"), "{error}");
}

#[test]
fn an_unknown_keyword_argument_fails() {
    let error = evaluation_error(&tiltfile_with("dockerfile=", "docker_file="));
    assert!(error.contains("docker_file"), "{error}");
}

#[test]
fn a_wrongly_typed_argument_fails() {
    let error = evaluation_error(&tiltfile_with("auto_init=False", "auto_init='False'"));
    assert!(error.contains("auto_init"), "{error}");
}

#[test]
fn a_trigger_mode_must_be_a_tilt_constant() {
    let error = evaluation_error(&tiltfile_with(
        "trigger_mode=TRIGGER_MODE_MANUAL",
        "trigger_mode='manual'",
    ));
    assert!(error.contains("trigger_mode"), "{error}");
}

// ---------------------------------------------------------------------------------------
// The Tiltfile against the manifests it deploys
// ---------------------------------------------------------------------------------------

/// The workloads (kind, name) and their container images, rendered the way Tilt renders
/// them (`kubectl kustomize` with the Tiltfile's flags).
fn rendered_workloads(
    kubectl: &Path,
    root: &Path,
    dir: &str,
    flags: &[String],
) -> Vec<(String, String, Vec<String>)> {
    let kubeconfig = std::env::temp_dir().join("tiltfile-test-no-kubeconfig");
    let output = Command::new(kubectl)
        .arg("kustomize")
        .args(flags)
        .arg(root.join(dir))
        .current_dir(root)
        // Rendering needs no cluster; never let kubectl find a real one.
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("run kubectl");
    assert!(
        output.status.success(),
        "kubectl kustomize {dir} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8 YAML");
    let mut workloads = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let object: serde_yaml_ng::Value =
            serde::Deserialize::deserialize(document).expect("rendered YAML parses");
        let kind = object["kind"].as_str().unwrap_or_default();
        // The kinds Tilt groups into resources by default.
        if ![
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "Job",
            "CronJob",
            "Pod",
        ]
        .contains(&kind)
        {
            continue;
        }
        let spec = if kind == "Pod" {
            &object["spec"]
        } else {
            &object["spec"]["template"]["spec"]
        };
        let images = ["containers", "initContainers"]
            .iter()
            .filter_map(|key| spec[*key].as_sequence())
            .flatten()
            .filter_map(|c| c["image"].as_str().map(str::to_owned))
            .collect();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        workloads.push((kind.to_owned(), name.to_owned(), images));
    }
    workloads
}

#[test]
fn every_k8s_resource_is_a_workload_of_the_overlay_and_the_services_run_the_built_image() {
    let services = services();
    let Some(resources) =
        k8s_resources_are_the_workloads(&xtask::paths::workspace_root(), &services)
    else {
        return;
    };
    assert!(resources.is_superset(&services.into_iter().collect()));
}

/// The Tiltfile of the checkout at `root`, evaluated there and checked against the
/// overlay it deploys (rendered as Tilt renders it): its k8s_resource() calls are
/// exactly the overlay's workloads, and exactly `services` run the image it builds. The
/// resources' names, or `None` (after SKIPPED) without kubectl.
pub fn k8s_resources_are_the_workloads(
    root: &Path,
    services: &[String],
) -> Option<BTreeSet<String>> {
    let plan = Plan::load_at(root);
    let yaml = &plan.only_call("k8s_yaml")["yaml"];
    let dir = yaml["kustomize"].as_str().expect("kustomize directory");
    let flags: Vec<String> = yaml["flags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect();
    assert!(
        root.join(dir).is_dir(),
        "{dir}, which the Tiltfile deploys, does not exist"
    );
    let kubectl = crate::support::require("kubectl", "kubectl 1.32 or later, or nix develop")?;
    let workloads = rendered_workloads(&kubectl, root, dir, &flags);
    let workload_names: BTreeSet<_> = workloads.iter().map(|(_, name, _)| name.clone()).collect();
    let resources: BTreeSet<_> = plan
        .calls("k8s_resource")
        .into_iter()
        .map(|a| str_of(a, "workload"))
        .collect();
    // Tilt fails on a k8s_resource naming no workload; a workload left out would show
    // up unlabelled.
    assert_eq!(
        resources, workload_names,
        "k8s_resource() calls vs workloads of {dir}"
    );
    let image_ref = str_of(plan.only_call("docker_build"), "ref");
    for (kind, name, images) in &workloads {
        let built = images
            .iter()
            .any(|i| i.split([':', '@']).next() == Some(image_ref.as_str()));
        assert_eq!(
            built,
            services.contains(name),
            "{kind} {name} runs {images:?}: only the services {services:?} run {image_ref}"
        );
    }
    Some(resources)
}

/// Every button of the Tiltfile (a manual `local_resource`): its name and `cmd`, for the
/// tests that run each against the kubectl stand-in (kubectl.rs).
pub fn buttons() -> Vec<(String, String)> {
    Plan::load()
        .calls("local_resource")
        .into_iter()
        .filter(|args| is_manual(args))
        .map(|args| (str_of(args, "name"), str_of(args, "cmd")))
        .collect()
}
