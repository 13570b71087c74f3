//! `cargo xtask cluster up|down|status`: the kind cluster itself, idempotently.

use anyhow::Context as _;

use super::{CLUSTER, CONTEXT, Runner, cluster_exists, kind, kubectl};
use crate::cmd::Cmd;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask cluster up         # create the kind cluster monitoring-demo (if absent) and
                                 # make kind-monitoring-demo the current kubectl context
  cargo xtask cluster up --dry-run
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
    /// Create the cluster from manifests/kind.yaml, unless it exists, and make
    /// kind-monitoring-demo the current kubectl context (as kind does; `tilt up` needs it)
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

/// Creates the cluster unless it exists, then makes its context the current one, as
/// `kind create cluster` itself does: plain `kubectl` and `tilt up` then talk to the demo
/// cluster (the Tiltfile refuses any other). xtask's own kubectl calls name the context
/// explicitly all the same. Says which context was current before, to go back to it.
pub fn up(runner: Runner) -> anyhow::Result<()> {
    runner.require(&["docker", "kind", "kubectl"])?;
    let previous = if runner.dry_run {
        None
    } else {
        current_context()
    };
    if !runner.dry_run && cluster_exists()? {
        eprintln!("kind cluster {CLUSTER} exists");
    } else {
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
    }
    runner
        .run(
            Cmd::new("kubectl", format!("making {CONTEXT} the current context")).args([
                "config",
                "use-context",
                CONTEXT,
            ]),
        )
        .with_context(|| {
            format!(
                "if your kubeconfig lost the context {CONTEXT}, \
                 `kind export kubeconfig --name {CLUSTER}` writes it again"
            )
        })?;
    if !runner.dry_run {
        eprintln!("{}", context_switch_note(previous.as_deref()));
    }
    Ok(())
}

/// "current context: kind-monitoring-demo (was: prod-eu)", and how to go back.
fn context_switch_note(previous: Option<&str>) -> String {
    match previous {
        Some(previous) if previous == CONTEXT => {
            format!("current context: {CONTEXT} (it already was)")
        }
        Some(previous) => format!(
            "current context: {CONTEXT} (was: {previous}; back with `kubectl config use-context {previous}`)"
        ),
        None => format!("current context: {CONTEXT} (there was none)"),
    }
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
