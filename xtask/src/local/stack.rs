//! The observability tools that `cargo xtask local` starts next to the services, each
//! with the project's configuration (the same files the cluster mounts), every listener
//! on 127.0.0.1: those on PATH, and Jaeger from Docker when no binary is there (nixpkgs
//! has none). Each tool's ports are one table, which both its command line and the
//! pre-start port check read.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use serde::Deserialize as _;

use crate::{
    cmd::{Cmd, find_on_path, how_to_get},
    paths::{
        ALERTMANAGER_CONFIG, COLLECTOR_CONFIG, GRAFANA_DASHBOARDS, GRAFANA_PROVISIONING,
        JAEGER_CONFIG, JAEGER_MANIFEST, in_repo, workspace_root,
    },
    ports::Listener,
    prometheus_config,
    tools::{self, ToolInfo, ToolPort, jaeger_otlp},
};

/// A tool to start, and where from.
pub enum Tool {
    Prometheus(PathBuf),
    Grafana(PathBuf),
    Alertmanager(PathBuf),
    /// OpenTelemetry Collector: OTLP on 4317, forwarding to Jaeger.
    Collector(PathBuf),
    /// Jaeger v2; takes OTLP on 14317 behind a collector, on 4317 without one.
    Jaeger {
        runs: JaegerFrom,
        behind_collector: bool,
    },
}

pub enum JaegerFrom {
    Binary(PathBuf),
    /// `docker run` of this image (the cluster's), ports published on 127.0.0.1 only.
    Docker {
        image: String,
    },
}

/// The port otel/jaeger.yaml's OTLP receiver listens on inside the container (its
/// default, on every interface of the container's own network), published on the host.
const JAEGER_OTLP_IN_CONTAINER: u16 = 4317;

/// The name of the Jaeger container, so that `local --stop` and `clean` find it.
pub const JAEGER_CONTAINER: &str = "observability-playground-jaeger";
/// The label of every container xtask starts: `cargo xtask clean` removes those and no
/// others.
pub const CONTAINER_LABEL: &str = "io.observability-playground.started-by=xtask";

/// Finds the tools; names each missing one once, with how to get it. Without
/// `with_trace_backend` (spans go to a receiver of the user's), no collector or Jaeger.
pub fn find_tools(with_trace_backend: bool) -> Vec<Tool> {
    let find = |tool: &ToolInfo| {
        let found = tool.binaries.iter().find_map(|c| find_on_path(c));
        if found.is_none() {
            eprintln!(
                "note: {} not found on PATH ({}): the mesh runs without it. {}",
                tool.title,
                tool.binaries.join(" or "),
                how_to_get(tool.binaries[0])
            );
        }
        found
    };
    let mut tools: Vec<Tool> = [
        (&tools::PROMETHEUS, Tool::Prometheus as fn(PathBuf) -> Tool),
        (&tools::ALERTMANAGER, Tool::Alertmanager),
        (&tools::GRAFANA, Tool::Grafana),
    ]
    .into_iter()
    .filter_map(|(info, tool)| find(info).map(tool))
    .collect();
    if !with_trace_backend {
        return tools;
    }
    let collector = find(&tools::COLLECTOR);
    let behind_collector = collector.is_some();
    tools.extend(collector.map(Tool::Collector));
    if let Some(runs) = find_jaeger() {
        tools.push(Tool::Jaeger {
            runs,
            behind_collector,
        });
    }
    tools
}

/// Jaeger from PATH, else the cluster's image in Docker when an engine answers, else a
/// note saying exactly how to get either.
fn find_jaeger() -> Option<JaegerFrom> {
    if let Some(path) = tools::JAEGER.binaries.iter().find_map(|b| find_on_path(b)) {
        return Some(JaegerFrom::Binary(path));
    }
    let image = match jaeger_image() {
        Ok(image) => image,
        Err(error) => {
            eprintln!("note: not running Jaeger: {error:#}");
            return None;
        }
    };
    let docker_answers = find_on_path("docker").is_some()
        && Cmd::new("docker", "asking the Docker engine")
            .arg("info")
            .succeeds()
            .unwrap_or(false);
    if docker_answers {
        return Some(JaegerFrom::Docker { image });
    }
    eprintln!(
        "note: Jaeger not found on PATH (jaeger) and no Docker engine answers: the mesh \
         runs without a trace UI, and spans go nowhere. Start Docker (then `cargo xtask \
         local` runs {image}, published on 127.0.0.1 only), or put Jaeger v2's `jaeger` \
         binary on PATH (https://www.jaegertracing.io/download/; nixpkgs has none)."
    );
    None
}

