//! The observability tools that `cargo xtask local` starts next to the services, each
//! with the project's configuration (the same files the cluster mounts), on 127.0.0.1:
//! those on PATH, and Jaeger from Docker when no binary is there (nixpkgs has none).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use serde::Deserialize as _;

use crate::{
    cmd::{Cmd, find_on_path, how_to_get},
    prometheus_config, workspace_root,
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

const JAEGER_OTLP_BEHIND_COLLECTOR: u16 = 14317;

/// The name of the Jaeger container, so that `local --stop` and `clean` find it.
pub const JAEGER_CONTAINER: &str = "observability-playground-jaeger";
/// The label of every container xtask starts: `cargo xtask clean` removes those and no
/// others.
pub const CONTAINER_LABEL: &str = "io.observability-playground.started-by=xtask";
/// The manifest whose image the local Jaeger container runs, so both are one version.
const JAEGER_MANIFEST: &str = "manifests/base/monitoring/jaeger.yaml";

/// Finds the tools; names each missing one once, with how to get it. Without
/// `with_trace_backend` (spans go to a receiver of the user's), no collector or Jaeger.
pub fn find_tools(with_trace_backend: bool) -> Vec<Tool> {
    let find = |what: &str, candidates: &[&str]| {
        let found = candidates.iter().find_map(|c| find_on_path(c));
        if found.is_none() {
            eprintln!(
                "note: {what} not found on PATH ({}): the mesh runs without it. {}",
                candidates.join(" or "),
                how_to_get(candidates[0])
            );
        }
        found
    };
    let mut tools = Vec::new();
    if let Some(path) = find("Prometheus", &["prometheus"]) {
        tools.push(Tool::Prometheus(path));
    }
    // nixpkgs calls the binary `alertmanager`, Debian `prometheus-alertmanager`.
    if let Some(path) = find("Alertmanager", &["alertmanager", "prometheus-alertmanager"]) {
        tools.push(Tool::Alertmanager(path));
    }
    if let Some(path) = find("Grafana", &["grafana", "grafana-server"]) {
        tools.push(Tool::Grafana(path));
    }
    if !with_trace_backend {
        return tools;
    }
    let collector = find(
        "the OpenTelemetry Collector",
        &["otelcol-contrib", "otelcol"],
    );
    let behind_collector = collector.is_some();
    if let Some(path) = collector {
        tools.push(Tool::Collector(path));
    }
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
    if let Some(path) = find_on_path("jaeger") {
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
    let path = workspace_root().join(JAEGER_MANIFEST);
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
        .then(|| "http://127.0.0.1:4317".to_owned())
}

impl Tool {
    /// Its name for logs and messages; the cluster's Deployment has the same one.
    pub fn name(&self) -> &'static str {
        match self {
            Tool::Prometheus(_) => "prometheus",
            Tool::Grafana(_) => "grafana",
            Tool::Alertmanager(_) => "alertmanager",
            Tool::Collector(_) => "otel-collector",
            Tool::Jaeger { .. } => "jaeger",
        }
    }

    pub fn ports(&self) -> Vec<u16> {
        match self {
            Tool::Prometheus(_) => vec![9090],
            Tool::Grafana(_) => vec![3000],
            Tool::Alertmanager(_) => vec![9093],
            Tool::Collector(_) => vec![4317, 4318, 13133],
            Tool::Jaeger {
                behind_collector, ..
            } => vec![16686, Self::jaeger_otlp_port(*behind_collector)],
        }
    }

    fn jaeger_otlp_port(behind_collector: bool) -> u16 {
        if behind_collector {
            JAEGER_OTLP_BEHIND_COLLECTOR
        } else {
            4317
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
        match self {
            Tool::Prometheus(_) => ("http://127.0.0.1:9090/-/ready".into(), false),
            Tool::Grafana(_) => ("http://127.0.0.1:3000/api/health".into(), false),
            Tool::Alertmanager(_) => ("http://127.0.0.1:9093/-/ready".into(), false),
            // The OTLP/HTTP receiver answers 404 at `/` once it is listening.
            Tool::Collector(_) => ("http://127.0.0.1:4318/".into(), true),
            Tool::Jaeger { .. } => ("http://127.0.0.1:16686/".into(), false),
        }
    }

    pub fn user_url(&self) -> &'static str {
        match self {
            Tool::Prometheus(_) => "http://localhost:9090",
            Tool::Grafana(_) => "http://localhost:3000  (admin/admin)",
            Tool::Alertmanager(_) => "http://localhost:9093",
            Tool::Collector(_) => "OTLP gRPC localhost:4317, HTTP localhost:4318",
            Tool::Jaeger { .. } => "http://localhost:16686",
        }
    }

    /// The command line, with its configuration written under `state` where it needs
    /// the local ports.
    pub fn command(
        &self,
        state: &Path,
        service_ports: &BTreeMap<String, u16>,
    ) -> anyhow::Result<Cmd> {
        let root = workspace_root();
        Ok(match self {
            Tool::Prometheus(path) => {
                let dir = state.join("prometheus");
                std::fs::create_dir_all(dir.join("data"))?;
                let config = dir.join("prometheus.yml");
                std::fs::write(&config, prometheus_config::local(service_ports, &root))
                    .with_context(|| format!("writing {}", config.display()))?;
                Cmd::new(path, "starting Prometheus")
                    .arg(format!("--config.file={}", config.display()))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        dir.join("data").display()
                    ))
                    .arg("--storage.tsdb.retention.time=2d")
                    .arg("--web.listen-address=127.0.0.1:9090")
                    .arg("--web.enable-lifecycle")
                    // Keeps the trace ids the services attach to latency observations,
                    // so a latency panel's dots open their traces.
                    .arg("--enable-feature=exemplar-storage")
                    // Prometheus's first alert evaluation comes before it has set up
                    // its Alertmanager, so that send is lost and the next waits for
                    // the resend delay: a minute by default, seconds here.
                    .arg("--rules.alert.resend-delay=5s")
            }
            Tool::Alertmanager(path) => {
                let dir = state.join("alertmanager");
                std::fs::create_dir_all(&dir)?;
                Cmd::new(path, "starting Alertmanager")
                    .arg(format!(
                        "--config.file={}",
                        root.join("prometheus").join("alertmanager.yml").display()
                    ))
                    .arg(format!("--storage.path={}", dir.display()))
                    .arg("--web.listen-address=127.0.0.1:9093")
                    // One instance: no gossip port, which would listen on every address.
                    .arg("--cluster.listen-address=")
            }
            Tool::Grafana(path) => {
                let dir = state.join("grafana");
                std::fs::create_dir_all(&dir)?;
                let mut cmd = Cmd::new(path, "starting Grafana");
                if path.file_name().is_some_and(|n| n == "grafana") {
                    cmd = cmd.arg("server");
                }
                if let Some(home) = grafana_home(path) {
                    cmd = cmd.arg("--homepath").arg(home);
                }
                cmd.env("GF_SERVER_HTTP_ADDR", "127.0.0.1")
                    .env("GF_SERVER_HTTP_PORT", "3000")
                    .env("GF_PATHS_DATA", dir.join("data"))
                    .env("GF_PATHS_LOGS", dir.join("logs"))
                    .env("GF_PATHS_PLUGINS", dir.join("plugins"))
                    .env(
                        "GF_PATHS_PROVISIONING",
                        root.join("grafana").join("provisioning"),
                    )
                    .env("GF_SECURITY_ADMIN_USER", "admin")
                    .env("GF_SECURITY_ADMIN_PASSWORD", "admin")
                    .env("GF_ANALYTICS_REPORTING_ENABLED", "false")
                    .env("GF_ANALYTICS_CHECK_FOR_UPDATES", "false")
                    .env("PROMETHEUS_URL", "http://127.0.0.1:9090")
                    .env("JAEGER_URL", "http://127.0.0.1:16686")
                    .env("ALERTMANAGER_URL", "http://127.0.0.1:9093")
                    .env("DASHBOARDS_DIR", root.join("grafana").join("dashboards"))
            }
            Tool::Collector(path) => Cmd::new(path, "starting the OpenTelemetry Collector")
                .arg(format!(
                    "--config={}",
                    root.join("otel").join("collector.yaml").display()
                ))
                .env("OTLP_GRPC_LISTEN", "127.0.0.1:4317")
                .env("OTLP_HTTP_LISTEN", "127.0.0.1:4318")
                .env("HEALTH_CHECK_LISTEN", "127.0.0.1:13133")
                .env(
                    "JAEGER_OTLP_ENDPOINT",
                    format!("127.0.0.1:{JAEGER_OTLP_BEHIND_COLLECTOR}"),
                ),
            Tool::Jaeger {
                runs,
                behind_collector,
            } => jaeger_command(runs, Self::jaeger_otlp_port(*behind_collector)),
        })
    }
}

