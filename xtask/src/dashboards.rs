//! `cargo xtask dashboards`: lint the Grafana dashboards against the provisioned
//! datasources and PromQL (panels and annotations), and make the Grafana that runs here
//! show the edited files: the local mesh's, through its admin API, or the kind cluster's,
//! by re-applying its dashboards ConfigMap.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use promql_parser::{
    parser::Expr,
    util::{ExprVisitor, walk_expr},
};
use serde::Deserialize;
use serde_json::Value;

use crate::paths::workspace_root;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask dashboards --check   # lint only: datasource uids, PromQL, descriptions,
                                   # exemplars on latency panels, fault annotations
  cargo xtask dashboards           # lint, then reload the Grafana that runs here

Which Grafana it reloads (the output names it, or says none):
  the local mesh's    `cargo xtask local` with Grafana, on :3000: reloaded at once,
                      through its admin API
  the kind cluster's  on :3000: its ConfigMap grafana-dashboards is re-applied; the pod
                      sees the edit once the kubelet syncs the ConfigMap into it, about
                      a minute later (Grafana rescans its files every 10 s)
  none                a Grafana started later loads grafana/dashboards/ as it starts")]
pub struct DashboardsArgs {
    /// Only lint; change nothing (without it: also make the local mesh's Grafana reload
    /// the dashboards, and re-apply the kind cluster's dashboards ConfigMap)
    #[arg(long)]
    pub check: bool,
}

/// One query of one panel, as written in the dashboard.
#[derive(Clone, Debug)]
pub struct PanelQuery {
    pub dashboard: String,
    pub panel: String,
    pub expr: String,
    /// Instant (table) queries are evaluated at one time, not over a range.
    pub instant: bool,
}

/// One Prometheus annotation of one dashboard: Grafana draws a region wherever `expr`
/// has a sample above zero.
#[derive(Clone, Debug)]
pub struct AnnotationQuery {
    pub dashboard: String,
    pub annotation: String,
    pub expr: String,
}

/// The metrics an injected fault changes (latency, errors, unreachable calls, failed
/// business events), by name fragment, so recording rules over them count too. A
/// dashboard that shows one of them marks faults with an annotation on [`FAULT_METRIC`].
const FAULT_AFFECTED: [&str; 3] = ["http_request", "downstream_request", "business_events"];

/// The services' gauge of faults in force: 1 per `service_name` and `kind` while active.
pub const FAULT_METRIC: &str = "fault_active";

/// The values Grafana substitutes into queries, for evaluating them outside Grafana.
/// `$service` takes `service`.
pub fn substitute(expr: &str, service: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
        .replace("${service}", service)
        .replace("$service", service)
}

pub fn dashboards_dir() -> PathBuf {
    workspace_root().join("grafana").join("dashboards")
}

/// Every dashboard file, parsed, sorted by file name.
pub fn load(dir: &Path) -> anyhow::Result<Vec<(PathBuf, Value)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let json = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", path.display()))?;
            Ok((path, json))
        })
        .collect()
}

/// Every Prometheus query of every panel.
pub fn panel_queries(dashboards: &[(PathBuf, Value)]) -> Vec<PanelQuery> {
    let mut queries = Vec::new();
    for (_, dashboard) in dashboards {
        let title = dashboard["title"].as_str().unwrap_or("?").to_owned();
        for panel in panels(dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    queries.push(PanelQuery {
                        dashboard: title.clone(),
                        panel: panel["title"].as_str().unwrap_or("?").to_owned(),
                        expr: expr.to_owned(),
                        instant: target["instant"].as_bool().unwrap_or(false),
                    });
                }
            }
        }
    }
    queries
}

/// Panels, including those nested in rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// Every Prometheus annotation query of every dashboard, as Grafana would run it (with
/// its variables still in: see [`substitute`]).
pub fn annotation_queries(dashboards: &[(PathBuf, Value)]) -> Vec<AnnotationQuery> {
    let mut queries = Vec::new();
    for (_, dashboard) in dashboards {
        for annotation in annotations(dashboard) {
            if let Some(expr) = annotation_expr(annotation) {
                queries.push(AnnotationQuery {
                    dashboard: dashboard["title"].as_str().unwrap_or("?").to_owned(),
                    annotation: annotation["name"].as_str().unwrap_or("?").to_owned(),
                    expr: expr.to_owned(),
                });
            }
        }
    }
    queries
}