/// The Jaeger image of the cluster's manifest (`jaegertracing/jaeger:<version>`).
pub fn jaeger_image() -> anyhow::Result<String> {
    let path = in_repo(JAEGER_MANIFEST);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = serde_yaml_ng::Value::deserialize(document)?;
        if value["kind"] == "Deployment" && value["metadata"]["name"] == "jaeger" {
            let image = &value["spec"]["template"]["spec"]["containers"][0]["image"];
            if let Some(image) = image.as_str() {
                return Ok(image.to_owned());
            }
        }
    }
    bail!("{JAEGER_MANIFEST} has no Deployment `jaeger` with an image")
}

/// Where the services send spans, if anything receives them.
pub fn otlp_endpoint(tools: &[Tool]) -> Option<String> {
    tools
        .iter()
        .any(|t| matches!(t, Tool::Collector(_) | Tool::Jaeger { .. }))
        .then(tools::otlp_endpoint)
}

impl Tool {
    /// Its row of the tools' table.
    pub fn info(&self) -> &'static ToolInfo {
        match self {
            Tool::Prometheus(_) => &tools::PROMETHEUS,
            Tool::Grafana(_) => &tools::GRAFANA,
            Tool::Alertmanager(_) => &tools::ALERTMANAGER,
            Tool::Collector(_) => &tools::COLLECTOR,
            Tool::Jaeger { .. } => &tools::JAEGER,
        }
    }

    /// Its name for logs and messages; the cluster's Deployment has the same one.
    pub fn name(&self) -> &'static str {
        self.info().name
    }

    /// Every port it listens on, on 127.0.0.1: what `cargo xtask local` checks is free
    /// before it starts anything.
    pub fn listeners(&self) -> Vec<Listener> {
        self.ports()
            .into_iter()
            .map(|port| Listener {
                port: port.port,
                owner: format!("{}'s {}", self.name(), port.what),
            })
            .collect()
    }

    fn ports(&self) -> Vec<ToolPort> {
        match self {
            Tool::Jaeger {
                runs,
                behind_collector,
            } => jaeger_ports(runs, *behind_collector),
            _ => self.info().ports.to_vec(),
        }
    }

    /// The Docker container it runs in, if it does.
    pub fn container(&self) -> Option<&'static str> {
        match self {
            Tool::Jaeger {
                runs: JaegerFrom::Docker { .. },
                ..
            } => Some(JAEGER_CONTAINER),
            _ => None,
        }
    }

    /// A URL that answers once the tool is ready, and whether any HTTP answer will do.
    pub fn ready_probe(&self) -> (String, bool) {
        let info = self.info();
        (info.ready_url(), info.any_answer_is_ready)
    }

    /// The command line, with its configuration written under `state` where it needs
    /// the local ports.
    pub fn command(
        &self,
        state: &Path,
        service_ports: &BTreeMap<String, u16>,
    ) -> anyhow::Result<Cmd> {
        Ok(match self {
            Tool::Prometheus(path) => prometheus_command(path, state, service_ports)?,
            Tool::Alertmanager(path) => alertmanager_command(path, state)?,
            Tool::Grafana(path) => grafana_command(path, state)?,
            Tool::Collector(path) => listening_on(
                Cmd::new(path, "starting the OpenTelemetry Collector")
                    .arg(format!("--config={}", in_repo(COLLECTOR_CONFIG).display())),
                tools::COLLECTOR.ports,
            )
            .env("JAEGER_OTLP_ENDPOINT", jaeger_otlp(true).address()),
            Tool::Jaeger {
                runs,
                behind_collector,
            } => jaeger_command(runs, *behind_collector),
        })
    }
}

