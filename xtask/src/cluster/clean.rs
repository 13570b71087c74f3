//! `cargo xtask clean`: removes what the project created, and only that: the kind
//! cluster monitoring-demo, the images xtask built (by their label), a running local
//! mesh, and the generated state under target/. Cargo's build cache is left alone.

use super::{IMAGE_LABEL, Runner, lifecycle};
use crate::{cmd::Cmd, local, workspace_root};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask clean            # delete the cluster, our images, target/{local,image,cluster,bench,bench-tools}
  cargo xtask clean --dry-run")]
pub struct CleanArgs {
    /// Print the commands instead of running them
    #[arg(long)]
    pub dry_run: bool,
}

/// The directories xtask generates, relative to the repository root (`bench-tools`: the
/// oha that `cargo xtask bench` installed, if it did).
const GENERATED: [&str; 5] = [
    "target/local",
    "target/image",
    "target/cluster",
    "target/bench",
    "target/bench-tools",
];

impl CleanArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let runner = Runner {
            dry_run: self.dry_run,
        };
        if runner.dry_run {
            println!("cargo xtask local --stop");
        } else {
            local::LocalArgs {
                stop: true,
                release: false,
                no_observability: false,
                topology: None,
            }
            .run()
            .await?;
        }
        lifecycle::down(runner)?;
        runner.require(&["docker"])?;
        runner.run(Cmd::new("docker", "removing the images xtask built").args([
            "image",
            "prune",
            "--all",
            "--force",
            "--filter",
            &format!("label={IMAGE_LABEL}"),
        ]))?;
        if runner.dry_run {
            println!("remove {}", GENERATED.join(" "));
            return Ok(());
        }
        for dir in GENERATED {
            let path = workspace_root().join(dir);
            if path.exists() {
                std::fs::remove_dir_all(&path)
                    .map_err(|e| anyhow::anyhow!("removing {}: {e}", path.display()))?;
                eprintln!("removed {dir}");
            }
        }
        Ok(())
    }
}
