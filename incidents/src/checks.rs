//! One expectation of the table against the tools that run: its verdict (PASS, FAIL, or
//! NOT CHECKED and why) and what was seen. A tool that is absent never passes a check.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::{
    panels::{self, Dashboards},
    scenarios::{Expect, Expectation, Phase},
    tools::{Alert, Api},
};

/// The tools `--verify` asks; `None` where one does not run.
#[derive(Clone, Debug)]
pub struct Tools {
    pub prometheus: Option<Api>,
    pub alertmanager: Option<Api>,
    pub dashboards: Dashboards,
    /// Every panel query's range selectors this long instead of their own (short phases;
    /// a test whose rules use short windows): also the window the table's
    /// `window_secs` then stand for.
    pub window: Option<Duration>,
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
    }
}

/// Checks `expectation` at the end of a phase that lasted `phase_length`, asking again
/// (every 2 s) until it passes or `settle` has passed: a scrape and a rule evaluation
/// lie between an event and what the tools show.
pub async fn check(
    tools: &Tools,
    expectation: &Expectation,
    phase_length: Duration,
    settle: Duration,
) -> Verdict {
    let verdict = |status, seen: String| Verdict {
        phase: expectation.phase,
        expectation: describe(&expectation.expect),
        status,
        seen,
    };
    let window = window_behind(tools, expectation).await;
    if phase_length < window {
        return verdict(
            Status::NotChecked,
            format!(
                "not checked: the phase lasted {} s, less than the {} s window behind it",
                phase_length.as_secs(),
                window.as_secs()
            ),
        );
    }
    let deadline = Instant::now() + settle;
    loop {
        let (status, seen) = once(tools, &expectation.expect).await;
        if status != Status::Fail || Instant::now() >= deadline {
            return verdict(status, seen);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// How long the signal behind an expectation remembers: the alert rule's own longest
/// range (from Prometheus) for an alert that must have ended, else the table's window
/// (shortened by `tools.window`).
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
    tools.window.map_or(table, |window| window.min(table))
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
