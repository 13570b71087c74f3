//! Runtime fault injection: added latency, an error ratio with a chosen status, a
//! dependency treated as unreachable, optionally on one route only, with an expiry,
//! announced (metrics, log lines, span events) or quiet (a drill's: only its effects
//! show). Set through the admin API (`admin_app`), served on a port that no Service
//! exposes.

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
use contract::admin::{
    self, DEFAULT_ERROR_STATUS, FaultKind, FaultRejection, FaultSpec, FaultStatus, Invalid, Latency,
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::Counter, family::Family, gauge::ConstGauge},
    registry::Registry,
};
use serde_json::json;
use tokio::time::Instant;

/// A fault's latency for one request: the fixed delay, or one drawn uniformly.
fn pick(latency: Latency) -> Duration {
    Duration::from_millis(match latency {
        Latency::Fixed(ms) => ms,
        Latency::Between([low, high]) => fastrand::u64(low..=high),
    })
}

/// The `kind` label of the fault metrics: the contract's name of the kind.
fn kind_label(kind: FaultKind) -> [(&'static str, &'static str); 1] {
    [("kind", kind.about().name)]
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
            injections.get_or_create_owned(&kind_label(kind));
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

    /// Counts an injection of `kind` and says whether to write its line (an event on the
    /// request's span): neither for a quiet fault, whose request's ordinary signals are
    /// all there is to see.
    fn announce(&self, spec: &FaultSpec, kind: FaultKind) -> bool {
        if !spec.quiet {
            self.injections.get_or_create(&kind_label(kind)).inc();
        }
        !spec.quiet
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
        let Some((spec, _)) = self.current() else {
            return false;
        };
        let hit = spec.applies_to(route) && spec.unreachable.as_deref() == Some(dependency);
        if hit && self.announce(&spec, FaultKind::Unreachable) {
            tracing::warn!(
                fault.kind = FaultKind::Unreachable.about().name,
                dependency,
                "fault injected: dependency treated as unreachable"
            );
        }
        hit
    }
}

/// `fault_active{kind}`: 1 for each kind of the fault in force, 0 for the others, every
/// kind's series always present. Read from the fault itself at each scrape, so a fault
/// that expired (faults expire lazily, on their next read) already reads 0: dashboards
/// annotate faults from this series, for exactly as long as they were in force. A quiet
/// fault reads 0.
#[derive(Debug)]
struct ActiveFaults(Faults);

impl Collector for ActiveFaults {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let current = self
            .0
            .current()
            .map(|(spec, _)| spec)
            .filter(|spec| !spec.quiet);
        let help = format!(
            "1 for each kind of fault ({}) in force in this service, else 0.",
            FaultKind::list(|about| about.name.into())
        );
        let mut family =
            encoder.encode_descriptor("fault_active", &help, None, MetricType::Gauge)?;
        for kind in FaultKind::ALL {
            let in_force = current.as_ref().is_some_and(|spec| kind.in_force(spec));
            let label = kind_label(kind);
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
        let delay = pick(latency);
        if faults.announce(&spec, FaultKind::Latency) {
            tracing::warn!(
                fault.kind = FaultKind::Latency.about().name,
                delay_ms = delay.as_millis() as u64,
                "fault injected: added latency"
            );
        }
        tokio::time::sleep(delay).await;
    }
    if let Some(rate) = spec.error_rate
        && fastrand::f64() < rate
    {
        let status = StatusCode::from_u16(spec.error_status.unwrap_or(DEFAULT_ERROR_STATUS))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = status.as_u16();
        if faults.announce(&spec, FaultKind::Error) {
            tracing::warn!(
                fault.kind = FaultKind::Error.about().name,
                status = code,
                "fault injected: error answer"
            );
        }
        let body = if spec.quiet {
            json!({ "error": status.canonical_reason().unwrap_or("error"), "status": code })
        } else {
            json!({ "error": "injected fault", "status": code, "detail": "set through the admin API (cargo xtask chaos)" })
        };
        return (status, Json(body)).into_response();
    }
    next.run(request).await
}

/// The admin API: `GET /faults` (the fault in force), `PUT /faults` (replace it; 400
/// naming the field when invalid, nothing applied), `DELETE /faults` (back to normal).
pub fn admin_app(faults: Faults, service: String) -> Router {
    Router::new()
        .route(admin::FAULTS, get(show).put(replace).delete(clear))
        .with_state((faults, Arc::new(service)))
}

type AdminState = State<(Faults, Arc<String>)>;

/// The fault in force as the admin API shows it: a quiet one only as hidden.
fn describe(faults: &Faults, service: &str) -> FaultStatus {
    let current = faults.current();
    let hidden = current.as_ref().is_some_and(|(spec, _)| spec.quiet);
    let shown = current.filter(|_| !hidden);
    FaultStatus {
        service: service.to_owned(),
        seconds_left: shown
            .as_ref()
            .and_then(|(_, left)| left.map(|d| d.as_secs_f64().ceil() as u64)),
        fault: shown.map(|(spec, _)| spec),
        hidden,
    }
}

async fn show(State((faults, service)): AdminState) -> Json<FaultStatus> {
    Json(describe(&faults, &service))
}

async fn replace(State((faults, service)): AdminState, body: Bytes) -> Response {
    let spec: FaultSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(error) => {
            let rejection = FaultRejection::unreadable(error.to_string());
            return (StatusCode::BAD_REQUEST, Json(rejection)).into_response();
        }
    };
    match faults.set(spec) {
        Ok(()) => {
            let status = describe(&faults, &service);
            // A quiet fault's line would name it in the log a drill's learner reads.
            if !status.hidden {
                let fault = serde_json::to_string(&status.fault).unwrap_or_default();
                tracing::info!(fault, "fault set");
            }
            Json(status).into_response()
        }
        Err(invalid) => {
            (StatusCode::BAD_REQUEST, Json(FaultRejection::from(invalid))).into_response()
        }
    }
}

async fn clear(State((faults, service)): AdminState) -> Json<FaultStatus> {
    faults.clear();
    tracing::info!("fault cleared");
    Json(describe(&faults, &service))
}
