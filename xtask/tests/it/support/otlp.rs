//! A real OTLP/gRPC trace receiver for the tests (tonic's server of the OTLP trace
//! service, on 127.0.0.1): what the services export is kept and can be read back.

use std::{sync::Mutex, time::Duration};

/// One span a [`TraceReceiver`] got.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// 32 hex digits, as the services log it and Prometheus's exemplars carry it.
    pub trace_id: String,
    /// The resource's `service.name`.
    pub service: String,
    pub name: String,
    /// Its status is ERROR.
    pub error: bool,
    pub duration: Duration,
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
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        let mut kept = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(name) => Some(name.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                // OTLP's StatusCode: 2 is ERROR.
                let error = span.status.as_ref().is_some_and(|status| status.code == 2);
                let nanos = span
                    .end_time_unix_nano
                    .saturating_sub(span.start_time_unix_nano);
                kept.push(ReceivedSpan {
                    trace_id: span.trace_id.iter().map(|b| format!("{b:02x}")).collect(),
                    service: service.clone(),
                    name: span.name,
                    error,
                    duration: Duration::from_nanos(nanos),
                });
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
}

impl Drop for TraceReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
