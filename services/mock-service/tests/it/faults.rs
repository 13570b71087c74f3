//! Fault injection through the admin API, driven with `oneshot`: validated whole (a bad
//! request changes nothing), applied on the request path, visible in metrics, expiring
//! by itself.

use std::time::Duration;

use crate::support::{sample_sum, send, series, state, text_metrics};
use axum::{Router, body::Body, http::StatusCode};
use mock_service::{AppState, app, faults::admin_app};
use serde_json::{Value, json};

fn admin(state: &AppState) -> Router {
    admin_app(state.faults().clone(), state.name().to_owned())
}

#[tokio::test]
async fn the_admin_api_sets_shows_and_clears_a_fault() {
    let state = state("user-service", &[]);
    let admin = admin(&state);
    assert_eq!(
        send(&admin, "GET", "/faults", Body::empty()).await.1["fault"],
        Value::Null
    );

    let fault = json!({ "latency_ms": [100, 200], "error_rate": 0.25, "error_status": 503, "route": "/api/data", "for_seconds": 120 });
    let (status, body) = send(&admin, "PUT", "/faults", fault.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, shown) = send(&admin, "GET", "/faults", Body::empty()).await;
    assert_eq!(shown["fault"], fault);
    assert!(
        (119..=120).contains(&shown["seconds_left"].as_u64().expect("seconds_left")),
        "{shown}"
    );

    let (status, body) = send(&admin, "DELETE", "/faults", Body::empty()).await;
    assert_eq!((status, &body["fault"]), (StatusCode::OK, &Value::Null));
}

