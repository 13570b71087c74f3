//! Alerts as an SRE team runs them: every alert has a runbook page that names panels
//! that exist; Alertmanager's inhibitions follow the call graph, and a real Alertmanager
//! mutes what a failing dependency causes upstream and nothing else.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use contract::topology::Topology;
use serde_json::{Value as Json, json};
use xtask::{dashboards, paths::workspace_root, ports::free_ports};

use crate::prometheus::{Running, alert_rules, files_in, get, yaml};

/// The headings every runbook has, in this order.
const RUNBOOK_SECTIONS: [&str; 4] = [
    "## What it means",
    "## Where to look",
    "## Likely causes",
    "## Confirm and fix",
];

#[test]
fn every_alert_has_a_runbook_that_names_real_panels() {
    let dashboards = dashboards::load(&dashboards::dashboards_dir()).expect("dashboards");
    let mut names: BTreeSet<String> = ["Alerting", "Status", "Targets", "Rules"]
        .map(str::to_owned)
        .into();
    for (_, dashboard) in &dashboards {
        names.insert(dashboard["title"].as_str().expect("title").to_owned());
        for panel in dashboard["panels"].as_array().expect("panels") {
            names.insert(panel["title"].as_str().expect("title").to_owned());
        }
    }
    let mut alerts = 0;
    for file in files_in(xtask::paths::PROMETHEUS_RULES) {
        for rule in alert_rules(&yaml(&file)) {
            alerts += 1;
            let alert = rule["alert"].as_str().expect("alert name");
            let url = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_else(|| panic!("{alert} in {file} has no runbook_url"));
            assert_eq!(url, format!("docs/runbooks/{alert}.md"), "{alert}");
            let page = std::fs::read_to_string(workspace_root().join(url))
                .unwrap_or_else(|e| panic!("{alert}'s runbook {url}: {e}"));
            let mut at = 0;
            for section in RUNBOOK_SECTIONS {
                let found = page[at..]
                    .find(section)
                    .unwrap_or_else(|| panic!("{url} lacks `{section}` (in this order)"));
                at += found + section.len();
            }
            for italic in italics(&page) {
                assert!(
                    names.contains(&italic),
                    "{url} names *{italic}*, which is no dashboard or panel"
                );
            }
        }
    }
    assert!(alerts >= 6, "{alerts} alerts");
}

