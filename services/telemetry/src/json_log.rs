//! The JSON log line format: one object per event, with the current span's `trace_id`
//! and `span_id`, so a log line leads to its trace and back.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, OnceLock},
};

use opentelemetry::trace::TraceContextExt as _;
use serde_json::Value;
use tracing::{
    Event, Subscriber,
    dispatcher::WeakDispatch,
    field::{Field, Visit},
};
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::Writer,
        time::{FormatTime as _, SystemTime},
    },
    registry::LookupSpan,
};

use crate::ids::{span_id_hex, trace_id_hex};

/// Formats each event as one JSON object per line, with `trace_id` and `span_id` of the
/// current span so that a log line leads to its trace (and back):
///
/// ```json
/// {"timestamp":"2026-11-26T22:40:01.123Z","level":"WARN","target":"telemetry::downstream",
///  "message":"downstream call failed","dependency":"inventory-service",
///  "span":"HTTP client request","trace_id":"4bf92f…","span_id":"00f067…"}
/// ```
///
/// The ids live in the OpenTelemetry layer's per-span data, which is reached through the
/// subscriber itself: `dispatch` is filled in once the subscriber is built.
pub(crate) struct JsonLogFormat {
    pub(crate) dispatch: Arc<OnceLock<WeakDispatch>>,
}

impl<S, N> FormatEvent<S, N> for JsonLogFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut timestamp = String::with_capacity(32);
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;

        // Keyed by the field names themselves (all `'static`), not by a copy of each, and
        // sorted as a JSON object's keys always were here.
        let mut line = BTreeMap::new();
        line.insert("timestamp", timestamp.into());
        line.insert("level", metadata.level().as_str().into());
        line.insert("target", metadata.target().into());
        event.record(&mut JsonFields(&mut line));

        if let Some(span) = ctx.parent_span() {
            line.insert("span", span.name().into());
            let dispatch = self.dispatch.get().and_then(WeakDispatch::upgrade);
            let otel =
                dispatch.and_then(|d| tracing_opentelemetry::get_otel_context(&span.id(), &d));
            if let Some(otel) = otel {
                let span = otel.span();
                let span_context = span.span_context();
                if span_context.is_valid() {
                    let trace_id = trace_id_hex(span_context.trace_id());
                    let span_id = span_id_hex(span_context.span_id());
                    line.insert("trace_id", trace_id.as_str().into());
                    line.insert("span_id", span_id.as_str().into());
                }
            }
        }
        let json = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{json}")
    }
}

/// The log layer's span-field formatter: writes nothing. A log line names its span and
/// carries the trace and span ids, not the span's fields, so formatting every span's
/// fields into a string on every request (what the fmt layer does by default) was pure
/// cost: a measurable share of each request's CPU (docs/benchmarks.md).
pub(crate) struct NoSpanFields;

impl<'writer> FormatFields<'writer> for NoSpanFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _writer: Writer<'writer>,
        _fields: R,
    ) -> fmt::Result {
        Ok(())
    }
}

/// Collects an event's fields (including `message`) as JSON values.
struct JsonFields<'a>(&'a mut BTreeMap<&'static str, Value>);

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}").into());
    }
}
