//! `cargo xtask drill`: incident practice on the running mesh. It draws a hidden fault
//! from the mesh's topology (`incidents::drill`), injects it as `chaos` does (with an
//! expiry), drives traffic in the background, and waits for an answer typed at its prompt
//! or sent from another terminal (`drill answer`, through the state file); then it scores
//! the answer, reveals the fault (the panel, a trace, the log line) and clears the fault
//! on every way out: an answer, a give-up, Ctrl+C, an error, or `--duration` elapsed.

mod reveal;
mod run;

use anyhow::Context as _;
use incidents::drill::{self, Answer, DrillState, Level};

use crate::{mesh::RunningMesh, paths::target_dir};

#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "\
Levels:
  single        one service near the entry is clearly broken
  cascading     a fault deep in the call graph; its symptoms show upstream
  intermittent  a low error rate, or latency on one route only

Examples:
  cargo xtask drill                                  # a single-service drill, 15 minutes at most
  cargo xtask drill --level cascading --seed 42      # replay drill 42 of that level
  cargo xtask drill answer inventory-service latency # from another terminal
  cargo xtask drill give-up                          # reveal the running drill's fault
  cargo xtask drill history                          # the scores so far

Answers name a service of the mesh and a kind: latency, error or unreachable (for an
unreachable dependency, the service that cannot reach it). The running drill keeps its
state in target/drill/state.json and the scores in target/drill/history.jsonl."
)]
pub struct DrillArgs {
    #[command(subcommand)]
    pub action: Option<DrillAction>,

    /// How hard: single, cascading or intermittent (listed below)
    #[arg(long, default_value = "single", value_parser = parse_level)]
    pub level: Level,

    /// Replay a drill: the same seed and level draw the same fault [default: random, printed]
    #[arg(long)]
    pub seed: Option<u64>,

    /// Drill on the kind cluster's pods even if a local mesh is running
    #[arg(long)]
    pub cluster: bool,

    /// The longest the drill runs, in seconds; then it reveals the fault
    #[arg(long, value_name = "SECS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration: u64,

    /// Reveal the running drill's fault (the same as `drill give-up`)
    #[arg(long)]
    pub give_up: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum DrillAction {
    /// Answer the running drill: the service at fault and the kind of fault
    Answer {
        /// A service of the mesh (e.g. inventory-service)
        service: String,
        /// latency, error or unreachable
        kind: String,
    },
    /// Give up the running drill: it reveals and clears the fault
    GiveUp,
    /// The scores of the drills so far
    History,
}

fn parse_level(text: &str) -> Result<Level, String> {
    text.parse()
        .map_err(|error: drill::DrillError| error.to_string())
}

impl DrillArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let state_file = drill::state::state_file(&target_dir());
        match self.action {
            Some(DrillAction::Answer { service, kind }) => answer(&state_file, &service, &kind),
            Some(DrillAction::GiveUp) => give_up(&state_file),
            Some(DrillAction::History) => history(),
            None if self.give_up => give_up(&state_file),
            None => {
                let settings = run::Settings {
                    level: self.level,
                    seed: self.seed.unwrap_or_else(|| fastrand::u64(..1_000_000)),
                    duration: std::time::Duration::from_secs(self.duration),
                    state_file,
                };
                run::run(RunningMesh::find(self.cluster), settings).await
            }
        }
    }
}

/// `drill answer SERVICE KIND`: checked against the running drill's mesh, then written
/// into its state, where the drill notices it.
fn answer(state_file: &std::path::Path, service: &str, kind: &str) -> anyhow::Result<()> {
    let running = running_state(state_file)?;
    let mesh = RunningMesh::find(running.mesh == RunningMesh::Cluster.describe());
    let services = mesh.services()?;
    let answer = Answer::parse(&services, service, kind)?;
    DrillState::submit(state_file, Some(answer))?;
    println!(
        "answer sent: {service} {}; the drill (pid {}) scores it and reveals the fault",
        kind.trim(),
        running.pid
    );
    Ok(())
}

fn give_up(state_file: &std::path::Path) -> anyhow::Result<()> {
    let running = running_state(state_file)?;
    DrillState::submit(state_file, None)?;
    println!(
        "given up; the drill (pid {}) reveals the fault and clears it",
        running.pid
    );
    Ok(())
}

/// The drill that runs now, or why there is none.
fn running_state(state_file: &std::path::Path) -> anyhow::Result<DrillState> {
    let state = DrillState::read(state_file)?
        .ok_or_else(|| drill::DrillError::NotRunning(state_file.display().to_string()))?;
    if state.finished || !alive(state.pid) {
        anyhow::bail!(drill::DrillError::Ended(state.pid));
    }
    Ok(state)
}

/// Whether a process `pid` exists (signal 0 checks without sending anything).
pub(crate) fn alive(pid: u32) -> bool {
    i32::try_from(pid)
        .is_ok_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
}

/// `drill history`: one line per drill, oldest first, and the average.
fn history() -> anyhow::Result<()> {
    let path = drill::state::history_file(&target_dir());
    let outcomes = drill::state::history(&path).context("the drills' history")?;
    if outcomes.is_empty() {
        println!("no drill yet; start one with `cargo xtask drill`");
        return Ok(());
    }
    println!(
        "{:<13} {:>7}  {:<11} {:>6}  fault",
        "level", "seed", "ended", "points"
    );
    for outcome in &outcomes {
        println!(
            "{:<13} {:>7}  {:<11} {:>6}  {}",
            outcome.drill.level.name(),
            outcome.drill.seed,
            outcome.ended,
            outcome.score.points,
            outcome.drill.describe()
        );
    }
    let total: u32 = outcomes.iter().map(|o| o.score.points).sum();
    let count = u32::try_from(outcomes.len()).unwrap_or(u32::MAX);
    println!(
        "{} drills, {} points on average",
        outcomes.len(),
        total / count
    );
    Ok(())
}
