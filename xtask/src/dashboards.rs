//! `cargo xtask dashboards`: lint the Grafana dashboards against the provisioned
//! datasources and PromQL (panels and annotations), and make the Grafana that runs here
//! show the edited files: the local mesh's, through its admin API, or the kind cluster's,
//! by re-applying its dashboards ConfigMap.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use incidents::panels::runnable;
use serde::Deserialize;
use serde_json::Value;

use crate::paths::{GRAFANA_DASHBOARDS, GRAFANA_PROVISIONING, in_repo, workspace_root};

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

/// `grafana/dashboards/`, absolute: the dashboards Grafana provisions.
pub fn dashboards_dir() -> PathBuf {
    in_repo(GRAFANA_DASHBOARDS)
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
/// its variables still in: see [`runnable`]).
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

/// The metric names a PromQL expression selects (Grafana's variables substituted), or why
/// it does not parse: what the rules that need PromQL's syntax tree ask (a latency query
/// reads a raw `_bucket` series; a dashboard that shows what a fault changes marks faults).
///
/// xtask carries no PromQL parser: promql-parser, with the grammar toolchain its build
/// script runs (cfgrammar, lrlex, lrpar, compiled for the build host too), was 48 of the
/// 277 units the first `cargo xtask local` compiled, for one command that edits
/// dashboards. The test suite passes promql-parser's reading to [`lint`] (a
/// dev-dependency); `cargo xtask dashboards` checks the syntax with the real Prometheus
/// parser, `promtool`, when it is on PATH ([`promql_syntax_problems`]).
pub type SelectedMetrics<'a> = &'a dyn Fn(&str) -> Result<BTreeSet<String>, String>;

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
    let dir = root.join(GRAFANA_PROVISIONING).join("datasources");
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
/// annotation. The rules that read PromQL's syntax tree run only with `promql` (see
/// [`SelectedMetrics`]); without it a query's text is not examined beyond its latency
/// function.
pub fn lint(
    dashboards: &[(PathBuf, Value)],
    datasource_uids: &BTreeSet<String>,
    promql: Option<SelectedMetrics>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen_uids = BTreeSet::new();
    for (path, dashboard) in dashboards {
        let mut lint = DashboardLint {
            file: path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            datasource_uids,
            promql,
            problems: &mut problems,
        };
        lint.identity(dashboard, &mut seen_uids);
        let shows_faultable_metrics = lint.panels(dashboard);
        let marks_faults = lint.annotations(dashboard);
        if promql.is_some() && shows_faultable_metrics && !marks_faults {
            lint.problems.push(format!(
                "{}: its panels show what an injected fault changes, but no annotation on `{FAULT_METRIC}` marks the faults",
                lint.file
            ));
        }
    }
    problems
}

/// The lint of one dashboard file.
struct DashboardLint<'a> {
    file: String,
    datasource_uids: &'a BTreeSet<String>,
    promql: Option<SelectedMetrics<'a>>,
    problems: &'a mut Vec<String>,
}

