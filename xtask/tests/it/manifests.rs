//! The cluster manifests (`manifests/`), checked offline. Every kustomization renders
//! with `kubectl kustomize --load-restrictor=LoadRestrictionsNone`; the rendering passes
//! the real validators (`kubernetes-validate --strict`, `checkov`); and it has what the
//! demo depends on: the 13 service pods, probes, requests and limits and a
//! locked-down security context in every pod, a Service behind every dependency of the
//! topology and every in-cluster URL, every configuration file in a ConfigMap mounted
//! where its program reads it, network policies that let the demo's traffic through and
//! nothing else in (each service only from its callers in the topology and Prometheus;
//! no tool's admin or lifecycle endpoint from the services; from outside the pod
//! network only the kind overlay's NodePorts), Prometheus keeping exemplars, sending its
//! alerts to the Alertmanager and running without its lifecycle API, and the kind
//! NodePorts published on 127.0.0.1 at the documented ports.
//!
//! The structural tests need only kubectl (or nothing); the validators are found on PATH
//! or in target/tools-venv/bin, and their tests skip outside CI when they are missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::network_policy::{Pod, selector_matches};
use contract::topology::Topology;
use serde::Deserialize as _;
use serde_json::Value;
use xtask::paths::{
    ALERTMANAGER_CONFIG, GRAFANA_DASHBOARDS, KIND_CONFIG, PROMETHEUS_KUBERNETES_CONFIG,
    PROMETHEUS_RULES, workspace_root,
};

const LOAD_RESTRICTOR: &str = "--load-restrictor=LoadRestrictionsNone";
pub const KUBERNETES_VERSION: &str = "1.32.0";
const VALIDATORS_HINT: &str = "python3 -m venv target/tools-venv && \
     target/tools-venv/bin/pip install kubernetes-validate==1.37.0 checkov==3.3.30";
const PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "observability-playground");

/// The kind overlay's NodePorts: (node port, host port on 127.0.0.1, the Deployment
/// behind it, its container port).
const KIND_PORTS: [(u64, u64, &str, u64); 5] = [
    (30080, 30080, "gateway-service", 8080),
    (30090, 9090, "prometheus", 9090),
    (30300, 3000, "grafana", 3000),
    (30686, 16686, "jaeger", 16686),
    (30093, 9093, "alertmanager", 9093),
];

/// The rendering whose network policies admit traffic from outside the pod network: to
/// exactly the Deployments and ports behind `KIND_PORTS`. The base admits none.
const OVERLAY_WITH_NODE_PORTS: &str = "overlays/kind";

/// The tools' endpoints that stop or reconfigure them, or administer them, which no pod
/// of `services` may reach: (Deployment, container port, what is there).
const TOOL_ADMIN_ENDPOINTS: [(&str, u64, &str); 3] = [
    (
        "prometheus",
        9090,
        "Prometheus's /-/reload and /-/quit (and its API)",
    ),
    ("alertmanager", 9093, "Alertmanager's API (silences)"),
    ("grafana", 3000, "Grafana's admin API"),
];

/// The only checkov checks a manifest may skip, and where.
const ALLOWED_SKIPS: [(&str, &str); 3] = [
    // Image digests: mock-service is built locally, the others are pinned to exact tags.
    ("CKV_K8S_43", "*"),
    // imagePullPolicy IfNotPresent: images loaded into kind, exact tags.
    ("CKV_K8S_15", "*"),
    // A mounted service account token: Prometheus's pod discovery needs the API.
    ("CKV_K8S_38", "prometheus"),
];

// ---------------------------------------------------------------------------------------
// Tests that need nothing but the files.

#[test]
fn every_kustomization_says_how_to_render_it_and_its_files_exist() {
    let root = workspace_root();
    let mut generated: BTreeSet<PathBuf> = BTreeSet::new();
    let mut problems = Problems::default();
    for dir in kustomization_dirs() {
        let file = dir.join("kustomization.yaml");
        let text = std::fs::read_to_string(&file).expect("read kustomization.yaml");
        let header: String = text
            .lines()
            .take_while(|line| line.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        problems.check(
            header.contains(&format!("kubectl kustomize {LOAD_RESTRICTOR}")),
            || {
                format!(
                    "{}: the comment at the top must say to render with \
                     `kubectl kustomize {LOAD_RESTRICTOR}`",
                    file.display()
                )
            },
        );
        let kustomization: Value = serde_yaml_ng::from_str(&text).expect("kustomization parses");
        for resource in array(&kustomization, "/resources") {
            let path = dir.join(resource.as_str().unwrap_or_default());
            problems.check(path.exists(), || {
                format!(
                    "{}: resource {} does not exist",
                    file.display(),
                    path.display()
                )
            });
        }
        for patch in array(&kustomization, "/patches") {
            if let Some(path) = patch.get("path").and_then(Value::as_str) {
                problems.check(dir.join(path).is_file(), || {
                    format!("{}: patch {path} does not exist", file.display())
                });
            }
        }
        for generator in array(&kustomization, "/configMapGenerator") {
            let name = text_at(generator, "/name");
            for entry in array(generator, "/files") {
                let entry = entry.as_str().unwrap_or_default();
                // `key=path`, or a bare path whose file name is the key.
                let path = dir.join(entry.split_once('=').map_or(entry, |(_, path)| path));
                match path.canonicalize() {
                    Ok(path) => {
                        generated.insert(path);
                    }
                    Err(_) => problems.push(format!(
                        "{}: ConfigMap {name} reads {}, which does not exist",
                        file.display(),
                        path.display()
                    )),
                }
            }
            if name == "grafana-dashboards" {
                problems.check(
                    generator.pointer("/options/disableNameSuffixHash") == Some(&Value::Bool(true)),
                    || {
                        format!(
                            "{}: the grafana-dashboards ConfigMap needs \
                             options.disableNameSuffixHash: true, so that an edited \
                             dashboard reaches the running Grafana",
                            file.display()
                        )
                    },
                );
            }
        }
    }

    // Every configuration file shared with `cargo xtask local` feeds a ConfigMap.
    let mut expected: Vec<PathBuf> = [
        "services/mock-service/topology.yaml",
        "prometheus/prometheus-kubernetes.yml",
        "grafana/provisioning/datasources/datasources.yaml",
        "grafana/provisioning/dashboards/dashboards.yaml",
        "otel/collector.yaml",
        "otel/jaeger.yaml",
        "prometheus/alertmanager.yml",
    ]
    .iter()
    .map(|path| root.join(path))
    .collect();
    expected.extend(files_with_extension(&root.join(GRAFANA_DASHBOARDS), "json"));
    expected.extend(files_with_extension(&root.join(PROMETHEUS_RULES), "yml"));
    assert!(expected.len() >= 12, "{expected:?}");
    for path in expected {
        let path = path.canonicalize().expect("config file exists");
        problems.check(generated.contains(&path), || {
            format!(
                "{} is in no configMapGenerator of manifests/",
                path.display()
            )
        });
    }
    problems.assert_none("the kustomizations");
}

#[test]
fn the_kind_cluster_publishes_the_node_ports_on_loopback_only() {
    let path = workspace_root().join(KIND_CONFIG);
    let config: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).expect("read"))
        .expect("kind.yaml parses");
    assert_eq!(text_at(&config, "/kind"), "Cluster");
    assert_eq!(text_at(&config, "/apiVersion"), "kind.x-k8s.io/v1alpha4");
    assert_eq!(text_at(&config, "/name"), "monitoring-demo");
    let roles: Vec<&str> = array(&config, "/nodes")
        .iter()
        .map(|node| text_at(node, "/role"))
        .collect();
    assert_eq!(roles, ["control-plane", "worker", "worker"]);

    let mut mappings = BTreeSet::new();
    for node in array(&config, "/nodes") {
        for mapping in array(node, "/extraPortMappings") {
            assert_eq!(
                text_at(node, "/role"),
                "control-plane",
                "ports are published from the control-plane node only"
            );
            assert_eq!(
                text_at(mapping, "/listenAddress"),
                "127.0.0.1",
                "every host port must listen on loopback only: {mapping}"
            );
            assert!(
                ["", "TCP"].contains(&text_at(mapping, "/protocol")),
                "{mapping}"
            );
            mappings.insert((
                number_at(mapping, "/containerPort"),
                number_at(mapping, "/hostPort"),
            ));
        }
    }
    let expected: BTreeSet<(u64, u64)> = KIND_PORTS
        .iter()
        .map(|&(node_port, host_port, _, _)| (node_port, host_port))
        .collect();
    assert_eq!(mappings, expected, "kind.yaml: (containerPort, hostPort)");
}

