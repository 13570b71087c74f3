//! The HTTP surface of every service: the same endpoints in each role, with the role's
//! downstream calls taken from the topology.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, Uri},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use prometheus_client::metrics::{counter::Counter, family::Family};
use serde_json::{Value, json};
use telemetry::{
    DownstreamClient, DownstreamError, DrainDeadline, ExemplarFilter, HttpObserver, Metrics,
};

use contract::{
    endpoints,
    topology::{Route, RoutePlan, Service},
};

use crate::faults::{self, Faults};

/// Where calls to a dependency marked unreachable go: nothing listens on port 1.
static UNREACHABLE: std::sync::LazyLock<Uri> =
    std::sync::LazyLock::new(|| "http://127.0.0.1:1/".parse().expect("a valid URL"));

/// Bodies above this are refused with 413 before they are read in full.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long `/api/slow` takes: uniformly between these, in milliseconds (0.5 to 2 s).
const SLOW_MS: std::ops::RangeInclusive<u64> = 500..=2000;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    name: String,
    data: RouteBehaviour,
    action: RouteBehaviour,
    downstream: DownstreamClient,
    metrics: Metrics,
    faults: Faults,
    ready: AtomicBool,
    drain_deadline: DrainDeadline,
}

/// What a route does, from the topology, with every URL worked out once at start-up.
struct RouteBehaviour {
    work_ms: Option<std::ops::RangeInclusive<u64>>,
    event: Option<BusinessEvent>,
    calls: Vec<PlannedCall>,
}

/// A route's business event and its two series of `business_events_total`, looked up
/// once here rather than on every request.
struct BusinessEvent {
    name: String,
    success: Counter,
    failure: Counter,
}

type BusinessEvents = Family<[(&'static str, String); 2], Counter>;

struct PlannedCall {
    to: String,
    route: Route,
    probability: f64,
    /// Parsed once here, not on every call.
    url: Uri,
}

impl RouteBehaviour {
    /// `route` of `service` as the topology plans it, its calls at `dependency_urls`.
    fn new(
        service: &Service,
        route: Route,
        dependency_urls: &HashMap<String, String>,
        business_events: &BusinessEvents,
    ) -> Result<RouteBehaviour, StartError> {
        let RoutePlan {
            work_ms,
            event,
            calls,
        } = service.plan(route).clone();
        // Both outcomes' series exist (at zero) from the start.
        let event = event.map(|name| {
            let series = |status: &str| {
                business_events.get_or_create_owned(&[
                    ("event_type", name.clone()),
                    ("status", status.to_owned()),
                ])
            };
            BusinessEvent {
                success: series("success"),
                failure: series("failure"),
                name,
            }
        });
        let calls = calls
            .iter()
            .map(|call| PlannedCall::new(service, call, dependency_urls))
            .collect::<Result<_, _>>()?;
        Ok(RouteBehaviour {
            work_ms,
            event,
            calls,
        })
    }
}

impl PlannedCall {
    fn new(
        service: &Service,
        call: &contract::topology::Call,
        dependency_urls: &HashMap<String, String>,
    ) -> Result<PlannedCall, StartError> {
        let base = dependency_urls
            .get(&call.to)
            .ok_or_else(|| StartError::NoUrl {
                to: call.to.clone(),
                service: service.name.clone(),
            })?;
        let url = format!("{base}{}", call.route.path());
        Ok(PlannedCall {
            to: call.to.clone(),
            route: call.route,
            probability: call.probability,
            url: url.parse().map_err(|reason| StartError::BadUrl {
                to: call.to.clone(),
                url: base.clone(),
                reason,
            })?,
        })
    }
}

/// Why a service cannot start: its topology cannot be played as given.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no URL for {to}, which {service} calls")]
    NoUrl { to: String, service: String },
    #[error("the URL of {to}, {url}, is not valid: {reason}")]
    BadUrl {
        to: String,
        url: String,
        reason: axum::http::uri::InvalidUri,
    },
}

impl AppState {
    /// `dependency_urls` maps each service that `service` calls to its base URL;
    /// `exemplars` says which latency observations carry trace ids.
    pub fn new(
        service: &Service,
        dependency_urls: &HashMap<String, String>,
        downstream_timeout: Duration,
        exemplars: ExemplarFilter,
    ) -> Result<AppState, StartError> {
        let dependencies = service
            .dependencies()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let faults = Faults::new(dependencies);
        let business_events = BusinessEvents::default();
        let metrics = Metrics::new(&service.name, exemplars, |registry| {
            registry.register(
                "business_events",
                "Business events, by type and outcome",
                business_events.clone(),
            );
            faults.register_metrics(registry);
        });
        let downstream = DownstreamClient::new(metrics.downstream.clone(), downstream_timeout);
        for dependency in service.dependencies() {
            metrics.downstream.declare(dependency);
        }
        let behaviour =
            |route| RouteBehaviour::new(service, route, dependency_urls, &business_events);
        Ok(AppState(Arc::new(Inner {
            name: service.name.clone(),
            data: behaviour(Route::Data)?,
            action: behaviour(Route::Action)?,
            downstream,
            metrics,
            faults,
            ready: AtomicBool::new(true),
            drain_deadline: DrainDeadline::new(),
        })))
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn faults(&self) -> &Faults {
        &self.0.faults
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// `/ready` answers 503 once this is false (set when shutdown starts), so that
    /// Kubernetes stops sending new requests while in-flight ones finish.
    pub fn set_ready(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::Relaxed);
    }

    /// Reached when the shutdown's drain time is over: the traced requests still running
    /// then answer 503 and end their spans as errors (see [`crate::server::serve`]).
    pub fn drain_deadline(&self) -> &DrainDeadline {
        &self.0.drain_deadline
    }
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route(endpoints::HEALTH, get(health))
        .route(endpoints::READY, get(ready))
        .route(endpoints::METRICS, get(metrics))
        .route(endpoints::DATA, get(data))
        .route(endpoints::ACTION, post(action))
        .route(endpoints::SLOW, get(slow))
        .route(endpoints::ERROR, get(error))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Inside the server span and the HTTP metrics, so injected faults show in both.
        .layer(middleware::from_fn_with_state(
            state.0.faults.clone(),
            faults::inject,
        ))
        // Probes and scrapes are counted, never traced: they would bury the traces of
        // the application's routes.
        .layer(middleware::from_fn_with_state(
            HttpObserver::new(state.0.metrics.http.clone())
                .without_spans_for(&endpoints::OPERATIONAL)
                .cancelled_at(state.0.drain_deadline.clone()),
            telemetry::observe_http,
        ))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "status": "healthy", "service": state.0.name }))
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.0.ready.load(Ordering::Relaxed) {
        Json(json!({ "status": "ready", "service": state.0.name })).into_response()
    } else {
        let body = json!({ "status": "shutting down", "service": state.0.name });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// OpenMetrics with exemplars for Prometheus, the text format for a plain `curl`.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    state.0.metrics.scrape_response(&headers)
}

