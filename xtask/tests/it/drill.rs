//! `cargo xtask drill` on the real local mesh with a real Prometheus: at every level, a
//! drill is started, solved from the signals alone (Prometheus's queries over the
//! services' metrics; never the admin API, `chaos status` or the drill's state file),
//! answered from another process (`drill answer`), scored by the drill's own scoring,
//! revealed, and its fault cleared. And the command line's answers without a drill.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use contract::{admin::FaultKind, topology::Topology};
use incidents::drill::{self, Answer, Level};

use crate::{
    local_mesh::{prometheus_query, stdout},
    support::{require, serial, start_local, stop_local, succeeded, xtask},
};

/// The first seed whose drill of `level` hides a fault of `kind` (the draw is
/// deterministic, so this is too).
fn seed_for(level: Level, kind: FaultKind) -> u64 {
    let topology = Topology::built_in();
    (0..1000)
        .find(|&seed| drill::pick(&topology, level, seed).is_ok_and(|d| d.kind == kind))
        .expect("some seed draws that kind")
}

/// `(service_name, value)` of the largest positive sample of an instant query.
fn top(query: &str) -> Option<(String, f64)> {
    let answer = prometheus_query(query);
    answer["data"]["result"]
        .as_array()?
        .iter()
        .filter_map(|sample| {
            let service = sample["metric"]["service_name"].as_str()?.to_owned();
            let value: f64 = sample["value"][1].as_str()?.parse().ok()?;
            (value > 0.0 && value.is_finite()).then_some((service, value))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// The routes whose work the topology describes; /api/error fails by design and
/// /api/slow is slow by design.
const WORK: &str = r#"endpoint=~"/api/data|/api/action""#;

/// The service at fault and the kind, from the mesh's metrics over the last `window`
/// seconds, as a person with Prometheus would reason:
/// - calls that got no answer at all (`status="error"`) from one caller: that caller
///   cannot reach a dependency;
/// - 5xx answers that are not 502 (a 502 is a caller passing on a dependency's failure)
///   outside /api/error: the errors start at that service;
/// - else the service whose own time per request (its server time minus the time it
///   waited for its calls) is far above the topology's few milliseconds of work.
fn solve(window: u64) -> Option<(String, &'static str)> {
    let unreachable = format!(
        r#"sum by (service_name) (increase(downstream_requests_total{{status="error"}}[{window}s]))"#
    );
    if let Some((service, _)) = top(&unreachable) {
        return Some((service, "unreachable"));
    }
    let errors = format!(
        r#"sum by (service_name) (increase(http_requests_total{{{WORK}, status=~"5..", status!="502"}}[{window}s]))"#
    );
    if let Some((service, _)) = top(&errors) {
        return Some((service, "error"));
    }
    let served = format!(
        "sum by (service_name) (rate(http_request_duration_seconds_sum{{{WORK}}}[{window}s]))"
    );
    let waited =
        format!("sum by (service_name) (rate(downstream_request_duration_seconds_sum[{window}s]))");
    let count = format!(
        "sum by (service_name) (rate(http_request_duration_seconds_count{{{WORK}}}[{window}s]))"
    );
    let own = format!("(({served}) - (({waited}) or ({served}) * 0)) / ({count})");
    match top(&own) {
        // The topology's work is 1 to 30 ms; an added latency is 100 ms or more.
        Some((service, seconds)) if seconds > 0.05 => Some((service, "latency")),
        _ => None,
    }
}

/// Polls [`solve`] from 20 s after `started` until it names the same answer twice in a
/// row, for at most three minutes.
fn solve_when_clear(started: Instant) -> (String, &'static str) {
    std::thread::sleep(Duration::from_secs(20));
    let mut last = None;
    while started.elapsed() < Duration::from_secs(200) {
        let window = started.elapsed().as_secs().saturating_sub(5).clamp(15, 90);
        let now = solve(window);
        if let Some(answer) = &now
            && last.as_ref() == Some(answer)
        {
            return answer.clone();
        }
        last = now;
        std::thread::sleep(Duration::from_secs(5));
    }
    panic!("the signals named no fault within 200 s (last: {last:?})");
}

/// A running `cargo xtask drill`: its stdout lines as they come.
struct RunningDrill {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl RunningDrill {
    fn start(level: Level, seed: u64) -> RunningDrill {
        let (level, seed) = (level.name(), seed.to_string());
        let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args([
                "drill",
                "--level",
                level,
                "--seed",
                &seed,
                "--duration",
                "400",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start xtask drill");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        RunningDrill {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most `timeout`) for a line containing `text`.
    fn wait_for(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.seen.iter().any(|line| line.contains(text)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "no {text:?} from the drill; it said:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for it to exit, successfully; everything it said.
    fn finish(mut self) -> String {
        self.wait_for("fault cleared:", Duration::from_secs(60));
        let status = self.child.wait().expect("the drill exits");
        self.seen.extend(self.lines.try_iter());
        assert!(
            status.success(),
            "drill: {status}\n{}",
            self.seen.join("\n")
        );
        self.seen.join("\n")
    }
}

impl Drop for RunningDrill {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One drill: started, solved from the signals, answered, scored, revealed, cleared.
fn solve_a_drill(level: Level, kind: FaultKind) {
    let seed = seed_for(level, kind);
    let hidden = drill::pick(&Topology::built_in(), level, seed).expect("a drill");
    let mut running = RunningDrill::start(level, seed);
    running.wait_for("Users report a problem", Duration::from_secs(60));
    let started = Instant::now();
    let (service, kind_name) = solve_when_clear(started);
    let taken = started.elapsed();
    succeeded(&xtask(&["drill", "answer", &service, kind_name]));
    let said = running.finish();
    let services: Vec<String> = Topology::built_in()
        .service_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let answer = Answer::parse(&services, &service, kind_name).expect("a valid answer");
    let score = drill::score(&hidden, Some(&answer), taken);
    assert!(
        score.service_right && score.kind_right,
        "{level}: the signals named {service} {kind_name}, the drill hid {}: {}",
        hidden.describe(),
        score.summary()
    );
    assert!(
        said.contains("Your answer:") && said.contains(&hidden.describe()),
        "{said}"
    );
    assert!(said.contains("Where it shows: Grafana"), "{said}");
    let status = stdout(&xtask(&["chaos", "status"]));
    assert!(
        status.lines().all(|line| line.ends_with("no fault")),
        "{level}: a fault is left:\n{status}"
    );
}

#[test]
fn every_level_is_solvable_from_the_signals_alone() {
    let Some(_prometheus) = require("prometheus", "apt-get install prometheus") else {
        return;
    };
    let _serial = serial();
    let local = start_local(&[]);
    // Every kind once, each at a level, so every level and every kind is proven.
    for (level, kind) in [
        (Level::Single, FaultKind::Error),
        (Level::Cascading, FaultKind::Unreachable),
        (Level::Intermittent, FaultKind::Latency),
    ] {
        solve_a_drill(level, kind);
        // The next drill's window must not see this one's symptoms.
        std::thread::sleep(Duration::from_secs(10));
    }
    let history = succeeded(&xtask(&["drill", "history"]));
    assert!(history.contains("answered"), "{history}");
    stop_local(local);
}

/// `drill answer`, `give-up` and `history` with a target directory of their own.
fn xtask_in(target: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("run xtask")
}

#[test]
fn without_a_running_drill_answers_say_so_and_the_history_is_empty() {
    let target = std::env::temp_dir().join(format!("xtask-drill-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&target);
    for args in [
        &["drill", "answer", "inventory-service", "latency"][..],
        &["drill", "give-up"],
        &["drill", "--give-up"],
    ] {
        let run = xtask_in(&target, args);
        let error = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?}");
        assert!(error.contains("no drill is running"), "{args:?}: {error}");
    }
    // A drill whose process is gone is not running either.
    let state = drill::DrillState {
        pid: u32::MAX - 1,
        drill: drill::pick(&Topology::built_in(), Level::Single, 1).expect("a drill"),
        mesh: "the local mesh".into(),
        started_unix: 0,
        answer: None,
        gave_up: false,
        finished: false,
    };
    state
        .write(&drill::state::state_file(&target))
        .expect("written");
    let run = xtask_in(
        &target,
        &["drill", "answer", "inventory-service", "latency"],
    );
    assert!(String::from_utf8_lossy(&run.stderr).contains("has ended"));
    let history = succeeded(&xtask_in(&target, &["drill", "history"]));
    assert!(history.contains("no drill yet"), "{history}");
    let _ = std::fs::remove_dir_all(&target);
}
