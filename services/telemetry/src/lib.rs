//! Everything an axum service needs to be observable, in one small crate that a reader
//! can copy into their own service:
//!
//! - [`init`]: JSON logs carrying trace and span ids, and OpenTelemetry traces exported
//!   over OTLP/gRPC, returning a [`TelemetryGuard`] that flushes spans on shutdown.
//! - [`Metrics`]: a Prometheus registry (prometheus-client, with process metrics) whose
//!   every series carries `service_name`, plus the HTTP and downstream metric families
//!   every service of the mesh has. [`Metrics::scrape_response`] answers `/metrics` in the format the
//!   scraper asks for: OpenMetrics 1.0.0 (with exemplars) when its `Accept` names
//!   `application/openmetrics-text`, as Prometheus's does, else the Prometheus text
//!   format 0.0.4 (what a plain `curl` gets; no exemplars).
//! - [`observe_http`]: axum middleware that opens a server span per request (continuing
//!   the caller's W3C `traceparent`), answers with the trace id in an `x-trace-id`
//!   header, and records `http_requests_total` and `http_request_duration_seconds`,
//!   labelled by the matched route, never the raw URI. Routes given to
//!   [`HttpObserver::without_spans_for`] (probes, the scrape) are counted but not traced.
//! - [`DownstreamClient`]: an HTTP client whose every call is a client span, carries
//!   `traceparent`, has a timeout, and is counted and timed per target service.
//! - [`shutdown_signal`]: resolves on SIGTERM or Ctrl+C; [`DrainDeadline`]: cancels the
//!   requests still in flight when the drain time is over, ending their spans as errors
//!   before the last spans are flushed.
//!
//! # Exemplars: from a latency spike to its trace
//!
//! Every observation of `http_request_duration_seconds` (in the server span) and of
//! `downstream_request_duration_seconds` (in the client span) made in a sampled span
//! carries `{trace_id="…",span_id="…"}` as an OpenMetrics exemplar, so Grafana draws a
//! dot on the latency graph that opens the trace. [`ExemplarFilter`] reads the
//! OpenTelemetry SDK's `OTEL_METRICS_EXEMPLAR_FILTER`: `trace_based` (the default) or
//! `always_off`. Prometheus keeps exemplars only with `--enable-feature=exemplar-storage`.
//!
//! # `x-trace-id`: from a response to its trace
//!
//! Every traced response carries `x-trace-id: <32 hex digits>` ([`TRACE_ID_HEADER`]), the
//! id of the trace the request joined or started: `curl -i` shows it, and it is the id
//! that Jaeger searches for and that every log line of the request carries in
//! `trace_id`. That holds whether or not anything receives spans: with
//! `OTEL_TRACES_EXPORTER=none` spans are made, sampled and propagated but sent nowhere
//! ([`TracingMode`]). There is none when tracing is off (`OTEL_SDK_DISABLED=true`) or on
//! routes given to [`HttpObserver::without_spans_for`]. A trace that the sampler did not keep
//! (`OTEL_TRACES_SAMPLER`) still has its id in the header and the logs, but not in Jaeger
//! nor in an exemplar.
//!
//! Wiring it into a service:
//!
//! ```no_run
//! use axum::{Router, middleware, routing::get};
//! use http::HeaderMap;
//! use prometheus_client::metrics::{counter::Counter, family::Family};
//! use std::time::Duration;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let guard = telemetry::init("my-service")?;
//!     // A family of the service's own; counters are registered without `_total`.
//!     let greetings = Family::<[(&'static str, &'static str); 1], Counter>::default();
//!     let metrics = telemetry::Metrics::new(
//!         "my-service",
//!         telemetry::ExemplarFilter::from_env()?,
//!         |registry| registry.register("greetings", "Greetings sent", greetings.clone()),
//!     );
//!     let client = telemetry::DownstreamClient::new(metrics.downstream.clone(), Duration::from_secs(2));
//!     // Parsed once, at start-up, not on every call.
//!     let other: http::Uri = "http://other-service/hi".parse()?;
//!
//!     let router = Router::new()
//!         .route("/hello", get(move || async move {
//!             greetings.get_or_create(&[("kind", "hello")]).inc();
//!             match client.call("other-service", http::Method::GET, &other).await {
//!                 Ok(_) => "hello".to_owned(),
//!                 Err(error) => error.to_string(),
//!             }
//!         }))
//!         .route("/health", get(|| async { "ok" }))
//!         .route("/metrics", get({
//!             let metrics = metrics.clone();
//!             move |headers: HeaderMap| async move { metrics.scrape_response(&headers) }
//!         }))
//!         // After the routes, so the middleware sees the matched route.
//!         .layer(middleware::from_fn_with_state(
//!             telemetry::HttpObserver::new(metrics.http.clone())
//!                 .without_spans_for(&["/health", "/metrics"]),
//!             telemetry::observe_http,
//!         ));
//!
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     axum::serve(listener, router).with_graceful_shutdown(telemetry::shutdown_signal()).await?;
//!     guard.shutdown().await; // flush the last spans
//!     Ok(())
//! }
//! ```

mod downstream;
mod error;
mod exemplars;
mod exposition;
mod http_server;
mod ids;
mod json_log;
mod labels;
mod metrics;
#[cfg(target_os = "linux")]
mod process;
mod shutdown;
#[cfg(test)]
mod test_support;
mod tracing_init;

pub use downstream::{
    DownstreamClient, DownstreamError, DownstreamErrorKind, DownstreamResponse, root_cause,
};
pub use error::TelemetryError;
pub use exemplars::{EXEMPLAR_FILTER_VARIABLE, ExemplarFilter, UnknownExemplarFilter};
pub use exposition::Format;
pub use http_server::{CANCELLED_AT_DRAIN_DEADLINE, HttpObserver, TRACE_ID_HEADER, observe_http};
pub use metrics::{DownstreamMetrics, HttpMetrics, Metrics, UNMATCHED_ROUTE};
pub use shutdown::{DrainDeadline, shutdown_signal};
pub use tracing_init::{
    OTLP_ENDPOINT_VARIABLE, SDK_DISABLED_VARIABLE, TRACES_EXPORTER_VARIABLE, TelemetryGuard,
    TracingMode, init,
};
