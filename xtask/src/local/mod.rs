//! `cargo xtask local`: the whole mesh as local processes, plus the observability tools
//! found on PATH, with no cluster.

mod stack;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use contract::{
    endpoints,
    topology::{Service, Topology, url_variable},
};
use nix::sys::signal::Signal;

use crate::{
    cmd::Cmd,
    identity::{
        ProcessIdentity, StaleNote, StaleReason, Standing, gone_within, signal_recorded, standing,
    },
    mesh::local::{LocalMesh, RunLock, ServiceProcess, ToolProcess, log_file},
    paths::{LOCAL_STATE, local_state, target_dir, workspace_root},
    ports::{self, admin_port, entry_service, service_ports},
    supervisor::{Role, STOP_TIMEOUT, StopSignals, Supervisor, Wait, show, tell},
    tools,
};
pub use stack::{CONTAINER_LABEL, JaegerFrom, Tool, jaeger_command, jaeger_image};

#[derive(Debug, clap::Args)]
#[command(after_help = format!("\
Examples:
  cargo xtask local                  # build, start everything, wait; Ctrl+C stops it all
  cargo xtask local --stop           # stop a mesh started from another terminal
  cargo xtask local --topology my-graph.yaml --no-observability
  cargo xtask local --otlp-endpoint http://127.0.0.1:4319   # spans to your own collector

Ports (127.0.0.1 only): gateway 30080 (the kind cluster's NodePort too), the other
services 30081-30086 in topology order, their fault APIs 1000 above (31080-31086);
{}; every one is checked free before anything starts. Each tool runs when found on PATH; Jaeger, which nixpkgs lacks,
runs from Docker (the cluster's image, ports on 127.0.0.1 only) when no binary is on
PATH and a Docker engine answers. Spans are exported whenever a collector or Jaeger
runs, or to --otlp-endpoint; otherwise they go nowhere (OTEL_TRACES_EXPORTER=none), but
every request still has its trace id: the x-trace-id header, the logs' trace_id, and
`cargo xtask logs --trace TRACE_ID`.
Ctrl+C, a closed terminal (SIGHUP) and --stop all stop everything: SIGTERM, up to 15 s,
then SIGKILL. One `cargo xtask local` at a time (the lock target/local/local.lock); a
second one exits at once, touching nothing.
Logs and data: target/local/ (`cargo xtask logs` reads the logs); what runs:
target/local/mesh.json, each process with its pid and identity (program and start time):
--stop signals a pid only while it is still that process, and reports any other as
stale, leaving it alone.", tools::ports_help()))]
pub struct LocalArgs {
    /// Stop the mesh that `cargo xtask local` started (e.g. from another terminal); a
    /// recorded pid that is now another program is left alone
    #[arg(long)]
    pub stop: bool,

    /// Build and run the services with optimisations (faster under load, slower to build)
    #[arg(long)]
    pub release: bool,

    /// Start only the seven services, not Prometheus, Grafana, the collector or Jaeger
    #[arg(long)]
    pub no_observability: bool,

    /// A topology file to use instead of the built-in call graph
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,

    /// Export the services' spans to this OTLP/gRPC receiver (e.g. your own collector)
    /// instead of starting the OpenTelemetry Collector and Jaeger
    #[arg(long, value_name = "URL", value_parser = parse_otlp_endpoint)]
    pub otlp_endpoint: Option<String>,
}

/// An OTLP/gRPC endpoint: an http:// or https:// URL with a host.
fn parse_otlp_endpoint(text: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(text).with_context(|| format!("`{text}` is not a URL"))?;
    match (url.scheme(), url.host_str()) {
        ("http" | "https", Some(_)) => Ok(text.trim_end_matches('/').to_owned()),
        _ => bail!("`{text}` is not an OTLP/gRPC endpoint like http://127.0.0.1:4317"),
    }
}

impl LocalArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        if self.stop {
            return stop().await;
        }
        // Before anything is read, built or written, and held to the end: a second
        // `cargo xtask local` stops here, having touched nothing of this one.
        let _lock = match RunLock::try_take()? {
            Ok(lock) => lock,
            Err(held) => bail!("{held}; stop it with `cargo xtask local --stop`"),
        };
        // Listening before the first child starts: they are out of the terminal's reach
        // (`Supervisor::sole_receiver`), so this process must stop them on any of these.
        let mut signals = StopSignals::listen()?;
        let launch = self.plan()?;
        let binary = build_service(self.release)?;
        let state = local_state();
        std::fs::create_dir_all(state.join("logs"))
            .with_context(|| format!("creating {}", state.join("logs").display()))?;

        let mut supervisor = Supervisor::sole_receiver();
        let mut mesh = LocalMesh {
            supervisor_pid: std::process::id(),
            supervisor_identity: ProcessIdentity::own(),
            topology_file: launch.topology_file.clone(),
            entry: entry_service(&launch.topology).to_owned(),
            services: Vec::new(),
            tools: Vec::new(),
            stopped: false,
        };
        let mut waits = launch.spawn_services(&binary, &mut supervisor, &mut mesh)?;
        waits.extend(launch.spawn_tools(&state, &mut supervisor, &mut mesh)?);
        // Written before the wait, so that `--stop` finds every process even if this one
        // is killed while they start.
        mesh.write()?;

        let ready = tokio::select! {
            ready = supervisor.wait_ready(&waits, Duration::from_secs(30), Duration::from_millis(100)) => ready,
            received = signals.received() => Err(anyhow!("{received} while starting: stopped")),
        };
        if let Err(error) = ready {
            supervisor.stop_all().await;
            remove_containers(&mesh);
            mesh.mark_stopped();
            return Err(error);
        }
        // A tool that could not start is not part of the mesh (nor of its URLs).
        mesh.tools
            .retain(|tool| supervisor.pid(&tool.name).is_some());
        mesh.write()?;

        show(&urls(&mesh));
        supervisor.run_until_stopped(&mut signals).await;
        remove_containers(&mesh);
        mesh.mark_stopped();
        tell(&format!(
            "stopped; logs are in {}",
            state.join("logs").display()
        ));
        Ok(())
    }

    /// What to start: the topology, its ports (checked free), the tools found, where
    /// spans go.
    fn plan(&self) -> anyhow::Result<Launch> {
        let topology = Topology::load(self.topology.as_deref()).context("--topology")?;
        let ports = service_ports(&topology);
        let tools = if self.no_observability {
            Vec::new()
        } else {
            stack::find_tools(self.otlp_endpoint.is_none())
        };
        ports::check_free(
            ports::service_listeners(&ports).chain(tools.iter().flat_map(stack::Tool::listeners)),
        )?;
        let otlp_endpoint = self
            .otlp_endpoint
            .clone()
            .or_else(|| stack::otlp_endpoint(&tools));
        let topology_file = self
            .topology
            .as_deref()
            .map(std::path::absolute)
            .transpose()?;
        Ok(Launch {
            topology,
            ports,
            tools,
            otlp_endpoint,
            topology_file,
        })
    }
}

