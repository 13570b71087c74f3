//! The `observe_http` middleware: a server span, `x-trace-id`, the access log and the
//! HTTP metrics of every request, and the cancellation of requests at a drain deadline.

use std::time::Instant;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use opentelemetry::{
    global,
    trace::{SpanContext, TraceContextExt as _},
};
use opentelemetry_http::HeaderExtractor;
use tracing::{Instrument as _, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::{DrainDeadline, HttpMetrics, ids::trace_id_hex, metrics::Endpoint};

/// The response header that names the request's trace: 32 lowercase hex digits, the
/// trace id that Jaeger, the exemplars and every log line of the request carry.
pub const TRACE_ID_HEADER: &str = "x-trace-id";

/// The target of the access log lines, which are logged but not exported as span events.
pub(crate) const ACCESS_LOG_TARGET: &str = "telemetry::access";

/// The status message of the span of a request cancelled at the drain deadline, and the
/// body of its 503 answer.
pub const CANCELLED_AT_DRAIN_DEADLINE: &str = "cancelled: the server stopped at its drain deadline";

/// The state of [`observe_http`]: where it records, and which routes it does not trace.
#[derive(Clone)]
pub struct HttpObserver {
    metrics: HttpMetrics,
    untraced_routes: &'static [&'static str],
    drain_deadline: Option<DrainDeadline>,
}

impl HttpObserver {
    /// Traces every route and records into `metrics`.
    pub fn new(metrics: HttpMetrics) -> Self {
        Self {
            metrics,
            untraced_routes: &[],
            drain_deadline: None,
        }
    }

    /// No span for these route templates (e.g. `/health`, `/ready`, `/metrics`): probes
    /// and scrapes, several a second, would bury the application's traces. They are still
    /// counted and timed, and carry no `x-trace-id`.
    pub fn without_spans_for(self, routes: &'static [&'static str]) -> Self {
        Self {
            untraced_routes: routes,
            ..self
        }
    }

    /// Traced requests still running when `deadline` is reached stop there: each answers
    /// 503 ([`CANCELLED_AT_DRAIN_DEADLINE`], `connection: close`) and its server span
    /// ends at once with an ERROR status and that message, so the span is queued for
    /// export before the service flushes. Untraced routes (probes) are quick and left be.
    pub fn cancelled_at(self, deadline: DrainDeadline) -> Self {
        Self {
            drain_deadline: Some(deadline),
            ..self
        }
    }
}

/// axum middleware: one server span and one metrics observation per request.
///
/// Install it with
/// `Router::layer(middleware::from_fn_with_state(HttpObserver::new(metrics.http), observe_http))`
/// after adding the routes: axum then runs it inside routing, where [`MatchedPath`] (the
/// route template, e.g. `/users/{id}`) is known.
///
/// The span follows the OpenTelemetry HTTP server conventions: named `METHOD /route`,
/// kind `server`, with `http.request.method`, `http.route`, `url.path` and
/// `http.response.status_code`; a 5xx answer marks it as an error. Each traced request
/// also writes one log line, `request served` with its route, status and duration, in
/// its span (so with its trace id). The response carries
/// the span's trace id in [`TRACE_ID_HEADER`] (`x-trace-id`) whenever there is a trace,
/// i.e. when tracing is on and the route is traced; its latency observation carries the
/// same ids as an exemplar (see [`crate::ExemplarFilter`]). With
/// [`HttpObserver::cancelled_at`], a traced request still running at the server's drain
/// deadline answers 503 and its span ends as an error there and then.
pub async fn observe_http(
    State(observer): State<HttpObserver>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let endpoint = Endpoint::of(&request);
    let method = method_label(request.method());
    let metrics = &observer.metrics;

    if observer.untraced_routes.contains(&endpoint.as_str()) {
        let response = next.run(request).await;
        let status = response.status().as_u16();
        metrics.observe(method, endpoint, status, started.elapsed(), None);
        return response;
    }

    let span = server_span(method, &endpoint, &request);
    let handled = next.run(request).instrument(span.clone());
    let (mut response, cancelled) = until_deadline(handled, observer.drain_deadline.as_ref()).await;

    let status = response.status();
    record_status(&span, status, cancelled);
    // Without the OpenTelemetry layer this is an empty context: no header, no exemplar.
    let context = span.context();
    let otel_span = context.span();
    let span_context = otel_span.span_context();
    attach_trace_id(&mut response, span_context);
    let elapsed = started.elapsed();
    // The access log: one line per traced request, inside its span, so it carries the
    // trace id and `cargo xtask logs --trace` finds every service a request went through.
    // Its own target keeps it out of the exported span (see `exported_spans`): the span
    // already has these attributes.
    tracing::info!(
        target: ACCESS_LOG_TARGET,
        parent: &span,
        method,
        route = endpoint.as_str(),
        status = status.as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request served"
    );
    metrics.observe(
        method,
        endpoint,
        status.as_u16(),
        elapsed,
        Some(span_context),
    );
    response
}