fn annotations(dashboard: &Value) -> impl Iterator<Item = &Value> {
    dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
}

/// A provisioned file keeps the query in `expr`; current Grafana, saving a dashboard
/// from its editor, moves it to `target.expr`. Either is read.
fn annotation_expr(annotation: &Value) -> Option<&str> {
    annotation["expr"]
        .as_str()
        .or_else(|| annotation["target"]["expr"].as_str())
}

/// The metric names a PromQL expression selects (with Grafana's variables substituted),
/// or the parser's error.
pub fn selected_metrics(expr: &str) -> Result<BTreeSet<String>, String> {
    struct Names(BTreeSet<String>);
    impl ExprVisitor for Names {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
            let selector = match expr {
                Expr::VectorSelector(selector) => Some(selector),
                Expr::MatrixSelector(matrix) => Some(&matrix.vs),
                _ => None,
            };
            self.0.extend(selector.and_then(|s| s.name.clone()));
            Ok(true)
        }
    }
    let parsed = promql_parser::parser::parse(&substitute(expr, "gateway-service"))?;
    let mut names = Names(BTreeSet::new());
    let Ok(_) = walk_expr(&mut names, &parsed);
    Ok(names.0)
}

/// Whether a query draws a latency percentile (and so should carry exemplars).
fn is_latency(expr: &str) -> bool {
    expr.contains("histogram_quantile")
}

/// A raw histogram bucket series: exemplars live there, not on recording rules
/// (`level:metric:operations`, always with a colon).
fn is_raw_bucket(metric: &str) -> bool {
    metric.ends_with("_bucket") && !metric.contains(':')
}

#[derive(Deserialize)]
struct DatasourcesFile {
    #[serde(default)]
    datasources: Vec<Datasource>,
}

#[derive(Deserialize)]
struct Datasource {
    uid: String,
}

/// The uids of the datasources in `grafana/provisioning/datasources/`.
pub fn provisioned_datasource_uids(root: &Path) -> anyhow::Result<BTreeSet<String>> {
    let dir = root
        .join("grafana")
        .join("provisioning")
        .join("datasources");
    let mut uids = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        let file: DatasourcesFile = marked_yaml::from_yaml(0, &text)
            .with_context(|| format!("{} is not a datasources file", path.display()))?;
        uids.extend(file.datasources.into_iter().map(|d| d.uid));
    }
    Ok(uids)
}

