//! The end-of-run summary: a table per endpoint, the failure reasons, the SLO verdict,
//! and the same as JSON.

use std::{fmt::Write as _, time::Duration};

use serde::{Deserialize, Serialize};

use super::{
    engine::{EndpointStats, Outcome, StopReason},
    options::{Endpoint, Objective, Slo},
};

#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub target: String,
    pub elapsed_seconds: f64,
    pub stopped_because: String,
    pub endpoints: Vec<Row>,
    pub total: Row,
    pub slo: Vec<SloResult>,
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
    pub failure_reasons: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SloResult {
    pub objective: String,
    pub measured: String,
    pub met: bool,
}

impl Report {
    pub fn new(target: &str, outcome: &Outcome, slo: Option<&Slo>) -> Report {
        let seconds = outcome.elapsed.as_secs_f64().max(1e-3);
        let endpoints = Endpoint::ALL
            .into_iter()
            .filter(|e| outcome.stats.endpoint(*e).requests > 0)
            .map(|e| Row::new(e.to_string(), outcome.stats.endpoint(e), seconds))
            .collect();
        let total_stats = outcome.stats.total();
        let slo = slo
            .map(|slo| slo.0.iter().map(|o| check(o, &total_stats)).collect())
            .unwrap_or_default();
        Report {
            target: target.to_owned(),
            elapsed_seconds: seconds,
            stopped_because: match &outcome.stop {
                StopReason::Finished => "finished".to_owned(),
                StopReason::Cancelled => "cancelled".to_owned(),
                StopReason::TargetDown(cause) => format!("target down: {cause}"),
            },
            endpoints,
            total: Row::new("total".to_owned(), &total_stats, seconds),
            slo,
        }
    }

    pub fn slo_met(&self) -> bool {
        self.slo.iter().all(|result| result.met)
    }

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

fn check(objective: &Objective, total: &EndpointStats) -> SloResult {
    match objective {
        Objective::Latency { percentile, below } => {
            let measured =
                Duration::from_micros(total.latency_us.value_at_quantile(percentile / 100.0));
            SloResult {
                objective: objective.to_string(),
                measured: format!("{:.1} ms", measured.as_secs_f64() * 1000.0),
                met: !total.latency_us.is_empty() && measured < *below,
            }
        }
        Objective::Errors { below } => {
            let ratio = if total.requests == 0 {
                0.0
            } else {
                total.failures as f64 / total.requests as f64
            };
            SloResult {
                objective: objective.to_string(),
                measured: format!("{:.2}%", ratio * 100.0),
                met: total.requests > 0 && ratio < *below,
            }
        }
    }
}