/// `cargo xtask up` prints, and the cluster's tools are reached at, the local tools
/// table's ports (`xtask::tools`): kind.yaml must publish each browsable tool there.
#[test]
fn the_kind_cluster_publishes_each_browsable_tool_at_its_local_port() {
    for tool in xtask::tools::ALL.iter().filter(|tool| tool.browsable) {
        let published = KIND_PORTS
            .iter()
            .find(|&&(_, _, deployment, _)| deployment == tool.name);
        assert_eq!(
            published.map(|&(_, host_port, _, _)| host_port),
            Some(u64::from(tool.port())),
            "{}: kind.yaml's host port and the tools table's port differ",
            tool.name
        );
    }
}

// ---------------------------------------------------------------------------------------
// Tests of the rendering (kubectl).

#[test]
fn every_rendering_runs_the_whole_mesh() {
    let Some(renderings) = renderings() else {
        return;
    };
    let topology = Topology::built_in();
    for rendering in renderings {
        let mut problems = Problems::default();
        check_documents(rendering, &mut problems);
        for deployment in rendering.all("Deployment") {
            check_pod(rendering, deployment, &mut problems);
        }
        check_services(rendering, &topology, &mut problems);
        check_mesh(rendering, &topology, &mut problems);
        check_in_cluster_urls(rendering, &mut problems);
        check_skips(rendering, &mut problems);
        problems.assert_none(&rendering.name);
    }
}

#[test]
fn every_rendering_configures_the_observability_stack_from_the_shared_files() {
    let Some(renderings) = renderings() else {
        return;
    };
    for rendering in renderings {
        let mut problems = Problems::default();
        check_prometheus(rendering, &mut problems);
        check_grafana(rendering, &mut problems);
        check_tracing(rendering, &mut problems);
        check_alertmanager(rendering, &mut problems);
        problems.assert_none(&rendering.name);
    }
}

#[test]
fn only_the_kind_overlay_has_node_ports_and_they_are_the_ones_kind_yaml_maps() {
    let Some(renderings) = renderings() else {
        return;
    };
    let names: Vec<&str> = renderings.iter().map(|r| r.name.as_str()).collect();
    assert!(
        names.contains(&"base") && names.contains(&"overlays/kind"),
        "{names:?}"
    );
    for rendering in renderings {
        let mut node_ports = BTreeMap::new();
        for service in rendering.all("Service") {
            let kind = text_at(service, "/spec/type");
            assert!(
                ["", "ClusterIP", "NodePort"].contains(&kind),
                "{}: {} is a {kind}",
                rendering.name,
                id(service)
            );
            for port in array(service, "/spec/ports") {
                if let Some(node_port) = port.get("nodePort") {
                    assert_eq!(kind, "NodePort", "{}", id(service));
                    let backend = rendering.backend(service, port);
                    node_ports.insert(node_port.as_u64().expect("a number"), backend);
                }
            }
            // A NodePort Service whose ports do not all name their node port gets random
            // ones, which could take a fixed port before its own Service is created.
            if kind == "NodePort" {
                assert!(
                    array(service, "/spec/ports")
                        .iter()
                        .all(|port| port.get("nodePort").is_some()),
                    "{}: {} is a NodePort with a port of no fixed nodePort",
                    rendering.name,
                    id(service)
                );
            }
        }
        if rendering.name == "overlays/kind" {
            let expected: BTreeMap<u64, Option<(String, u64)>> = KIND_PORTS
                .iter()
                .map(|&(node_port, _, deployment, port)| {
                    (node_port, Some((deployment.to_owned(), port)))
                })
                .collect();
            assert_eq!(
                node_ports, expected,
                "kind overlay: node port -> (Deployment, container port)"
            );
        } else {
            // The base (and any other overlay) runs on any cluster: ClusterIP only.
            assert!(
                node_ports.is_empty(),
                "{}: NodePorts {node_ports:?} belong in overlays/kind",
                rendering.name
            );
        }
    }
}

#[test]
fn network_policies_let_the_demo_s_traffic_through_and_nothing_else_in() {
    let Some(renderings) = renderings() else {
        return;
    };
    let topology = Topology::built_in();
    for rendering in renderings {
        check_network_policies(rendering, &topology);
    }
}

// ---------------------------------------------------------------------------------------
// The real validators.

#[test]
fn kubernetes_validate_accepts_every_rendering_strictly() {
    let Some(renderings) = renderings() else {
        return;
    };
    let Some(validate) = validator("kubernetes-validate") else {
        return;
    };
    let dir = write_renderings("kubernetes-validate", renderings);
    let files: Vec<PathBuf> = renderings.iter().map(|r| dir.join(r.file_name())).collect();
    let output = Command::new(&validate)
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .args(&files)
        .output()
        .expect("run kubernetes-validate");
    let text = combined(&output);
    assert!(
        output.status.success(),
        "kubernetes-validate --strict -k {KUBERNETES_VERSION} failed:\n{text}"
    );
    // It says one line per resource: every document was validated, none skipped.
    let documents: usize = renderings.iter().map(|r| r.docs.len()).sum();
    let passed = text
        .lines()
        .filter(|line| line.contains(" passed "))
        .count();
    assert_eq!(passed, documents, "{text}");
}

