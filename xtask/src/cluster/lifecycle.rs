//! `cargo xtask cluster up|down|status`: the kind cluster itself, idempotently.

use super::{CLUSTER, CONTEXT, Runner, cluster_exists, kind, kubectl};
use crate::cmd::Cmd;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask cluster up         # create the kind cluster monitoring-demo (if absent)
  cargo xtask cluster status     # nodes and pods
  cargo xtask cluster down --dry-run")]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub action: ClusterAction,
    /// Print the commands instead of running them
    #[arg(long, global = true)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, clap::Subcommand)]
pub enum ClusterAction {
    /// Create the cluster from manifests/kind.yaml, unless it exists
    Up,
    /// Delete the cluster, if it exists
    Down,
    /// Show the cluster's nodes and the mesh's pods
    Status,
}

impl ClusterArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let runner = Runner {
            dry_run: self.dry_run,
        };
        match self.action {
            ClusterAction::Up => up(runner),
            ClusterAction::Down => down(runner),
            ClusterAction::Status => status(runner),
        }
    }
}

/// Creates the cluster unless it exists. kind makes its context the current one; the
/// previous current context is put back, so other tools keep pointing where they did.
pub fn up(runner: Runner) -> anyhow::Result<()> {
    runner.require(&["docker", "kind", "kubectl"])?;
    if !runner.dry_run && cluster_exists()? {
        eprintln!("kind cluster {CLUSTER} exists");
        return Ok(());
    }
    let previous = if runner.dry_run {
        None
    } else {
        current_context()
    };
    runner.run(kind(
        "creating the kind cluster",
        [
            "create",
            "cluster",
            "--name",
            CLUSTER,
            "--config",
            "manifests/kind.yaml",
            "--wait",
            "120s",
        ],
    ))?;
    if let Some(previous) = previous.filter(|context| context != CONTEXT) {
        runner.run(
            Cmd::new("kubectl", "restoring your current kubeconfig context").args([
                "config",
                "use-context",
                &previous,
            ]),
        )?;
        eprintln!(
            "your current context is still {previous}; xtask always passes --context {CONTEXT}"
        );
    }
    Ok(())
}

pub fn down(runner: Runner) -> anyhow::Result<()> {
    runner.require(&["kind"])?;
    if !runner.dry_run && !cluster_exists()? {
        eprintln!("kind cluster {CLUSTER} does not exist");
        return Ok(());
    }
    runner.run(kind(
        "deleting the kind cluster",
        ["delete", "cluster", "--name", CLUSTER],
    ))
}

fn status(runner: Runner) -> anyhow::Result<()> {
    runner.require(&["kind", "kubectl"])?;
    if !runner.dry_run && !cluster_exists()? {
        println!(
            "kind cluster {CLUSTER} does not exist: `cargo xtask up` creates it and deploys the mesh"
        );
        return Ok(());
    }
    runner.run(kubectl("listing nodes", ["get", "nodes", "-o", "wide"]))?;
    runner.run(kubectl(
        "listing pods",
        ["get", "pods", "-n", "services", "-o", "wide"],
    ))?;
    runner.run(kubectl(
        "listing pods",
        ["get", "pods", "-n", "monitoring", "-o", "wide"],
    ))
}

fn current_context() -> Option<String> {
    Cmd::new("kubectl", "reading the current context")
        .args(["config", "current-context"])
        .read()
        .ok()
        .filter(|context| !context.is_empty())
}
