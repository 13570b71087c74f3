//! A drill while it runs: the fault injected (as `chaos` injects it, with an expiry),
//! traffic in the background, the brief, the wait for an answer (the prompt, the state
//! file, Ctrl+C, the time limit), and on every way out the fault cleared, the score, the
//! reveal and the history.

use std::{
    io::{BufRead as _, IsTerminal as _},
    path::PathBuf,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, anyhow};
use contract::admin::{FaultKind, FaultSpec};
use incidents::drill::{self, Answer, Drill, DrillState, Level};
use loadgen::{Outcome, Plan, Reachable};
use tokio::{sync::mpsc, sync::watch, task::JoinHandle, time::Instant};

use crate::{chaos, mesh::RunningMesh};

/// What the command line asks of a new drill.
pub struct Settings {
    pub level: Level,
    pub seed: u64,
    /// The longest it runs.
    pub duration: Duration,
    pub state_file: PathBuf,
}

/// How a drill ended.
pub enum Ending {
    Answered(Answer),
    GaveUp,
    TimeUp,
    Interrupted,
    /// The traffic stopped by itself: the mesh stopped answering.
    TrafficStopped,
}

impl Ending {
    pub fn name(&self) -> &'static str {
        match self {
            Ending::Answered(_) => "answered",
            Ending::GaveUp => "gave up",
            Ending::TimeUp => "time up",
            Ending::Interrupted => "interrupted",
            Ending::TrafficStopped => "error",
        }
    }
}

/// Users of the drill's background traffic (the default mix and think time).
const USERS: u32 = 10;

pub async fn run(mesh: RunningMesh, settings: Settings) -> anyhow::Result<()> {
    let topology = mesh.topology()?;
    let services = mesh.services()?;
    let drill = drill::pick(&topology, settings.level, settings.seed)?;
    refuse_if_running(&settings)?;
    let target = mesh.entry_url().parse().map_err(|e| anyhow!("{e}"))?;
    let reachable = loadgen::preflight(&target)
        .await
        .map_err(|e| anyhow!("{e}; is the mesh running (`cargo xtask local`)?"))?;
    let spec = FaultSpec {
        // Should xtask be killed outright, the fault still ends by itself.
        for_seconds: Some(settings.duration.as_secs() + 60),
        // No panel, annotation, log line or `chaos status` names it: only its effects.
        quiet: true,
        ..drill.spec.clone()
    };
    let mut interrupted = on_ctrl_c();
    inject(&mesh, &drill, &spec, &mut interrupted).await?;
    let started = (Instant::now(), SystemTime::now());
    let played = play(
        (&mesh, &settings, &drill),
        &services,
        reachable,
        started,
        interrupted,
    )
    .await;
    let cleared = chaos::apply(&mesh, &drill.service, None).await;
    let (ending, traffic) = match played {
        Ok(played) => played,
        Err(error) => {
            mark_finished(&settings);
            return Err(with_clearing(error, cleared, &drill));
        }
    };
    let taken = started.0.elapsed();
    super::reveal::finish(&mesh, &drill, &ending, taken, started.1, traffic.as_ref()).await;
    match cleared {
        Ok(lines) => lines
            .iter()
            .for_each(|line| println!("fault cleared: {line}")),
        Err(error) => eprintln!(
            "{:#}",
            with_clearing(anyhow!("drill over"), Err(error), &drill)
        ),
    }
    mark_finished(&settings);
    match ending {
        Ending::TrafficStopped => Err(anyhow!("the mesh stopped answering during the drill")),
        _ => Ok(()),
    }
}

/// Turns true on Ctrl+C. Listening from before the fault is injected, so that no Ctrl+C
/// leaves it behind (once listened for, Ctrl+C no longer kills the process).
fn on_ctrl_c() -> watch::Receiver<bool> {
    let (interrupt, interrupted) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = interrupt.send(true);
        }
    });
    interrupted
}

/// The drill's fault set on every replica, unless Ctrl+C comes first: then what was set
/// is cleared again.
async fn inject(
    mesh: &RunningMesh,
    drill: &Drill,
    spec: &FaultSpec,
    interrupted: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    tokio::select! {
        injected = chaos::apply(mesh, &drill.service, Some(spec)) => {
            injected.map(drop).context("injecting the drill's fault")
        }
        Ok(_) = interrupted.wait_for(|interrupted| *interrupted) => {
            let cleared = chaos::apply(mesh, &drill.service, None).await;
            let error = anyhow!("interrupted (Ctrl+C) while the drill's fault was being injected");
            Err(with_clearing(error, cleared, drill))
        }
    }
}

/// The state written, the traffic started, the brief printed; then the wait, and the
/// traffic stopped.
async fn play(
    (mesh, settings, drill): (&RunningMesh, &Settings, &Drill),
    services: &[String],
    reachable: Reachable,
    started: (Instant, SystemTime),
    interrupted: watch::Receiver<bool>,
) -> anyhow::Result<(Ending, Option<Outcome>)> {
    let state = DrillState {
        pid: std::process::id(),
        drill: drill.clone(),
        mesh: mesh.describe().to_owned(),
        started_unix: unix_seconds(started.1),
        answer: None,
        gave_up: false,
        finished: false,
    };
    state.write(&settings.state_file)?;
    let (stop, stopped) = watch::channel(false);
    let mut traffic = tokio::spawn(traffic(reachable, stopped));
    brief(mesh, drill, settings);
    let ending = wait(settings, services, started.0, &mut traffic, interrupted).await;
    let _ = stop.send(true);
    let outcome = match ending {
        Ending::TrafficStopped => None,
        _ => traffic.await.ok(),
    };
    Ok((ending, outcome))
}

