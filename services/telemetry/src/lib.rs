//! Everything an axum service needs to be observable, in one small crate that a reader
//! can copy into their own service:
//!
//! - [`init`]: JSON logs carrying trace and span ids, and OpenTelemetry traces exported
//!   over OTLP/gRPC, returning a [`TelemetryGuard`] that flushes spans on shutdown.
//! - [`Metrics`]: a Prometheus registry (with process metrics) whose every series carries
//!   `service_name`, plus the HTTP and downstream metric families of the guide.
//! - [`observe_http`]: axum middleware that opens a server span per request (continuing
//!   the caller's W3C `traceparent`) and records `http_requests_total` and
//!   `http_request_duration_seconds`, labelled by the matched route, never the raw URI.
//! - [`DownstreamClient`]: an HTTP client whose every call is a client span, carries
//!   `traceparent`, has a timeout, and is counted and timed per target service.
//! - [`shutdown_signal`]: resolves on SIGTERM or Ctrl+C.
//!
//! Wiring it into a service:
//!
//! ```no_run
//! use axum::{Router, middleware, routing::get};
//! use std::time::Duration;
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     let guard = telemetry::init("my-service")?;
//!     let metrics = telemetry::Metrics::new("my-service")?;
//!     let client = telemetry::DownstreamClient::new(metrics.downstream.clone(), Duration::from_secs(2))?;
//!     // Parsed once, at start-up, not on every call.
//!     let other: http::Uri = "http://other-service/hi".parse()?;
//!
//!     let router = Router::new()
//!         .route("/hello", get(move || async move {
//!             match client.call("other-service", http::Method::GET, &other).await {
//!                 Ok(_) => "hello".to_owned(),
//!                 Err(error) => error.to_string(),
//!             }
//!         }))
//!         .route("/metrics", get({
//!             let metrics = metrics.clone();
//!             move || async move { metrics.render() }
//!         }))
//!         // After the routes, so the middleware sees the matched route.
//!         .layer(middleware::from_fn_with_state(metrics.http.clone(), telemetry::observe_http));
//!
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     axum::serve(listener, router).with_graceful_shutdown(telemetry::shutdown_signal()).await?;
//!     guard.shutdown().await; // flush the last spans
//!     Ok(())
//! }
//! ```

mod downstream;
mod http_server;
mod json_log;
mod metrics;
mod shutdown;
mod tracing_init;

pub use downstream::{DownstreamClient, DownstreamError, DownstreamErrorKind, DownstreamResponse};
pub use http_server::{UNMATCHED_ROUTE, observe_http};
pub use metrics::{DownstreamMetrics, HttpMetrics, Metrics};
pub use shutdown::shutdown_signal;
pub use tracing_init::{TelemetryGuard, init};