async fn data(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    let inner = &state.0;
    let called = perform(inner, Route::Data).await?;
    count_event(&inner.data, true);
    Ok(Json(json!({
        "service": inner.name,
        "data": { "id": fastrand::u32(1..100_000), "value": fastrand::f64() },
        "downstream": called,
    })))
}

/// The body is optional; when present it must be JSON (any JSON value).
async fn action(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let body = body.map_err(AppError::Body)?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_slice::<serde::de::IgnoredAny>(&body).map_err(|error| {
            AppError::BadRequest(format!("the body is not valid JSON: {error}"))
        })?;
    }
    let inner = &state.0;
    match perform(inner, Route::Action).await {
        Ok(called) => {
            count_event(&inner.action, true);
            Ok(Json(json!({
                "service": inner.name,
                "status": "processed",
                "event": inner.action.event.as_ref().map(|event| &event.name),
                "downstream": called,
            })))
        }
        Err(error) => {
            count_event(&inner.action, false);
            Err(error)
        }
    }
}

async fn slow(State(state): State<AppState>) -> Json<Value> {
    let delay_ms = fastrand::u64(SLOW_MS);
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    Json(json!({ "service": state.0.name, "delay_ms": delay_ms }))
}

async fn error(State(state): State<AppState>) -> Response {
    let body = json!({
        "error": "simulated failure",
        "service": state.0.name,
        "detail": "GET /api/error always answers 500, to demonstrate error metrics and error spans",
    });
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}

async fn not_found(uri: Uri) -> Response {
    let body = json!({ "error": "not found", "path": uri.path(), "endpoints": endpoint_list() });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn method_not_allowed(uri: Uri) -> Response {
    let body =
        json!({ "error": "method not allowed", "path": uri.path(), "endpoints": endpoint_list() });
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

/// "GET /health", "POST /api/action", ...: what a lost client can call.
fn endpoint_list() -> Vec<String> {
    endpoints::ALL
        .iter()
        .map(|(method, path)| format!("{method} {path}"))
        .collect()
}

/// Simulated work, then the route's calls in order (each with its probability). Returns
/// the services called; the first failing call fails the request.
async fn perform(inner: &Inner, route_name: Route) -> Result<Vec<&str>, AppError> {
    let route = match route_name {
        Route::Data => &inner.data,
        Route::Action => &inner.action,
    };
    if let Some(work_ms) = &route.work_ms {
        let work = fastrand::u64(work_ms.clone());
        if work > 0 {
            tokio::time::sleep(Duration::from_millis(work)).await;
        }
    }
    let mut called = Vec::with_capacity(route.calls.len());
    for call in &route.calls {
        if call.probability < 1.0 && fastrand::f64() >= call.probability {
            continue;
        }
        // An injected "unreachable" fault dials where nothing listens (port 1 on loopback),
        // so the real client meets a real refused connection: the same error, metrics and
        // span as an outage, all naming the dependency's own address.
        let dialled = if inner.faults.unreachable(&call.to, route_name.path()) {
            &UNREACHABLE
        } else {
            &call.url
        };
        inner
            .downstream
            .call_at(&call.to, call.route.method(), &call.url, dialled)
            .await
            .map_err(AppError::Dependency)?;
        called.push(call.to.as_str());
    }
    Ok(called)
}

fn count_event(route: &RouteBehaviour, succeeded: bool) {
    if let Some(event) = &route.event {
        if succeeded {
            event.success.inc();
        } else {
            event.failure.inc();
        }
    }
}

enum AppError {
    /// A dependency failed: 502 naming it.
    Dependency(DownstreamError),
    /// The request itself is wrong: 400 with the reason.
    BadRequest(String),
    /// The body could not be read (e.g. 413 over the limit).
    Body(BytesRejection),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            AppError::Dependency(error) => (
                StatusCode::BAD_GATEWAY,
                json!({ "error": "dependency failed", "dependency": error.service, "reason": error.to_string() }),
            ),
            AppError::BadRequest(reason) => (
                StatusCode::BAD_REQUEST,
                json!({ "error": "bad request", "reason": reason }),
            ),
            AppError::Body(rejection) => {
                let reason = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    format!("the body is larger than {MAX_BODY_BYTES} bytes")
                } else {
                    rejection.body_text()
                };
                (
                    rejection.status(),
                    json!({ "error": "bad request body", "reason": reason }),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}