impl DashboardLint<'_> {
    /// Its uid (unique among `seen_uids`) and title.
    fn identity(&mut self, dashboard: &Value, seen_uids: &mut BTreeSet<String>) {
        let file = &self.file;
        match dashboard["uid"].as_str() {
            Some(uid) if !uid.is_empty() => {
                if !seen_uids.insert(uid.to_owned()) {
                    self.problems
                        .push(format!("{file}: uid `{uid}` is used by another dashboard"));
                }
            }
            _ => self.problems.push(format!(
                "{file}: no uid (links to it would break on every import)"
            )),
        }
        if dashboard["title"].as_str().unwrap_or("").is_empty() {
            self.problems.push(format!("{file}: no title"));
        }
    }

    /// Every panel; whether one shows a metric that an injected fault changes.
    fn panels(&mut self, dashboard: &Value) -> bool {
        let mut panel_ids = BTreeSet::new();
        let mut shows_faultable_metrics = false;
        for panel in panels(dashboard) {
            if panel["type"] == "row" {
                continue;
            }
            let name = panel["title"].as_str().unwrap_or("(untitled)");
            let at = format!("{}, panel \"{name}\"", self.file);
            if let Some(id) = panel["id"].as_u64()
                && !panel_ids.insert(id)
            {
                self.problems
                    .push(format!("{at}: panel id {id} is used twice"));
            }
            if panel["description"].as_str().is_none_or(str::is_empty) {
                self.problems.push(format!(
                    "{at}: no description (say what question the panel answers)"
                ));
            }
            let targets: Vec<&Value> = panel["targets"].as_array().into_iter().flatten().collect();
            for source in std::iter::once(&panel["datasource"])
                .chain(targets.iter().map(|t| &t["datasource"]))
                .filter(|s| !s.is_null())
            {
                self.datasource(&at, source);
            }
            if targets.is_empty() {
                self.problems.push(format!("{at}: no query"));
            }
            for target in targets {
                shows_faultable_metrics |= self.target(&at, target);
            }
        }
        shows_faultable_metrics
    }

    /// One query of a panel; whether it shows a metric that an injected fault changes.
    fn target(&mut self, at: &str, target: &Value) -> bool {
        let Some(expr) = target["expr"].as_str() else {
            return false;
        };
        if is_latency(expr) && target["exemplar"] != true {
            self.problems.push(format!(
                "{at}: a latency query without \"exemplar\": true (the dots that open a request's trace)"
            ));
        }
        let Some(metrics) = self.selected_metrics(at, expr) else {
            return false;
        };
        if is_latency(expr) && !metrics.iter().any(|m| is_raw_bucket(m)) {
            self.problems.push(format!(
                "{at}: a latency query that reads no raw `_bucket` series, so it has no exemplars (recording rules carry none): {expr}"
            ));
        }
        metrics
            .iter()
            .any(|m| FAULT_AFFECTED.iter().any(|f| m.contains(f)))
    }

    /// Every annotation; whether one marks faults (reads [`FAULT_METRIC`]).
    fn annotations(&mut self, dashboard: &Value) -> bool {
        let mut marks_faults = false;
        for annotation in annotations(dashboard) {
            let name = annotation["name"].as_str().unwrap_or("(unnamed)");
            let at = format!("{}, annotation \"{name}\"", self.file);
            self.datasource(&at, &annotation["datasource"]);
            let Some(expr) = annotation_expr(annotation) else {
                self.problems.push(format!("{at}: no query (`expr`)"));
                continue;
            };
            if let Some(metrics) = self.selected_metrics(&at, expr) {
                marks_faults |= metrics.contains(FAULT_METRIC);
            }
        }
        marks_faults
    }

    fn datasource(&mut self, at: &str, source: &Value) {
        lint_datasource(at, source, self.datasource_uids, self.problems);
    }

    /// The metrics `expr` selects: `None` without a PromQL reader, or after noting that
    /// it does not parse.
    fn selected_metrics(&mut self, at: &str, expr: &str) -> Option<BTreeSet<String>> {
        let read = self.promql?;
        read(&runnable(expr, Some("gateway-service"), None))
            .map_err(|error| {
                self.problems
                    .push(format!("{at}: the query does not parse ({error}): {expr}"));
            })
            .ok()
    }
}

/// Every PromQL query of the dashboards (panels and annotations), with where it is
/// (`file, panel "title"`), as [`lint`] names places.
pub fn located_queries(dashboards: &[(PathBuf, Value)]) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for (path, dashboard) in dashboards {
        let file = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        for panel in panels(dashboard) {
            let name = panel["title"].as_str().unwrap_or("(untitled)");
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    queries.push((format!("{file}, panel \"{name}\""), expr.to_owned()));
                }
            }
        }
        for annotation in annotations(dashboard) {
            let name = annotation["name"].as_str().unwrap_or("(unnamed)");
            if let Some(expr) = annotation_expr(annotation) {
                queries.push((format!("{file}, annotation \"{name}\""), expr.to_owned()));
            }
        }
    }
    queries
}

