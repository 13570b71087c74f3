//! The Prometheus configuration and rules, checked by the real promtool: configs load,
//! rules load, and the alerting rules' unit tests fire and stay silent as they should.

use std::process::Command;

use xtask::{ports::service_ports, prometheus_config, workspace_root};

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
    let path = workspace_root().join(prometheus_config::KUBERNETES_CONFIG);
    let generated = prometheus_config::kubernetes();
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, &generated).expect("write");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date: run `UPDATE_EXPECT=1 cargo test -p xtask --test prometheus`",
        path.display()
    );
}

#[test]
fn both_configs_load_in_promtool() {
    let Some(promtool) = promtool() else { return };
    let dir = std::env::temp_dir().join(format!("xtask-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ports = service_ports(&mock_service::topology::Topology::guide());
    let local = dir.join("local.yml");
    std::fs::write(&local, prometheus_config::local(&ports, &workspace_root())).expect("write");
    let output = run(
        &promtool,
        &["check", "config", local.to_str().expect("utf-8")],
    );
    assert!(output.contains("SUCCESS: 2 rule files found"), "{output}");

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
    let ports = service_ports(&mock_service::topology::Topology::guide());
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
    let output = run(
        &promtool,
        &[
            "check",
            "rules",
            "prometheus/rules/alerts.yml",
            "prometheus/rules/recording.yml",
        ],
    );
    assert!(
        output.contains("SUCCESS: 4 rules found") && output.contains("SUCCESS: 5 rules found"),
        "{output}"
    );
    let output = run(
        &promtool,
        &["test", "rules", "prometheus/tests/alerts.test.yml"],
    );
    assert!(output.contains("SUCCESS"), "{output}");
}
