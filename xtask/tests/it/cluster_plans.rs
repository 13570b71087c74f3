//! `--dry-run` plans: the exact commands `up`, `clean` and friends would run. They act on
//! the project's cluster only (`--name monitoring-demo`, `--context kind-monitoring-demo`)
//! and never on the current context. Dry runs need none of the tools installed.

use std::process::Command;

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

fn rollouts() -> Vec<String> {
    let topology = mock_service::topology::Topology::guide();
    let services = topology.service_names();
    let monitoring = ["prometheus", "grafana", "otel-collector", "jaeger"];
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
fn every_kubectl_and_kind_command_names_the_project_cluster() {
    for args in [
        &["up", "--dry-run"][..],
        &["clean", "--dry-run"],
        &["cluster", "status", "--dry-run"],
        &["cluster", "down", "--dry-run"],
        &["load", "--dry-run"],
        &["deploy", "--dry-run"],
    ] {
        for line in plan(args) {
            let offline_render = line.starts_with("kubectl kustomize ");
            if line.starts_with("kubectl ") && !offline_render {
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
            assert!(
                !line.contains("use-context"),
                "dry runs never switch contexts: {line}"
            );
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
