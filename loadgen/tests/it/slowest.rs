//! The slowest requests of a run, with the trace id of each answer: exact in both models,
//! across workers, and `None` for an answer without `x-trace-id`.

use std::time::Duration;

use loadgen::{Endpoint, Plan, Rate, Report};

use crate::server::{self, Data, plan, run, trace_id};

/// Five of the 200 `/api/data` requests are slow, each 100 ms slower than the one before;
/// the others answer at once.
fn five_slow(n: u64) -> Duration {
    match n {
        20 | 60 | 100 | 140 | 180 => Duration::from_millis(300 + (n - 20) * 100 / 40),
        _ => Duration::ZERO,
    }
}

/// Sends 200 requests to `/api/data` the way `model` does (closed or open), keeping the
/// three slowest: those are the requests the server took longest over, named by their
/// traces, slowest first.
async fn the_three_slowest_are_named(model: Plan) {
    let server = server::start(Data {
        latency: five_slow,
        ..Data::fast()
    })
    .await;
    let outcome = run(
        &server.target,
        &Plan {
            requests: Some(200),
            slowest: 3,
            ..model
        },
    )
    .await;
    assert_eq!(outcome.stats.total().successes, 200);
    let shown: Vec<(Endpoint, u16, Option<&str>)> = outcome
        .slowest
        .iter()
        .map(|slow| (slow.endpoint, slow.status, slow.trace_id.as_deref()))
        .collect();
    let (t180, t140, t100) = (trace_id(180), trace_id(140), trace_id(100));
    assert_eq!(
        shown,
        [
            (Endpoint::Data, 200, Some(t180.as_str())),
            (Endpoint::Data, 200, Some(t140.as_str())),
            (Endpoint::Data, 200, Some(t100.as_str())),
        ]
    );
    for (slow, served) in outcome.slowest.iter().zip([700, 600, 500]) {
        assert!(
            slow.latency >= Duration::from_millis(served),
            "{slow:?} was served in {served} ms"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_slowest_name_their_traces_in_the_closed_model() {
    the_three_slowest_are_named(plan("data=1")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_slowest_name_their_traces_in_the_open_model() {
    the_three_slowest_are_named(Plan {
        rate: Some(Rate::new(400.0).expect("rate")),
        users: 8,
        ..plan("data=1")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_without_a_trace_header_names_none() {
    let server = server::start(Data::fast()).await;
    let outcome = run(
        &server.target,
        &Plan {
            requests: Some(100),
            slowest: 1000,
            ..plan("data=1,health=1")
        },
    )
    .await;
    // Room for every request: all of them are kept, from every worker, slowest first.
    assert_eq!(outcome.slowest.len(), 100);
    assert!(
        outcome
            .slowest
            .windows(2)
            .all(|pair| pair[0].latency >= pair[1].latency)
    );
    for slow in &outcome.slowest {
        match slow.endpoint {
            Endpoint::Health => assert_eq!(slow.trace_id, None),
            _ => assert!(
                slow.trace_id.as_ref().is_some_and(|id| id.len() == 32),
                "{slow:?}"
            ),
        }
    }
    let report = Report::new(&outcome, None);
    let lines = report.slowest_table();
    assert_eq!(lines.lines().count(), 100);
    assert!(
        lines.contains("GET /health") && lines.contains("trace -"),
        "{lines}"
    );

    let none = run(
        &server.target,
        &Plan {
            requests: Some(20),
            slowest: 0,
            ..plan("data=1")
        },
    )
    .await;
    assert!(none.slowest.is_empty());
    assert_eq!(Report::new(&none, None).slowest_table(), "");
}