/// The request's server span, named `METHOD /route`, continuing the caller's trace
/// (`traceparent`) when there is one.
fn server_span(method: &str, endpoint: &Endpoint, request: &Request) -> Span {
    // `METHOD /route`, joined by hand: a `format_args!` field is formatted through the
    // formatting machinery on every request.
    let route = endpoint.as_str();
    let mut name = String::with_capacity(method.len() + 1 + route.len());
    name.push_str(method);
    name.push(' ');
    name.push_str(route);
    let span = tracing::info_span!(
        target: "telemetry::http",
        "HTTP request",
        otel.name = name.as_str(),
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        url.path = request.uri().path(),
        url.scheme = "http",
        http.response.status_code = Empty,
        otel.status_code = Empty,
        otel.status_description = Empty,
        error.type = Empty,
    );
    let parent = global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    // Fails only when the OpenTelemetry layer is not installed (tracing disabled):
    // then there is no trace to continue.
    let _ = span.set_parent(parent);
    span
}

/// The answer's status on the span; a 5xx makes it an error, described when the drain
/// deadline cancelled the request.
fn record_status(span: &Span, status: StatusCode, cancelled: bool) {
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("error.type", status.as_str());
        // A description makes the status ERROR with that message; a later status code
        // would replace it with a bare ERROR.
        if cancelled {
            span.record("otel.status_description", CANCELLED_AT_DRAIN_DEADLINE);
        } else {
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// `x-trace-id: <trace id>` on the response, when there is a trace.
fn attach_trace_id(response: &mut Response, span_context: &SpanContext) {
    if span_context.is_valid()
        && let Ok(trace_id) =
            HeaderValue::from_bytes(trace_id_hex(span_context.trace_id()).as_bytes())
    {
        response
            .headers_mut()
            .insert(HeaderName::from_static(TRACE_ID_HEADER), trace_id);
    }
}

/// The answer of `handled`, or, when `deadline` is reached first, the cancelled answer
/// (the handler is dropped); and whether it was cancelled.
async fn until_deadline(
    handled: impl Future<Output = Response>,
    deadline: Option<&DrainDeadline>,
) -> (Response, bool) {
    let Some(deadline) = deadline else {
        return (handled.await, false);
    };
    // Biased, the deadline first: once it is reached no request goes on, not even one
    // whose answer is ready in the same poll (select! would otherwise pick at random).
    tokio::select! {
        biased;
        () = deadline.reached() => (cancelled_response(), true),
        response = handled => (response, false),
    }
}

/// The answer of a request cancelled at the drain deadline: the server is going away, so
/// the connection is not kept.
fn cancelled_response() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONNECTION, "close")],
        CANCELLED_AT_DRAIN_DEADLINE,
    )
        .into_response()
}

