//! Which process a pid is: its program and its start time, recorded when xtask starts a
//! process and compared before any signal to a recorded pid, so that a pid the kernel has
//! since handed to another program is reported stale and left alone.

use std::fmt;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::cmd::Cmd;

/// Who a process is. Two reads of one process are equal; a reused pid gives another
/// start time (and mostly another program). Compared only for equality, never parsed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    /// The program it runs: on Linux its `comm`, the executable's file name as exec set
    /// it (cut to 15 bytes); elsewhere `ps`'s `comm`.
    pub program: String,
    /// When it started: on Linux the boot's id and the clock tick after boot
    /// (/proc/PID/stat's starttime); elsewhere `ps`'s `lstart`, in UTC, to the second.
    pub started: String,
}

impl ProcessIdentity {
    /// The identity of the process `pid` now; `None` when there is none (or only a
    /// zombie: it has exited, holds no port and does no work).
    pub fn of(pid: u32) -> Option<ProcessIdentity> {
        if cfg!(target_os = "linux") {
            from_proc(pid)
        } else {
            ProcessIdentity::from_ps(pid)
        }
    }

    /// What [`ProcessIdentity::of`] asks off Linux: `ps`, which every Unix has, rather
    /// than a crate such as `sysinfo`: no dependency for a platform this machine cannot
    /// build for, and this very path runs (and is tested) on Linux too, where procps' `ps`
    /// takes the same options. `lstart` is to the second; with the program and the pid
    /// also equal, a reused pid would have to come round within that second.
    pub fn from_ps(pid: u32) -> Option<ProcessIdentity> {
        let answer = Cmd::new("ps", format!("asking which program pid {pid} runs"))
            .env("LC_ALL", "C")
            .env("TZ", "UTC")
            .args(["-o", "stat=,lstart=,comm=", "-p", &pid.to_string()])
            .read_quietly()
            .ok()
            .flatten()?;
        // "STATE Thu Dec  3 06:18:48 2026 PROGRAM", the program's name maybe with spaces.
        let mut words = answer.split_whitespace();
        if words.next()?.starts_with('Z') {
            return None;
        }
        let started: Vec<&str> = words.by_ref().take(5).collect();
        let program: Vec<&str> = words.collect();
        if started.len() < 5 || program.is_empty() {
            return None;
        }
        Some(ProcessIdentity {
            program: program.join(" "),
            started: started.join(" "),
        })
    }

    /// This process's own identity.
    pub fn own() -> Option<ProcessIdentity> {
        ProcessIdentity::of(std::process::id())
    }
}

/// Linux: /proc/PID/stat, which any user may read for any process, unlike
/// /proc/PID/exe (the same user only, and " (deleted)" once a rebuilt binary replaced
/// it). `comm` can be renamed by the process itself, but none of the programs the mesh
/// runs does; the start time alone already tells a reused pid. The boot id makes a
/// record from before a reboot stale.
fn from_proc(pid: u32) -> Option<ProcessIdentity> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID ... STARTTIME ...": comm may contain spaces and parentheses,
    // so the fields after it are counted from the last ')'; starttime is field 22.
    let (head, rest) = stat.rsplit_once(')')?;
    let (_, comm) = head.split_once('(')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?;
    let start_ticks = fields.get(22 - 3)?;
    if state.starts_with(['Z', 'X']) {
        return None;
    }
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(ProcessIdentity {
        program: comm.to_owned(),
        started: format!("boot {} tick {start_ticks}", boot.trim()),
    })
}

/// What a recorded pid is now.
#[derive(Debug, PartialEq, Eq)]
pub enum Standing {
    /// Still the process that was recorded: it may be signalled.
    Recorded,
    /// No process has that pid.
    Gone,
    /// Another process has the pid (or the record cannot tell); never signalled.
    Stale(StaleReason),
}

