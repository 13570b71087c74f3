//! The kind cluster path: `cluster up|down|status`, `images`, `load`, `deploy`, `up` and
//! `clean`. Every command names the project's cluster explicitly (`kind --name
//! monitoring-demo`, `kubectl --context kind-monitoring-demo`), never relying on the
//! current context; only `cluster up` (and `up`) change it, to kind-monitoring-demo, as
//! `kind create cluster` does, for plain kubectl and `tilt up`. `--dry-run` prints the
//! exact commands instead of running them.

pub mod clean;
pub mod deploy;
pub mod images;
pub mod lifecycle;
pub mod up;

use anyhow::bail;

use crate::{
    cmd::{Cmd, find_on_path, how_to_get},
    paths::workspace_root,
};

/// The kind cluster this project creates, and the only one it acts on.
pub const CLUSTER: &str = "monitoring-demo";
/// Its kubeconfig context, passed to every kubectl call.
pub const CONTEXT: &str = "kind-monitoring-demo";
/// The config files live at the repository root, shared with `cargo xtask local`, so the
/// manifests are rendered without kustomize's "files under the kustomization" rule.
pub const LOAD_RESTRICTOR: &str = "--load-restrictor=LoadRestrictionsNone";
/// The image name the manifests use (`mock-service:dev`, retagged at deploy).
pub const IMAGE: &str = "mock-service";
/// A label on every image xtask builds, so `clean` removes those and nothing else.
pub const IMAGE_LABEL: &str = "io.observability-playground.built-by=xtask";

/// Runs commands, or with `--dry-run` prints them (one per line, on stdout) instead.
#[derive(Clone, Copy, Debug)]
pub struct Runner {
    pub dry_run: bool,
}

impl Runner {
    pub fn run(self, cmd: Cmd) -> anyhow::Result<()> {
        if self.dry_run {
            println!("{cmd}");
            Ok(())
        } else {
            cmd.run()
        }
    }

    /// Fails, naming every missing tool with how to get it, before anything runs.
    pub fn require(self, tools: &[&str]) -> anyhow::Result<()> {
        if self.dry_run {
            return Ok(());
        }
        let missing: Vec<String> = tools
            .iter()
            .filter(|tool| find_on_path(tool).is_none())
            .map(|tool| format!("  {tool}: {}", how_to_get(tool)))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        bail!("missing tools:\n{}", missing.join("\n"))
    }
}

/// `kubectl --context kind-monitoring-demo ARGS`, run from the repository root.
pub fn kubectl<I, S>(purpose: &str, args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Cmd::new("kubectl", purpose)
        .args(["--context", CONTEXT])
        .args(args)
        .current_dir(workspace_root())
}

/// `kind ARGS`, run from the repository root.
pub fn kind<I, S>(purpose: &str, args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Cmd::new("kind", purpose)
        .args(args)
        .current_dir(workspace_root())
}

/// Whether the project's kind cluster exists.
pub fn cluster_exists() -> anyhow::Result<bool> {
    let clusters = kind("listing kind clusters", ["get", "clusters"]).read()?;
    Ok(clusters.lines().any(|line| line.trim() == CLUSTER))
}

/// The deployments to wait for: the seven services, then the observability stack.
pub fn deployments() -> Vec<(&'static str, String)> {
    let mut all: Vec<(&str, String)> = contract::topology::Topology::built_in()
        .service_names()
        .into_iter()
        .map(|name| ("services", name.to_owned()))
        .collect();
    all.extend(
        [
            "prometheus",
            "alertmanager",
            "grafana",
            "otel-collector",
            "jaeger",
        ]
        .map(|name| ("monitoring", name.to_owned())),
    );
    all
}
