//! The global subscriber: JSON logs keyed by trace id, the OpenTelemetry layer, and
//! where spans go (OTLP, nowhere, or tracing off), chosen by the SDK's variables.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use opentelemetry::{KeyValue, global, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::{Dispatch, level_filters::LevelFilter};
use tracing_subscriber::{EnvFilter, Layer as _, filter::Targets, layer::SubscriberExt as _};

use crate::{
    TelemetryError,
    json_log::{JsonLogFormat, NoSpanFields},
};

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
/// - OpenTelemetry spans, as [`TracingMode::from_env`] reads the SDK's variables:
///   batched and exported over OTLP/gRPC to `OTEL_EXPORTER_OTLP_ENDPOINT` (default
///   `http://localhost:4317`), with `service.name` = `service_name` (the default,
///   `OTEL_TRACES_EXPORTER=otlp`); made but sent nowhere (`OTEL_TRACES_EXPORTER=none`:
///   the trace ids, `traceparent`, `x-trace-id`, the logs' `trace_id` and the exemplars
///   all stay); or not made at all (`OTEL_SDK_DISABLED=true`: none of those). The other
///   standard variables (`OTEL_BSP_*`, `OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES`,
///   `OTEL_EXPORTER_OTLP_TIMEOUT`, ...) are honoured by the SDK;
/// - the W3C trace-context propagator, with which [`crate::observe_http`] continues a
///   caller's trace ([`crate::DownstreamClient`] writes the same `traceparent` and
///   `tracestate` headers itself, without formatting them through the propagator).
///
/// Export happens on a background thread with a bounded queue: an unreachable collector
/// drops spans, it never slows a request. Call from inside a multi-thread Tokio runtime
/// (the exporter's gRPC channel runs on it). Fails on an `OTEL_TRACES_EXPORTER` other
/// than `otlp` or `none`.
pub fn init(service_name: &str) -> Result<TelemetryGuard, TelemetryError> {
    global::set_text_map_propagator(TraceContextPropagator::new());

    let provider = match TracingMode::from_env()? {
        TracingMode::Disabled => None,
        TracingMode::IdsOnly => Some(tracer_provider(service_name, None)),
        TracingMode::Otlp => Some(tracer_provider(service_name, Some(otlp_exporter()?))),
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
        .map_err(TelemetryError::SubscriberInstalled)?;

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

fn otlp_exporter() -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(TelemetryError::Exporter)
}

/// The SDK's provider, exporting to `exporter` in batches, or with no span processor at
/// all: its tracer still makes the ids and samples (`OTEL_TRACES_SAMPLER`; by default
/// every new trace, and what the caller sampled), so spans are recorded as sampled and
/// their ids reach the headers, the logs and the exemplars; they are dropped as they end.
fn tracer_provider(
    service_name: &str,
    exporter: Option<opentelemetry_otlp::SpanExporter>,
) -> SdkTracerProvider {
    let mut resource = Resource::builder().with_service_name(service_name.to_owned());
    // In Kubernetes HOSTNAME is the pod name: it tells the replicas apart in Jaeger.
    if let Ok(instance) = std::env::var("HOSTNAME") {
        resource = resource.with_attribute(KeyValue::new("service.instance.id", instance));
    }
    let mut builder = SdkTracerProvider::builder().with_resource(resource.build());
    if let Some(exporter) = exporter {
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    global::set_tracer_provider(provider.clone());
    provider
}

/// The SDK's switch that turns it off whole (the OpenTelemetry convention).
pub const SDK_DISABLED_VARIABLE: &str = "OTEL_SDK_DISABLED";
/// Where the OTLP exporter sends spans (the SDK's variable; `cargo xtask local
/// --otlp-endpoint` sets it).
pub const OTLP_ENDPOINT_VARIABLE: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The SDK's choice of span exporter: `otlp` (the default) or `none`.
pub const TRACES_EXPORTER_VARIABLE: &str = "OTEL_TRACES_EXPORTER";

/// What becomes of spans, from the OpenTelemetry SDK's environment variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TracingMode {
    /// `OTEL_SDK_DISABLED=true`: no spans, so no trace id anywhere (no `x-trace-id`, no
    /// `trace_id` in the logs, no `traceparent` sent on, no exemplars). It wins over
    /// `OTEL_TRACES_EXPORTER`.
    Disabled,
    /// `OTEL_TRACES_EXPORTER=none`: spans are made, sampled and propagated, and their ids
    /// go everywhere a trace id goes, but no span is sent anywhere.
    IdsOnly,
    /// `OTEL_TRACES_EXPORTER=otlp`, or unset (the default): spans exported over OTLP/gRPC.
    Otlp,
}

impl TracingMode {
    /// From the process's environment.
    pub fn from_env() -> Result<TracingMode, TelemetryError> {
        TracingMode::from_lookup(|name| std::env::var(name).ok())
    }

    /// From `env`, which answers a variable's value. Case and surrounding blanks do not
    /// matter, and an empty value is the default, as the SDK reads its variables.
    pub fn from_lookup(
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<TracingMode, TelemetryError> {
        let normal = |name| env(name).map(|value| value.trim().to_ascii_lowercase());
        if normal(SDK_DISABLED_VARIABLE).as_deref() == Some("true") {
            return Ok(TracingMode::Disabled);
        }
        match normal(TRACES_EXPORTER_VARIABLE).as_deref() {
            None | Some("" | "otlp") => Ok(TracingMode::Otlp),
            Some("none") => Ok(TracingMode::IdsOnly),
            Some(_) => Err(TelemetryError::UnsupportedTracesExporter(
                env(TRACES_EXPORTER_VARIABLE).unwrap_or_default(),
            )),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(vars: &[(&str, &str)]) -> Result<TracingMode, TelemetryError> {
        TracingMode::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn the_sdks_variables_choose_otlp_ids_only_or_off() {
        for (vars, expected) in [
            (&[][..], TracingMode::Otlp),
            (&[(TRACES_EXPORTER_VARIABLE, " OTLP ")], TracingMode::Otlp),
            (&[(TRACES_EXPORTER_VARIABLE, "")], TracingMode::Otlp),
            (&[(SDK_DISABLED_VARIABLE, "false")], TracingMode::Otlp),
            (&[(TRACES_EXPORTER_VARIABLE, "none")], TracingMode::IdsOnly),
            // Off wins over any exporter, even one that is not supported.
            (
                &[
                    (SDK_DISABLED_VARIABLE, "TRUE"),
                    (TRACES_EXPORTER_VARIABLE, "zipkin"),
                ],
                TracingMode::Disabled,
            ),
        ] {
            assert_eq!(mode(vars).expect("valid"), expected, "{vars:?}");
        }
    }

    #[test]
    fn an_unsupported_exporter_names_the_variable_and_the_choices() {
        let error = mode(&[(TRACES_EXPORTER_VARIABLE, "console")])
            .expect_err("console is not supported")
            .to_string();
        for part in [
            "OTEL_TRACES_EXPORTER=console",
            "otlp",
            "none",
            "OTEL_SDK_DISABLED",
        ] {
            assert!(error.contains(part), "{part}: {error}");
        }
    }
}
