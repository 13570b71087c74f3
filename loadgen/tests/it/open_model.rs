//! The open model never loses a request quietly: a rate the connections cannot carry is
//! reported (not sent, with a warning), connections open on demand up to the cap, and
//! latency counts from the scheduled time, so the wait for a connection shows.

use std::time::Duration;

use loadgen::{Outcome, Plan, Report, StopReason};

use crate::server::{self, Data, open_plan, run, trace_id};

/// Every scheduled request in exactly one count: answered, in flight, or not sent.
fn assert_every_request_counted(outcome: &Outcome) {
    let schedule = outcome.schedule.as_ref().expect("an open-model run");
    let total = outcome.stats.total();
    assert_eq!(
        schedule.scheduled,
        total.successes + total.expected_errors + total.failures + total.in_flight + total.not_sent,
        "{schedule:?} {total:?}"
    );
    assert_eq!(total.scheduled(), schedule.scheduled);
    assert_eq!(
        total.not_sent,
        schedule.dropped_late + schedule.queued_at_end
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_the_connections_cannot_carry_is_reported_with_every_request_counted() {
    // Two connections to a server that takes 100 ms carry 20 requests/s: at 100/s for
    // 3 s most of the 300 scheduled requests cannot be sent.
    let server = server::start(Data::taking(|_| Duration::from_millis(100))).await;
    let outcome = run(
        &server.target,
        &Plan {
            duration: Some(Duration::from_secs(3)),
            ..open_plan(100.0, 2)
        },
    )
    .await;
    assert_eq!(outcome.stop, StopReason::Finished);
    let total = outcome.stats.total();
    let schedule = outcome.schedule.clone().expect("an open-model run");
    // The timeline is fixed: whatever the answers, about 300 requests were due.
    assert!(
        schedule.scheduled >= 270,
        "{} scheduled at 100/s for 3 s",
        schedule.scheduled
    );
    assert!(
        total.requests + 10 < schedule.scheduled,
        "{} sent of {}: the answers could not have kept up",
        total.requests,
        schedule.scheduled
    );
    assert_every_request_counted(&outcome);
    assert!(
        total.not_sent > 0 && schedule.dropped_late > 0,
        "{schedule:?}"
    );
    assert_eq!(schedule.connections, 2);
    // What was sent arrived: the server saw every answered request, at most the ones in
    // flight more.
    let arrived = server.data_requests();
    assert!(
        (total.answered()..=total.requests).contains(&arrived),
        "{arrived} arrived, {total:?}"
    );

    the_report_says_what_was_not_sent(&outcome);
}

/// The table, the JSON and the one warning of a run that fell behind with its two
/// connections busy: each says how many requests were not sent, and what to change.
fn the_report_says_what_was_not_sent(outcome: &Outcome) {
    let total = outcome.stats.total();
    let schedule = outcome.schedule.clone().expect("an open-model run");
    let report = Report::new(outcome, None);
    let [warning] = report.warnings.as_slice() else {
        panic!("one warning expected: {:?}", report.warnings);
    };
    for said in [
        "fell behind its schedule: asked 100 requests/s, sent ",
        &format!(
            "{} of {} scheduled requests not sent",
            total.not_sent, schedule.scheduled
        ),
        "All 2 connections (--max-connections) were busy",
        "Raise --max-connections to about ",
        "or lower --rate to about ",
    ] {
        assert!(warning.contains(said), "{said:?} not in {warning}");
    }
    let table = report.table();
    assert!(
        table.contains("not sent") && table.contains(&format!("WARNING: {warning}")),
        "{table}"
    );
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["total"]["not_sent"], total.not_sent);
    assert_eq!(json["total"]["scheduled"], schedule.scheduled);
    assert_eq!(json["schedule"]["scheduled"], schedule.scheduled);
    assert_eq!(json["schedule"]["max_connections"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_open_on_demand_up_to_the_cap() {
    // At 100 requests/s of 200 ms each, about 20 are in progress at once: from one
    // connection the pool grows to the cap of 4, never beyond.
    let server = server::start(Data::taking(|_| Duration::from_millis(200))).await;
    let outcome = run(
        &server.target,
        &Plan {
            requests: Some(100),
            ..open_plan(100.0, 4)
        },
    )
    .await;
    assert_eq!(server.most_at_once(), 4, "the server saw this many at once");
    let schedule = outcome.schedule.as_ref().expect("an open-model run");
    assert_eq!((schedule.connections, schedule.scheduled), (4, 100));
    assert!(schedule.waited_at_cap > 0, "{schedule:?}");
    assert_every_request_counted(&outcome);
}

#[tokio::test(flavor = "multi_thread")]
async fn latency_counts_from_the_scheduled_time_so_a_stall_shows() {
    // One connection; the first request stalls 600 ms, the others answer at once. The
    // request scheduled at n × 10 ms cannot start before the stall ends, so it waited at
    // least 600 - 10 n ms, and its latency must say so (sent at once it would take 0).
    let server = server::start(Data::taking(|n| {
        Duration::from_millis(if n == 0 { 600 } else { 0 })
    }))
    .await;
    let outcome = run(
        &server.target,
        &Plan {
            max_lag: Duration::from_secs(10),
            requests: Some(60),
            slowest: 60,
            ..open_plan(100.0, 1)
        },
    )
    .await;
    assert_eq!(outcome.stats.total().successes, 60);
    assert_every_request_counted(&outcome);
    for n in 1..30_u64 {
        let id = trace_id(n);
        let slow = outcome
            .slowest
            .iter()
            .find(|slow| slow.trace_id.as_deref() == Some(id.as_str()))
            .unwrap_or_else(|| panic!("request {n} is not among the answered"));
        let waited = Duration::from_millis(600 - 10 * n);
        assert!(
            slow.latency >= waited,
            "request {n} waited at least {waited:?} for the connection; its latency {:?} \
             hides it",
            slow.latency
        );
    }
}