/// The method as a label value. Unknown methods share `_OTHER` (the OpenTelemetry
/// convention), so arbitrary methods cannot grow the series count either.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, middleware, routing::get};
    use tower::ServiceExt as _;

    use super::*;
    use crate::{
        ExemplarFilter, Format, Metrics,
        test_support::{samples, traced, value},
    };

    fn app(metrics: &Metrics) -> Router {
        Router::new()
            .route("/items/{id}", get(|| async { "ok" }))
            .route(
                "/boom",
                get(|| async { http::StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .route("/health", get(|| async { "ok" }))
            .layer(middleware::from_fn_with_state(
                HttpObserver::new(metrics.http.clone()).without_spans_for(&["/health"]),
                observe_http,
            ))
    }

    async fn send(app: &Router, method: &str, uri: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::empty()).expect("request");
        app.clone().oneshot(request).await.expect("infallible")
    }

    fn trace_id(response: &Response) -> Option<&str> {
        response
            .headers()
            .get(TRACE_ID_HEADER)
            .map(|value| value.to_str().expect("ASCII"))
    }

    #[tokio::test]
    async fn labels_by_route_template_not_raw_uri() {
        let metrics = Metrics::new("svc", ExemplarFilter::TraceBased, |_| {});
        let app = app(&metrics);
        for (method, uri, status) in [
            ("GET", "/items/1", 200),
            ("GET", "/items/2", 200),
            ("GET", "/boom", 500),
            ("GET", "/nope/123", 404),
            ("BREW", "/nope/456", 404),
        ] {
            assert_eq!(
                send(&app, method, uri, &[]).await.status(),
                status,
                "{method} {uri}"
            );
        }

        let text = metrics.render(Format::Prometheus).expect("render");
        let requests = |method, endpoint, status| {
            value(
                &text,
                "http_requests_total",
                &[
                    ("method", method),
                    ("endpoint", endpoint),
                    ("status", status),
                    ("service_name", "svc"),
                ],
            )
        };
        assert_eq!(requests("GET", "/items/{id}", "200"), Some(2.0), "{text}");
        assert_eq!(requests("GET", "/boom", "500"), Some(1.0), "{text}");
        assert_eq!(requests("GET", "unmatched", "404"), Some(1.0), "{text}");
        assert_eq!(requests("_OTHER", "unmatched", "404"), Some(1.0), "{text}");
        assert!(
            !text.contains("/items/1"),
            "raw URI leaked into labels: {text}"
        );
    }

    #[tokio::test]
    async fn a_traced_response_names_its_trace_and_its_latency_carries_it_as_an_exemplar() {
        let _tracing = traced();
        let metrics = Metrics::new("svc", ExemplarFilter::TraceBased, |_| {});
        let app = app(&metrics);

        // A caller's trace is continued, and named in the answer.
        let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let traceparent = format!("00-{caller_trace}-00f067aa0ba902b7-01");
        let response = send(&app, "GET", "/items/7", &[("traceparent", &traceparent)]).await;
        assert_eq!(trace_id(&response), Some(caller_trace));
        // A request without one starts a new trace.
        let response = send(&app, "GET", "/boom", &[]).await;
        let new_trace = trace_id(&response).expect("x-trace-id").to_owned();
        assert!(
            new_trace.len() == 32
                && new_trace.bytes().all(|b| b.is_ascii_hexdigit())
                && new_trace != caller_trace,
            "{new_trace}"
        );
        // Probes are counted but not traced.
        let response = send(&app, "GET", "/health", &[]).await;
        assert_eq!(trace_id(&response), None);

        let open = metrics.render(Format::OpenMetrics).expect("render");
        let exemplar_traces = |endpoint: &str| -> Vec<String> {
            samples(&open)
                .into_iter()
                .filter(|s| {
                    s.name == "http_request_duration_seconds_bucket"
                        && s.has(&[("endpoint", endpoint)])
                })
                .filter_map(|s| s.exemplar)
                .map(|exemplar| {
                    assert_eq!(exemplar["span_id"].len(), 16, "{exemplar:?}");
                    exemplar["trace_id"].clone()
                })
                .collect()
        };
        assert_eq!(exemplar_traces("/items/{id}"), [caller_trace], "{open}");
        assert_eq!(exemplar_traces("/boom"), [new_trace], "{open}");
        assert!(exemplar_traces("/health").is_empty(), "{open}");
        assert_eq!(
            value(
                &open,
                "http_requests_total",
                &[("endpoint", "/health"), ("status", "200")]
            ),
            Some(1.0)
        );
        // The text format has no exemplars.
        let plain = metrics.render(Format::Prometheus).expect("render");
        assert!(!plain.contains(caller_trace), "{plain}");
    }

    #[tokio::test]
    async fn always_off_keeps_the_header_but_drops_the_exemplars() {
        let _tracing = traced();
        let metrics = Metrics::new("svc", ExemplarFilter::AlwaysOff, |_| {});
        let response = send(&app(&metrics), "GET", "/items/1", &[]).await;
        assert!(trace_id(&response).is_some());
        let open = metrics.render(Format::OpenMetrics).expect("render");
        assert!(
            samples(&open).iter().all(|s| s.exemplar.is_none()),
            "{open}"
        );
        assert!(
            open.contains("http_request_duration_seconds_bucket"),
            "{open}"
        );
    }

    #[tokio::test]
    async fn at_the_drain_deadline_a_running_request_answers_503_and_later_ones_too() {
        let _tracing = traced();
        let metrics = Metrics::new("svc", ExemplarFilter::TraceBased, |_| {});
        let deadline = DrainDeadline::new();
        let app = Router::new()
            .route("/forever", get(std::future::pending::<&'static str>))
            .route("/quick", get(|| async { "ok" }))
            .layer(middleware::from_fn_with_state(
                HttpObserver::new(metrics.http.clone()).cancelled_at(deadline.clone()),
                observe_http,
            ));
        assert_eq!(send(&app, "GET", "/quick", &[]).await.status(), 200);

        let running = tokio::spawn({
            let app = app.clone();
            async move { send(&app, "GET", "/forever", &[]).await }
        });
        // Lets the request reach its handler first (on this one thread); one that arrives
        // after the deadline is cancelled the same way.
        tokio::task::yield_now().await;
        assert!(!deadline.is_reached());
        deadline.reach();
        let response = tokio::time::timeout(std::time::Duration::from_secs(5), running)
            .await
            .expect("the running request is cancelled, not left running")
            .expect("the request task");
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["connection"], "close");
        assert!(
            trace_id(&response).is_some(),
            "the cancelled request keeps its trace id"
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        assert_eq!(body, CANCELLED_AT_DRAIN_DEADLINE.as_bytes());
        assert_eq!(send(&app, "GET", "/quick", &[]).await.status(), 503);

        let text = metrics.render(Format::Prometheus).expect("render");
        let requests = |endpoint, status| {
            value(
                &text,
                "http_requests_total",
                &[("endpoint", endpoint), ("status", status)],
            )
        };
        assert_eq!(requests("/forever", "503"), Some(1.0), "{text}");
        assert_eq!(requests("/quick", "503"), Some(1.0), "{text}");
    }

    #[tokio::test]
    async fn without_tracing_there_is_no_header_and_no_exemplar() {
        let metrics = Metrics::new("svc", ExemplarFilter::TraceBased, |_| {});
        let response = send(&app(&metrics), "GET", "/items/1", &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(trace_id(&response), None);
        let open = metrics.render(Format::OpenMetrics).expect("render");
        assert!(
            samples(&open).iter().all(|s| s.exemplar.is_none()),
            "{open}"
        );
    }
}