/// Prometheus with its configuration written under `state` (the services' local ports)
/// and its data there too.
fn prometheus_command(
    path: &Path,
    state: &Path,
    service_ports: &BTreeMap<String, u16>,
) -> anyhow::Result<Cmd> {
    let dir = state.join("prometheus");
    std::fs::create_dir_all(dir.join("data"))?;
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        prometheus_config::local(service_ports, &workspace_root()),
    )
    .with_context(|| format!("writing {}", config.display()))?;
    Ok(Cmd::new(path, "starting Prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg("--storage.tsdb.retention.time=2d")
        .arg(format!(
            "--web.listen-address={}",
            tools::PROMETHEUS.ports[0].address()
        ))
        // No --web.enable-lifecycle: nothing reloads this Prometheus (its configuration
        // is written once, at start), so /-/reload and /-/quit stay off.
        // Keeps the trace ids the services attach to latency observations, so a latency
        // panel's dots open their traces.
        .arg("--enable-feature=exemplar-storage")
        // Prometheus's first alert evaluation comes before it has set up its
        // Alertmanager, so that send is lost and the next waits for the resend delay: a
        // minute by default, seconds here.
        .arg("--rules.alert.resend-delay=5s"))
}

/// Alertmanager with the repository's configuration, its state under `state`.
fn alertmanager_command(path: &Path, state: &Path) -> anyhow::Result<Cmd> {
    let dir = state.join("alertmanager");
    std::fs::create_dir_all(&dir)?;
    Ok(Cmd::new(path, "starting Alertmanager")
        .arg(format!(
            "--config.file={}",
            in_repo(ALERTMANAGER_CONFIG).display()
        ))
        .arg(format!("--storage.path={}", dir.display()))
        .arg(format!(
            "--web.listen-address={}",
            tools::ALERTMANAGER.ports[0].address()
        ))
        // One instance: no gossip port, which would listen on every address.
        .arg("--cluster.listen-address="))
}

/// Grafana provisioned from the repository, its data under `state`, its datasources
/// pointing at the local tools.
fn grafana_command(path: &Path, state: &Path) -> anyhow::Result<Cmd> {
    let dir = state.join("grafana");
    std::fs::create_dir_all(&dir)?;
    let mut cmd = Cmd::new(path, "starting Grafana");
    if path.file_name().is_some_and(|n| n == "grafana") {
        cmd = cmd.arg("server");
    }
    if let Some(home) = grafana_home(path) {
        cmd = cmd.arg("--homepath").arg(home);
    }
    Ok(cmd
        .env("GF_SERVER_HTTP_ADDR", "127.0.0.1")
        .env("GF_SERVER_HTTP_PORT", tools::GRAFANA.port().to_string())
        .env("GF_PATHS_DATA", dir.join("data"))
        .env("GF_PATHS_LOGS", dir.join("logs"))
        .env("GF_PATHS_PLUGINS", dir.join("plugins"))
        .env("GF_PATHS_PROVISIONING", in_repo(GRAFANA_PROVISIONING))
        .env("GF_SECURITY_ADMIN_USER", "admin")
        .env("GF_SECURITY_ADMIN_PASSWORD", "admin")
        .env("GF_ANALYTICS_REPORTING_ENABLED", "false")
        .env("GF_ANALYTICS_CHECK_FOR_UPDATES", "false")
        .env("PROMETHEUS_URL", tools::PROMETHEUS.local_url())
        .env("JAEGER_URL", tools::JAEGER.local_url())
        .env("ALERTMANAGER_URL", tools::ALERTMANAGER.local_url())
        .env("DASHBOARDS_DIR", in_repo(GRAFANA_DASHBOARDS)))
}

/// The tool's configuration file's listen variables, each set to 127.0.0.1.
fn listening_on(cmd: Cmd, ports: &[ToolPort]) -> Cmd {
    ports.iter().fold(cmd, |cmd, port| match port.env {
        Some(variable) => cmd.env(variable, port.address()),
        None => cmd,
    })
}

/// Jaeger's ports on the host. From Docker, only what is published: the query gRPC API
/// listens on the container's own loopback (the file's default), unreachable from the
/// host and taking no host port.
fn jaeger_ports(runs: &JaegerFrom, behind_collector: bool) -> Vec<ToolPort> {
    match runs {
        JaegerFrom::Binary(_) => {
            let mut ports = tools::JAEGER.ports.to_vec();
            ports.push(jaeger_otlp(behind_collector));
            ports
        }
        JaegerFrom::Docker { .. } => jaeger_published(behind_collector)
            .iter()
            .map(|(port, _)| *port)
            .collect(),
    }
}

