//! Runtime fault injection: added latency, an error ratio with a chosen status, a
//! dependency treated as unreachable, optionally on one route only, with an expiry. Set
//! through the admin API (`admin_app`), served on a port that no Service exposes.

use std::{
    fmt,
    sync::{Arc, RwLock},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{MatchedPath, Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::Counter, family::Family, gauge::ConstGauge},
    registry::Registry,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;

/// What a client asks for (`PUT /faults`). At least one of `latency_ms`, `error_rate`
/// and `unreachable` must be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Added before the request is handled: `300` or `[100, 500]` (uniform), in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Latency>,
    /// Share of requests answered with `error_status` instead, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// The status of injected errors, 400 to 599 (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_status: Option<u16>,
    /// A dependency every call to which fails as if it were down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    /// Only this route (`/api/data`, `/api/action`, `/api/slow`, `/api/error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Back to normal after this many seconds (default: until cleared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_seconds: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Latency {
    Fixed(u64),
    Between([u64; 2]),
}

impl Latency {
    fn pick(self) -> Duration {
        Duration::from_millis(match self {
            Latency::Fixed(ms) => ms,
            Latency::Between([low, high]) => fastrand::u64(low..=high),
        })
    }
}

/// A rejected fault: which field, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

/// The routes a fault can target: the application's, never the probes or the scrape.
const FAULTABLE_ROUTES: [&str; 4] = crate::endpoints::API;

impl FaultSpec {
    /// Checks every field; `dependencies` are the services this one calls.
    pub fn validate(&self, dependencies: &[String]) -> Result<(), Invalid> {
        let invalid = |field, reason: String| Err(Invalid { field, reason });
        if self.latency_ms.is_none() && self.error_rate.is_none() && self.unreachable.is_none() {
            return invalid(
                "latency_ms",
                "set at least one of latency_ms, error_rate, unreachable".into(),
            );
        }
        match self.latency_ms {
            Some(Latency::Fixed(ms)) if ms > 60_000 => {
                return invalid("latency_ms", format!("{ms} ms is over 60000"));
            }
            Some(Latency::Between([low, high])) if low > high || high > 60_000 => {
                return invalid(
                    "latency_ms",
                    format!("[{low}, {high}] must be [min, max] with max at most 60000"),
                );
            }
            _ => {}
        }
        if let Some(rate) = self.error_rate
            && !(0.0..=1.0).contains(&rate)
        {
            return invalid("error_rate", format!("{rate} is not between 0 and 1"));
        }
        if let Some(status) = self.error_status {
            if !(400..=599).contains(&status) {
                return invalid(
                    "error_status",
                    format!("{status} is not an error status (400 to 599)"),
                );
            }
            if self.error_rate.is_none() {
                return invalid("error_status", "only meaningful with error_rate".into());
            }
        }
        if let Some(dependency) = &self.unreachable
            && !dependencies.contains(dependency)
        {
            let known = if dependencies.is_empty() {
                "none: this service calls nobody".to_owned()
            } else {
                dependencies.join(", ")
            };
            return invalid(
                "unreachable",
                format!(
                    "`{dependency}` is not a dependency of this service (its dependencies: {known})"
                ),
            );
        }
        if let Some(route) = &self.route
            && !FAULTABLE_ROUTES.contains(&route.as_str())
        {
            return invalid(
                "route",
                format!("`{route}` is not one of {}", FAULTABLE_ROUTES.join(", ")),
            );
        }
        if let Some(seconds) = self.for_seconds
            && !(1..=86_400).contains(&seconds)
        {
            return invalid(
                "for_seconds",
                format!("{seconds} is not between 1 and 86400"),
            );
        }
        Ok(())
    }

    fn applies_to(&self, route: &str) -> bool {
        FAULTABLE_ROUTES.contains(&route) && self.route.as_deref().is_none_or(|only| only == route)
    }
}

/// The kinds of fault, as the `kind` label of the fault metrics names them.
#[derive(Clone, Copy, Debug)]
enum FaultKind {
    Latency,
    Error,
    Unreachable,
}

impl FaultKind {
    const ALL: [FaultKind; 3] = [FaultKind::Latency, FaultKind::Error, FaultKind::Unreachable];

    fn label(self) -> [(&'static str, &'static str); 1] {
        [(
            "kind",
            match self {
                FaultKind::Latency => "latency",
                FaultKind::Error => "error",
                FaultKind::Unreachable => "unreachable",
            },
        )]
    }

    fn in_force(self, spec: &FaultSpec) -> bool {
        match self {
            FaultKind::Latency => spec.latency_ms.is_some(),
            FaultKind::Error => spec.error_rate.is_some(),
            FaultKind::Unreachable => spec.unreachable.is_some(),
        }
    }
}

/// A fault in force, and when it ends (never, if `None`).
type ActiveFault = (FaultSpec, Option<Instant>);

/// The service's current fault, if any; shared by the admin API and the request path.
#[derive(Clone, Debug)]
pub struct Faults {
    active: Arc<RwLock<Option<ActiveFault>>>,
    /// `fault_injections_total{kind}`: each request a fault changed.
    injections: Family<[(&'static str, &'static str); 1], Counter>,
    dependencies: Arc<Vec<String>>,
}

impl Faults {
    /// `dependencies` are the services this one calls: the only ones a fault may make
    /// unreachable.
    pub fn new(dependencies: Vec<String>) -> Faults {
        let injections = Family::default();
        // Every kind at zero from the start, so that `rate()` over them is 0, not empty.
        for kind in FaultKind::ALL {
            injections.get_or_create_owned(&kind.label());
        }
        Faults {
            active: Arc::default(),
            injections,
            dependencies: Arc::new(dependencies),
        }
    }

