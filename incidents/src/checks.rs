//! One expectation of the table against the tools that run: its verdict (PASS, FAIL, or
//! NOT CHECKED and why) and what was seen. A tool that is absent never passes a check.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;

use crate::{
    panels::{self, Dashboards},
    scenarios::{Expect, Expectation, Phase},
    tools::{Alert, Api},
    traces::{LogSource, Span, TraceSource},
};

/// The tools `--verify` asks; `None` where one does not run.
#[derive(Clone)]
pub struct Tools {
    pub prometheus: Option<Api>,
    pub alertmanager: Option<Api>,
    /// Jaeger, or a test's OTLP receiver.
    pub traces: Option<Arc<dyn TraceSource>>,
    /// `cargo xtask logs --trace`'s logic.
    pub logs: Option<Arc<dyn LogSource>>,
    pub dashboards: Dashboards,
    /// Every panel query's range selectors this long instead of their own (short
    /// phases): also the window the table's `window_secs` of a panel, the annotation or
    /// a trace then stand for.
    pub window: Option<Duration>,
    /// The alert rules' windows, where Prometheus runs rules shortened to this (a test's
    /// configuration); `None`: the repository's rules, whose windows the table states.
    pub rule_window: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Pass,
    Fail,
    NotChecked,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::NotChecked => "NOT CHECKED",
        }
    }
}

/// The outcome of one expectation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub phase: Phase,
    pub expectation: String,
    pub status: Status,
    pub seen: String,
}

/// What an expectation says, in one line.
pub fn describe(expect: &Expect) -> String {
    let labels = |labels: &[(&str, &str)]| {
        let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{{{}}}", inner.join(","))
    };
    match expect {
        Expect::AlertActive { alert, labels: l } => {
            format!("alert {alert}{} pending or firing", labels(l))
        }
        Expect::AlertInactive { alert, labels: l } => {
            format!("alert {alert}{} neither pending nor firing", labels(l))
        }
        Expect::Panel {
            dashboard,
            panel,
            ref_id,
            service,
            min,
            max,
        } => {
            let of = service.map_or(String::new(), |s| format!(" of {s}"));
            let bound = match (min, max) {
                (Some(min), Some(max)) => format!("between {min} and {max}"),
                (Some(min), None) => format!(">= {min}"),
                (None, Some(max)) => format!("<= {max}"),
                (None, None) => "has data".to_owned(),
            };
            format!("panel {dashboard} \"{panel}\" {ref_id}{of} {bound}")
        }
        Expect::FaultAnnotation { service } => {
            format!(
                "annotation \"{}\" names {service}",
                panels::FAULT_ANNOTATION
            )
        }
        Expect::Trace {
            panel,
            service,
            error,
            min_ms,
            ..
        } => {
            let what = match (error, min_ms) {
                (true, _) => "an ERROR".to_owned(),
                (false, Some(ms)) => format!(">= {ms} ms"),
                (false, None) => "a".to_owned(),
            };
            format!("exemplar of \"{panel}\" -> trace with {what} {service} span")
        }
    }
}

/// The logs half of [`Expect::Trace`], in one line.
fn describe_logs(service: &str) -> String {
    format!("logs --trace of that trace name {service}")
}

