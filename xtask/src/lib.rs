//! The commands behind `cargo xtask`: the module list and the command line, each command
//! dispatched to its module (`main.rs` only parses). Shared helpers live in modules of
//! their own (`paths`, `cmd`, `ports`, ...), never here.

pub mod bench;
pub mod chaos;
pub mod cluster;
pub mod cmd;
pub mod codegen;
pub mod dashboards;
pub mod drill;
pub mod identity;
pub mod local;
pub mod logs;
pub mod mesh;
pub mod paths;
pub mod ports;
pub mod prometheus_config;
pub mod readiness;
pub mod scenario;
pub mod smoke;
pub mod supervisor;
pub mod tools;
pub mod traffic;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Run, drive and check the observability playground",
    after_help = "\
Examples:
  cargo xtask local                     # the mesh and the tools on PATH, on this machine
  cargo xtask smoke                     # pass/fail checks against the gateway, localhost:30080
  cargo xtask traffic --duration 600    # ten minutes of the default traffic mix
  cargo xtask bench                     # measure it all; results in docs/benchmarks.md"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the seven services (and Prometheus, Grafana, Jaeger if installed) as local processes
    Local(local::LocalArgs),
    /// Send realistic traffic to the gateway; report throughput, latency and errors
    Traffic(Box<traffic::TrafficArgs>),
    /// Check health, data, action, error, and that the metrics counted them: pass or fail,
    /// per check
    Smoke(smoke::SmokeArgs),
    /// Lint the Grafana dashboards and reload them in the running Grafana (local or kind)
    Dashboards(dashboards::DashboardsArgs),
    /// Run a demo scenario (normal, spike, errors, degradation): faults, traffic, what to
    /// watch
    Scenario(scenario::ScenarioArgs),
    /// Inject or clear faults (latency, errors, an unreachable dependency) in a service
    Chaos(chaos::ChaosArgs),
    /// Incident practice: a hidden fault, traffic, and your answer, scored and revealed
    Drill(drill::DrillArgs),
    /// Show the services' logs (local or cluster), or one trace's lines from every service
    Logs(logs::LogsArgs),
    /// Create, delete or inspect the kind cluster monitoring-demo
    Cluster(cluster::lifecycle::ClusterArgs),
    /// Build the static service binary on the host and its image, tagged by content
    Images(cluster::images::ImagesArgs),
    /// Load the image built last into the kind nodes
    Load(cluster::deploy::LoadArgs),
    /// Apply the kind overlay with that image and wait for every rollout
    Deploy(cluster::deploy::DeployArgs),
    /// All of it in order: cluster, image, load, deploy, smoke test
    Up(cluster::up::UpArgs),
    /// Delete the cluster, the images xtask built and the generated state
    Clean(cluster::clean::CleanArgs),
    /// Write the cluster's per-service manifests, NetworkPolicies and Tilt's service list
    /// from the topology (--check: only compare)
    Codegen(codegen::CodegenArgs),
    /// Measure throughput, telemetry cost, memory, start-up and the load generator
    /// against peers, in one run; write docs/benchmarks.md
    Bench(bench::BenchArgs),
}

impl Command {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Local(args) => args.run().await,
            Command::Traffic(args) => args.run().await,
            Command::Smoke(args) => args.run().await,
            Command::Dashboards(args) => args.run().await,
            Command::Chaos(args) => args.run().await,
            Command::Drill(args) => args.run().await,
            Command::Logs(args) => args.run().await,
            Command::Scenario(args) => args.run().await,
            Command::Cluster(args) => args.run(),
            Command::Images(args) => args.run(),
            Command::Load(args) => args.run(),
            Command::Deploy(args) => args.run(),
            Command::Up(args) => args.run().await,
            Command::Clean(args) => args.run().await,
            Command::Codegen(args) => args.run(),
            Command::Bench(args) => args.run().await,
        }
    }
}
