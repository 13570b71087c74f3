//! `cargo xtask dashboards`: lint the Grafana dashboards against the provisioned
//! datasources and PromQL, and make a running local Grafana reload them.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::workspace_root;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask dashboards --check   # lint only: datasource uids, PromQL, descriptions
  cargo xtask dashboards           # lint, reload the local Grafana, refresh the cluster's ConfigMap")]
pub struct DashboardsArgs {
    /// Only lint; change nothing (without it: also make a running local Grafana reload
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

/// Everything wrong with the dashboards, one line each, naming dashboard and panel.
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
            let mut sources = vec![&panel["datasource"]];
            sources.extend(
                panel["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| &t["datasource"]),
            );
            for source in sources.into_iter().filter(|s| !s.is_null()) {
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
            let targets = panel["targets"].as_array().map_or(0, Vec::len);
            if targets == 0 {
                problems.push(format!("{at}: no query"));
            }
            for target in panel["targets"].as_array().into_iter().flatten() {
                let Some(expr) = target["expr"].as_str() else {
                    continue;
                };
                if let Err(error) =
                    promql_parser::parser::parse(&substitute(expr, "gateway-service"))
                {
                    problems.push(format!("{at}: the query does not parse ({error}): {expr}"));
                }
            }
        }
    }
    problems
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
        let queries = panel_queries(&dashboards).len();
        if !problems.is_empty() {
            bail!("{} problem(s) in grafana/dashboards/", problems.len());
        }
        println!(
            "ok    {} dashboards, {queries} queries: datasources provisioned, PromQL parses, every panel described",
            dashboards.len()
        );
        if self.check {
            return Ok(());
        }
        reload_local_grafana().await?;
        refresh_cluster_dashboards()
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

/// In the kind cluster, re-applies the dashboards ConfigMap alone (it has no hash
/// suffix, so Grafana's provider picks the new files up within 10 s, no restart).
fn refresh_cluster_dashboards() -> anyhow::Result<()> {
    use crate::cluster::{LOAD_RESTRICTOR, OVERLAY, cluster_exists, kubectl, state_dir};
    if crate::cmd::find_on_path("kind").is_none() || !cluster_exists()? {
        println!(
            "no kind cluster {}: nothing to refresh there",
            crate::cluster::CLUSTER
        );
        return Ok(());
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
    println!("ok    the cluster's Grafana picks the dashboards up within 10 s");
    Ok(())
}

/// Grafana reloads provisioned dashboards by itself every 10 s; this makes it now.
async fn reload_local_grafana() -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let url = "http://127.0.0.1:3000/api/admin/provisioning/dashboards/reload";
    match client
        .post(url)
        .basic_auth("admin", Some("admin"))
        .send()
        .await
    {
        Ok(response) if response.status().is_success() => {
            println!("ok    the local Grafana reloaded grafana/dashboards/");
            Ok(())
        }
        Ok(response) => bail!(
            "the local Grafana refused to reload ({}): {}",
            response.status(),
            response.text().await.unwrap_or_default()
        ),
        Err(_) => {
            println!(
                "no local Grafana answers on :3000; a running one picks up grafana/dashboards/ within 10 s"
            );
            Ok(())
        }
    }
}
