use std::{fmt, time::Duration};

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, Method};
use opentelemetry::global;
use opentelemetry_http::HeaderInjector;
use tokio::time::Instant;
use tracing::{Instrument as _, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::DownstreamMetrics;

/// An HTTP client for calls to other services of the mesh.
///
/// Every call is a `client` span (child of the current span) whose context travels in a
/// W3C `traceparent` header, has an overall timeout, and is counted in
/// `downstream_requests_total{service,status}` and timed in
/// `downstream_request_duration_seconds{service}`. Connections are pooled and reused.
#[derive(Clone)]
pub struct DownstreamClient {
    http: reqwest::Client,
    metrics: DownstreamMetrics,
    timeout: Duration,
}

/// A successful (2xx) answer from a dependency, body read in full.
#[derive(Debug)]
pub struct DownstreamResponse {
    pub status: http::StatusCode,
    pub body: Bytes,
}

/// Why a call to a dependency failed. `Display` names the dependency and the cause.
#[derive(Debug)]
pub struct DownstreamError {
    pub service: String,
    pub kind: DownstreamErrorKind,
}

#[derive(Debug)]
pub enum DownstreamErrorKind {
    /// It answered, with a non-2xx status.
    Status(http::StatusCode),
    /// No complete answer within the timeout.
    Timeout(Duration),
    /// Could not connect, or the connection broke.
    Unreachable(String),
}

impl DownstreamClient {
    pub fn new(metrics: DownstreamMetrics, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(1)))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .context("building the downstream HTTP client")?;
        Ok(Self {
            http,
            metrics,
            timeout,
        })
    }

    /// Calls `method url` on the dependency `service` (its name labels the metrics and the
    /// span). A non-2xx answer is an error, as is a timeout or a broken connection.
    pub async fn call(
        &self,
        service: &str,
        method: Method,
        url: &str,
    ) -> Result<DownstreamResponse, DownstreamError> {
        let span = tracing::info_span!(
            target: "telemetry::downstream",
            "HTTP client request",
            otel.name = method.as_str(),
            otel.kind = "client",
            http.request.method = method.as_str(),
            url.full = url,
            peer.service = service,
            http.response.status_code = Empty,
            otel.status_code = Empty,
            error.type = Empty,
        );
        let started = Instant::now();
        let result = self.send(method, url).instrument(span.clone()).await;
        let elapsed = started.elapsed();

        let (status_label, outcome) = match result {
            Ok((status, body)) if status.is_success() => {
                span.record("http.response.status_code", status.as_u16());
                (
                    status.as_str().to_owned(),
                    Ok(DownstreamResponse { status, body }),
                )
            }
            Ok((status, _)) => {
                span.record("http.response.status_code", status.as_u16());
                (
                    status.as_str().to_owned(),
                    Err(DownstreamErrorKind::Status(status)),
                )
            }
            Err(error) if error.is_timeout() => (
                "error".to_owned(),
                Err(DownstreamErrorKind::Timeout(self.timeout)),
            ),
            Err(error) => (
                "error".to_owned(),
                Err(DownstreamErrorKind::Unreachable(root_cause(&error))),
            ),
        };
        self.metrics.observe(service, &status_label, elapsed);

        outcome.map_err(|kind| {
            let error = DownstreamError { service: service.to_owned(), kind };
            span.record("otel.status_code", "ERROR");
            span.record("error.type", error.kind.error_type());
            tracing::warn!(parent: &span, dependency = service, error = %error, "downstream call failed");
            error
        })
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
    ) -> Result<(http::StatusCode, Bytes), reqwest::Error> {
        let mut headers = HeaderMap::new();
        let context = tracing::Span::current().context();
        global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut HeaderInjector(&mut headers));
        });
        let response = self
            .http
            .request(method, url)
            .headers(headers)
            .send()
            .await?;
        let status = response.status();
        // Read the body in full (within the same timeout) so the connection goes back to
        // the pool.
        let body = response.bytes().await?;
        Ok((status, body))
    }
}

impl DownstreamErrorKind {
    /// The `error.type` span attribute (OpenTelemetry semantic conventions).
    fn error_type(&self) -> &'static str {
        match self {
            Self::Status(status) if status.is_server_error() => "http_5xx",
            Self::Status(_) => "http_non_2xx",
            Self::Timeout(_) => "timeout",
            Self::Unreachable(_) => "unreachable",
        }
    }
}

impl fmt::Display for DownstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let service = &self.service;
        match &self.kind {
            DownstreamErrorKind::Status(status) => write!(f, "{service} answered {status}"),
            DownstreamErrorKind::Timeout(timeout) => {
                write!(
                    f,
                    "{service} did not answer within {} ms",
                    timeout.as_millis()
                )
            }
            DownstreamErrorKind::Unreachable(cause) => {
                write!(f, "{service} is unreachable: {cause}")
            }
        }
    }
}

impl std::error::Error for DownstreamError {}

/// reqwest's top-level message ("error sending request for url") hides the useful part
/// ("Connection refused"); the innermost source says what happened.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
