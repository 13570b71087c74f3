//! Every service container runs as its Deployment declares. For each of the seven
//! service Deployments of the rendered kind overlay, the image `cargo xtask images` builds
//! (the one `cargo xtask deploy` and Tilt put in place of `mock-service:dev`) runs in the
//! real Docker engine the way the kubelet would run that pod's container, everything
//! read from the rendering:
//!
//! - the environment: plain values as they are; `fieldRef`s resolved as the kubelet does
//!   (the pod's name and namespace, its labels, its IP, which is 127.0.0.1 here) and
//!   `configMapKeyRef`s from the rendered ConfigMaps;
//! - `command` (the entrypoint) and `args`;
//! - the security context: `runAsUser`/`runAsGroup` (`--user`), `fsGroup` and
//!   `supplementalGroups` (`--group-add`), `readOnlyRootFilesystem` (`--read-only`),
//!   capabilities (`--cap-drop`/`--cap-add`), `allowPrivilegeEscalation: false`
//!   (`--security-opt no-new-privileges`); `seccompProfile: RuntimeDefault` is Docker's
//!   default profile, which every container gets unless told otherwise;
//! - resource limits (`--memory`, `--cpus`);
//! - volumes: each ConfigMap's files written out and mounted read-only at the declared
//!   path (Kubernetes mounts ConfigMaps read-only whatever the mount says), emptyDirs as
//!   tmpfs;
//!
//! then its readiness and liveness probes must answer 200 on the declared port and path,
//! and a few seconds later it must still be running, never restarted, and still pass
//! both probes.
//!
//! Two things differ from a pod, both forced by running on this machine's network
//! (`--network host`, one container at a time, since the ports are the Deployment's
//! fixed ones): a `HOST` of 0.0.0.0 (every interface of the pod's own network namespace)
//! is narrowed to 127.0.0.1, the pod's address here, because servers started on this
//! machine listen on loopback only; and the cluster names the environment points at
//! (the collector's `otel-collector.monitoring.svc`) resolve to 127.0.0.1 too
//! (`--add-host`), where nothing of theirs listens (the tests that start a local
//! collector on 4317 take turns with this one: `support::serial`), so the spans go
//! nowhere, as when the collector is down: a service must keep serving then, and no
//! lookup leaves the machine.
//! Anything the translation does not model (a secret, a volume of another kind, an exec
//! probe, `$(VAR)` references) fails the test, naming it, rather than being ignored.
//!
//! The monitoring Deployments (Prometheus, Alertmanager, Grafana, the collector, Jaeger)
//! are not run: their images come from public registries, which no machine of this
//! project reaches. manifests.rs checks them by structure and with the validators.
//! Without a Docker engine, the static Rust target or a C compiler for musl, the test
//! says SKIPPED.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;

use crate::image::{Container, built_image, docker};
use crate::manifests::{
    Rendering, TempDir, array, container_port, labels_at, name, namespace, quantity, renderings,
    text_at,
};

/// The address the container listens on and is probed at: the pod's IP, here.
const POD_IP: &str = "127.0.0.1";

/// How `docker run` runs one Deployment's container, and what must exist first.
#[derive(Debug)]
struct PodRun {
    deployment: String,
    /// The options of `docker run`, before the image.
    options: Vec<String>,
    /// `command` from the manifest: the entrypoint and its first arguments.
    command: Vec<String>,
    /// `args` from the manifest: after the command (or the image's entrypoint).
    args: Vec<String>,
    /// The ConfigMap files to write, relative to the run's directory, with their mode.
    files: Vec<(PathBuf, String, u32)>,
    probes: Vec<Probe>,
    /// The container ports, which must be free on this machine before the run.
    ports: Vec<u16>,
}

#[derive(Debug, PartialEq)]
struct Probe {
    kind: String,
    port: u16,
    path: String,
    headers: Vec<(String, String)>,
}

