//! `cargo xtask scenario`: the demo scenarios of `incidents`' table as single commands.
//! Each sets up its faults, runs its traffic, says what to look at, and puts back what it
//! changed on every way out: the end, an error in any step, Ctrl+C (and, should xtask be
//! killed outright, the faults expire by themselves a minute after the scenario's planned
//! end). In the cluster, `degradation` also takes the classic step too, inventory-service
//! down to one replica, and scales it back to the count it had. `--verify` runs the
//! scenario's three phases and checks what it must show (`verify.rs`).

pub mod verify;

use anyhow::{Context as _, anyhow, bail};
use clap::{ValueEnum as _, builder::PossibleValuesParser};
use contract::admin::FaultSpec;
use incidents::Scenario;

use crate::{
    chaos,
    mesh::{RunningMesh, cluster},
    ports::GATEWAY_URL,
    traffic::{Preset, Target, TrafficArgs},
};

#[derive(Debug, clap::Args)]
#[command(after_help = after_help())]
pub struct ScenarioArgs {
    /// The scenario: normal, spike, errors or degradation (listed below)
    #[arg(value_parser = scenario_names(), hide_possible_values = true)]
    pub scenario: String,

    /// How long the traffic runs, in seconds [default: the scenario's] (--verify has
    /// --baseline, --fault and --recovery instead)
    #[arg(long, value_name = "SECS", conflicts_with = "verify")]
    pub duration: Option<u64>,

    /// Base URL of the gateway
    #[arg(long, value_name = "URL", default_value = GATEWAY_URL)]
    pub target: Target,

    /// Inject faults in the kind cluster's pods even if a local mesh is running
    #[arg(long)]
    pub cluster: bool,

    #[command(flatten)]
    pub verify: verify::VerifyArgs,
}

/// The scenarios, from the table, and examples.
fn after_help() -> String {
    let mut help = String::from("Scenarios (incidents/src/scenarios.rs):\n");
    for scenario in incidents::scenarios::all() {
        help.push_str(&format!("  {:<12} {}\n", scenario.name, scenario.summary));
    }
    help.push_str(
        "\nExamples:
  cargo xtask scenario normal                    # 3 minutes of the default traffic mix
  cargo xtask scenario errors --duration 120     # payment-service fails 30% of its requests
  cargo xtask scenario degradation --cluster     # in the kind cluster
  cargo xtask scenario errors --verify           # baseline, fault, recovery, each checked
  cargo xtask scenario errors --verify --baseline 30s --fault 60s --recovery 30s --json v.json",
    );
    help
}

/// The table's names, as the values clap accepts.
fn scenario_names() -> PossibleValuesParser {
    PossibleValuesParser::new(incidents::scenarios::names())
}

/// The scenario called `name`, from the table.
pub fn scenario(name: &str) -> anyhow::Result<Scenario> {
    incidents::scenarios::find(name).with_context(|| {
        format!(
            "no scenario {name:?}; the scenarios are {}",
            incidents::scenarios::names().join(", ")
        )
    })
}

/// The traffic preset a scenario names (a test keeps every name valid).
pub fn preset(scenario: &Scenario) -> anyhow::Result<Preset> {
    Preset::from_str(scenario.preset, false).map_err(|error| {
        anyhow!(
            "scenario {}: preset {}: {error}",
            scenario.name,
            scenario.preset
        )
    })
}

impl ScenarioArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let plan = scenario(&self.scenario)?;
        if self.verify.verify {
            return self.verify.run(&plan, self.target, self.cluster).await;
        }
        let traffic = preset(&plan)?;
        let duration = self.duration.unwrap_or(plan.duration_secs);
        let mesh = RunningMesh::find(self.cluster);
        for fault in &plan.faults {
            mesh.check_service(fault.service)?;
        }
        eprintln!(
            "Scenario {} for {duration} s on {}. What to look at:\n  {}\n",
            plan.name,
            mesh.describe(),
            plan.watch
        );
        let mut changes = Changes::default();
        // Ctrl+C while scaling, waiting for the rollout or setting faults stops the set-up
        // (a kubectl it ran is killed); during the traffic, the traffic stops by itself.
        // Either way, what was changed is put back below.
        let set_up = tokio::select! {
            result = set_up(&mesh, &plan, duration, &mut changes) => result,
            () = interrupted() => Err(anyhow!("interrupted (Ctrl+C) while setting the scenario up")),
        };
        let result = match set_up {
            Ok(()) => {
                let traffic = TrafficArgs {
                    duration: Some(duration),
                    preset: Some(traffic),
                    target: self.target,
                    ..TrafficArgs::default()
                };
                traffic.run().await
            }
            Err(error) => Err(error),
        };
        let undone = changes.undo(&mesh).await;
        match (result, undone) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(error), Ok(())) | (Ok(()), Err(error)) => Err(error),
            (Err(error), Err(undo)) => Err(anyhow!("{error:#}\n{undo:#}")),
        }
    }
}

/// Resolves on Ctrl+C (never, where there is no Ctrl+C to listen for).
pub(crate) async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Scales (in the cluster) and sets the plan's faults, noting each change in `changes`
/// before making it, so that a step that fails halfway is put back too.
pub(crate) async fn set_up(
    mesh: &RunningMesh,
    plan: &Scenario,
    duration: u64,
    changes: &mut Changes,
) -> anyhow::Result<()> {
    if let (RunningMesh::Cluster, Some(service)) = (mesh, plan.scale_to_one) {
        let replicas = cluster::replicas(service)?;
        eprintln!(
            "scaling {service} from {replicas} replicas to 1 (the classic way to degrade it)"
        );
        changes.scaled = Some((service, replicas));
        cluster::scale(service, 1).await?;
    }
    for fault in &plan.faults {
        let service = fault.service;
        let spec = FaultSpec {
            for_seconds: Some(duration + 60),
            ..fault.spec.clone()
        };
        changes.faulted.push(service);
        for line in chaos::apply(mesh, service, Some(&spec)).await? {
            eprintln!("fault set: {line}");
        }
    }
    Ok(())
}

/// What a scenario changed, to put back on every way out: the replicas a service had
/// before it was scaled, and the services whose fault it set (or tried to).
#[derive(Default)]
pub(crate) struct Changes {
    scaled: Option<(&'static str, u32)>,
    faulted: Vec<&'static str>,
}

impl Changes {
    /// Clears the faults and scales back; an error names what could not be put back and
    /// how to do it by hand.
    pub(crate) async fn undo(self, mesh: &RunningMesh) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        for service in self.faulted {
            match chaos::apply(mesh, service, None).await {
                Ok(lines) => lines
                    .iter()
                    .for_each(|line| eprintln!("fault cleared: {line}")),
                Err(error) => failures.push(format!(
                    "could not clear the fault of {service} ({error:#}); it expires by itself, \
                     or run: cargo xtask chaos {service} --clear{}",
                    if matches!(mesh, RunningMesh::Cluster) {
                        " --cluster"
                    } else {
                        ""
                    }
                )),
            }
        }
        if let Some((service, replicas)) = self.scaled {
            eprintln!("scaling {service} back to {replicas} replicas");
            if let Err(error) = cluster::scale(service, replicas).await {
                failures.push(format!(
                    "could not scale {service} back to {replicas} replicas ({error:#}); run: \
                     kubectl --context {} -n services scale deployment/{service} --replicas={replicas}",
                    crate::cluster::CONTEXT
                ));
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        bail!(
            "the scenario could not put everything back:\n  {}",
            failures.join("\n  ")
        )
    }
}
