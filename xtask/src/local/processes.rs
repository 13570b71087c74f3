//! Starting, watching and stopping the local processes, with pid files so that
//! `cargo xtask local --stop` works from another terminal.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tokio::process::Child;

use crate::{cmd::Cmd, readiness::Probe};

const STOP_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Supervisor {
    state: PathBuf,
    children: Vec<Managed>,
}

struct Managed {
    name: String,
    child: Child,
    log: PathBuf,
    /// Already reported as exited.
    exited: bool,
}

impl Supervisor {
    /// Records this process as the supervisor, for `--stop`.
    pub fn new(state: &Path) -> anyhow::Result<Supervisor> {
        write_pid(&state.join("xtask.pid"), std::process::id())?;
        Ok(Supervisor {
            state: state.to_owned(),
            children: Vec::new(),
        })
    }

    pub fn spawn(&mut self, name: &str, cmd: Cmd) -> anyhow::Result<()> {
        let log = self.state.join("logs").join(format!("{name}.log"));
        let child = cmd.spawn_logged(&log)?;
        if let Some(pid) = child.id() {
            write_pid(&self.state.join("pids").join(name), pid)?;
        }
        self.children.push(Managed {
            name: name.to_owned(),
            child,
            log,
            exited: false,
        });
        Ok(())
    }

    /// Polls each `(name, url, any_answer)` until it answers 2xx (or anything, when
    /// `any_answer`). A process that exits, or is not
    /// ready in time, stops everything if it is a service, and is reported if it is a tool.
    pub async fn wait_ready(
        &mut self,
        waits: &[(String, String, bool)],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let probe = Probe::new()?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pending: Vec<&(String, String, bool)> = waits.iter().collect();
        eprintln!("waiting for {} processes to be ready...", pending.len());
        while !pending.is_empty() {
            let mut still = Vec::new();
            for wait in pending {
                let (name, url, any_answer) = wait;
                if probe.answers(url, *any_answer).await {
                    continue;
                }
                if let Some(status) = self.exit_status(name) {
                    let message = format!(
                        "{name} exited ({status}) before it was ready; see {}",
                        self.log_of(name).display()
                    );
                    if self.is_tool(name) {
                        eprintln!("warning: {message}; going on without it");
                        continue;
                    }
                    self.stop_all().await;
                    bail!("{message}\n{}", tail(&self.log_of(name)));
                }
                still.push(wait);
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let names: Vec<&str> = pending.iter().map(|(n, _, _)| n.as_str()).collect();
                if pending.iter().all(|(name, _, _)| self.is_tool(name)) {
                    eprintln!(
                        "warning: {} not ready after {} s; going on (see target/local/logs)",
                        names.join(", "),
                        timeout.as_secs()
                    );
                    break;
                }
                self.stop_all().await;
                bail!(
                    "not ready after {} s: {} (see target/local/logs)",
                    timeout.as_secs(),
                    names.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Runs until Ctrl+C or SIGTERM (what `--stop` sends), reporting any process that
    /// exits on its own, then stops everything.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("listening for SIGTERM")?;
        let mut check = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = sigterm.recv() => break,
                _ = check.tick() => self.report_exits(),
            }
        }
        eprintln!("stopping...");
        self.stop_all().await;
        eprintln!("stopped; logs are in {}", self.state.join("logs").display());
        Ok(())
    }

    fn report_exits(&mut self) {
        for managed in &mut self.children {
            if managed.exited {
                continue;
            }
            if let Ok(Some(status)) = managed.child.try_wait() {
                managed.exited = true;
                eprintln!(
                    "warning: {} exited ({status}); see {}",
                    managed.name,
                    managed.log.display()
                );
            }
        }
    }

    /// SIGTERM to every process, then up to 15 s for each to exit, then SIGKILL.
    pub async fn stop_all(&mut self) {
        stop_children(
            self.children
                .iter_mut()
                .map(|managed| (managed.name.as_str(), &mut managed.child))
                .collect(),
        )
        .await;
        for managed in &self.children {
            let _ = std::fs::remove_file(self.state.join("pids").join(&managed.name));
        }
        let _ = std::fs::remove_file(self.state.join("xtask.pid"));
    }

    fn exit_status(&mut self, name: &str) -> Option<std::process::ExitStatus> {
        let managed = self.children.iter_mut().find(|m| m.name == name)?;
        managed.child.try_wait().ok().flatten()
    }

    fn log_of(&self, name: &str) -> PathBuf {
        self.state.join("logs").join(format!("{name}.log"))
    }

    fn is_tool(&self, name: &str) -> bool {
        !name.ends_with("-service")
    }
}

/// `cargo xtask local --stop`: asks the supervisor to stop everything; if it is gone
/// (killed), stops the processes it recorded.
pub async fn stop_recorded(state: &Path) -> anyhow::Result<()> {
    if let Some(pid) = read_pid(&state.join("xtask.pid")).filter(|pid| alive(*pid)) {
        eprintln!("stopping the local mesh (supervisor pid {pid})...");
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT + Duration::from_secs(5);
        while alive(pid) {
            if tokio::time::Instant::now() >= deadline {
                bail!("the supervisor (pid {pid}) did not stop; kill it with `kill {pid}`");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("stopped");
        return Ok(());
    }

    let mut stopped = Vec::new();
    if let Ok(entries) = std::fs::read_dir(state.join("pids")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) =
                read_pid(&entry.path()).filter(|pid| alive(*pid) && runs(*pid, &name))
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                stopped.push((name, pid));
            }
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let _ = std::fs::remove_file(state.join("xtask.pid"));
    if stopped.is_empty() {
        eprintln!("no local mesh is running");
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    for (name, pid) in &stopped {
        while alive(*pid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if alive(*pid) {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        eprintln!("stopped {name} (pid {pid})");
    }
    Ok(())
}

/// SIGTERM to each child, then up to 15 s for each to exit, then SIGKILL.
pub async fn stop_children(mut children: Vec<(&str, &mut Child)>) {
    for (_, child) in &children {
        terminate(child);
    }
    for (name, child) in &mut children {
        if tokio::time::timeout(STOP_TIMEOUT, child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "{name} did not stop within {} s; killing it",
                STOP_TIMEOUT.as_secs()
            );
            let _ = child.kill().await;
        }
    }
}

/// Asks a child to stop (SIGTERM), as Kubernetes would.
pub fn terminate(child: &Child) {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
}

pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn write_pid(path: &Path, pid: u32) -> anyhow::Result<()> {
    std::fs::write(path, pid.to_string()).with_context(|| format!("writing {}", path.display()))
}

/// Whether `pid` is a running process. A zombie (exited, not yet reaped by its parent)
/// is not: it holds no port and does no work.
pub fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok() && !zombie(pid)
}

fn zombie(pid: i32) -> bool {
    // /proc/<pid>/stat: "pid (comm) STATE ..."; comm may contain spaces and parentheses.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Guards against a recycled pid: on Linux the process's command line must mention the
/// program we started (`mock-service`, `prometheus`, ...).
fn runs(pid: i32, name: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return !cfg!(target_os = "linux");
    };
    let cmdline = String::from_utf8_lossy(&cmdline);
    let program = if name.ends_with("-service") {
        "mock-service"
    } else {
        name
    };
    cmdline.contains(program)
}

/// The last lines of a log, for an error message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