/// What the Jaeger container publishes on the host, and from which port inside it.
fn jaeger_published(behind_collector: bool) -> [(ToolPort, u16); 2] {
    let ui = tools::JAEGER.ports[0];
    [
        (ui, ui.port),
        (jaeger_otlp(behind_collector), JAEGER_OTLP_IN_CONTAINER),
    ]
}

/// Jaeger with the project's `otel/jaeger.yaml`: every listener on 127.0.0.1, its OTLP
/// receiver beside the collector's when `behind_collector`. From Docker, the container listens on the file's defaults
/// (0.0.0.0 inside the container for the UI and OTLP, which are published on 127.0.0.1
/// only); it runs in the foreground with `--rm`, so stopping `docker run` (SIGTERM,
/// which docker passes on) stops and removes it.
pub fn jaeger_command(runs: &JaegerFrom, behind_collector: bool) -> Cmd {
    let config = in_repo(JAEGER_CONFIG);
    match runs {
        JaegerFrom::Binary(path) => listening_on(
            Cmd::new(path, "starting Jaeger").arg(format!("--config={}", config.display())),
            &jaeger_ports(runs, behind_collector),
        ),
        JaegerFrom::Docker { image } => jaeger_published(behind_collector)
            .iter()
            .fold(
                Cmd::new("docker", "starting Jaeger in Docker").args([
                    "run",
                    "--rm",
                    "--name",
                    JAEGER_CONTAINER,
                    "--label",
                    CONTAINER_LABEL,
                ]),
                |cmd, (port, inside)| {
                    cmd.args(["--publish", &format!("{}:{inside}", port.address())])
                },
            )
            .args([
                "--volume",
                &format!("{}:/etc/jaeger/jaeger.yaml:ro", config.display()),
            ])
            .arg(image)
            .arg("--config=/etc/jaeger/jaeger.yaml"),
    }
}

