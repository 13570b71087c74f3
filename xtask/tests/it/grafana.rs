//! The Grafana provisioning and dashboards, linted: every panel names a provisioned
//! datasource, every query parses, every panel says what it answers, latency panels carry
//! exemplars, and faults are marked by annotations that the real PromQL engine (promtool)
//! evaluates to exactly the faults in force.

use std::{collections::BTreeSet, process::Command};

use incidents::panels::runnable;
use promql_parser::{
    parser::Expr,
    util::{ExprVisitor, walk_expr},
};
use serde_json::Value;
use xtask::{
    dashboards::{
        FAULT_METRIC, annotation_queries, dashboards_dir, lint, load, located_queries,
        panel_queries, promql_syntax_problems, provisioned_datasource_uids,
    },
    paths::workspace_root,
};

/// The metric names a PromQL expression selects (Grafana's variables substituted), or
/// the parser's error: the reading the lint's syntax-tree rules need, which xtask itself
/// does not compile (`xtask::dashboards::SelectedMetrics`).
fn selected_metrics(expr: &str) -> Result<BTreeSet<String>, String> {
    struct Names(BTreeSet<String>);
    impl ExprVisitor for Names {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
            let selector = match expr {
                Expr::VectorSelector(selector) => Some(selector),
                Expr::MatrixSelector(matrix) => Some(&matrix.vs),
                _ => None,
            };
            self.0.extend(selector.and_then(|s| s.name.clone()));
            Ok(true)
        }
    }
    let parsed = promql_parser::parser::parse(&runnable(expr, Some("gateway-service"), None))?;
    let mut names = Names(BTreeSet::new());
    let Ok(_) = walk_expr(&mut names, &parsed);
    Ok(names.0)
}

#[test]
fn the_committed_dashboards_pass_the_lint() {
    let dashboards = load(&dashboards_dir()).expect("dashboards load");
    let uids = provisioned_datasource_uids(&workspace_root()).expect("datasources load");
    assert_eq!(
        uids.iter().map(String::as_str).collect::<Vec<_>>(),
        ["alertmanager", "jaeger", "prometheus"]
    );
    let problems = lint(&dashboards, &uids, Some(&selected_metrics));
    assert!(problems.is_empty(), "{problems:#?}");

    let titles: Vec<&str> = dashboards
        .iter()
        .map(|(_, d)| d["title"].as_str().expect("title"))
        .collect();
    assert_eq!(
        titles,
        [
            "Mesh / Inter-service",
            "Mesh / Overview",
            "Mesh / Service",
            "Mesh / SLO"
        ]
    );
    assert!(panel_queries(&dashboards).len() >= 30);
}

#[test]
fn the_documented_queries_are_on_the_dashboards() {
    let dashboards = load(&dashboards_dir()).expect("dashboards load");
    let queries: Vec<String> = panel_queries(&dashboards)
        .into_iter()
        .map(|q| q.expr)
        .collect();
    for query in [
        "sum(rate(http_requests_total[1m]))",
        "sum by (service_name) (rate(http_requests_total[1m]))",
        "sum by (endpoint) (rate(http_requests_total[1m]))",
        "sum(rate(http_requests_total{status=\"500\"}[1m]))",
        "sum(rate(http_requests_total{status=\"500\"}[1m])) / sum(rate(http_requests_total[1m])) * 100",
        "sum by (service) (rate(downstream_requests_total[1m]))",
        "rate(downstream_requests_total{status=\"error\"}[1m])",
    ] {
        assert!(
            queries.iter().any(|q| q == query),
            "missing the documented query `{query}`"
        );
    }
}

