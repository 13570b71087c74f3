//! `cargo xtask drill` on the real local mesh with a real Prometheus and the suite's real
//! OTLP receiver: at every level, a drill is started, solved twice from the signals alone
//! (once from Prometheus's queries over the services' metrics, once from the exported
//! spans; never the admin API, `chaos status` or the drill's state file), both must name
//! the hidden fault, answered from another process (`drill answer`), scored by the
//! drill's own scoring, revealed, and its fault cleared; meanwhile no fault metric, log
//! line or `chaos status` announces it. A drill ended by Ctrl+C clears its fault. And
//! the command line's answers without a drill.

use std::{
    collections::HashMap,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use contract::{admin::FaultKind, topology::Topology};
use incidents::drill::{self, Answer, Level};

use crate::{
    local_mesh::{prometheus_query, stdout},
    support::{
        TraceReceiver, lines_of,
        otlp::{ReceivedSpan, SpanKind},
        require, serial, start_local, stop_local, succeeded, xtask,
    },
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

/// The topology's work is 1 to 30 ms a request; an added latency is 100 ms or more.
const FAR_ABOVE_THE_WORK: Duration = Duration::from_millis(50);

/// Every span that has a parent, under its parent's span id.
fn children_of(spans: &[ReceivedSpan]) -> HashMap<&str, Vec<&ReceivedSpan>> {
    let mut children: HashMap<&str, Vec<&ReceivedSpan>> = HashMap::new();
    for span in spans.iter().filter(|span| !span.parent_span_id.is_empty()) {
        children
            .entry(span.parent_span_id.as_str())
            .or_default()
            .push(span);
    }
    children
}

/// The calls `span` made: its client children.
fn calls_of<'a>(
    children: &'a HashMap<&str, Vec<&'a ReceivedSpan>>,
    span: &ReceivedSpan,
) -> impl Iterator<Item = &'a ReceivedSpan> {
    children
        .get(span.span_id.as_str())
        .into_iter()
        .flatten()
        .copied()
        .filter(|child| child.kind == SpanKind::Client)
}

/// The HTTP status a span carries, if the request got an answer.
fn status_of(span: &ReceivedSpan) -> Option<u16> {
    span.attribute("http.response.status_code")?.parse().ok()
}

/// The service named most often, if any.
fn most_named<'a>(services: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for service in services {
        *counts.entry(service).or_default() += 1;
    }
    // On a tie the first by name, so the answer does not depend on the map's order.
    let (service, _) = counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))?;
    Some(service.to_owned())
}

/// A caller whose calls failed without any answer and never reached the callee: a
/// client span in error, with no status, and no server span under it.
fn unreachable_in_traces(
    spans: &[ReceivedSpan],
    children: &HashMap<&str, Vec<&ReceivedSpan>>,
) -> Option<String> {
    let reached_a_server = |call: &ReceivedSpan| {
        children
            .get(call.span_id.as_str())
            .is_some_and(|under| under.iter().any(|span| span.kind == SpanKind::Server))
    };
    most_named(
        spans
            .iter()
            .filter(|span| span.kind == SpanKind::Client && span.error)
            .filter(|call| status_of(call).is_none() && !reached_a_server(call))
            .map(|call| call.service.as_str()),
    )
}

/// A service that answered 5xx itself (not 502, outside /api/error) while every call it
/// made succeeded: the errors start there.
fn errors_in_traces(
    spans: &[ReceivedSpan],
    children: &HashMap<&str, Vec<&ReceivedSpan>>,
) -> Option<String> {
    most_named(
        spans
            .iter()
            .filter(|span| span.kind == SpanKind::Server)
            .filter(|span| span.attribute("http.route") != Some("/api/error"))
            .filter(|span| status_of(span).is_some_and(|s| s >= 500 && s != 502))
            .filter(|span| calls_of(children, span).all(|call| !call.error))
            .map(|span| span.service.as_str()),
    )
}