/// Checks `expectation` at the end of a phase that lasted `phase_length`, asking again
/// (every 2 s) until it passes or `settle` has passed: a scrape, a rule evaluation or a
/// span export lies between an event and what the tools show. A trace expectation gives
/// two verdicts: the trace, and its logs.
pub async fn check(
    tools: &Tools,
    expectation: &Expectation,
    phase_length: Duration,
    settle: Duration,
) -> Vec<Verdict> {
    let verdict = |expectation_text: String, (status, seen): (Status, String)| Verdict {
        phase: expectation.phase,
        expectation: expectation_text,
        status,
        seen,
    };
    let text = describe(&expectation.expect);
    let window = window_behind(tools, expectation).await;
    if phase_length < window {
        let seen = format!(
            "not checked: the phase lasted {} s, less than the {} s window behind it",
            phase_length.as_secs(),
            window.as_secs()
        );
        return vec![verdict(text, (Status::NotChecked, seen))];
    }
    if let Expect::Trace { service, .. } = &expectation.expect {
        let since = SystemTime::now() - phase_length;
        let (found, trace_id) =
            poll(settle, || trace_once(tools, &expectation.expect, since)).await;
        let logs = match trace_id {
            Some(id) => {
                poll(settle, || logs_once(tools, id.clone(), service))
                    .await
                    .0
            }
            None => (Status::NotChecked, "not checked: no trace id".to_owned()),
        };
        return vec![verdict(text, found), verdict(describe_logs(service), logs)];
    }
    let (result, ()) = poll(settle, || async {
        (once(tools, &expectation.expect).await, ())
    })
    .await;
    vec![verdict(text, result)]
}

