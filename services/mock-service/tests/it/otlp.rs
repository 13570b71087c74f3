//! The real binary as child processes, and a real OTLP/gRPC trace receiver for them to
//! export to: what the process-level test modules share.

use std::{
    collections::HashMap,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value as AnyValue,
};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    net::TcpListener,
    process::{Child, Command},
};

#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub service: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent_span_id: Vec<u8>,
    pub name: String,
    pub kind: i32,
    pub status: i32,
    /// The status's message (empty when none was set).
    pub status_message: String,
    pub attributes: HashMap<String, String>,
    pub events: Vec<String>,
}

/// A real OTLP/gRPC trace receiver, keeping every span it is sent.
#[derive(Clone, Default)]
pub struct Receiver(Arc<Mutex<Vec<ReceivedSpan>>>);

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
                    status: span.status.as_ref().map_or(0, |s| s.code),
                    status_message: span.status.map(|s| s.message).unwrap_or_default(),
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
    pub async fn start() -> (Receiver, String) {
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

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.0.lock().expect("lock").clone()
    }

    /// Polls until `done` holds for the spans received, or fails after 20 s.
    pub async fn wait_for(
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

/// The environment of a service that exports its spans to `endpoint`, batched every
/// 100 ms so that tests wait little.
pub fn exporting_to(endpoint: &str) -> Vec<(String, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.into()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ]
}

/// One mock-service process; its stdout (JSON logs) is collected.
pub struct Service {
    child: Child,
    pub url: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Service {
    pub async fn start(name: &str, env: &[(String, String)]) -> Service {
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

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub async fn exit_code(&mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("exits within 15 s")
            .expect("wait")
            .code()
    }

    /// The first log line with this message, waiting up to 10 s for it.
    pub async fn wait_for_log(&self, message: &str) -> serde_json::Value {
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

    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        let lines = self.logs.lock().expect("lock");
        lines
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
