//! Helpers shared by the in-process tests: a service's state, and one request through a
//! router with `oneshot`.

use std::{collections::HashMap, time::Duration};

use axum::{
    Router,
    body::{Body, to_bytes},
    http::{Request, StatusCode},
};
use mock_service::{AppState, topology::Topology};
use serde_json::Value;
use tower::ServiceExt as _;

/// The state of `service` from the guide's topology, its dependencies at `urls`.
pub fn state(service: &str, urls: &[(&str, &str)]) -> AppState {
    let topology = Topology::guide();
    let urls: HashMap<String, String> = urls
        .iter()
        .map(|(name, url)| ((*name).to_owned(), (*url).to_owned()))
        .collect();
    AppState::new(
        topology.service(service).expect("service"),
        &urls,
        Duration::from_millis(500),
    )
    .expect("state")
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
