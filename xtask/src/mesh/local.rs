//! What `cargo xtask local` started, written to `target/local/mesh.json` as it starts
//! (atomically: a whole record or the previous one, never half), and marked stopped when
//! it stops: the topology, every service's ports, every process's pid and identity (its
//! program and start time), every tool's container. The commands that act on the running
//! mesh read it; `cargo xtask logs` reads it after the mesh stopped too, for its
//! services' logs. Also the lock (`target/local/local.lock`) that lets one
//! `cargo xtask local` run at a time.

use std::{
    fmt,
    fs::{File, OpenOptions},
    io::{Read as _, Write as _},
    path::PathBuf,
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::{
    identity::{ProcessIdentity, Standing, standing},
    paths::local_state,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LocalMesh {
    /// The `cargo xtask local` process that watches the others.
    pub supervisor_pid: u32,
    /// Which process `supervisor_pid` is; `None` in a record of an older xtask, whose
    /// pids are never signalled.
    #[serde(default)]
    pub supervisor_identity: Option<ProcessIdentity>,
    /// The topology file given with `--topology`; `None`: the built-in graph.
    pub topology_file: Option<PathBuf>,
    /// The entry service (the gateway), on port 30080.
    pub entry: String,
    pub services: Vec<ServiceProcess>,
    pub tools: Vec<ToolProcess>,
    /// Everything it started has stopped.
    #[serde(default)]
    pub stopped: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceProcess {
    pub name: String,
    pub port: u16,
    /// The fault-injection API, on 127.0.0.1.
    pub admin_port: u16,
    pub pid: u32,
    /// Which process `pid` is: it is signalled only while it still is that process.
    #[serde(default)]
    pub identity: Option<ProcessIdentity>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ToolProcess {
    /// `prometheus`, `grafana`, `alertmanager`, `otel-collector` or `jaeger`.
    pub name: String,
    /// Where a person opens it.
    pub url: String,
    pub pid: u32,
    /// Which process `pid` is (for Jaeger from Docker, the `docker run` client): it is
    /// signalled only while it still is that process.
    #[serde(default)]
    pub identity: Option<ProcessIdentity>,
    /// The Docker container it runs in, if it does (Jaeger without a binary on PATH).
    pub container: Option<String>,
}

/// The log file of a service or tool of the local mesh.
pub fn log_file(name: &str) -> PathBuf {
    local_state().join("logs").join(format!("{name}.log"))
}

fn record_path() -> PathBuf {
    local_state().join("mesh.json")
}

fn lock_path() -> PathBuf {
    local_state().join("local.lock")
}

impl LocalMesh {
    /// The record of the last `cargo xtask local`, running or not (a killed supervisor
    /// leaves it unmarked, which is how `--stop` still finds its processes).
    pub fn recorded() -> Option<LocalMesh> {
        let text = std::fs::read_to_string(record_path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The local mesh, if `cargo xtask local` is running now: its recorded supervisor is
    /// still that very process.
    pub fn running() -> Option<LocalMesh> {
        LocalMesh::recorded().filter(|mesh| {
            !mesh.stopped
                && standing(mesh.supervisor_pid, mesh.supervisor_identity.as_ref())
                    == Standing::Recorded
        })
    }

    /// Replaces the record whole: written to a file of its own in the same directory,
    /// then renamed over it, so a reader sees the old record or the new one.
    pub fn write(&self) -> anyhow::Result<()> {
        let path = record_path();
        let temporary = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let text = serde_json::to_string_pretty(self)?;
        let written = File::create(&temporary)
            .and_then(|mut file| {
                file.write_all(text.as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&temporary, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.with_context(|| format!("writing {}", path.display()))
    }

    /// Records that everything has stopped; the record stays for `cargo xtask logs`.
    pub fn mark_stopped(&mut self) {
        self.stopped = true;
        if let Err(error) = self.write() {
            crate::supervisor::tell(&format!("warning: {error:#}"));
        }
    }

    pub fn service(&self, name: &str) -> Option<&ServiceProcess> {
        self.services.iter().find(|service| service.name == name)
    }

    /// The entry service's URL, where traffic and the smoke test go.
    pub fn entry_url(&self) -> String {
        let port = self.service(&self.entry).map_or(0, |service| service.port);
        format!("http://localhost:{port}")
    }
}

/// The lock that lets one `cargo xtask local` run at a time: `target/local/local.lock`,
/// taken before the build and held for the life of the run. The OS releases it however
/// the holder ends (even killed), and children do not inherit it (std opens files
/// close-on-exec). The file holds the holder's pid, for the message of the one turned
/// away.
#[derive(Debug)]
pub struct RunLock {
    _held: File,
}

/// Another `cargo xtask local` holds the lock.
#[derive(Debug)]
pub struct HeldByAnother {
    /// The holder's pid, unless it has only just taken the lock.
    pub pid: Option<u32>,
}

impl fmt::Display for HeldByAnother {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pid {
            Some(pid) => write!(
                f,
                "another `cargo xtask local` (pid {pid}) is starting or running"
            ),
            None => write!(f, "another `cargo xtask local` is starting or running"),
        }
    }
}

impl RunLock {
    /// Takes the lock, or says who holds it; never waits. Creates `target/local/` and
    /// the lock file, and writes nothing else.
    pub fn try_take() -> anyhow::Result<Result<RunLock, HeldByAnother>> {
        let path = lock_path();
        let dir = local_state();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0)
                    .and_then(|()| write!(file, "{}", std::process::id()))
                    .with_context(|| format!("writing {}", path.display()))?;
                Ok(Ok(RunLock { _held: file }))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                Ok(Err(HeldByAnother {
                    pid: text.trim().parse().ok(),
                }))
            }
            Err(std::fs::TryLockError::Error(error)) => {
                Err(error).with_context(|| format!("locking {}", path.display()))
            }
        }
    }
}