/// Translates a Deployment's pod template, as the kubelet would run it, into `docker run`
/// terms. `dir` is where the ConfigMap files will be written (`files`, relative to it).
fn pod_run(r: &Rendering, deployment: &Value, dir: &Path) -> PodRun {
    let who = format!("Deployment {}/{}", namespace(deployment), name(deployment));
    let template = &deployment["spec"]["template"];
    let spec = &template["spec"];
    let [container] = array(spec, "/containers") else {
        panic!("{who}: one container expected (extend this test for more)");
    };
    assert!(
        array(spec, "/initContainers").is_empty(),
        "{who}: init containers are not modelled"
    );
    assert!(
        array(container, "/envFrom").is_empty(),
        "{who}: envFrom is not modelled"
    );
    let mut run = PodRun {
        deployment: name(deployment).to_owned(),
        options: vec!["--network".into(), "host".into()],
        command: strings(container, "/command", &who),
        args: strings(container, "/args", &who),
        files: Vec::new(),
        probes: Vec::new(),
        ports: array(container, "/ports")
            .iter()
            .map(|p| port_number(&p["containerPort"]))
            .collect(),
    };

    let env = environment(r, deployment, container, &who);
    for host in cluster_hosts(&env) {
        run.options.push("--add-host".into());
        run.options.push(format!("{host}:{POD_IP}"));
    }
    for (key, value) in env {
        run.options.push("--env".into());
        run.options.push(format!("{key}={value}"));
    }
    security(spec, container, &who, &mut run.options);
    for (resource, option) in [("memory", "--memory"), ("cpu", "--cpus")] {
        if let Some(limit) = container.pointer(&format!("/resources/limits/{resource}")) {
            let amount = quantity(limit, resource)
                .unwrap_or_else(|| panic!("{who}: limits.{resource} {limit} is no quantity"));
            run.options.push(option.into());
            run.options.push(if resource == "memory" {
                format!("{}", amount.round())
            } else {
                format!("{amount}")
            });
        }
    }
    volumes(r, deployment, container, dir, &who, &mut run);
    for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
        if let Some(probe) = container.get(kind) {
            run.probes.push(http_probe(container, kind, probe, &who));
        }
    }
    run
}

fn strings(value: &Value, pointer: &str, who: &str) -> Vec<String> {
    array(value, pointer)
        .iter()
        .map(|item| {
            let text = item.as_str().unwrap_or_default();
            assert!(
                !text.contains("$("),
                "{who}: {text} refers to a variable, which is not modelled"
            );
            text.to_owned()
        })
        .collect()
}

fn port_number(value: &Value) -> u16 {
    value
        .as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .unwrap_or_else(|| panic!("{value} is no port number"))
}

/// The container's environment as the kubelet sets it, in order.
fn environment(
    r: &Rendering,
    deployment: &Value,
    container: &Value,
    who: &str,
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for var in array(container, "/env") {
        let key = text_at(var, "/name").to_owned();
        let value = if let Some(value) = var.get("value") {
            let value = value.as_str().unwrap_or_default();
            assert!(
                !value.contains("$("),
                "{who}: env {key} refers to a variable, which is not modelled"
            );
            value.to_owned()
        } else if let Some(field) = var.pointer("/valueFrom/fieldRef/fieldPath") {
            field_value(deployment, field.as_str().unwrap_or_default(), who)
        } else if let Some(reference) = var.pointer("/valueFrom/configMapKeyRef") {
            let config_map = text_at(reference, "/name");
            let data_key = text_at(reference, "/key");
            let found = r
                .get("ConfigMap", namespace(deployment), config_map)
                .and_then(|cm| cm.pointer(&format!("/data/{}", pointer_escape(data_key))))
                .and_then(Value::as_str);
            match found {
                Some(value) => value.to_owned(),
                // The kubelet leaves an optional variable out; a required one stops the pod.
                None if reference.get("optional") == Some(&Value::Bool(true)) => continue,
                None => panic!(
                    "{who}: env {key} reads ConfigMap {config_map} key {data_key}, which is not rendered"
                ),
            }
        } else {
            panic!("{who}: env {key}: {var} is not modelled");
        };
        // The pod's 0.0.0.0 is its own namespace's interfaces; here it shares the host's.
        let value = if key == "HOST" && ["0.0.0.0", "::"].contains(&value.as_str()) {
            POD_IP.to_owned()
        } else {
            value
        };
        env.push((key, value));
    }
    env
}

