//! Fault injection through the admin API, driven with `oneshot`: validated whole (a bad
//! request changes nothing), applied on the request path, visible in metrics, expiring
//! by itself; a quiet fault acts the same and announces nothing.

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

/// Every line the service logs while `state`'s quiet `fault` is set and `request` is
/// sent, with what the request got and the metrics after it.
async fn quietly(
    state: &AppState,
    fault: Value,
    request: (&str, &str),
) -> (StatusCode, Value, String, String) {
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || LineSink(writer.clone()))
        .finish();
    // The test's runtime runs on this thread only: every line of the request comes here.
    let _logging = tracing::subscriber::set_default(subscriber);
    // Other tests' threads, with no subscriber, may have cached a callsite as never
    // enabled (tracing caches interest per callsite, process-wide): ask again.
    tracing::callsite::rebuild_interest_cache();
    let (status, set) = send(&admin(state), "PUT", "/faults", fault.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(
        (&set["hidden"], &set["fault"], &set["seconds_left"]),
        (&json!(true), &Value::Null, &Value::Null),
        "the PUT's answer hides it too"
    );
    let (status, body) = send(&app(state.clone()), request.0, request.1, Body::empty()).await;
    let logged = String::from_utf8_lossy(&lines.lock().expect("lines")).into_owned();
    (status, body, logged, text_metrics(state))
}

struct LineSink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LineSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lines").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a learner must not see of a quiet fault: no metric counts or shows it, no line
/// names it, the admin API only says a fault is hidden.
fn assert_unannounced(state: &AppState, logged: &str, metrics: &str) {
    assert_eq!(fault_active(state), [0.0, 0.0, 0.0], "{metrics}");
    assert_eq!(
        sample_sum(metrics, "fault_injections_total", &[]),
        0.0,
        "{metrics}"
    );
    assert!(
        !logged.contains("fault") && !logged.contains("injected"),
        "{logged}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_quiet_fault_acts_the_same_and_announces_nothing() {
    let state = state("user-service", &[]);
    let fault = json!({ "latency_ms": 300, "error_rate": 1.0, "error_status": 503, "for_seconds": 60, "quiet": true });
    let started = tokio::time::Instant::now();
    let (status, body, logged, metrics) = quietly(&state, fault, ("GET", "/api/data")).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        body,
        json!({ "error": "Service Unavailable", "status": 503 })
    );
    assert_unannounced(&state, &logged, &metrics);
    let user = [("service_name", "user-service"), ("status", "503")];
    assert_eq!(sample_sum(&metrics, "http_requests_total", &user), 1.0);

    let admin = admin(&state);
    let (_, shown) = send(&admin, "GET", "/faults", Body::empty()).await;
    assert_eq!(
        shown,
        json!({ "service": "user-service", "fault": null, "seconds_left": null, "hidden": true })
    );
    let (_, cleared) = send(&admin, "DELETE", "/faults", Body::empty()).await;
    assert_eq!(
        cleared,
        json!({ "service": "user-service", "fault": null, "seconds_left": null })
    );
    assert_eq!(
        send(&app(state), "GET", "/api/data", Body::empty()).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_quiet_unreachable_dependency_shows_only_in_the_calls() {
    let state = state(
        "payment-service",
        &[("notification-service", "http://127.0.0.1:9")],
    );
    let fault = json!({ "unreachable": "notification-service", "quiet": true });
    let (status, body, logged, metrics) = quietly(&state, fault, ("POST", "/api/action")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_unannounced(&state, &logged, &metrics);
    let failed = [("service", "notification-service"), ("status", "error")];
    assert_eq!(
        sample_sum(&metrics, "downstream_requests_total", &failed),
        1.0
    );
    assert!(logged.contains("downstream call failed"), "{logged}");
    // The call's span (around that line) names the dependency's address, not where the
    // fault dialled.
    assert!(
        logged.contains(r#""url.full":"http://127.0.0.1:9/"#) && !logged.contains("127.0.0.1:1/"),
        "{logged}"
    );
}
