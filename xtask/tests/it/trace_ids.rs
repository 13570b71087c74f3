//! Trace ids with nothing receiving spans: on a `cargo xtask local --no-observability`
//! mesh (no collector, no Jaeger, no receiver anywhere), an answer still names its trace,
//! `cargo xtask logs --trace` still finds that request's lines in all seven services, and
//! `cargo xtask traffic` still lists its slowest requests by trace id.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use contract::{endpoints, topology::Topology};
use xtask::mesh::LocalMesh;

use crate::support::{serial, start_local, stop_local, succeeded, xtask};

/// 32 lowercase hex digits, not all zero: a valid W3C trace id.
fn is_trace_id(text: &str) -> bool {
    text.len() == 32
        && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && text.bytes().any(|b| b != b'0')
}

/// `POST /api/action` at `gateway`; the answer's `x-trace-id`.
fn action_trace_id(gateway: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{gateway}{}", endpoints::ACTION))
            .send()
            .await
            .expect("POST /api/action");
        assert!(response.status().is_success(), "{response:?}");
        response
            .headers()
            .get(contract::TRACE_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .expect("an x-trace-id header, with nothing receiving spans")
            .to_owned()
    })
}

/// The services whose lines `cargo xtask logs --trace ID` prints, once all seven are
/// there (bounded: the lines are written before the gateway answers, the files may lag).
fn services_logging(trace_id: &str, expected: usize) -> (BTreeSet<String>, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = succeeded(&xtask(&["logs", "--trace", trace_id]));
        let mut services = BTreeSet::new();
        for line in output.lines() {
            let (source, json) = line.split_once(" | ").expect("`SOURCE | LINE`");
            let json: serde_json::Value = serde_json::from_str(json).expect("a JSON log line");
            assert_eq!(
                json["trace_id"], trace_id,
                "a line of another trace:\n{output}"
            );
            services.insert(source.trim().to_owned());
        }
        if services.len() >= expected || Instant::now() > deadline {
            return (services, output);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn without_a_trace_backend_requests_keep_trace_ids_that_lead_to_their_logs() {
    let _serial = serial();
    let local = start_local(&["--no-observability"]);
    let mesh = LocalMesh::running().expect("the running mesh's record");
    assert!(
        mesh.tools.is_empty(),
        "no tool may run, so nothing receives spans: {mesh:?}"
    );

    let trace_id = action_trace_id(&mesh.entry_url());
    assert!(is_trace_id(&trace_id), "`{trace_id}`");
    let built_in = Topology::built_in();
    let all_seven: BTreeSet<String> = built_in
        .service_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let (logged, output) = services_logging(&trace_id, all_seven.len());
    assert_eq!(logged, all_seven, "the trace's log lines:\n{output}");

    let traffic = succeeded(&xtask(&[
        "traffic",
        "--duration",
        "3",
        "--mix",
        "data=1,action=1",
        "--think",
        "0",
        "--users",
        "2",
        "--slowest",
        "5",
    ]));
    let listed: Vec<&str> = traffic
        .lines()
        .filter_map(|line| line.split_once("  trace ").map(|(_, id)| id.trim()))
        .collect();
    assert_eq!(listed.len(), 5, "the five slowest:\n{traffic}");
    assert!(
        listed.iter().all(|id| is_trace_id(id)),
        "each of the slowest names its trace:\n{traffic}"
    );

    stop_local(local);
}
