//! The real binary as seven processes, exporting spans over OTLP/gRPC to a real gRPC
//! receiver in this test; and the binary's shutdown on SIGTERM.

use std::{collections::HashMap, time::Duration};

use contract::topology::{Topology, url_variable};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode as SpanStatus};

use crate::otlp::{ReceivedSpan, Receiver, Service, exporting_to, hex};

/// Starts every service of the built-in topology, dependencies first, so each caller is
/// given its dependencies' real URLs.
async fn start_mesh(otlp_endpoint: &str) -> HashMap<String, Service> {
    let topology = Topology::built_in();
    let mut running: HashMap<String, Service> = HashMap::new();
    while running.len() < topology.service_names().len() {
        for service in topology.services() {
            let deps = service.dependencies();
            if running.contains_key(&service.name) || !deps.iter().all(|d| running.contains_key(*d))
            {
                continue;
            }
            let mut env = exporting_to(otlp_endpoint);
            env.extend(
                deps.iter()
                    .map(|dep| (url_variable(dep), running[*dep].url.clone())),
            );
            running.insert(
                service.name.clone(),
                Service::start(&service.name, &env).await,
            );
        }
    }
    running
}

/// `POST /api/action` at the gateway; the status it answers.
async fn post_action(client: &reqwest::Client, gateway: &str) -> u16 {
    let response = client
        .post(format!("{gateway}/api/action"))
        .send()
        .await
        .expect("action");
    response.status().as_u16()
}

/// Sets `fault` (a fault spec, JSON) on `service` through its admin API; the admin API's
/// address, to clear it later.
async fn inject_fault(client: &reqwest::Client, service: &Service, fault: &str) -> String {
    let admin = service.wait_for_log("admin API listening").await["address"]
        .as_str()
        .expect("address")
        .to_owned();
    let answer = client
        .put(format!("http://{admin}/faults"))
        .body(fault.to_owned())
        .send()
        .await
        .expect("PUT /faults");
    assert_eq!(answer.status(), 200);
    admin
}