/// Jaeger with the project's `otel/jaeger.yaml`: its UI on 127.0.0.1:16686 and its OTLP
/// receiver on 127.0.0.1:`otlp_port`. From Docker, the container listens on the file's
/// defaults (0.0.0.0 inside the container) and both ports are published on 127.0.0.1
/// only; it runs in the foreground with `--rm`, so stopping `docker run` (SIGTERM, which
/// docker passes on) stops and removes it.
pub fn jaeger_command(runs: &JaegerFrom, otlp_port: u16) -> Cmd {
    let config = workspace_root().join("otel").join("jaeger.yaml");
    match runs {
        JaegerFrom::Binary(path) => Cmd::new(path, "starting Jaeger")
            .arg(format!("--config={}", config.display()))
            .env("JAEGER_UI_LISTEN", "127.0.0.1:16686")
            .env("JAEGER_OTLP_LISTEN", format!("127.0.0.1:{otlp_port}")),
        JaegerFrom::Docker { image } => Cmd::new("docker", "starting Jaeger in Docker")
            .args([
                "run",
                "--rm",
                "--name",
                JAEGER_CONTAINER,
                "--label",
                CONTAINER_LABEL,
            ])
            .args(["--publish", "127.0.0.1:16686:16686"])
            .args(["--publish", &format!("127.0.0.1:{otlp_port}:4317")])
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

    fn docker_jaeger(behind_collector: bool) -> Tool {
        Tool::Jaeger {
            runs: JaegerFrom::Docker {
                image: jaeger_image().expect("the manifest's image"),
            },
            behind_collector,
        }
    }

    fn command_line(tool: &Tool) -> String {
        let state = std::env::temp_dir().join(format!("xtask-stack-{}", std::process::id()));
        tool.command(&state, &BTreeMap::new())
            .expect("command")
            .to_string()
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
        let config = workspace_root().join("otel/jaeger.yaml");
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
        let config = std::fs::read_to_string(workspace_root().join("otel/jaeger.yaml"))
            .expect("otel/jaeger.yaml");
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
