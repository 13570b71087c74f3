//! The end-of-run summary: a table per endpoint, the failure reasons, the SLO verdict,
//! the slowest requests, and the same as JSON.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    endpoint::Endpoint,
    engine::{Outcome, StopReason},
    slo::Slo,
    slowest::SlowRequest,
    stats::EndpointStats,
};

/// A run's summary; its JSON form is what `--json` writes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub target: String,
    pub elapsed_seconds: f64,
    pub stopped_because: String,
    /// The endpoints that got requests, in [`Endpoint::ALL`] order.
    pub endpoints: Vec<Row>,
    pub total: Row,
    pub slo: Vec<SloResult>,
    /// Workers that ended by an error, and why; the run went on without them.
    pub worker_errors: Vec<String>,
    /// The slowest answered requests, slowest first.
    pub slowest: Vec<SlowRequestRow>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Row {
    pub endpoint: String,
    pub requests: u64,
    pub successes: u64,
    pub expected_errors: u64,
    pub failures: u64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub failure_reasons: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SloResult {
    pub objective: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SlowRequestRow {
    /// `GET /api/slow`.
    pub endpoint: String,
    pub latency_ms: f64,
    pub status: u16,
    /// 32 hex digits; `null` when the answer named no trace.
    pub trace_id: Option<String>,
}

impl Report {
    pub fn new(outcome: &Outcome, slo: Option<&Slo>) -> Report {
        let seconds = outcome.elapsed.as_secs_f64().max(1e-3);
        let endpoints = Endpoint::ALL
            .into_iter()
            .filter(|e| outcome.stats.endpoint(*e).requests > 0)
            .map(|e| Row::new(e.to_string(), outcome.stats.endpoint(e), seconds))
            .collect();
        let total_stats = outcome.stats.total();
        let slo = slo
            .map(|slo| slo.0.iter().map(|o| o.check(&total_stats)).collect())
            .unwrap_or_default();
        Report {
            target: outcome.target.clone(),
            elapsed_seconds: seconds,
            stopped_because: match &outcome.stop {
                StopReason::Finished => "finished".to_owned(),
                StopReason::Cancelled => "cancelled".to_owned(),
                StopReason::TargetDown(cause) => format!("target down: {cause}"),
            },
            endpoints,
            total: Row::new("total".to_owned(), &total_stats, seconds),
            slo,
            worker_errors: outcome.worker_errors.clone(),
            slowest: outcome.slowest.iter().map(SlowRequestRow::new).collect(),
        }
    }

    pub fn slo_met(&self) -> bool {
        self.slo.iter().all(|result| result.met)
    }

    /// The requests per endpoint and in total, the failure reasons, the workers lost to
    /// an error, and the SLO verdicts.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "endpoint",
            "requests",
            "ok",
            "expected",
            "failed",
            "req/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms"
        );
        for row in self.endpoints.iter().chain(std::iter::once(&self.total)) {
            let _ = writeln!(
                out,
                "{:<18} {:>9} {:>9} {:>9} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                row.endpoint,
                row.requests,
                row.successes,
                row.expected_errors,
                row.failures,
                row.requests_per_second,
                row.p50_ms,
                row.p95_ms,
                row.p99_ms,
                row.max_ms
            );
        }
        let _ = writeln!(
            out,
            "(expected = the 500s of /api/error, which fails by design; failed = anything else)"
        );
        if !self.total.failure_reasons.is_empty() {
            let _ = writeln!(out, "failures:");
            for (reason, count) in &self.total.failure_reasons {
                let _ = writeln!(out, "  {count:>8}  {reason}");
            }
        }
        if !self.worker_errors.is_empty() {
            let _ = writeln!(
                out,
                "{} of the run's tasks ended by an error (the run went on without them):",
                self.worker_errors.len()
            );
            for error in &self.worker_errors {
                let _ = writeln!(out, "  {error}");
            }
        }
        for result in &self.slo {
            let verdict = if result.met { "met" } else { "BROKEN" };
            let _ = writeln!(
                out,
                "SLO {}: {verdict} (measured {})",
                result.objective, result.measured
            );
        }
        out
    }

    /// One line per slow request, slowest first: latency, endpoint, status and trace id
    /// (`trace -` when the answer named none). Empty when none was kept.
    pub fn slowest_table(&self) -> String {
        self.slowest
            .iter()
            .map(|slow| {
                let latency = Duration::from_secs_f64(slow.latency_ms / 1000.0);
                format!(
                    "  {:>9}  {:<17} {:>3}  trace {}\n",
                    show_latency(latency),
                    slow.endpoint,
                    slow.status,
                    slow.trace_id.as_deref().unwrap_or("-")
                )
            })
            .collect()
    }
}

