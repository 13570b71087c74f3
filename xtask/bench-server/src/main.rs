//! The two peers `cargo xtask bench` runs beside the mesh, each as its own process
//! (`bench-server hello|otlp`):
//! - a bare axum hello-world, the machine's HTTP ceiling that the mesh is compared with
//!   and the endpoint every load generator is measured against;
//! - an OTLP/gRPC trace receiver that counts and drops spans, so "telemetry on" exports
//!   over a real gRPC connection without a collector's own cost in the figures.
//!
//! A crate of its own, built only by the benchmark, so that xtask (which every
//! `cargo xtask` command compiles first) carries no gRPC server and no OTLP protocol code.
//!
//! Each prints `listening on ADDR` as its first line of stdout; the OTLP receiver prints
//! `spans N` when it stops. SIGTERM or Ctrl+C stops either.

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

const USAGE: &str = "usage: bench-server hello|otlp
  hello   a bare axum hello-world on GET /api/data and /health
  otlp    an OTLP/gRPC trace receiver that counts spans, printed as `spans N` at the end
Each binds 127.0.0.1 on a free port and prints `listening on ADDR` first; SIGTERM stops it.";

/// Which peer to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerKind {
    Hello,
    Otlp,
}

impl ServerKind {
    /// The one argument, or the usage as the error.
    fn from_args(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let kind = match args.next().as_deref() {
            Some("hello") => Self::Hello,
            Some("otlp") => Self::Otlp,
            Some("-h" | "--help") => return Err(USAGE.to_owned()),
            Some(other) => return Err(format!("unknown server `{other}`\n{USAGE}")),
            None => return Err(USAGE.to_owned()),
        };
        match args.next() {
            Some(extra) => Err(format!("unexpected argument `{extra}`\n{USAGE}")),
            None => Ok(kind),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let kind = match ServerKind::from_args(std::env::args().skip(1)) {
        Ok(kind) => kind,
        Err(usage) => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    match kind {
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

/// The hello-world of axum's README, on the generators' path (`endpoints::DATA`);
/// `/health` too, which the traffic generator asks before it starts.
fn hello_app() -> Router {
    async fn hello() -> &'static str {
        "Hello, World!"
    }
    Router::new()
        .route(endpoints::DATA, get(hello))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ServerKind, String> {
        ServerKind::from_args(args.iter().map(|&a| a.to_owned()))
    }

    #[test]
    fn one_known_server_is_accepted_and_anything_else_gets_the_usage() {
        assert_eq!(parse(&["hello"]), Ok(ServerKind::Hello));
        assert_eq!(parse(&["otlp"]), Ok(ServerKind::Otlp));
        for bad in [&[][..], &["grpc"], &["hello", "otlp"], &["--help"]] {
            let error = parse(bad).expect_err("rejected");
            assert!(error.contains("usage: bench-server"), "{bad:?}: {error}");
        }
    }
}
