//! The end of a drill: the score, the fault, the panel that shows it, a trace that went
//! through it and the faulted service's log line that shows it; the outcome added to the
//! history.

use std::time::{Duration, SystemTime};

use incidents::{
    Tools,
    drill::{self, Answer, Drill, Outcome},
    panels,
    tools::{Api, encode},
};
use loadgen::Outcome as Traffic;
use serde_json::Value as Json;

use super::run::{Ending, unix_seconds};
use crate::{
    logs,
    mesh::{RunningMesh, local::LocalMesh},
    paths::target_dir,
    scenario::verify::find_tools,
};

/// Prints the score and the reveal, and records the outcome.
pub async fn finish(
    mesh: &RunningMesh,
    drill: &Drill,
    ending: &Ending,
    taken: Duration,
    started: SystemTime,
    traffic: Option<&Traffic>,
) {
    let answer = match ending {
        Ending::Answered(answer) => Some(answer),
        _ => None,
    };
    let score = drill::score(drill, answer, taken);
    println!("\n{}", verdict(ending, answer, &score));
    println!(
        "The fault: {} ({} level, seed {}; replay: cargo xtask drill --level {} --seed {})",
        drill.describe(),
        drill.level,
        drill.seed,
        drill.level,
        drill.seed
    );
    let tools = find_tools(mesh, None).await;
    for line in panel_lines(drill, &tools) {
        println!("{line}");
    }
    for line in trace_lines(mesh, drill, started, traffic, tools.prometheus.as_ref()).await {
        println!("{line}");
    }
    let outcome = Outcome {
        drill: drill.clone(),
        answer: answer.cloned(),
        score,
        ended: ending.name().to_owned(),
        finished_unix: unix_seconds(SystemTime::now()),
    };
    let history = drill::state::history_file(&target_dir());
    match drill::state::record(&history, &outcome) {
        Ok(()) => println!("Scores so far: cargo xtask drill history"),
        Err(error) => eprintln!("the score is not in the history: {error}"),
    }
}

fn verdict(ending: &Ending, answer: Option<&Answer>, score: &drill::Score) -> String {
    match (ending, answer) {
        (_, Some(answer)) => format!(
            "Your answer: {} {}: {}",
            answer.service,
            answer.kind.about().name,
            score.summary()
        ),
        (Ending::TimeUp, None) => format!("Time is up after {} s: 0 points", score.seconds),
        (Ending::Interrupted, None) => "Interrupted (Ctrl+C): 0 points".to_owned(),
        (Ending::TrafficStopped, None) => "The mesh stopped answering: 0 points".to_owned(),
        (_, None) => format!("Given up after {} s: 0 points", score.seconds),
    }
}

/// Where it showed: the dashboard, the panel, its query as Prometheus runs it (read from
/// the dashboard itself), and why there.
fn panel_lines(drill: &Drill, tools: &Tools) -> Vec<String> {
    let panel = drill::reveal::panel(drill.kind);
    let service = panel.per_service.then_some(drill.service.as_str());
    let variable = service.map_or(String::new(), |s| format!(" (service = {s})"));
    let query = match tools
        .dashboards
        .panel_query(panel.file, panel.title, panel.ref_id)
    {
        Ok(expr) => panels::runnable(&expr, service, None),
        Err(error) => format!("(not found: {error})"),
    };
    vec![
        format!(
            "Where it shows: Grafana, {}{variable}, panel \"{}\":",
            panel.dashboard, panel.title
        ),
        format!("  {query}"),
        format!("  why there: {}", drill::reveal::hint(drill.kind)),
    ]
}