/// What one `cargo xtask local` starts.
struct Launch {
    topology: Topology,
    ports: BTreeMap<String, u16>,
    tools: Vec<Tool>,
    otlp_endpoint: Option<String>,
    topology_file: Option<PathBuf>,
}

impl Launch {
    /// Starts every service, recording each in `mesh`; what to wait for.
    fn spawn_services(
        &self,
        binary: &Path,
        supervisor: &mut Supervisor,
        mesh: &mut LocalMesh,
    ) -> anyhow::Result<Vec<Wait>> {
        let mut waits = Vec::new();
        for service in self.topology.services() {
            let port = self.ports[&service.name];
            let cmd = service_command(
                binary,
                service,
                &self.ports,
                admin_port(port),
                self.otlp_endpoint.as_deref(),
                self.topology_file.as_deref(),
            );
            let pid =
                supervisor.spawn(&service.name, Role::Essential, cmd, log_file(&service.name))?;
            mesh.services.push(ServiceProcess {
                name: service.name.clone(),
                port,
                admin_port: admin_port(port),
                pid,
                identity: ProcessIdentity::of(pid),
            });
            waits.push(Wait {
                name: service.name.clone(),
                url: format!("http://127.0.0.1:{port}{}", endpoints::READY),
                any_answer: false,
            });
        }
        Ok(waits)
    }

