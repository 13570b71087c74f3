//! End to end: `cargo xtask local` with a real Prometheus, then `smoke`, ten seconds of
//! `traffic`, Prometheus's view of all seven targets, and `local --stop` leaving no
//! process and no bound port behind. CI installs Prometheus (`.ci/run`); elsewhere the
//! test is skipped, loudly, when it is missing.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const PORTS: [u16; 15] = [
    30080, 30081, 30082, 30083, 30084, 30085, 30086, 31080, 31081, 31082, 31083, 31084, 31085,
    31086, 9090,
];

fn xtask(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("run xtask")
}

fn prometheus_query(query: &str) -> serde_json::Value {
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

fn stdout(output: &std::process::Output) -> String {
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
    use xtask::dashboards::{dashboards_dir, load, panel_queries, substitute};

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

    let services = mock_service::topology::Topology::guide();
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
            pending.push((label, substitute(&query.expr, service)));
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
}

#[test]
fn local_mesh_smoke_traffic_prometheus_and_clean_stop() {
    let _serial = crate::support::serial();
    if crate::support::require("prometheus", "apt-get install prometheus, or nix develop").is_none()
    {
        return;
    }
    for port in PORTS {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is taken: stop what uses it (cargo xtask local --stop?) before this test"
        );
    }

    let mut local = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("local")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start xtask local");
    let stdout = local.stdout.take().expect("stdout");
    let (up_tx, up_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("The mesh is up") {
                let _ = up_tx.send(());
            }
        }
    });
    // Generous: the first run may build mock-service.
    up_rx
        .recv_timeout(Duration::from_secs(300))
        .expect("the local mesh comes up");

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
    faults_are_set_shown_and_always_cleared();

    let pids: Vec<i32> = std::fs::read_dir(xtask::local::state_dir().join("pids"))
        .expect("pid files")
        .filter_map(|e| {
            std::fs::read_to_string(e.ok()?.path())
                .ok()?
                .trim()
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(pids.len(), 8, "seven services and Prometheus");

    let stop = xtask(&["local", "--stop"]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let status = local.wait().expect("xtask local exits");
    assert!(status.success(), "xtask local: {status}");

    for pid in pids {
        assert!(
            !xtask::local::alive(pid),
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
