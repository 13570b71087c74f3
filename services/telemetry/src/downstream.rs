//! `DownstreamClient`: the instrumented HTTP client for calls to other services (client
//! spans, `traceparent`, timeouts, per-target metrics).

use std::{fmt, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use opentelemetry::{Context, trace::TraceContextExt as _};
use tokio::time::Instant;
use tracing::{Instrument as _, field::Empty as EmptyField};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::{DownstreamMetrics, ids::inject_trace_context, metrics::CallStatus};

/// What sending a request gives: the answer's status and body, or why there is none.
type SendResult = Result<(http::StatusCode, Bytes), Box<dyn std::error::Error + Send + Sync>>;

/// An HTTP client for calls to other services of the mesh.
///
/// Every call is a `client` span (child of the current span) whose context travels in a
/// W3C `traceparent` header, has an overall timeout, and is counted in
/// `downstream_requests_total{service,status}` and timed in
/// `downstream_request_duration_seconds{service}`, with the client span's ids as the
/// observation's exemplar. Connections are pooled and reused.
///
/// Built on hyper-util's pooled client, the engine inside reqwest, without reqwest's
/// layers: reqwest 0.13 re-parses every response's URL (its redirect support), and
/// its own code and URL parsing were a measurable share of a mid-tier service's CPU
/// (docs/benchmarks.md). Calls inside the mesh need no redirects, cookies or TLS.
#[derive(Clone)]
pub struct DownstreamClient {
    http: Client<HttpConnector, Empty<Bytes>>,
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
    pub fn new(metrics: DownstreamMetrics, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout.min(Duration::from_secs(1))));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            http,
            metrics,
            timeout,
        }
    }

    /// Calls `method uri` on the dependency `service` (its name labels the metrics and the
    /// span). A non-2xx answer is an error, as is a timeout or a broken connection.
    pub async fn call(
        &self,
        service: &str,
        method: Method,
        uri: &Uri,
    ) -> Result<DownstreamResponse, DownstreamError> {
        self.call_at(service, method, uri, uri).await
    }

    /// As [`call`](Self::call), but the request is sent to `dialled`: the span, the
    /// metrics and the error still describe the call to `uri`. An injected outage dials
    /// where nothing listens, so that the real client meets a real refused connection
    /// while every signal names the dependency's own address, as in a real outage.
    pub async fn call_at(
        &self,
        service: &str,
        method: Method,
        uri: &Uri,
        dialled: &Uri,
    ) -> Result<DownstreamResponse, DownstreamError> {
        let span = tracing::info_span!(
            target: "telemetry::downstream",
            "HTTP client request",
            otel.name = method.as_str(),
            otel.kind = "client",
            http.request.method = method.as_str(),
            url.full = full_url(uri).as_str(),
            peer.service = service,
            http.response.status_code = EmptyField,
            otel.status_code = EmptyField,
            error.type = EmptyField,
        );
        // The client span's context, read once: its `traceparent` goes to the dependency,
        // and its ids become the latency observation's exemplar.
        let context = span.context();
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.send(method, dialled, &context))
            .instrument(span.clone())
            .await;
        let elapsed = started.elapsed();

        let (status, outcome) = self.outcome(&span, result);
        self.metrics
            .observe(service, status, elapsed, context.span().span_context());

        outcome.map_err(|kind| {
            let error = DownstreamError { service: service.to_owned(), kind };
            span.record("otel.status_code", "ERROR");
            span.record("error.type", error.kind.error_type());
            tracing::warn!(parent: &span, dependency = service, error = %error, "downstream call failed");
            error
        })
    }

    /// What a call's result means: the status the metrics count it under, and the
    /// answer or why it failed; an answer's status goes on the span.
    fn outcome(
        &self,
        span: &tracing::Span,
        result: Result<SendResult, tokio::time::error::Elapsed>,
    ) -> (CallStatus, Result<DownstreamResponse, DownstreamErrorKind>) {
        match result {
            Ok(Ok((status, body))) => {
                span.record("http.response.status_code", status.as_u16());
                let answered = CallStatus::Answered(status.as_u16());
                if status.is_success() {
                    (answered, Ok(DownstreamResponse { status, body }))
                } else {
                    (answered, Err(DownstreamErrorKind::Status(status)))
                }
            }
            Err(_elapsed) => (
                CallStatus::Failed,
                Err(DownstreamErrorKind::Timeout(self.timeout)),
            ),
            Ok(Err(error)) => (
                CallStatus::Failed,
                Err(DownstreamErrorKind::Unreachable(root_cause(&*error))),
            ),
        }
    }

    async fn send(&self, method: Method, uri: &Uri, context: &Context) -> SendResult {
        let mut request = Request::builder()
            .method(method)
            .uri(uri.clone())
            .body(Empty::new())?;
        inject_trace_context(context.span().span_context(), request.headers_mut());
        let response = self.http.request(request).await?;
        let status = response.status();
        // Read the body in full (within the same timeout) so the connection goes back to
        // the pool.
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// `uri` spelled as its `Display` spells it, from its parts: a `%uri` field went through
/// the formatting machinery on every call (docs/benchmarks.md).
fn full_url(uri: &Uri) -> String {
    let scheme = uri.scheme_str();
    let authority = uri.authority().map(|authority| authority.as_str());
    let query = uri.query();
    let mut url = String::with_capacity(
        scheme.map_or(0, |s| s.len() + 3)
            + authority.map_or(0, str::len)
            + uri.path().len()
            + query.map_or(0, |q| q.len() + 1),
    );
    if let Some(scheme) = scheme {
        url.push_str(scheme);
        url.push_str("://");
    }
    url.push_str(authority.unwrap_or_default());
    url.push_str(uri.path());
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
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

/// The client's top-level message ("client error (Connect)") hides the useful part
/// ("Connection refused"); the innermost source says what happened. Public for the
/// other clients of the mesh (xtask's smoke check), which describe a failure the same way.
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use axum::{Router, routing::get};
    use tracing::Instrument as _;

    use super::*;
    use crate::{
        ExemplarFilter, Format, Metrics,
        test_support::{samples, traced, value},
    };

    #[test]
    fn a_full_url_is_spelled_as_the_uri_displays_it() {
        for text in [
            "http://order-service/api/action",
            "http://127.0.0.1:30081/api/data?x=1&y=2",
            "http://user-service",
            "https://example.com:8443/a/b/?q",
        ] {
            let uri: Uri = text.parse().expect("uri");
            assert_eq!(full_url(&uri), uri.to_string());
        }
    }

    #[tokio::test]
    async fn a_calls_latency_carries_its_client_spans_ids() {
        let _tracing = traced();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let uri: Uri = format!("http://{}/hi", listener.local_addr().expect("address"))
            .parse()
            .expect("uri");
        tokio::spawn(async move {
            axum::serve(listener, Router::new().route("/hi", get(|| async { "hi" }))).await
        });

        let metrics = Metrics::new("caller", ExemplarFilter::TraceBased, |_| {});
        let client = DownstreamClient::new(metrics.downstream.clone(), Duration::from_secs(2));
        let parent = tracing::info_span!("handler");
        let response = client
            .call("callee", Method::GET, &uri)
            .instrument(parent.clone())
            .await
            .expect("a 200");
        assert_eq!(response.body, "hi");
        let parent_ids = parent.context().span().span_context().clone();

        let open = metrics.render(Format::OpenMetrics).expect("render");
        let exemplars: Vec<_> = samples(&open)
            .into_iter()
            .filter(|s| s.name == "downstream_request_duration_seconds_bucket")
            .filter_map(|s| s.exemplar)
            .collect();
        assert_eq!(exemplars.len(), 1, "{open}");
        // The client span's: the handler's trace, a span of its own.
        assert_eq!(exemplars[0]["trace_id"], parent_ids.trace_id().to_string());
        assert_ne!(exemplars[0]["span_id"], parent_ids.span_id().to_string());
        assert_eq!(
            value(
                &open,
                "downstream_requests_total",
                &[("service", "callee"), ("status", "200")]
            ),
            Some(1.0)
        );
    }
}
