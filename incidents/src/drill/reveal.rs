//! What a drill's reveal points at: for each kind of fault, the dashboard panel that
//! shows it (its PromQL is read from the dashboard itself), and which lines of the
//! faulted service's log show the fault at work.

use contract::{admin::FaultKind, endpoints};

/// A panel of a committed dashboard (`grafana/dashboards/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PanelRef {
    /// The file under `grafana/dashboards/`.
    pub file: &'static str,
    /// The dashboard's title in Grafana.
    pub dashboard: &'static str,
    /// The panel's title, and the target's `refId` in it.
    pub title: &'static str,
    pub ref_id: &'static str,
    /// Whether its query takes `$service` (set to the faulted service).
    pub per_service: bool,
}

/// The panel where a fault of `kind` shows at the faulted service.
pub fn panel(kind: FaultKind) -> PanelRef {
    match kind {
        FaultKind::Latency => PanelRef {
            file: "service.json",
            dashboard: "Mesh / Service",
            title: "Latency p50 / p95 / p99",
            ref_id: "B",
            per_service: true,
        },
        FaultKind::Error => PanelRef {
            file: "service.json",
            dashboard: "Mesh / Service",
            title: "Errors by endpoint and status",
            ref_id: "A",
            per_service: true,
        },
        FaultKind::Unreachable => PanelRef {
            file: "inter-service.json",
            dashboard: "Mesh / Inter-service",
            title: "Downstream errors",
            ref_id: "A",
            per_service: false,
        },
    }
}

/// How telling a line of the faulted service's JSON log is of a fault of `kind`, or
/// `None` when it shows nothing of it. A drill's fault is quiet (no "fault injected"
/// line), so these are the request's ordinary lines, as a learner reading `cargo xtask
/// logs SERVICE` would spot them: for latency, a request on a route that does real work
/// served in 100 ms or more (the slower, the more telling); for an error, a 5xx the
/// service answered itself (not a 502 passed on, not `/api/error`'s by design); for an
/// unreachable dependency, a call that failed without an answer.
pub fn telling(kind: FaultKind, line: &serde_json::Value) -> Option<f64> {
    let served = line["message"] == "request served";
    let route = line["route"].as_str().unwrap_or_default();
    let status = line["status"].as_u64().unwrap_or_default();
    match kind {
        FaultKind::Latency => {
            let ms = line["duration_ms"].as_f64()?;
            (served && [endpoints::DATA, endpoints::ACTION].contains(&route) && ms >= 100.0)
                .then_some(ms)
        }
        FaultKind::Error => {
            (served && (500..=599).contains(&status) && status != 502 && route != endpoints::ERROR)
                .then_some(1.0)
        }
        FaultKind::Unreachable => (line["message"] == "downstream call failed").then_some(1.0),
    }
}

/// What to look at first, by kind, once the service is known.
pub fn hint(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Latency => {
            "its own latency rose while its dependencies stayed fast: the time was spent in it"
        }
        FaultKind::Error => {
            "it answered 5xx itself (not 502) while its own calls succeeded: the errors start there"
        }
        FaultKind::Unreachable => {
            "its calls to one dependency failed without an answer (status=\"error\") while that \
             dependency answered its other callers"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn telling_lines_are_the_effects_of_the_kind_and_nothing_else() {
        let served = |route: &str, status: u64, ms: f64| json!({"message": "request served", "route": route, "status": status, "duration_ms": ms});
        let failed =
            json!({"message": "downstream call failed", "dependency": "inventory-service"});
        let cases = [
            (
                FaultKind::Latency,
                served("/api/data", 200, 450.0),
                Some(450.0),
            ),
            (
                FaultKind::Latency,
                served("/api/action", 502, 120.0),
                Some(120.0),
            ),
            (FaultKind::Latency, served("/api/data", 200, 20.0), None),
            (FaultKind::Latency, served("/api/slow", 200, 900.0), None),
            (FaultKind::Error, served("/api/data", 500, 3.0), Some(1.0)),
            (FaultKind::Error, served("/api/action", 503, 3.0), Some(1.0)),
            (FaultKind::Error, served("/api/data", 502, 3.0), None),
            (FaultKind::Error, served("/api/error", 500, 3.0), None),
            (FaultKind::Error, served("/api/data", 200, 3.0), None),
            (FaultKind::Unreachable, failed.clone(), Some(1.0)),
            (FaultKind::Unreachable, served("/api/data", 502, 3.0), None),
            (FaultKind::Error, failed, None),
        ];
        for (kind, line, expected) in cases {
            assert_eq!(telling(kind, &line), expected, "{kind:?} {line}");
        }
    }

    #[test]
    fn every_kind_has_a_panel_in_a_committed_dashboard() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for kind in FaultKind::ALL {
            let panel = panel(kind);
            let path = root.join("grafana/dashboards").join(panel.file);
            let text = std::fs::read_to_string(&path).expect("the dashboard");
            let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(json["title"], panel.dashboard, "{kind:?}");
            let found = json["panels"].as_array().expect("panels").iter().any(|p| {
                p["title"] == panel.title
                    && p["targets"]
                        .as_array()
                        .is_some_and(|t| t.iter().any(|t| t["refId"] == panel.ref_id))
            });
            assert!(
                found,
                "{kind:?}: no panel {:?} {}",
                panel.title, panel.ref_id
            );
        }
    }
}
