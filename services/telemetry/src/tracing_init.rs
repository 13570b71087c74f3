use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use anyhow::Context as _;
use opentelemetry::{KeyValue, global, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::{Dispatch, level_filters::LevelFilter};
use tracing_subscriber::{EnvFilter, Layer as _, filter::Targets, layer::SubscriberExt as _};

use crate::json_log::{JsonLogFormat, NoSpanFields};

/// How long shutdown waits for the last spans to reach the collector. Bounded, so an
/// unreachable collector cannot hold up a pod's termination.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps the trace exporter alive. [`TelemetryGuard::shutdown`] (or dropping the guard)
/// flushes the spans still queued.
#[must_use = "dropping the guard shuts the trace exporter down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

/// Installs the global tracing subscriber for a service named `service_name`:
///
/// - JSON log lines on stdout, filtered by `RUST_LOG` (default `info`), each carrying the
///   current `trace_id` and `span_id`;
/// - unless `OTEL_SDK_DISABLED=true`, OpenTelemetry spans batched and exported over
///   OTLP/gRPC to `OTEL_EXPORTER_OTLP_ENDPOINT` (default `http://localhost:4317`), with
///   `service.name` = `service_name`. The other standard variables (`OTEL_BSP_*`,
///   `OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_TIMEOUT`, ...)
///   are honoured by the SDK;
/// - the W3C trace-context propagator, with which [`crate::observe_http`] continues a
///   caller's trace ([`crate::DownstreamClient`] writes the same `traceparent` and
///   `tracestate` headers itself, without formatting them through the propagator).
///
/// Export happens on a background thread with a bounded queue: an unreachable collector
/// drops spans, it never slows a request. Call from inside a multi-thread Tokio runtime
/// (the exporter's gRPC channel runs on it).
pub fn init(service_name: &str) -> anyhow::Result<TelemetryGuard> {
    global::set_text_map_propagator(TraceContextPropagator::new());

    let provider = if sdk_disabled() {
        None
    } else {
        Some(tracer_provider(service_name)?)
    };

    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let dispatch_slot = Arc::new(OnceLock::new());
    let log_layer = tracing_subscriber::fmt::layer()
        .fmt_fields(NoSpanFields)
        .event_format(JsonLogFormat {
            dispatch: Arc::clone(&dispatch_slot),
        })
        .with_writer(std::io::stdout)
        .with_filter(log_filter);

    let otel_layer = provider.as_ref().map(|provider| {
        // Off: attributes that say nothing here (every server span starts in the same
        // function, on some tokio worker) yet cost an allocation each, on every span,
        // in every service: source location, thread, busy/idle time, target. And the
        // OpenTelemetry context is never read from the thread (the client injects the
        // span's own context), so entering a span need not activate it. Together about
        // a third of span export's cost (docs/benchmarks.md).
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("telemetry"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_target(false)
            .with_context_activation(false)
            .with_filter(exported_spans())
    });

    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(log_layer)
            .with(otel_layer),
    );
    let _ = dispatch_slot.set(dispatch.downgrade());
    tracing::dispatcher::set_global_default(dispatch)
        .context("a global tracing subscriber is already installed")?;

    Ok(TelemetryGuard { provider })
}

impl TelemetryGuard {
    /// Flushes queued spans and stops the exporter, waiting at most a few seconds. Runs the
    /// blocking flush off the async worker threads, which the exporter needs to send.
    pub async fn shutdown(mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = tokio::task::spawn_blocking(move || flush(&provider)).await;
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            flush(&provider);
        }
    }
}

fn flush(provider: &SdkTracerProvider) {
    if let Err(error) = provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
        tracing::warn!(%error, "could not flush the last spans");
    }
}

fn tracer_provider(service_name: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .context("building the OTLP span exporter (check OTEL_EXPORTER_OTLP_ENDPOINT)")?;
    let mut resource = Resource::builder().with_service_name(service_name.to_owned());
    // In Kubernetes HOSTNAME is the pod name: it tells the replicas apart in Jaeger.
    if let Ok(instance) = std::env::var("HOSTNAME") {
        resource = resource.with_attribute(KeyValue::new("service.instance.id", instance));
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    global::set_tracer_provider(provider.clone());
    Ok(provider)
}

/// `OTEL_SDK_DISABLED=true` turns tracing export off (the OpenTelemetry convention).
fn sdk_disabled() -> bool {
    std::env::var("OTEL_SDK_DISABLED").is_ok_and(|value| value.trim().eq_ignore_ascii_case("true"))
}

/// Which spans and span events become OpenTelemetry data: the application's, at `info` and above, and
/// never the HTTP/gRPC plumbing. Without this, hyper, h2 and tonic spans are
/// exported too (several times the span count), including the exporter's own gRPC calls,
/// which then export themselves: a feedback loop.
fn exported_spans() -> Targets {
    let plumbing = [
        "h2",
        "hyper",
        "hyper_util",
        "tonic",
        "tower",
        "opentelemetry",
        "axum",
        // The access log repeats the server span's attributes: a log line, not an event.
        crate::http_server::ACCESS_LOG_TARGET,
    ];
    plumbing.into_iter().fold(
        Targets::new().with_default(LevelFilter::INFO),
        |targets, target| targets.with_target(target, LevelFilter::OFF),
    )
}
