//! The Prometheus registry and the HTTP and downstream metric families, with their
//! bounded labels and trace exemplars.

use std::{
    borrow::Cow,
    fmt,
    hash::{Hash, Hasher},
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::extract::{MatchedPath, Request};
use opentelemetry::trace::SpanContext;
use prometheus_client::{
    encoding::{EncodeLabelSet, LabelSetEncoder},
    metrics::{counter::Counter, exemplar::HistogramWithExemplars, family::Family},
    registry::Registry,
};

use crate::{
    exemplars::{ExemplarFilter, TraceExemplar},
    labels::write_label,
};

/// Latency buckets from 5 ms to 10 s: fine at the bottom for the fast mesh calls,
/// and wide enough that `/api/slow` (0.5 to 2 s) lands inside, not in `+Inf`.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0,
];

type LatencyHistogram = HistogramWithExemplars<TraceExemplar>;
type LatencyFamily<Labels> = Family<Labels, LatencyHistogram, fn() -> LatencyHistogram>;

fn latency_family<Labels: Clone + std::hash::Hash + Eq>() -> LatencyFamily<Labels> {
    Family::new_with_constructor(|| HistogramWithExemplars::new(LATENCY_BUCKETS.into_iter()))
}

/// One service's Prometheus registry. Every series it exposes carries the
/// `service_name` label (a registry-wide constant label), so the metric families
/// below only declare the labels that vary per request.
///
/// Families are registered without the `_total` of their counters: the encoder appends
/// it (and prometheus-client panics in debug builds on a counter named `..._total`).
#[derive(Clone)]
pub struct Metrics {
    pub(crate) registry: Arc<Registry>,
    pub http: HttpMetrics,
    pub downstream: DownstreamMetrics,
}

/// `http_requests_total{method,endpoint,status}` and
/// `http_request_duration_seconds{method,endpoint}`, recorded by [`crate::observe_http`].
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: LatencyFamily<RouteLabels>,
    exemplars: ExemplarFilter,
}

/// `downstream_requests_total{service,status}` and
/// `downstream_request_duration_seconds{service}`, recorded by [`crate::DownstreamClient`].
/// `service` is the target; the caller is the registry's `service_name`.
#[derive(Clone)]
pub struct DownstreamMetrics {
    requests: Family<CallLabels, Counter>,
    duration: LatencyFamily<TargetLabels>,
    exemplars: ExemplarFilter,
}

/// The outcome of a call to a dependency, as its `status` label: the status code it
/// answered, or `error` when it did not answer.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum CallStatus {
    Answered(u16),
    Failed,
}

impl Metrics {
    /// The registry of `service_name`, with process metrics (on Linux), the HTTP and
    /// downstream families, and whatever `register_own` adds (a service's own families
    /// and collectors). `exemplars` says which latency observations carry trace ids.
    pub fn new(
        service_name: &str,
        exemplars: ExemplarFilter,
        register_own: impl FnOnce(&mut Registry),
    ) -> Self {
        let mut registry = Registry::with_labels(std::iter::once((
            Cow::Borrowed("service_name"),
            Cow::Owned(service_name.to_owned()),
        )));

        #[cfg(target_os = "linux")]
        registry.register_collector(Box::new(crate::process::ProcessMetrics::new()));

        let http = HttpMetrics {
            requests: Family::default(),
            duration: latency_family(),
            exemplars,
        };
        registry.register(
            "http_requests",
            "HTTP requests served, by route and status",
            http.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to serve an HTTP request, by route",
            http.duration.clone(),
        );

        let downstream = DownstreamMetrics {
            requests: Family::default(),
            duration: latency_family(),
            exemplars,
        };
        registry.register(
            "downstream_requests",
            "Calls to other services, by target service and status code (or `error`)",
            downstream.requests.clone(),
        );
        registry.register(
            "downstream_request_duration_seconds",
            "Client-side time of calls to other services, by target service",
            downstream.duration.clone(),
        );

        register_own(&mut registry);
        Self {
            registry: Arc::new(registry),
            http,
            downstream,
        }
    }
}

impl HttpMetrics {
    /// Counts and times one request; `span` is its server span, if it was traced.
    pub(crate) fn observe(
        &self,
        method: &'static str,
        endpoint: Endpoint,
        status: u16,
        elapsed: Duration,
        span: Option<&SpanContext>,
    ) {
        let route = RouteLabels { method, endpoint };
        observe_latency(&self.duration, &route, self.exemplars, span, elapsed);
        let RouteLabels { method, endpoint } = route;
        self.requests
            .get_or_create(&RequestLabels {
                method,
                endpoint,
                status,
            })
            .inc();
    }
}

