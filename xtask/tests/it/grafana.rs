//! The Grafana provisioning and dashboards, linted: every panel names a provisioned
//! datasource, every query parses, every panel says what it answers.

use serde_json::Value;
use xtask::{
    dashboards::{dashboards_dir, lint, load, panel_queries, provisioned_datasource_uids},
    workspace_root,
};

#[test]
fn the_committed_dashboards_pass_the_lint() {
    let dashboards = load(&dashboards_dir()).expect("dashboards load");
    let uids = provisioned_datasource_uids(&workspace_root()).expect("datasources load");
    assert_eq!(
        uids.iter().map(String::as_str).collect::<Vec<_>>(),
        ["jaeger", "prometheus"]
    );
    let problems = lint(&dashboards, &uids);
    assert!(problems.is_empty(), "{problems:#?}");

    let titles: Vec<&str> = dashboards
        .iter()
        .map(|(_, d)| d["title"].as_str().expect("title"))
        .collect();
    assert_eq!(
        titles,
        ["Mesh / Inter-service", "Mesh / Overview", "Mesh / Service"]
    );
    assert!(panel_queries(&dashboards).len() >= 30);
}

#[test]
fn the_guides_queries_are_on_the_dashboards() {
    let dashboards = load(&dashboards_dir()).expect("dashboards load");
    let queries: Vec<String> = panel_queries(&dashboards)
        .into_iter()
        .map(|q| q.expr)
        .collect();
    for guide in [
        "sum(rate(http_requests_total[1m]))",
        "sum by (service_name) (rate(http_requests_total[1m]))",
        "sum by (endpoint) (rate(http_requests_total[1m]))",
        "sum(rate(http_requests_total{status=\"500\"}[1m]))",
        "sum(rate(http_requests_total{status=\"500\"}[1m])) / sum(rate(http_requests_total[1m])) * 100",
        "sum by (service) (rate(downstream_requests_total[1m]))",
        "rate(downstream_requests_total{status=\"error\"}[1m])",
    ] {
        assert!(
            queries.iter().any(|q| q == guide),
            "missing the guide's `{guide}`"
        );
    }
}

#[test]
fn the_lint_names_what_is_wrong_and_where() {
    let mut dashboards = load(&dashboards_dir()).expect("dashboards load");
    let uids = provisioned_datasource_uids(&workspace_root()).expect("datasources load");
    let (_, overview) = dashboards
        .iter_mut()
        .find(|(p, _)| p.ends_with("overview.json"))
        .expect("overview");
    let panel = &mut overview["panels"][0];
    panel["description"] = Value::String(String::new());
    panel["targets"][0]["expr"] = Value::String("sum(rate(http_requests_total[1m])".into());
    panel["targets"][0]["datasource"]["uid"] = Value::String("loki".into());
    let duplicate = dashboards[0].1.clone();
    dashboards.push(("copy.json".into(), duplicate));

    let problems = lint(&dashboards, &uids).join("\n");
    assert!(
        problems.contains("overview.json, panel \"Total request rate\": no description"),
        "{problems}"
    );
    assert!(
        problems.contains("overview.json, panel \"Total request rate\": the query does not parse"),
        "{problems}"
    );
    assert!(
        problems.contains("datasource uid `loki` is not provisioned"),
        "{problems}"
    );
    assert!(
        problems.contains("copy.json: uid `mesh-inter-service` is used by another dashboard"),
        "{problems}"
    );
}

#[test]
fn provisioning_reads_its_addresses_from_the_environment() {
    let root = workspace_root().join("grafana").join("provisioning");
    let datasources =
        std::fs::read_to_string(root.join("datasources/datasources.yaml")).expect("read");
    assert!(
        datasources.contains("url: ${PROMETHEUS_URL}")
            && datasources.contains("url: ${JAEGER_URL}")
    );
    let provider = std::fs::read_to_string(root.join("dashboards/dashboards.yaml")).expect("read");
    assert!(provider.contains("path: ${DASHBOARDS_DIR}"));
}

#[test]
fn the_readme_describes_every_panel() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README");
    let dashboards = load(&dashboards_dir()).expect("dashboards load");
    for (_, dashboard) in &dashboards {
        let title = dashboard["title"].as_str().expect("title");
        assert!(
            readme.contains(&format!("**{title}**")),
            "README does not describe {title}"
        );
        for panel in dashboard["panels"].as_array().expect("panels") {
            let name = panel["title"].as_str().expect("title");
            assert!(
                readme.contains(&format!("*{name}*")),
                "README does not describe panel {title} / {name}"
            );
        }
    }
}

#[test]
fn the_cluster_refresh_applies_exactly_the_dashboards_configmap() {
    if crate::support::require("kubectl", "kubectl 1.32 or later, or nix develop").is_none() {
        return;
    }
    let rendered = std::process::Command::new("kubectl")
        .args([
            "kustomize",
            xtask::cluster::LOAD_RESTRICTOR,
            xtask::cluster::OVERLAY,
        ])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .current_dir(workspace_root())
        .output()
        .expect("kubectl kustomize");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let configmap =
        xtask::dashboards::dashboards_configmap(&String::from_utf8_lossy(&rendered.stdout))
            .expect("found");
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&configmap).expect("yaml");
    assert_eq!(value["metadata"]["name"], "grafana-dashboards");
    for (path, _) in load(&dashboards_dir()).expect("dashboards") {
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            value["data"][file.as_str()].is_string(),
            "{file} missing from the ConfigMap"
        );
    }
}
