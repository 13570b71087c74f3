//! A real OTLP/gRPC trace receiver for the tests (tonic's server of the OTLP trace
//! service, on 127.0.0.1): what the services export is kept and can be read back.

use std::{collections::HashMap, sync::Mutex, time::Duration};

/// One span a [`TraceReceiver`] got.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// 32 hex digits, as the services log it and Prometheus's exemplars carry it.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// The parent's 16 hex digits; empty for a trace's root.
    pub parent_span_id: String,
    /// The resource's `service.name`.
    pub service: String,
    pub name: String,
    pub kind: SpanKind,
    /// Its status is ERROR.
    pub error: bool,
    /// When it started, in nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    pub duration: Duration,
    /// Its attributes (`http.route`, `http.response.status_code`, `peer.service`, ...),
    /// each value as text.
    pub attributes: HashMap<String, String>,
}

/// A span's kind, as OTLP says it; the services make only server and client spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Server,
    Client,
    Other,
}

impl ReceivedSpan {
    /// The attribute `key`, when the span has it.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    fn from_otlp(service: &str, span: opentelemetry_proto::tonic::trace::v1::Span) -> ReceivedSpan {
        use opentelemetry_proto::tonic::trace::v1::span::SpanKind as Otlp;
        let kind = match Otlp::try_from(span.kind) {
            Ok(Otlp::Server) => SpanKind::Server,
            Ok(Otlp::Client) => SpanKind::Client,
            _ => SpanKind::Other,
        };
        // OTLP's StatusCode: 2 is ERROR.
        let error = span.status.as_ref().is_some_and(|status| status.code == 2);
        let nanos = span
            .end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano);
        ReceivedSpan {
            trace_id: hex(&span.trace_id),
            span_id: hex(&span.span_id),
            parent_span_id: hex(&span.parent_span_id),
            service: service.to_owned(),
            name: span.name,
            kind,
            error,
            start_unix_nanos: span.start_time_unix_nano,
            duration: Duration::from_nanos(nanos),
            attributes: attributes(&span.attributes),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// OTLP attributes as text: strings as they are, numbers and booleans spelled out.
fn attributes(
    list: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> HashMap<String, String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    list.iter()
        .filter_map(|attribute| {
            let value = match attribute.value.as_ref()?.value.as_ref()? {
                Value::StringValue(text) => text.clone(),
                Value::IntValue(number) => number.to_string(),
                Value::DoubleValue(number) => number.to_string(),
                Value::BoolValue(yes) => yes.to_string(),
                _ => return None,
            };
            Some((attribute.key.clone(), value))
        })
        .collect()
}

/// A real OTLP/gRPC trace receiver on 127.0.0.1 (tonic, in a thread of its own) that
/// keeps what it is sent; it stops when dropped.
pub struct TraceReceiver {
    pub endpoint: String,
    spans: std::sync::Arc<Mutex<Vec<ReceivedSpan>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Clone, Default)]
struct Keeper(std::sync::Arc<Mutex<Vec<ReceivedSpan>>>);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Keeper
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let mut kept = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .map(|r| attributes(&r.attributes))
                .and_then(|mut attributes| attributes.remove("service.name"))
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                kept.push(ReceivedSpan::from_otlp(&service, span));
            }
        }
        Ok(tonic::Response::new(
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse {
                partial_success: None,
            },
        ))
    }
}

impl TraceReceiver {
    pub fn start() -> TraceReceiver {
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let keeper = Keeper::default();
        let spans = keeper.0.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(keeper))
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        async {
                            let _ = stopped.await;
                        },
                    )
                    .await
                    .expect("the OTLP receiver runs");
            });
        });
        TraceReceiver {
            endpoint,
            spans,
            stop: Some(stop),
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The spans received so far that started at or after `unix_nanos`.
    pub fn spans_since(&self, unix_nanos: u64) -> Vec<ReceivedSpan> {
        self.spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|span| span.start_unix_nanos >= unix_nanos)
            .cloned()
            .collect()
    }
}

impl Drop for TraceReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
