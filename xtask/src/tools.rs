//! The observability tools that run next to the local mesh, as one table: each tool's
//! name, the binaries that provide it, every port it listens on (on 127.0.0.1), where it
//! says it is ready, and the URL a person opens. `local/stack.rs` builds their command
//! lines from it, `ports.rs` names a taken port's likely owner from it, the printed URLs
//! and the local Prometheus configuration read it. Each port is written here once. The
//! kind cluster publishes its tools on the same ports (`manifests/kind.yaml`).

/// One listener of a tool, on 127.0.0.1: what it serves, its port, and the variable of
/// the tool's configuration file (`otel/`) that sets its address, if one does
/// (otherwise a flag does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToolPort {
    pub what: &'static str,
    pub port: u16,
    pub env: Option<&'static str>,
}

impl ToolPort {
    /// A web UI and API, its address set by a flag.
    const fn web_ui(port: u16) -> ToolPort {
        ToolPort {
            what: "web UI and API",
            port,
            env: None,
        }
    }

    pub fn address(self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A tool of the local mesh.
#[derive(Debug)]
pub struct ToolInfo {
    /// Its name in logs, the record and messages; the cluster's Deployment has the same.
    pub name: &'static str,
    /// What a person calls it.
    pub title: &'static str,
    /// The binaries that provide it, looked up on PATH in this order.
    pub binaries: &'static [&'static str],
    /// Every port it listens on; `ports[0]` is the one a person opens.
    pub ports: &'static [ToolPort],
    /// Which of `ports` answers the readiness probe, and at which path.
    pub ready_on: usize,
    pub ready_path: &'static str,
    /// Whether any HTTP answer there means ready (the collector's OTLP/HTTP receiver
    /// answers 404 at `/` once it listens).
    pub any_answer_is_ready: bool,
    /// Whether it has a UI or API to open in a browser.
    pub browsable: bool,
    /// Said after its URL (Grafana's login).
    pub note: &'static str,
    /// What most likely holds its ports when they are taken.
    pub usual_squatter: &'static str,
}

impl ToolInfo {
    /// The port a person opens (the UI, the API).
    pub fn port(&self) -> u16 {
        self.ports[0].port
    }

    /// Its base URL for other local programs (Grafana's datasources).
    pub fn local_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// The URL that answers once it is ready.
    pub fn ready_url(&self) -> String {
        format!(
            "http://{}{}",
            self.ports[self.ready_on].address(),
            self.ready_path
        )
    }