/// The name of the recording rule that carries query `index` in the file promtool checks.
fn rule_name(index: usize) -> String {
    format!("dashboard_query_{index}")
}

/// Every query that Prometheus's own parser rejects, one line each naming where it is:
/// promtool checks a rules file with one recording rule per query (Grafana's variables
/// substituted). `None` when promtool is not on PATH.
pub fn promql_syntax_problems(queries: &[(String, String)]) -> anyhow::Result<Option<Vec<String>>> {
    let Some(promtool) = crate::cmd::find_on_path("promtool") else {
        return Ok(None);
    };
    let rules: Vec<serde_json::Value> = queries
        .iter()
        .enumerate()
        .map(|(index, (_, expr))| {
            serde_json::json!({ "record": rule_name(index), "expr": runnable(expr, Some("gateway-service"), None) })
        })
        .collect();
    // A name of its own for each check, even for two at once in one process (the tests).
    static CHECKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let check = CHECKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = std::env::temp_dir().join(format!(
        "xtask-dashboard-queries-{}-{check}.rules.yml",
        std::process::id()
    ));
    // JSON is YAML, and serde_json quotes every expression safely.
    let groups = serde_json::json!({ "groups": [{ "name": "dashboards", "rules": rules }] });
    std::fs::write(&file, groups.to_string())
        .with_context(|| format!("writing {}", file.display()))?;
    let verdict = crate::cmd::Cmd::new(promtool, "checking the dashboards' PromQL")
        .args(["check", "rules"])
        .arg(&file)
        .verdict();
    let _ = std::fs::remove_file(&file);
    let (passed, said) = verdict?;
    if passed {
        return Ok(Some(Vec::new()));
    }
    let problems = queries
        .iter()
        .enumerate()
        .filter_map(|(index, (at, expr))| {
            let marker = format!("\"{}\": ", rule_name(index));
            let line = said.lines().find(|line| line.contains(&marker))?;
            let error = &line[line.find(&marker)? + marker.len()..];
            Some(format!("{at}: the query does not parse ({error}): {expr}"))
        })
        .collect::<Vec<_>>();
    if problems.is_empty() {
        bail!("promtool rejected the dashboards' queries, naming none of them:\n{said}");
    }
    Ok(Some(problems))
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

impl DashboardsArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        check_dashboards()?;
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

/// The lint, and the PromQL syntax by promtool when it is on PATH; prints each problem
/// and fails when there is one.
fn check_dashboards() -> anyhow::Result<()> {
    let dashboards = load(&dashboards_dir())?;
    let uids = provisioned_datasource_uids(&workspace_root())?;
    let mut problems = lint(&dashboards, &uids, None);
    let syntax = promql_syntax_problems(&located_queries(&dashboards))?;
    problems.extend(syntax.iter().flatten().cloned());
    for problem in &problems {
        println!("FAIL  {problem}");
    }
    if !problems.is_empty() {
        bail!("{} problem(s) in grafana/dashboards/", problems.len());
    }
    println!(
        "ok    {} dashboards, {} panel queries, {} annotation queries: datasources provisioned, \
         every panel described, latency panels ask for exemplars{}",
        dashboards.len(),
        panel_queries(&dashboards).len(),
        annotation_queries(&dashboards).len(),
        if syntax.is_some() {
            ", PromQL parses (promtool)"
        } else {
            ""
        }
    );
    if syntax.is_none() {
        println!(
            "--    PromQL syntax not checked: promtool is not on PATH. {}",
            crate::cmd::how_to_get("promtool")
        );
    }
    println!(
        "--    the rules that read PromQL's syntax tree (latency panels read raw `_bucket` \
         series, faults are marked) run in the tests: cargo test -p xtask --test it -- grafana::"
    );
    Ok(())
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
        paths::{CLUSTER_STATE, KIND_OVERLAY as OVERLAY, cluster_state as state_dir},
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
        ["apply", "-f", &format!("{CLUSTER_STATE}/dashboards.yaml")],
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
    if Path::new(provisioning) != in_repo(GRAFANA_PROVISIONING) {
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
