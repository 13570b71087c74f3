//! Incident drills: a hidden fault drawn from the running mesh's topology ([`pick`]), the
//! learner's answer and its score ([`score`]), the running drill's state file and the
//! history of scores ([`state`]), and what is revealed at the end ([`reveal`]).
//! `cargo xtask drill` is its command line; it injects the fault and drives the traffic.

pub mod pick;
pub mod reveal;
pub mod score;
pub mod state;

use std::{fmt, str::FromStr};

use contract::admin::{FaultKind, FaultSpec};
use serde::{Deserialize, Serialize};

pub use pick::{Drill, pick};
pub use score::{Answer, Score, score};
pub use state::{DrillState, Outcome};

/// How hard the drill is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// One service near the entry, clearly broken: its own panels show it.
    Single,
    /// A fault deep in the call graph (two hops or more from the entry) whose symptoms
    /// show upstream: the callers fail or slow down too.
    Cascading,
    /// A low error rate, or latency on one route only: the signal comes and goes.
    Intermittent,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Single, Level::Cascading, Level::Intermittent];

    pub fn name(self) -> &'static str {
        match self {
            Level::Single => "single",
            Level::Cascading => "cascading",
            Level::Intermittent => "intermittent",
        }
    }

    /// One line: what a drill of this level hides.
    pub fn summary(self) -> &'static str {
        match self {
            Level::Single => "one service near the entry is clearly broken",
            Level::Cascading => "a fault deep in the call graph; its symptoms show upstream",
            Level::Intermittent => "a low error rate, or latency on one route only",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Level {
    type Err = DrillError;

    fn from_str(text: &str) -> Result<Level, DrillError> {
        Level::ALL
            .into_iter()
            .find(|level| level.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| DrillError::UnknownLevel(text.trim().to_owned()))
    }
}

/// What can go wrong with a drill, each saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("`{0}` is not a level; the levels are single, cascading and intermittent")]
    UnknownLevel(String),
    #[error("`{service}` is not a service of the mesh; the services are {known}")]
    UnknownService { service: String, known: String },
    #[error("`{kind}` is not a kind of fault; the kinds are {known}")]
    UnknownKind { kind: String, known: String },
    #[error("the topology has no service that {level} drills can break: {why}")]
    NoCandidate { level: Level, why: String },
    #[error("no drill is running (no {0}); start one with `cargo xtask drill`")]
    NotRunning(String),
    #[error(
        "no drill is running: the last one (pid {0}) has ended; start one with `cargo xtask drill`"
    )]
    Ended(u32),
    #[error("the drill has already finished; start a new one with `cargo xtask drill`")]
    Finished,
    #[error("a drill is already running (pid {0}); answer it, give up, or wait for it to end")]
    AlreadyRunning(u32),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a drill's state ({source}); delete it and start again")]
    Corrupt {
        path: String,
        source: serde_json::Error,
    },
}

/// The kind named `text`: its name (`latency`, `error`, `unreachable`) or its `chaos`
/// flag (`error-rate`), in any case.
pub fn parse_kind(text: &str) -> Result<FaultKind, DrillError> {
    let text = text.trim();
    FaultKind::ALL
        .into_iter()
        .find(|kind| {
            let about = kind.about();
            about.name.eq_ignore_ascii_case(text) || about.flag.eq_ignore_ascii_case(text)
        })
        .ok_or_else(|| DrillError::UnknownKind {
            kind: text.to_owned(),
            known: FaultKind::list(|about| about.name.into()),
        })
}

/// The one kind a drill's fault sets.
pub fn kind_of(spec: &FaultSpec) -> Option<FaultKind> {
    spec.kinds().next()
}

/// Serializes a [`FaultKind`] as its name.
mod kind_name {
    use contract::admin::FaultKind;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(kind: &FaultKind, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(kind.about().name)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<FaultKind, D::Error> {
        let name = String::deserialize(deserializer)?;
        super::parse_kind(&name).map_err(serde::de::Error::custom)
    }
}