/// Everything wrong with the dashboards, one line each, naming dashboard and panel or
/// annotation.
pub fn lint(dashboards: &[(PathBuf, Value)], datasource_uids: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen_uids = BTreeSet::new();
    for (path, dashboard) in dashboards {
        let file = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let title = dashboard["title"].as_str().unwrap_or("");
        match dashboard["uid"].as_str() {
            Some(uid) if !uid.is_empty() => {
                if !seen_uids.insert(uid.to_owned()) {
                    problems.push(format!("{file}: uid `{uid}` is used by another dashboard"));
                }
            }
            _ => problems.push(format!(
                "{file}: no uid (links to it would break on every import)"
            )),
        }
        if title.is_empty() {
            problems.push(format!("{file}: no title"));
        }
        let mut panel_ids = BTreeSet::new();
        let mut shows_faultable_metrics = false;
        for panel in panels(dashboard) {
            let name = panel["title"].as_str().unwrap_or("(untitled)");
            let at = format!("{file}, panel \"{name}\"");
            if panel["type"] == "row" {
                continue;
            }
            if let Some(id) = panel["id"].as_u64()
                && !panel_ids.insert(id)
            {
                problems.push(format!("{at}: panel id {id} is used twice"));
            }
            if panel["description"].as_str().is_none_or(str::is_empty) {
                problems.push(format!(
                    "{at}: no description (say what question the panel answers)"
                ));
            }
            let targets: Vec<&Value> = panel["targets"].as_array().into_iter().flatten().collect();
            for source in std::iter::once(&panel["datasource"])
                .chain(targets.iter().map(|t| &t["datasource"]))
                .filter(|s| !s.is_null())
            {
                lint_datasource(&at, source, datasource_uids, &mut problems);
            }
            if targets.is_empty() {
                problems.push(format!("{at}: no query"));
            }
            for target in targets {
                let Some(expr) = target["expr"].as_str() else {
                    continue;
                };
                let Some(metrics) = lint_promql(&at, expr, &mut problems) else {
                    continue;
                };
                shows_faultable_metrics |= metrics
                    .iter()
                    .any(|m| FAULT_AFFECTED.iter().any(|f| m.contains(f)));
                if is_latency(expr) {
                    if target["exemplar"] != true {
                        problems.push(format!(
                            "{at}: a latency query without \"exemplar\": true (the dots that open a request's trace)"
                        ));
                    }
                    if !metrics.iter().any(|m| is_raw_bucket(m)) {
                        problems.push(format!(
                            "{at}: a latency query that reads no raw `_bucket` series, so it has no exemplars (recording rules carry none): {expr}"
                        ));
                    }
                }
            }
        }
        let mut marks_faults = false;
        for annotation in annotations(dashboard) {
            let name = annotation["name"].as_str().unwrap_or("(unnamed)");
            let at = format!("{file}, annotation \"{name}\"");
            lint_datasource(
                &at,
                &annotation["datasource"],
                datasource_uids,
                &mut problems,
            );
            let Some(expr) = annotation_expr(annotation) else {
                problems.push(format!("{at}: no query (`expr`)"));
                continue;
            };
            if let Some(metrics) = lint_promql(&at, expr, &mut problems) {
                marks_faults |= metrics.contains(FAULT_METRIC);
            }
        }
        if shows_faultable_metrics && !marks_faults {
            problems.push(format!(
                "{file}: its panels show what an injected fault changes, but no annotation on `{FAULT_METRIC}` marks the faults"
            ));
        }
    }
    problems
}

fn lint_datasource(
    at: &str,
    source: &Value,
    datasource_uids: &BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    match source["uid"].as_str() {
        Some(uid) if datasource_uids.contains(uid) => {}
        Some(uid) => problems.push(format!(
            "{at}: datasource uid `{uid}` is not provisioned (known: {})",
            datasource_uids
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => problems.push(format!("{at}: a datasource without a fixed uid")),
    }
}

/// The metrics `expr` selects, or `None` after noting that it does not parse.
fn lint_promql(at: &str, expr: &str, problems: &mut Vec<String>) -> Option<BTreeSet<String>> {
    selected_metrics(expr)
        .map_err(|error| problems.push(format!("{at}: the query does not parse ({error}): {expr}")))
        .ok()
}

impl DashboardsArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let root = workspace_root();
        let dashboards = load(&dashboards_dir())?;
        let uids = provisioned_datasource_uids(&root)?;
        let problems = lint(&dashboards, &uids);
        for problem in &problems {
            println!("FAIL  {problem}");
        }
        if !problems.is_empty() {
            bail!("{} problem(s) in grafana/dashboards/", problems.len());
        }
        println!(
            "ok    {} dashboards, {} panel queries, {} annotation queries: datasources provisioned, \
             PromQL parses, every panel described, latency panels carry exemplars, faults marked",
            dashboards.len(),
            panel_queries(&dashboards).len(),
            annotation_queries(&dashboards).len()
        );
        if self.check {
            return Ok(());
        }
        let local = reload_local_grafana().await?;
        let cluster = refresh_cluster_dashboards()?;
        if !local && !cluster {
            println!(
                "no Grafana reloaded: none runs here. A Grafana started later (`cargo xtask local` \
                 with Grafana on PATH, or `cargo xtask up`) loads grafana/dashboards/ as it starts."
            );
        }
        Ok(())
    }
}

/// The `grafana-dashboards` ConfigMap out of the rendered manifests.
pub fn dashboards_configmap(rendered: &str) -> anyhow::Result<String> {
    for document in serde_yaml_ng::Deserializer::from_str(rendered) {
        let value = serde_yaml_ng::Value::deserialize(document)?;
        if value["kind"] == "ConfigMap" && value["metadata"]["name"] == "grafana-dashboards" {
            return Ok(serde_yaml_ng::to_string(&value)?);
        }
    }
    bail!("the rendered manifests have no ConfigMap grafana-dashboards")
}

