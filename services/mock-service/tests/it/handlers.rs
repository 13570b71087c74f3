//! Each endpoint driven in-process with `tower::ServiceExt::oneshot`.

use std::time::Duration;

use crate::support::{sample_sum, send, series, state, text_metrics};
use axum::{body::Body, http::StatusCode};
use mock_service::app;
use serde_json::Value;

#[tokio::test]
async fn health_ready_and_metrics() {
    let state = state("user-service", &[]);
    let router = app(state.clone());

    let (status, body) = send(&router, "GET", "/health", Body::empty()).await;
    assert_eq!(
        (status, body["service"].as_str()),
        (StatusCode::OK, Some("user-service"))
    );

    assert_eq!(
        send(&router, "GET", "/ready", Body::empty()).await.0,
        StatusCode::OK
    );
    state.set_ready(false);
    let (status, body) = send(&router, "GET", "/ready", Body::empty()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    let (status, Value::String(metrics)) = send(&router, "GET", "/metrics", Body::empty()).await
    else {
        panic!("metrics are text");
    };
    assert_eq!(status, StatusCode::OK);
    for name in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "process_resident_memory_bytes",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    // The 0.0.4 text format, names and types as the dashboards query them.
    assert!(
        metrics.contains("\n# TYPE http_requests_total counter\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\n# TYPE http_request_duration_seconds histogram\n"),
        "{metrics}"
    );
    assert!(!metrics.contains("# EOF"), "{metrics}");
    let health = [
        ("endpoint", "/health"),
        ("method", "GET"),
        ("status", "200"),
        ("service_name", "user-service"),
    ];
    assert_eq!(
        sample_sum(&metrics, "http_requests_total", &health),
        1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn error_and_failure_series_exist_at_zero_before_any_traffic() {
    let urls = [
        ("user-service", "http://u"),
        ("product-service", "http://p"),
        ("payment-service", "http://q"),
    ];
    let metrics = text_metrics(&state("order-service", &urls));
    let order = ("service_name", "order-service");
    let exists_at_zero = |name: &str, labels: &[(&str, &str)]| {
        assert_eq!(series(&metrics, name, labels), 0.0, "{name}{labels:?}");
    };
    for dependency in ["user-service", "product-service", "payment-service"] {
        exists_at_zero(
            "downstream_requests_total",
            &[("service", dependency), ("status", "error"), order],
        );
    }
    exists_at_zero(
        "business_events_total",
        &[
            ("event_type", "order_created"),
            ("status", "failure"),
            order,
        ],
    );
    for kind in ["latency", "error", "unreachable"] {
        exists_at_zero("fault_injections_total", &[("kind", kind), order]);
    }
}

#[tokio::test]
async fn error_answers_500_with_a_json_reason() {
    let router = app(state("inventory-service", &[]));
    let (status, body) = send(&router, "GET", "/api/error", Body::empty()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"], "simulated failure");
    assert_eq!(body["service"], "inventory-service");
}

#[tokio::test(start_paused = true)]
async fn slow_takes_half_a_second_to_two_seconds() {
    let router = app(state("user-service", &[]));
    for _ in 0..20 {
        let started = tokio::time::Instant::now();
        let (status, body) = send(&router, "GET", "/api/slow", Body::empty()).await;
        let took = started.elapsed();
        assert_eq!(status, StatusCode::OK);
        let delay = body["delay_ms"].as_u64().expect("delay_ms");
        assert!((500..=2000).contains(&delay), "{delay}");
        assert!(
            took >= Duration::from_millis(500) && took <= Duration::from_millis(2100),
            "{took:?}"
        );
    }
}

#[tokio::test]
async fn action_counts_a_business_event_and_accepts_optional_json() {
    let state = state("notification-service", &[]);
    let router = app(state.clone());
    assert_eq!(
        send(&router, "POST", "/api/action", Body::empty()).await.0,
        StatusCode::OK
    );
    let (status, body) = send(&router, "POST", "/api/action", r#"{"order": 42}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["event"], "notification_sent");
    let metrics = text_metrics(&state);
    let sent = [
        ("event_type", "notification_sent"),
        ("status", "success"),
        ("service_name", "notification-service"),
    ];
    assert_eq!(
        sample_sum(&metrics, "business_events_total", &sent),
        2.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_input_gets_a_json_4xx() {
    let router = app(state("user-service", &[]));

    let (status, body) = send(&router, "POST", "/api/action", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["reason"]
            .as_str()
            .expect("reason")
            .contains("not valid JSON"),
        "{body}"
    );

    let (status, body) = send(&router, "POST", "/api/action", vec![b' '; 64 * 1024 + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        body["reason"].as_str().expect("reason").contains("65536"),
        "{body}"
    );

    let (status, body) = send(&router, "GET", "/no/such/path", Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["path"], "/no/such/path");

    let (status, body) = send(&router, "DELETE", "/api/data", Body::empty()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"], "method not allowed");
}

#[tokio::test]
async fn an_unreachable_dependency_gives_502_naming_it() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let state = state(
        "product-service",
        &[("inventory-service", "http://127.0.0.1:1")],
    );
    let router = app(state.clone());
    let (status, body) = send(&router, "GET", "/api/data", Body::empty()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["dependency"], "inventory-service");
    assert!(
        body["reason"]
            .as_str()
            .expect("reason")
            .contains("inventory-service is unreachable"),
        "{body}"
    );
    let metrics = text_metrics(&state);
    let failed = [
        ("service", "inventory-service"),
        ("status", "error"),
        ("service_name", "product-service"),
    ];
    assert_eq!(
        sample_sum(&metrics, "downstream_requests_total", &failed),
        1.0,
        "{metrics}"
    );
}