    /// Adds `fault_injections_total{kind}` and `fault_active{kind}` to `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "fault_injections",
            "Faults injected through the admin API, by kind",
            self.injections.clone(),
        );
        registry.register_collector(Box::new(ActiveFaults(self.clone())));
    }

    fn count(&self, kind: FaultKind) {
        self.injections.get_or_create(&kind.label()).inc();
    }

    /// The fault in force, and how long it has left; an expired fault is gone.
    pub fn current(&self) -> Option<(FaultSpec, Option<Duration>)> {
        let guard = self
            .active
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (spec, expires) = guard.as_ref()?;
        let left = match expires {
            Some(at) => Some(
                at.checked_duration_since(Instant::now())
                    .filter(|d| !d.is_zero())?,
            ),
            None => None,
        };
        Some((spec.clone(), left))
    }

    /// Replaces the fault after validating it whole: an invalid one changes nothing.
    pub fn set(&self, spec: FaultSpec) -> Result<(), Invalid> {
        spec.validate(&self.dependencies)?;
        let expires = spec
            .for_seconds
            .map(|s| Instant::now() + Duration::from_secs(s));
        *self
            .active
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((spec, expires));
        Ok(())
    }

    pub fn clear(&self) {
        *self
            .active
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Whether calls to `dependency` must fail now (counted as an injection).
    pub fn unreachable(&self, dependency: &str, route: &str) -> bool {
        let hit = self.current().is_some_and(|(spec, _)| {
            spec.applies_to(route) && spec.unreachable.as_deref() == Some(dependency)
        });
        if hit {
            self.count(FaultKind::Unreachable);
            tracing::warn!(
                fault.kind = "unreachable",
                dependency,
                "fault injected: dependency treated as unreachable"
            );
        }
        hit
    }
}

/// `fault_active{kind}`: 1 for each kind of the fault in force, 0 for the others, all
/// three series always present. Read from the fault itself at each scrape, so a fault
/// that expired (faults expire lazily, on their next read) already reads 0: dashboards
/// annotate faults from this series, for exactly as long as they were in force.
#[derive(Debug)]
struct ActiveFaults(Faults);

impl Collector for ActiveFaults {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let current = self.0.current().map(|(spec, _)| spec);
        let mut family = encoder.encode_descriptor(
            "fault_active",
            "1 for each kind of fault (latency, error, unreachable) in force in this service, else 0.",
            None,
            MetricType::Gauge,
        )?;
        for kind in FaultKind::ALL {
            let in_force = current.as_ref().is_some_and(|spec| kind.in_force(spec));
            let label = kind.label();
            ConstGauge::new(i64::from(in_force)).encode(family.encode_family(&label)?)?;
        }
        Ok(())
    }
}

/// Middleware on the service's routes: the fault's latency, then maybe its error. It runs
/// inside the server span, so each injection is an event on that span (and a log line),
/// and in `fault_injections_total{kind}`. Health, readiness and metrics are never faulted.
pub async fn inject(State(faults): State<Faults>, request: Request, next: Next) -> Response {
    // The common case, no fault, costs one uncontended read lock and nothing else.
    let Some((spec, _)) = faults.current() else {
        return next.run(request).await;
    };
    let applies = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|route| spec.applies_to(route.as_str()));
    if !applies {
        return next.run(request).await;
    }
    if let Some(latency) = spec.latency_ms {
        let delay = latency.pick();
        faults.count(FaultKind::Latency);
        tracing::warn!(
            fault.kind = "latency",
            delay_ms = delay.as_millis() as u64,
            "fault injected: added latency"
        );
        tokio::time::sleep(delay).await;
    }
    if let Some(rate) = spec.error_rate
        && fastrand::f64() < rate
    {
        let status = StatusCode::from_u16(spec.error_status.unwrap_or(500))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        faults.count(FaultKind::Error);
        tracing::warn!(
            fault.kind = "error",
            status = status.as_u16(),
            "fault injected: error answer"
        );
        let body = json!({ "error": "injected fault", "status": status.as_u16(), "detail": "set through the admin API (cargo xtask chaos)" });
        return (status, Json(body)).into_response();
    }
    next.run(request).await
}

/// The admin API: `GET /faults` (the fault in force), `PUT /faults` (replace it; 400
/// naming the field when invalid, nothing applied), `DELETE /faults` (back to normal).
pub fn admin_app(faults: Faults, service: String) -> Router {
    Router::new()
        .route("/faults", get(show).put(replace).delete(clear))
        .with_state((faults, Arc::new(service)))
}

type AdminState = State<(Faults, Arc<String>)>;

fn describe(faults: &Faults, service: &str) -> serde_json::Value {
    match faults.current() {
        Some((spec, left)) => json!({
            "service": service,
            "fault": spec,
            "seconds_left": left.map(|d| d.as_secs_f64().ceil() as u64),
        }),
        None => json!({ "service": service, "fault": null }),
    }
}

async fn show(State((faults, service)): AdminState) -> Json<serde_json::Value> {
    Json(describe(&faults, &service))
}

async fn replace(State((faults, service)): AdminState, body: Bytes) -> Response {
    let spec: FaultSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(error) => {
            let body =
                json!({ "error": "invalid fault", "field": null, "reason": error.to_string() });
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    match faults.set(spec) {
        Ok(()) => {
            tracing::info!(fault = %describe(&faults, &service)["fault"], "fault set");
            Json(describe(&faults, &service)).into_response()
        }
        Err(Invalid { field, reason }) => {
            let body = json!({ "error": "invalid fault", "field": field, "reason": reason });
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
    }
}

async fn clear(State((faults, service)): AdminState) -> Json<serde_json::Value> {
    faults.clear();
    tracing::info!("fault cleared");
    Json(describe(&faults, &service))
}
