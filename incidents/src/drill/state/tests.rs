//! The state file and the history: round trips, answers from another process, and clear
//! errors for a missing, finished or corrupt drill.

use std::time::Duration;

use contract::topology::Topology;

use super::*;
use crate::drill::{Level, pick, score};

/// A directory of its own under the system's temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("drill-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn state() -> DrillState {
    DrillState {
        pid: 42,
        drill: pick(&Topology::built_in(), Level::Intermittent, 7).expect("a drill"),
        mesh: "the local mesh".into(),
        started_unix: 1_700_000_000,
        answer: None,
        gave_up: false,
        finished: false,
    }
}

#[test]
fn the_state_round_trips_and_an_answer_reaches_it() {
    let scratch = Scratch::new("state");
    let path = state_file(&scratch.0);
    assert_eq!(DrillState::read(&path).unwrap(), None);
    state().write(&path).unwrap();
    assert_eq!(DrillState::read(&path).unwrap(), Some(state()));
    let answer = Answer {
        service: "user-service".into(),
        kind: contract::admin::FaultKind::Latency,
    };
    let now = DrillState::submit(&path, Some(answer.clone())).unwrap();
    assert_eq!(now.answer.as_ref(), Some(&answer));
    assert_eq!(DrillState::read(&path).unwrap(), Some(now));
    let leftovers: Vec<_> = std::fs::read_dir(dir(&scratch.0)).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
}

#[test]
fn answering_without_a_drill_or_after_its_end_says_so() {
    let scratch = Scratch::new("none");
    let path = state_file(&scratch.0);
    let error = DrillState::submit(&path, None).unwrap_err().to_string();
    assert!(error.starts_with("no drill is running"), "{error}");
    DrillState {
        finished: true,
        ..state()
    }
    .write(&path)
    .unwrap();
    let error = DrillState::submit(&path, None).unwrap_err().to_string();
    assert!(error.contains("already finished"), "{error}");
    std::fs::write(&path, "{").unwrap();
    let error = DrillState::read(&path).unwrap_err().to_string();
    assert!(error.contains("is not a drill's state"), "{error}");
}

#[test]
fn the_history_keeps_every_outcome_in_order() {
    let scratch = Scratch::new("history");
    let path = history_file(&scratch.0);
    assert_eq!(history(&path).unwrap(), []);
    let drill = state().drill;
    let outcomes: Vec<Outcome> = [None, Some(drill.service.clone())]
        .into_iter()
        .map(|service| {
            let answer = service.map(|service| Answer {
                service,
                kind: drill.kind,
            });
            Outcome {
                drill: drill.clone(),
                score: score(&drill, answer.as_ref(), Duration::from_secs(61)),
                answer,
                ended: "answered".into(),
                finished_unix: 1_700_000_100,
            }
        })
        .collect();
    for outcome in &outcomes {
        record(&path, outcome).unwrap();
    }
    assert_eq!(history(&path).unwrap(), outcomes);
    std::fs::write(&path, "not json\n").unwrap();
    let error = history(&path).unwrap_err().to_string();
    assert!(error.contains("history.jsonl:1"), "{error}");
}
