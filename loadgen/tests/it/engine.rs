//! The engine: the mix, the request count, the duration, the open model, cancelling, and
//! a target that goes away.

use std::time::Duration;

use axum::http::StatusCode;
use loadgen::{Endpoint, Mix, Plan, PreflightError, Rate, StopReason, Think};

use crate::server::{self, Data, never, plan, reachable, run};

#[tokio::test(flavor = "multi_thread")]
async fn the_mix_holds_and_the_request_count_is_exact() {
    let server = server::start(Data::fast()).await;
    let outcome = run(
        &server.target,
        &Plan {
            requests: Some(4000),
            ..plan(Mix::DEFAULT_WEIGHTS)
        },
    )
    .await;
    assert_eq!(outcome.stop, StopReason::Finished);
    assert!(
        outcome.worker_errors.is_empty(),
        "{:?}",
        outcome.worker_errors
    );
    let total = outcome.stats.total();
    assert_eq!(total.requests, 4000);
    let mix = Mix::default();
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
    let server = server::start(Data {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        ..Data::fast()
    })
    .await;
    let outcome = run(
        &server.target,
        &Plan {
            requests: Some(600),
            ..plan("data=1,error=1,health=1")
        },
    )
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
    let server = server::start(Data::taking(|_| Duration::from_millis(2))).await;
    let outcome = run(
        &server.target,
        &Plan {
            duration: Some(Duration::from_secs(2)),
            think: Think::Fixed(Duration::from_millis(10)),
            ..plan("data=1")
        },
    )
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
    let server = server::start(Data::fast()).await;
    let outcome = run(
        &server.target,
        &Plan {
            rate: Some(Rate::new(200.0).expect("rate")),
            duration: Some(Duration::from_secs(2)),
            ..plan("data=1")
        },
    )
    .await;
    let requests = outcome.stats.total().requests;
    assert!(
        (360..=440).contains(&requests),
        "{requests} requests at 200/s for 2 s"
    );

    // One connection (the cap) to a server that needs 20 ms per request can serve 50/s;
    // at 100/s the schedule falls behind, and latency counted from the schedule keeps
    // growing. The closed model would report about 20 ms.
    let slow = server::start(Data::taking(|_| Duration::from_millis(20))).await;
    let open = run(
        &slow.target,
        &Plan {
            users: 1,
            max_connections: 1,
            rate: Some(Rate::new(100.0).expect("rate")),
            duration: Some(Duration::from_secs(2)),
            ..plan("data=1")
        },
    )
    .await;
    let p99 = open.stats.total().latency_us.value_at_quantile(0.99);
    assert!(p99 > 300_000, "open-model p99 {p99} µs hides the stall");
    let closed = run(
        &slow.target,
        &Plan {
            users: 1,
            duration: Some(Duration::from_secs(1)),
            ..plan("data=1")
        },
    )
    .await;
    let p99 = closed.stats.total().latency_us.value_at_quantile(0.99);
    assert!(p99 < 200_000, "closed-model p99 {p99} µs");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_still_yields_the_summary() {
    let server = server::start(Data::taking(|_| Duration::from_millis(1))).await;
    let outcome = loadgen::run(
        &reachable(&server.target).await,
        &Plan {
            duration: None,
            ..plan(Mix::DEFAULT_WEIGHTS)
        },
        tokio::time::sleep(Duration::from_millis(500)),
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
async fn progress_ticks_once_a_second() {
    let server = server::start(Data::fast()).await;
    let mut ticks = Vec::new();
    let outcome = loadgen::run(
        &reachable(&server.target).await,
        &Plan {
            duration: Some(Duration::from_millis(2500)),
            think: Think::Fixed(Duration::from_millis(5)),
            ..plan("data=1")
        },
        never(),
        |tick| ticks.push(tick.clone()),
    )
    .await;
    assert_eq!(ticks.len(), 2, "{ticks:?}");
    assert_eq!(
        ticks
            .iter()
            .map(|tick| tick.elapsed.as_secs())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(
        ticks
            .iter()
            .all(|tick| tick.interval_rps > 0.0 && tick.interval_p95.is_some())
    );
    assert!(ticks[1].requests > ticks[0].requests);
    assert!(ticks[1].requests <= outcome.stats.total().requests);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_is_down_fails_fast() {
    // Before the run: one clear sentence, within seconds.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let target = format!("http://127.0.0.1:{port}").parse().expect("target");
    let started = std::time::Instant::now();
    let error = loadgen::preflight(&target)
        .await
        .expect_err("nothing listens");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(&error, PreflightError::NotAnswering { url, .. } if *url == format!("http://127.0.0.1:{port}")),
        "{error:?}"
    );
    assert!(error.to_string().contains("is not answering"), "{error}");

    // During the run: stopped after three seconds of silence, with the cause.
    let server = server::start(Data::fast()).await;
    let reachable = reachable(&server.target).await;
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = server.stop.send(());
    });
    let outcome = loadgen::run(
        &reachable,
        &Plan {
            think: Think::Fixed(Duration::from_millis(5)),
            ..plan("data=1")
        },
        never(),
        |_| {},
    )
    .await;
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