/// The cluster DNS names (`NAME.NAMESPACE.svc[.cluster.local]`) the environment points
/// at: here they resolve to the pod's own address, where nothing of theirs listens, so
/// the container meets them as it meets a Service that is down, and asks no resolver.
fn cluster_hosts(env: &[(String, String)]) -> BTreeSet<String> {
    env.iter()
        .filter_map(|(_, value)| {
            let rest = value
                .split_once("://")
                .map_or(value.as_str(), |(_, rest)| rest);
            let authority = rest.split('/').next().unwrap_or_default();
            let host = authority
                .rsplit_once(':')
                .map_or(authority, |(host, _)| host);
            (host.ends_with(".svc") || host.ends_with(".svc.cluster.local"))
                .then(|| host.to_owned())
        })
        .collect()
}

/// A `fieldRef`'s value, as the kubelet resolves it for this pod.
fn field_value(deployment: &Value, path: &str, who: &str) -> String {
    let labels = labels_at(deployment, "/spec/template/metadata/labels");
    if let Some(label) = path
        .strip_prefix("metadata.labels['")
        .and_then(|rest| rest.strip_suffix("']"))
    {
        return labels.get(label).cloned().unwrap_or_default();
    }
    match path {
        "metadata.name" => format!("{}-docker", name(deployment)),
        "metadata.namespace" => namespace(deployment).to_owned(),
        "status.podIP" | "status.hostIP" => POD_IP.to_owned(),
        "spec.nodeName" => "localhost".to_owned(),
        "spec.serviceAccountName" => {
            let account = text_at(deployment, "/spec/template/spec/serviceAccountName");
            if account.is_empty() {
                "default"
            } else {
                account
            }
            .to_owned()
        }
        other => panic!("{who}: fieldRef {other} is not modelled"),
    }
}

/// The security context, the container's settings over the pod's.
fn security(pod: &Value, container: &Value, who: &str, options: &mut Vec<String>) {
    let own = |field: &str| container.pointer(&format!("/securityContext/{field}"));
    let effective =
        |field: &str| own(field).or_else(|| pod.pointer(&format!("/securityContext/{field}")));
    let yes = Some(&Value::Bool(true));
    let user = effective("runAsUser").and_then(Value::as_u64);
    if effective("runAsNonRoot") == yes {
        // The kubelet refuses to start a container that would run as root.
        assert!(
            user.is_some_and(|uid| uid != 0),
            "{who}: runAsNonRoot needs a non-zero runAsUser"
        );
    }
    if let Some(uid) = user {
        let group = effective("runAsGroup").and_then(Value::as_u64);
        options.push("--user".into());
        options.push(group.map_or_else(|| uid.to_string(), |gid| format!("{uid}:{gid}")));
    }
    let fs_group = pod.pointer("/securityContext/fsGroup").into_iter();
    for group in fs_group.chain(array(pod, "/securityContext/supplementalGroups")) {
        options.push("--group-add".into());
        options.push(group.to_string());
    }
    if own("readOnlyRootFilesystem") == yes {
        options.push("--read-only".into());
    }
    if own("allowPrivilegeEscalation") == Some(&Value::Bool(false)) {
        options.push("--security-opt".into());
        options.push("no-new-privileges".into());
    }
    if own("privileged") == yes {
        options.push("--privileged".into());
    }
    for (list, option) in [("drop", "--cap-drop"), ("add", "--cap-add")] {
        for capability in array(container, &format!("/securityContext/capabilities/{list}")) {
            options.push(option.into());
            options.push(capability.as_str().unwrap_or_default().to_owned());
        }
    }
    match effective("seccompProfile").map(|profile| text_at(profile, "/type")) {
        None | Some("RuntimeDefault") => {} // Docker's default profile
        Some(other) => panic!("{who}: seccompProfile {other} is not modelled"),
    }
}

