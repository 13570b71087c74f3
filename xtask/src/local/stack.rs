//! The observability tools that `cargo xtask local` starts when they are on PATH, each
//! with the project's configuration (the same files the cluster mounts), bound to
//! 127.0.0.1.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use crate::{
    cmd::{Cmd, find_on_path, how_to_get},
    prometheus_config, workspace_root,
};

/// An observability tool found on PATH.
pub enum Tool {
    Prometheus(PathBuf),
    Grafana(PathBuf),
    /// OpenTelemetry Collector: OTLP on 4317, forwarding to Jaeger.
    Collector(PathBuf),
    /// Jaeger v2; takes OTLP on 14317 behind a collector, on 4317 without one.
    Jaeger {
        path: PathBuf,
        behind_collector: bool,
    },
}

const JAEGER_OTLP_BEHIND_COLLECTOR: u16 = 14317;

/// Finds the tools; names each missing one once, with how to get it.
pub fn find_tools() -> Vec<Tool> {
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
    if let Some(path) = find("Grafana", &["grafana", "grafana-server"]) {
        tools.push(Tool::Grafana(path));
    }
    let collector = find(
        "the OpenTelemetry Collector",
        &["otelcol-contrib", "otelcol"],
    );
    let behind_collector = collector.is_some();
    if let Some(path) = collector {
        tools.push(Tool::Collector(path));
    }
    if let Some(path) = find("Jaeger", &["jaeger"]) {
        tools.push(Tool::Jaeger {
            path,
            behind_collector,
        });
    }
    tools
}

/// Where the services send spans, if anything receives them.
pub fn otlp_endpoint(tools: &[Tool]) -> Option<String> {
    tools
        .iter()
        .any(|t| matches!(t, Tool::Collector(_) | Tool::Jaeger { .. }))
        .then(|| "http://127.0.0.1:4317".to_owned())
}

impl Tool {
    pub fn name(&self) -> &'static str {
        match self {
            Tool::Prometheus(_) => "prometheus",
            Tool::Grafana(_) => "grafana",
            Tool::Collector(_) => "otelcol",
            Tool::Jaeger { .. } => "jaeger",
        }
    }

    pub fn ports(&self) -> Vec<u16> {
        match self {
            Tool::Prometheus(_) => vec![9090],
            Tool::Grafana(_) => vec![3000],
            Tool::Collector(_) => vec![4317, 4318],
            Tool::Jaeger {
                behind_collector: true,
                ..
            } => vec![16686, JAEGER_OTLP_BEHIND_COLLECTOR],
            Tool::Jaeger {
                behind_collector: false,
                ..
            } => vec![16686, 4317],
        }
    }

    /// A URL that answers once the tool is ready, and whether any HTTP answer will do.
    pub fn ready_probe(&self) -> (String, bool) {
        match self {
            Tool::Prometheus(_) => ("http://127.0.0.1:9090/-/ready".into(), false),
            Tool::Grafana(_) => ("http://127.0.0.1:3000/api/health".into(), false),
            // The OTLP/HTTP receiver answers 404 at `/` once it is listening.
            Tool::Collector(_) => ("http://127.0.0.1:4318/".into(), true),
            Tool::Jaeger { .. } => ("http://127.0.0.1:16686/".into(), false),
        }
    }

    pub fn user_url(&self) -> &'static str {
        match self {
            Tool::Prometheus(_) => "http://localhost:9090",
            Tool::Grafana(_) => "http://localhost:3000  (admin/admin)",
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
                    .env("DASHBOARDS_DIR", root.join("grafana").join("dashboards"))
            }
            Tool::Collector(path) => Cmd::new(path, "starting the OpenTelemetry Collector")
                .arg(format!(
                    "--config={}",
                    root.join("otel").join("collector.yaml").display()
                ))
                .env("OTLP_GRPC_LISTEN", "127.0.0.1:4317")
                .env("OTLP_HTTP_LISTEN", "127.0.0.1:4318")
                .env(
                    "JAEGER_OTLP_ENDPOINT",
                    format!("127.0.0.1:{JAEGER_OTLP_BEHIND_COLLECTOR}"),
                ),
            Tool::Jaeger {
                path,
                behind_collector,
            } => {
                let otlp = if *behind_collector {
                    JAEGER_OTLP_BEHIND_COLLECTOR
                } else {
                    4317
                };
                Cmd::new(path, "starting Jaeger")
                    .arg(format!(
                        "--config={}",
                        root.join("otel").join("jaeger.yaml").display()
                    ))
                    .env("JAEGER_UI_LISTEN", "127.0.0.1:16686")
                    .env("JAEGER_OTLP_LISTEN", format!("127.0.0.1:{otlp}"))
            }
        })
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
