//! The end-of-run summary: a table per endpoint, the failure reasons, the SLO verdict,
//! the slowest requests, and the same as JSON.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    endpoint::Endpoint,
    engine::{Outcome, StopReason},
    schedule::Schedule,
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
    /// Open model: what the schedule did; `null` for virtual users.
    pub schedule: Option<ScheduleRow>,
    /// What went wrong with the run itself, with what to change (the schedule fell
    /// behind); empty when nothing did.
    pub warnings: Vec<String>,
    pub slo: Vec<SloResult>,
    /// Workers that ended by an error, and why; the run went on without them.
    pub worker_errors: Vec<String>,
    /// The slowest answered requests, slowest first.
    pub slowest: Vec<SlowRequestRow>,
}

/// One endpoint's (or the total's) counts: `scheduled = requests + not_sent` and
/// `requests = successes + expected_errors + failures + in_flight`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Row {
    pub endpoint: String,
    /// Requests the run meant to send (in the closed model, the ones it sent).
    pub scheduled: u64,
    /// Requests sent.
    pub requests: u64,
    pub successes: u64,
    pub expected_errors: u64,
    pub failures: u64,
    /// Sent, with no answer yet when the run stopped.
    pub in_flight: u64,
    /// Open model: never sent, as no connection was free in time.
    pub not_sent: u64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub failure_reasons: BTreeMap<String, u64>,
}