/// The default mix from [`USERS`] users until `stop` turns true.
async fn traffic(reachable: Reachable, mut stop: watch::Receiver<bool>) -> Outcome {
    let plan = Plan {
        users: USERS,
        duration: None,
        slowest: 20,
        ..Plan::default()
    };
    let stopped = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    loadgen::run(&reachable, &plan, stopped, |_| {}).await
}

fn brief(mesh: &RunningMesh, drill: &Drill, settings: &Settings) {
    println!(
        "Drill: level {}, seed {} (replay: cargo xtask drill --level {} --seed {}), on {}, \
         {} s at most.\n\n  Users report a problem: find the service and what is wrong.\n\n\
         Traffic runs in the background ({USERS} users at {}). Where to look:\n  \
         Grafana     http://localhost:3000   Mesh / Overview, Mesh / Service, Mesh / Inter-service\n  \
         Prometheus  http://localhost:9090\n  \
         Jaeger      http://localhost:16686\n  \
         Logs        cargo xtask logs SERVICE --since 5m   and   cargo xtask logs --trace TRACE_ID\n\
         The fault is quiet: no \"Injected faults\" panel, \"Fault active\" annotation, log line\n\
         or `cargo xtask chaos status` names it. Its effects are all there is to see.\n\
         Answer: type SERVICE KIND here (KIND: {}), or in another terminal\n  \
         cargo xtask drill answer SERVICE KIND\n\
         or reveal it: cargo xtask drill give-up",
        drill.level,
        drill.seed,
        drill.level,
        drill.seed,
        mesh.describe(),
        settings.duration.as_secs(),
        mesh.entry_url(),
        FaultKind::list(|about| about.name.into()),
    );
}

/// Until an answer (typed, or in the state file), a give-up, Ctrl+C, the time limit, or
/// the traffic's end. Bounded by the time limit.
async fn wait(
    settings: &Settings,
    services: &[String],
    started: Instant,
    traffic: &mut JoinHandle<Outcome>,
    mut interrupted: watch::Receiver<bool>,
) -> Ending {
    let mut typed = prompt();
    let deadline = tokio::time::sleep_until(started + settings.duration);
    tokio::pin!(deadline);
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            () = &mut deadline => return Ending::TimeUp,
            Ok(_) = interrupted.wait_for(|interrupted| *interrupted) => return Ending::Interrupted,
            _ = &mut *traffic => return Ending::TrafficStopped,
            Some(line) = recv(&mut typed) => match Answer::parse_line(services, &line) {
                Ok(answer) => return Ending::Answered(answer),
                Err(error) => eprintln!("{error}; try again"),
            },
            _ = poll.tick() => if let Some(ending) = from_state_file(settings) {
                return ending;
            },
        }
    }
}

/// The lines typed at the terminal, when stdin is one.
fn prompt() -> Option<mpsc::UnboundedReceiver<String>> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let (lines, typed) = mpsc::unbounded_channel();
    // Reading stdin blocks: a thread of its own, which ends with the process.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    Some(typed)
}

async fn recv(typed: &mut Option<mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match typed {
        Some(typed) => typed.recv().await,
        None => std::future::pending().await,
    }
}

/// An answer or a give-up that `drill answer` / `drill give-up` wrote.
fn from_state_file(settings: &Settings) -> Option<Ending> {
    match DrillState::read(&settings.state_file) {
        Ok(Some(state)) if state.gave_up => Some(Ending::GaveUp),
        Ok(Some(DrillState {
            answer: Some(answer),
            ..
        })) => Some(Ending::Answered(answer)),
        Ok(_) => None,
        Err(error) => {
            eprintln!("{error}");
            None
        }
    }
}

fn refuse_if_running(settings: &Settings) -> anyhow::Result<()> {
    match DrillState::read(&settings.state_file)? {
        Some(state) if !state.finished && super::alive(state.pid) => {
            Err(drill::DrillError::AlreadyRunning(state.pid).into())
        }
        _ => Ok(()),
    }
}

fn mark_finished(settings: &Settings) {
    let finished = DrillState::read(&settings.state_file)
        .ok()
        .flatten()
        .map(|state| {
            DrillState {
                finished: true,
                ..state
            }
            .write(&settings.state_file)
        });
    if let Some(Err(error)) = finished {
        eprintln!("{error}");
    }
}

/// `error`, and what became of the fault.
fn with_clearing(
    error: anyhow::Error,
    cleared: anyhow::Result<Vec<String>>,
    drill: &Drill,
) -> anyhow::Error {
    match cleared {
        Ok(_) => error.context(format!("the drill's fault on {} is cleared", drill.service)),
        Err(undo) => error.context(format!(
            "clearing the drill's fault failed too ({undo:#}); it expires by itself, or run: \
             cargo xtask chaos {} --clear",
            drill.service
        )),
    }
}

pub fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