/// The container's volume mounts: ConfigMaps as read-only files, emptyDirs as tmpfs.
fn volumes(
    r: &Rendering,
    deployment: &Value,
    container: &Value,
    dir: &Path,
    who: &str,
    run: &mut PodRun,
) {
    let volumes: BTreeMap<&str, &Value> = array(deployment, "/spec/template/spec/volumes")
        .iter()
        .map(|v| (text_at(v, "/name"), v))
        .collect();
    for mount in array(container, "/volumeMounts") {
        let volume_name = text_at(mount, "/name");
        let target = text_at(mount, "/mountPath");
        let sub_path = text_at(mount, "/subPath");
        let volume = volumes
            .get(volume_name)
            .unwrap_or_else(|| panic!("{who}: mounts undeclared volume {volume_name}"));
        if let Some(source) = volume.get("configMap") {
            let config_map = r
                .get("ConfigMap", namespace(deployment), text_at(source, "/name"))
                .unwrap_or_else(|| {
                    panic!("{who}: volume {volume_name}'s ConfigMap is not rendered")
                });
            assert!(
                config_map.get("binaryData").is_none(),
                "{who}: binaryData is not modelled"
            );
            let data = config_map["data"].as_object().cloned().unwrap_or_default();
            let default_mode = source
                .get("defaultMode")
                .and_then(Value::as_u64)
                .unwrap_or(0o644);
            // With `items`, only the listed keys appear, at their paths.
            let files: Vec<(String, &str, u64)> = match source.get("items") {
                Some(items) => array(items, "")
                    .iter()
                    .map(|item| {
                        let mode = item.get("mode").and_then(Value::as_u64);
                        (
                            text_at(item, "/path").to_owned(),
                            text_at(item, "/key"),
                            mode.unwrap_or(default_mode),
                        )
                    })
                    .collect(),
                None => data
                    .keys()
                    .map(|key| (key.clone(), key.as_str(), default_mode))
                    .collect(),
            };
            for (path, key, mode) in files {
                let text = data
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("{who}: ConfigMap key {key} is missing"));
                run.files.push((
                    Path::new(volume_name).join(path),
                    text.to_owned(),
                    u32::try_from(mode).expect("a file mode"),
                ));
            }
            let mut source_path = dir.join(volume_name);
            if !sub_path.is_empty() {
                source_path.push(sub_path);
            }
            run.options.push("--mount".into());
            run.options.push(format!(
                "type=bind,source={},target={target},readonly",
                source_path.display()
            ));
        } else if let Some(empty_dir) = volume.get("emptyDir") {
            assert!(
                sub_path.is_empty(),
                "{who}: subPath of an emptyDir is not modelled"
            );
            let size = empty_dir
                .get("sizeLimit")
                .and_then(|limit| quantity(limit, "memory"))
                .map_or_else(String::new, |bytes| format!(",size={}", bytes.round()));
            run.options.push("--tmpfs".into());
            run.options.push(format!("{target}:rw,mode=1777{size}"));
        } else {
            panic!("{who}: volume {volume_name} ({volume}) is not modelled");
        }
    }
}

fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn http_probe(container: &Value, kind: &str, probe: &Value, who: &str) -> Probe {
    let Some(get) = probe.get("httpGet") else {
        panic!("{who}: {kind} is not an httpGet probe, which is not modelled");
    };
    assert!(
        ["", "HTTP"].contains(&text_at(get, "/scheme")),
        "{who}: {kind}: HTTPS is not modelled"
    );
    assert!(
        ["", POD_IP].contains(&text_at(get, "/host")),
        "{who}: {kind} probes another host"
    );
    let port = container_port(container, &get["port"])
        .unwrap_or_else(|| panic!("{who}: {kind} probes no declared container port"));
    Probe {
        kind: kind.to_owned(),
        port: u16::try_from(port).expect("a port number"),
        path: text_at(get, "/path").to_owned(),
        headers: array(get, "/httpHeaders")
            .iter()
            .map(|h| {
                (
                    text_at(h, "/name").to_owned(),
                    text_at(h, "/value").to_owned(),
                )
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------
// Running it.

impl PodRun {
    fn container_name(&self) -> String {
        format!("xtask-test-{}", self.deployment)
    }

    /// `docker run` with everything, detached; the container's id.
    fn start(&self, image: &str, dir: &Path) -> Container {
        for (path, text, mode) in &self.files {
            use std::os::unix::fs::PermissionsExt as _;
            let file = dir.join(path);
            std::fs::create_dir_all(file.parent().expect("a parent")).expect("create dir");
            std::fs::write(&file, text).expect("write a ConfigMap file");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode)).expect("chmod");
        }
        for port in &self.ports {
            assert!(
                std::net::TcpListener::bind((POD_IP, *port)).is_ok(),
                "{}: port {port} is taken on this machine; the container shares its network",
                self.deployment
            );
        }
        let name = self.container_name();
        let _ = docker(&["rm", "--force", &name]);
        let mut args: Vec<&str> = vec!["run", "--detach", "--name", &name];
        args.extend(self.options.iter().map(String::as_str));
        if let Some((entrypoint, first_args)) = self.command.split_first() {
            args.extend(["--entrypoint", entrypoint]);
            args.push(image);
            args.extend(first_args.iter().map(String::as_str));
        } else {
            args.push(image);
        }
        args.extend(self.args.iter().map(String::as_str));
        eprintln!("$ docker {}", args.join(" "));
        let output = docker(&args);
        assert!(
            output.status.success(),
            "{}: docker {}\n{}",
            self.deployment,
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        Container(name)
    }
}

/// Each probe's status, or the error that stood for one.
async fn probe_all(client: &reqwest::Client, probes: &[Probe]) -> Vec<Result<u16, String>> {
    let mut results = Vec::new();
    for probe in probes {
        let mut request = client.get(format!("http://{POD_IP}:{}{}", probe.port, probe.path));
        for (header, value) in &probe.headers {
            request = request.header(header, value);
        }
        results.push(
            request
                .send()
                .await
                .map(|response| response.status().as_u16())
                .map_err(|e| e.to_string()),
        );
    }
    results
}

fn state(container: &Container) -> String {
    let output = docker(&[
        "inspect",
        "--format",
        "running={{.State.Running}} restarts={{.RestartCount}} oom={{.State.OOMKilled}} exit={{.State.ExitCode}}",
        &container.0,
    ]);
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn logs(container: &Container) -> String {
    let output = docker(&["logs", "--tail", "40", &container.0]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs the pod's container and checks it as the kubelet would: probes pass, and a few
/// seconds on it is still running, unrestarted, and still passes them.
fn run_and_probe(run: &PodRun, image: &str, dir: &Path, runtime: &tokio::runtime::Runtime) {
    let container = run.start(image, dir);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let all_ok = |results: &[Result<u16, String>]| results.iter().all(|r| r == &Ok(200));
    let first = runtime.block_on(async {
        let mut results = Vec::new();
        for _ in 0..100 {
            results = probe_all(&client, &run.probes).await;
            if all_ok(&results) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        results
    });
    let describe = |results: &[Result<u16, String>]| {
        run.probes
            .iter()
            .zip(results)
            .map(|(p, r)| format!("{} GET :{}{} -> {r:?}", p.kind, p.port, p.path))
            .collect::<Vec<_>>()
            .join(", ")
    };
    assert!(
        all_ok(&first),
        "{}: the probes did not all answer 200: {}\nstate: {}\nlogs:\n{}",
        run.deployment,
        describe(&first),
        state(&container),
        logs(&container)
    );

    std::thread::sleep(Duration::from_secs(3));
    let later = runtime.block_on(probe_all(&client, &run.probes));
    let state = state(&container);
    assert!(
        state.starts_with("running=true restarts=0 oom=false"),
        "{}: no longer running as it should: {state}\nlogs:\n{}",
        run.deployment,
        logs(&container)
    );
    assert!(
        all_ok(&later),
        "{}: a few seconds on: {}\nlogs:\n{}",
        run.deployment,
        describe(&later),
        logs(&container)
    );
}

fn kind_overlay() -> Option<&'static Rendering> {
    let rendering = renderings()?
        .iter()
        .find(|r| r.name == "overlays/kind")
        .expect("manifests/overlays/kind is rendered");
    Some(rendering)
}

/// The Deployments that run the mock-service image: the seven services.
fn service_deployments(r: &Rendering) -> Vec<&Value> {
    let deployments: Vec<&Value> = r
        .all("Deployment")
        .filter(|d| {
            array(d, "/spec/template/spec/containers")
                .iter()
                .any(|c| text_at(c, "/image").starts_with("mock-service:"))
        })
        .collect();
    let names: Vec<&str> = deployments.iter().map(|d| name(d)).collect();
    let topology = contract::topology::Topology::built_in();
    let mut expected = topology.service_names();
    expected.sort_unstable();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted, expected,
        "the mock-service Deployments are the topology's services"
    );
    deployments
}

#[test]
fn every_service_container_runs_as_its_deployment_declares() {
    let Some(rendering) = kind_overlay() else {
        return;
    };
    let Some(image) = built_image() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The containers take the Deployments' fixed ports on this machine's network.
    let _ports = crate::support::serial();
    for deployment in service_deployments(rendering) {
        run_as_declared(rendering, deployment, image, &runtime);
    }
}

/// Runs one service Deployment's container from `image` as the kubelet would and probes
/// it (see the module's documentation). Hold [`crate::support::serial`]: it takes the
/// Deployment's fixed ports.
pub fn run_as_declared(
    rendering: &Rendering,
    deployment: &Value,
    image: &str,
    runtime: &tokio::runtime::Runtime,
) {
    let dir = TempDir::new(&format!("containers-{}", name(deployment)));
    let run = pod_run(rendering, deployment, &dir);
    // What this proves depends on these being translated: a Deployment that stops
    // declaring them fails manifests.rs, and one that declares them is run with them.
    for option in [
        "--read-only",
        "no-new-privileges",
        "--user",
        "--cap-drop",
        "--mount",
    ] {
        assert!(
            run.options.iter().any(|o| o == option),
            "{}: {option} is missing from {:?}",
            run.deployment,
            run.options
        );
    }
    assert!(
        run.probes.iter().any(|p| p.kind == "readinessProbe")
            && run.probes.iter().any(|p| p.kind == "livenessProbe"),
        "{}: {:?}",
        run.deployment,
        run.probes
    );
    run_and_probe(&run, image, &dir, runtime);
}

/// The translation of what the services' Deployments do not use today (a fieldRef, a
/// ConfigMap key, a command, items, an emptyDir), on a Deployment of the test's own.
#[test]
fn the_translation_resolves_references_as_the_kubelet_does() {
    let Some(rendering) = kind_overlay() else {
        return;
    };
    let topology = topology_config_map(rendering);
    let deployment: Value = serde_json::json!({
        "kind": "Deployment",
        "metadata": {"name": "probe-me", "namespace": "services"},
        "spec": {"template": {
            "metadata": {"labels": {"app": "probe-me", "tier": "edge"}},
            "spec": {
                "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 2000},
                "containers": [{
                    "name": "probe-me",
                    "image": "mock-service:dev",
                    "command": ["/mock-service", "--flag"],
                    "args": ["more"],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "env": [
                        {"name": "HOST", "value": "0.0.0.0"},
                        {"name": "SINK", "value": "http://sink.monitoring.svc.cluster.local:4317/v1"},
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
                        {"name": "GRAPH", "valueFrom": {"configMapKeyRef": {"name": topology, "key": "topology.yaml"}}},
                        {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": topology, "key": "nope", "optional": true}}}
                    ],
                    "securityContext": {"runAsGroup": 3000, "capabilities": {"drop": ["ALL"]}},
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": "http",
                        "httpHeaders": [{"name": "X-Probe", "value": "1"}]}},
                    "volumeMounts": [
                        {"name": "graph", "mountPath": "/etc/graph"},
                        {"name": "scratch", "mountPath": "/scratch"}
                    ]
                }],
                "volumes": [
                    {"name": "graph", "configMap": {"name": topology,
                        "items": [{"key": "topology.yaml", "path": "g/graph.yaml", "mode": 0o600}]}},
                    {"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}
                ]
            }
        }}
    });
    let run = pod_run(rendering, &deployment, Path::new("/run-dir"));
    let topology_text = rendering
        .get("ConfigMap", "services", &topology)
        .and_then(|cm| cm.pointer("/data/topology.yaml"))
        .and_then(Value::as_str)
        .expect("the topology ConfigMap");
    let env: Vec<String> = run
        .options
        .windows(2)
        .filter(|pair| pair[0] == "--env")
        .map(|pair| pair[1].clone())
        .collect();
    assert_eq!(
        env,
        [
            "HOST=127.0.0.1".to_owned(),
            "SINK=http://sink.monitoring.svc.cluster.local:4317/v1".to_owned(),
            "POD=probe-me-docker".to_owned(),
            "NS=services".to_owned(),
            "IP=127.0.0.1".to_owned(),
            "TIER=edge".to_owned(),
            format!("GRAPH={topology_text}"),
        ]
    );
    let option = |flag: &str| -> Vec<&str> {
        run.options
            .windows(2)
            .filter(|pair| pair[0] == flag)
            .map(|pair| pair[1].as_str())
            .collect()
    };
    assert_eq!(
        option("--add-host"),
        ["sink.monitoring.svc.cluster.local:127.0.0.1"]
    );
    assert_eq!(option("--user"), ["1000:3000"]);
    assert_eq!(option("--group-add"), ["2000"]);
    assert_eq!(option("--cap-drop"), ["ALL"]);
    assert_eq!(option("--memory"), ["134217728"]);
    assert_eq!(option("--cpus"), ["0.5"]);
    assert_eq!(
        option("--mount"),
        ["type=bind,source=/run-dir/graph,target=/etc/graph,readonly"]
    );
    assert_eq!(option("--tmpfs"), ["/scratch:rw,mode=1777,size=1048576"]);
    assert!(!run.options.iter().any(|o| o == "--read-only"));
    assert_eq!(run.command, ["/mock-service", "--flag"]);
    assert_eq!(run.args, ["more"]);
    assert_eq!(
        run.files,
        [(
            PathBuf::from("graph/g/graph.yaml"),
            topology_text.to_owned(),
            0o600
        )]
    );
    assert_eq!(
        run.probes,
        [Probe {
            kind: "readinessProbe".to_owned(),
            port: 8080,
            path: "/ready".to_owned(),
            headers: vec![("X-Probe".to_owned(), "1".to_owned())],
        }]
    );
}

/// The name (with its hash suffix) of the rendered topology ConfigMap.
fn topology_config_map(r: &Rendering) -> String {
    r.all("ConfigMap")
        .find(|cm| namespace(cm) == "services" && name(cm).starts_with("topology"))
        .map(|cm| name(cm).to_owned())
        .expect("a topology ConfigMap in namespace services")
}
