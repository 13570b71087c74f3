//! `cargo xtask local`: the whole mesh as local processes, plus the observability tools
//! found on PATH, with no cluster.

mod processes;
mod stack;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use mock_service::{
    config::url_variable,
    topology::{Service, Topology},
};

use crate::{
    cmd::Cmd,
    ports::{self, GATEWAY_PORT, admin_port, service_ports},
    target_dir, workspace_root,
};
use processes::{Supervisor, read_pid, stop_recorded};

pub use processes::{alive, stop_children, terminate};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask local                  # build, start everything, wait; Ctrl+C stops it all
  cargo xtask local --stop           # stop a mesh started from another terminal
  cargo xtask local --topology my-graph.yaml --no-observability

Ports (127.0.0.1 only): gateway 30080 (as in the guide), the other services 30081-30086,
Prometheus 9090, Grafana 3000, Jaeger 16686, OpenTelemetry Collector 4317.
Logs, pids and data: target/local/.")]
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

    /// A topology file to use instead of the built-in guide graph
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
}

/// The pid of a running `cargo xtask local` supervisor, if one runs.
pub fn read_supervisor_pid() -> Option<i32> {
    read_pid(&state_dir().join("xtask.pid")).filter(|pid| processes::alive(*pid))
}

/// Where `cargo xtask local` keeps its logs, pids and data.
pub fn state_dir() -> PathBuf {
    workspace_root().join("target").join("local")
}

impl LocalArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let state = state_dir();
        if self.stop {
            return stop_recorded(&state).await;
        }
        if let Some(pid) = read_pid(&state.join("xtask.pid")).filter(|pid| processes::alive(*pid)) {
            bail!(
                "a local mesh is already running (pid {pid}); stop it with `cargo xtask local --stop`"
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
            stack::find_tools()
        };
        ports::check_free(
            ports
                .values()
                .flat_map(|port| [*port, admin_port(*port)])
                .chain(tools.iter().flat_map(stack::Tool::ports)),
        )?;

        let binary = build_service(self.release)?;
        for dir in ["logs", "pids"] {
            std::fs::create_dir_all(state.join(dir))
                .with_context(|| format!("creating {}", state.join(dir).display()))?;
        }
        let mut supervisor = Supervisor::new(&state)?;

        let tracing_to = stack::otlp_endpoint(&tools);
        let topology_file = self
            .topology
            .as_deref()
            .map(std::path::absolute)
            .transpose()?;
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
            supervisor.spawn(&service.name, cmd)?;
        }
        for tool in &tools {
            match tool.command(&state, &ports) {
                Ok(cmd) => supervisor.spawn(tool.name(), cmd)?,
                Err(error) => eprintln!("warning: not starting {}: {error:#}", tool.name()),
            }
        }

        let mut waits = Vec::new();
        for (name, port) in &ports {
            waits.push((
                name.clone(),
                format!("http://127.0.0.1:{port}/ready"),
                false,
            ));
        }
        for tool in &tools {
            let (url, any_answer) = tool.ready_probe();
            waits.push((tool.name().to_owned(), url, any_answer));
        }
        supervisor
            .wait_ready(&waits, Duration::from_secs(30))
            .await?;

        println!("{}", urls(&topology, &ports, &tools));
        supervisor.run_until_stopped().await
    }
}

/// The command that starts `service` on 127.0.0.1 at `ports[service]`, its admin API on
/// `admin_port`, its dependencies at their ports in `ports`; spans exported to
/// `spans_to`, or none (`OTEL_SDK_DISABLED`); the built-in graph unless `topology_file`.
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
        None => cmd.env("OTEL_SDK_DISABLED", "true"),
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

fn urls(topology: &Topology, ports: &BTreeMap<String, u16>, tools: &[stack::Tool]) -> String {
    let mut out =
        String::from("\nThe mesh is up (Ctrl+C, or `cargo xtask local --stop`, stops it):\n");
    for service in topology.services() {
        out.push_str(&format!(
            "  {:<22} http://localhost:{}\n",
            service.name, ports[&service.name]
        ));
    }
    for tool in tools {
        out.push_str(&format!("  {:<22} {}\n", tool.name(), tool.user_url()));
    }
    out.push_str(&format!(
        "\nTry: curl -X POST http://localhost:{GATEWAY_PORT}/api/action\n     cargo xtask traffic --duration 60\nLogs: {}\n",
        Path::new("target/local/logs").display()
    ));
    out
}
