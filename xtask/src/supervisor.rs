//! Starting, watching and stopping a group of processes: the local mesh and its tools
//! (`cargo xtask local`), and the benchmark's meshes. Each process writes to its own log;
//! readiness is one probe loop; stopping is SIGTERM, a grace period, then SIGKILL, as
//! Kubernetes does, on Ctrl+C, SIGTERM or SIGHUP alike.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tokio::{
    process::Child,
    signal::unix::{SignalKind, signal as listen},
    time::Instant,
};

use crate::{cmd::Cmd, readiness::Probe};

/// How long a process may take to stop after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether a process is the point of the group (a service: if it cannot start,
/// nothing can) or an extra (a tool: reported, and the group goes on without it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Essential,
    Optional,
}

/// What to poll for one process's readiness.
pub struct Wait {
    pub name: String,
    pub url: String,
    /// Any HTTP answer will do (a port that speaks HTTP but serves nothing at `url`).
    pub any_answer: bool,
}

#[derive(Default)]
pub struct Supervisor {
    children: Vec<Managed>,
    /// Each child in a process group of its own; see [`Supervisor::sole_receiver`].
    own_groups: bool,
}

struct Managed {
    name: String,
    role: Role,
    child: Child,
    log: PathBuf,
    /// Already reported as exited.
    exited: bool,
}

impl Supervisor {
    /// Children share this process's group: a terminal's Ctrl+C reaches them too, which
    /// suits the benchmark, whose meshes live only as long as one command.
    pub fn new() -> Supervisor {
        Supervisor::default()
    }

    /// Each child in a process group of its own, so that a terminal's signals (Ctrl+C's
    /// SIGINT, a closed terminal's SIGHUP, which the kernel and the shell send to the
    /// foreground group) reach only this process, which then stops the children itself,
    /// in order (SIGTERM, grace, SIGKILL) and records it. Sharing the group, every
    /// process would get the signal at once, the services would fail each other's calls
    /// while they stop, and Prometheus would take SIGHUP as "reload" and run on. The
    /// price: this process must listen for those signals from before its first child
    /// starts ([`StopSignals`]), or a Ctrl+C would leave the children running.
    pub fn sole_receiver() -> Supervisor {
        Supervisor {
            own_groups: true,
            ..Supervisor::default()
        }
    }

    /// Starts `cmd` with its output in `log`; returns its pid.
    pub fn spawn(&mut self, name: &str, role: Role, cmd: Cmd, log: PathBuf) -> anyhow::Result<u32> {
        let cmd = if self.own_groups {
            cmd.own_process_group()
        } else {
            cmd
        };
        let child = cmd.spawn_logged(&log)?;
        let pid = child
            .id()
            .with_context(|| format!("{name} exited at once; see {}", log.display()))?;
        self.children.push(Managed {
            name: name.to_owned(),
            role,
            child,
            log,
            exited: false,
        });
        Ok(pid)
    }

    /// Polls every `every` until each of `waits` answers. An essential process that
    /// exits, or is not ready within `timeout`, stops the whole group (the error shows
    /// the end of its log); an optional one is reported, and the wait goes on without it.
    pub async fn wait_ready(
        &mut self,
        waits: &[Wait],
        timeout: Duration,
        every: Duration,
    ) -> anyhow::Result<()> {
        let probe = Probe::new()?;
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<&Wait> = waits.iter().collect();
        loop {
            pending = self.not_ready_yet(&probe, pending).await?;
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return self.time_is_up(&pending, timeout).await;
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Those of `pending` that do not answer yet. One that exited fails the wait (after
    /// stopping everything), unless it is optional: then it is dropped with a warning.
    async fn not_ready_yet<'a>(
        &mut self,
        probe: &Probe,
        pending: Vec<&'a Wait>,
    ) -> anyhow::Result<Vec<&'a Wait>> {
        let mut still = Vec::new();
        for wait in pending {
            if probe.answers(&wait.url, wait.any_answer).await {
                continue;
            }
            if let Some(status) = self.exit_status(&wait.name) {
                let log = self.log_of(&wait.name);
                let message = format!(
                    "{} exited ({status}) before it was ready; see {}",
                    wait.name,
                    log.display()
                );
                if self.role_of(&wait.name) == Role::Optional {
                    tell(&format!("warning: {message}; going on without it"));
                    continue;
                }
                self.stop_all().await;
                bail!("{message}\n{}", tail(&log));
            }
            still.push(wait);
        }
        Ok(still)
    }

    /// The wait's time is up with `pending` not ready: going on if all of them are
    /// optional, otherwise everything is stopped and the wait fails.
    async fn time_is_up(&mut self, pending: &[&Wait], timeout: Duration) -> anyhow::Result<()> {
        let names: Vec<&str> = pending.iter().map(|w| w.name.as_str()).collect();
        let logs = self.log_of(names[0]);
        let logs = logs.parent().unwrap_or(&logs).display().to_string();
        if pending
            .iter()
            .all(|w| self.role_of(&w.name) == Role::Optional)
        {
            tell(&format!(
                "warning: {} not ready after {} s; going on (logs in {logs})",
                names.join(", "),
                timeout.as_secs()
            ));
            return Ok(());
        }
        self.stop_all().await;
        bail!(
            "not ready after {} s: {} (logs in {logs})",
            timeout.as_secs(),
            names.join(", ")
        )
    }

    /// The pid of a process not known to have exited.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| m.child.id())
    }