    /// Starts every tool that can be, recording each in `mesh`; what to wait for.
    fn spawn_tools(
        &self,
        state: &Path,
        supervisor: &mut Supervisor,
        mesh: &mut LocalMesh,
    ) -> anyhow::Result<Vec<Wait>> {
        let mut waits = Vec::new();
        for tool in &self.tools {
            let cmd = match tool.command(state, &self.ports) {
                Ok(cmd) => cmd,
                Err(error) => {
                    eprintln!("warning: not starting {}: {error:#}", tool.name());
                    continue;
                }
            };
            let pid = supervisor.spawn(tool.name(), Role::Optional, cmd, log_file(tool.name()))?;
            mesh.tools.push(ToolProcess {
                name: tool.name().to_owned(),
                url: tool.info().user_url(),
                pid,
                identity: ProcessIdentity::of(pid),
                container: tool.container().map(str::to_owned),
            });
            let (url, any_answer) = tool.ready_probe();
            waits.push(Wait {
                name: tool.name().to_owned(),
                url,
                any_answer,
            });
        }
        Ok(waits)
    }
}

/// `cargo xtask local --stop`: asks the supervisor to stop everything; if it is gone
/// (killed), stops the processes and containers it recorded. A recorded pid is signalled
/// only while it is still the process recorded (its program and start time); one that
/// is now another's is reported stale and left alone. Nothing to stop is fine. It needs
/// no lock: the running `cargo xtask local` holds it.
pub async fn stop() -> anyhow::Result<()> {
    let Some(mesh) = LocalMesh::recorded().filter(|mesh| !mesh.stopped) else {
        eprintln!("no local mesh is running");
        return Ok(());
    };
    let pid = mesh.supervisor_pid;
    let identity = mesh.supervisor_identity.as_ref();
    match standing(pid, identity) {
        Standing::Recorded => {
            eprintln!("stopping the local mesh (supervisor pid {pid})...");
            signal_recorded(pid, identity, Signal::SIGTERM);
            if !gone_within(pid, identity, STOP_TIMEOUT + Duration::from_secs(5)).await {
                bail!("the supervisor (pid {pid}) did not stop; kill it with `kill {pid}`");
            }
            eprintln!("stopped");
            return Ok(());
        }
        Standing::Stale(reason) => report_stale("the supervisor", pid, &reason),
        Standing::Gone => {}
    }
    stop_leftovers().await
}

/// Says that a recorded pid is now another process, which is left alone.
fn report_stale(name: &str, pid: u32, reason: &StaleReason) {
    eprintln!("{}", StaleNote { name, pid, reason });
}

/// The supervisor is gone: stops, itself, what the record says it started. Under the
/// lock (every running `cargo xtask local` holds it), so that no new one rewrites the
/// record meanwhile.
async fn stop_leftovers() -> anyhow::Result<()> {
    let _lock = match RunLock::try_take()? {
        Ok(lock) => lock,
        Err(held) => bail!(
            "{held}, and has not recorded itself yet; try `cargo xtask local --stop` again in a moment"
        ),
    };
    let Some(mut mesh) = LocalMesh::recorded().filter(|mesh| !mesh.stopped) else {
        return Ok(());
    };
    let recorded = mesh
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.pid, s.identity.as_ref()))
        .chain(
            mesh.tools
                .iter()
                .map(|t| (t.name.as_str(), t.pid, t.identity.as_ref())),
        );
    let mut stopping = Vec::new();
    for (name, pid, identity) in recorded {
        match signal_recorded(pid, identity, Signal::SIGTERM) {
            Standing::Recorded => stopping.push((name, pid, identity)),
            Standing::Stale(reason) => report_stale(name, pid, &reason),
            Standing::Gone => {}
        }
    }
    for (name, pid, identity) in stopping {
        if !gone_within(pid, identity, STOP_TIMEOUT).await {
            signal_recorded(pid, identity, Signal::SIGKILL);
        }
        eprintln!("stopped {name} (pid {pid})");
    }
    remove_containers(&mesh);
    mesh.mark_stopped();
    Ok(())
}

/// Removes the containers the mesh started (normally gone already: `docker run --rm`
/// stops with its container), quietly: one that is gone is fine.
fn remove_containers(mesh: &LocalMesh) {
    for container in mesh.tools.iter().filter_map(|t| t.container.as_deref()) {
        let _ = Cmd::new("docker", "removing the Jaeger container")
            .args(["rm", "--force", container])
            .succeeds();
    }
}

