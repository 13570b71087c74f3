//! `/metrics`: OpenMetrics (with exemplars) for a scraper that asks for it, as Prometheus
//! does, and the Prometheus text format for anyone else, e.g. a plain `curl`.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use prometheus_client::encoding::{prometheus_text, text};

use crate::Metrics;

/// An exposition format of [`Metrics::render`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4: no exemplars.
    Prometheus,
    /// OpenMetrics 1.0.0 text: exemplars, and `# EOF` at the end.
    OpenMetrics,
}

const OPENMETRICS: &str = "application/openmetrics-text";

impl Format {
    /// The format a request's `Accept` header prefers: OpenMetrics when it accepts
    /// `application/openmetrics-text` at least as much as the text format (`text/plain`,
    /// `text/*`, `*/*`); Prometheus asks for it first. Else the Prometheus text format,
    /// which is also the answer to no `Accept` at all.
    pub fn negotiate(request_headers: &HeaderMap) -> Self {
        let mut openmetrics = 0.0_f32;
        let mut other = 0.0_f32;
        let ranges = request_headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','));
        for range in ranges {
            let mut parts = range.split(';').map(str::trim);
            let media_type = parts.next().unwrap_or_default();
            let quality = parts
                .filter_map(|parameter| parameter.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .map_or(1.0, |(_, q)| q.trim().parse().unwrap_or(0.0));
            let best = if media_type.eq_ignore_ascii_case(OPENMETRICS) {
                &mut openmetrics
            } else if ["text/plain", "text/*", "*/*"]
                .iter()
                .any(|text| media_type.eq_ignore_ascii_case(text))
            {
                &mut other
            } else {
                // Protobuf, HTML, ...: nothing we answer.
                continue;
            };
            *best = best.max(quality);
        }
        if openmetrics > 0.0 && openmetrics >= other {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => prometheus_text::CONTENT_TYPE,
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

impl Metrics {
    /// Every metric, in `format`. Fails only if a collector fails to encode.
    pub fn render(&self, format: Format) -> Result<String, std::fmt::Error> {
        let mut body = String::with_capacity(16 * 1024);
        match format {
            Format::Prometheus => prometheus_text::encode(&mut body, &self.registry)?,
            Format::OpenMetrics => text::encode(&mut body, &self.registry)?,
        }
        Ok(body)
    }

    /// The answer to a scrape: the format the request's `Accept` asks for, with its
    /// `Content-Type`, and `Vary: Accept` so that no cache serves one format for the
    /// other.
    pub fn scrape_response(&self, request_headers: &HeaderMap) -> Response {
        let format = Format::negotiate(request_headers);
        match self.render(format) {
            Ok(body) => (
                [
                    (header::CONTENT_TYPE, format.content_type()),
                    (header::VARY, "Accept"),
                ],
                body,
            )
                .into_response(),
            Err(_) => {
                tracing::error!("a metrics collector failed to encode");
                let body = serde_json::json!({ "error": "metrics could not be encoded" });
                (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn negotiate(accept: &[&str]) -> Format {
        let mut headers = HeaderMap::new();
        for value in accept {
            headers.append(
                header::ACCEPT,
                HeaderValue::from_str(value).expect("header"),
            );
        }
        Format::negotiate(&headers)
    }

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_the_text_format() {
        // What Prometheus 2.x sends.
        assert_eq!(
            negotiate(&[
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            ]),
            Format::OpenMetrics
        );
        // Prometheus 3.x, whose first choice (protobuf) we do not speak.
        assert_eq!(
            negotiate(&[
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,application/openmetrics-text;version=0.0.1;q=0.3,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.2,text/plain;version=0.0.4;q=0.1,*/*;q=0.05"
            ]),
            Format::OpenMetrics
        );
        assert_eq!(negotiate(&[OPENMETRICS]), Format::OpenMetrics);
        // curl, a browser, no header at all, and a refusal.
        assert_eq!(negotiate(&["*/*"]), Format::Prometheus);
        assert_eq!(
            negotiate(&["text/html,application/xhtml+xml,*/*;q=0.8"]),
            Format::Prometheus
        );
        assert_eq!(negotiate(&[]), Format::Prometheus);
        assert_eq!(
            negotiate(&["application/openmetrics-text;q=0, text/plain"]),
            Format::Prometheus
        );
        assert_eq!(
            negotiate(&["text/plain;q=0.9", "application/openmetrics-text;q=0.5"]),
            Format::Prometheus
        );
    }
}
