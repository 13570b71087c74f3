//! End to end: `cargo xtask local` with a real Prometheus (and Alertmanager, where
//! installed), its spans going to a real OTLP/gRPC receiver, then `smoke`, ten seconds
//! of `traffic`, Prometheus's view of all seven targets, every dashboard query, the path
//! from a latency spike to its trace (exemplars) and to its logs (`logs --trace`), the
//! Watchdog alert delivered, faults, and `local --stop` leaving no process and no bound
//! port behind. CI installs the tools (`.ci/run`); elsewhere the test is skipped,
//! loudly, when Prometheus is missing.

use incidents::panels::runnable;
use std::{
    collections::BTreeSet,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::support::{TraceReceiver, start_local, stop_local, succeeded, xtask};

const PORTS: [u16; 15] = [
    30080, 30081, 30082, 30083, 30084, 30085, 30086, 31080, 31081, 31082, 31083, 31084, 31085,
    31086, 9090,
];

pub(crate) fn prometheus_query(query: &str) -> serde_json::Value {
    let url = format!("http://127.0.0.1:9090/api/v1/query?query={}", encode(query));
    let body = reqwest::blocking_get(&url);
    serde_json::from_str(&body).expect("Prometheus answers JSON")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The single number an instant query returns, if any.
fn scalar(response: &serde_json::Value) -> Option<f64> {
    response["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()
}

pub(crate) fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn faults_in_force() -> Vec<String> {
    let status = xtask(&["chaos", "status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    stdout(&status)
        .lines()
        .filter(|l| !l.ends_with("no fault"))
        .map(str::to_owned)
        .collect()
}

/// `chaos` sets and clears; `scenario` clears what it set, also when cancelled with
/// Ctrl+C; `traffic --chaos random` leaves nothing behind.
fn faults_are_set_shown_and_always_cleared() {
    let set = xtask(&[
        "chaos",
        "inventory-service",
        "--latency",
        "50ms",
        "--for",
        "1m",
    ]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let faults = faults_in_force();
    assert_eq!(faults.len(), 1, "{faults:?}");
    // "for 60 s more", or 59 on a slow machine.
    assert!(
        faults[0].starts_with("inventory-service (local): latency 50 ms, for "),
        "{faults:?}"
    );
    every_annotation_marks_the_fault("inventory-service");
    assert!(
        xtask(&["chaos", "inventory-service", "--clear"])
            .status
            .success()
    );
    assert!(faults_in_force().is_empty());

    let scenario = xtask(&["scenario", "errors", "--duration", "3"]);
    assert!(
        scenario.status.success(),
        "{}",
        String::from_utf8_lossy(&scenario.stderr)
    );
    assert!(
        String::from_utf8_lossy(&scenario.stderr)
            .contains("fault set: payment-service (local): errors 30% (500)")
    );
    assert!(
        faults_in_force().is_empty(),
        "the scenario left a fault behind"
    );

    let mut cancelled = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["scenario", "degradation", "--duration", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a scenario");
    let deadline = Instant::now() + Duration::from_secs(20);
    while faults_in_force().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the scenario never set its fault"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let pid = nix::unistd::Pid::from_raw(cancelled.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("Ctrl+C");
    let status = cancelled.wait().expect("the scenario exits");
    assert!(
        status.success(),
        "a cancelled scenario still ends cleanly: {status}"
    );
    assert!(
        faults_in_force().is_empty(),
        "a cancelled scenario left a fault behind"
    );

    let random = xtask(&[
        "traffic",
        "--duration",
        "6",
        "--chaos",
        "random",
        "--seed",
        "3",
    ]);
    let stderr = String::from_utf8_lossy(&random.stderr);
    assert!(random.status.success(), "{stderr}");
    assert!(
        stderr.contains("seed 3") && stderr.contains("[chaos] all faults cleared"),
        "{stderr}"
    );
    assert!(faults_in_force().is_empty());
}

/// Every query of every panel, with Grafana's variables substituted (`$service` by each
/// of the seven services), returns at least one series from the real Prometheus.
fn every_dashboard_query_returns_data() {
    use xtask::dashboards::{dashboards_dir, load, panel_queries};

    // The recording rules are evaluated every 5 s: wait for their first results.
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar(&prometheus_query(
        "count(service_name_service_status:downstream_requests:rate1m)",
    ))
    .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the recording rules produced nothing"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let services = contract::topology::Topology::built_in();
    let queries = panel_queries(&load(&dashboards_dir()).expect("dashboards"));
    let mut pending: Vec<(String, String)> = Vec::new();
    for query in &queries {
        let values: Vec<&str> = if query.expr.contains("$service") {
            services.service_names()
        } else {
            vec!["-"]
        };
        for service in values {
            let label = format!("{} / {} (service={service})", query.dashboard, query.panel);
            pending.push((label, runnable(&query.expr, Some(service), None)));
        }
    }
    let evaluated = pending.len();
    // A series born late in the short traffic run needs a second scrape before `rate`
    // sees it: ask again for a while, then report what is still empty.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut empty = Vec::new();
        for (label, expr) in pending {
            let response = prometheus_query(&expr);
            let series = response["data"]["result"].as_array().map_or(0, Vec::len);
            if response["status"] != "success" || series == 0 {
                empty.push((label, expr));
            }
        }
        if empty.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let report: Vec<String> = empty
                .iter()
                .map(|(label, expr)| format!("{label}: {expr}"))
                .collect();
            panic!(
                "{} of {evaluated} panel queries returned no series:\n{}",
                empty.len(),
                report.join("\n")
            );
        }
        pending = empty;
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("{evaluated} panel queries evaluated, each returned data");
}

/// While `service` has a fault, every annotation query of every dashboard (`$service`
/// set to it) returns the fault's series from the real Prometheus, naming the service.
fn every_annotation_marks_the_fault(service: &str) {
    use xtask::dashboards::{annotation_queries, dashboards_dir, load};

    let queries = annotation_queries(&load(&dashboards_dir()).expect("dashboards"));
    assert!(!queries.is_empty(), "no dashboard has an annotation");
    // The gauge is scraped every 5 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    for query in &queries {
        let expr = runnable(&query.expr, Some(service), None);
        loop {
            let response = prometheus_query(&expr);
            let marks = response["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if marks
                .iter()
                .any(|mark| mark["metric"]["service_name"] == service)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} / {}: no mark for {service}'s fault: {expr} -> {response}",
                query.dashboard,
                query.annotation
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    eprintln!("{} annotation queries mark the fault", queries.len());
}

/// Waits (bounded) until the receiver has every span of `trace_id`'s expected count.
fn wait_for_spans(receiver: &TraceReceiver, trace_id: &str, at_least: usize) {
    // The batch exporter sends every 5 s by default.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = receiver
            .spans()
            .iter()
            .filter(|span| span.trace_id == trace_id)
            .count();
        if got >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the receiver got {got} spans of trace {trace_id}, expected at least {at_least}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Seconds since the Unix epoch, as Prometheus's API takes them.
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The gateway's latency has exemplars in Prometheus, and each names a trace the
/// services really exported: a dot on a latency panel opens a trace that exists.
/// Only exemplars since `since` count: `cargo xtask local` keeps Prometheus's data
/// between runs, and an earlier run's traces went to an earlier receiver.
fn exemplars_are_traces_the_receiver_got(receiver: &TraceReceiver, since: u64) {
    let query = r#"http_request_duration_seconds_bucket{service_name="gateway-service"}"#;
    let url = format!(
        "http://127.0.0.1:9090/api/v1/query_exemplars?query={}&start={since}&end={}",
        encode(query),
        unix_seconds() + 60
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let trace_ids = loop {
        let response: serde_json::Value =
            serde_json::from_str(&reqwest::blocking_get(&url)).expect("JSON");
        let ids: Vec<String> = response["data"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|series| series["exemplars"].as_array().into_iter().flatten())
            .filter_map(|exemplar| exemplar["labels"]["trace_id"].as_str().map(str::to_owned))
            .collect();
        if !ids.is_empty() {
            break ids;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has no exemplar for the gateway's latency: {response}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    for trace_id in &trace_ids {
        wait_for_spans(receiver, trace_id, 1);
    }
    eprintln!(
        "{} exemplars of the gateway's latency, each a trace the receiver got",
        trace_ids.len()
    );
}

/// One real `POST /api/action`: its `x-trace-id` answer header names the trace, and
/// `cargo xtask logs --trace` gives that trace's lines from all seven services, in time
/// order, and no other trace's.
fn a_traces_logs_come_from_every_service_in_order(receiver: &TraceReceiver) {
    let trace_id = reqwest::blocking_post_trace_id("http://127.0.0.1:30080/api/action");
    // Ten server spans over seven services, each with its log lines by then.
    wait_for_spans(receiver, &trace_id, 10);
    let output = succeeded(&xtask(&["logs", "--trace", &trace_id]));
    let lines: Vec<(&str, serde_json::Value)> = output
        .lines()
        .map(|line| {
            let (source, json) = line.split_once(" | ").expect("`SOURCE | LINE`");
            (
                source.trim(),
                serde_json::from_str(json).expect("a JSON log line"),
            )
        })
        .collect();
    let logged: BTreeSet<&str> = lines.iter().map(|(source, _)| *source).collect();
    let spans = receiver.spans();
    let traced: BTreeSet<&str> = spans
        .iter()
        .filter(|span| span.trace_id == trace_id)
        .map(|span| span.service.as_str())
        .collect();
    let built_in = contract::topology::Topology::built_in();
    let all_seven: BTreeSet<&str> = built_in.service_names().into_iter().collect();
    assert_eq!(traced, all_seven, "the trace's spans");
    assert_eq!(logged, all_seven, "the trace's log lines:\n{output}");
    assert!(
        spans
            .iter()
            .any(|span| span.trace_id == trace_id && span.name == "POST /api/action"),
        "the gateway's server span"
    );
    let times: Vec<&str> = lines
        .iter()
        .map(|(_, json)| json["timestamp"].as_str().expect("a timestamp"))
        .collect();
    assert!(times.is_sorted(), "not in time order:\n{output}");
    assert!(
        lines
            .iter()
            .all(|(_, json)| json["trace_id"] == trace_id.as_str()),
        "a line of another trace:\n{output}"
    );
}

/// Prometheus sends the always-firing Watchdog to Alertmanager: the alert pipeline works.
fn the_watchdog_alert_reaches_alertmanager() {
    let installed = ["alertmanager", "prometheus-alertmanager"]
        .iter()
        .any(|name| xtask::cmd::find_on_path(name).is_some());
    if !installed {
        crate::support::skip(
            "Alertmanager",
            "apt-get install prometheus-alertmanager, or nix develop",
        );
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let alerts = reqwest::blocking_get("http://127.0.0.1:9093/api/v2/alerts");
        if alerts.contains("\"alertname\":\"Watchdog\"") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Alertmanager never received Watchdog: {alerts}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

mod reqwest {
    /// A tiny blocking GET on a runtime of its own: the test itself is synchronous.
    pub fn blocking_get(url: &str) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            ::reqwest::get(url)
                .await
                .expect("GET")
                .text()
                .await
                .expect("body")
        })
    }

    /// POSTs to `url` and returns the answer's `x-trace-id` header.
    pub fn blocking_post_trace_id(url: &str) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let response = ::reqwest::Client::new()
                .post(url)
                .send()
                .await
                .expect("POST");
            assert!(response.status().is_success(), "{response:?}");
            response
                .headers()
                .get("x-trace-id")
                .and_then(|value| value.to_str().ok())
                .expect("an x-trace-id header")
                .to_owned()
        })
    }
}

/// Every port the mesh and its tools listen on is free, or the test says what to stop.
fn assert_ports_free() {
    for port in PORTS {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is taken: stop what uses it (cargo xtask local --stop?) before this test"
        );
    }
}

#[test]
fn local_mesh_smoke_traffic_prometheus_and_clean_stop() {
    let _serial = crate::support::serial();
    if crate::support::require("prometheus", "apt-get install prometheus, or nix develop").is_none()
    {
        return;
    }
    assert_ports_free();
    let receiver = TraceReceiver::start();
    let started = unix_seconds();
    let local = start_local(&["--otlp-endpoint", &receiver.endpoint]);

    let smoke = xtask(&["smoke"]);
    let smoke_out = String::from_utf8_lossy(&smoke.stdout);
    assert!(smoke.status.success(), "{smoke_out}");
    assert!(smoke_out.contains("5 passed, 0 failed"), "{smoke_out}");

    let json = std::env::temp_dir().join(format!("xtask-e2e-{}.json", std::process::id()));
    let traffic = xtask(&[
        "traffic",
        "--duration",
        "10",
        "--json",
        json.to_str().expect("utf-8"),
    ]);
    assert!(
        traffic.status.success(),
        "{}",
        String::from_utf8_lossy(&traffic.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("--json written"))
            .expect("JSON");
    let _ = std::fs::remove_file(&json);
    assert!(
        report["total"]["requests"].as_u64().expect("requests") > 10,
        "{report}"
    );
    assert_eq!(
        report["total"]["failures"], 0,
        "unexpected failures: {report}"
    );

    // Prometheus scrapes every 5 s: all seven targets up, all seven reporting requests.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = scalar(&prometheus_query(r#"count(up{job="services"} == 1)"#));
        let reporting = scalar(&prometheus_query(
            "count(count by (service_name) (http_requests_total))",
        ));
        if up == Some(7.0) && reporting == Some(7.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus sees up={up:?}, reporting={reporting:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    every_dashboard_query_returns_data();
    exemplars_are_traces_the_receiver_got(&receiver, started);
    a_traces_logs_come_from_every_service_in_order(&receiver);
    the_watchdog_alert_reaches_alertmanager();
    faults_are_set_shown_and_always_cleared();

    let mesh = xtask::mesh::LocalMesh::running().expect("the running mesh's record");
    assert_eq!(mesh.services.len(), 7, "{mesh:?}");
    assert!(
        mesh.tools.iter().any(|tool| tool.name == "prometheus"),
        "{mesh:?}"
    );
    let processes: Vec<(u32, Option<xtask::identity::ProcessIdentity>)> = mesh
        .services
        .iter()
        .map(|s| (s.pid, s.identity.clone()))
        .chain(mesh.tools.iter().map(|t| (t.pid, t.identity.clone())))
        .collect();

    stop_local(local);

    for (pid, identity) in processes {
        assert!(
            identity.is_some(),
            "pid {pid} recorded without its identity"
        );
        assert_eq!(
            xtask::identity::standing(pid, identity.as_ref()),
            xtask::identity::Standing::Gone,
            "process {pid} outlived `cargo xtask local --stop`"
        );
    }
    for port in PORTS {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} still bound"
        );
    }
}