#[test]
fn checkov_passes_every_rendering() {
    let Some(renderings) = renderings() else {
        return;
    };
    let Some(checkov) = validator("checkov") else {
        return;
    };
    let dir = write_renderings("checkov", renderings);
    let output = Command::new(&checkov)
        .arg("-d")
        .arg(&*dir)
        .args([
            "--framework",
            "kubernetes",
            "--skip-download",
            "--compact",
            "--quiet",
        ])
        // Offline: no update check against PyPI, no download of check metadata.
        .env("CKV_SKIP_PACKAGE_UPDATE_CHECK", "true")
        .env("BC_SKIP_MAPPING", "TRUE")
        .current_dir(&*dir)
        .output()
        .expect("run checkov");
    let text = combined(&output);
    assert!(output.status.success(), "checkov found problems:\n{text}");
    // Every skip annotation was used, so none names a check id that does not exist.
    let annotations: usize = renderings
        .iter()
        .map(|r| r.docs.iter().map(|doc| skips(doc).len()).sum::<usize>())
        .sum();
    let summary = text
        .lines()
        .find(|line| line.starts_with("Passed checks:"))
        .unwrap_or_else(|| panic!("no summary in checkov's output:\n{text}"));
    assert!(summary.contains("Failed checks: 0,"), "{text}");
    assert!(
        summary.ends_with(&format!("Skipped checks: {annotations}")),
        "expected {annotations} skipped checks, one per annotation:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------
// The checks.

fn check_documents(r: &Rendering, problems: &mut Problems) {
    let namespaces: BTreeSet<&str> = r.all("Namespace").map(name).collect();
    problems.check(
        namespaces == BTreeSet::from(["monitoring", "services"]),
        || format!("namespaces: {namespaces:?}"),
    );
    for doc in &r.docs {
        let cluster_scoped = ["Namespace"].contains(&kind(doc));
        problems.check(
            cluster_scoped || namespaces.contains(namespace(doc)),
            || format!("{} is in no namespace of the demo", id(doc)),
        );
        problems.check(
            !["ClusterRole", "ClusterRoleBinding"].contains(&kind(doc)),
            || format!("{}: the demo needs no cluster-wide permission", id(doc)),
        );
        // Client-side `kubectl apply` keeps a copy of each object in an annotation,
        // limited to 256 KiB: a ConfigMap of dashboards could outgrow it.
        let size = serde_json::to_string(doc).map_or(0, |json| json.len());
        problems.check(size < 256 * 1024, || {
            format!(
                "{} is {size} bytes, too big for `kubectl apply` (256 KiB): split it",
                id(doc)
            )
        });
    }
}

/// Probes, resources, security: every Deployment, services and monitoring alike.
fn check_pod(r: &Rendering, deployment: &Value, problems: &mut Problems) {
    let who = id(deployment);
    let template = &deployment["spec"]["template"];
    let spec = &template["spec"];
    check_pod_labels(deployment, &who, problems);
    check_pod_privileges(deployment, &who, problems);
    let volumes: BTreeMap<&str, &Value> = array(spec, "/volumes")
        .iter()
        .map(|volume| (text_at(volume, "/name"), volume))
        .collect();
    for volume in volumes.values() {
        if let Some(config_map) = volume.pointer("/configMap/name").and_then(Value::as_str) {
            problems.check(
                r.get("ConfigMap", namespace(deployment), config_map)
                    .is_some(),
                || format!("{who}: mounts ConfigMap {config_map}, which is not rendered"),
            );
        }
    }

    let containers = array(spec, "/containers");
    problems.check(!containers.is_empty(), || format!("{who}: no container"));
    for container in containers.iter().chain(array(spec, "/initContainers")) {
        let who = format!("{who} container {}", text_at(container, "/name"));
        for probe in ["livenessProbe", "readinessProbe"] {
            match container.get(probe) {
                None => problems.push(format!("{who}: no {probe}")),
                Some(probe_spec) => {
                    let port = probe_spec
                        .pointer("/httpGet/port")
                        .or_else(|| probe_spec.pointer("/tcpSocket/port"));
                    problems.check(
                        port.and_then(|port| container_port(container, port))
                            .is_some(),
                        || format!("{who}: {probe} probes no declared container port"),
                    );
                }
            }
        }
        check_resources(container, &who, problems);
        check_security(spec, container, &who, problems);
        check_image(container, &who, problems);
        for mount in array(container, "/volumeMounts") {
            problems.check(volumes.contains_key(text_at(mount, "/name")), || {
                format!(
                    "{who}: mounts undeclared volume {}",
                    text_at(mount, "/name")
                )
            });
        }
    }
}

/// Its pods' labels (`app`, part-of) and a selector that selects them.
fn check_pod_labels(deployment: &Value, who: &str, problems: &mut Problems) {
    let template = &deployment["spec"]["template"];
    let labels = labels_at(template, "/metadata/labels");
    problems.check(
        labels.get("app").map(String::as_str) == Some(name(deployment)),
        || format!("{who}: its pods need the label app: {}", name(deployment)),
    );
    problems.check(
        labels.get(PART_OF.0).map(String::as_str) == Some(PART_OF.1),
        || {
            format!(
                "{who}: its pods need the label {}: {}",
                PART_OF.0, PART_OF.1
            )
        },
    );
    problems.check(
        selector_matches(&deployment["spec"]["selector"], &labels)
            && !labels_at(deployment, "/spec/selector/matchLabels").is_empty(),
        || format!("{who}: the selector does not select its own pods"),
    );
}

/// No host namespace; the API token only where it is used (Prometheus's discovery).
fn check_pod_privileges(deployment: &Value, who: &str, problems: &mut Problems) {
    let spec = &deployment["spec"]["template"]["spec"];
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        problems.check(spec.get(field) != Some(&Value::Bool(true)), || {
            format!("{who}: {field}")
        });
    }
    if name(deployment) == "prometheus" {
        problems.check(text_at(spec, "/serviceAccountName") == "prometheus", || {
            format!("{who}: runs as the ServiceAccount prometheus, which may discover pods")
        });
        problems.check(
            spec.get("automountServiceAccountToken") != Some(&Value::Bool(false)),
            || format!("{who}: Prometheus needs its token for pod discovery"),
        );
    } else {
        problems.check(
            spec.get("automountServiceAccountToken") == Some(&Value::Bool(false)),
            || format!("{who}: automountServiceAccountToken: false (it never calls the API)"),
        );
    }
}

fn check_resources(container: &Value, who: &str, problems: &mut Problems) {
    for resource in ["cpu", "memory"] {
        let request = container.pointer(&format!("/resources/requests/{resource}"));
        let limit = container.pointer(&format!("/resources/limits/{resource}"));
        let (Some(request), Some(limit)) = (request, limit) else {
            problems.push(format!("{who}: needs requests and limits for {resource}"));
            continue;
        };
        let (request, limit) = (quantity(request, resource), quantity(limit, resource));
        problems.check(
            matches!((request, limit), (Some(request), Some(limit)) if request <= limit),
            || format!("{who}: {resource} request {request:?} must be at most its limit {limit:?}"),
        );
    }
}

fn check_security(pod: &Value, container: &Value, who: &str, problems: &mut Problems) {
    let own = |field: &str| container.pointer(&format!("/securityContext/{field}"));
    // The container's setting, or the pod's when the container does not say.
    let effective =
        |field: &str| own(field).or_else(|| pod.pointer(&format!("/securityContext/{field}")));
    let yes = Some(&Value::Bool(true));
    let no = Some(&Value::Bool(false));
    problems.check(effective("runAsNonRoot") == yes, || {
        format!("{who}: runAsNonRoot: true")
    });
    for field in ["runAsUser", "runAsGroup"] {
        problems.check(
            effective(field)
                .and_then(Value::as_u64)
                .is_some_and(|id| id > 0),
            || format!("{who}: an explicit non-zero {field}"),
        );
    }
    problems.check(
        effective("seccompProfile").map(|p| text_at(p, "/type")) == Some("RuntimeDefault"),
        || format!("{who}: seccompProfile RuntimeDefault"),
    );
    problems.check(own("allowPrivilegeEscalation") == no, || {
        format!("{who}: allowPrivilegeEscalation: false")
    });
    problems.check(own("readOnlyRootFilesystem") == yes, || {
        format!("{who}: readOnlyRootFilesystem: true")
    });
    problems.check(own("privileged") != yes, || format!("{who}: privileged"));
    problems.check(
        array(container, "/securityContext/capabilities/drop")
            .iter()
            .any(|c| c == "ALL")
            && array(container, "/securityContext/capabilities/add").is_empty(),
        || format!("{who}: capabilities: drop ALL, add none"),
    );
}

fn check_image(container: &Value, who: &str, problems: &mut Problems) {
    let image = text_at(container, "/image");
    let (repository, tag) = image.rsplit_once(':').unwrap_or((image, ""));
    if repository == "mock-service" {
        // Built locally; xtask and Tilt override the tag. Never pulled from a registry.
        problems.check(
            text_at(container, "/imagePullPolicy") == "IfNotPresent",
            || {
                format!(
                    "{who}: mock-service is loaded into the nodes: imagePullPolicy IfNotPresent"
                )
            },
        );
        return;
    }
    // Third-party images: an exact release, e.g. v3.5.0 or 0.133.0.
    let version = tag.strip_prefix('v').unwrap_or(tag);
    let exact = version.split('.').count() == 3
        && version
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    problems.check(exact && !image.contains('@'), || {
        format!("{who}: {image} must be pinned to an exact version tag")
    });
}

/// The seven services: replicas, the mock-service container, and what the topology needs.
fn check_services(r: &Rendering, topology: &Topology, problems: &mut Problems) {
    let deployments: BTreeMap<&str, &Value> = r
        .all("Deployment")
        .filter(|d| namespace(d) == "services")
        .map(|d| (name(d), d))
        .collect();
    let names: BTreeSet<&str> = topology.service_names().into_iter().collect();
    problems.check(
        deployments.keys().copied().collect::<BTreeSet<_>>() == names,
        || {
            format!(
                "the Deployments of namespace services {:?} are not the topology's {names:?}",
                deployments.keys()
            )
        },
    );

    let mut pods = 0;
    for (&service, deployment) in &deployments {
        let who = id(deployment);
        let replicas = deployment.pointer("/spec/replicas").and_then(Value::as_u64);
        let expected = if service == "notification-service" {
            1
        } else {
            2
        };
        problems.check(replicas == Some(expected), || {
            format!("{who}: {expected} replicas (the topology's), not {replicas:?}")
        });
        pods += replicas.unwrap_or(0);

        let spec = &deployment["spec"]["template"]["spec"];
        let containers = array(spec, "/containers");
        let [container] = containers else {
            problems.push(format!("{who}: one container, mock-service"));
            continue;
        };
        problems.check(
            text_at(container, "/image").starts_with("mock-service:"),
            || format!("{who}: runs the mock-service image"),
        );
        let env = env(container);
        let expect = [
            ("SERVICE_NAME", service),
            ("HOST", "0.0.0.0"),
            ("PORT", "8080"),
            ("TOPOLOGY_FILE", "/etc/mesh/topology.yaml"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://otel-collector.monitoring.svc:4317",
            ),
            ("SHUTDOWN_DELAY_MS", "3000"),
            ("SHUTDOWN_DRAIN_SECONDS", "10"),
            ("RUST_LOG", "info"),
        ];
        for (key, value) in expect {
            problems.check(env.get(key).map(String::as_str) == Some(value), || {
                format!("{who}: env {key}={value}, not {:?}", env.get(key))
            });
        }
        for security in ["runAsUser", "runAsGroup"] {
            problems.check(
                container
                    .pointer(&format!("/securityContext/{security}"))
                    .and_then(Value::as_u64)
                    == Some(65532),
                || format!("{who}: {security} 65532, the image's user"),
            );
        }

        // Shutdown: not ready, a delay for Endpoints to catch up, a bounded drain; all of
        // it must fit in the grace period, or the kubelet kills requests in flight.
        let grace = spec
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_u64);
        let delay_ms: u64 = env
            .get("SHUTDOWN_DELAY_MS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let drain: u64 = env
            .get("SHUTDOWN_DRAIN_SECONDS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10);
        problems.check(
            grace.is_some_and(|grace| grace * 1000 >= delay_ms + drain * 1000 + 2000),
            || format!("{who}: terminationGracePeriodSeconds {grace:?} must exceed the shutdown delay and drain with room"),
        );

        // Probes and scraping on the port the service listens on.
        let port = env.get("PORT").and_then(|p| p.parse::<u64>().ok());
        for (probe, path) in [("readinessProbe", "/ready"), ("livenessProbe", "/health")] {
            let probed = container
                .pointer(&format!("/{probe}/httpGet/port"))
                .and_then(|p| container_port(container, p));
            problems.check(
                text_at(container, &format!("/{probe}/httpGet/path")) == path && probed == port,
                || format!("{who}: {probe} GET {path} on port {port:?}"),
            );
        }
        let annotations = labels_at(deployment, "/spec/template/metadata/annotations");
        let scrape = [
            ("prometheus.io/scrape", "true".to_owned()),
            ("prometheus.io/port", port.unwrap_or_default().to_string()),
            ("prometheus.io/path", "/metrics".to_owned()),
        ];
        for (key, value) in scrape {
            problems.check(annotations.get(key) == Some(&value), || {
                format!("{who}: pod annotation {key}: {value:?}")
            });
        }
        let memory_limit = container
            .pointer("/resources/limits/memory")
            .and_then(|m| quantity(m, "memory"));
        problems.check(memory_limit.is_some_and(|m| m >= 2.0 * 25e6), || {
            format!("{who}: a memory limit of at least twice the 25 MB measured under load")
        });

        // The topology it reads is the repository's, and parses.
        let file = env.get("TOPOLOGY_FILE").map_or("", String::as_str);
        match r.mounted_file(deployment, container, file) {
            Some(text) => {
                problems.check(
                    text == read_repo("services/mock-service/topology.yaml"),
                    || format!("{who}: {file} is not services/mock-service/topology.yaml"),
                );
                match Topology::parse(file, &text) {
                    Ok(parsed) => problems
                        .check(parsed.service_names() == topology.service_names(), || {
                            format!("{who}: the mounted topology has other services")
                        }),
                    Err(error) => problems.push(format!("{who}: {error}")),
                }
            }
            None => problems.push(format!(
                "{who}: TOPOLOGY_FILE {file} is not a mounted ConfigMap key"
            )),
        }
    }
    problems.check(pods == 13, || {
        format!("namespace services runs {pods} pods; the mesh is 13")
    });
}

/// Every dependency is reached at http://<name>: a Service of that name in namespace
/// services, port 80, in front of the pods that play that role.
fn check_mesh(r: &Rendering, topology: &Topology, problems: &mut Problems) {
    for service in topology.services() {
        let Some(caller) = r.get("Deployment", "services", &service.name) else {
            continue; // reported by check_services
        };
        let env = env(&caller["spec"]["template"]["spec"]["containers"][0]);
        for dependency in service.dependencies() {
            let url_variable = format!("{}_URL", dependency.to_ascii_uppercase().replace('-', "_"));
            // An explicit URL is checked with the others, in check_in_cluster_urls.
            if env.contains_key(&url_variable) {
                continue;
            }
            match r.service_backend("services", dependency, 80) {
                Some((deployment, _)) => {
                    let plays = r
                        .get("Deployment", "services", &deployment)
                        .map(|d| env_of(d).get("SERVICE_NAME").cloned().unwrap_or_default());
                    problems.check(plays.as_deref() == Some(dependency), || {
                        format!(
                            "Service {dependency} sends {}'s calls to {deployment}, which plays {plays:?}",
                            service.name
                        )
                    });
                }
                None => problems.push(format!(
                    "{} calls http://{dependency}: there is no Service {dependency} with port 80 \
                     in front of a Deployment in namespace services",
                    service.name
                )),
            }
        }
    }
    for service in r.all("Service") {
        let who = id(service);
        problems.check(!labels_at(service, "/spec/selector").is_empty(), || {
            format!("{who}: no selector")
        });
        for port in array(service, "/spec/ports") {
            problems.check(r.backend(service, port).is_some(), || {
                format!("{who}: port {port} reaches no container port of a Deployment")
            });
        }
        if namespace(service) == "services" {
            let ports = array(service, "/spec/ports");
            problems.check(
                ports.len() == 1
                    && number_at(&ports[0], "/port") == 80
                    && text_at(&ports[0], "/name") == "http"
                    && r.backend(service, &ports[0]).map(|(_, port)| port) == Some(8080),
                || format!("{who}: one port, http, 80 -> 8080"),
            );
        }
    }
}

/// Every variable that names a place (`*_URL`, `*_ENDPOINT`) points at a Service of
/// this rendering, on a port it has.
fn check_in_cluster_urls(r: &Rendering, problems: &mut Problems) {
    for deployment in r.all("Deployment") {
        for container in array(deployment, "/spec/template/spec/containers") {
            for (key, value) in env(container) {
                if !(key.ends_with("_URL") || key.ends_with("_ENDPOINT")) {
                    continue;
                }
                let who = format!("{} env {key}={value}", id(deployment));
                match service_address(&value, namespace(deployment)) {
                    Some((name, ns, port)) => problems
                        .check(r.service_backend(&ns, &name, port).is_some(), || {
                            format!("{who}: no Service {ns}/{name} with port {port}")
                        }),
                    None => problems.push(format!("{who}: not an address in the cluster")),
                }
            }
        }
    }
}

fn check_skips(r: &Rendering, problems: &mut Problems) {
    for doc in &r.docs {
        for (check, reason) in skips(doc) {
            problems.check(
                ALLOWED_SKIPS
                    .iter()
                    .any(|&(allowed, only)| allowed == check && (only == "*" || only == name(doc))),
                || {
                    format!(
                        "{}: skips checkov's {check}, which is not an agreed skip",
                        id(doc)
                    )
                },
            );
            problems.check(reason.split_whitespace().count() >= 5, || {
                format!("{}: the skip of {check} needs its reason inline", id(doc))
            });
        }
    }
}

fn check_prometheus(r: &Rendering, problems: &mut Problems) {
    let Some((prometheus, container)) = r.monitoring_container("prometheus", problems) else {
        return;
    };
    let args = args(container);
    // Nothing reloads or stops Prometheus over HTTP (an edited ConfigMap rolls the pod):
    // its lifecycle and admin endpoints stay off.
    for flag in ["--web.enable-lifecycle", "--web.enable-admin-api"] {
        problems.check(!args.contains_key(flag), || {
            format!("prometheus: {flag} opens endpoints that stop or change it; nothing needs them")
        });
    }
    // The services' exemplars (trace ids on the latency histograms) are kept only with
    // this feature on; `--enable-feature` may repeat, each a comma-separated list.
    problems.check(
        array(container, "/args")
            .iter()
            .filter_map(|arg| arg.as_str()?.strip_prefix("--enable-feature="))
            .any(|features| features.split(',').any(|f| f == "exemplar-storage")),
        || "prometheus: --enable-feature=exemplar-storage, to keep exemplars".to_owned(),
    );
    for (probe, path) in [
        ("readinessProbe", "/-/ready"),
        ("livenessProbe", "/-/healthy"),
    ] {
        problems.check(
            text_at(container, &format!("/{probe}/httpGet/path")) == path,
            || format!("prometheus: {probe} GET {path}"),
        );
    }
    let storage = args.get("--storage.tsdb.path").map_or("", String::as_str);
    problems.check(r.is_empty_dir(prometheus, container, storage), || {
        format!("prometheus: --storage.tsdb.path {storage:?} must be an emptyDir (read-only root)")
    });

    let config_file = args.get("--config.file").map_or("", String::as_str);
    let Some(config) = r.mounted_file(prometheus, container, config_file) else {
        problems.push(format!(
            "prometheus: --config.file {config_file:?} is not a mounted ConfigMap key"
        ));
        return;
    };
    problems.check(config == read_repo(PROMETHEUS_KUBERNETES_CONFIG), || {
        format!("prometheus: {config_file} is not prometheus/prometheus-kubernetes.yml")
    });
    let config: Value = serde_yaml_ng::from_str(&config).expect("the Prometheus config parses");
    for (name, ns, port) in alertmanager_targets(&config, namespace(prometheus)) {
        problems.check(r.service_backend(&ns, &name, port).is_some(), || {
            format!("prometheus: sends alerts to {name}:{port}, which is no Service of {ns}")
        });
    }

    // The rules: every file of prometheus/rules/ where rule_files looks.
    let rule_files: Vec<&str> = array(&config, "/rule_files")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    problems.check(!rule_files.is_empty(), || {
        "prometheus: no rule_files".to_owned()
    });
    for pattern in rule_files {
        let (dir, glob) = pattern.rsplit_once('/').unwrap_or(("", pattern));
        let extension = glob
            .strip_prefix("*.")
            .unwrap_or_else(|| panic!("rule_files {pattern}: expected DIR/*.EXT"));
        for file in files_with_extension(&workspace_root().join(PROMETHEUS_RULES), extension) {
            let file_name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let mounted = r.mounted_file(prometheus, container, &format!("{dir}/{file_name}"));
            problems.check(mounted == std::fs::read_to_string(&file).ok(), || {
                format!(
                    "prometheus: {} is not mounted at {dir}/{file_name}",
                    file.display()
                )
            });
        }
    }

    // Discovery: exactly the namespaces its Role lets it list pods in.
    let mut discovered = BTreeSet::new();
    for job in array(&config, "/scrape_configs") {
        for sd in array(job, "/kubernetes_sd_configs") {
            problems.check(text_at(sd, "/role") == "pod", || {
                "prometheus: pod discovery only".to_owned()
            });
            let names = array(sd, "/namespaces/names");
            problems.check(!names.is_empty(), || {
                "prometheus: discovery must name its namespaces (it has no ClusterRole)".to_owned()
            });
            discovered.extend(names.iter().filter_map(Value::as_str).map(str::to_owned));
        }
    }
    let mut granted = BTreeSet::new();
    for binding in r.all("RoleBinding") {
        let for_prometheus = array(binding, "/subjects").iter().any(|s| {
            text_at(s, "/kind") == "ServiceAccount"
                && text_at(s, "/name") == "prometheus"
                && text_at(s, "/namespace") == "monitoring"
        });
        if !for_prometheus {
            continue;
        }
        let role = r.get(
            "Role",
            namespace(binding),
            text_at(binding, "/roleRef/name"),
        );
        problems.check(
            text_at(binding, "/roleRef/kind") == "Role" && role.is_some(),
            || format!("{}: binds a Role that is not rendered", id(binding)),
        );
        let Some(role) = role else { continue };
        let rules = array(role, "/rules");
        let least = rules.len() == 1
            && array(&rules[0], "/apiGroups") == [Value::from("")]
            && array(&rules[0], "/resources") == [Value::from("pods")]
            && array(&rules[0], "/verbs")
                .iter()
                .filter_map(Value::as_str)
                .collect::<BTreeSet<_>>()
                == BTreeSet::from(["get", "list", "watch"]);
        problems.check(least, || {
            format!("{}: get/list/watch on pods, nothing else", id(role))
        });
        granted.insert(namespace(binding).to_owned());
    }
    problems.check(
        r.get("ServiceAccount", "monitoring", "prometheus")
            .is_some(),
        || "no ServiceAccount monitoring/prometheus".to_owned(),
    );
    problems.check(
        discovered == BTreeSet::from(["services".to_owned()]) && granted == discovered,
        || format!("prometheus discovers pods in {discovered:?} and may list pods in {granted:?}: both must be [services]"),
    );
}

fn check_grafana(r: &Rendering, problems: &mut Problems) {
    let Some((grafana, container)) = r.monitoring_container("grafana", problems) else {
        return;
    };
    let env = env(container);
    let get = |key: &str| env.get(key).map_or("", String::as_str);
    for (key, value) in [
        ("GF_ANALYTICS_REPORTING_ENABLED", "false"),
        ("GF_ANALYTICS_CHECK_FOR_UPDATES", "false"),
        ("PROMETHEUS_URL", "http://prometheus.monitoring.svc:9090"),
        ("JAEGER_URL", "http://jaeger.monitoring.svc:16686"),
        (
            "ALERTMANAGER_URL",
            "http://alertmanager.monitoring.svc:9093",
        ),
        // The documented credentials (README: admin/admin).
        ("GF_SECURITY_ADMIN_USER", "admin"),
        ("GF_SECURITY_ADMIN_PASSWORD", "admin"),
    ] {
        problems.check(get(key) == value, || format!("grafana: env {key}={value}"));
    }
    for (probe, path) in [
        ("readinessProbe", "/api/health"),
        ("livenessProbe", "/api/health"),
    ] {
        problems.check(
            text_at(container, &format!("/{probe}/httpGet/path")) == path,
            || format!("grafana: {probe} GET {path}"),
        );
    }
    check_grafana_files(r, (grafana, container), &env, problems);
    for writable in ["/var/lib/grafana", "/tmp"] {
        problems.check(r.is_empty_dir(grafana, container, writable), || {
            format!("grafana: {writable} must be an emptyDir (read-only root)")
        });
    }
}

/// Grafana's provisioning files and every dashboard, mounted where its environment says
/// it reads them, from a ConfigMap an edit reaches.
fn check_grafana_files(
    r: &Rendering,
    (grafana, container): (&Value, &Value),
    env: &BTreeMap<String, String>,
    problems: &mut Problems,
) {
    let get = |key: &str| env.get(key).map_or("", String::as_str);
    let provisioning = get("GF_PATHS_PROVISIONING");
    for (file, source) in [
        (
            "datasources/datasources.yaml",
            "grafana/provisioning/datasources/datasources.yaml",
        ),
        (
            "dashboards/dashboards.yaml",
            "grafana/provisioning/dashboards/dashboards.yaml",
        ),
    ] {
        let path = format!("{provisioning}/{file}");
        problems.check(
            r.mounted_file(grafana, container, &path) == Some(read_repo(source)),
            || format!("grafana: {source} is not mounted at {path}"),
        );
    }
    let dashboards_dir = get("DASHBOARDS_DIR");
    for file in files_with_extension(&workspace_root().join(GRAFANA_DASHBOARDS), "json") {
        let file_name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let path = format!("{dashboards_dir}/{file_name}");
        problems.check(
            r.mounted_file(grafana, container, &path) == std::fs::read_to_string(&file).ok(),
            || format!("grafana: {} is not mounted at {path}", file.display()),
        );
    }
    // Without a hash suffix, so an edited dashboard reaches the running pod.
    problems.check(
        r.get("ConfigMap", "monitoring", "grafana-dashboards")
            .is_some(),
        || {
            "grafana: the dashboards ConfigMap is named grafana-dashboards, without a hash suffix"
                .to_owned()
        },
    );
}

fn check_tracing(r: &Rendering, problems: &mut Problems) {
    for (deployment, flag, source) in [
        ("otel-collector", "--config", "otel/collector.yaml"),
        ("jaeger", "--config", "otel/jaeger.yaml"),
    ] {
        let Some((doc, container)) = r.monitoring_container(deployment, problems) else {
            continue;
        };
        let file = args(container).get(flag).cloned().unwrap_or_default();
        problems.check(
            r.mounted_file(doc, container, &file) == Some(read_repo(source)),
            || format!("{deployment}: {flag}={file} is not {source}, mounted"),
        );
    }
}

fn check_alertmanager(r: &Rendering, problems: &mut Problems) {
    let Some((alertmanager, container)) = r.monitoring_container("alertmanager", problems) else {
        return;
    };
    let args = args(container);
    let image = text_at(container, "/image");
    problems.check(image.starts_with("prom/alertmanager:"), || {
        format!("alertmanager: runs {image}, not prom/alertmanager")
    });
    let config_file = args.get("--config.file").map_or("", String::as_str);
    problems.check(
        r.mounted_file(alertmanager, container, config_file)
            == Some(read_repo(ALERTMANAGER_CONFIG)),
        || format!("alertmanager: --config.file {config_file:?} is not prometheus/alertmanager.yml, mounted"),
    );
    let storage = args.get("--storage.path").map_or("", String::as_str);
    problems.check(r.is_empty_dir(alertmanager, container, storage), || {
        format!("alertmanager: --storage.path {storage:?} must be an emptyDir (read-only root)")
    });
    // One instance: an empty address turns the gossip cluster (port 9094) off.
    problems.check(
        args.get("--cluster.listen-address").map(String::as_str) == Some(""),
        || "alertmanager: --cluster.listen-address= (no gossip)".to_owned(),
    );
    for (probe, path) in [
        ("readinessProbe", "/-/ready"),
        ("livenessProbe", "/-/healthy"),
    ] {
        problems.check(
            text_at(container, &format!("/{probe}/httpGet/path")) == path
                && container
                    .pointer(&format!("/{probe}/httpGet/port"))
                    .and_then(|port| container_port(container, port))
                    == Some(9093),
            || format!("alertmanager: {probe} GET {path} on 9093"),
        );
    }
    problems.check(
        r.service_backend("monitoring", "alertmanager", 9093)
            == Some(("alertmanager".to_owned(), 9093)),
        || "alertmanager: the Service alertmanager:9093 must lead to its pod's 9093".to_owned(),
    );
}

/// The Alertmanagers of a Prometheus configuration's `alerting:` section, as (Service,
/// namespace, port): a bare `name:port` target is a Service of Prometheus's namespace.
fn alertmanager_targets(config: &Value, own_namespace: &str) -> Vec<(String, String, u64)> {
    array(config, "/alerting/alertmanagers")
        .iter()
        .flat_map(|am| array(am, "/static_configs"))
        .flat_map(|sc| array(sc, "/targets"))
        .filter_map(Value::as_str)
        .map(|target| {
            let (host, port) = target
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("alerting target {target}: expected HOST:PORT"));
            let port = port.parse().expect("a port number");
            match host.split_once('.') {
                Some((name, rest)) => {
                    let ns = rest.split('.').next().unwrap_or_default();
                    (name.to_owned(), ns.to_owned(), port)
                }
                None => (host.to_owned(), own_namespace.to_owned(), port),
            }
        })
        .collect()
}

/// A small NetworkPolicy evaluator (ingress; pod and namespace selectors, ipBlocks): the
/// traffic the demo needs gets through, and nothing else. A pod's address may be any
/// of kind's pod subnet; "outside" is any address beyond it (the host's requests reach
/// a NodePort's pod from a node's address, after kube-proxy's SNAT).
pub fn check_network_policies(r: &Rendering, topology: &Topology) {
    let pods = r.pods();
    let pod = |deployment: &str| {
        pods.iter()
            .find(|p| p.deployment == deployment)
            .unwrap_or_else(|| panic!("{}: no Deployment {deployment}", r.name))
    };
    for policy in r.all("NetworkPolicy") {
        let types: Vec<&str> = array(policy, "/spec/policyTypes")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            !types.contains(&"Egress") && policy.pointer("/spec/egress").is_none(),
            "{}: {} restricts egress, which this test does not model: extend it",
            r.name,
            id(policy)
        );
    }
    let mut problems = Problems::default();
    for p in &pods {
        problems.check(r.policies_for(p).next().is_some(), || {
            format!("{}'s pods are not isolated: no NetworkPolicy selects them (a namespace needs a default deny)", p.deployment)
        });
    }

    // What must get through: (from, to, port, why).
    let mut needed: Vec<(Option<&Pod>, &Pod, u64, String)> = Vec::new();
    for service in topology.services() {
        for dependency in service.dependencies() {
            if let Some((deployment, port)) = r.service_backend("services", dependency, 80) {
                needed.push((
                    Some(pod(&service.name)),
                    pod(&deployment),
                    port,
                    format!("the topology's call of http://{dependency}"),
                ));
            }
        }
    }
    for p in pods.iter().filter(|p| p.namespace == "services") {
        let annotations = labels_at(p.template, "/metadata/annotations");
        if let Some(port) = annotations
            .get("prometheus.io/port")
            .and_then(|port| port.parse().ok())
        {
            needed.push((
                Some(pod("prometheus")),
                p,
                port,
                "scraping /metrics".to_owned(),
            ));
        }
    }
    for from in &pods {
        for container in array(from.template, "/spec/containers") {
            for (key, value) in env(container) {
                let Some((name, ns, port)) = service_address(&value, &from.namespace) else {
                    continue;
                };
                if let Some((deployment, port)) = r.service_backend(&ns, &name, port) {
                    needed.push((Some(from), pod(&deployment), port, format!("{key}={value}")));
                }
            }
        }
    }
    // Firing alerts, to the Alertmanager Prometheus's configuration names (the cluster's
    // configuration gets its `alerting:` section from xtask/src/prometheus_config.rs).
    needed.push((
        Some(pod("prometheus")),
        pod("alertmanager"),
        9093,
        "firing alerts".to_owned(),
    ));
    if let Some(config) = r.prometheus_config() {
        for (name, ns, port) in alertmanager_targets(&config, "monitoring") {
            if let Some((deployment, port)) = r.service_backend(&ns, &name, port) {
                needed.push((
                    Some(pod("prometheus")),
                    pod(&deployment),
                    port,
                    format!("alerting target {name}:{port}"),
                ));
            }
        }
    }
    let from_outside = r.node_port_backends();
    for (deployment, port) in &from_outside {
        needed.push((
            None,
            pod(deployment),
            *port,
            "a NodePort, from outside the pod network".to_owned(),
        ));
    }
    assert!(
        needed.len() > 20,
        "only {} connections to check",
        needed.len()
    );
    for (from, to, port, why) in &needed {
        let from_name = from.map_or("outside", |p| p.deployment.as_str());
        problems.check(r.ingress_allowed(*from, to, *port), || {
            format!(
                "blocked: {from_name} -> {}:{port}, needed for {why}",
                to.deployment
            )
        });
        // A path inside the cluster must not hang on a policy open to anyone, which a
        // user may delete to expose less.
        problems.check(
            from.is_none() || r.ingress_allowed_from_named_peers(*from, to, *port),
            || {
                format!(
                    "{from_name} -> {}:{port} ({why}) is let in only by a policy open to anyone",
                    to.deployment
                )
            },
        );
    }
    check_refusals(r, topology, &pods, &from_outside, &mut problems);
    problems.assert_none(&format!("{}: network policies", r.name));
}

