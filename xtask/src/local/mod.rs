//! `cargo xtask local`: the whole mesh as local processes, plus the observability tools
//! found on PATH, with no cluster.

mod stack;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use mock_service::{
    config::url_variable,
    endpoints,
    topology::{Service, Topology},
};
use nix::sys::signal::Signal;

use crate::{
    cmd::Cmd,
    mesh::local::{LocalMesh, ServiceProcess, ToolProcess, log_file, state_dir},
    ports::{self, admin_port, entry_service, service_ports},
    supervisor::{Role, STOP_TIMEOUT, Supervisor, Wait, alive, exited_within, runs, signal},
    target_dir, workspace_root,
};
pub use stack::{CONTAINER_LABEL, JaegerFrom, Tool, jaeger_command, jaeger_image};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask local                  # build, start everything, wait; Ctrl+C stops it all
  cargo xtask local --stop           # stop a mesh started from another terminal
  cargo xtask local --topology my-graph.yaml --no-observability
  cargo xtask local --otlp-endpoint http://127.0.0.1:4319   # spans to your own collector

Ports (127.0.0.1 only): gateway 30080 (the kind cluster's NodePort too), the other
services 30081-30086 in topology order, their fault APIs 1000 above (31080-31086);
Prometheus 9090, Alertmanager 9093, Grafana 3000, Jaeger 16686 (UI) and 16685 (query
gRPC), OpenTelemetry Collector 4317/4318 and 13133 (health); every one is checked free
before anything starts. Each tool runs when found on PATH; Jaeger, which nixpkgs lacks,
runs from Docker (the cluster's image, ports on 127.0.0.1 only) when no binary is on
PATH and a Docker engine answers. Spans are exported whenever a collector or Jaeger
runs, or to --otlp-endpoint; otherwise they go nowhere (OTEL_TRACES_EXPORTER=none), but
every request still has its trace id: the x-trace-id header, the logs' trace_id, and
`cargo xtask logs --trace TRACE_ID`.
Logs and data: target/local/ (`cargo xtask logs` reads the logs); what runs:
target/local/mesh.json.")]
pub struct LocalArgs {
    /// Stop the mesh that `cargo xtask local` started (e.g. from another terminal)
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
        if let Some(mesh) = LocalMesh::running() {
            bail!(
                "a local mesh is already running (pid {}); stop it with `cargo xtask local --stop`",
                mesh.supervisor_pid
            );
        }

        let topology = match &self.topology {
            None => Topology::guide(),
            Some(path) => {
                let yaml = std::fs::read_to_string(path)
                    .with_context(|| format!("reading --topology {}", path.display()))?;
                Topology::parse(&path.display().to_string(), &yaml)?
            }
        };
        let ports = service_ports(&topology);
        let tools = if self.no_observability {
            Vec::new()
        } else {
            stack::find_tools(self.otlp_endpoint.is_none())
        };
        ports::check_free(
            ports::service_listeners(&ports).chain(tools.iter().flat_map(stack::Tool::listeners)),
        )?;

        let binary = build_service(self.release)?;
        let state = state_dir();
        std::fs::create_dir_all(state.join("logs"))
            .with_context(|| format!("creating {}", state.join("logs").display()))?;
        let mut supervisor = Supervisor::new();

        let tracing_to = self
            .otlp_endpoint
            .clone()
            .or_else(|| stack::otlp_endpoint(&tools));
        let topology_file = self
            .topology
            .as_deref()
            .map(std::path::absolute)
            .transpose()?;
        let mut mesh = LocalMesh {
            supervisor_pid: std::process::id(),
            topology_file: topology_file.clone(),
            entry: entry_service(&topology).to_owned(),
            services: Vec::new(),
            tools: Vec::new(),
            stopped: false,
        };
        let mut waits = Vec::new();
        for service in topology.services() {
            let port = ports[&service.name];
            let cmd = service_command(
                &binary,
                service,
                &ports,
                admin_port(port),
                tracing_to.as_deref(),
                topology_file.as_deref(),
            );
            let pid =
                supervisor.spawn(&service.name, Role::Essential, cmd, log_file(&service.name))?;
            mesh.services.push(ServiceProcess {
                name: service.name.clone(),
                port,
                admin_port: admin_port(port),
                pid,
            });
            waits.push(Wait {
                name: service.name.clone(),
                url: format!("http://127.0.0.1:{port}{}", endpoints::READY),
                any_answer: false,
            });
        }
        for tool in &tools {
            let cmd = match tool.command(&state, &ports) {
                Ok(cmd) => cmd,
                Err(error) => {
                    eprintln!("warning: not starting {}: {error:#}", tool.name());
                    continue;
                }
            };
            let program = cmd.program_name();
            let pid = supervisor.spawn(tool.name(), Role::Optional, cmd, log_file(tool.name()))?;
            mesh.tools.push(ToolProcess {
                name: tool.name().to_owned(),
                url: tool.user_url().to_owned(),
                program,
                pid,
                container: tool.container().map(str::to_owned),
            });
            let (url, any_answer) = tool.ready_probe();
            waits.push(Wait {
                name: tool.name().to_owned(),
                url,
                any_answer,
            });
        }
        // Written before the wait, so that `--stop` finds every process even if this one
        // is killed while they start.
        mesh.write()?;

        let ready = supervisor
            .wait_ready(&waits, Duration::from_secs(30), Duration::from_millis(100))
            .await;
        if ready.is_err() {
            remove_containers(&mesh);
            mesh.mark_stopped();
        }
        ready?;
        // A tool that could not start is not part of the mesh (nor of its URLs).
        mesh.tools
            .retain(|tool| supervisor.pid(&tool.name).is_some());
        mesh.write()?;

        println!("{}", urls(&mesh));
        let stopped = supervisor.run_until_stopped().await;
        remove_containers(&mesh);
        mesh.mark_stopped();
        eprintln!("stopped; logs are in {}", state.join("logs").display());
        stopped
    }
}

/// `cargo xtask local --stop`: asks the supervisor to stop everything; if it is gone
/// (killed), stops the processes and containers it recorded. Nothing to stop is fine.
pub async fn stop() -> anyhow::Result<()> {
    let Some(mut mesh) = LocalMesh::recorded().filter(|mesh| !mesh.stopped) else {
        eprintln!("no local mesh is running");
        return Ok(());
    };
    let supervisor = mesh.supervisor_pid;
    if alive(supervisor) && runs(supervisor, "xtask") {
        eprintln!("stopping the local mesh (supervisor pid {supervisor})...");
        signal(supervisor, Signal::SIGTERM);
        if !exited_within(supervisor, STOP_TIMEOUT + Duration::from_secs(5)).await {
            bail!(
                "the supervisor (pid {supervisor}) did not stop; kill it with `kill {supervisor}`"
            );
        }
        eprintln!("stopped");
        return Ok(());
    }

    let recorded = mesh
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.pid, "mock-service"))
        .chain(
            mesh.tools
                .iter()
                .map(|t| (t.name.as_str(), t.pid, t.program.as_str())),
        );
    let stopping: Vec<(&str, u32)> = recorded
        .filter(|(_, pid, program)| alive(*pid) && runs(*pid, program))
        .map(|(name, pid, _)| {
            signal(pid, Signal::SIGTERM);
            (name, pid)
        })
        .collect();
    for (name, pid) in stopping {
        if !exited_within(pid, STOP_TIMEOUT).await {
            signal(pid, Signal::SIGKILL);
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
/// `spans_to`, or nowhere (`OTEL_TRACES_EXPORTER=none`: with no receiver, requests still
/// get trace ids, `x-trace-id` and log lines keyed by them); the built-in graph unless
/// `topology_file`.
pub fn service_command(
    binary: &Path,
    service: &Service,
    ports: &BTreeMap<String, u16>,
    admin_port: u16,
    spans_to: Option<&str>,
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
    cmd = match spans_to {
        Some(endpoint) => cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
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
        Path::new("target/local/logs").display()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_no_receiver_the_services_trace_but_export_nothing() {
        let topology = Topology::guide();
        let gateway = topology.service("gateway-service").expect("gateway");
        let ports = service_ports(&topology);
        let binary = Path::new("mock-service");
        let command =
            |spans_to| service_command(binary, gateway, &ports, 31080, spans_to, None).to_string();
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