impl DownstreamMetrics {
    /// Creates the series of a dependency at zero, before any call: a dashboard's
    /// `rate(downstream_requests_total{status="error"}[1m])` then shows 0, not "No data",
    /// and alerts on it can tell "no errors" from "no metrics" (Prometheus's advice:
    /// initialise the label values you know of).
    pub fn declare(&self, target: &str) {
        let service: Arc<str> = target.into();
        self.requests.get_or_create_owned(&CallLabels {
            service: Arc::clone(&service),
            status: CallStatus::Failed,
        });
        self.duration.get_or_create_owned(&TargetLabels { service });
    }

    /// Counts and times one call; `span` is its client span.
    pub(crate) fn observe(
        &self,
        target: &str,
        status: CallStatus,
        elapsed: Duration,
        span: &SpanContext,
    ) {
        // The families key by owned label values: one small allocation per call, shared
        // by both keys.
        let service: Arc<str> = target.into();
        self.requests
            .get_or_create(&CallLabels {
                service: Arc::clone(&service),
                status,
            })
            .inc();
        observe_latency(
            &self.duration,
            &TargetLabels { service },
            self.exemplars,
            Some(span),
            elapsed,
        );
    }
}

/// One observation, with the span's ids as its exemplar when the filter keeps one. The
/// exemplar's timestamp is the observation's: Grafana then draws it where the request
/// ended, not at the next scrape.
fn observe_latency<Labels: Clone + std::hash::Hash + Eq>(
    family: &LatencyFamily<Labels>,
    labels: &Labels,
    filter: ExemplarFilter,
    span: Option<&SpanContext>,
    elapsed: Duration,
) {
    let exemplar = span.and_then(|span| filter.exemplar(span));
    let timestamp = exemplar.is_some().then(SystemTime::now);
    family
        .get_or_create(labels)
        .observe(elapsed.as_secs_f64(), exemplar, timestamp);
}

/// `{method,endpoint,status}`; the method is one of a fixed set, so it is borrowed for
/// ever, and the route template is shared with the request (no copy per request).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct RequestLabels {
    method: &'static str,
    endpoint: Endpoint,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct RouteLabels {
    method: &'static str,
    endpoint: Endpoint,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct CallLabels {
    service: Arc<str>,
    status: CallStatus,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct TargetLabels {
    service: Arc<str>,
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        write_label(encoder, "method", self.method)?;
        write_label(encoder, "endpoint", self.endpoint.as_str())?;
        write_label(encoder, "status", self.status)
    }
}

impl EncodeLabelSet for RouteLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        write_label(encoder, "method", self.method)?;
        write_label(encoder, "endpoint", self.endpoint.as_str())
    }
}

impl EncodeLabelSet for CallLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        write_label(encoder, "service", &self.service)?;
        write_label(encoder, "status", self.status)
    }
}

impl EncodeLabelSet for TargetLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        write_label(encoder, "service", &self.service)
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Answered(code) => write!(f, "{code}"),
            Self::Failed => f.write_str("error"),
        }
    }
}

/// The `endpoint` label (and span route) of requests that matched no route. One shared
/// value, so that scanning random URLs cannot create new series.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The `endpoint` label: the matched route template, shared with the request (an `Arc`
/// inside [`MatchedPath`]) rather than copied for every request.
#[derive(Clone, Debug)]
pub(crate) enum Endpoint {
    Route(MatchedPath),
    Unmatched,
}

impl Endpoint {
    pub(crate) fn of(request: &Request) -> Self {
        request
            .extensions()
            .get::<MatchedPath>()
            .cloned()
            .map_or(Self::Unmatched, Self::Route)
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Route(route) => route.as_str(),
            Self::Unmatched => UNMATCHED_ROUTE,
        }
    }
}

