//! `cargo xtask scenario NAME --verify`, driven through the library against the real
//! mesh (`cargo xtask local`), a real Prometheus, a real Alertmanager and the suite's
//! real OTLP receiver as the trace source (no Jaeger here): all four scenarios of the
//! table verify, and a scenario whose fault is removed fails with a verdict table that
//! names what was not seen. The test's Prometheus runs the repository's rules with every
//! window 15 s and every `for:` 10 s, so that three phases of seconds can see an alert
//! start and end.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use incidents::{
    Options, Phases, Span, Status, Tools, TraceSource, panels, tools::Api, traces::Pending,
};
use xtask::{
    mesh::RunningMesh,
    paths::workspace_root,
    ports::{GATEWAY_URL, free_ports, service_ports},
    prometheus_config::{self, LocalPorts},
    scenario::verify::{MeshLogs, verify_on},
};

use crate::{
    prometheus::Running,
    support::{TraceReceiver, serial, start_local, stop_local},
};

/// The suite's OTLP receiver as `--verify`'s trace source.
struct Received(Arc<TraceReceiver>);

impl TraceSource for Received {
    fn describe(&self) -> String {
        format!("the test's OTLP receiver at {}", self.0.endpoint)
    }

    fn trace<'a>(&'a self, trace_id: &'a str) -> Pending<'a, Result<Vec<Span>, String>> {
        let spans = self
            .0
            .spans()
            .into_iter()
            .filter(|span| span.trace_id == trace_id)
            .map(|span| Span {
                service: span.service,
                name: span.name,
                error: span.error,
                duration: span.duration,
            })
            .collect();
        Box::pin(std::future::ready(Ok(spans)))
    }
}

/// The rules' windows and the panels' in this test.
const WINDOW: Duration = Duration::from_secs(15);

/// Prometheus and Alertmanager on free ports, the rules shortened, for the mesh on its
/// fixed ports; both stop when dropped.
struct ShortRules {
    _alertmanager: Running,
    prometheus: Running,
    ports: LocalPorts,
}

impl ShortRules {
    fn start(prometheus: &Path, alertmanager: &Path, dir: &Path) -> ShortRules {
        let root = dir.join("checkout");
        std::fs::create_dir_all(root.join("prometheus/rules")).expect("rules dir");
        for file in crate::prometheus::files_in("prometheus/rules") {
            let text = std::fs::read_to_string(workspace_root().join(&file)).expect("rules");
            std::fs::write(root.join(&file), shortened(&text)).expect("write rules");
        }
        let free = free_ports(2).expect("free ports");
        let ports = LocalPorts {
            prometheus: free[0],
            alertmanager: free[1],
        };
        let topology = contract::topology::Topology::built_in();
        let config = dir.join("prometheus.yml");
        let text = prometheus_config::local_with_ports(&service_ports(&topology), &root, ports);
        std::fs::write(&config, text).expect("write config");
        let alertmanager = Running::start(
            "alertmanager",
            alertmanager,
            &[
                format!(
                    "--config.file={}",
                    workspace_root()
                        .join("prometheus/alertmanager.yml")
                        .display()
                ),
                format!("--storage.path={}", dir.join("alertmanager").display()),
                format!("--web.listen-address=127.0.0.1:{}", ports.alertmanager),
                "--cluster.listen-address=".to_owned(),
            ],
            dir,
        );
        let prometheus = Running::start(
            "prometheus",
            prometheus,
            &[
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", dir.join("prometheus").display()),
                format!("--web.listen-address=127.0.0.1:{}", ports.prometheus),
                "--enable-feature=exemplar-storage".to_owned(),
                "--rules.alert.resend-delay=5s".to_owned(),
            ],
            dir,
        );
        ShortRules {
            _alertmanager: alertmanager,
            prometheus,
            ports,
        }
    }