#[tokio::test]
async fn a_bad_request_names_the_field_and_changes_nothing() {
    let state = state(
        "product-service",
        &[("inventory-service", "http://127.0.0.1:1")],
    );
    let admin = admin(&state);
    let good = json!({ "error_rate": 0.1 });
    assert_eq!(
        send(&admin, "PUT", "/faults", good.to_string()).await.0,
        StatusCode::OK
    );

    for (bad, field) in [
        (json!({ "error_rate": 1.5 }), Some("error_rate")),
        (
            json!({ "error_rate": 0.5, "error_status": 200 }),
            Some("error_status"),
        ),
        (json!({ "latency_ms": [500, 100] }), Some("latency_ms")),
        (
            json!({ "unreachable": "user-service" }),
            Some("unreachable"),
        ),
        (
            json!({ "latency_ms": 10, "route": "/health" }),
            Some("route"),
        ),
        (
            json!({ "latency_ms": 10, "for_seconds": 0 }),
            Some("for_seconds"),
        ),
        (json!({}), Some("latency_ms")),
        (json!({ "latency": 10 }), None),
        (json!({ "error_rate": "half" }), None),
    ] {
        let (status, body) = send(&admin, "PUT", "/faults", bad.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} -> {body}");
        match field {
            Some(field) => assert_eq!(body["field"], field, "{bad} -> {body}"),
            None => assert!(
                body["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{body}"
            ),
        }
        let (_, shown) = send(&admin, "GET", "/faults", Body::empty()).await;
        assert_eq!(shown["fault"], good, "{bad} changed the fault in force");
    }
    let (status, _) = send(&admin, "PUT", "/faults", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn injected_errors_hit_only_their_route_and_are_counted() {
    let state = state("user-service", &[]);
    let (admin, app) = (admin(&state), app(state.clone()));
    let fault = json!({ "error_rate": 1.0, "error_status": 503, "route": "/api/data" });
    assert_eq!(
        send(&admin, "PUT", "/faults", fault.to_string()).await.0,
        StatusCode::OK
    );

    let (status, body) = send(&app, "GET", "/api/data", Body::empty()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("injected fault"))
    );
    assert_eq!(
        send(&app, "POST", "/api/action", Body::empty()).await.0,
        StatusCode::OK,
        "other routes are spared"
    );
    assert_eq!(
        send(&app, "GET", "/health", Body::empty()).await.0,
        StatusCode::OK,
        "probes are never faulted"
    );

    let metrics = text_metrics(&state);
    let user = ("service_name", "user-service");
    assert_eq!(
        sample_sum(
            &metrics,
            "fault_injections_total",
            &[("kind", "error"), user]
        ),
        1.0,
        "{metrics}"
    );
    let data = [("endpoint", "/api/data"), ("method", "GET"), user];
    assert_eq!(
        sample_sum(
            &metrics,
            "http_requests_total",
            &[data[0], data[1], data[2], ("status", "503")]
        ),
        1.0,
        "{metrics}"
    );
}

#[tokio::test(start_paused = true)]
async fn latency_is_added_and_a_fault_expires_by_itself() {
    let state = state("user-service", &[]);
    let (admin, app) = (admin(&state), app(state.clone()));
    let fault = json!({ "latency_ms": 300, "error_rate": 1.0, "for_seconds": 5 });
    assert_eq!(
        send(&admin, "PUT", "/faults", fault.to_string()).await.0,
        StatusCode::OK
    );

    let started = tokio::time::Instant::now();
    assert_eq!(
        send(&app, "GET", "/api/data", Body::empty()).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );

    tokio::time::advance(Duration::from_secs(6)).await;
    let started = tokio::time::Instant::now();
    assert_eq!(
        send(&app, "GET", "/api/data", Body::empty()).await.0,
        StatusCode::OK
    );
    assert!(started.elapsed() < Duration::from_millis(300));
    assert_eq!(
        send(&admin, "GET", "/faults", Body::empty()).await.1["fault"],
        Value::Null
    );
}

#[tokio::test]
async fn an_unreachable_dependency_fails_like_an_outage() {
    let state = state(
        "payment-service",
        &[("notification-service", "http://127.0.0.1:9")],
    );
    let (admin, app) = (admin(&state), app(state.clone()));
    let fault = json!({ "unreachable": "notification-service" });
    assert_eq!(
        send(&admin, "PUT", "/faults", fault.to_string()).await.0,
        StatusCode::OK
    );

    let (status, body) = send(&app, "POST", "/api/action", Body::empty()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["dependency"], "notification-service");
    let metrics = text_metrics(&state);
    let payment = ("service_name", "payment-service");
    assert_eq!(
        sample_sum(
            &metrics,
            "fault_injections_total",
            &[("kind", "unreachable"), payment]
        ),
        1.0,
        "{metrics}"
    );
    let failed = [
        ("service", "notification-service"),
        ("status", "error"),
        payment,
    ];
    assert_eq!(
        sample_sum(&metrics, "downstream_requests_total", &failed),
        1.0,
        "{metrics}"
    );
}

/// `fault_active{kind}` of `state`, for latency, error and unreachable.
fn fault_active(state: &AppState) -> [f64; 3] {
    let metrics = text_metrics(state);
    ["latency", "error", "unreachable"].map(|kind| {
        series(
            &metrics,
            "fault_active",
            &[("kind", kind), ("service_name", state.name())],
        )
    })
}

#[tokio::test(start_paused = true)]
async fn fault_active_shows_the_kinds_in_force_until_cleared_or_expired() {
    let state = state(
        "product-service",
        &[("inventory-service", "http://127.0.0.1:1")],
    );
    let admin = admin(&state);
    assert_eq!(
        fault_active(&state),
        [0.0, 0.0, 0.0],
        "all three from the start"
    );

    let fault = json!({ "latency_ms": 100, "unreachable": "inventory-service" });
    assert_eq!(
        send(&admin, "PUT", "/faults", fault.to_string()).await.0,
        StatusCode::OK
    );
    assert_eq!(fault_active(&state), [1.0, 0.0, 1.0]);
    send(&admin, "DELETE", "/faults", Body::empty()).await;
    assert_eq!(fault_active(&state), [0.0, 0.0, 0.0], "cleared");

    let fault = json!({ "error_rate": 0.5, "for_seconds": 5 });
    assert_eq!(
        send(&admin, "PUT", "/faults", fault.to_string()).await.0,
        StatusCode::OK
    );
    assert_eq!(fault_active(&state), [0.0, 1.0, 0.0]);
    tokio::time::advance(Duration::from_secs(6)).await;
    // Nothing read the fault since it expired: the scrape itself sees that it is over.
    assert_eq!(fault_active(&state), [0.0, 0.0, 0.0], "expired");
}
