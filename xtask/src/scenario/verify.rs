//! `cargo xtask scenario NAME --verify`: the flags, where the tools are (the local mesh's
//! record, or the kind cluster's published ports), how the faults are set (the
//! scenario's own set-up and clean-up), and the output; the phases and the checks are
//! `incidents::verify`'s.

use std::{path::PathBuf, time::Duration};

use anyhow::{anyhow, bail};
use incidents::{Incident, Options, Phases, Scenario, Tools, Verification, panels, tools::Api};

use super::{Changes, interrupted, set_up};
use crate::{mesh::RunningMesh, traffic::Target, workspace_root};

/// Connections serving a phase's rate: enough for the default mix's slow requests
/// (0.5 to 2 s) at the table's highest rate.
const CONNECTIONS: u32 = 48;

/// The kind cluster's Prometheus and Alertmanager, published on the host (manifests/kind.yaml).
const CLUSTER_PROMETHEUS: &str = "http://127.0.0.1:9090";
const CLUSTER_ALERTMANAGER: &str = "http://127.0.0.1:9093";

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Run the scenario as three phases (baseline, fault, recovery) at a fixed rate each,
    /// and check what it must show against Prometheus and Alertmanager; exit 1 when an
    /// expectation fails
    #[arg(long)]
    pub verify: bool,

    /// With --verify: how long the baseline runs
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = humantime::parse_duration, requires = "verify")]
    pub baseline: Duration,

    /// With --verify: how long the fault phase runs
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = humantime::parse_duration, requires = "verify")]
    pub fault: Duration,

    /// With --verify: how long the recovery runs (a check over a longer window than this
    /// says "not checked")
    #[arg(long, value_name = "DURATION", default_value = "6m", value_parser = humantime::parse_duration, requires = "verify")]
    pub recovery: Duration,

    /// With --verify: evaluate the panels' queries over this window instead of their own
    /// `[1m]`/`[5m]` (for short phases), and take it as the rules' window
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "verify")]
    pub window: Option<Duration>,

    /// With --verify: how long a failing check is asked again before it fails
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = humantime::parse_duration, requires = "verify")]
    pub settle: Duration,

    /// With --verify: also write the phases and the verdicts as JSON to this file
    #[arg(long, value_name = "FILE", requires = "verify")]
    pub json: Option<PathBuf>,
}

impl VerifyArgs {
    pub async fn run(
        &self,
        scenario: &Scenario,
        target: Target,
        cluster: bool,
    ) -> anyhow::Result<()> {
        let mesh = RunningMesh::find(cluster);
        for fault in &scenario.faults {
            mesh.check_service(fault.service)?;
        }
        let tools = find_tools(&mesh, self.window).await;
        let options = Options {
            target,
            phases: Phases {
                baseline: self.baseline,
                fault: self.fault,
                recovery: self.recovery,
            },
            connections: CONNECTIONS,
            settle: self.settle,
        };
        eprintln!(
            "Verifying scenario {} on {}: Prometheus {}, Alertmanager {}",
            scenario.name,
            mesh.describe(),
            tools
                .prometheus
                .as_ref()
                .map_or("absent (its checks: not checked)", |a| a.base.as_str()),
            tools
                .alertmanager
                .as_ref()
                .map_or("absent", |a| a.base.as_str()),
        );
        let verification = verify_on(&mesh, scenario, &tools, &options).await?;
        self.report(&verification)
    }

    fn report(&self, verification: &Verification) -> anyhow::Result<()> {
        println!("{}", verification.verdict_table());
        if let Some(path) = &self.json {
            let json = serde_json::to_string_pretty(verification)?;
            std::fs::write(path, json)
                .map_err(|e| anyhow!("writing --json {}: {e}", path.display()))?;
            eprintln!("verification written to {}", path.display());
        }
        let failures = verification.failures();
        if !failures.is_empty() {
            let names: Vec<&str> = failures.iter().map(|v| v.expectation.as_str()).collect();
            bail!(
                "scenario {}: {} expectation(s) failed: {}",
                verification.scenario,
                failures.len(),
                names.join("; ")
            );
        }
        Ok(())
    }
}

/// Runs the verification of `scenario` on `mesh`, its faults set and cleared by the
/// scenario's own set-up, and put back on every way out (an error, Ctrl+C).
pub async fn verify_on(
    mesh: &RunningMesh,
    scenario: &Scenario,
    tools: &Tools,
    options: &Options,
) -> anyhow::Result<Verification> {
    let phases = options.phases;
    let lasting = (phases.baseline + phases.fault + phases.recovery).as_secs();
    let mut incident = MeshIncident {
        mesh,
        scenario,
        lasting,
        changes: Changes::default(),
    };
    let result = tokio::select! {
        result = incidents::verify(scenario, &mut incident, tools, options, |line| eprintln!("{line}")) => {
            result.map_err(anyhow::Error::from)
        }
        () = interrupted() => Err(anyhow!("interrupted (Ctrl+C) during the verification")),
    };
    let undone = std::mem::take(&mut incident.changes).undo(mesh).await;
    match (result, undone) {
        (Ok(verification), Ok(())) => Ok(verification),
        (Err(error), Ok(())) => Err(error),
        (Ok(_), Err(error)) => Err(error),
        (Err(error), Err(undo)) => Err(anyhow!("{error:#}\n{undo:#}")),
    }
}

/// The tools of the mesh that answer: the local mesh's from its record, the cluster's at
/// their published ports.
pub async fn find_tools(mesh: &RunningMesh, window: Option<Duration>) -> Tools {
    let (prometheus, alertmanager) = match mesh {
        RunningMesh::Local(local) => {
            let url = |name: &str| {
                local
                    .tools
                    .iter()
                    .find(|tool| tool.name == name)
                    .map(|tool| tool.url.clone())
            };
            (url("prometheus"), url("alertmanager"))
        }
        RunningMesh::Cluster => (
            Some(CLUSTER_PROMETHEUS.to_owned()),
            Some(CLUSTER_ALERTMANAGER.to_owned()),
        ),
    };
    Tools {
        prometheus: answering(prometheus.map(|url| Api::prometheus(&url))).await,
        alertmanager: answering(alertmanager.map(|url| Api::alertmanager(&url))).await,
        dashboards: panels::in_checkout(&workspace_root()),
        window,
    }
}

async fn answering(api: Option<Api>) -> Option<Api> {
    let api = api?;
    api.ready().await.then_some(api)
}

/// The scenario's faults on the running mesh, through `scenario`'s own set-up (which
/// notes each change before making it) and clean-up.
struct MeshIncident<'m> {
    mesh: &'m RunningMesh,
    scenario: &'m Scenario,
    /// The faults expire by themselves a minute after this many seconds.
    lasting: u64,
    changes: Changes,
}

impl Incident for MeshIncident<'_> {
    async fn inject(&mut self) -> Result<(), String> {
        set_up(self.mesh, self.scenario, self.lasting, &mut self.changes)
            .await
            .map_err(|e| format!("{e:#}"))
    }

    async fn clear(&mut self) -> Result<(), String> {
        std::mem::take(&mut self.changes)
            .undo(self.mesh)
            .await
            .map_err(|e| format!("{e:#}"))
    }
}
