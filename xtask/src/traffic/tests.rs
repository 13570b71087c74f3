//! The engine against an in-process axum server on a loopback port.

use std::time::Duration;

use axum::{Router, http::StatusCode, routing::get};
use tokio::{net::TcpListener, sync::watch};

use super::{
    client,
    engine::{self, Outcome, Plan, StopReason},
    options::{Endpoint, Mix, Target, Think},
};

/// A stand-in gateway whose `/api/data` takes `data_latency` and answers `data_status`.
async fn server(
    data_latency: Duration,
    data_status: StatusCode,
) -> (Target, tokio::sync::oneshot::Sender<()>) {
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/api/data",
            get(move || async move {
                tokio::time::sleep(data_latency).await;
                data_status
            }),
        )
        .route("/api/action", axum::routing::post(|| async { "done" }))
        .route("/api/slow", get(|| async { "slow" }))
        .route(
            "/api/error",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let target: Target = format!("http://{}", listener.local_addr().expect("addr"))
        .parse()
        .expect("target");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    (target, stop)
}

async fn plan(target: &Target, mix: &str) -> Plan {
    Plan {
        address: client::preflight(target)
            .await
            .expect("the test server answers"),
        target: target.clone(),
        mix: mix.parse().expect("mix"),
        users: 4,
        think: Think::None,
        rate: None,
        duration: Some(Duration::from_secs(30)),
        requests: None,
    }
}

async fn run(plan: Plan) -> Outcome {
    let (_keep, cancel) = watch::channel(false);
    engine::run(plan, cancel, |_| {}).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mix_holds_and_the_request_count_is_exact() {
    let (target, _server) = server(Duration::ZERO, StatusCode::OK).await;
    let outcome = run(Plan {
        requests: Some(4000),
        ..plan(&target, Mix::GUIDE).await
    })
    .await;
    assert_eq!(outcome.stop, StopReason::Finished);
    let total = outcome.stats.total();
    assert_eq!(total.requests, 4000);
    let mix: Mix = Mix::GUIDE.parse().expect("mix");
    for endpoint in Endpoint::ALL {
        let share = outcome.stats.endpoint(endpoint).requests as f64 / 4000.0;
        // The largest standard deviation (share 0.4) is 0.0077: 0.035 is over four of them.
        assert!(
            (share - mix.share(endpoint)).abs() < 0.035,
            "{endpoint}: {share}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn expected_errors_and_failures_are_counted_apart() {
    let (target, _server) = server(Duration::ZERO, StatusCode::INTERNAL_SERVER_ERROR).await;
    let outcome = run(Plan {
        requests: Some(600),
        ..plan(&target, "data=1,error=1,health=1").await
    })
    .await;
    let errors = outcome.stats.endpoint(Endpoint::Error);
    assert_eq!(
        (errors.expected_errors, errors.failures, errors.successes),
        (errors.requests, 0, 0)
    );
    let data = outcome.stats.endpoint(Endpoint::Data);
    assert_eq!(
        (data.failures, data.expected_errors, data.successes),
        (data.requests, 0, 0)
    );
    assert_eq!(data.failure_reasons.get("HTTP 500"), Some(&data.requests));
    let health = outcome.stats.endpoint(Endpoint::Health);
    assert_eq!(health.successes, health.requests);
    assert!(data.requests > 0 && errors.requests > 0 && health.requests > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_duration_is_honoured() {
    let (target, _server) = server(Duration::from_millis(2), StatusCode::OK).await;
    let outcome = run(Plan {
        duration: Some(Duration::from_secs(2)),
        think: Think::Fixed(Duration::from_millis(10)),
        ..plan(&target, "data=1").await
    })
    .await;
    assert_eq!(outcome.stop, StopReason::Finished);
    assert!(
        outcome.elapsed >= Duration::from_secs(2) && outcome.elapsed < Duration::from_secs(4),
        "{:?}",
        outcome.elapsed
    );
    assert!(outcome.stats.total().requests > 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_is_honoured_and_a_stall_shows_as_latency() {
    // Fast server: 200 requests/s for 2 s is about 400 requests, whatever the users.
    let (target, _server) = server(Duration::ZERO, StatusCode::OK).await;
    let outcome = run(Plan {
        rate: Some(200.0),
        duration: Some(Duration::from_secs(2)),
        ..plan(&target, "data=1").await
    })
    .await;
    let requests = outcome.stats.total().requests;
    assert!(
        (360..=440).contains(&requests),
        "{requests} requests at 200/s for 2 s"
    );

    // One connection to a server that needs 20 ms per request can serve 50/s; at 100/s the
    // schedule falls behind, and latency counted from the schedule keeps growing. The
    // closed model would report about 20 ms.
    let (slow_target, _slow_server) = server(Duration::from_millis(20), StatusCode::OK).await;
    let open = run(Plan {
        users: 1,
        rate: Some(100.0),
        duration: Some(Duration::from_secs(2)),
        ..plan(&slow_target, "data=1").await
    })
    .await;
    let p99 = open.stats.total().latency_us.value_at_quantile(0.99);
    assert!(p99 > 300_000, "open-model p99 {p99} µs hides the stall");
    let closed = run(Plan {
        users: 1,
        duration: Some(Duration::from_secs(1)),
        ..plan(&slow_target, "data=1").await
    })
    .await;
    let p99 = closed.stats.total().latency_us.value_at_quantile(0.99);
    assert!(p99 < 200_000, "closed-model p99 {p99} µs");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_still_yields_the_summary() {
    let (target, _server) = server(Duration::from_millis(1), StatusCode::OK).await;
    let (cancel_tx, cancel) = watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = cancel_tx.send(true);
    });
    let outcome = engine::run(
        Plan {
            duration: None,
            ..plan(&target, Mix::GUIDE).await
        },
        cancel,
        |_| {},
    )
    .await;
    assert_eq!(outcome.stop, StopReason::Cancelled);
    assert!(
        outcome.elapsed < Duration::from_secs(3),
        "{:?}",
        outcome.elapsed
    );
    assert!(outcome.stats.total().requests > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_is_down_fails_fast() {
    // Before the run: one clear sentence, within seconds.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let target: Target = format!("http://127.0.0.1:{port}").parse().expect("target");
    let started = std::time::Instant::now();
    let error = client::preflight(&target)
        .await
        .expect_err("nothing listens")
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        error.contains("is not answering") && error.contains("cargo xtask local"),
        "{error}"
    );

    // During the run: stopped after three seconds of silence, with the cause.
    let (target, server) = server(Duration::ZERO, StatusCode::OK).await;
    let plan = Plan {
        think: Think::Fixed(Duration::from_millis(5)),
        ..plan(&target, "data=1").await
    };
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = server.send(());
    });
    let outcome = run(plan).await;
    assert!(
        matches!(outcome.stop, StopReason::TargetDown(_)),
        "{:?}",
        outcome.stop
    );
    assert!(
        outcome.elapsed < Duration::from_secs(8),
        "{:?}",
        outcome.elapsed
    );
}
