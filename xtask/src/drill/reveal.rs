//! The end of a drill: the score, the fault, the panel that shows it, a trace that went
//! through it and the log line that gives it away; the outcome added to the history.

use std::time::{Duration, SystemTime};

use incidents::drill::{self, Answer, Drill, Outcome, reveal::LOG_MARKER};
use loadgen::Outcome as Traffic;

use super::run::{Ending, unix_seconds};
use crate::{
    logs,
    mesh::{RunningMesh, local::log_file},
    target_dir,
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
    for line in panel_lines(drill) {
        println!("{line}");
    }
    for line in trace_lines(mesh, drill, started, traffic) {
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

/// Where it showed: the dashboard, the panel, and why there.
fn panel_lines(drill: &Drill) -> Vec<String> {
    let panel = drill::reveal::panel(drill.kind);
    let variable = if panel.per_service {
        format!(" (service = {})", drill.service)
    } else {
        String::new()
    };
    vec![
        format!(
            "Where it shows: Grafana, {}{variable}, panel \"{}\" (query {})",
            panel.dashboard, panel.title, panel.ref_id
        ),
        format!("  why there: {}", drill::reveal::hint(drill.kind)),
    ]
}

/// A trace through the fault, and the faulted service's log line of it: from the local
/// logs (the last line the fault left), else the slowest failed or slowest request of
/// the drill's traffic.
fn trace_lines(
    mesh: &RunningMesh,
    drill: &Drill,
    started: SystemTime,
    traffic: Option<&Traffic>,
) -> Vec<String> {
    let logged = match mesh {
        RunningMesh::Local(_) => fault_log_line(&drill.service, started),
        RunningMesh::Cluster => None,
    };
    let (trace, source) = match (&logged, traffic.and_then(slowest_trace)) {
        (Some((trace, _)), _) => (trace.clone(), "a request the fault changed"),
        (None, Some(trace)) => (trace, "one of the drill's slowest requests"),
        (None, None) => return vec!["No trace id was seen during the drill.".to_owned()],
    };
    let mut lines = vec![
        format!("A trace through it ({source}): {trace}"),
        format!("  Jaeger: http://localhost:16686/trace/{trace}"),
        format!("  Logs:   cargo xtask logs --trace {trace}"),
    ];
    if let Some((_, line)) = logged {
        lines.push(format!(
            "The log line that gives it away ({}):",
            drill.service
        ));
        lines.push(format!("  {line}"));
    }
    lines
}

/// The trace id and text of the last line in `service`'s local log that an injected
/// fault wrote since `since`.
fn fault_log_line(service: &str, since: SystemTime) -> Option<(String, String)> {
    let text = std::fs::read_to_string(log_file(service)).ok()?;
    let lines = text
        .lines()
        .map(|line| logs::parse(service, line))
        .collect();
    logs::select(lines, Some(since), None)
        .into_iter()
        .rev()
        .filter(|line| line.text.contains(LOG_MARKER))
        .find_map(|line| logs::trace_id(&line.text).map(|trace| (trace, line.text)))
}

/// The slowest failed request of the traffic, else its slowest, with a trace id.
fn slowest_trace(traffic: &Traffic) -> Option<String> {
    let traced = || traffic.slowest.iter().filter(|r| r.trace_id.is_some());
    traced()
        .find(|r| r.status >= 500)
        .or_else(|| traced().next())
        .and_then(|r| r.trace_id.clone())
}