    /// What a person opens, as printed when the mesh is up and recorded in `mesh.json`.
    pub fn user_url(&self) -> String {
        if self.browsable {
            let url = format!("http://localhost:{}", self.port());
            return match self.note {
                "" => url,
                note => format!("{url} {note}"),
            };
        }
        self.ports
            .iter()
            .filter(|port| port.what.starts_with("OTLP"))
            .map(|port| format!("{} localhost:{}", port.what, port.port))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What the browsable tools with one port share (Prometheus's project's `/-/ready`
/// included); each names the rest.
const WEB_TOOL: ToolInfo = ToolInfo {
    name: "",
    title: "",
    binaries: &[],
    ports: &[],
    ready_on: 0,
    ready_path: "/-/ready",
    any_answer_is_ready: false,
    browsable: true,
    note: "",
    usual_squatter: "",
};

const CLUSTER_HINT: &str = "(the kind cluster's: `cargo xtask cluster down`)";

pub const PROMETHEUS: ToolInfo = ToolInfo {
    name: "prometheus",
    title: "Prometheus",
    binaries: &["prometheus"],
    ports: &[ToolPort::web_ui(9090)],
    usual_squatter: "another Prometheus",
    ..WEB_TOOL
};

/// Its gossip port (9094, every interface by default) is turned off, not moved.
pub const ALERTMANAGER: ToolInfo = ToolInfo {
    name: "alertmanager",
    title: "Alertmanager",
    // nixpkgs calls the binary `alertmanager`, Debian `prometheus-alertmanager`.
    binaries: &["alertmanager", "prometheus-alertmanager"],
    ports: &[ToolPort::web_ui(9093)],
    usual_squatter: "another Alertmanager",
    ..WEB_TOOL
};

/// Its address is set by GF_SERVER_HTTP_ADDR and GF_SERVER_HTTP_PORT.
pub const GRAFANA: ToolInfo = ToolInfo {
    name: "grafana",
    title: "Grafana",
    binaries: &["grafana", "grafana-server"],
    ports: &[ToolPort::web_ui(3000)],
    ready_path: "/api/health",
    note: "(admin/admin)",
    usual_squatter: "another Grafana or a web dev server",
    ..WEB_TOOL
};

/// Every listener of otel/collector.yaml (its own metrics are off: `level: none`). Its
/// OTLP/gRPC receiver is where the services send spans.
pub const COLLECTOR: ToolInfo = ToolInfo {
    name: "otel-collector",
    title: "the OpenTelemetry Collector",
    binaries: &["otelcol-contrib", "otelcol"],
    ports: &[
        OTLP_GRPC,
        ToolPort {
            what: "OTLP/HTTP receiver",
            port: 4318,
            env: Some("OTLP_HTTP_LISTEN"),
        },
        ToolPort {
            what: "health check",
            port: 13133,
            env: Some("HEALTH_CHECK_LISTEN"),
        },
    ],
    // The OTLP/HTTP receiver doubles as the readiness probe.
    ready_on: 1,
    ready_path: "/",
    any_answer_is_ready: true,
    browsable: false,
    note: "",
    usual_squatter: "another OpenTelemetry Collector or Jaeger",
};

/// Every listener of otel/jaeger.yaml but its OTLP receiver, whose port depends on
/// whether a collector runs ([`jaeger_otlp`]); its own metrics are off (`level: none`).
pub const JAEGER: ToolInfo = ToolInfo {
    name: "jaeger",
    title: "Jaeger",
    binaries: &["jaeger"],
    ports: &[
        ToolPort {
            what: "UI and HTTP API",
            port: 16686,
            env: Some("JAEGER_UI_LISTEN"),
        },
        ToolPort {
            what: "query gRPC API",
            port: 16685,
            env: Some("JAEGER_QUERY_GRPC_LISTEN"),
        },
    ],
    ready_on: 0,
    ready_path: "/",
    any_answer_is_ready: false,
    browsable: true,
    note: "",
    usual_squatter: "another Jaeger",
};

/// Every tool, in the order they start.
pub const ALL: [&ToolInfo; 5] = [&PROMETHEUS, &ALERTMANAGER, &GRAFANA, &COLLECTOR, &JAEGER];

/// The browsable tools' URLs, `Title URL, ...` (the kind cluster publishes them on the
/// same ports).
pub fn browsable_urls() -> String {
    ALL.iter()
        .filter(|tool| tool.browsable)
        .map(|tool| format!("{} {}", tool.title, tool.user_url()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every tool's ports, `Title PORT (what), ...`, for `--help`.
pub fn ports_help() -> String {
    ALL.iter()
        .map(|tool| {
            let ports: Vec<String> = tool
                .ports
                .iter()
                .map(|p| format!("{} ({})", p.port, p.what))
                .collect();
            format!("{} {}", tool.title, ports.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where the services send spans: the collector's OTLP/gRPC receiver, or Jaeger's own
/// when it runs alone.
const OTLP_GRPC: ToolPort = ToolPort {
    what: "OTLP/gRPC receiver",
    port: 4317,
    env: Some("OTLP_GRPC_LISTEN"),
};

/// The endpoint the services export spans to, when a collector or Jaeger runs.
pub fn otlp_endpoint() -> String {
    format!("http://{}", OTLP_GRPC.address())
}

/// Jaeger's OTLP receiver behind a collector, which forwards to it there.
pub const JAEGER_OTLP_BEHIND_COLLECTOR: u16 = 14317;

/// Jaeger's OTLP/gRPC receiver on the host: where the services export when it runs
/// alone, beside the collector's port when one runs.
pub fn jaeger_otlp(behind_collector: bool) -> ToolPort {
    ToolPort {
        what: OTLP_GRPC.what,
        port: if behind_collector {
            JAEGER_OTLP_BEHIND_COLLECTOR
        } else {
            OTLP_GRPC.port
        },
        env: Some("JAEGER_OTLP_LISTEN"),
    }
}

/// What most likely holds `port`, if it is one of the tools': another of the same tool,
/// and for the port a person opens, the kind cluster's (it publishes every browsable
/// tool on the same port, `manifests/kind.yaml`).
pub fn likely_owner(port: u16) -> Option<String> {
    if port == JAEGER_OTLP_BEHIND_COLLECTOR {
        return Some(JAEGER.usual_squatter.to_owned());
    }
    let tool = ALL
        .iter()
        .find(|tool| tool.ports.iter().any(|p| p.port == port))?;
    Some(if tool.browsable && tool.port() == port {
        format!("{} {CLUSTER_HINT}", tool.usual_squatter)
    } else {
        tool.usual_squatter.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No two tools claim a port, so the port check's names are unambiguous.
    #[test]
    fn no_two_listeners_share_a_port() {
        let mut ports: Vec<u16> = ALL
            .iter()
            .flat_map(|tool| tool.ports.iter().map(|p| p.port))
            .chain([JAEGER_OTLP_BEHIND_COLLECTOR])
            .collect();
        let count = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), count, "{ports:?}");
    }

    #[test]
    fn the_printed_urls_come_from_the_table() {
        let urls: Vec<String> = ALL.iter().map(|tool| tool.user_url()).collect();
        assert_eq!(
            urls,
            [
                "http://localhost:9090",
                "http://localhost:9093",
                "http://localhost:3000 (admin/admin)",
                "OTLP/gRPC receiver localhost:4317, OTLP/HTTP receiver localhost:4318",
                "http://localhost:16686",
            ]
        );
        assert_eq!(COLLECTOR.ready_url(), "http://127.0.0.1:4318/");
        assert_eq!(GRAFANA.ready_url(), "http://127.0.0.1:3000/api/health");
    }

    #[test]
    fn a_taken_tool_port_names_the_tool() {
        assert_eq!(
            likely_owner(9090).as_deref(),
            Some("another Prometheus (the kind cluster's: `cargo xtask cluster down`)")
        );
        assert_eq!(
            likely_owner(3000).as_deref(),
            Some(
                "another Grafana or a web dev server (the kind cluster's: `cargo xtask cluster down`)"
            )
        );
        assert_eq!(likely_owner(16685).as_deref(), Some("another Jaeger"));
        assert_eq!(likely_owner(14317).as_deref(), Some("another Jaeger"));
        assert_eq!(
            likely_owner(4318).as_deref(),
            Some("another OpenTelemetry Collector or Jaeger")
        );
        assert_eq!(likely_owner(1234), None);
    }
}