/// The committed dashboards with one of each mistake the lint knows.
fn broken_dashboards() -> Vec<(std::path::PathBuf, Value)> {
    let mut dashboards = load(&dashboards_dir()).expect("dashboards load");
    let (_, overview) = dashboards
        .iter_mut()
        .find(|(p, _)| p.ends_with("overview.json"))
        .expect("overview");
    let panel = &mut overview["panels"][0];
    panel["description"] = Value::String(String::new());
    panel["targets"][0]["expr"] = Value::String("sum(rate(http_requests_total[1m])".into());
    panel["targets"][0]["datasource"]["uid"] = Value::String("loki".into());
    // A latency panel read from a recording rule, which carries no exemplars, and
    // without the exemplar switch.
    let latency = overview["panels"]
        .as_array_mut()
        .expect("panels")
        .iter_mut()
        .find(|p| p["title"] == "Latency by service (p50, p95, p99)")
        .expect("latency panel");
    latency["targets"][1]["expr"] = Value::String(
        "histogram_quantile(0.95, service_name_le:http_request_duration_seconds_bucket:rate5m)"
            .into(),
    );
    latency["targets"][2]["exemplar"] = Value::Bool(false);
    // An annotation from an unknown datasource, with a query that does not parse.
    let annotation = &mut overview["annotations"]["list"][0];
    annotation["datasource"]["uid"] = Value::String("loki".into());
    annotation["expr"] = Value::String("max by (kind (fault_active)".into());
    // A dashboard of request metrics that lost its fault annotation.
    let (_, service) = dashboards
        .iter_mut()
        .find(|(p, _)| p.ends_with("service.json"))
        .expect("service");
    service["annotations"]["list"] = Value::Array(Vec::new());
    let duplicate = dashboards[0].1.clone();
    dashboards.push(("copy.json".into(), duplicate));

    dashboards
}

#[test]
fn the_lint_names_what_is_wrong_and_where() {
    let dashboards = broken_dashboards();
    let uids = provisioned_datasource_uids(&workspace_root()).expect("datasources load");
    let problems = lint(&dashboards, &uids, Some(&selected_metrics)).join("\n");
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
    let latency = "overview.json, panel \"Latency by service (p50, p95, p99)\"";
    assert!(
        problems.contains(&format!(
            "{latency}: a latency query that reads no raw `_bucket` series"
        )),
        "{problems}"
    );
    assert!(
        problems.contains(&format!(
            "{latency}: a latency query without \"exemplar\": true"
        )),
        "{problems}"
    );
    assert!(
        problems.contains(
            "overview.json, annotation \"Fault active\": datasource uid `loki` is not provisioned"
        ),
        "{problems}"
    );
    assert!(
        problems.contains("overview.json, annotation \"Fault active\": the query does not parse"),
        "{problems}"
    );
    assert!(
        problems.contains(&format!(
            "service.json: its panels show what an injected fault changes, but no annotation on `{FAULT_METRIC}` marks the faults"
        )),
        "{problems}"
    );
}

/// `cargo xtask dashboards` compiles no PromQL parser: its lint leaves the rules that
/// need a syntax tree to the tests, and Prometheus's own parser (promtool) finds the
/// queries that do not parse, each named by file and panel or annotation.
#[test]
fn without_a_parser_the_lint_checks_structure_and_promtool_the_syntax() {
    let dashboards = broken_dashboards();
    let uids = provisioned_datasource_uids(&workspace_root()).expect("datasources load");
    let problems = lint(&dashboards, &uids, None).join("\n");
    for expected in [
        "overview.json, panel \"Total request rate\": no description",
        "overview.json, panel \"Latency by service (p50, p95, p99)\": a latency query without \"exemplar\": true",
        "overview.json, annotation \"Fault active\": datasource uid `loki` is not provisioned",
        "copy.json: uid `mesh-inter-service` is used by another dashboard",
    ] {
        assert!(
            problems.contains(expected),
            "missing `{expected}` in:\n{problems}"
        );
    }
    for needs_a_tree in ["does not parse", "raw `_bucket`", "no annotation on"] {
        assert!(!problems.contains(needs_a_tree), "{problems}");
    }

    let Some(_) = crate::support::require("promtool", "apt-get install prometheus, or nix develop")
    else {
        return;
    };
    let committed = load(&dashboards_dir()).expect("dashboards load");
    let clean = promql_syntax_problems(&located_queries(&committed)).expect("promtool runs");
    assert_eq!(clean, Some(Vec::new()));
    let syntax = promql_syntax_problems(&located_queries(&dashboards))
        .expect("promtool runs")
        .expect("promtool is on PATH");
    assert_eq!(syntax.len(), 2, "{syntax:#?}");
    assert!(
        syntax[0]
            .starts_with("overview.json, panel \"Total request rate\": the query does not parse (")
            && syntax[0].ends_with("): sum(rate(http_requests_total[1m])"),
        "{syntax:#?}"
    );
    assert!(
        syntax[1]
            .starts_with("overview.json, annotation \"Fault active\": the query does not parse ("),
        "{syntax:#?}"
    );
}

