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
