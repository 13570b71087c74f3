//! The two peers the benchmark runs beside the mesh, as separate processes of the release
//! xtask binary (`xtask bench-server hello|otlp`, hidden from `--help`):
//! - a bare axum hello-world, the machine's HTTP ceiling that the mesh is compared with
//!   and the endpoint every load generator is measured against;
//! - an OTLP/gRPC trace receiver that counts and drops spans, so "telemetry on" exports
//!   over a real gRPC connection without a collector's own cost in the figures.
//!
//! Each prints `listening on ADDR` as its first line of stdout; the OTLP receiver prints
//! `spans N` when it stops.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use axum::{Router, routing::get};
use contract::endpoints;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use tokio::net::TcpListener;

/// What the hello-world answers, on the path the load generators use.
pub const HELLO_PATH: &str = endpoints::DATA;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask bench-server hello   # prints `listening on 127.0.0.1:PORT`; SIGTERM stops it
  cargo xtask bench-server otlp    # the same, and `spans N` when it stops")]
pub struct ServerArgs {
    #[arg(value_enum)]
    pub kind: ServerKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ServerKind {
    Hello,
    Otlp,
}

impl ServerArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on {}", listener.local_addr()?);
        match self.kind {
            ServerKind::Hello => {
                axum::serve(listener, hello_app())
                    .with_graceful_shutdown(stopped())
                    .await?;
            }
            ServerKind::Otlp => {
                let receiver = SpanCounter::default();
                tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(receiver.clone()))
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        stopped(),
                    )
                    .await?;
                println!("spans {}", receiver.0.load(Ordering::Relaxed));
            }
        }
        Ok(())
    }
}

/// The hello-world of axum's README, on the generators' path; `/health` too, which the
/// traffic generator asks before it starts.
pub fn hello_app() -> Router {
    async fn hello() -> &'static str {
        "Hello, World!"
    }
    Router::new()
        .route(HELLO_PATH, get(hello))
        .route(endpoints::HEALTH, get(hello))
}

async fn stopped() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Accepts every export and counts its spans.
#[derive(Clone, Default)]
struct SpanCounter(Arc<AtomicU64>);

#[tonic::async_trait]
impl TraceService for SpanCounter {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}