    /// The tools as `--verify` gets them, once both answer; the traces from `receiver`,
    /// the logs from the local mesh's files.
    async fn tools(&self, receiver: Arc<TraceReceiver>, mesh: &RunningMesh) -> Tools {
        let prometheus = Api::prometheus(&format!("http://127.0.0.1:{}", self.ports.prometheus));
        let alertmanager =
            Api::alertmanager(&format!("http://127.0.0.1:{}", self.ports.alertmanager));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(prometheus.ready().await && alertmanager.ready().await) {
            assert!(
                Instant::now() < deadline,
                "not ready:\n{}",
                self.prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let RunningMesh::Local(local) = mesh else {
            panic!("the local mesh runs");
        };
        Tools {
            prometheus: Some(prometheus),
            alertmanager: Some(alertmanager),
            traces: Some(Arc::new(Received(receiver))),
            logs: Some(Arc::new(MeshLogs {
                local: Some(local.clone()),
            })),
            dashboards: panels::in_checkout(&workspace_root()),
            window: Some(WINDOW),
            rule_window: Some(WINDOW),
        }
    }
}

/// A rules file with every range 15 s and every `for:` 10 s.
fn shortened(rules: &str) -> String {
    let ranged = panels::runnable(rules, None, Some("15s"));
    ["1m", "2m", "5m"].iter().fold(ranged, |text, long| {
        text.replace(&format!("for: {long}"), "for: 10s")
    })
}

fn options() -> Options {
    Options {
        target: GATEWAY_URL.parse().expect("the gateway's URL"),
        phases: Phases {
            baseline: Duration::from_secs(10),
            fault: Duration::from_secs(20),
            recovery: Duration::from_secs(20),
        },
        connections: 48,
        settle: Duration::from_secs(15),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn every_scenario_verifies_and_one_without_its_fault_fails_naming_what_was_not_seen() {
    let Some((prometheus, alertmanager)) = crate::support::require_prometheus_and_alertmanager()
    else {
        return;
    };
    let _serial = serial();
    let dir = temp_dir("verify");
    let stack = ShortRules::start(&prometheus, &alertmanager, &dir);
    let receiver = Arc::new(TraceReceiver::start());
    let local = start_local(&["--otlp-endpoint", &receiver.endpoint]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(verify_all(&stack, receiver));
    stop_local(local);
    drop(stack);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The four scenarios pass; `errors` without its fault fails, naming what was not seen.
async fn verify_all(stack: &ShortRules, receiver: Arc<TraceReceiver>) {
    let mesh = RunningMesh::find(false);
    let tools = stack.tools(receiver, &mesh).await;

    for scenario in incidents::scenarios::all() {
        let verification = verify_on(&mesh, &scenario, &tools, &options())
            .await
            .expect("the verification runs");
        let table = verification.verdict_table();
        eprintln!("{table}");
        assert!(verification.passed, "{}:\n{table}", scenario.name);
        // With every tool here and the windows short, nothing is left unchecked.
        assert!(
            verification
                .verdicts
                .iter()
                .all(|v| v.status == Status::Pass),
            "{}:\n{table}",
            scenario.name
        );
        assert_eq!(verification.phases.len(), 3);
    }

    // The broken expectation: `errors` with its fault removed.
    let mut broken = incidents::scenarios::find("errors").expect("errors");
    broken.faults.clear();
    let verification = verify_on(&mesh, &broken, &tools, &options())
        .await
        .expect("the verification runs");
    let table = verification.verdict_table();
    eprintln!("{table}");
    assert!(!verification.passed, "{table}");
    for named in [
        "panel service.json \"Error ratio\" A of payment-service >= 0.05",
        "annotation \"Fault active\" names payment-service",
        "alert ServiceHighErrorRatio{service_name=payment-service} pending or firing",
        "exemplar of \"Latency p50 / p95 / p99\" -> trace with an ERROR payment-service span",
    ] {
        assert!(
            table
                .lines()
                .any(|line| line.starts_with("FAIL") && line.contains(named)),
            "{named} should FAIL:\n{table}"
        );
    }
}