/// The service whose typical own time (a server span's duration minus its calls') on
/// one of the routes that do work is far above the topology's work. Per route, as a
/// fault may slow one route only; the median, so that one slow moment is not a fault.
fn latency_in_traces(
    spans: &[ReceivedSpan],
    children: &HashMap<&str, Vec<&ReceivedSpan>>,
) -> Option<String> {
    let mut own: HashMap<(&str, &str), Vec<Duration>> = HashMap::new();
    for span in spans.iter().filter(|span| span.kind == SpanKind::Server) {
        let Some(route @ ("/api/data" | "/api/action")) = span.attribute("http.route") else {
            continue;
        };
        let waited: Duration = calls_of(children, span).map(|call| call.duration).sum();
        own.entry((span.service.as_str(), route))
            .or_default()
            .push(span.duration.saturating_sub(waited));
    }
    own.into_iter()
        // A median of a handful of requests or more, not of one.
        .filter(|(_, times)| times.len() >= 5)
        .map(|((service, _), mut times)| {
            times.sort();
            (service, times[times.len() / 2])
        })
        .filter(|(_, median)| *median > FAR_ABOVE_THE_WORK)
        .max_by_key(|(_, median)| *median)
        .map(|(service, _)| service.to_owned())
}

/// The service at fault and the kind, from the spans alone, as a person reading traces
/// in Jaeger would reason: calls that never reached the callee (the caller cannot reach
/// a dependency), else 5xx that start at a service, else a service's own time far above
/// its work. Never span events, log lines or answer bodies: only the spans' structure,
/// status, durations and attributes.
fn solve_from_traces(spans: &[ReceivedSpan]) -> Option<(String, &'static str)> {
    let children = children_of(spans);
    if let Some(service) = unreachable_in_traces(spans, &children) {
        return Some((service, "unreachable"));
    }
    if let Some(service) = errors_in_traces(spans, &children) {
        return Some((service, "error"));
    }
    latency_in_traces(spans, &children).map(|service| (service, "latency"))
}

/// What each solver named at one look.
#[derive(Debug, Default, PartialEq)]
struct Named {
    metrics: Option<(String, &'static str)>,
    traces: Option<(String, &'static str)>,
}

impl Named {
    /// The answer both name, if they agree on one.
    fn agreed(&self) -> Option<&(String, &'static str)> {
        self.metrics
            .as_ref()
            .filter(|_| self.metrics == self.traces)
    }
}

/// Polls [`solve`] and [`solve_from_traces`] (over the spans that started at or after
/// `since`, in nanoseconds since the Unix epoch) from 20 s after `started` until both
/// name the same answer twice in a row, for at most three minutes.
fn solve_when_clear(started: Instant, since: u64, receiver: &TraceReceiver) -> Named {
    std::thread::sleep(Duration::from_secs(20));
    let mut last = Named::default();
    while started.elapsed() < Duration::from_secs(200) {
        let window = started.elapsed().as_secs().saturating_sub(5).clamp(15, 90);
        let now = Named {
            metrics: solve(window),
            traces: solve_from_traces(&receiver.spans_since(since)),
        };
        if now.agreed().is_some() && now == last {
            return now;
        }
        last = now;
        std::thread::sleep(Duration::from_secs(5));
    }
    panic!(
        "within 200 s the two solvers did not name one fault twice in a row: the metrics \
         last named {:?}, the traces {:?}",
        last.metrics, last.traces
    );
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
        let lines = lines_of(child.stdout.take().expect("stdout"));
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

/// Now, in nanoseconds since the Unix epoch (as OTLP spans say when they started).
fn unix_nanos_now() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since_epoch.as_nanos()).expect("before the year 2554")
}

/// One drill: started, solved from the metrics and from the traces, answered, scored,
/// revealed, cleared.
fn solve_a_drill(receiver: &TraceReceiver, level: Level, kind: FaultKind) {
    let seed = seed_for(level, kind);
    let hidden = drill::pick(&Topology::built_in(), level, seed).expect("a drill");
    let mut running = RunningDrill::start(level, seed);
    running.wait_for("Users report a problem", Duration::from_secs(60));
    let started = Instant::now();
    let named = solve_when_clear(started, unix_nanos_now(), receiver);
    let taken = started.elapsed();
    let (service, kind_name) = named.agreed().cloned().expect("both solvers agree");
    assert_quiet(&hidden.service, started.elapsed());
    eprintln!(
        "{level}: the metrics and the traces both named {service} {kind_name} after {} s",
        taken.as_secs()
    );
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
        "{level}: the metrics named {:?} and the traces {:?}, the drill hid {}: {}",
        named.metrics,
        named.traces,
        hidden.describe(),
        score.summary()
    );
    assert!(
        said.contains("Your answer:") && said.contains(&hidden.describe()),
        "{said}"
    );
    assert!(said.contains("Where it shows: Grafana"), "{said}");
    assert!(said.contains("The log line that shows it"), "{said}");
    let status = stdout(&xtask(&["chaos", "status"]));
    assert!(
        status.lines().all(|line| line.ends_with("no fault")),
        "{level}: a fault is left:\n{status}"
    );
}