/// `1.93 s` from a second on, `412.5 ms` below.
fn show_latency(latency: Duration) -> String {
    if latency >= Duration::from_secs(1) {
        format!("{:.2} s", latency.as_secs_f64())
    } else {
        format!("{:.1} ms", latency.as_secs_f64() * 1000.0)
    }
}

impl Row {
    fn new(endpoint: String, stats: &EndpointStats, seconds: f64) -> Row {
        let ms = |quantile: f64| {
            if stats.latency_us.is_empty() {
                0.0
            } else {
                stats.latency_us.value_at_quantile(quantile) as f64 / 1000.0
            }
        };
        Row {
            endpoint,
            requests: stats.requests,
            successes: stats.successes,
            expected_errors: stats.expected_errors,
            failures: stats.failures,
            requests_per_second: stats.requests as f64 / seconds,
            p50_ms: ms(0.50),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            max_ms: stats.latency_us.max() as f64 / 1000.0,
            failure_reasons: stats.failure_reasons.clone(),
        }
    }
}

impl SlowRequestRow {
    fn new(slow: &SlowRequest) -> SlowRequestRow {
        SlowRequestRow {
            endpoint: slow.endpoint.to_string(),
            latency_ms: slow.latency.as_micros() as f64 / 1000.0,
            status: slow.status,
            trace_id: slow.trace_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;

    fn outcome() -> Outcome {
        let mut stats = Stats::new();
        let data = &mut stats.endpoints[Endpoint::Data.index()];
        data.requests = 3;
        data.successes = 2;
        data.fail("HTTP 503".to_owned());
        data.latency_us.record(1_500).expect("in range");
        Outcome {
            target: "http://127.0.0.1:1".to_owned(),
            stats,
            slowest: vec![
                SlowRequest {
                    endpoint: Endpoint::Slow,
                    latency: Duration::from_millis(1934),
                    status: 200,
                    trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
                },
                SlowRequest {
                    endpoint: Endpoint::Action,
                    latency: Duration::from_micros(412_500),
                    status: 502,
                    trace_id: None,
                },
            ],
            worker_errors: vec!["task 7 panicked".to_owned()],
            elapsed: Duration::from_secs(2),
            stop: StopReason::Finished,
        }
    }

    #[test]
    fn the_table_names_failures_lost_workers_and_verdicts() {
        let report = Report::new(&outcome(), Some(&"errors<10%".parse().expect("slo")));
        let table = report.table();
        assert!(table.contains("GET /api/data"), "{table}");
        assert!(table.contains("         1  HTTP 503"), "{table}");
        assert!(
            table.contains("1 of the run's tasks ended by an error")
                && table.contains("  task 7 panicked"),
            "{table}"
        );
        assert!(
            table.contains("SLO errors<10%: BROKEN (measured 33.33%)"),
            "{table}"
        );
        assert!(!report.slo_met());
    }

    #[test]
    fn the_slowest_requests_with_their_trace_ids() {
        let report = Report::new(&outcome(), None);
        assert_eq!(
            report.slowest_table(),
            "     1.93 s  GET /api/slow     200  trace 4bf92f3577b34da6a3ce929d0e0e4736\n   \
             412.5 ms  POST /api/action  502  trace -\n"
        );
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(
            json["slowest"][0],
            serde_json::json!({
                "endpoint": "GET /api/slow",
                "latency_ms": 1934.0,
                "status": 200,
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            })
        );
        assert_eq!(json["slowest"][1]["trace_id"], serde_json::Value::Null);
        assert_eq!(json["worker_errors"][0], "task 7 panicked");
        let back: Report = serde_json::from_value(json).expect("reads back");
        assert_eq!(back.slowest.len(), 2);
    }
}