#[tokio::test(flavor = "multi_thread")]
async fn one_action_is_one_trace_of_ten_server_spans_across_seven_services() {
    let (receiver, endpoint) = Receiver::start().await;
    let mut mesh = start_mesh(&endpoint).await;
    let client = reqwest::Client::new();
    let gateway = mesh["gateway-service"].url.clone();

    assert_eq!(post_action(&client, &gateway).await, 200);
    let response = client
        .get(format!("{gateway}/api/error"))
        .send()
        .await
        .expect("error");
    assert_eq!(response.status(), 500);

    let is_action_root = |s: &ReceivedSpan| {
        s.service == "gateway-service"
            && s.name == "POST /api/action"
            && s.parent_span_id.is_empty()
    };
    let spans = receiver
        .wait_for(
            "ten server spans of the action's trace and the error span",
            |spans| {
                let Some(root) = spans.iter().find(|s| is_action_root(s)) else {
                    return false;
                };
                let servers = spans
                    .iter()
                    .filter(|s| s.trace_id == root.trace_id && s.kind == SpanKind::Server as i32)
                    .count();
                servers >= 10 && spans.iter().any(|s| s.name == "GET /api/error")
            },
        )
        .await;

    let root = spans.iter().find(|s| is_action_root(s)).expect("root");
    let trace: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == root.trace_id)
        .collect();
    let servers: Vec<&&ReceivedSpan> = trace
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(servers.len(), 10, "{servers:#?}");
    let mut services: Vec<&str> = servers.iter().map(|s| s.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    assert_eq!(services.len(), 7, "{services:?}");

    // Every server span but the root is the child of a client span of its caller.
    let by_id: HashMap<&[u8], &ReceivedSpan> =
        trace.iter().map(|s| (s.span_id.as_slice(), *s)).collect();
    let mut edges: Vec<(String, String)> = servers
        .iter()
        .filter(|s| !s.parent_span_id.is_empty())
        .map(|server| {
            let client = by_id[server.parent_span_id.as_slice()];
            assert_eq!(client.kind, SpanKind::Client as i32, "parent of {server:?}");
            let caller = by_id[client.parent_span_id.as_slice()];
            assert_eq!(caller.kind, SpanKind::Server as i32, "parent of {client:?}");
            assert_eq!(caller.service, client.service);
            (caller.service.clone(), server.service.clone())
        })
        .collect();
    edges.sort();
    let mut expected: Vec<(String, String)> = [
        ("gateway-service", "order-service"),
        ("gateway-service", "product-service"),
        ("gateway-service", "user-service"),
        ("order-service", "payment-service"),
        ("order-service", "product-service"),
        ("order-service", "user-service"),
        ("payment-service", "notification-service"),
        ("product-service", "inventory-service"),
        ("product-service", "inventory-service"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    expected.sort();
    assert_eq!(edges, expected);

    // HTTP semantic conventions on the server spans.
    for server in &servers {
        let route = &server.attributes["http.route"];
        let method = &server.attributes["http.request.method"];
        assert_eq!(server.name, format!("{method} {route}"));
        assert_eq!(server.attributes["http.response.status_code"], "200");
        assert_ne!(server.status, SpanStatus::Error as i32);
    }
    let error_span = spans
        .iter()
        .find(|s| s.name == "GET /api/error")
        .expect("error span");
    assert_eq!(error_span.status, SpanStatus::Error as i32);
    assert_eq!(error_span.attributes["http.response.status_code"], "500");

    // An injected latency is an event on the affected server span.
    let admin = inject_fault(
        &client,
        &mesh["inventory-service"],
        r#"{"latency_ms": 50, "route": "/api/data"}"#,
    )
    .await;
    assert_eq!(post_action(&client, &gateway).await, 200);
    let spans = receiver
        .wait_for("an inventory-service span with the fault event", |spans| {
            spans.iter().any(|s| {
                s.service == "inventory-service"
                    && s.events.iter().any(|e| e.contains("fault injected"))
            })
        })
        .await;
    let faulted = spans
        .iter()
        .find(|s| {
            s.service == "inventory-service"
                && s.events.iter().any(|e| e.contains("fault injected"))
        })
        .expect("span");
    assert_eq!(
        (faulted.kind, faulted.name.as_str()),
        (SpanKind::Server as i32, "GET /api/data")
    );
    client
        .delete(format!("http://{admin}/faults"))
        .send()
        .await
        .expect("DELETE /faults");

    // A failing dependency: an error span, and a log line that leads to it.
    mesh.get_mut("notification-service")
        .expect("running")
        .signal("-KILL");
    assert_eq!(post_action(&client, &gateway).await, 502);
    let warning = mesh["payment-service"]
        .wait_for_log("downstream call failed")
        .await;
    assert_eq!(warning["dependency"], "notification-service");
    let trace_id = warning["trace_id"]
        .as_str()
        .expect("the log line carries trace_id")
        .to_owned();
    let span_id = warning["span_id"]
        .as_str()
        .expect("the log line carries span_id")
        .to_owned();
    let spans = receiver
        .wait_for("the failed client span", |spans| {
            spans.iter().any(|s| hex(&s.span_id) == span_id)
        })
        .await;
    let failed = spans
        .iter()
        .find(|s| hex(&s.span_id) == span_id)
        .expect("span");
    assert_eq!(hex(&failed.trace_id), trace_id);
    assert_eq!(
        (failed.kind, failed.status),
        (SpanKind::Client as i32, SpanStatus::Error as i32)
    );
    assert_eq!(failed.service, "payment-service");

    for (name, service) in &mut mesh {
        if name != "notification-service" {
            service.signal("-TERM");
            assert_eq!(service.exit_code().await, Some(0), "{name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_turns_ready_off_and_lets_a_slow_request_finish() {
    let env = [
        ("OTEL_SDK_DISABLED".to_owned(), "true".to_owned()),
        ("SHUTDOWN_DELAY_MS".to_owned(), "1000".to_owned()),
    ];
    let mut service = Service::start("user-service", &env).await;
    let client = reqwest::Client::new();
    let url = service.url.clone();

    let slow = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .get(format!("{url}/api/slow"))
                .send()
                .await
                .map(|r| r.status())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    service.signal("-TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let ready = reqwest::Client::new()
        .get(format!("{url}/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 503);
    assert_eq!(
        slow.await
            .expect("join")
            .expect("the slow request completes"),
        200
    );
    assert_eq!(service.exit_code().await, Some(0));
    assert!(
        reqwest::Client::new()
            .get(format!("{url}/health"))
            .send()
            .await
            .is_err(),
        "port still open"
    );
}

/// The `x-trace-id` an answer carries.
fn trace_id_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(contract::TRACE_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .expect("an x-trace-id header")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exports_every_answered_requests_span_and_ends_one_cut_at_the_drain_deadline_as_an_error()
 {
    let (receiver, endpoint) = Receiver::start().await;
    let mut env = exporting_to(&endpoint);
    // No scheduled export before the signal: what the receiver gets, the shutdown's flush
    // sent.
    env.push(("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "600000".to_owned()));
    env.push(("SHUTDOWN_DRAIN_SECONDS".to_owned(), "1".to_owned()));
    let mut service = Service::start("user-service", &env).await;
    let client = reqwest::Client::new();
    let url = service.url.clone();

    let mut answered = Vec::new();
    for _ in 0..3 {
        let response = client
            .get(format!("{url}/api/data"))
            .send()
            .await
            .expect("GET /api/data");
        assert_eq!(response.status(), 200);
        answered.push(trace_id_of(&response));
    }
    // A request that outlives the one-second drain: 30 s of injected latency.
    inject_fault(
        &client,
        &service,
        r#"{"latency_ms": 30000, "route": "/api/data"}"#,
    )
    .await;
    let cut = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.get(format!("{url}/api/data")).send().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.spans().is_empty(),
        "spans arrived before the signal"
    );
    service.signal("-TERM");

    let cut = cut.await.expect("join");
    assert_eq!(service.exit_code().await, Some(0));
    // Received before the process exited: nothing is sent after.
    let spans = receiver.spans();
    for trace_id in &answered {
        let span = spans
            .iter()
            .find(|s| &hex(&s.trace_id) == trace_id)
            .unwrap_or_else(|| panic!("no span of answered trace {trace_id}: {spans:#?}"));
        assert_eq!(
            (span.name.as_str(), span.status),
            ("GET /api/data", SpanStatus::Unset as i32)
        );
    }
    let cut = cut.expect("the request cut at the drain deadline is answered");
    assert_eq!(cut.status(), 503);
    let cut_trace = trace_id_of(&cut);
    let span = spans
        .iter()
        .find(|s| hex(&s.trace_id) == cut_trace)
        .unwrap_or_else(|| panic!("no span of the cut request {cut_trace}: {spans:#?}"));
    assert_eq!(
        (span.name.as_str(), span.kind, span.status),
        (
            "GET /api/data",
            SpanKind::Server as i32,
            SpanStatus::Error as i32
        ),
        "{span:#?}"
    );
    assert_eq!(span.status_message, telemetry::CANCELLED_AT_DRAIN_DEADLINE);
    assert_eq!(span.attributes["http.response.status_code"], "503");
    assert_eq!(
        cut.text().await.expect("body"),
        telemetry::CANCELLED_AT_DRAIN_DEADLINE
    );
}
