//! `TelemetryError`: what can go wrong while setting telemetry up, each case saying which
//! variable or step it was and what to do (the library's only error type; no `anyhow`).

use crate::{
    exemplars::{EXEMPLAR_FILTER_VARIABLE, UnknownExemplarFilter},
    tracing_init::{OTLP_ENDPOINT_VARIABLE, SDK_DISABLED_VARIABLE, TRACES_EXPORTER_VARIABLE},
};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `OTEL_TRACES_EXPORTER` names an exporter other than `otlp` or `none`.
    #[error(
        "{TRACES_EXPORTER_VARIABLE}={0} is not supported: use otlp (the default: spans over \
         OTLP/gRPC) or none (trace ids and propagation, no export); \
         {SDK_DISABLED_VARIABLE}=true turns tracing off"
    )]
    UnsupportedTracesExporter(String),
    /// `OTEL_METRICS_EXEMPLAR_FILTER` names no filter.
    #[error("{EXEMPLAR_FILTER_VARIABLE}={value}: {filter}")]
    ExemplarFilter {
        value: String,
        filter: UnknownExemplarFilter,
    },
    /// The OTLP exporter could not be built from its variables.
    #[error("building the OTLP span exporter (check {OTLP_ENDPOINT_VARIABLE}): {0}")]
    Exporter(opentelemetry_otlp::ExporterBuildError),
    /// `init` ran twice, or another subscriber was installed first.
    #[error("a global tracing subscriber is already installed: {0}")]
    SubscriberInstalled(tracing::dispatcher::SetGlobalDefaultError),
}
