//! `cargo xtask codegen`: the committed generated files (each service's Deployment and
//! Service, namespace `services`' NetworkPolicies, the services kustomization, Tilt's
//! service list) are what the topology gives, and a service added to the topology is,
//! after codegen and nothing else, a workload of the kind overlay that validates
//! strictly, admits exactly its callers, runs as declared and is a Tilt resource.
//! The checks run on a copy of the files the manifests and the Tiltfile read.

use std::path::{Path, PathBuf};

use contract::topology::Topology;
use xtask::{
    codegen,
    paths::{self, workspace_root},
};

use crate::manifests::{self, Rendering, TempDir};

/// What the manifests and the Tiltfile read of the repository.
const CHECKOUT: [&str; 7] = [
    "manifests",
    "services/mock-service/topology.yaml",
    "prometheus",
    "grafana",
    "otel",
    "Tiltfile",
    "Dockerfile",
];

/// The service the tests add, and the one that calls it.
const NEW_SERVICE: &str = "review-service";
const ITS_CALLER: &str = "product-service";

#[test]
fn the_committed_generated_files_are_fresh() {
    let stale = codegen::stale(&workspace_root()).expect("the topology generates");
    assert!(stale.is_empty(), "{}", codegen::stale_message(&stale));
    // The command the message names agrees.
    let check = crate::support::xtask(&["codegen", "--check"]);
    crate::support::succeeded(&check);
}

/// `--check` names what is stale (a changed file, a missing one, the file of a service
/// the topology no longer has) and says what to run; codegen puts all of it right and
/// leaves hand-written files alone.
#[test]
fn check_names_every_stale_file_and_codegen_puts_them_right() {
    let root = checkout("codegen-stale");
    let edited = Path::new(paths::SERVICES_MANIFESTS).join("user-service.yaml");
    let text = read(&root, &edited).replace("replicas: 2", "replicas: 3");
    std::fs::write(root.join(&edited), text).expect("edit");
    std::fs::remove_file(root.join(paths::TILT_SERVICES)).expect("remove");
    let leftover = Path::new(paths::SERVICES_MANIFESTS).join("retired-service.yaml");
    let generated_header = read(&root, Path::new(paths::SERVICES_POLICIES))
        .lines()
        .next()
        .expect("a header")
        .to_owned();
    std::fs::write(root.join(&leftover), format!("{generated_header}\n")).expect("write");
    let hand_written = Path::new(paths::SERVICES_MANIFESTS).join("notes.yaml");
    std::fs::write(root.join(&hand_written), "# mine\n").expect("write");

    let stale = codegen::stale(&root).expect("generates");
    assert_eq!(
        stale,
        [
            edited,
            PathBuf::from(paths::TILT_SERVICES),
            leftover.clone()
        ]
    );
    let message = codegen::stale_message(&stale);
    assert!(
        message.contains("run `cargo xtask codegen`") && message.contains("user-service.yaml"),
        "{message}"
    );

    codegen::write(&root).expect("codegen");
    assert_eq!(
        codegen::stale(&root).expect("generates"),
        Vec::<PathBuf>::new()
    );
    assert!(
        !root.join(&leftover).exists(),
        "the retired service's file stays"
    );
    assert!(
        root.join(&hand_written).exists(),
        "a hand-written file was removed"
    );
}

#[test]
fn an_eighth_service_is_one_topology_edit_and_codegen() {
    let root = checkout("codegen-eighth");
    let topology = add_the_new_service(&root);
    let written = codegen::write(&root).expect("codegen");
    for expected in [
        Path::new(paths::SERVICES_MANIFESTS).join(format!("{NEW_SERVICE}.yaml")),
        Path::new(paths::SERVICES_MANIFESTS).join("kustomization.yaml"),
        PathBuf::from(paths::SERVICES_POLICIES),
        PathBuf::from(paths::TILT_SERVICES),
    ] {
        assert!(
            written.contains(&expected),
            "{expected:?} not in {written:?}"
        );
    }
    let Some(rendering) = render_kind_overlay(&root) else {
        return;
    };
    let deployment = rendering
        .get("Deployment", "services", NEW_SERVICE)
        .unwrap_or_else(|| panic!("no Deployment {NEW_SERVICE} in the kind overlay"));
    assert_eq!(
        deployment
            .pointer("/spec/replicas")
            .and_then(|r| r.as_u64()),
        Some(1),
        "the default replicas"
    );
    assert!(
        rendering.get("Service", "services", NEW_SERVICE).is_some(),
        "no Service {NEW_SERVICE}: its caller's http://{NEW_SERVICE} would not resolve"
    );

    // Its policy admits its caller and refuses every other service; and the whole
    // rendering still passes the evaluator against the new graph.
    let pods = rendering.pods();
    let pod = |name: &str| {
        pods.iter()
            .find(|p| p.deployment == name)
            .unwrap_or_else(|| panic!("no pods of {name}"))
    };
    let new = pod(NEW_SERVICE);
    assert!(rendering.ingress_allowed(Some(pod(ITS_CALLER)), new, 8080));
    for other in topology.service_names() {
        if other != ITS_CALLER {
            assert!(
                !rendering.ingress_possible(Some(pod(other)), new, 8080),
                "{other} may reach {NEW_SERVICE}, which it does not call"
            );
        }
    }
    manifests::check_network_policies(&rendering, &topology);

    // Tilt deploys it as a resource of its own, running the image Tilt builds.
    let services: Vec<String> = topology
        .service_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let Some(resources) = crate::tiltfile::k8s_resources_are_the_workloads(&root, &services) else {
        return;
    };
    assert!(resources.contains(NEW_SERVICE), "{resources:?}");
}