/// Every panel that draws a latency percentile, by dashboard and title.
fn latency_panels(dashboards: &[(std::path::PathBuf, Value)]) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for (_, dashboard) in dashboards {
        for panel in dashboard["panels"].as_array().expect("panels") {
            let latency = panel["targets"].as_array().into_iter().flatten().any(|t| {
                t["expr"]
                    .as_str()
                    .is_some_and(|e| e.contains("histogram_quantile"))
            });
            if latency {
                found.push((
                    format!(
                        "{} / {}",
                        dashboard["title"].as_str().expect("title"),
                        panel["title"].as_str().expect("title")
                    ),
                    panel.clone(),
                ));
            }
        }
    }
    found
}

#[test]
fn every_latency_panel_reads_raw_buckets_and_shows_exemplars() {
    let dashboards = load(&dashboards_dir()).expect("dashboards load");
    let panels = latency_panels(&dashboards);
    let titles: Vec<&str> = panels.iter().map(|(title, _)| title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "Mesh / Inter-service / Client-side p95 latency per edge",
            "Mesh / Overview / Latency p50 / p95 / p99 (all services)",
            "Mesh / Overview / Latency by service (p50, p95, p99)",
            "Mesh / Service / Latency p50 / p95 / p99",
            "Mesh / Service / Dependency p95 latency",
        ]
    );
    for (title, panel) in &panels {
        assert!(
            panel["description"]
                .as_str()
                .is_some_and(|d| d.contains("open the trace in Jaeger")),
            "{title}: the description should say what the exemplar dots are"
        );
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(target["exemplar"], true, "{title}: {target:#}");
            let expr = target["expr"].as_str().expect("expr");
            let metrics = selected_metrics(expr).expect("parses");
            assert!(
                metrics
                    .iter()
                    .any(|m| m.ends_with("_bucket") && !m.contains(':')),
                "{title}: `{expr}` reads no raw _bucket series: {metrics:?}"
            );
        }
    }
}

#[test]
fn every_dashboard_marks_faults_and_the_service_page_only_its_own() {
    let dashboards = load(&dashboards_dir()).expect("dashboards load");
    let annotations = annotation_queries(&dashboards);
    for (_, dashboard) in &dashboards {
        let title = dashboard["title"].as_str().expect("title");
        let faults: Vec<&str> = annotations
            .iter()
            .filter(|a| a.dashboard == title)
            .filter(|a| {
                selected_metrics(&a.expr)
                    .expect("parses")
                    .contains(FAULT_METRIC)
            })
            .map(|a| a.expr.as_str())
            .collect();
        let [expr] = faults[..] else {
            panic!("{title}: expected one fault annotation, found {faults:?}");
        };
        let scoped = expr.contains("service_name=\"$service\"");
        assert_eq!(
            scoped,
            title == "Mesh / Service",
            "{title}: only the Service page narrows faults to its $service: {expr}"
        );
        let annotation = dashboard["annotations"]["list"]
            .as_array()
            .expect("list")
            .iter()
            .find(|a| a["expr"] == expr)
            .expect("annotation");
        // A region per fault (not a tick per sample), titled by service and kind.
        assert_eq!(annotation["useValueForTime"], false, "{title}");
        assert!(annotation["step"].is_string(), "{title}");
        for format in ["titleFormat", "textFormat"] {
            let text = annotation[format].as_str().unwrap_or_default();
            assert!(
                text.contains("{{service_name}}") && text.contains("{{kind}}"),
                "{title}: {format} should name the service and the kind: {text}"
            );
        }
    }
}

