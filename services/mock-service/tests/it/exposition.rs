//! `/metrics` in both formats: negotiated by `Accept`, and linted by the real `promtool`.

use std::{io::Write as _, process::Stdio};

use axum::{
    Router,
    body::{Body, to_bytes},
    http::{Request, StatusCode, header},
};
use mock_service::app;
use tower::ServiceExt as _;

use crate::support::{require, send, state};

/// What Prometheus 2.x sends when it scrapes.
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// `GET /metrics` with this `Accept` (none if `None`): content type, `Vary`, body.
async fn scrape(router: &Router, accept: Option<&str>) -> (String, String, String) {
    let mut request = Request::get("/metrics");
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (content_type, vary) = (header(header::CONTENT_TYPE), header(header::VARY));
    let body = to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        content_type,
        vary,
        String::from_utf8(body.to_vec()).expect("UTF-8"),
    )
}

#[tokio::test]
async fn prometheus_gets_openmetrics_and_curl_the_text_format() {
    let router = app(state("user-service", &[]));
    assert_eq!(
        send(&router, "GET", "/api/data", Body::empty()).await.0,
        200
    );

    for accept in [None, Some("*/*"), Some("text/plain")] {
        let (content_type, vary, body) = scrape(&router, accept).await;
        assert_eq!(
            content_type, "text/plain; version=0.0.4; charset=utf-8",
            "{accept:?}"
        );
        assert_eq!(vary, "Accept");
        assert!(
            body.contains("\n# TYPE http_requests_total counter\n"),
            "{body}"
        );
        assert!(!body.contains("# EOF"), "{body}");
    }

    for accept in [PROMETHEUS_ACCEPT, "application/openmetrics-text"] {
        let (content_type, vary, body) = scrape(&router, Some(accept)).await;
        assert_eq!(
            content_type,
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(vary, "Accept");
        // OpenMetrics names a counter family without `_total`; its samples keep it.
        assert!(body.contains("\n# TYPE http_requests counter\n"), "{body}");
        assert!(body.contains("\nhttp_requests_total{"), "{body}");
        assert!(body.ends_with("\n# EOF\n"), "{body}");
    }
}

/// `promtool check metrics` (2.42 reads only the text format, from stdin): nothing to
/// report on a service's whole exposition, every family with samples.
#[tokio::test]
async fn promtool_finds_nothing_to_lint_in_the_text_format() {
    let Some(promtool) = require("promtool", "apt-get install prometheus, or nix develop") else {
        return;
    };
    // A caller whose dependency is down: every family of ours has samples.
    let state = state(
        "product-service",
        &[("inventory-service", "http://127.0.0.1:1")],
    );
    let router = app(state);
    assert_eq!(
        send(&router, "GET", "/api/data", Body::empty()).await.0,
        502
    );
    let (_, _, text) = scrape(&router, None).await;
    for family in [
        "http_requests_total",
        "http_request_duration_seconds",
        "downstream_requests_total",
        "downstream_request_duration_seconds",
        "business_events_total",
        "fault_injections_total",
        "fault_active",
        "process_cpu_seconds_total",
    ] {
        assert!(
            text.contains(&format!("\n# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }

    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && report.trim().is_empty(),
        "promtool check metrics: {report}\n{text}"
    );
}