/// The `*...*` spans of a Markdown text (not its `**bold**`), a line break read as a space.
fn italics(markdown: &str) -> Vec<String> {
    let text = markdown.replace('\n', " ").replace("**", "");
    text.split('*')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// For each service, every service that calls it, directly or through others.
fn callers(topology: &Topology) -> BTreeMap<String, BTreeSet<String>> {
    let direct: Vec<(String, String)> = topology
        .services()
        .flat_map(|service| {
            service
                .dependencies()
                .into_iter()
                .map(|callee| (service.name.clone(), callee.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut callers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in topology.service_names() {
        let mut found = BTreeSet::new();
        let mut frontier = vec![name.to_owned()];
        while let Some(callee) = frontier.pop() {
            for (caller, _) in direct.iter().filter(|(_, to)| *to == callee) {
                if found.insert(caller.clone()) {
                    frontier.push(caller.clone());
                }
            }
        }
        if !found.is_empty() {
            callers.insert(name.to_owned(), found);
        }
    }
    callers
}

#[test]
fn inhibitions_mute_exactly_the_callers_of_the_topology() {
    let config = yaml(xtask::paths::ALERTMANAGER_CONFIG);
    let mut muted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in config["inhibit_rules"]
        .as_sequence()
        .expect("inhibit_rules")
    {
        let matcher = |key: &str| -> String {
            let matchers = rule[key].as_sequence().expect(key);
            assert_eq!(matchers.len(), 1, "{rule:?}");
            matchers[0].as_str().expect("a matcher").to_owned()
        };
        let source = matcher("source_matchers");
        let target = matcher("target_matchers");
        let service = source
            .strip_prefix("service_name=\"")
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or_else(|| panic!("source matcher `{source}`"));
        let targets = target
            .strip_prefix("service_name=~\"")
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or_else(|| panic!("target matcher `{target}`"));
        muted.insert(
            service.to_owned(),
            targets.split('|').map(str::to_owned).collect(),
        );
    }
    assert_eq!(
        muted,
        callers(&Topology::built_in()),
        "prometheus/alertmanager.yml's inhibit_rules vs the callers in topology.yaml"
    );
}

/// One firing alert, as Prometheus posts it to Alertmanager's API.
fn alert(name: &str, labels: &[(&str, &str)]) -> Json {
    let mut all = serde_json::Map::new();
    all.insert("alertname".into(), name.into());
    all.insert("severity".into(), "page".into());
    for (key, value) in labels {
        all.insert((*key).into(), (*value).into());
    }
    json!({ "labels": all, "annotations": {} })
}

/// A real Alertmanager with the project's configuration: inventory-service failing
/// mutes the gateway's error-budget alert and the errors of product- and order-service,
/// and leaves alone user-service, which does not call it, and the cause itself.
#[tokio::test]
async fn alertmanager_mutes_what_a_failing_dependency_causes_upstream() {
    let how = "apt-get install prometheus-alertmanager, or nix develop";
    // Debian names the binary prometheus-alertmanager, nixpkgs alertmanager.
    let Some(binary) = xtask::cmd::find_on_path("alertmanager")
        .or_else(|| crate::support::require("prometheus-alertmanager", how))
    else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("xtask-inhibit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = free_ports(1).expect("a free port")[0];
    let alertmanager = Running::start(
        "alertmanager",
        &binary,
        &[
            format!(
                "--config.file={}",
                workspace_root()
                    .join(xtask::paths::ALERTMANAGER_CONFIG)
                    .display()
            ),
            format!("--storage.path={}", dir.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=".to_owned(),
        ],
        &dir,
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let api = format!("http://127.0.0.1:{port}/api/v2/alerts");
    let sent = json!([
        alert(
            "ServiceHighErrorRatio",
            &[("service_name", "inventory-service")]
        ),
        alert(
            "ServiceHighErrorRatio",
            &[("service_name", "product-service")]
        ),
        alert(
            "DownstreamEdgeFailing",
            &[
                ("service_name", "order-service"),
                ("service", "product-service")
            ]
        ),
        alert(
            "GatewayErrorBudgetBurn",
            &[
                ("service_name", "gateway-service"),
                ("slo", "gateway-availability"),
                ("window", "1h/5m")
            ]
        ),
        alert("ServiceHighErrorRatio", &[("service_name", "user-service")]),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let states = loop {
        // Posted again on every round: the first may come before Alertmanager listens.
        let _ = client
            .post(&api)
            .header("content-type", "application/json")
            .body(sent.to_string())
            .send()
            .await;
        let alerts: Vec<Json> = get(&client, &api)
            .await
            .and_then(|body| serde_json::from_str(&body).ok())
            .unwrap_or_default();
        let states: BTreeMap<String, String> = alerts
            .iter()
            .map(|alert| {
                let labels = &alert["labels"];
                (
                    format!(
                        "{} {}",
                        labels["alertname"].as_str().unwrap_or_default(),
                        labels["service_name"].as_str().unwrap_or_default()
                    ),
                    alert["status"]["state"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        let settled =
            states.len() == 5 && states.values().filter(|s| *s == "suppressed").count() == 3;
        if settled || Instant::now() >= deadline {
            break states;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let expected: BTreeMap<String, String> = [
        ("ServiceHighErrorRatio inventory-service", "active"),
        ("ServiceHighErrorRatio product-service", "suppressed"),
        ("DownstreamEdgeFailing order-service", "suppressed"),
        ("GatewayErrorBudgetBurn gateway-service", "suppressed"),
        ("ServiceHighErrorRatio user-service", "active"),
    ]
    .map(|(alert, state)| (alert.to_owned(), state.to_owned()))
    .into();
    assert_eq!(states, expected, "{}", alertmanager.log());
    drop(alertmanager);
    let _ = std::fs::remove_dir_all(dir);
}
