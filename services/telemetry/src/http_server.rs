use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::Response,
};
use http::Method;
use opentelemetry::global;
use opentelemetry_http::HeaderExtractor;
use tracing::{Instrument as _, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::HttpMetrics;

/// The `endpoint` label (and span route) of requests that matched no route. One shared
/// value, so that scanning random URLs cannot create new series.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// axum middleware: one server span and one metrics observation per request.
///
/// Install it with `Router::layer(middleware::from_fn_with_state(metrics.http, observe_http))`
/// after adding the routes: axum then runs it inside routing, where [`MatchedPath`] (the
/// route template, e.g. `/users/{id}`) is known.
///
/// The span follows the OpenTelemetry HTTP server conventions: named `METHOD /route`,
/// kind `server`, with `http.request.method`, `http.route`, `url.path` and
/// `http.response.status_code`; a 5xx answer marks it as an error.
pub async fn observe_http(
    State(metrics): State<HttpMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
    let method = method_label(request.method());

    let span = tracing::info_span!(
        target: "telemetry::http",
        "HTTP request",
        otel.name = format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        url.path = request.uri().path(),
        url.scheme = "http",
        http.response.status_code = Empty,
        otel.status_code = Empty,
        error.type = Empty,
    );
    let parent = global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    // Fails only when the OpenTelemetry layer is not installed (tracing disabled):
    // then there is no trace to continue.
    let _ = span.set_parent(parent);

    let response = next.run(request).instrument(span.clone()).await;

    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", status.as_str());
    }
    metrics.observe(method, route, status.as_str(), started.elapsed());
    response
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
    use crate::Metrics;

    fn app(metrics: &Metrics) -> Router {
        Router::new()
            .route("/items/{id}", get(|| async { "ok" }))
            .route(
                "/boom",
                get(|| async { http::StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .layer(middleware::from_fn_with_state(
                metrics.http.clone(),
                observe_http,
            ))
    }

    async fn send(app: &Router, method: &str, uri: &str) -> http::StatusCode {
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        app.clone()
            .oneshot(request)
            .await
            .expect("infallible")
            .status()
    }

    #[tokio::test]
    async fn labels_by_route_template_not_raw_uri() {
        let metrics = Metrics::new("svc").expect("metrics");
        let app = app(&metrics);
        assert_eq!(send(&app, "GET", "/items/1").await, 200);
        assert_eq!(send(&app, "GET", "/items/2").await, 200);
        assert_eq!(send(&app, "GET", "/boom").await, 500);
        assert_eq!(send(&app, "GET", "/nope/123").await, 404);
        assert_eq!(send(&app, "BREW", "/nope/456").await, 404);

        let text = metrics.render();
        assert!(text.contains(r#"http_requests_total{endpoint="/items/{id}",method="GET",status="200",service_name="svc"} 2"#), "{text}");
        assert!(text.contains(r#"http_requests_total{endpoint="/boom",method="GET",status="500",service_name="svc"} 1"#), "{text}");
        assert!(text.contains(r#"http_requests_total{endpoint="unmatched",method="GET",status="404",service_name="svc"} 1"#), "{text}");
        assert!(text.contains(r#"http_requests_total{endpoint="unmatched",method="_OTHER",status="404",service_name="svc"} 1"#), "{text}");
        assert!(
            !text.contains("/items/1"),
            "raw URI leaked into labels: {text}"
        );
    }
}