/// Grafana needs its home (static files, defaults.ini): `<prefix>/share/grafana` next to
/// the binary (Nix, Homebrew), or Debian's `/usr/share/grafana`.
fn grafana_home(binary: &Path) -> Option<PathBuf> {
    let resolved = std::fs::canonicalize(binary).ok()?;
    let prefix = resolved.parent()?.parent()?;
    [
        prefix.join("share").join("grafana"),
        PathBuf::from("/usr/share/grafana"),
    ]
    .into_iter()
    .find(|home| home.join("conf").join("defaults.ini").exists())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths;

    fn docker_jaeger(behind_collector: bool) -> Tool {
        Tool::Jaeger {
            runs: JaegerFrom::Docker {
                image: jaeger_image().expect("the manifest's image"),
            },
            behind_collector,
        }
    }

    fn state() -> PathBuf {
        std::env::temp_dir().join(format!("xtask-stack-{}", std::process::id()))
    }

    fn command_line(tool: &Tool) -> String {
        tool.command(&state(), &BTreeMap::new())
            .expect("command")
            .to_string()
    }

    fn jaeger_binary(behind_collector: bool) -> Tool {
        Tool::Jaeger {
            runs: JaegerFrom::Binary(PathBuf::from("/opt/bin/jaeger")),
            behind_collector,
        }
    }

    /// Each tool's exact command line: every listener on 127.0.0.1, none left on a
    /// default; Prometheus without its lifecycle API (/-/reload, /-/quit).
    #[test]
    fn every_tool_runs_with_each_listener_on_loopback() {
        let lines: Vec<(String, String)> = expected_command_lines()
            .into_iter()
            .map(|(tool, command)| (command_line(&tool), command))
            .collect();
        // The commands made their state directories there; only this test writes them.
        std::fs::remove_dir_all(state()).expect("remove the state directory");
        for (line, command) in lines {
            assert_eq!(line, command);
        }
    }

    /// Each tool, and the command line it must run with, written out in full.
    fn expected_command_lines() -> Vec<(Tool, String)> {
        let (s, r) = (
            state().display().to_string(),
            workspace_root().display().to_string(),
        );
        [
            (
                Tool::Prometheus(PathBuf::from("/opt/bin/prometheus")),
                format!(
                    "/opt/bin/prometheus --config.file={s}/prometheus/prometheus.yml \
                     --storage.tsdb.path={s}/prometheus/data --storage.tsdb.retention.time=2d \
                     --web.listen-address=127.0.0.1:9090 --enable-feature=exemplar-storage \
                     --rules.alert.resend-delay=5s"
                ),
            ),
            (
                Tool::Alertmanager(PathBuf::from("/opt/bin/alertmanager")),
                format!(
                    "/opt/bin/alertmanager --config.file={r}/prometheus/alertmanager.yml \
                     --storage.path={s}/alertmanager --web.listen-address=127.0.0.1:9093 \
                     --cluster.listen-address="
                ),
            ),
            (
                Tool::Grafana(PathBuf::from("/opt/bin/grafana-server")),
                format!(
                    "GF_SERVER_HTTP_ADDR=127.0.0.1 GF_SERVER_HTTP_PORT=3000 \
                     GF_PATHS_DATA={s}/grafana/data GF_PATHS_LOGS={s}/grafana/logs \
                     GF_PATHS_PLUGINS={s}/grafana/plugins \
                     GF_PATHS_PROVISIONING={r}/grafana/provisioning \
                     GF_SECURITY_ADMIN_USER=admin GF_SECURITY_ADMIN_PASSWORD=admin \
                     GF_ANALYTICS_REPORTING_ENABLED=false GF_ANALYTICS_CHECK_FOR_UPDATES=false \
                     PROMETHEUS_URL=http://127.0.0.1:9090 JAEGER_URL=http://127.0.0.1:16686 \
                     ALERTMANAGER_URL=http://127.0.0.1:9093 DASHBOARDS_DIR={r}/grafana/dashboards \
                     /opt/bin/grafana-server"
                ),
            ),
            (
                Tool::Collector(PathBuf::from("/opt/bin/otelcol-contrib")),
                format!(
                    "OTLP_GRPC_LISTEN=127.0.0.1:4317 OTLP_HTTP_LISTEN=127.0.0.1:4318 \
                     HEALTH_CHECK_LISTEN=127.0.0.1:13133 JAEGER_OTLP_ENDPOINT=127.0.0.1:14317 \
                     /opt/bin/otelcol-contrib --config={r}/otel/collector.yaml"
                ),
            ),
        ]
        .into_iter()
        .chain(expected_jaeger_lines(&r))
        .collect()
    }

    /// Jaeger's command lines, alone and behind a collector (`r`: the repository).
    fn expected_jaeger_lines(r: &str) -> [(Tool, String); 2] {
        [
            (
                jaeger_binary(false),
                format!(
                    "JAEGER_UI_LISTEN=127.0.0.1:16686 JAEGER_QUERY_GRPC_LISTEN=127.0.0.1:16685 \
                     JAEGER_OTLP_LISTEN=127.0.0.1:4317 /opt/bin/jaeger \
                     --config={r}/otel/jaeger.yaml"
                ),
            ),
            (
                jaeger_binary(true),
                format!(
                    "JAEGER_UI_LISTEN=127.0.0.1:16686 JAEGER_QUERY_GRPC_LISTEN=127.0.0.1:16685 \
                     JAEGER_OTLP_LISTEN=127.0.0.1:14317 /opt/bin/jaeger \
                     --config={r}/otel/jaeger.yaml"
                ),
            ),
        ]
    }

    /// What `cargo xtask local` checks is free before it starts: every port each tool
    /// listens on, named with the tool.
    #[test]
    fn the_port_check_covers_every_listener_of_every_tool() {
        let listeners = |tool: Tool| -> Vec<(u16, String)> {
            tool.listeners()
                .into_iter()
                .map(|l| (l.port, l.owner))
                .collect()
        };
        let named = |list: &[(u16, &str)]| -> Vec<(u16, String)> {
            list.iter().map(|(p, o)| (*p, (*o).to_owned())).collect()
        };
        let cases = [
            (
                Tool::Prometheus(PathBuf::from("prometheus")),
                named(&[(9090, "prometheus's web UI and API")]),
            ),
            (
                Tool::Alertmanager(PathBuf::from("alertmanager")),
                named(&[(9093, "alertmanager's web UI and API")]),
            ),
            (
                Tool::Grafana(PathBuf::from("grafana")),
                named(&[(3000, "grafana's web UI and API")]),
            ),
            (
                Tool::Collector(PathBuf::from("otelcol")),
                named(&[
                    (4317, "otel-collector's OTLP/gRPC receiver"),
                    (4318, "otel-collector's OTLP/HTTP receiver"),
                    (13133, "otel-collector's health check"),
                ]),
            ),
            (
                jaeger_binary(false),
                named(&[
                    (16686, "jaeger's UI and HTTP API"),
                    (16685, "jaeger's query gRPC API"),
                    (4317, "jaeger's OTLP/gRPC receiver"),
                ]),
            ),
            // From Docker only the published ports take host ports.
            (
                docker_jaeger(true),
                named(&[
                    (16686, "jaeger's UI and HTTP API"),
                    (14317, "jaeger's OTLP/gRPC receiver"),
                ]),
            ),
        ];
        for (tool, expected) in cases {
            assert_eq!(listeners(tool), expected);
        }
    }

    /// The listeners a component of otel/ opens, by the path of each one's settings
    /// under the component. Jaeger and the collector cannot be installed here, so their
    /// files are checked by structure against what each component is known to open.
    fn component_listeners(kind: &str, name: &str, component: &Value) -> Vec<String> {
        match (kind, name) {
            ("receivers", "otlp") => component["protocols"]
                .as_mapping()
                .map(|protocols| {
                    protocols
                        .keys()
                        .map(|p| format!("protocols/{}", p.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default(),
            // Both always listen: Jaeger's defaults are :16686 and :16685.
            ("extensions", "jaeger_query") => vec!["http".into(), "grpc".into()],
            ("extensions", "health_check") => vec![String::new()],
            ("extensions", "jaeger_storage") => Vec::new(),
            _ => {
                panic!("{kind}/{name}: this test does not know which ports it opens; add them here")
            }
        }
    }

    use serde_yaml_ng::Value;

    /// Each listener of an otel/ file: where it is, the variable that sets its address,
    /// and the address it defaults to. Fails for a listener left on its tool's default
    /// and for the tool's own metrics port.
    fn listen_variables(file: &str) -> Vec<(String, String, String)> {
        let text = std::fs::read_to_string(in_repo(paths::OTEL).join(file)).expect("read the file");
        let config: Value = serde_yaml_ng::from_str(&text).expect("YAML");
        assert_eq!(
            config["service"]["telemetry"]["metrics"]["level"].as_str(),
            Some("none"),
            "{file}: its own metrics would listen on 8888, every interface"
        );
        let mut found = Vec::new();
        for kind in ["receivers", "extensions"] {
            let Some(components) = config[kind].as_mapping() else {
                continue;
            };
            for (name, component) in components {
                let name = name.as_str().unwrap_or_default();
                for path in component_listeners(kind, name, component) {
                    let settings = path
                        .split('/')
                        .filter(|p| !p.is_empty())
                        .fold(component, |value, key| &value[key]);
                    let endpoint = settings["endpoint"].as_str().unwrap_or_default();
                    let at = format!("{file}: {kind}/{name}/{path}");
                    let (variable, default) = endpoint
                        .strip_prefix("${env:")
                        .and_then(|rest| rest.strip_suffix('}'))
                        .and_then(|rest| rest.split_once(":-"))
                        .unwrap_or_else(|| {
                            panic!("{at}: endpoint {endpoint:?} is not ${{env:VAR:-address}}: left on its default, it listens on every interface")
                        });
                    found.push((at, variable.to_owned(), default.to_owned()));
                }
            }
        }
        found
    }

    /// Every listener of otel/collector.yaml and otel/jaeger.yaml is set by the command
    /// `cargo xtask local` runs, to 127.0.0.1 and a port the port check covers; from
    /// Docker, those not published keep a loopback default inside the container.
    #[test]
    fn the_otel_files_listen_only_where_the_commands_say() {
        let collector = Tool::Collector(PathBuf::from("otelcol"));
        for (file, tool) in [
            ("collector.yaml", &collector),
            ("jaeger.yaml", &jaeger_binary(false)),
        ] {
            let command = command_line(tool);
            let ports: Vec<u16> = tool.listeners().iter().map(|l| l.port).collect();
            let listeners = listen_variables(file);
            assert_eq!(
                listeners.len(),
                ports.len(),
                "{file}: {listeners:?} vs {ports:?}"
            );
            for (at, variable, _) in &listeners {
                let port: u16 = command
                    .split_whitespace()
                    .find_map(|word| word.strip_prefix(&format!("{variable}=127.0.0.1:")))
                    .and_then(|port| port.parse().ok())
                    .unwrap_or_else(|| panic!("{at}: {command} sets no {variable}=127.0.0.1:PORT"));
                assert!(ports.contains(&port), "{at}: {port} is not in {ports:?}");
            }
        }
        let docker = command_line(&docker_jaeger(false));
        for (at, _, default) in listen_variables("jaeger.yaml") {
            let inside = default.rsplit_once(':').map_or("", |(_, port)| port);
            let published = docker.contains(&format!(":{inside} "));
            assert!(
                published || default.starts_with("127.0.0.1:"),
                "{at}: in Docker it listens on {default}, neither published nor loopback"
            );
        }
    }

    /// The value `--publish 127.0.0.1:HOST:CONTAINER` gives `container`'s host port.
    fn published(command: &str, container: u16) -> u16 {
        let suffix = format!(":{container}");
        command
            .split_whitespace()
            .filter_map(|word| word.strip_prefix("127.0.0.1:"))
            .find_map(|ports| ports.strip_suffix(suffix.as_str())?.parse().ok())
            .unwrap_or_else(|| panic!("nothing publishes {container}: {command}"))
    }

    #[test]
    fn jaeger_in_docker_runs_the_clusters_image_on_loopback_ports_only() {
        let image = jaeger_image().expect("image");
        assert!(image.starts_with("jaegertracing/jaeger:2."), "{image}");
        let config = in_repo(JAEGER_CONFIG);
        assert_eq!(
            command_line(&docker_jaeger(false)),
            format!(
                "docker run --rm --name observability-playground-jaeger \
                 --label io.observability-playground.started-by=xtask \
                 --publish 127.0.0.1:16686:16686 --publish 127.0.0.1:4317:4317 \
                 --volume {}:/etc/jaeger/jaeger.yaml:ro {image} \
                 --config=/etc/jaeger/jaeger.yaml",
                config.display()
            )
        );
        assert_eq!(
            docker_jaeger(false).container(),
            Some("observability-playground-jaeger")
        );
    }

    /// Spans reach the port Jaeger receives on: the services export to 127.0.0.1:4317,
    /// which is Jaeger's own receiver when it runs alone, and the collector's when one
    /// runs (the collector then forwards to Jaeger's published 14317).
    #[test]
    fn the_services_spans_reach_jaegers_receiver() {
        let alone = [docker_jaeger(false)];
        let exported_to = otlp_endpoint(&alone).expect("spans are exported");
        let port: u16 = exported_to
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .expect("a port");
        assert_eq!(published(&command_line(&alone[0]), 4317), port);
        // The file's receiver listens on the container's 4317, the port published above.
        let config = std::fs::read_to_string(in_repo(JAEGER_CONFIG)).expect("otel/jaeger.yaml");
        assert!(
            config.contains("JAEGER_OTLP_LISTEN:-0.0.0.0:4317"),
            "{config}"
        );

        let collector = Tool::Collector(PathBuf::from("otelcol-contrib"));
        let behind = docker_jaeger(true);
        let forwards_to = command_line(&collector);
        let jaeger_port = published(&command_line(&behind), 4317);
        assert!(
            forwards_to.contains(&format!("JAEGER_OTLP_ENDPOINT=127.0.0.1:{jaeger_port}")),
            "{forwards_to}"
        );
        assert!(
            forwards_to.contains("OTLP_GRPC_LISTEN=127.0.0.1:4317"),
            "{forwards_to}"
        );
        assert_eq!(
            otlp_endpoint(&[collector, behind]).as_deref(),
            Some("http://127.0.0.1:4317")
        );
    }

    #[test]
    fn without_a_receiver_no_span_is_exported() {
        assert_eq!(
            otlp_endpoint(&[Tool::Prometheus(PathBuf::from("prometheus"))]),
            None
        );
    }
}
