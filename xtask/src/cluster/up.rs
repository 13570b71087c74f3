//! `cargo xtask up`: everything, in order, with progress: the cluster, the image, its
//! loading, the deployment, and the smoke test against the gateway's NodePort.

use std::time::Duration;

use super::{Runner, deploy, images, lifecycle};
use crate::{smoke::SmokeArgs, tools};

#[derive(Debug, clap::Args)]
#[command(after_help = format!("\
Examples:
  cargo xtask up            # kind cluster, image, load, deploy, smoke test
  cargo xtask up --dry-run  # the exact commands, in order

Afterwards kind-monitoring-demo is the current kubectl context (as after `kind create
cluster`; xtask names the one before), so plain kubectl and `tilt up` use the cluster.
UIs: gateway {GATEWAY}, {}.", tools::browsable_urls()))]
pub struct UpArgs {
    /// Print the commands instead of running them
    #[arg(long)]
    pub dry_run: bool,
}

use crate::ports::GATEWAY_URL as GATEWAY;

impl UpArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let runner = Runner {
            dry_run: self.dry_run,
        };
        runner.require(&["docker", "kind", "kubectl"])?;
        step(1, "the kind cluster");
        lifecycle::up(runner)?;
        step(2, "the mock-service binary and image");
        images::build_binary(runner)?;
        images::build_image(runner)?;
        step(3, "loading the image into the nodes");
        deploy::load(runner)?;
        step(4, "deploying and waiting for the rollouts");
        deploy::deploy(runner)?;
        step(5, "smoke test through the gateway NodePort");
        if runner.dry_run {
            println!("cargo xtask smoke --target {GATEWAY}");
            return Ok(());
        }
        wait_for_gateway().await;
        SmokeArgs {
            target: Some(GATEWAY.to_owned()),
        }
        .run()
        .await?;
        eprintln!(
            "\nThe mesh runs in kind: gateway {GATEWAY}, {}. Plain kubectl and `tilt up` use it \
             too (the current context is kind-monitoring-demo).",
            tools::browsable_urls()
        );
        Ok(())
    }
}

fn step(n: u32, what: &str) {
    eprintln!("[{n}/5] {what}");
}

/// The NodePort answers a little after the rollout: kube-proxy has to catch up.
async fn wait_for_gateway() {
    let client = reqwest::Client::new();
    for _ in 0..60 {
        if client
            .get(format!("{GATEWAY}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