#[derive(Debug, PartialEq, Eq)]
pub enum StaleReason {
    /// Its program or start time differs from the record's.
    AnotherProgram,
    /// A record written by an older xtask, without identities: a name match is not
    /// enough to signal a process.
    NoIdentity,
}

/// What `pid`, recorded as `recorded`, is now.
pub fn standing(pid: u32, recorded: Option<&ProcessIdentity>) -> Standing {
    match (ProcessIdentity::of(pid), recorded) {
        (None, _) => Standing::Gone,
        (Some(_), None) => Standing::Stale(StaleReason::NoIdentity),
        (Some(now), Some(recorded)) if now == *recorded => Standing::Recorded,
        (Some(_), Some(_)) => Standing::Stale(StaleReason::AnotherProgram),
    }
}

/// The line that says a recorded pid was left alone, and why.
pub struct StaleNote<'a> {
    pub name: &'a str,
    pub pid: u32,
    pub reason: &'a StaleReason,
}

impl fmt::Display for StaleNote<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let StaleNote { name, pid, reason } = self;
        match reason {
            StaleReason::AnotherProgram => {
                write!(f, "{name}: pid {pid} is now another program; left alone")
            }
            StaleReason::NoIdentity => write!(
                f,
                "{name}: pid {pid} was recorded without its start time (by an older xtask), \
                 so it cannot be told from another program; left alone"
            ),
        }
    }
}

/// Sends `signal` to `pid` only while it is the process `recorded`; what it found. (The
/// check and the signal are two steps: the pid would have to be freed and handed to
/// another process in between, microseconds, while Linux hands pids out in turn.)
pub fn signal_recorded(pid: u32, recorded: Option<&ProcessIdentity>, signal: Signal) -> Standing {
    let standing = standing(pid, recorded);
    if standing == Standing::Recorded {
        crate::supervisor::signal(pid, signal);
    }
    standing
}

/// Waits up to `timeout` for the recorded process to be gone (exited, or its pid now
/// another's); whether it is.
pub async fn gone_within(
    pid: u32,
    recorded: Option<&ProcessIdentity>,
    timeout: std::time::Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while standing(pid, recorded) == Standing::Recorded {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that has been waited for: its pid names no process.
    fn a_finished_pid() -> u32 {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("run true");
        let pid = child.id();
        child.wait().expect("wait");
        pid
    }

    #[test]
    fn proc_tells_a_process_and_repeats_itself() {
        let own = std::process::id();
        let first = from_proc(own).expect("this process has an identity");
        assert_eq!(from_proc(own), Some(first.clone()));
        assert!(!first.program.is_empty() && !first.started.is_empty());
        assert_eq!(from_proc(a_finished_pid()), None);
    }

    #[test]
    fn another_program_or_start_time_is_stale_and_a_missing_identity_too() {
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = sleeper.id();
        let real = ProcessIdentity::of(pid).expect("sleep runs");
        let other_start = ProcessIdentity {
            started: format!("{} again", real.started),
            ..real.clone()
        };
        let other_program = ProcessIdentity {
            program: "prometheus".to_owned(),
            ..real.clone()
        };
        assert_eq!(standing(pid, Some(&real)), Standing::Recorded);
        for recorded in [Some(&other_start), Some(&other_program)] {
            assert_eq!(
                signal_recorded(pid, recorded, Signal::SIGKILL),
                Standing::Stale(StaleReason::AnotherProgram)
            );
        }
        assert_eq!(
            signal_recorded(pid, None, Signal::SIGKILL),
            Standing::Stale(StaleReason::NoIdentity)
        );
        assert!(sleeper.try_wait().expect("try_wait").is_none(), "signalled");
        assert_eq!(
            signal_recorded(pid, Some(&real), Signal::SIGKILL),
            Standing::Recorded
        );
        assert!(!sleeper.wait().expect("wait").success());
        assert_eq!(standing(pid, Some(&real)), Standing::Gone);
    }
}
