//! What a drill's reveal points at: for each kind of fault, the dashboard panel that
//! shows it (its PromQL is read from the dashboard itself), and the words of the log line
//! a faulted request leaves in the faulted service's log.

use contract::admin::FaultKind;

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

/// The words every log line of an injected fault starts with (mock-service's
/// `faults.rs` writes "fault injected: added latency", "...: error answer", "...:
/// dependency treated as unreachable"), at level WARN, with the request's trace id.
pub const LOG_MARKER: &str = "fault injected";

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
