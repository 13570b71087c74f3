use std::{collections::HashMap, time::Duration};

use anyhow::Context as _;
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from 5 ms to 10 s: fine at the bottom for the fast mesh calls,
/// and wide enough that `/api/slow` (0.5 to 2 s) lands inside, not in `+Inf`.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0,
];

/// One service's Prometheus registry. Every series it exposes carries the
/// `service_name` label (a registry-wide constant label), so the metric families
/// below only declare the labels that vary per request.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
    pub downstream: DownstreamMetrics,
}

/// `http_requests_total{method,endpoint,status}` and
/// `http_request_duration_seconds{method,endpoint}`, recorded by [`crate::observe_http`].
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

/// `downstream_requests_total{service,status}` and
/// `downstream_request_duration_seconds{service}`, recorded by [`crate::DownstreamClient`].
/// `service` is the target; the caller is the registry's `service_name`.
#[derive(Clone)]
pub struct DownstreamMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl Metrics {
    pub fn new(service_name: &str) -> anyhow::Result<Self> {
        let labels = HashMap::from([("service_name".to_owned(), service_name.to_owned())]);
        let registry =
            Registry::new_custom(None, Some(labels)).context("creating the Prometheus registry")?;

        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .context("registering process metrics")?;

        let http = HttpMetrics {
            requests: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "http_requests_total",
                        "HTTP requests served, by route and status.",
                    ),
                    &["method", "endpoint", "status"],
                ),
            )?,
            duration: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "http_request_duration_seconds",
                        "Time to serve an HTTP request, by route.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["method", "endpoint"],
                ),
            )?,
        };
        let downstream = DownstreamMetrics {
            requests: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "downstream_requests_total",
                        "Calls to other services, by target service and status code (or `error`).",
                    ),
                    &["service", "status"],
                ),
            )?,
            duration: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "downstream_request_duration_seconds",
                        "Client-side time of calls to other services, by target service.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["service"],
                ),
            )?,
        };
        Ok(Self {
            registry,
            http,
            downstream,
        })
    }

    /// The registry, for a service's own metric families (e.g. business events).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// All metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec only fails for malformed metric families, which
        // `register` has already rejected.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl HttpMetrics {
    pub(crate) fn observe(&self, method: &str, endpoint: &str, status: &str, elapsed: Duration) {
        self.requests
            .with_label_values(&[method, endpoint, status])
            .inc();
        self.duration
            .with_label_values(&[method, endpoint])
            .observe(elapsed.as_secs_f64());
    }
}

impl DownstreamMetrics {
    /// Creates the series of a dependency at zero, before any call: a dashboard's
    /// `rate(downstream_requests_total{status="error"}[1m])` then shows 0, not "No data",
    /// and alerts on it can tell "no errors" from "no metrics" (Prometheus's advice:
    /// initialise the label values you know of).
    pub fn declare(&self, target: &str) {
        self.requests.with_label_values(&[target, "error"]);
        self.duration.with_label_values(&[target]);
    }

    pub(crate) fn observe(&self, target: &str, status: &str, elapsed: Duration) {
        self.requests.with_label_values(&[target, status]).inc();
        self.duration
            .with_label_values(&[target])
            .observe(elapsed.as_secs_f64());
    }
}

/// Registers a freshly built collector and hands it back, so a family is declared in one
/// expression.
pub(crate) fn register<C>(
    registry: &Registry,
    collector: prometheus::Result<C>,
) -> anyhow::Result<C>
where
    C: prometheus::core::Collector + Clone + 'static,
{
    let collector = collector.context("declaring a metric family")?;
    registry
        .register(Box::new(collector.clone()))
        .context("registering a metric family")?;
    Ok(collector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_carries_the_service_name() {
        let metrics = Metrics::new("user-service").expect("metrics");
        metrics
            .http
            .observe("GET", "/api/data", "200", Duration::from_millis(3));
        metrics
            .downstream
            .observe("inventory-service", "error", Duration::from_millis(1));
        let text = metrics.render();
        assert!(text.contains(
            r#"http_requests_total{endpoint="/api/data",method="GET",status="200",service_name="user-service"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"downstream_requests_total{service="inventory-service",status="error",service_name="user-service"} 1"#
        ), "{text}");
        assert!(text.contains(r#"http_request_duration_seconds_bucket{endpoint="/api/data",method="GET",service_name="user-service",le="0.005"} 1"#), "{text}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_are_exposed() {
        let text = Metrics::new("user-service").expect("metrics").render();
        for name in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
        ] {
            assert!(
                text.contains(&format!("{name}{{service_name=\"user-service\"}}")),
                "{name} missing"
            );
        }
    }
}