    /// Runs until one of `signals` comes, reporting any process that exits on its own,
    /// then stops everything.
    pub async fn run_until_stopped(mut self, signals: &mut StopSignals) {
        let mut check = tokio::time::interval(Duration::from_millis(500));
        let received = loop {
            tokio::select! {
                received = signals.received() => break received,
                _ = check.tick() => self.report_exits(),
            }
        };
        tell(&format!("{received}: stopping..."));
        self.stop_all().await;
    }

    fn report_exits(&mut self) {
        for managed in &mut self.children {
            if managed.exited {
                continue;
            }
            if let Ok(Some(status)) = managed.child.try_wait() {
                managed.exited = true;
                tell(&format!(
                    "warning: {} exited ({status}); see {}",
                    managed.name,
                    managed.log.display()
                ));
            }
        }
    }

    /// SIGTERM to every process, then up to [`STOP_TIMEOUT`] for each to exit, then SIGKILL.
    pub async fn stop_all(&mut self) {
        for managed in &self.children {
            terminate(&managed.child);
        }
        for managed in &mut self.children {
            if tokio::time::timeout(STOP_TIMEOUT, managed.child.wait())
                .await
                .is_err()
            {
                tell(&format!(
                    "{} did not stop within {} s; killing it",
                    managed.name,
                    STOP_TIMEOUT.as_secs()
                ));
                let _ = managed.child.kill().await;
            }
        }
    }

    fn managed(&self, name: &str) -> Option<&Managed> {
        self.children.iter().find(|m| m.name == name)
    }

    /// How the process ended, if it has (then it is not reported again).
    fn exit_status(&mut self, name: &str) -> Option<std::process::ExitStatus> {
        let managed = self.children.iter_mut().find(|m| m.name == name)?;
        let status = managed.child.try_wait().ok().flatten()?;
        managed.exited = true;
        Some(status)
    }

    fn log_of(&self, name: &str) -> PathBuf {
        self.managed(name)
            .map(|m| m.log.clone())
            .unwrap_or_default()
    }

    fn role_of(&self, name: &str) -> Role {
        self.managed(name).map_or(Role::Optional, |m| m.role)
    }
}

/// The signals that stop a supervised group: Ctrl+C (SIGINT), `cargo xtask local --stop`
/// (SIGTERM) and a closed terminal (SIGHUP). Listening starts when this is made, and a
/// signal that comes before anyone waits is kept for the first [`StopSignals::received`].
pub struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn listen() -> anyhow::Result<StopSignals> {
        let on = |kind: SignalKind, name: &str| {
            listen(kind).with_context(|| format!("listening for {name}"))
        };
        Ok(StopSignals {
            interrupt: on(SignalKind::interrupt(), "SIGINT")?,
            terminate: on(SignalKind::terminate(), "SIGTERM")?,
            hangup: on(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// Waits for the next of them; its name.
    pub async fn received(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}

/// A line on stderr that never panics: after SIGHUP the terminal is gone, a write to it
/// fails (EIO), and `eprintln!` would panic halfway through stopping the mesh.
pub fn tell(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// [`tell`] for stdout (results, like the mesh's URLs). A terminal closed while they are
/// being written (the reader saw the first line and hung up) fails the rest of the write;
/// `println!` would panic there, and the supervisor would die before stopping the mesh,
/// its record left saying "running".
pub fn show(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// Asks a child to stop (SIGTERM), as Kubernetes would.
pub fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        signal(pid, Signal::SIGTERM);
    }
}

/// Sends `signal` to `pid`; a process that is already gone is not an error. Only for a
/// child this process has not reaped (its pid cannot be reused yet) or a pid checked by
/// [`crate::identity::signal_recorded`].
pub fn signal(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// The last lines of a log, for an error message.
fn tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
