//! Exemplars: the trace and span ids that an observation of a latency histogram carries,
//! so that a point on a latency graph leads to the request behind it.

use std::{fmt, str::FromStr};

use opentelemetry::trace::{SpanContext, SpanId, TraceId};
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};

use crate::{TelemetryError, labels::write_label};

/// The OpenTelemetry SDK's variable that chooses the [`ExemplarFilter`].
pub const EXEMPLAR_FILTER_VARIABLE: &str = "OTEL_METRICS_EXEMPLAR_FILTER";

/// Which observations carry an exemplar; the OpenTelemetry SDK's names and default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExemplarFilter {
    /// `trace_based`: an observation made inside a sampled span carries its ids.
    #[default]
    TraceBased,
    /// `always_off`: no exemplars (what they cost is then measurable).
    AlwaysOff,
}

/// A value of [`EXEMPLAR_FILTER_VARIABLE`] that names no filter.
#[derive(Debug)]
pub struct UnknownExemplarFilter(String);

impl ExemplarFilter {
    /// From [`EXEMPLAR_FILTER_VARIABLE`]; unset or empty means the default, `trace_based`.
    pub fn from_env() -> Result<Self, TelemetryError> {
        match std::env::var(EXEMPLAR_FILTER_VARIABLE) {
            Ok(value) => value
                .parse()
                .map_err(|filter| TelemetryError::ExemplarFilter { value, filter }),
            Err(_) => Ok(Self::default()),
        }
    }

    /// The exemplar of an observation made in `span`, if this filter keeps one.
    pub(crate) fn exemplar(self, span: &SpanContext) -> Option<TraceExemplar> {
        let keep = match self {
            Self::TraceBased => span.is_valid() && span.is_sampled(),
            Self::AlwaysOff => false,
        };
        keep.then(|| TraceExemplar {
            trace_id: span.trace_id(),
            span_id: span.span_id(),
        })
    }
}

/// Case-insensitive, and empty means the default, as the OpenTelemetry SDK reads its
/// variables.
impl FromStr for ExemplarFilter {
    type Err = UnknownExemplarFilter;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "trace_based" => Ok(Self::TraceBased),
            "always_off" => Ok(Self::AlwaysOff),
            _ => Err(UnknownExemplarFilter(value.to_owned())),
        }
    }
}

impl fmt::Display for UnknownExemplarFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an exemplar filter: use trace_based (the default) or always_off",
            self.0
        )
    }
}

impl std::error::Error for UnknownExemplarFilter {}

/// An exemplar's labels: `{trace_id="<32 hex>",span_id="<16 hex>"}`, the names Grafana's
/// exemplar link to Jaeger reads.
#[derive(Clone, Debug)]
pub(crate) struct TraceExemplar {
    trace_id: TraceId,
    span_id: SpanId,
}

impl EncodeLabelSet for TraceExemplar {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        // `Display` writes the ids zero-padded, as W3C trace context and Jaeger spell them.
        write_label(encoder, "trace_id", self.trace_id)?;
        write_label(encoder, "span_id", self.span_id)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{TraceFlags, TraceState};

    use super::*;

    fn span(flags: TraceFlags) -> SpanContext {
        SpanContext::new(
            TraceId::from(0x0af7651916cd43dd8448eb211c80319c),
            SpanId::from(0x00f067aa0ba902b7),
            flags,
            false,
            TraceState::default(),
        )
    }

    #[test]
    fn only_sampled_spans_give_an_exemplar_and_always_off_none() {
        let sampled = span(TraceFlags::SAMPLED);
        let exemplar = ExemplarFilter::TraceBased
            .exemplar(&sampled)
            .expect("a sampled span");
        assert_eq!(exemplar.trace_id, sampled.trace_id());
        assert_eq!(exemplar.span_id, sampled.span_id());
        assert!(
            ExemplarFilter::TraceBased
                .exemplar(&span(TraceFlags::NOT_SAMPLED))
                .is_none()
        );
        assert!(
            ExemplarFilter::TraceBased
                .exemplar(&SpanContext::empty_context())
                .is_none()
        );
        assert!(ExemplarFilter::AlwaysOff.exemplar(&sampled).is_none());
    }

    #[test]
    fn the_filter_reads_the_sdk_names_and_rejects_others() {
        assert_eq!(
            "trace_based".parse::<ExemplarFilter>().ok(),
            Some(ExemplarFilter::TraceBased)
        );
        assert_eq!(
            " Always_Off ".parse::<ExemplarFilter>().ok(),
            Some(ExemplarFilter::AlwaysOff)
        );
        assert_eq!(
            "".parse::<ExemplarFilter>().ok(),
            Some(ExemplarFilter::TraceBased)
        );
        let error = "always_on"
            .parse::<ExemplarFilter>()
            .expect_err("not supported");
        let message = error.to_string();
        assert!(
            message.contains("always_on")
                && message.contains("trace_based")
                && message.contains("always_off"),
            "{message}"
        );
    }
}
