//! The Prometheus configuration and rules, checked by the real promtool: configs load,
//! rules load, and the alerting rules' unit tests fire and stay silent as they should;
//! and the alerting pipeline end to end: the real Prometheus sends `Watchdog` to the real
//! Alertmanager, configured by the project's own files.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_yaml_ng::Value;
use xtask::{
    paths::workspace_root,
    ports::{free_ports, service_ports},
    prometheus_config::{self, LocalPorts},
};

/// promtool, or `None` when it is missing (the test then says it skipped).
fn promtool() -> Option<std::path::PathBuf> {
    crate::support::require("promtool", "apt-get install prometheus, or nix develop")
}

fn run(promtool: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(promtool)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_committed_kubernetes_config_is_the_generated_one() {
    let path = workspace_root().join(xtask::paths::PROMETHEUS_KUBERNETES_CONFIG);
    let generated = prometheus_config::kubernetes();
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, &generated).expect("write");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date: run `UPDATE_EXPECT=1 cargo test -p xtask --test it -- prometheus::the_committed`",
        path.display()
    );
}

#[test]
fn both_configs_load_in_promtool() {
    let Some(promtool) = promtool() else { return };
    let dir = std::env::temp_dir().join(format!("xtask-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ports = service_ports(&contract::topology::Topology::built_in());
    let local = dir.join("local.yml");
    std::fs::write(&local, prometheus_config::local(&ports, &workspace_root())).expect("write");
    let output = run(
        &promtool,
        &["check", "config", local.to_str().expect("utf-8")],
    );
    let rule_files = files_in(xtask::paths::PROMETHEUS_RULES).len();
    assert!(
        output.contains(&format!("SUCCESS: {rule_files} rule files found")),
        "{output}"
    );

    // Debian's Prometheus is built without Kubernetes service discovery, so promtool
    // rejects `kubernetes_sd_configs` itself. Check everything else (globals, relabelling
    // regexes, rule files) with the discovery block swapped for file discovery, and the
    // discovery block by its text.
    let kubernetes = prometheus_config::kubernetes();
    let discovery = "    kubernetes_sd_configs:\n      - role: pod\n        namespaces:\n          names: [services]\n";
    assert!(kubernetes.contains(discovery), "{kubernetes}");
    let swapped = dir.join("kubernetes-with-file-sd.yml");
    std::fs::write(
        &swapped,
        kubernetes.replace(
            discovery,
            "    file_sd_configs:\n      - files: [targets.json]\n",
        ),
    )
    .expect("write");
    let output = run(
        &promtool,
        &[
            "check",
            "config",
            "--syntax-only",
            swapped.to_str().expect("utf-8"),
        ],
    );
    assert!(output.contains("SUCCESS"), "{output}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn target_labels_never_collide_with_metric_labels() {
    // A target label `service` or `service_name` would rename the metrics' own label to
    // `exported_service...` and silently empty every dashboard query by it.
    let ports = service_ports(&contract::topology::Topology::built_in());
    for config in [
        prometheus_config::kubernetes(),
        prometheus_config::local(&ports, &workspace_root()),
    ] {
        for line in config.lines().map(str::trim) {
            for forbidden in [
                "service:",
                "service_name:",
                "target_label: service",
                "labelmap",
            ] {
                assert!(!line.starts_with(forbidden), "`{line}` in\n{config}");
            }
        }
    }
}

#[test]
fn rules_load_and_their_unit_tests_pass() {
    let Some(promtool) = promtool() else { return };
    let rules = files_in(xtask::paths::PROMETHEUS_RULES);
    assert!(rules.len() >= 3, "{rules:?}");
    let mut check = vec!["check", "rules"];
    check.extend(rules.iter().map(String::as_str));
    let output = run(&promtool, &check);
    assert_eq!(
        output.matches("SUCCESS: ").count(),
        rules.len(),
        "every rules file loads:\n{output}"
    );
    for tests in files_in(xtask::paths::PROMETHEUS_RULE_TESTS) {
        let output = run(&promtool, &["test", "rules", &tests]);
        assert!(output.contains("SUCCESS"), "{tests}:\n{output}");
    }
}

/// The YAML files of a directory of the repository, as paths from its root.
pub(crate) fn files_in(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(workspace_root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".yml"))
        .map(|name| format!("{dir}/{name}"))
        .collect();
    files.sort();
    files
}

pub(crate) fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join(path)).expect(path);
    serde_yaml_ng::from_str(&text).expect(path)
}