/// What must not get through: from outside the pod network, only the kind overlay's
/// NodePorts; each service only from its callers in the topology and Prometheus; the
/// tools only on their span, datasource and alerting paths.
fn check_refusals(
    r: &Rendering,
    topology: &Topology,
    pods: &[Pod],
    from_outside: &[(String, u64)],
    problems: &mut Problems,
) {
    let services: BTreeSet<&str> = pods
        .iter()
        .filter(|p| p.namespace == "services")
        .map(|p| p.deployment.as_str())
        .collect();
    let callers = |callee: &str| -> BTreeSet<&str> {
        topology
            .services()
            .filter(|caller| caller.dependencies().contains(&callee))
            .map(|caller| caller.name.as_str())
            .collect()
    };
    for to in pods {
        for port in to.ports() {
            let sources: BTreeSet<&str> = pods
                .iter()
                .filter(|from| r.ingress_possible(Some(*from), to, port))
                .map(|from| from.deployment.as_str())
                .collect();
            let open = from_outside.contains(&(to.deployment.clone(), port));
            problems.check(r.ingress_possible(None, to, port) == open, || {
                format!(
                    "{}:{port} from outside the pod network: allowed must be {open}",
                    to.deployment
                )
            });
            let expected: BTreeSet<&str> =
                match (to.namespace.as_str(), to.deployment.as_str(), port) {
                    ("services", callee, 8080) => {
                        callers(callee).into_iter().chain(["prometheus"]).collect()
                    }
                    (_, "otel-collector", 4317 | 4318) => services.clone(),
                    (_, "jaeger", 4317) => BTreeSet::from(["otel-collector"]),
                    (_, "jaeger", 16686) | (_, "prometheus", 9090) => BTreeSet::from(["grafana"]),
                    (_, "alertmanager", 9093) => BTreeSet::from(["prometheus", "grafana"]),
                    _ => BTreeSet::new(),
                };
            problems.check(sources == expected, || {
                format!(
                    "{}:{port} is reachable from {sources:?}, expected {expected:?}",
                    to.deployment
                )
            });
        }
    }

    // Said once more, in the words of the rules: every service refuses at least one
    // service that does not call it, and no service reaches a tool's admin endpoints.
    for callee in topology.services() {
        let to = pods
            .iter()
            .find(|p| p.deployment == callee.name)
            .expect("a Deployment per service");
        let callers = callers(&callee.name);
        let forbidden: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.namespace == "services" && !callers.contains(p.deployment.as_str()))
            .collect();
        problems.check(
            forbidden
                .iter()
                .any(|from| !r.ingress_possible(Some(*from), to, 8080)),
            || {
                format!(
                    "{}: admits every service, not only its callers {callers:?}",
                    callee.name
                )
            },
        );
    }
    for (deployment, port, what) in TOOL_ADMIN_ENDPOINTS {
        let Some(to) = pods.iter().find(|p| p.deployment == deployment) else {
            problems.push(format!("no Deployment {deployment}"));
            continue;
        };
        for from in pods.iter().filter(|p| p.namespace == "services") {
            problems.check(!r.ingress_possible(Some(from), to, port), || {
                format!("{} reaches {deployment}:{port}, {what}", from.deployment)
            });
        }
    }
}