#[test]
fn the_eighth_service_s_rendering_validates_strictly() {
    let root = checkout("codegen-validate");
    add_the_new_service(&root);
    codegen::write(&root).expect("codegen");
    let Some(rendering) = render_kind_overlay(&root) else {
        return;
    };
    let Some(validate) = manifests::validator("kubernetes-validate") else {
        return;
    };
    let dir = manifests::write_renderings("codegen-validate", std::slice::from_ref(&rendering));
    let output = std::process::Command::new(&validate)
        .args(["--strict", "-k", manifests::KUBERNETES_VERSION])
        .arg(dir.join(rendering.file_name()))
        .output()
        .expect("run kubernetes-validate");
    let text = manifests::combined(&output);
    assert!(
        output.status.success(),
        "kubernetes-validate --strict:\n{text}"
    );
    let passed = text.lines().filter(|l| l.contains(" passed ")).count();
    assert_eq!(passed, rendering.docs.len(), "{text}");
    assert!(
        text.contains(&format!("resource deployment/{NEW_SERVICE} ")),
        "{NEW_SERVICE} was not validated:\n{text}"
    );
}

#[test]
fn the_eighth_service_s_container_runs_as_declared() {
    let root = checkout("codegen-container");
    add_the_new_service(&root);
    codegen::write(&root).expect("codegen");
    let Some(rendering) = render_kind_overlay(&root) else {
        return;
    };
    let Some(image) = crate::image::built_image() else {
        return;
    };
    let deployment = rendering
        .get("Deployment", "services", NEW_SERVICE)
        .expect("its Deployment");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The container takes the Deployment's fixed port on this machine's network.
    let _ports = crate::support::serial();
    crate::service_containers::run_as_declared(&rendering, deployment, image, &runtime);
}

// ---------------------------------------------------------------------------------------

/// A copy of what the manifests and the Tiltfile read of the repository.
fn checkout(name: &str) -> TempDir {
    let root = TempDir::new(name);
    let source = workspace_root();
    for path in CHECKOUT {
        copy(&source.join(path), &root.join(path));
    }
    root
}

fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("create dir");
        for entry in std::fs::read_dir(from).expect("read dir").flatten() {
            copy(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().expect("a parent")).expect("create dir");
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

fn read(root: &Path, path: &Path) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The one edit: the new service, and a call of it from its caller's GET /api/data, in
/// the copy's topology.yaml; the topology it makes.
fn add_the_new_service(root: &Path) -> Topology {
    let path = Path::new(paths::TOPOLOGY);
    let text = read(root, path);
    let caller = format!("  {ITS_CALLER}:\n");
    let call = "        calls:\n          - to: inventory-service\n";
    let at = text.find(&caller).expect("the caller in the topology");
    let call_at = at + text[at..].find(call).expect("the caller's first calls");
    let edited = format!(
        "{}{call}          - to: {NEW_SERVICE}\n            probability: 0.5\n{}\n  {NEW_SERVICE}:\n    routes:\n      GET /api/data:\n        work_ms: [1, 4]\n",
        &text[..call_at],
        text[call_at + call.len()..].trim_end_matches('\n'),
    );
    std::fs::write(root.join(path), &edited).expect("write the topology");
    let topology = Topology::parse(paths::TOPOLOGY, &edited).expect("the edited topology");
    assert!(
        topology
            .service(ITS_CALLER)
            .is_some_and(|caller| caller.dependencies().contains(&NEW_SERVICE)),
        "the edit must make {ITS_CALLER} call {NEW_SERVICE}"
    );
    topology
}

/// The copy's kind overlay, rendered as the suite renders the repository's; `None`
/// (after SKIPPED) without kubectl.
fn render_kind_overlay(root: &Path) -> Option<Rendering> {
    let kubectl =
        crate::support::require("kubectl", "kubectl 1.32 or later, with kustomize built in")?;
    let manifests = root.join("manifests");
    Some(manifests::render(
        &kubectl,
        &manifests,
        &manifests.join("overlays/kind"),
    ))
}