/// A trace through the fault, and the faulted service's log line of it. The trace is an
/// exemplar of the faulted service from Prometheus whose request shows the fault in its
/// log, else the request whose log line shows it best, else any exemplar of the faulted
/// service, else the slowest failed or slowest request of the drill's traffic.
async fn trace_lines(
    mesh: &RunningMesh,
    drill: &Drill,
    started: SystemTime,
    traffic: Option<&Traffic>,
    prometheus: Option<&Api>,
) -> Vec<String> {
    let local = match mesh {
        RunningMesh::Local(local) => Some(local),
        RunningMesh::Cluster => None,
    };
    let logged = telling_log_lines(local, drill, started);
    let exemplars = match prometheus {
        Some(api) => exemplars(api, &drill.service, started).await,
        None => Vec::new(),
    };
    let faulted = |trace: &String| logged.iter().any(|(id, _)| id == trace);
    let (trace, source) = if let Some(trace) = exemplars.iter().find(|t| faulted(t)) {
        (trace.clone(), "an exemplar from Prometheus")
    } else if let Some((trace, _)) = logged.first() {
        (trace.clone(), "a request the fault changed, from its log")
    } else if let Some(trace) = exemplars.first() {
        (trace.clone(), "an exemplar from Prometheus")
    } else if let Some(trace) = traffic.and_then(slowest_trace) {
        (trace, "one of the drill's slowest requests")
    } else {
        return vec!["No trace id was seen during the drill.".to_owned()];
    };
    let mut lines = vec![
        format!("A trace through it ({source}): {trace}"),
        format!("  Jaeger: http://localhost:16686/trace/{trace}"),
        format!("  Logs:   cargo xtask logs --trace {trace}"),
    ];
    let line = logged
        .iter()
        .find(|(id, _)| *id == trace)
        .or(logged.first());
    if let Some((_, line)) = line {
        lines.push(format!(
            "The log line that shows it ({}; `cargo xtask logs {} --since 5m`):",
            drill.service, drill.service
        ));
        lines.push(format!("  {line}"));
    }
    lines
}

/// The trace ids of the faulted service's latency exemplars since `since`, slowest
/// first; none when Prometheus keeps none (or does not answer).
async fn exemplars(api: &Api, service: &str, since: SystemTime) -> Vec<String> {
    let selector = format!("http_request_duration_seconds_bucket{{service_name=\"{service}\"}}");
    let path = format!(
        "/api/v1/query_exemplars?query={}&start={}&end={}",
        encode(&selector),
        unix_seconds(since),
        unix_seconds(SystemTime::now()) + 1
    );
    let Ok(json) = api.get(&path).await else {
        return Vec::new();
    };
    let mut found: Vec<(f64, String)> = json["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|series| series["exemplars"].as_array().into_iter().flatten())
        .filter_map(|exemplar: &Json| {
            let trace = exemplar["labels"]["trace_id"].as_str()?.to_owned();
            let value = exemplar["value"].as_str()?.parse().ok()?;
            Some((value, trace))
        })
        .collect();
    found.sort_by(|a, b| b.0.total_cmp(&a.0));
    found.into_iter().map(|(_, trace)| trace).collect()
}

/// The trace id and text of each line the faulted service logged since `since` (its
/// local log, or every replica's in the cluster) that shows the drill's kind of fault at
/// work, the most telling first.
fn telling_log_lines(
    local: Option<&LocalMesh>,
    drill: &Drill,
    since: SystemTime,
) -> Vec<(String, String)> {
    // A few seconds more: the cluster's `--since` counts whole seconds.
    let age = since.elapsed().unwrap_or_default() + Duration::from_secs(5);
    let lines = match logs::read_services(local, Some(&drill.service), Some(age)) {
        Ok(lines) => lines,
        Err(error) => {
            eprintln!("(the faulted service's logs could not be read: {error:#})");
            return Vec::new();
        }
    };
    let mut telling: Vec<(f64, String, String)> = logs::select(lines, Some(since), None)
        .into_iter()
        .filter_map(|line| {
            let json: Json = serde_json::from_str(&line.text).ok()?;
            let weight = drill::reveal::telling(drill.kind, &json)?;
            let trace = logs::trace_id(&line.text)?;
            Some((weight, trace, line.text))
        })
        .collect();
    // Stable: among equally telling lines, the earliest first.
    telling.sort_by(|a, b| b.0.total_cmp(&a.0));
    telling
        .into_iter()
        .map(|(_, trace, text)| (trace, text))
        .collect()
}

/// The slowest failed request of the traffic, else its slowest, with a trace id.
fn slowest_trace(traffic: &Traffic) -> Option<String> {
    let traced = || traffic.slowest.iter().filter(|r| r.trace_id.is_some());
    traced()
        .find(|r| r.status >= 500)
        .or_else(|| traced().next())
        .and_then(|r| r.trace_id.clone())
}