/// In the kind cluster, re-applies the dashboards ConfigMap alone. It has no hash suffix,
/// so the running pod gets the new files without a restart, but only when the kubelet
/// next syncs the ConfigMap into its volume. Whether it did so.
fn refresh_cluster_dashboards() -> anyhow::Result<bool> {
    use crate::{
        cluster::{CLUSTER, LOAD_RESTRICTOR, cluster_exists, kubectl},
        paths::{KIND_OVERLAY as OVERLAY, cluster_state as state_dir},
    };
    if crate::cmd::find_on_path("kind").is_none() {
        println!("--    kind cluster: none (kind is not installed)");
        return Ok(false);
    }
    // Without a Docker engine kind cannot list its clusters; that means no cluster runs,
    // which is no reason to fail a command that may have reloaded the local Grafana.
    match cluster_exists() {
        Ok(true) => {}
        Ok(false) => {
            println!("--    kind cluster {CLUSTER}: none");
            return Ok(false);
        }
        Err(error) => {
            println!("--    kind cluster {CLUSTER}: none found ({error:#})");
            return Ok(false);
        }
    }
    let rendered = crate::cmd::Cmd::new("kubectl", "rendering the manifests")
        .args(["kustomize", LOAD_RESTRICTOR, OVERLAY])
        .current_dir(workspace_root())
        .read()?;
    let dashboards = dashboards_configmap(&rendered)?;
    let path = state_dir().join("dashboards.yaml");
    std::fs::create_dir_all(state_dir())?;
    std::fs::write(&path, dashboards)?;
    kubectl(
        "applying the dashboards ConfigMap",
        ["apply", "-f", "target/cluster/dashboards.yaml"],
    )
    .run()?;
    println!(
        "ok    kind cluster {CLUSTER}: ConfigMap grafana-dashboards re-applied. The cluster's \
         Grafana (http://localhost:3000) shows the edit once the kubelet has synced the \
         ConfigMap into its pod, about a minute from now; no restart needed."
    );
    Ok(true)
}

/// The local mesh's Grafana, if it is the one answering on :3000, reloads
/// grafana/dashboards/ now rather than at its next rescan. Whether it did so.
///
/// Port 3000 alone does not say whose Grafana answers (the kind cluster publishes its own
/// there), so the local one is recognised by where it reads its provisioning from: this
/// checkout's grafana/provisioning/, as `cargo xtask local` starts it.
async fn reload_local_grafana() -> anyhow::Result<bool> {
    const GRAFANA: &str = "http://127.0.0.1:3000";
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let settings = client
        .get(format!("{GRAFANA}/api/admin/settings"))
        .basic_auth("admin", Some("admin"))
        .send()
        .await;
    let settings: Value = match settings {
        Err(_) => {
            println!("--    local Grafana: none (nothing answers on :3000)");
            return Ok(false);
        }
        Ok(response) if !response.status().is_success() => {
            println!(
                "--    local Grafana: none (what answers on :3000 refused the playground's \
                 admin/admin: {})",
                response.status()
            );
            return Ok(false);
        }
        Ok(response) => {
            serde_json::from_str(&response.text().await.unwrap_or_default()).unwrap_or_default()
        }
    };
    let provisioning = settings["paths"]["provisioning"].as_str().unwrap_or("");
    if Path::new(provisioning) != workspace_root().join("grafana").join("provisioning") {
        println!(
            "--    local Grafana: none (the Grafana on :3000 is provisioned from `{provisioning}`, \
             not this checkout's grafana/provisioning/: the kind cluster's, or another one)"
        );
        return Ok(false);
    }
    let url = format!("{GRAFANA}/api/admin/provisioning/dashboards/reload");
    let response = client
        .post(&url)
        .basic_auth("admin", Some("admin"))
        .send()
        .await
        .with_context(|| format!("asking the local Grafana to reload ({url})"))?;
    if !response.status().is_success() {
        bail!(
            "the local Grafana refused to reload ({}): {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    println!(
        "ok    local Grafana (http://localhost:3000): reloaded grafana/dashboards/ through its admin API"
    );
    Ok(true)
}
