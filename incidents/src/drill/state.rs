//! The running drill's state file (`target/drill/state.json`, always written whole: a
//! temporary file renamed over it), through which `cargo xtask drill answer` and
//! `give-up` reach the running drill, and the history of finished drills
//! (`target/drill/history.jsonl`, a JSON line each).

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{Answer, Drill, DrillError, Score};

/// The running drill, as the other terminal sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillState {
    /// The `cargo xtask drill` that runs it.
    pub pid: u32,
    pub drill: Drill,
    /// "the local mesh" or "the kind cluster".
    pub mesh: String,
    /// When the fault was injected, in seconds since the Unix epoch.
    pub started_unix: u64,
    /// Written by `cargo xtask drill answer`.
    #[serde(default)]
    pub answer: Option<Answer>,
    /// Written by `cargo xtask drill give-up`.
    #[serde(default)]
    pub gave_up: bool,
    /// Set by the drill when it ends.
    #[serde(default)]
    pub finished: bool,
}

/// A finished drill, as the history keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub drill: Drill,
    pub answer: Option<Answer>,
    pub score: Score,
    /// How it ended: "answered", "gave up", "time up", "interrupted" or "error".
    pub ended: String,
    pub finished_unix: u64,
}

/// Where a drill's files live under the target directory.
pub fn dir(target_dir: &Path) -> PathBuf {
    target_dir.join("drill")
}

pub fn state_file(target_dir: &Path) -> PathBuf {
    dir(target_dir).join("state.json")
}

pub fn history_file(target_dir: &Path) -> PathBuf {
    dir(target_dir).join("history.jsonl")
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DrillError {
    let path = path.display().to_string();
    move |source| DrillError::Io {
        action,
        path,
        source,
    }
}

impl DrillState {
    /// The state in `path`; `None` when there is no file.
    pub fn read(path: &Path) -> Result<Option<DrillState>, DrillError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io("reading", path)(error)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| DrillError::Corrupt {
                path: path.display().to_string(),
                source,
            })
    }

    /// Writes the state whole: a reader sees the old file or the new one, never a part.
    pub fn write(&self, path: &Path) -> Result<(), DrillError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        let temporary = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let json = serde_json::to_string_pretty(self).expect("a drill state serializes");
        std::fs::write(&temporary, json).map_err(io("writing", &temporary))?;
        std::fs::rename(&temporary, path).map_err(io("replacing", path))
    }

    /// Records `answer` (or a give-up, with `None`) for the running drill in `path`.
    pub fn submit(path: &Path, answer: Option<Answer>) -> Result<DrillState, DrillError> {
        let mut state = DrillState::read(path)?
            .ok_or_else(|| DrillError::NotRunning(path.display().to_string()))?;
        if state.finished {
            return Err(DrillError::Finished);
        }
        match answer {
            Some(answer) => state.answer = Some(answer),
            None => state.gave_up = true,
        }
        state.write(path)?;
        Ok(state)
    }
}

/// Adds `outcome` to the history in `path`.
pub fn record(path: &Path, outcome: &Outcome) -> Result<(), DrillError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    let line = serde_json::to_string(outcome).expect("an outcome serializes");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io("opening", path))?;
    writeln!(file, "{line}").map_err(io("appending to", path))
}

/// Every drill in the history in `path`, oldest first (none when there is no file); a
/// line that is not an outcome is an error naming its line number.
pub fn history(path: &Path) -> Result<Vec<Outcome>, DrillError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io("reading", path)(error)),
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|source| DrillError::Corrupt {
                path: format!("{}:{}", path.display(), index + 1),
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