impl PartialEq for Endpoint {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Endpoint {}

impl Hash for Endpoint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Format,
        test_support::{samples, value},
    };

    /// Each family is declared with its `# TYPE` line, under exactly that name.
    fn assert_types(text: &str, families: &[(&str, &str)]) {
        for (name, kind) in families {
            assert!(
                text.contains(&format!("\n# TYPE {name} {kind}\n")),
                "{name} {kind}: {text}"
            );
        }
    }

    #[test]
    fn names_types_and_labels_are_the_dashboards_in_the_text_format() {
        let metrics = Metrics::new("user-service", ExemplarFilter::TraceBased, |_| {});
        metrics.http.observe(
            "GET",
            Endpoint::Unmatched,
            404,
            Duration::from_millis(3),
            None,
        );
        metrics.downstream.declare("inventory-service");
        metrics.downstream.observe(
            "inventory-service",
            CallStatus::Answered(200),
            Duration::from_millis(1),
            &SpanContext::empty_context(),
        );
        let text = metrics.render(Format::Prometheus).expect("render");
        assert_types(
            &text,
            &[
                ("http_requests_total", "counter"),
                ("http_request_duration_seconds", "histogram"),
                ("downstream_requests_total", "counter"),
                ("downstream_request_duration_seconds", "histogram"),
            ],
        );
        let user = ("service_name", "user-service");
        let request = [("method", "GET"), ("endpoint", "unmatched"), user];
        let labelled = |extra: (&'static str, &'static str)| {
            let mut labels = request.to_vec();
            labels.push(extra);
            labels
        };
        assert_eq!(
            value(&text, "http_requests_total", &labelled(("status", "404"))),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                "http_request_duration_seconds_bucket",
                &labelled(("le", "0.005"))
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                "http_request_duration_seconds_bucket",
                &labelled(("le", "+Inf"))
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "http_request_duration_seconds_count", &request),
            Some(1.0)
        );
        let call = [("service", "inventory-service"), user];
        // Declared at zero, and counted.
        assert_eq!(
            value(
                &text,
                "downstream_requests_total",
                &[call[0], call[1], ("status", "error")]
            ),
            Some(0.0)
        );
        assert_eq!(
            value(
                &text,
                "downstream_requests_total",
                &[call[0], call[1], ("status", "200")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "downstream_request_duration_seconds_count", &call),
            Some(1.0)
        );
        // The 14 latency buckets and +Inf, each series with its service.
        let buckets: Vec<String> = samples(&text)
            .into_iter()
            .filter(|sample| sample.name == "http_request_duration_seconds_bucket")
            .map(|sample| sample.labels["le"].clone())
            .collect();
        assert_eq!(buckets.len(), LATENCY_BUCKETS.len() + 1, "{buckets:?}");
        assert!(
            samples(&text).iter().all(|sample| sample.has(&[user])),
            "{text}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_are_exposed_under_their_usual_names() {
        let text = Metrics::new("user-service", ExemplarFilter::TraceBased, |_| {})
            .render(Format::Prometheus)
            .expect("render");
        let user = [("service_name", "user-service")];
        let families = [
            ("process_cpu_seconds_total", "counter"),
            ("process_open_fds", "gauge"),
            ("process_max_fds", "gauge"),
            ("process_virtual_memory_bytes", "gauge"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_start_time_seconds", "gauge"),
            ("process_threads", "gauge"),
        ];
        assert_types(&text, &families);
        for (name, _) in families {
            assert!(value(&text, name, &user).is_some(), "{name}: {text}");
        }
        let resident = value(&text, "process_resident_memory_bytes", &user).expect("rss");
        assert!(resident > 1_000_000.0, "{resident} bytes resident");
        let started = value(&text, "process_start_time_seconds", &user).expect("start");
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} vs {now}"
        );
    }

    #[test]
    fn openmetrics_ends_with_eof_and_a_services_own_families_are_registered() {
        let events = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let metrics = Metrics::new("svc", ExemplarFilter::TraceBased, |registry| {
            registry.register("business_events", "Business events", events.clone());
        });
        events.get_or_create(&[("event_type", "signup")]).inc();
        let open = metrics.render(Format::OpenMetrics).expect("render");
        assert!(open.ends_with("# EOF\n"), "{open}");
        assert!(
            open.contains("\n# TYPE business_events counter\n"),
            "{open}"
        );
        assert_eq!(
            value(&open, "business_events_total", &[("event_type", "signup")]),
            Some(1.0)
        );
        let plain = metrics.render(Format::Prometheus).expect("render");
        assert!(
            plain.contains("\n# TYPE business_events_total counter\n"),
            "{plain}"
        );
        assert!(!plain.contains("# EOF"), "{plain}");
    }
}