/// Runs `look` until it does not fail or `settle` has passed; its last result.
async fn poll<T, F>(settle: Duration, mut look: impl FnMut() -> F) -> ((Status, String), T)
where
    F: std::future::Future<Output = ((Status, String), T)>,
{
    let deadline = Instant::now() + settle;
    loop {
        let (result, extra) = look().await;
        if result.0 != Status::Fail || Instant::now() >= deadline {
            return (result, extra);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// How long the signal behind an expectation remembers: the alert rule's own longest
/// range (from Prometheus) for an alert that must have ended, else the table's window
/// (shortened by `tools.window` for the panels, `tools.rule_window` for the alerts).
async fn window_behind(tools: &Tools, expectation: &Expectation) -> Duration {
    if let (Expect::AlertInactive { alert, .. }, Phase::Recovery, Some(prometheus)) =
        (&expectation.expect, expectation.phase, &tools.prometheus)
    {
        return prometheus
            .rule_window(alert)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
    }
    let table = Duration::from_secs(expectation.window_secs);
    let shortened = match expectation.expect {
        Expect::AlertActive { .. } | Expect::AlertInactive { .. } => tools.rule_window,
        Expect::Panel { .. } | Expect::FaultAnnotation { .. } | Expect::Trace { .. } => {
            tools.window
        }
    };
    shortened.map_or(table, |window| window.min(table))
}

/// One look.
async fn once(tools: &Tools, expect: &Expect) -> (Status, String) {
    let Some(prometheus) = &tools.prometheus else {
        return (Status::NotChecked, "not checked: no Prometheus".to_owned());
    };
    let result = match expect {
        Expect::AlertActive { alert, labels } => {
            alert_active(prometheus, tools.alertmanager.as_ref(), alert, labels).await
        }
        Expect::AlertInactive { alert, labels } => alert_inactive(prometheus, alert, labels).await,
        Expect::Panel { .. } => panel(prometheus, tools, expect).await,
        Expect::FaultAnnotation { service } => annotation(prometheus, tools, service).await,
        Expect::Trace { .. } => Err("a trace is checked by trace_once".to_owned()),
    };
    result.unwrap_or_else(|error| (Status::Fail, error))
}

type Look = Result<(Status, String), String>;

async fn alert_active(
    prometheus: &Api,
    alertmanager: Option<&Api>,
    alert: &str,
    labels: &[(&str, &str)],
) -> Look {
    let alerts = prometheus.alerts().await.map_err(|e| e.to_string())?;
    let Some(found) = alerts.iter().find(|a| a.matches(alert, labels)) else {
        return Ok((
            Status::Fail,
            format!("neither pending nor firing ({})", names(&alerts)),
        ));
    };
    if found.state != "firing" {
        return Ok((Status::Pass, format!("{} in Prometheus", found.state)));
    }
    let Some(alertmanager) = alertmanager else {
        return Ok((
            Status::Pass,
            "firing in Prometheus; Alertmanager not checked: no Alertmanager".to_owned(),
        ));
    };
    let held = alertmanager
        .alertmanager_alerts()
        .await
        .map_err(|e| e.to_string())?;
    Ok(match held.iter().find(|a| a.matches(alert, labels)) {
        Some(held) => (
            Status::Pass,
            format!("firing; in Alertmanager: {}", held.state),
        ),
        None => (
            Status::Fail,
            "firing in Prometheus, but not in Alertmanager".to_owned(),
        ),
    })
}

async fn alert_inactive(prometheus: &Api, alert: &str, labels: &[(&str, &str)]) -> Look {
    let alerts = prometheus.alerts().await.map_err(|e| e.to_string())?;
    Ok(match alerts.iter().find(|a| a.matches(alert, labels)) {
        Some(found) => (Status::Fail, format!("{} in Prometheus", found.state)),
        None => (Status::Pass, "neither pending nor firing".to_owned()),
    })
}

/// The names of the active alerts, for a verdict's "seen".
fn names(alerts: &[Alert]) -> String {
    let mut names: Vec<String> = alerts
        .iter()
        .map(|a| {
            let name = a
                .labels
                .get("alertname")
                .and_then(|n| n.as_str())
                .unwrap_or("?");
            format!("{name} {}", a.state)
        })
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        "no alert active".to_owned()
    } else {
        format!("active: {}", names.join(", "))
    }
}

async fn panel(prometheus: &Api, tools: &Tools, expect: &Expect) -> Look {
    let Expect::Panel {
        dashboard,
        panel,
        ref_id,
        service,
        min,
        max,
    } = expect
    else {
        return Err("not a panel expectation".to_owned());
    };
    let written = tools
        .dashboards
        .panel_query(dashboard, panel, ref_id)
        .map_err(|e| e.to_string())?;
    let window = tools.window.map(|w| format!("{}s", w.as_secs()));
    let expr = panels::runnable(&written, *service, window.as_deref());
    let samples = prometheus.query(&expr).await.map_err(|e| e.to_string())?;
    let Some(value) = samples
        .iter()
        .map(|s| s.value)
        .filter(|v| v.is_finite())
        .reduce(f64::max)
    else {
        return Ok((Status::Fail, format!("no data from {expr}")));
    };
    let within = min.is_none_or(|min| value >= min) && max.is_none_or(|max| value <= max);
    let status = if within { Status::Pass } else { Status::Fail };
    Ok((status, format!("{value:.3}")))
}

async fn annotation(prometheus: &Api, tools: &Tools, service: &str) -> Look {
    let expr = tools
        .dashboards
        .fault_annotation_query()
        .map_err(|e| e.to_string())?;
    let samples = prometheus.query(&expr).await.map_err(|e| e.to_string())?;
    let of_service: Vec<String> = samples
        .iter()
        .filter(|s| s.labels.get("service_name").and_then(|n| n.as_str()) == Some(service))
        .map(|s| {
            let kind = s.labels.get("kind").and_then(|k| k.as_str()).unwrap_or("?");
            format!("{service} ({kind})")
        })
        .collect();
    Ok(if of_service.is_empty() {
        (
            Status::Fail,
            format!("{} series, none of {service}", samples.len()),
        )
    } else {
        (Status::Pass, of_service.join(", "))
    })
}

/// One look for a trace: the phase's exemplars of the panel's query, each trace read
/// from the trace source until one has the expected span of the service. Also the trace
/// id whose logs to check: that trace's, else the newest exemplar's.
async fn trace_once(
    tools: &Tools,
    expect: &Expect,
    since: SystemTime,
) -> ((Status, String), Option<String>) {
    let Expect::Trace {
        dashboard,
        panel,
        ref_id,
        service,
        error,
        min_ms,
    } = expect
    else {
        return ((Status::Fail, "not a trace expectation".to_owned()), None);
    };
    let ids = match phase_exemplars(tools, (dashboard, panel, ref_id), service, since).await {
        Ok(ids) => ids,
        Err(verdict) => return (verdict, None),
    };
    let newest = ids.first().cloned();
    let Some(source) = &tools.traces else {
        let seen = "not checked: no trace source (Jaeger does not run)".to_owned();
        return ((Status::NotChecked, seen), newest);
    };
    let wanted = |span: &Span| {
        span.service == *service
            && (!error || span.error)
            && min_ms.is_none_or(|ms| span.duration >= Duration::from_millis(ms))
    };
    let Some((id, span)) = first_traced(source.as_ref(), &ids, wanted).await else {
        let seen = format!(
            "{} exemplar traces, none with that span of {service}",
            ids.len().min(TRACES_READ)
        );
        return ((Status::Fail, seen), newest);
    };
    let status = if span.error { "ERROR" } else { "OK" };
    let seen = format!(
        "trace {id}: {} \"{}\" {status}, {} ms ({})",
        span.service,
        span.name,
        span.duration.as_millis(),
        source.describe()
    );
    ((Status::Pass, seen), Some(id))
}

/// The trace ids of the phase's exemplars on the panel's query, newest first; or the
/// verdict when there is none to read (no Prometheus, no exemplar, an error).
async fn phase_exemplars(
    tools: &Tools,
    panel: (&str, &str, &str),
    service: &str,
    since: SystemTime,
) -> Result<Vec<String>, (Status, String)> {
    let Some(prometheus) = &tools.prometheus else {
        return Err((Status::NotChecked, "not checked: no Prometheus".to_owned()));
    };
    match exemplars(prometheus, tools, panel, service, since).await {
        Ok(ids) if ids.is_empty() => Err((Status::Fail, "no exemplar from the phase".to_owned())),
        Ok(ids) => Ok(ids),
        Err(error) => Err((Status::Fail, error)),
    }
}

/// How many of the newest exemplars' traces are read at most.
const TRACES_READ: usize = 20;

/// The first of the traces `ids` (the newest [`TRACES_READ`]) with a `wanted` span.
async fn first_traced(
    source: &dyn TraceSource,
    ids: &[String],
    wanted: impl Fn(&Span) -> bool,
) -> Option<(String, Span)> {
    for id in ids.iter().take(TRACES_READ) {
        let spans = source.trace(id).await.unwrap_or_default();
        if let Some(span) = spans.into_iter().find(|s| wanted(s)) {
            return Some((id.clone(), span));
        }
    }
    None
}

/// The trace ids of the exemplars of a panel's query since `since`.
async fn exemplars(
    prometheus: &Api,
    tools: &Tools,
    (dashboard, panel, ref_id): (&str, &str, &str),
    service: &str,
    since: SystemTime,
) -> Result<Vec<String>, String> {
    let written = tools
        .dashboards
        .panel_query(dashboard, panel, ref_id)
        .map_err(|e| e.to_string())?;
    let window = tools.window.map(|w| format!("{}s", w.as_secs()));
    let expr = panels::runnable(&written, Some(service), window.as_deref());
    let unix = |at: SystemTime| {
        at.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    };
    prometheus
        .exemplar_trace_ids(&expr, unix(since), unix(SystemTime::now()))
        .await
        .map_err(|e| e.to_string())
}

/// One look at a trace's logs: `service` among the services that logged it.
async fn logs_once(tools: &Tools, trace_id: String, service: &str) -> ((Status, String), ()) {
    let Some(logs) = &tools.logs else {
        return (
            (Status::NotChecked, "not checked: no log source".to_owned()),
            (),
        );
    };
    let result = match logs.services_logging(&trace_id).await {
        // A pod is named after its service (`payment-service-7d9f-x2`).
        Ok(services)
            if services
                .iter()
                .any(|s| s == service || s.starts_with(&format!("{service}-"))) =>
        {
            (
                Status::Pass,
                format!("trace {trace_id}: {}", services.join(", ")),
            )
        }
        Ok(services) => (
            Status::Fail,
            format!(
                "trace {trace_id}: logged by [{}], not {service}",
                services.join(", ")
            ),
        ),
        Err(error) => (Status::Fail, error),
    };
    (result, ())
}
