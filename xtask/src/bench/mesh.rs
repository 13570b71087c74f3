//! The benchmark's own mesh: the release binary as seven processes on free loopback
//! ports, the built-in call graph with no simulated work, and spans exported, made but not
//! exported, or tracing off.
//! Separate from `cargo xtask local` so the two never share ports or pid files.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use contract::{
    endpoints,
    topology::{DEFAULT_TOPOLOGY, Route, Topology},
};

use super::{footprint, report::Telemetry};
use crate::{
    local::service_command,
    ports::free_ports,
    supervisor::{Role, Supervisor, Wait},
};

pub struct BenchMesh {
    supervisor: Supervisor,
    names: Vec<String>,
    pub gateway: String,
}

/// The zero-work graph, parsed, and the file the services read it from.
pub struct ZeroWork {
    pub topology: Topology,
    pub file: PathBuf,
}

impl BenchMesh {
    /// Starts every service of `graph` with telemetry `mode` (spans exported to
    /// `otlp_endpoint` when it says so), and waits until each is ready.
    pub async fn start(
        binary: &Path,
        graph: &ZeroWork,
        mode: Telemetry,
        otlp_endpoint: &str,
        logs: &Path,
    ) -> anyhow::Result<BenchMesh> {
        let names: Vec<String> = graph.topology.services().map(|s| s.name.clone()).collect();
        let mut free = free_ports(names.len() * 2)?.into_iter();
        let ports: BTreeMap<String, u16> = names.iter().cloned().zip(free.by_ref()).collect();
        std::fs::create_dir_all(logs)?;
        let mut supervisor = Supervisor::new();
        let mut waits = Vec::new();
        for service in graph.topology.services() {
            let admin_port = free.next().context("a free port")?;
            let mut cmd = service_command(
                binary,
                service,
                &ports,
                admin_port,
                mode.exported().then_some(otlp_endpoint),
                Some(&graph.file),
            );
            if !mode.exemplars() {
                cmd = cmd.env(telemetry::EXEMPLAR_FILTER_VARIABLE, "always_off");
            }
            // Not exported is `OTEL_TRACES_EXPORTER=none` (service_command); off wins.
            if mode == Telemetry::TracingOff {
                cmd = cmd.env(telemetry::SDK_DISABLED_VARIABLE, "true");
            }
            let log = logs.join(format!("{}.log", service.name));
            supervisor.spawn(&service.name, Role::Essential, cmd, log)?;
            waits.push(Wait {
                name: service.name.clone(),
                url: format!(
                    "http://127.0.0.1:{}{}",
                    ports[&service.name],
                    endpoints::READY
                ),
                any_answer: false,
            });
        }
        supervisor
            .wait_ready(&waits, Duration::from_secs(20), Duration::from_millis(20))
            .await
            .context("the benchmark's mesh")?;
        Ok(BenchMesh {
            supervisor,
            names,
            gateway: format!("127.0.0.1:{}", ports["gateway-service"]),
        })
    }

    /// Each service's resident memory now and at its peak.
    pub fn memory(&self) -> anyhow::Result<Vec<(String, footprint::Memory)>> {
        self.names
            .iter()
            .map(|name| {
                let pid = self
                    .supervisor
                    .pid(name)
                    .with_context(|| format!("{name} has exited"))?;
                Ok((name.clone(), footprint::Memory::of(pid)?))
            })
            .collect()
    }

    /// SIGTERM to every service, then waits for each to exit.
    pub async fn stop(mut self) {
        self.supervisor.stop_all().await;
    }
}

/// The built-in graph with every `work_ms` removed: what is measured is the mesh's own
/// cost (HTTP, telemetry), not simulated work.
pub fn write_zero_work_topology(dir: &Path) -> anyhow::Result<ZeroWork> {
    let yaml: String = DEFAULT_TOPOLOGY
        .lines()
        .filter(|line| !line.trim_start().starts_with("work_ms:"))
        .map(|line| format!("{line}\n"))
        .collect();
    let topology = Topology::parse("zero-work topology", &yaml)?;
    for service in topology.services() {
        if Route::ALL
            .into_iter()
            .any(|route| service.plan(route).work_ms.is_some())
        {
            bail!("{} still has simulated work", service.name);
        }
    }
    std::fs::create_dir_all(dir)?;
    let file = dir.join("topology-zero-work.yaml");
    std::fs::write(&file, yaml)?;
    Ok(ZeroWork { topology, file })
}