#[test]
fn every_alert_has_a_unit_test() {
    let alerts: BTreeSet<String> = files_in(xtask::paths::PROMETHEUS_RULES)
        .iter()
        .flat_map(|file| alert_rules(&yaml(file)))
        .filter_map(|rule| rule["alert"].as_str().map(str::to_owned))
        .collect();
    assert!(alerts.contains("Watchdog"), "{alerts:?}");
    let tested: BTreeSet<String> = files_in(xtask::paths::PROMETHEUS_RULE_TESTS)
        .iter()
        .map(|file| yaml(file))
        .flat_map(|tests| tests["tests"].as_sequence().cloned().unwrap_or_default())
        .flat_map(|test| {
            test["alert_rule_test"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|case| {
            case["exp_alerts"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty())
        })
        .filter_map(|case| case["alertname"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        alerts, tested,
        "each alert of prometheus/rules/ needs a test in prometheus/tests/ that makes it fire"
    );
}

/// The alerting rules (not the recording rules) of a rules file.
pub(crate) fn alert_rules(rules: &Value) -> Vec<Value> {
    rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_sequence().cloned().unwrap_or_default())
        .filter(|rule| rule.get("alert").is_some())
        .collect()
}

#[test]
fn both_configs_send_alerts_to_alertmanager() {
    let ports = service_ports(&contract::topology::Topology::built_in());
    for (config, alertmanager) in [
        (prometheus_config::kubernetes(), "alertmanager:9093"),
        (
            prometheus_config::local(&ports, &workspace_root()),
            "127.0.0.1:9093",
        ),
    ] {
        let parsed: Value = serde_yaml_ng::from_str(&config).expect("yaml");
        let targets = &parsed["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"];
        assert_eq!(
            targets.as_sequence().map(Vec::as_slice),
            Some(&[Value::from(alertmanager)][..]),
            "{config}"
        );
    }
}

/// A child process killed (and reaped) when the test ends, pass or fail.
pub(crate) struct Running {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Running {
    pub(crate) fn start(
        name: &'static str,
        program: &Path,
        args: &[String],
        dir: &Path,
    ) -> Running {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(program)
            .args(args)
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {name}: {error}"));
        Running { name, child, log }
    }

    pub(crate) fn log(&self) -> String {
        format!(
            "--- {} log:\n{}",
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of a GET to 127.0.0.1, or `None` while nothing answers 2xx there.
pub(crate) async fn get(client: &reqwest::Client, url: &str) -> Option<String> {
    let response = client.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}

/// Prometheus (Debian's 2.42 here, 3.x under nix) with the configuration `cargo xtask
/// local` writes, only on free ports, sends the always-firing Watchdog to Alertmanager
/// (Debian's 0.25) running the project's prometheus/alertmanager.yml.
#[tokio::test]
async fn prometheus_delivers_watchdog_to_alertmanager() {
    let Some((prometheus, alertmanager)) = crate::support::require_prometheus_and_alertmanager()
    else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("xtask-alerting-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let free = free_ports(2).expect("free ports");
    let ports = LocalPorts {
        prometheus: free[0],
        alertmanager: free[1],
    };
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        prometheus_config::local_with_ports(
            &service_ports(&contract::topology::Topology::built_in()),
            &workspace_root(),
            ports,
        ),
    )
    .expect("write config");

    let alertmanager = Running::start(
        "alertmanager",
        &alertmanager,
        &[
            format!(
                "--config.file={}",
                workspace_root()
                    .join(xtask::paths::ALERTMANAGER_CONFIG)
                    .display()
            ),
            format!("--storage.path={}", dir.join("alertmanager").display()),
            format!("--web.listen-address=127.0.0.1:{}", ports.alertmanager),
            // No gossip with peers: a single Alertmanager.
            "--cluster.listen-address=".to_owned(),
        ],
        &dir,
    );
    let prometheus = Running::start(
        "prometheus",
        &prometheus,
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("prometheus").display()),
            format!("--web.listen-address=127.0.0.1:{}", ports.prometheus),
            // The first evaluation comes before Prometheus has set up its Alertmanager,
            // so that first send is dropped and the next waits for the resend delay
            // (1 minute by default): shortened, so the test need not wait it out.
            "--rules.alert.resend-delay=5s".to_owned(),
        ],
        &dir,
    );

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let alerts_url = format!("http://127.0.0.1:{}/api/v2/alerts", ports.alertmanager);
    // Rules evaluated and alerts resent every 5 s: a minute is far more than the
    // pipeline needs, and bounds a broken one.
    let deadline = Instant::now() + Duration::from_secs(60);
    let watchdog = loop {
        let alerts: Vec<serde_json::Value> = get(&client, &alerts_url)
            .await
            .and_then(|body| serde_json::from_str(&body).ok())
            .unwrap_or_default();
        if let Some(watchdog) = alerts
            .into_iter()
            .find(|alert| alert["labels"]["alertname"] == "Watchdog")
        {
            break watchdog;
        }
        if Instant::now() >= deadline {
            let senders = get(
                &client,
                &format!("http://127.0.0.1:{}/api/v1/alertmanagers", ports.prometheus),
            )
            .await;
            panic!(
                "Alertmanager did not receive Watchdog within 60 s; Prometheus's \
                 /api/v1/alertmanagers: {senders:?}\n{}\n{}",
                prometheus.log(),
                alertmanager.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(watchdog["labels"]["severity"], "none", "{watchdog:#}");
    assert_eq!(watchdog["status"]["state"], "active", "{watchdog:#}");

    // Prometheus names the Alertmanager it sends to: the address of the generated config.
    let senders = get(
        &client,
        &format!("http://127.0.0.1:{}/api/v1/alertmanagers", ports.prometheus),
    )
    .await
    .expect("Prometheus answers /api/v1/alertmanagers");
    assert!(
        senders.contains(&format!("127.0.0.1:{}/api/v2/alerts", ports.alertmanager)),
        "{senders}"
    );
    drop((prometheus, alertmanager));
    let _ = std::fs::remove_dir_all(dir);
}
