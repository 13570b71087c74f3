//! From a request to its trace, with the real binary and a real OTLP receiver: the
//! `x-trace-id` header, exemplars on both latency histograms (read by a real Prometheus
//! too), `OTEL_METRICS_EXEMPLAR_FILTER`, and no spans for probes and scrapes.

use std::time::{Duration, SystemTime};

use contract::{endpoints, topology::url_variable};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::Value;

use crate::{
    exposition::PROMETHEUS_ACCEPT,
    otlp::{Receiver, Service, exporting_to, hex},
    support::{exemplars, require, series},
};

/// `GET url`, as Prometheus would ask when `openmetrics`: status, `x-trace-id`, body.
async fn get(url: &str, openmetrics: bool) -> (u16, Option<String>, String) {
    let mut request = reqwest::Client::new().get(url);
    if openmetrics {
        request = request.header("accept", PROMETHEUS_ACCEPT);
    }
    let response = request.send().await.expect("GET");
    let trace = response
        .headers()
        .get(contract::TRACE_ID_HEADER)
        .map(|value| value.to_str().expect("ASCII").to_owned());
    let status = response.status().as_u16();
    (status, trace, response.text().await.expect("body"))
}

/// product-service calling inventory-service, both exporting to `endpoint`, with `env`.
async fn product_and_inventory(endpoint: &str, env: &[(String, String)]) -> (Service, Service) {
    let mut inventory_env = exporting_to(endpoint);
    inventory_env.extend_from_slice(env);
    let inventory = Service::start("inventory-service", &inventory_env).await;
    let mut product_env = inventory_env;
    product_env.push((url_variable("inventory-service"), inventory.url.clone()));
    let product = Service::start("product-service", &product_env).await;
    (product, inventory)
}

