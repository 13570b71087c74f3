//! The dashboards' own PromQL, read from `grafana/dashboards/*.json`, so that `--verify`
//! looks exactly where a person is told to look (a renamed panel fails the check instead
//! of a copy drifting).

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

/// A panel or annotation that is not where the scenario's table says.
#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    #[error("reading {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{dashboard}: no panel {panel:?} with a query {ref_id}")]
    NoPanel {
        dashboard: String,
        panel: String,
        ref_id: String,
    },
    #[error("{dashboard}: no annotation {annotation:?} with a query")]
    NoAnnotation {
        dashboard: String,
        annotation: String,
    },
}

/// The annotation on every dashboard that shades a fault in force.
pub const FAULT_ANNOTATION: &str = "Fault active";
/// The dashboard whose copy of that annotation `--verify` queries.
pub const FAULT_ANNOTATION_DASHBOARD: &str = "overview.json";

/// The dashboards of a checkout (`grafana/dashboards`).
#[derive(Clone, Debug)]
pub struct Dashboards {
    pub dir: PathBuf,
}

impl Dashboards {
    pub fn new(dir: impl Into<PathBuf>) -> Dashboards {
        Dashboards { dir: dir.into() }
    }

    fn load(&self, file: &str) -> Result<Json, PanelError> {
        let path = self.dir.join(file);
        let unreadable = |reason: String| PanelError::Unreadable {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| unreadable(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))
    }

    /// The query `ref_id` of the panel titled `panel` in `dashboard`, as written.
    pub fn panel_query(
        &self,
        dashboard: &str,
        panel: &str,
        ref_id: &str,
    ) -> Result<String, PanelError> {
        let json = self.load(dashboard)?;
        panels(&json)
            .into_iter()
            .filter(|p| p["title"].as_str() == Some(panel))
            .flat_map(|p| p["targets"].as_array().into_iter().flatten())
            .find(|target| target["refId"].as_str() == Some(ref_id))
            .and_then(|target| target["expr"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| PanelError::NoPanel {
                dashboard: dashboard.to_owned(),
                panel: panel.to_owned(),
                ref_id: ref_id.to_owned(),
            })
    }

    /// The fault annotation's query, as written.
    pub fn fault_annotation_query(&self) -> Result<String, PanelError> {
        let json = self.load(FAULT_ANNOTATION_DASHBOARD)?;
        json["annotations"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["name"].as_str() == Some(FAULT_ANNOTATION))
            .and_then(|a| a["expr"].as_str().or_else(|| a["target"]["expr"].as_str()))
            .map(str::to_owned)
            .ok_or_else(|| PanelError::NoAnnotation {
                dashboard: FAULT_ANNOTATION_DASHBOARD.to_owned(),
                annotation: FAULT_ANNOTATION.to_owned(),
            })
    }
}

/// Panels, including those nested in rows.
fn panels(dashboard: &Json) -> Vec<&Json> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// A panel's query as Prometheus can run it: Grafana's `$service` set, its
/// `$__rate_interval` a minute (`$__interval` 15 s, the scrape interval, and `$__range`
/// five minutes, the dashboards' default range); with `window`, every range selector
/// (`[5m]`) that long instead (short phases, and a test's short rule windows).
pub fn runnable(expr: &str, service: Option<&str>, window: Option<&str>) -> String {
    let mut expr = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m");
    if let Some(service) = service {
        expr = expr
            .replace("${service}", service)
            .replace("$service", service);
    }
    match window {
        Some(window) => with_ranges(&expr, window),
        None => expr,
    }
}

/// `expr` with the duration of every range selector `[...]` replaced by `window`.
fn with_ranges(expr: &str, window: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else {
            break;
        };
        out.push_str(&rest[..=open]);
        out.push_str(window);
        out.push(']');
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// The repository's dashboards, from the root of a checkout.
pub fn in_checkout(root: &Path) -> Dashboards {
    Dashboards::new(root.join("grafana").join("dashboards"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_and_ranges_are_replaced() {
        let expr = "sum(rate(x{service_name=\"$service\"}[$__rate_interval])) / sum(rate(y[5m]))";
        assert_eq!(
            runnable(expr, Some("payment-service"), None),
            "sum(rate(x{service_name=\"payment-service\"}[1m])) / sum(rate(y[5m]))"
        );
        assert_eq!(
            runnable(expr, Some("a"), Some("15s")),
            "sum(rate(x{service_name=\"a\"}[15s])) / sum(rate(y[15s]))"
        );
    }

    #[test]
    fn the_repositorys_panels_and_annotation_are_found_and_a_missing_one_is_named() {
        let dashboards = in_checkout(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("root"),
        );
        let expr = dashboards
            .panel_query("service.json", "Error ratio", "A")
            .expect("the panel");
        assert!(expr.contains("$service"), "{expr}");
        assert!(
            dashboards
                .fault_annotation_query()
                .expect("annotation")
                .contains("fault_active")
        );
        let missing = dashboards
            .panel_query("service.json", "Error ratio", "Z")
            .expect_err("no such query");
        assert!(missing.to_string().contains("Error ratio"), "{missing}");
    }
}
