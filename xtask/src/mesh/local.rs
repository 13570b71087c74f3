//! What `cargo xtask local` started, written once to `target/local/mesh.json` as it
//! starts, and marked stopped when it stops: the topology, every service's ports and
//! pid, every tool's pid or container. The commands that act on the running mesh read
//! it; `cargo xtask logs` reads it after the mesh stopped too, for its services' logs.

use std::path::PathBuf;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::supervisor::alive;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LocalMesh {
    /// The `cargo xtask local` process that watches the others.
    pub supervisor_pid: u32,
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
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ToolProcess {
    /// `prometheus`, `grafana`, `alertmanager`, `otel-collector` or `jaeger`.
    pub name: String,
    /// Where a person opens it.
    pub url: String,
    /// The program's file name (`prometheus`, `docker`, ...): a recorded pid is only
    /// signalled while it still runs this program.
    pub program: String,
    pub pid: u32,
    /// The Docker container it runs in, if it does (Jaeger without a binary on PATH).
    pub container: Option<String>,
}

/// Where `cargo xtask local` keeps its logs, data and the record of what runs.
pub fn state_dir() -> PathBuf {
    crate::workspace_root().join("target").join("local")
}

/// The log file of a service or tool of the local mesh.
pub fn log_file(name: &str) -> PathBuf {
    state_dir().join("logs").join(format!("{name}.log"))
}

fn record_path() -> PathBuf {
    state_dir().join("mesh.json")
}

impl LocalMesh {
    /// The record of the last `cargo xtask local`, running or not (a killed supervisor
    /// leaves it unmarked, which is how `--stop` still finds its processes).
    pub fn recorded() -> Option<LocalMesh> {
        let text = std::fs::read_to_string(record_path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The local mesh, if `cargo xtask local` is running now.
    pub fn running() -> Option<LocalMesh> {
        LocalMesh::recorded().filter(|mesh| !mesh.stopped && alive(mesh.supervisor_pid))
    }

    pub fn write(&self) -> anyhow::Result<()> {
        let path = record_path();
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Records that everything has stopped; the record stays for `cargo xtask logs`.
    pub fn mark_stopped(&mut self) {
        self.stopped = true;
        if let Err(error) = self.write() {
            eprintln!("warning: {error:#}");
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
