//! The benchmark's own mesh: the release binary as seven processes on free loopback
//! ports, the guide's call graph with no simulated work, and span export on or off.
//! Separate from `cargo xtask local` so the two never share ports or pid files.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use mock_service::{
    endpoints,
    topology::{DEFAULT_TOPOLOGY, Route, Topology},
};
use tokio::process::Child;

use super::footprint;
use crate::{
    local::{service_command, stop_children},
    ports::free_ports,
    readiness::{Probe, Readiness},
};

pub struct BenchMesh {
    services: Vec<(String, Child)>,
    pub gateway: String,
}

/// The zero-work graph, parsed, and the file the services read it from.
pub struct ZeroWork {
    pub topology: Topology,
    pub file: PathBuf,
}

impl BenchMesh {
    /// Starts every service of `graph`, exporting spans to `spans_to` (`None`: span
    /// export off, metrics still on), with exemplars or without, and waits until each is
    /// ready.
    pub async fn start(
        binary: &Path,
        graph: &ZeroWork,
        spans_to: Option<&str>,
        exemplars: bool,
        logs: &Path,
    ) -> anyhow::Result<BenchMesh> {
        let names: Vec<String> = graph.topology.services().map(|s| s.name.clone()).collect();
        let mut free = free_ports(names.len() * 2)?.into_iter();
        let ports: BTreeMap<String, u16> = names.iter().cloned().zip(free.by_ref()).collect();
        std::fs::create_dir_all(logs)?;
        let mut services = Vec::new();
        for service in graph.topology.services() {
            let admin_port = free.next().context("a free port")?;
            let mut cmd = service_command(
                binary,
                service,
                &ports,
                admin_port,
                spans_to,
                Some(&graph.file),
            );
            if !exemplars {
                cmd = cmd.env("OTEL_METRICS_EXEMPLAR_FILTER", "always_off");
            }
            let child = cmd.spawn_logged(&logs.join(format!("{}.log", service.name)))?;
            services.push((service.name.clone(), child));
        }
        let mesh = BenchMesh {
            services,
            gateway: format!("127.0.0.1:{}", ports["gateway-service"]),
        };
        let probe = Probe::new()?;
        let mut mesh = mesh;
        for (name, child) in &mut mesh.services {
            let url = format!(
                "http://127.0.0.1:{}{}",
                ports[name.as_str()],
                endpoints::READY
            );
            match probe
                .wait(
                    &url,
                    child,
                    Duration::from_secs(20),
                    Duration::from_millis(20),
                )
                .await?
            {
                Readiness::Ready(_) => {}
                not_ready => bail!(
                    "{name} of the benchmark mesh was not ready ({not_ready:?}); logs in {}",
                    logs.display()
                ),
            }
        }
        Ok(mesh)
    }

    /// Each service's resident memory now and at its peak.
    pub fn memory(&self) -> anyhow::Result<Vec<(String, footprint::Memory)>> {
        self.services
            .iter()
            .map(|(name, child)| {
                let pid = child.id().context("a service has exited")?;
                Ok((name.clone(), footprint::Memory::of(pid)?))
            })
            .collect()
    }

    /// SIGTERM to every service, then waits for each to exit.
    pub async fn stop(mut self) {
        stop_children(
            self.services
                .iter_mut()
                .map(|(name, child)| (name.as_str(), child))
                .collect(),
        )
        .await;
    }
}

/// The guide's graph with every `work_ms` removed: what is measured is the mesh's own
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
