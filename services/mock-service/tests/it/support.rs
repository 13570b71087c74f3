//! Helpers shared by the tests: a service's state, one request through a router with
//! `oneshot`, reading samples out of an exposition, and finding the tools a test needs.

use std::{collections::HashMap, time::Duration};

use axum::{
    Router,
    body::{Body, to_bytes},
    http::{Request, StatusCode},
};
use contract::topology::Topology;
use mock_service::AppState;
use serde_json::Value;
use telemetry::{ExemplarFilter, Format};
use tower::ServiceExt as _;

/// The state of `service` from the built-in topology, its dependencies at `urls`.
pub fn state(service: &str, urls: &[(&str, &str)]) -> AppState {
    let topology = Topology::built_in();
    let urls: HashMap<String, String> = urls
        .iter()
        .map(|(name, url)| ((*name).to_owned(), (*url).to_owned()))
        .collect();
    AppState::new(
        topology.service(service).expect("service"),
        &urls,
        Duration::from_millis(500),
        ExemplarFilter::TraceBased,
    )
    .expect("state")
}

/// The state's metrics in the Prometheus text format.
pub fn text_metrics(state: &AppState) -> String {
    state.metrics().render(Format::Prometheus).expect("render")
}

/// The samples of `name` whose labels include all of `labels`, in the Prometheus text
/// format (whatever the order of the labels): their values.
pub fn samples(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .filter(|rest| {
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|rest| rest.rsplit_once(' ')?.1.parse::<f64>().ok())
        .collect()
}

/// Sum of the samples of `name` whose labels include all of `labels`.
pub fn sample_sum(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(metrics, name, labels).iter().sum()
}

/// The value of the one series of `name` with these labels, failing when there is none
/// (a series at 0 exists; a missing one does not).
pub fn series(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    match samples(metrics, name, labels)[..] {
        [value] => value,
        ref found => panic!("{name}{labels:?}: {} series in\n{metrics}", found.len()),
    }
}

/// The exemplars (`trace_id`, `span_id`) on the samples of `name` with these labels, in
/// the OpenMetrics format: `name{labels} value # {trace_id="…",span_id="…"} value time`.
pub fn exemplars(openmetrics: &str, name: &str, labels: &[(&str, &str)]) -> Vec<(String, String)> {
    openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|rest| rest.split_once(" # {"))
        .filter(|(series, _)| {
            labels
                .iter()
                .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, exemplar)| {
            let label = |key: &str| {
                let start = exemplar.find(&format!("{key}=\"")).expect(key) + key.len() + 2;
                let end = start + exemplar[start..].find('"').expect("closing quote");
                exemplar[start..end].to_owned()
            };
            (label("trace_id"), label("span_id"))
        })
        .collect()
}

/// A test cannot run here without `what`: outside CI it says `SKIPPED:` with the reason
/// and how to get it, and the caller returns; under `CI` (where `.ci/run` installs
/// everything) it fails.
pub fn skip(what: &str, how: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide {what} (see .ci/run): {how}"
    );
    // Straight to the process's stderr: libtest captures `eprintln!` of a passing test,
    // and a skip must reach the person running `cargo test`.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: needs {what}, which this machine lacks ({how})"
    );
}

/// `program` on PATH; `None`, after [`skip`], when it is missing.
pub fn require(program: &str, how: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        skip(program, how);
    }
    found
}

/// Sends one request; the body as JSON, or as a JSON string when it is not JSON.
pub async fn send(
    router: &Router,
    method: &str,
    uri: &str,
    body: impl Into<Body>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(body.into())
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let json = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, json)
}