/// The open model's schedule: asked and achieved, and why requests were not sent.
#[derive(Debug, Serialize, Deserialize)]
pub struct ScheduleRow {
    pub asked_rate: f64,
    /// Requests sent per second.
    pub achieved_rate: f64,
    pub scheduled: u64,
    pub sent: u64,
    pub not_sent: u64,
    /// Not sent: no connection was free within `max_lag_bound_ms` of the scheduled time.
    pub dropped_late: u64,
    /// Not sent: still waiting for a connection when the run stopped.
    pub queued_at_end: u64,
    /// Requests that found every one of `max_connections` busy at their scheduled time.
    pub waited_at_cap: u64,
    /// The longest a sent request waited between its scheduled time and its start.
    pub max_lag_ms: f64,
    pub max_lag_bound_ms: f64,
    pub connections: u32,
    pub max_connections: u32,
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
            .filter(|e| outcome.stats.endpoint(*e).scheduled() > 0)
            .map(|e| Row::new(e.to_string(), outcome.stats.endpoint(e), seconds))
            .collect();
        let total_stats = outcome.stats.total();
        let slo = slo
            .map(|slo| slo.0.iter().map(|o| o.check(&total_stats)).collect())
            .unwrap_or_default();
        let schedule = outcome
            .schedule
            .as_ref()
            .map(|schedule| ScheduleRow::new(schedule, &total_stats, seconds));
        let warnings = outcome
            .schedule
            .as_ref()
            .and_then(|schedule| behind_schedule(schedule, &total_stats, seconds))
            .into_iter()
            .collect();
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
            schedule,
            warnings,
            slo,
            worker_errors: outcome.worker_errors.clone(),
            slowest: outcome.slowest.iter().map(SlowRequestRow::new).collect(),
        }
    }

    pub fn slo_met(&self) -> bool {
        self.slo.iter().all(|result| result.met)
    }

    /// The requests per endpoint and in total, the failure reasons, the open model's
    /// schedule and its warning, the workers lost to an error, and the SLO verdicts.
    pub fn table(&self) -> String {
        let open = self.schedule.is_some();
        let model = if open { Shown::Open } else { Shown::Closed };
        let columns: Vec<&Column> = COLUMNS
            .iter()
            .filter(|column| column.shown == Shown::Always || column.shown == model)
            .collect();
        let mut out = format!("{:<18}", "endpoint");
        for column in &columns {
            let _ = write!(out, " {:>9}", column.header);
        }
        out.push('\n');
        for row in self.endpoints.iter().chain(std::iter::once(&self.total)) {
            let _ = write!(out, "{:<18}", row.endpoint);
            for column in &columns {
                let _ = write!(out, " {:>9}", column.cell(row));
            }
            out.push('\n');
        }
        out.push_str(
            "(expected = the 500s of /api/error, which fails by design; failed = anything else; \
             in flight = sent, no answer when the run stopped)\n",
        );
        if let Some(schedule) = &self.schedule {
            out.push_str(&schedule.lines());
        }
        self.write_failures(&mut out);
        for warning in &self.warnings {
            let _ = writeln!(out, "WARNING: {warning}");
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

    fn write_failures(&self, out: &mut String) {
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

/// A column of the table, and the model that shows it.
struct Column {
    header: &'static str,
    shown: Shown,
    value: CellValue,
}

/// What a column shows of a row: a count, or a figure to one decimal.
enum CellValue {
    Count(fn(&Row) -> u64),
    Figure(fn(&Row) -> f64),
}

impl Column {
    const fn count(header: &'static str, shown: Shown, value: fn(&Row) -> u64) -> Column {
        Column {
            header,
            shown,
            value: CellValue::Count(value),
        }
    }

    const fn figure(header: &'static str, shown: Shown, value: fn(&Row) -> f64) -> Column {
        Column {
            header,
            shown,
            value: CellValue::Figure(value),
        }
    }

    /// The cell of `row` in this column.
    fn cell(&self, row: &Row) -> String {
        match self.value {
            CellValue::Count(count) => count(row).to_string(),
            CellValue::Figure(figure) => format!("{:.1}", figure(row)),
        }
    }
}

#[derive(PartialEq)]
enum Shown {
    Always,
    /// The open model's: scheduled, sent, not sent.
    Open,
    /// The closed model's: requests (all of them sent).
    Closed,
}

const COLUMNS: [Column; 13] = [
    Column::count("scheduled", Shown::Open, |row| row.scheduled),
    Column::count("sent", Shown::Open, |row| row.requests),
    Column::count("requests", Shown::Closed, |row| row.requests),
    Column::count("ok", Shown::Always, |row| row.successes),
    Column::count("expected", Shown::Always, |row| row.expected_errors),
    Column::count("failed", Shown::Always, |row| row.failures),
    Column::count("in flight", Shown::Always, |row| row.in_flight),
    Column::count("not sent", Shown::Open, |row| row.not_sent),
    Column::figure("req/s", Shown::Always, |row| row.requests_per_second),
    Column::figure("p50 ms", Shown::Always, |row| row.p50_ms),
    Column::figure("p95 ms", Shown::Always, |row| row.p95_ms),
    Column::figure("p99 ms", Shown::Always, |row| row.p99_ms),
    Column::figure("max ms", Shown::Always, |row| row.max_ms),
];

/// A start this much later than scheduled is falling behind, even with nothing dropped
/// (tens of milliseconds are common while connections open on a busy machine).
const LAG_WARNING: Duration = Duration::from_millis(250);

/// The warning of an open-model run that fell behind its schedule: by how much, and
/// what to change. `None` when it kept up.
fn behind_schedule(schedule: &Schedule, total: &EndpointStats, seconds: f64) -> Option<String> {
    if schedule.dropped_late == 0 && schedule.waited_at_cap == 0 && schedule.max_lag < LAG_WARNING {
        return None;
    }
    let mut warning = format!(
        "the run fell behind its schedule: asked {} requests/s, sent {:.1}/s; {} of {} \
         scheduled requests not sent ({} waited over {} for a free connection, {} still \
         waiting at the end); requests started up to {} after their scheduled time.",
        schedule.rate,
        total.requests as f64 / seconds,
        total.not_sent,
        schedule.scheduled,
        schedule.dropped_late,
        show_latency(schedule.max_lag_bound),
        schedule.queued_at_end,
        show_latency(schedule.max_lag),
    );
    let answered = total.answered();
    if schedule.waited_at_cap == 0 || answered == 0 {
        warning.push_str(
            " The connections were not all busy: the generator itself started requests late \
             (a busy machine); lower --rate.",
        );
        return Some(warning);
    }
    // Little's law: the connections busy at once are the rate times the time per request.
    let per_request = total.service_time.as_secs_f64() / answered as f64;
    let needed = (schedule.rate * per_request).ceil().max(1.0);
    let carried = f64::from(schedule.max_connections) / per_request.max(1e-6);
    let _ = write!(
        warning,
        " All {} connections (--max-connections) were busy: at {} per request they carry \
         about {carried:.1} requests/s, and this rate keeps about {needed:.0} busy. Raise \
         --max-connections to about {:.0}, or lower --rate to about {carried:.1}.",
        schedule.max_connections,
        show_latency(Duration::from_secs_f64(per_request)),
        needed * 2.0,
    );
    Some(warning)
}

impl ScheduleRow {
    fn new(schedule: &Schedule, total: &EndpointStats, seconds: f64) -> ScheduleRow {
        ScheduleRow {
            asked_rate: schedule.rate,
            achieved_rate: total.requests as f64 / seconds,
            scheduled: schedule.scheduled,
            sent: total.requests,
            not_sent: total.not_sent,
            dropped_late: schedule.dropped_late,
            queued_at_end: schedule.queued_at_end,
            waited_at_cap: schedule.waited_at_cap,
            max_lag_ms: schedule.max_lag.as_secs_f64() * 1000.0,
            max_lag_bound_ms: schedule.max_lag_bound.as_secs_f64() * 1000.0,
            connections: schedule.connections,
            max_connections: schedule.max_connections,
        }
    }

    /// What the schedule asked and did, and what "not sent" means.
    fn lines(&self) -> String {
        let bound = show_latency(Duration::from_secs_f64(self.max_lag_bound_ms / 1000.0));
        let lag = show_latency(Duration::from_secs_f64(self.max_lag_ms / 1000.0));
        format!(
            "(scheduled = sent + not sent; not sent = no connection free within {bound} of \
             its scheduled time, or still waiting at the end)\n\
             schedule: asked {} requests/s, sent {:.1}/s; {} of at most {} connections \
             opened; longest wait for a connection {lag}\n",
            self.asked_rate, self.achieved_rate, self.connections, self.max_connections,
        )
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
            scheduled: stats.scheduled(),
            requests: stats.requests,
            successes: stats.successes,
            expected_errors: stats.expected_errors,
            failures: stats.failures,
            in_flight: stats.in_flight,
            not_sent: stats.not_sent,
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
            schedule: None,
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
