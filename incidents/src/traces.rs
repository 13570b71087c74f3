//! Where `--verify` reads a trace and its logs: a small trait each, so that the same
//! check reads Jaeger's query API where Jaeger runs, the suite's OTLP receiver in a
//! test, and `cargo xtask logs --trace`'s logic for the lines.

use std::{future::Future, pin::Pin, time::Duration};

use serde_json::Value as Json;

use crate::tools::Api;

/// A future a source returns (boxed: the sources are trait objects in [`crate::Tools`]).
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One span of a trace, as much as the checks need.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    /// The resource's `service.name`.
    pub service: String,
    pub name: String,
    /// The span's status is ERROR.
    pub error: bool,
    pub duration: Duration,
}

/// Where traces are read.
pub trait TraceSource: Send + Sync {
    /// "Jaeger at http://...", for messages.
    fn describe(&self) -> String;
    /// The spans of the trace `trace_id` (32 hex digits); none while it is unknown.
    fn trace<'a>(&'a self, trace_id: &'a str) -> Pending<'a, Result<Vec<Span>, String>>;
}

/// Where a trace's log lines are read (`cargo xtask logs --trace ID`).
pub trait LogSource: Send + Sync {
    /// Who wrote a line with this trace id: services, or pods named after them.
    fn services_logging<'a>(
        &'a self,
        trace_id: &'a str,
    ) -> Pending<'a, Result<Vec<String>, String>>;
}

/// Jaeger's query service (the UI's port, 16686).
pub struct Jaeger {
    pub api: Api,
}

impl Jaeger {
    pub fn new(base: &str) -> Jaeger {
        Jaeger {
            api: Api::jaeger(base),
        }
    }
}

impl TraceSource for Jaeger {
    fn describe(&self) -> String {
        format!("Jaeger at {}", self.api.base)
    }

    fn trace<'a>(&'a self, trace_id: &'a str) -> Pending<'a, Result<Vec<Span>, String>> {
        Box::pin(async move {
            let json = self
                .api
                .get(&format!("/api/traces/{trace_id}"))
                .await
                .map_err(|e| e.to_string())?;
            parse_jaeger(&json)
        })
    }
}

/// Jaeger's `GET /api/traces/{id}`: `{"data": [Trace], ...}` (the query service's
/// `structuredResponse`, cmd/query/app/http_handler.go), where a Trace is
/// `{"traceID", "spans": [{"operationName", "duration" (µs), "tags": [{"key", "type",
/// "value"}], "processID"}], "processes": {"p1": {"serviceName"}}}` (model/json/model.go
/// in jaegertracing/jaeger). An OTLP span's ERROR status arrives as the tag
/// `otel.status_code` = `ERROR`, and as `error` = `true`.
pub fn parse_jaeger(json: &Json) -> Result<Vec<Span>, String> {
    let traces = json["data"].as_array().ok_or("no data list")?;
    let mut spans = Vec::new();
    for trace in traces {
        let processes = &trace["processes"];
        for span in trace["spans"].as_array().ok_or("a trace without spans")? {
            let process = span["processID"].as_str().unwrap_or_default();
            let tags = span["tags"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            let tag = |key: &str| tags.iter().find(|t| t["key"].as_str() == Some(key));
            let error = tag("otel.status_code").is_some_and(|t| t["value"] == "ERROR")
                || tag("error").is_some_and(|t| t["value"] == true);
            spans.push(Span {
                service: processes[process]["serviceName"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned(),
                name: span["operationName"].as_str().unwrap_or("?").to_owned(),
                error,
                duration: Duration::from_micros(span["duration"].as_u64().unwrap_or(0)),
            });
        }
    }
    Ok(spans)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A response shaped as Jaeger's query service writes it (model/json/model.go).
    #[test]
    fn a_jaeger_trace_gives_each_spans_service_status_and_duration() {
        let response = json!({
            "data": [{
                "traceID": "4bf92f3577b34da6a3ce929d0e0e4736",
                "spans": [
                    {"traceID": "4bf92f3577b34da6a3ce929d0e0e4736", "spanID": "00f067aa0ba902b7",
                     "operationName": "POST /api/action", "startTime": 1700000000000000_u64,
                     "duration": 120500, "processID": "p1",
                     "tags": [{"key": "http.response.status_code", "type": "int64", "value": 502},
                              {"key": "otel.status_code", "type": "string", "value": "ERROR"}]},
                    {"traceID": "4bf92f3577b34da6a3ce929d0e0e4736", "spanID": "00f067aa0ba902b8",
                     "operationName": "GET /api/data", "startTime": 1700000000001000_u64,
                     "duration": 800, "processID": "p2",
                     "references": [{"refType": "CHILD_OF", "traceID": "4bf92f3577b34da6a3ce929d0e0e4736", "spanID": "00f067aa0ba902b7"}]}
                ],
                "processes": {
                    "p1": {"serviceName": "payment-service", "tags": []},
                    "p2": {"serviceName": "inventory-service"}
                }
            }],
            "total": 0, "limit": 0, "offset": 0, "errors": null
        });
        let spans = parse_jaeger(&response).expect("a trace");
        assert_eq!(
            spans,
            [
                Span {
                    service: "payment-service".to_owned(),
                    name: "POST /api/action".to_owned(),
                    error: true,
                    duration: Duration::from_micros(120_500),
                },
                Span {
                    service: "inventory-service".to_owned(),
                    name: "GET /api/data".to_owned(),
                    error: false,
                    duration: Duration::from_micros(800),
                },
            ]
        );
        assert!(parse_jaeger(&json!({"errors": [{"code": 404}]})).is_err());
    }
}