async fn stop(mut service: Service) {
    service.signal("-TERM");
    assert_eq!(service.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_and_scrapes_make_no_spans_while_the_api_does() {
    let (receiver, endpoint) = Receiver::start().await;
    let service = Service::start("user-service", &exporting_to(&endpoint)).await;

    for path in endpoints::OPERATIONAL {
        for openmetrics in [false, true] {
            let (status, trace, _) = get(&format!("{}{path}", service.url), openmetrics).await;
            assert_eq!((status, trace), (200, None), "{path}");
        }
    }
    let (status, trace, _) = get(&format!("{}{}", service.url, endpoints::DATA), false).await;
    assert_eq!(status, 200);
    let trace = trace.expect("an /api/* answer names its trace");

    // One exporter, one queue: spans of the probes, had there been any, would have left
    // no later than the one of /api/data.
    let spans = receiver
        .wait_for("the span of /api/data", |spans| {
            spans.iter().any(|span| hex(&span.trace_id) == trace)
        })
        .await;
    let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
    assert_eq!(names, ["GET /api/data"], "only the API's request is traced");

    // Still counted: two of each probe so far, the scrape below not yet.
    let (_, _, text) = get(&format!("{}/metrics", service.url), false).await;
    for path in endpoints::OPERATIONAL {
        let labels = [("endpoint", path), ("status", "200")];
        assert_eq!(series(&text, "http_requests_total", &labels), 2.0, "{path}");
        let count = series(
            &text,
            "http_request_duration_seconds_count",
            &[("endpoint", path)],
        );
        assert_eq!(count, 2.0, "{path}");
    }
    stop(service).await;
}

/// Every traced request writes one `request served` log line in its span, so the line
/// carries the trace id that the answer's header names; the line is not exported as a
/// span event (the span has the same facts as attributes). Probes write none.
#[tokio::test(flavor = "multi_thread")]
async fn each_traced_request_logs_one_line_with_its_trace_id() {
    let (receiver, endpoint) = Receiver::start().await;
    let service = Service::start("user-service", &exporting_to(&endpoint)).await;
    get(&format!("{}{}", service.url, endpoints::HEALTH), false).await;
    let (status, trace, _) = get(&format!("{}{}", service.url, endpoints::DATA), false).await;
    assert_eq!(status, 200);
    let trace = trace.expect("x-trace-id");

    let line = service.wait_for_log("request served").await;
    assert_eq!(line["trace_id"], trace.as_str(), "{line}");
    assert_eq!(line["route"], endpoints::DATA, "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert!(line["duration_ms"].as_f64().is_some(), "{line}");
    let served = service
        .log_lines()
        .into_iter()
        .filter(|line| line["message"] == "request served")
        .count();
    assert_eq!(served, 1, "one line for /api/data, none for /health");

    let spans = receiver
        .wait_for("the span of /api/data", |spans| {
            spans.iter().any(|span| hex(&span.trace_id) == trace)
        })
        .await;
    assert!(
        spans.iter().all(|span| span.events.is_empty()),
        "the access log became a span event: {spans:?}"
    );
    stop(service).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exemplars_name_the_spans_the_receiver_got() {
    let (receiver, endpoint) = Receiver::start().await;
    let (product, inventory) = product_and_inventory(&endpoint, &[]).await;

    let (status, trace, _) = get(&format!("{}/api/data", product.url), false).await;
    assert_eq!(status, 200);
    let trace = trace.expect("x-trace-id");

    let (_, _, open) = get(&format!("{}/metrics", product.url), true).await;
    let server = exemplars(
        &open,
        "http_request_duration_seconds_bucket",
        &[("endpoint", "/api/data")],
    );
    let client = exemplars(
        &open,
        "downstream_request_duration_seconds_bucket",
        &[("service", "inventory-service")],
    );
    assert_eq!(server.len(), 1, "one request, one exemplar:\n{open}");
    assert_eq!(client.len(), 1, "one call, one exemplar:\n{open}");
    let (server_trace, server_span) = &server[0];
    let (client_trace, client_span) = &client[0];
    assert_eq!((server_trace, client_trace), (&trace, &trace), "{open}");

    let spans = receiver
        .wait_for("the exemplars' spans", |spans| {
            [server_span, client_span]
                .iter()
                .all(|id| spans.iter().any(|span| &hex(&span.span_id) == *id))
        })
        .await;
    let span = |id: &str| {
        spans
            .iter()
            .find(|span| hex(&span.span_id) == id)
            .expect("received")
    };
    let (server, client) = (span(server_span), span(client_span));
    assert_eq!(hex(&server.trace_id), trace);
    assert_eq!(
        (server.service.as_str(), server.kind, server.name.as_str()),
        ("product-service", SpanKind::Server as i32, "GET /api/data")
    );
    assert_eq!(hex(&client.trace_id), trace);
    assert_eq!(
        (client.service.as_str(), client.kind),
        ("product-service", SpanKind::Client as i32)
    );
    assert_eq!(
        client.parent_span_id, server.span_id,
        "the call made in that request"
    );

    // The text format, for a plain curl, has none.
    let (_, _, plain) = get(&format!("{}/metrics", product.url), false).await;
    assert!(!plain.contains(&trace), "{plain}");
    stop(product).await;
    stop(inventory).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn always_off_drops_exemplars_but_not_traces() {
    let (receiver, endpoint) = Receiver::start().await;
    let mut env = exporting_to(&endpoint);
    env.push(("OTEL_METRICS_EXEMPLAR_FILTER".into(), "always_off".into()));
    let service = Service::start("user-service", &env).await;

    let (status, trace, _) = get(&format!("{}/api/data", service.url), false).await;
    assert_eq!(status, 200);
    let trace = trace.expect("x-trace-id");
    receiver
        .wait_for("the traced request", |spans| {
            spans.iter().any(|span| hex(&span.trace_id) == trace)
        })
        .await;
    let (_, _, open) = get(&format!("{}/metrics", service.url), true).await;
    assert!(
        open.contains("\nhttp_request_duration_seconds_bucket{"),
        "{open}"
    );
    assert!(!open.contains(" # {"), "no exemplar at all:\n{open}");
    stop(service).await;
}

#[test]
fn an_unknown_exemplar_filter_stops_start_up_naming_the_variable_and_the_choices() {
    let binary = env!("CARGO_BIN_EXE_mock-service");
    let output = std::process::Command::new(binary)
        .env("SERVICE_NAME", "user-service")
        .env("OTEL_METRICS_EXEMPLAR_FILTER", "sometimes")
        .env("PORT", "0")
        .env("ADMIN_PORT", "0")
        .output()
        .expect("run mock-service");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for part in [
        "OTEL_METRICS_EXEMPLAR_FILTER=sometimes",
        "trace_based",
        "always_off",
    ] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }

    let help = std::process::Command::new(binary)
        .arg("--help")
        .output()
        .expect("run mock-service --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for part in [
        "OTEL_METRICS_EXEMPLAR_FILTER",
        "always_off",
        "x-trace-id",
        "openmetrics",
    ] {
        assert!(help.contains(part), "{part}: {help}");
    }
}

/// A real Prometheus (2.42 here) scrapes product-service as it scrapes the mesh: it asks
/// for OpenMetrics, parses the answer, and keeps the exemplars of both histograms; each
/// names a trace of the requests sent, which the receiver got.
#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_openmetrics_and_keeps_the_exemplars() {
    let Some(prometheus) = require("prometheus", "apt-get install prometheus, or nix develop")
    else {
        return;
    };
    let (receiver, endpoint) = Receiver::start().await;
    let (product, inventory) = product_and_inventory(&endpoint, &[]).await;
    let mut traces = Vec::new();
    for _ in 0..5 {
        let (status, trace, _) = get(&format!("{}/api/data", product.url), false).await;
        assert_eq!(status, 200);
        traces.push(trace.expect("x-trace-id"));
    }

    let server = PrometheusServer::start(&prometheus, &product.url).await;
    let target = server.wait_for_target().await;
    assert_eq!(target["lastError"], "", "{target}");
    for (histogram, selector) in [
        (
            "http_request_duration_seconds_bucket",
            r#"endpoint="/api/data""#,
        ),
        (
            "downstream_request_duration_seconds_bucket",
            r#"service="inventory-service""#,
        ),
    ] {
        let found = server
            .exemplar_traces(&format!("{histogram}{{{selector}}}"))
            .await;
        assert!(!found.is_empty(), "no exemplar of {histogram}");
        for trace in &found {
            assert!(
                traces.contains(trace),
                "{histogram}: {trace} is none of {traces:?}"
            );
        }
        receiver
            .wait_for("the exemplars' traces", |spans| {
                found
                    .iter()
                    .all(|trace| spans.iter().any(|span| &hex(&span.trace_id) == trace))
            })
            .await;
    }
    drop(server);
    stop(product).await;
    stop(inventory).await;
}

/// Prometheus on a free loopback port with exemplar storage on, scraping one target every
/// second; stopped, and its data removed, when dropped.
struct PrometheusServer {
    process: tokio::process::Child,
    url: String,
    data: std::path::PathBuf,
}

impl PrometheusServer {
    async fn start(binary: &std::path::Path, target_url: &str) -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("address").port()
        };
        let data = std::env::temp_dir().join(format!(
            "mock-service-prometheus-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&data).expect("data directory");
        let config = data.join("prometheus.yml");
        let target = target_url.trim_start_matches("http://");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: mesh\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write the config");
        let process = tokio::process::Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=exemplar-storage")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start prometheus");
        PrometheusServer {
            process,
            url: format!("http://127.0.0.1:{port}"),
            data,
        }
    }

    /// `data` of a successful answer of the HTTP API; `None` until Prometheus is up.
    async fn api(&self, path: &str, query: &[(&str, String)]) -> Option<Value> {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.url), query)
            .expect("a valid URL");
        let response = reqwest::Client::new().get(url).send().await.ok()?;
        let body: Value = serde_json::from_str(&response.text().await.ok()?).ok()?;
        (body["status"] == "success").then(|| body["data"].clone())
    }

    /// The target once Prometheus has scraped it at least once (20 s at most).
    async fn wait_for_target(&self) -> Value {
        for _ in 0..200 {
            if let Some(data) = self.api("/api/v1/targets", &[]).await
                && let Some(target) = data["activeTargets"].get(0)
                && target["health"] != "unknown"
            {
                return target.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("Prometheus did not scrape its target within 20 s");
    }

    /// The trace ids of the exemplars `selector` has stored, waiting up to 20 s for some.
    async fn exemplar_traces(&self, selector: &str) -> Vec<String> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let query = [
            ("query", selector.to_owned()),
            ("start", (now - 600).to_string()),
            ("end", (now + 600).to_string()),
        ];
        for _ in 0..200 {
            let traces: Vec<String> = self
                .api("/api/v1/query_exemplars", &query)
                .await
                .into_iter()
                .flat_map(|data| data.as_array().cloned().unwrap_or_default())
                .flat_map(|series| series["exemplars"].as_array().cloned().unwrap_or_default())
                .filter_map(|exemplar| exemplar["labels"]["trace_id"].as_str().map(str::to_owned))
                .collect();
            if !traces.is_empty() {
                return traces;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Vec::new()
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.process.start_kill();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