/// What a learner must not see while a drill runs, `running_for` after its brief: no
/// fault metric, no line of the faulted service announcing it, and `chaos status` one
/// line for the whole mesh.
fn assert_quiet(faulted: &str, running_for: Duration) {
    let window = running_for.as_secs() + 5;
    for query in [
        "sum(fault_active)".to_owned(),
        format!("sum(increase(fault_injections_total[{window}s]))"),
    ] {
        let answer = prometheus_query(&query);
        let value = answer["data"]["result"][0]["value"][1].as_str();
        assert_eq!(value, Some("0"), "{query} during a drill: {answer}");
    }
    let since = format!("{window}s");
    let logged = stdout(&xtask(&["logs", faulted, "--since", &since]));
    assert!(logged.contains("request served"), "{logged}");
    assert!(
        !logged.contains("fault injected") && !logged.contains("fault set"),
        "{faulted}'s log announces the drill's fault:\n{logged}"
    );
    let status = stdout(&xtask(&["chaos", "status"]));
    assert!(
        status.starts_with("A drill is running: its fault is hidden")
            && status.lines().count() == 1,
        "{status}"
    );
}

/// Ctrl+C during a drill ends it: nothing scored, the fault revealed and cleared.
fn interrupt_a_drill() {
    let mut running = RunningDrill::start(Level::Single, 1);
    running.wait_for("Users report a problem", Duration::from_secs(60));
    let pid = nix::unistd::Pid::from_raw(running.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("Ctrl+C");
    let said = running.finish();
    assert!(said.contains("Interrupted (Ctrl+C): 0 points"), "{said}");
    let status = stdout(&xtask(&["chaos", "status"]));
    assert!(
        status.lines().all(|line| line.ends_with("no fault")),
        "a fault is left:\n{status}"
    );
}

#[test]
fn every_level_is_solvable_from_the_signals_alone() {
    let Some(_prometheus) = require("prometheus", "apt-get install prometheus") else {
        return;
    };
    let _serial = serial();
    let receiver = TraceReceiver::start();
    let local = start_local(&["--otlp-endpoint", &receiver.endpoint]);
    // Every kind once, each at a level, so every level and every kind is proven.
    for (level, kind) in [
        (Level::Single, FaultKind::Error),
        (Level::Cascading, FaultKind::Unreachable),
        (Level::Intermittent, FaultKind::Latency),
    ] {
        solve_a_drill(&receiver, level, kind);
        // The next drill's window must not see this one's symptoms.
        std::thread::sleep(Duration::from_secs(10));
    }
    interrupt_a_drill();
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