/// The command that starts `service` on 127.0.0.1 at `ports[service]`, its admin API on
/// `admin_port`, its dependencies at their ports in `ports`; spans exported to
/// `otlp_endpoint`, or nowhere (`OTEL_TRACES_EXPORTER=none`: with no receiver, requests still
/// get trace ids, `x-trace-id` and log lines keyed by them); the built-in graph unless
/// `topology_file`.
pub fn service_command(
    binary: &Path,
    service: &Service,
    ports: &BTreeMap<String, u16>,
    admin_port: u16,
    otlp_endpoint: Option<&str>,
    topology_file: Option<&Path>,
) -> Cmd {
    let mut cmd = Cmd::new(binary, format!("starting {}", service.name))
        .env("SERVICE_NAME", &service.name)
        .env("HOST", "127.0.0.1")
        .env("PORT", ports[&service.name].to_string())
        .env("ADMIN_PORT", admin_port.to_string());
    for dependency in service.dependencies() {
        cmd = cmd.env(
            url_variable(dependency),
            format!("http://127.0.0.1:{}", ports[dependency]),
        );
    }
    cmd = match otlp_endpoint {
        Some(endpoint) => cmd.env(telemetry::OTLP_ENDPOINT_VARIABLE, endpoint),
        None => cmd.env(telemetry::TRACES_EXPORTER_VARIABLE, "none"),
    };
    match topology_file {
        Some(path) => cmd.env("TOPOLOGY_FILE", path),
        None => cmd,
    }
}

/// Builds mock-service with the same cargo that runs xtask; returns the binary.
///
/// A debug build names `--package xtask` too, although xtask is built already: cargo
/// unifies the features of shared dependencies (tokio, hyper, ...) over the packages it
/// is asked to build, so mock-service alone would compile every shared dependency a
/// second time with other features. With both, the set is the one `cargo xtask` itself
/// was built with, and a first `cargo xtask local` compiles each dependency once. (A
/// release build shares nothing with xtask's debug build anyway.)
fn build_service(release: bool) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let packages: &[&str] = if release {
        &["--release", "--package", "mock-service"]
    } else {
        &["--package", "mock-service", "--package", "xtask"]
    };
    let cmd = Cmd::new(cargo, "building mock-service")
        .arg("build")
        .args(packages)
        .current_dir(workspace_root());
    cmd.run()?;
    let binary = target_dir()
        .join(if release { "release" } else { "debug" })
        .join("mock-service");
    if !binary.exists() {
        bail!("the build did not produce {}", binary.display());
    }
    Ok(binary)
}

fn urls(mesh: &LocalMesh) -> String {
    let mut out =
        String::from("\nThe mesh is up (Ctrl+C, or `cargo xtask local --stop`, stops it):\n");
    for service in &mesh.services {
        out.push_str(&format!(
            "  {:<22} http://localhost:{}\n",
            service.name, service.port
        ));
    }
    for tool in &mesh.tools {
        out.push_str(&format!("  {:<22} {}\n", tool.name, tool.url));
    }
    out.push_str(&format!(
        "\nTry: curl -X POST {}{}\n     cargo xtask traffic --duration 60\nLogs: {}\n",
        mesh.entry_url(),
        endpoints::ACTION,
        Path::new(LOCAL_STATE).join("logs").display()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_no_receiver_the_services_trace_but_export_nothing() {
        let topology = Topology::built_in();
        let gateway = topology.service("gateway-service").expect("gateway");
        let ports = service_ports(&topology);
        let binary = Path::new("mock-service");
        let command = |otlp_endpoint| {
            service_command(binary, gateway, &ports, 31080, otlp_endpoint, None).to_string()
        };
        let nowhere = command(None);
        assert!(nowhere.contains("OTEL_TRACES_EXPORTER=none "), "{nowhere}");
        assert!(!nowhere.contains("OTEL_SDK_DISABLED"), "{nowhere}");
        assert!(
            !nowhere.contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "{nowhere}"
        );
        let exporting = command(Some("http://127.0.0.1:4317"));
        assert!(
            exporting.contains("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 "),
            "{exporting}"
        );
        assert!(!exporting.contains("OTEL_TRACES_EXPORTER"), "{exporting}");
    }

    #[test]
    fn an_otlp_endpoint_is_an_http_url_with_a_host() {
        assert_eq!(
            parse_otlp_endpoint("http://127.0.0.1:4319/").expect("valid"),
            "http://127.0.0.1:4319"
        );
        assert!(parse_otlp_endpoint("https://collector").is_ok());
        for bad in ["127.0.0.1:4317", "ftp://host:21", "not a url", "http://"] {
            assert!(parse_otlp_endpoint(bad).is_err(), "{bad}");
        }
    }
}
