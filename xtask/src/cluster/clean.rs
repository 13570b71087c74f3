//! `cargo xtask clean`: removes what the project created, and only that, wherever it
//! exists: a running local mesh and its containers, the kind cluster monitoring-demo, the
//! images xtask built (by their label), and the generated state under target/. What
//! cannot be reached (no kind, no Docker engine) is skipped with the reason; cargo's
//! build cache is left alone.

use super::{IMAGE_LABEL, Runner, lifecycle};
use crate::{
    cmd::{Cmd, find_on_path},
    local::{self, CONTAINER_LABEL},
    mesh::local::RunLock,
    paths::{GENERATED, in_repo, local_state},
};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask clean            # the local mesh, the cluster, our containers and images, target/{local,image,cluster,bench,bench-tools}
  cargo xtask clean --dry-run

Without kind, the cluster is skipped; without a Docker engine, the containers and images
are (each says so). It succeeds either way.")]
pub struct CleanArgs {
    /// Print the commands instead of running them
    #[arg(long)]
    pub dry_run: bool,
}

impl CleanArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let runner = Runner {
            dry_run: self.dry_run,
        };
        if runner.dry_run {
            println!("cargo xtask local --stop");
        } else if let Err(error) = local::stop().await {
            eprintln!("warning: could not stop the local mesh: {error:#}");
        }

        if find_on_path("kind").is_some() || runner.dry_run {
            lifecycle::down(runner)?;
        } else {
            eprintln!(
                "skipped the kind cluster: kind is not installed, so there is none to delete"
            );
        }

        if runner.dry_run || docker_answers() {
            remove_containers(runner)?;
            remove_images(runner)?;
        } else {
            eprintln!(
                "skipped containers and images: no Docker engine answers (`docker info`), so there are none to remove"
            );
        }

        if runner.dry_run {
            println!("remove {}", GENERATED.join(" "));
            return Ok(());
        }
        remove_generated()
    }
}

/// The images xtask built, found by their label.
fn remove_images(runner: Runner) -> anyhow::Result<()> {
    runner.run(Cmd::new("docker", "removing the images xtask built").args([
        "image",
        "prune",
        "--all",
        "--force",
        "--filter",
        &format!("label={IMAGE_LABEL}"),
    ]))
}

/// Removes the folders under target/ that xtask generates; target/local only while no
/// `cargo xtask local` holds its lock (one may be starting, building, now).
fn remove_generated() -> anyhow::Result<()> {
    for dir in GENERATED {
        let path = in_repo(dir);
        if !path.exists() {
            continue;
        }
        let _lock = if path == local_state() {
            match RunLock::try_take()? {
                Ok(lock) => Some(lock),
                Err(held) => {
                    eprintln!("skipped {dir}: {held}");
                    continue;
                }
            }
        } else {
            None
        };
        std::fs::remove_dir_all(&path)
            .map_err(|e| anyhow::anyhow!("removing {}: {e}", path.display()))?;
        eprintln!("removed {dir}");
    }
    Ok(())
}

fn docker_answers() -> bool {
    find_on_path("docker").is_some()
        && Cmd::new("docker", "asking the Docker engine")
            .arg("info")
            .succeeds()
            .unwrap_or(false)
}

/// The containers `cargo xtask local` started (Jaeger), found by their label.
fn remove_containers(runner: Runner) -> anyhow::Result<()> {
    let list = Cmd::new("docker", "listing the containers xtask started").args([
        "ps",
        "--all",
        "--quiet",
        "--filter",
        &format!("label={CONTAINER_LABEL}"),
    ]);
    if runner.dry_run {
        println!("{list}");
        println!("docker rm --force <each container listed>");
        return Ok(());
    }
    let ids = list.read()?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return Ok(());
    }
    runner.run(
        Cmd::new("docker", "removing the containers xtask started")
            .args(["rm", "--force"])
            .args(ids),
    )
}
