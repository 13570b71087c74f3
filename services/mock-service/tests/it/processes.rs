//! The real binary, as seven processes, exporting spans over OTLP/gRPC to a real gRPC
//! receiver in this test; and the binary's shutdown on SIGTERM.

use std::{
    collections::HashMap,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use mock_service::{config::url_variable, topology::Topology};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value as AnyValue,
    trace::v1::{span::SpanKind, status::StatusCode as SpanStatus},
};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    net::TcpListener,
    process::{Child, Command},
};

#[derive(Clone, Debug)]
struct ReceivedSpan {
    service: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    name: String,
    kind: i32,
    status: i32,
    attributes: HashMap<String, String>,
    events: Vec<String>,
}

/// A real OTLP/gRPC trace receiver, keeping every span it is sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<ReceivedSpan>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().expect("lock");
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                    name: span.name,
                    kind: span.kind,
                    status: span.status.map_or(0, |s| s.code),
                    attributes: attributes(&span.attributes),
                    events: span.events.iter().map(|e| e.name.clone()).collect(),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attributes(
    list: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> HashMap<String, String> {
    list.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                _ => String::new(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (receiver, endpoint)
    }

    fn spans(&self) -> Vec<ReceivedSpan> {
        self.0.lock().expect("lock").clone()
    }

    /// Polls until `done` holds for the spans received, or fails after 20 s.
    async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        for _ in 0..200 {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}; received {:#?}", self.spans());
    }
}

/// One mock-service process; its stdout (JSON logs) is collected.
struct Service {
    child: Child,
    url: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Service {
    async fn start(name: &str, env: &[(String, String)]) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mock-service"))
            .env("SERVICE_NAME", name)
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("ADMIN_PORT", "0")
            .envs(env.iter().cloned())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mock-service");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let address = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                let log: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
                if log["message"] == "listening" {
                    return log["address"].as_str().expect("address").to_owned();
                }
            }
            panic!("{name} exited before listening");
        })
        .await
        .unwrap_or_else(|_| panic!("{name} did not start listening within 10 s"));

        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("lock").push(line);
            }
        });
        Service {
            child,
            url: format!("http://{address}"),
            logs,
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    async fn exit_code(&mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("exits within 15 s")
            .expect("wait")
            .code()
    }

    /// The first log line with this message, waiting up to 10 s for it.
    async fn wait_for_log(&self, message: &str) -> serde_json::Value {
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(line) = self
                    .log_lines()
                    .into_iter()
                    .find(|l| l["message"] == message)
                {
                    return line;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        found
            .await
            .unwrap_or_else(|_| panic!("no log line `{message}` within 10 s"))
    }

    fn log_lines(&self) -> Vec<serde_json::Value> {
        let lines = self.logs.lock().expect("lock");
        lines
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

/// Starts every service of the guide's topology, dependencies first, so each caller is
/// given its dependencies' real URLs.
async fn start_mesh(otlp_endpoint: &str) -> HashMap<String, Service> {
    let topology = Topology::guide();
    let mut running: HashMap<String, Service> = HashMap::new();
    while running.len() < topology.service_names().len() {
        for service in topology.services() {
            let deps = service.dependencies();
            if running.contains_key(&service.name) || !deps.iter().all(|d| running.contains_key(*d))
            {
                continue;
            }
            let mut env: Vec<(String, String)> = deps
                .iter()
                .map(|dep| (url_variable(dep), running[*dep].url.clone()))
                .collect();
            env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), otlp_endpoint.into()));
            env.push(("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()));
            running.insert(
                service.name.clone(),
                Service::start(&service.name, &env).await,
            );
        }
    }
    running
}

/// `POST /api/action` at the gateway; the status it answers.
async fn post_action(client: &reqwest::Client, gateway: &str) -> u16 {
    let response = client
        .post(format!("{gateway}/api/action"))
        .send()
        .await
        .expect("action");
    response.status().as_u16()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_action_is_one_trace_of_ten_server_spans_across_seven_services() {
    let (receiver, endpoint) = Receiver::start().await;
    let mut mesh = start_mesh(&endpoint).await;
    let client = reqwest::Client::new();
    let gateway = mesh["gateway-service"].url.clone();

    assert_eq!(post_action(&client, &gateway).await, 200);
    let response = client
        .get(format!("{gateway}/api/error"))
        .send()
        .await
        .expect("error");
    assert_eq!(response.status(), 500);

    let is_action_root = |s: &ReceivedSpan| {
        s.service == "gateway-service"
            && s.name == "POST /api/action"
            && s.parent_span_id.is_empty()
    };
    let spans = receiver
        .wait_for(
            "ten server spans of the action's trace and the error span",
            |spans| {
                let Some(root) = spans.iter().find(|s| is_action_root(s)) else {
                    return false;
                };
                let servers = spans
                    .iter()
                    .filter(|s| s.trace_id == root.trace_id && s.kind == SpanKind::Server as i32)
                    .count();
                servers >= 10 && spans.iter().any(|s| s.name == "GET /api/error")
            },
        )
        .await;

    let root = spans.iter().find(|s| is_action_root(s)).expect("root");
    let trace: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == root.trace_id)
        .collect();
    let servers: Vec<&&ReceivedSpan> = trace
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(servers.len(), 10, "{servers:#?}");
    let mut services: Vec<&str> = servers.iter().map(|s| s.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    assert_eq!(services.len(), 7, "{services:?}");

    // Every server span but the root is the child of a client span of its caller.
    let by_id: HashMap<&[u8], &ReceivedSpan> =
        trace.iter().map(|s| (s.span_id.as_slice(), *s)).collect();
    let mut edges: Vec<(String, String)> = servers
        .iter()
        .filter(|s| !s.parent_span_id.is_empty())
        .map(|server| {
            let client = by_id[server.parent_span_id.as_slice()];
            assert_eq!(client.kind, SpanKind::Client as i32, "parent of {server:?}");
            let caller = by_id[client.parent_span_id.as_slice()];
            assert_eq!(caller.kind, SpanKind::Server as i32, "parent of {client:?}");
            assert_eq!(caller.service, client.service);
            (caller.service.clone(), server.service.clone())
        })
        .collect();
    edges.sort();
    let mut expected: Vec<(String, String)> = [
        ("gateway-service", "order-service"),
        ("gateway-service", "product-service"),
        ("gateway-service", "user-service"),
        ("order-service", "payment-service"),
        ("order-service", "product-service"),
        ("order-service", "user-service"),
        ("payment-service", "notification-service"),
        ("product-service", "inventory-service"),
        ("product-service", "inventory-service"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    expected.sort();
    assert_eq!(edges, expected);

    // HTTP semantic conventions on the server spans.
    for server in &servers {
        let route = &server.attributes["http.route"];
        let method = &server.attributes["http.request.method"];
        assert_eq!(server.name, format!("{method} {route}"));
        assert_eq!(server.attributes["http.response.status_code"], "200");
        assert_ne!(server.status, SpanStatus::Error as i32);
    }
    let error_span = spans
        .iter()
        .find(|s| s.name == "GET /api/error")
        .expect("error span");
    assert_eq!(error_span.status, SpanStatus::Error as i32);
    assert_eq!(error_span.attributes["http.response.status_code"], "500");

    // An injected latency is an event on the affected server span.
    let admin = mesh["inventory-service"]
        .wait_for_log("admin API listening")
        .await["address"]
        .as_str()
        .expect("address")
        .to_owned();
    let fault = client
        .put(format!("http://{admin}/faults"))
        .body(r#"{"latency_ms": 50, "route": "/api/data"}"#)
        .send()
        .await
        .expect("PUT /faults");
    assert_eq!(fault.status(), 200);
    assert_eq!(post_action(&client, &gateway).await, 200);
    let spans = receiver
        .wait_for("an inventory-service span with the fault event", |spans| {
            spans.iter().any(|s| {
                s.service == "inventory-service"
                    && s.events.iter().any(|e| e.contains("fault injected"))
            })
        })
        .await;
    let faulted = spans
        .iter()
        .find(|s| {
            s.service == "inventory-service"
                && s.events.iter().any(|e| e.contains("fault injected"))
        })
        .expect("span");
    assert_eq!(
        (faulted.kind, faulted.name.as_str()),
        (SpanKind::Server as i32, "GET /api/data")
    );
    client
        .delete(format!("http://{admin}/faults"))
        .send()
        .await
        .expect("DELETE /faults");

    // A failing dependency: an error span, and a log line that leads to it.
    mesh.get_mut("notification-service")
        .expect("running")
        .signal("-KILL");
    assert_eq!(post_action(&client, &gateway).await, 502);
    let warning = mesh["payment-service"]
        .wait_for_log("downstream call failed")
        .await;
    assert_eq!(warning["dependency"], "notification-service");
    let trace_id = warning["trace_id"]
        .as_str()
        .expect("the log line carries trace_id")
        .to_owned();
    let span_id = warning["span_id"]
        .as_str()
        .expect("the log line carries span_id")
        .to_owned();
    let spans = receiver
        .wait_for("the failed client span", |spans| {
            spans.iter().any(|s| hex(&s.span_id) == span_id)
        })
        .await;
    let failed = spans
        .iter()
        .find(|s| hex(&s.span_id) == span_id)
        .expect("span");
    assert_eq!(hex(&failed.trace_id), trace_id);
    assert_eq!(
        (failed.kind, failed.status),
        (SpanKind::Client as i32, SpanStatus::Error as i32)
    );
    assert_eq!(failed.service, "payment-service");

    for (name, service) in &mut mesh {
        if name != "notification-service" {
            service.signal("-TERM");
            assert_eq!(service.exit_code().await, Some(0), "{name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_turns_ready_off_and_lets_a_slow_request_finish() {
    let env = [
        ("OTEL_SDK_DISABLED".to_owned(), "true".to_owned()),
        ("SHUTDOWN_DELAY_MS".to_owned(), "1000".to_owned()),
    ];
    let mut service = Service::start("user-service", &env).await;
    let client = reqwest::Client::new();
    let url = service.url.clone();

    let slow = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .get(format!("{url}/api/slow"))
                .send()
                .await
                .map(|r| r.status())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    service.signal("-TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let ready = reqwest::Client::new()
        .get(format!("{url}/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 503);
    assert_eq!(
        slow.await
            .expect("join")
            .expect("the slow request completes"),
        200
    );
    assert_eq!(service.exit_code().await, Some(0));
    assert!(
        reqwest::Client::new()
            .get(format!("{url}/health"))
            .send()
            .await
            .is_err(),
        "port still open"
    );
}