// ---------------------------------------------------------------------------------------
// The rendering, and reading it.

pub struct Rendering {
    /// The kustomization directory relative to manifests/, e.g. `overlays/kind`.
    pub name: String,
    yaml: String,
    pub docs: Vec<Value>,
}

impl Rendering {
    pub fn file_name(&self) -> String {
        format!("{}.yaml", self.name.replace('/', "-"))
    }

    pub fn all<'a>(&'a self, kind_: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.docs.iter().filter(move |doc| kind(doc) == kind_)
    }

    pub fn get(&self, kind_: &str, ns: &str, name_: &str) -> Option<&Value> {
        self.docs
            .iter()
            .find(|doc| kind(doc) == kind_ && namespace(doc) == ns && name(doc) == name_)
    }

    /// The Deployment a Service's port leads to, and the container port.
    fn backend(&self, service: &Value, port: &Value) -> Option<(String, u64)> {
        let selector = labels_at(service, "/spec/selector");
        if selector.is_empty() {
            return None;
        }
        let target = port.get("targetPort").or_else(|| port.get("port"))?;
        let deployments: Vec<&Value> = self
            .all("Deployment")
            .filter(|d| namespace(d) == namespace(service))
            .filter(|d| {
                let labels = labels_at(d, "/spec/template/metadata/labels");
                selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect();
        let [deployment] = deployments.as_slice() else {
            return None;
        };
        let container_port = array(deployment, "/spec/template/spec/containers")
            .iter()
            .find_map(|c| container_port(c, target))?;
        Some((name(deployment).to_owned(), container_port))
    }

    /// The Deployment behind Service `ns/name` on `port`, and the container port.
    fn service_backend(&self, ns: &str, name_: &str, port: u64) -> Option<(String, u64)> {
        let service = self.get("Service", ns, name_)?;
        let port = array(service, "/spec/ports")
            .iter()
            .find(|p| number_at(p, "/port") == port)?;
        self.backend(service, port)
    }

    /// The content a container sees at `path`, when a ConfigMap volume provides it.
    fn mounted_file(&self, deployment: &Value, container: &Value, path: &str) -> Option<String> {
        let (dir, file) = path.rsplit_once('/')?;
        let mount = array(container, "/volumeMounts")
            .iter()
            .find(|m| text_at(m, "/mountPath") == dir && m.get("subPath").is_none())?;
        let volume = array(deployment, "/spec/template/spec/volumes")
            .iter()
            .find(|v| text_at(v, "/name") == text_at(mount, "/name"))?;
        let config_map = self.get(
            "ConfigMap",
            namespace(deployment),
            volume.pointer("/configMap/name")?.as_str()?,
        )?;
        // With `items`, only the listed keys appear, at their paths.
        let key = match volume.pointer("/configMap/items").and_then(Value::as_array) {
            Some(items) => text_at(items.iter().find(|i| text_at(i, "/path") == file)?, "/key"),
            None => file,
        };
        config_map
            .pointer(&format!(
                "/data/{}",
                key.replace('~', "~0").replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// The Deployment `name` of namespace monitoring and its (first) container, or a
    /// problem saying it is missing.
    fn monitoring_container(
        &self,
        name_: &str,
        problems: &mut Problems,
    ) -> Option<(&Value, &Value)> {
        let found = self.get("Deployment", "monitoring", name_);
        problems.check(found.is_some(), || {
            format!("no Deployment monitoring/{name_}")
        });
        found.map(|d| (d, &d["spec"]["template"]["spec"]["containers"][0]))
    }

    /// The configuration file the Prometheus Deployment runs with, parsed.
    fn prometheus_config(&self) -> Option<Value> {
        let (prometheus, container) =
            self.monitoring_container("prometheus", &mut Problems::default())?;
        let file = args(container).get("--config.file")?.clone();
        let text = self.mounted_file(prometheus, container, &file)?;
        serde_yaml_ng::from_str(&text).ok()
    }

    fn is_empty_dir(&self, deployment: &Value, container: &Value, path: &str) -> bool {
        let Some(mount) = array(container, "/volumeMounts")
            .iter()
            .find(|m| text_at(m, "/mountPath") == path)
        else {
            return false;
        };
        array(deployment, "/spec/template/spec/volumes")
            .iter()
            .any(|v| text_at(v, "/name") == text_at(mount, "/name") && v.get("emptyDir").is_some())
            && mount.get("readOnly") != Some(&Value::Bool(true))
    }

    /// The Deployments and container ports this rendering admits from outside the pod
    /// network: the kind overlay's NodePorts, nothing in the base.
    fn node_port_backends(&self) -> Vec<(String, u64)> {
        if self.name != OVERLAY_WITH_NODE_PORTS {
            return Vec::new();
        }
        KIND_PORTS
            .iter()
            .map(|&(_, _, deployment, port)| (deployment.to_owned(), port))
            .collect()
    }
}

/// The renderings of every kustomization, or `None` when kubectl is missing outside CI.
/// The tool is looked for on every call, so that every test that cannot run says so.
pub fn renderings() -> Option<&'static [Rendering]> {
    let kubectl =
        crate::support::require("kubectl", "kubectl 1.32 or later, with kustomize built in")?;
    static RENDERINGS: OnceLock<Vec<Rendering>> = OnceLock::new();
    let renderings = RENDERINGS.get_or_init(|| {
        let manifests = workspace_root().join("manifests");
        kustomization_dirs()
            .into_iter()
            .map(|dir| render(&kubectl, &manifests, &dir))
            .collect()
    });
    Some(renderings)
}

pub fn render(kubectl: &Path, manifests: &Path, dir: &Path) -> Rendering {
    // Without a kubeconfig kubectl would talk to localhost:8080; kustomize needs none.
    let no_kubeconfig = std::env::temp_dir()
        .join(format!("xtask-manifests-{}-none", std::process::id()))
        .join("kubeconfig");
    let output = Command::new(kubectl)
        .args(["kustomize", LOAD_RESTRICTOR])
        .arg(dir)
        .env("KUBECONFIG", &no_kubeconfig)
        .output()
        .expect("run kubectl");
    let name = dir
        .strip_prefix(manifests)
        .expect("under manifests/")
        .to_string_lossy()
        .into_owned();
    assert!(
        output.status.success(),
        "kubectl kustomize {LOAD_RESTRICTOR} manifests/{name} failed:\n{}",
        combined(&output)
    );
    let yaml = String::from_utf8(output.stdout).expect("utf-8");
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&yaml)
        .map(|doc| Value::deserialize(doc).expect("the rendering parses"))
        .filter(|doc| !doc.is_null())
        .collect();
    assert!(
        docs.len() > 20,
        "manifests/{name} renders {} documents",
        docs.len()
    );
    Rendering { name, yaml, docs }
}

/// manifests/base and every overlay: each directory with a kustomization.yaml that no
/// other one includes (base/services, generated, is part of the base's rendering).
fn kustomization_dirs() -> Vec<PathBuf> {
    kustomization_dirs_under(&workspace_root().join("manifests"))
}

/// [`kustomization_dirs`] of the checkout whose manifests/ is `manifests`.
fn kustomization_dirs_under(manifests: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        if dir.join("kustomization.yaml").is_file() {
            found.push(dir.to_path_buf());
        }
        for entry in std::fs::read_dir(dir).expect("read manifests/").flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), found);
            }
        }
    }
    let mut found = Vec::new();
    walk(manifests, &mut found);
    // A kustomization in a subdirectory of another that lists it as a resource is a part
    // of that one (base/services of the base), not a rendering of its own; an overlay's
    // `../../base` is not in its directory.
    let parts: BTreeSet<PathBuf> = found
        .iter()
        .flat_map(|dir| {
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            let text = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap_or_default();
            let kustomization: Value = serde_yaml_ng::from_str(&text).unwrap_or(Value::Null);
            array(&kustomization, "/resources")
                .iter()
                .filter_map(|resource| dir.join(resource.as_str()?).canonicalize().ok())
                .filter(|resource| resource.starts_with(&dir) && *resource != dir)
                .collect::<Vec<_>>()
        })
        .collect();
    found.retain(|dir| dir.canonicalize().map_or(true, |dir| !parts.contains(&dir)));
    found.sort();
    for expected in ["base", "overlays/kind"] {
        assert!(
            found.contains(&manifests.join(expected)),
            "manifests/{expected}/kustomization.yaml is missing: {found:?}"
        );
    }
    found
}

