//! Trace and span ids as lowercase hex, and the W3C trace-context headers, written
//! straight into fixed buffers. The ids go into every outgoing `traceparent`, every
//! `x-trace-id` and every log line of a traced request; spelling them through `Display`
//! (`{:032x}` on a `u128`) and `format!` was a measurable share of a traced request's
//! work (docs/benchmarks.md).

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId};

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `N` lowercase hex digits.
pub(crate) struct Hex<const N: usize>([u8; N]);

impl<const N: usize> Hex<N> {
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// 32 digits, zero-padded: how W3C trace context, Jaeger and `TraceId`'s `Display`
/// spell it.
pub(crate) fn trace_id_hex(id: TraceId) -> Hex<32> {
    let mut hex = [0; 32];
    encode(&id.to_bytes(), &mut hex);
    Hex(hex)
}

/// 16 digits, zero-padded.
pub(crate) fn span_id_hex(id: SpanId) -> Hex<16> {
    let mut hex = [0; 16];
    encode(&id.to_bytes(), &mut hex);
    Hex(hex)
}

/// Sets `traceparent` and `tracestate` for `span` exactly as the SDK's
/// `TraceContextPropagator` does (version 00, only the sampled flag, `tracestate` even
/// when empty); nothing for an invalid span context.
pub(crate) fn inject_trace_context(span: &SpanContext, headers: &mut HeaderMap) {
    if !span.is_valid() {
        return;
    }
    let mut traceparent = *b"00-00000000000000000000000000000000-0000000000000000-00";
    encode(&span.trace_id().to_bytes(), &mut traceparent[3..35]);
    encode(&span.span_id().to_bytes(), &mut traceparent[36..52]);
    encode(
        &[(span.trace_flags() & TraceFlags::SAMPLED).to_u8()],
        &mut traceparent[53..],
    );
    if let Ok(value) = HeaderValue::from_bytes(&traceparent) {
        headers.insert(HeaderName::from_static("traceparent"), value);
    }
    if let Ok(value) = HeaderValue::from_str(&span.trace_state().header()) {
        headers.insert(HeaderName::from_static("tracestate"), value);
    }
}

fn encode(bytes: &[u8], hex: &mut [u8]) {
    for (digits, byte) in hex.chunks_exact_mut(2).zip(bytes) {
        digits[0] = DIGITS[usize::from(byte >> 4)];
        digits[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::{
        Context,
        propagation::TextMapPropagator as _,
        trace::{TraceContextExt as _, TraceState},
    };
    use opentelemetry_http::HeaderInjector;
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    use super::*;

    #[test]
    fn ids_are_spelled_as_their_display_spells_them() {
        for _ in 0..1000 {
            let trace = TraceId::from(fastrand::u128(..));
            let span = SpanId::from(fastrand::u64(..));
            assert_eq!(trace_id_hex(trace).as_str(), trace.to_string());
            assert_eq!(span_id_hex(span).as_str(), span.to_string());
        }
        let small = TraceId::from(0x1f);
        assert_eq!(
            trace_id_hex(small).as_str(),
            "0000000000000000000000000000001f"
        );
    }

    #[test]
    fn the_headers_are_the_sdk_propagators() {
        let states = [
            TraceState::default(),
            TraceState::from_key_value([("vendor", "value"), ("other", "1")]).expect("state"),
        ];
        for flags in [
            TraceFlags::SAMPLED,
            TraceFlags::NOT_SAMPLED,
            TraceFlags::new(0xff),
        ] {
            for state in &states {
                let span = SpanContext::new(
                    TraceId::from(fastrand::u128(1..)),
                    SpanId::from(fastrand::u64(1..)),
                    flags,
                    false,
                    state.clone(),
                );
                let mut ours = HeaderMap::new();
                inject_trace_context(&span, &mut ours);
                let mut sdk = HeaderMap::new();
                let context = Context::new().with_remote_span_context(span.clone());
                TraceContextPropagator::new()
                    .inject_context(&context, &mut HeaderInjector(&mut sdk));
                assert_eq!(ours, sdk, "{span:?}");
            }
        }
        let mut none = HeaderMap::new();
        inject_trace_context(&SpanContext::empty_context(), &mut none);
        assert!(none.is_empty());
    }
}