/// promtool evaluates each annotation query on synthetic `fault_active` series: an error
/// fault in payment-service (two replicas), a latency fault in inventory-service, and a
/// latency fault of payment-service that is not in force.
#[test]
fn fault_annotations_mark_exactly_the_faults_in_force() {
    let Some(promtool) =
        crate::support::require("promtool", "apt-get install prometheus, or nix develop")
    else {
        return;
    };
    let payment_error = r#"{kind="error",service_name="payment-service"}"#;
    let inventory_latency = r#"{kind="latency",service_name="inventory-service"}"#;
    let mut cases = String::new();
    for query in annotation_queries(&load(&dashboards_dir()).expect("dashboards")) {
        let expr = runnable(&query.expr, Some("payment-service"), None);
        let during: Vec<&str> = if query.dashboard == "Mesh / Service" {
            vec![payment_error]
        } else {
            vec![payment_error, inventory_latency]
        };
        let samples = |labels: &[&str]| -> String {
            labels
                .iter()
                .map(|l| format!("\n          - labels: '{l}'\n            value: 1"))
                .collect()
        };
        for (at, labels) in [("0m", vec![]), ("2m", during), ("4m", vec![])] {
            let expected = if labels.is_empty() {
                " []".to_owned()
            } else {
                samples(&labels)
            };
            cases.push_str(&format!(
                "      - expr: '{expr}'\n        eval_time: {at}\n        exp_samples:{expected}\n"
            ));
        }
    }
    let test = format!(
        "tests:\n  - interval: 1m\n    input_series:\n\
         {series}    promql_expr_test:\n{cases}",
        series = [
            (
                r#"fault_active{service_name="payment-service",kind="error",instance="a"}"#,
                "0 1 1 1 0"
            ),
            (
                r#"fault_active{service_name="payment-service",kind="error",instance="b"}"#,
                "0 0 1 1 0"
            ),
            (
                r#"fault_active{service_name="payment-service",kind="latency",instance="a"}"#,
                "0 0 0 0 0"
            ),
            (
                r#"fault_active{service_name="inventory-service",kind="latency",instance="a"}"#,
                "0 1 1 0 0"
            ),
        ]
        .iter()
        .map(|(series, values)| format!("      - series: '{series}'\n        values: '{values}'\n"))
        .collect::<String>(),
    );
    let dir = std::env::temp_dir().join(format!("xtask-annotations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("annotations.test.yml");
    std::fs::write(&file, &test).expect("write");
    let output = Command::new(promtool)
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "{}{}\n{test}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
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
            && datasources.contains("url: ${ALERTMANAGER_URL}")
    );
    let provider = std::fs::read_to_string(root.join("dashboards/dashboards.yaml")).expect("read");
    assert!(provider.contains("path: ${DASHBOARDS_DIR}"));
}

/// docs/dashboards.md says what every panel answers: a dashboard added or renamed must be
/// described there too.
#[test]
fn the_dashboards_doc_describes_every_panel() {
    let doc = std::fs::read_to_string(workspace_root().join("docs/dashboards.md"))
        .expect("docs/dashboards.md");
    let dashboards = load(&dashboards_dir()).expect("dashboards load");
    for (_, dashboard) in &dashboards {
        let title = dashboard["title"].as_str().expect("title");
        assert!(
            doc.contains(&format!("**{title}**")),
            "docs/dashboards.md does not describe {title}"
        );
        for panel in dashboard["panels"].as_array().expect("panels") {
            let name = panel["title"].as_str().expect("title");
            assert!(
                doc.contains(&format!("- *{name}*: ")),
                "docs/dashboards.md does not describe panel {title} / {name}"
            );
        }
        for annotation in dashboard["annotations"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = annotation["name"].as_str().expect("name");
            assert!(
                doc.contains(&format!("*{name}*")),
                "docs/dashboards.md does not describe annotation {title} / {name}"
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
            xtask::paths::KIND_OVERLAY,
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

#[test]
fn the_alertmanager_datasource_shows_prometheus_alerts() {
    let path = workspace_root().join("grafana/provisioning/datasources/datasources.yaml");
    let file: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).expect("read")).expect("yaml");
    let alertmanager = file["datasources"]
        .as_sequence()
        .expect("datasources")
        .iter()
        .find(|d| d["uid"] == "alertmanager")
        .expect("a datasource with uid alertmanager");
    assert_eq!(alertmanager["type"], "alertmanager");
    assert_eq!(alertmanager["url"], "${ALERTMANAGER_URL}");
    // Prometheus's Alertmanager, not Grafana's own (Mimir/Cortex) flavour.
    assert_eq!(alertmanager["jsonData"]["implementation"], "prometheus");
}

/// With no Grafana on :3000, no kind and no promtool on PATH, `cargo xtask dashboards`
/// says that it reloaded no Grafana and checked no PromQL syntax, and why, instead of
/// claiming either.
#[test]
fn dashboards_says_plainly_when_no_grafana_was_reloaded() {
    // A local mesh started by another test of this binary would have its Grafana on :3000
    // (where Grafana is installed).
    let _serial = crate::support::serial();
    let empty = std::env::temp_dir().join(format!("xtask-empty-path-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("dir");
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("dashboards")
        .env("PATH", &empty)
        .output()
        .expect("run xtask dashboards");
    let _ = std::fs::remove_dir(&empty);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "--    PromQL syntax not checked: promtool is not on PATH.",
        "--    local Grafana: none (nothing answers on :3000)",
        "--    kind cluster: none (kind is not installed)",
        "no Grafana reloaded: none runs here.",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
    assert!(!stdout.contains("ok    local Grafana"), "{stdout}");
}