pub fn write_renderings(tool: &str, renderings: &[Rendering]) -> TempDir {
    let dir = TempDir::new(&format!("manifests-{tool}"));
    for rendering in renderings {
        std::fs::write(dir.join(rendering.file_name()), &rendering.yaml).expect("write rendering");
    }
    dir
}

/// A directory removed when the test ends, passed or failed.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty directory for this test process under the system's temp dir.
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// Small helpers.

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, problem: String) {
        self.0.push(problem);
    }

    fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.0.push(problem());
        }
    }

    fn assert_none(self, context: &str) {
        assert!(
            self.0.is_empty(),
            "{context}: {} problem(s):\n  - {}",
            self.0.len(),
            self.0.join("\n  - ")
        );
    }
}

pub fn validator(program: &str) -> Option<PathBuf> {
    crate::support::require(program, VALIDATORS_HINT)
}

pub fn combined(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn read_repo(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.{extension} in {}", dir.display());
    files
}

pub fn text_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

pub fn number_at(value: &Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_default()
}

pub fn array<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

pub fn labels_at(value: &Value, pointer: &str) -> BTreeMap<String, String> {
    value
        .pointer(pointer)
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn kind(doc: &Value) -> &str {
    text_at(doc, "/kind")
}

pub fn name(doc: &Value) -> &str {
    text_at(doc, "/metadata/name")
}

pub fn namespace(doc: &Value) -> &str {
    text_at(doc, "/metadata/namespace")
}

fn id(doc: &Value) -> String {
    format!("{} {}/{}", kind(doc), namespace(doc), name(doc))
}

/// A container's literal environment (`value`, not `valueFrom`).
fn env(container: &Value) -> BTreeMap<String, String> {
    array(container, "/env")
        .iter()
        .filter_map(|var| {
            Some((
                text_at(var, "/name").to_owned(),
                var.get("value")?.as_str()?.to_owned(),
            ))
        })
        .collect()
}

fn env_of(deployment: &Value) -> BTreeMap<String, String> {
    env(&deployment["spec"]["template"]["spec"]["containers"][0])
}

/// `--flag=value` arguments (a bare `--flag` maps to "").
fn args(container: &Value) -> BTreeMap<String, String> {
    array(container, "/args")
        .iter()
        .filter_map(Value::as_str)
        .map(|arg| {
            let (flag, value) = arg.split_once('=').unwrap_or((arg, ""));
            (flag.to_owned(), value.to_owned())
        })
        .collect()
}

/// `checkov.io/skipN: CHECK=reason` annotations, as (CHECK, reason).
fn skips(doc: &Value) -> Vec<(String, String)> {
    labels_at(doc, "/metadata/annotations")
        .into_iter()
        .filter(|(key, _)| key.starts_with("checkov.io/skip"))
        .map(|(_, value)| {
            let (check, reason) = value.split_once('=').unwrap_or((&value, ""));
            (check.to_owned(), reason.to_owned())
        })
        .collect()
}

/// A declared container port, by number or by name.
pub fn container_port(container: &Value, port: &Value) -> Option<u64> {
    let ports = array(container, "/ports");
    match port {
        Value::String(name) => ports.iter().find(|p| text_at(p, "/name") == name),
        number => ports
            .iter()
            .find(|p| p.get("containerPort") == Some(number)),
    }
    .map(|p| number_at(p, "/containerPort"))
}

/// A Kubernetes quantity, in cores or bytes.
pub fn quantity(value: &Value, resource: &str) -> Option<f64> {
    let text = value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned);
    if resource == "cpu" {
        return match text.strip_suffix('m') {
            Some(millis) => millis.parse::<f64>().ok().map(|m| m / 1000.0),
            None => text.parse().ok(),
        };
    }
    let units = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
    ];
    for (suffix, factor) in units {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().ok().map(|n| n * factor);
        }
    }
    text.parse().ok()
}

/// `http://name[.ns[.svc[.cluster.local]]][:port][/...]` or `name.ns.svc:port`, as
/// (Service, namespace, port); `None` for anything else (an IP address, a host outside).
fn service_address(value: &str, own_namespace: &str) -> Option<(String, String, u64)> {
    let (rest, default_port) = match value.split_once("://") {
        Some(("http", rest)) => (rest, Some(80)),
        Some(("https", rest)) => (rest, Some(443)),
        Some(_) => return None,
        None => (value, None),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port.parse().ok()?)),
        None => (authority, default_port),
    };
    let parts: Vec<&str> = host.split('.').collect();
    let (name, ns) = match parts.as_slice() {
        // A bare name is a Service of the caller's namespace only in a URL.
        [name] if default_port.is_some() => (*name, own_namespace),
        [name, ns] | [name, ns, "svc"] | [name, ns, "svc", "cluster", "local"] => (*name, *ns),
        _ => return None,
    };
    let dns_label = |s: &str| {
        !s.is_empty()
            && !s.bytes().all(|b| b.is_ascii_digit())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !(dns_label(name) && dns_label(ns)) {
        return None;
    }
    Some((name.to_owned(), ns.to_owned(), port?))
}
