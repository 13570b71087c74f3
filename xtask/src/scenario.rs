//! `cargo xtask scenario`: the guide's four demo scenarios as single commands. Each sets
//! up its faults, runs its traffic, says what to look at, and puts back what it changed
//! on every way out: the end, an error in any step, Ctrl+C (and, should xtask be killed
//! outright, the faults expire by themselves a minute after the scenario's planned end).
//! In the cluster, `degradation` also takes the guide's own step, inventory-service down
//! to one replica, and scales it back to the count it had.

use anyhow::{anyhow, bail};
use contract::admin::{FaultSpec, Latency};

use crate::{
    chaos,
    mesh::{RunningMesh, cluster},
    ports::GATEWAY_URL,
    traffic::{Scenario, Target, TrafficArgs},
};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask scenario normal                    # 3 minutes of the default traffic mix
  cargo xtask scenario spike                     # 200 concurrent POST /api/action
  cargo xtask scenario errors --duration 120     # payment-service fails 30% of its requests
  cargo xtask scenario degradation               # inventory-service turns slow")]
pub struct ScenarioArgs {
    /// normal (3 minutes of traffic), spike (200 concurrent POST /api/action), errors
    /// (payment-service fails 30% of its requests under normal traffic) or degradation
    /// (inventory-service 200 to 800 ms slower under normal traffic; in the cluster also
    /// down to one replica)
    // The enum's own descriptions are those of `traffic --scenario`, which sends the
    // traffic only; here the scenario also sets its faults.
    #[arg(value_enum, hide_possible_values = true)]
    pub scenario: Scenario,

    /// How long the traffic runs, in seconds [default: the scenario's]
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,

    /// Base URL of the gateway
    #[arg(long, value_name = "URL", default_value = GATEWAY_URL)]
    pub target: Target,

    /// Inject faults in the kind cluster's pods even if a local mesh is running
    #[arg(long)]
    pub cluster: bool,
}

struct Plan {
    faults: Vec<(&'static str, FaultSpec)>,
    /// In the cluster: this service runs with one replica meanwhile.
    scale_to_one: Option<&'static str>,
    traffic: Scenario,
    duration: u64,
    watch: &'static str,
}

fn plan(scenario: Scenario) -> Plan {
    match scenario {
        Scenario::Normal => Plan {
            faults: vec![],
            scale_to_one: None,
            traffic: Scenario::Normal,
            duration: 180,
            watch: "Grafana, Mesh / Overview: steady request rate by service; the gateway's p95 \
                    held up by /api/slow (0.5 to 2 s by design) while the services behind it stay \
                    fast; a flat error line (the designed /api/error). Jaeger: service \
                    gateway-service, a POST /api/action trace has ten server spans over seven services.",
        },
        Scenario::Spike => Plan {
            faults: vec![],
            scale_to_one: None,
            traffic: Scenario::Spike,
            duration: 120,
            watch: "Grafana, Mesh / Overview: a spike in request rate and in p95/p99 latency; \
                    Mesh / Service (gateway-service): CPU climbs. Jaeger: the spike's traces queue \
                    behind each other (long gaps before the first child span).",
        },
        Scenario::Errors => Plan {
            faults: vec![(
                "payment-service",
                FaultSpec {
                    error_rate: Some(0.3),
                    error_status: Some(500),
                    ..FaultSpec::default()
                },
            )],
            scale_to_one: None,
            traffic: Scenario::Normal,
            duration: 60,
            watch: "Grafana, Mesh / Overview: error rate and percentage rise; Mesh / Service \
                    (payment-service): 500s on /api/action and fault_injections_total; order-service \
                    and gateway-service answer 502 (Errors by endpoint and status). Jaeger: red \
                    payment-service spans deep in POST /api/action traces, their parents red too.",
        },
        Scenario::Degradation => Plan {
            faults: vec![(
                "inventory-service",
                FaultSpec {
                    latency_ms: Some(Latency::Between([200, 800])),
                    ..FaultSpec::default()
                },
            )],
            scale_to_one: Some("inventory-service"),
            traffic: Scenario::Normal,
            duration: 120,
            watch: "Grafana, Mesh / Overview: p95 of product-service and gateway-service climbs; \
                    Mesh / Inter-service: client-side latency of product-service -> inventory-service \
                    rises, then gateway-service -> product-service. Jaeger: long inventory-service \
                    spans (event `fault injected: added latency`) under every product-service span.",
        },
    }
}

impl ScenarioArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let plan = plan(self.scenario);
        let duration = self.duration.unwrap_or(plan.duration);
        let mesh = RunningMesh::find(self.cluster);
        for (service, _) in &plan.faults {
            mesh.check_service(service)?;
        }
        eprintln!(
            "Scenario {:?} for {duration} s on {}. What to look at:\n  {}\n",
            self.scenario,
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
                    scenario: Some(plan.traffic),
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
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Scales (in the cluster) and sets the plan's faults, noting each change in `changes`
/// before making it, so that a step that fails halfway is put back too.
async fn set_up(
    mesh: &RunningMesh,
    plan: &Plan,
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
    for (service, fault) in &plan.faults {
        let fault = FaultSpec {
            for_seconds: Some(duration + 60),
            ..fault.clone()
        };
        changes.faulted.push(service);
        for line in chaos::apply(mesh, service, Some(&fault)).await? {
            eprintln!("fault set: {line}");
        }
    }
    Ok(())
}

/// What a scenario changed, to put back on every way out: the replicas a service had
/// before it was scaled, and the services whose fault it set (or tried to).
#[derive(Default)]
struct Changes {
    scaled: Option<(&'static str, u32)>,
    faulted: Vec<&'static str>,
}

impl Changes {
    /// Clears the faults and scales back; an error names what could not be put back and
    /// how to do it by hand.
    async fn undo(self, mesh: &RunningMesh) -> anyhow::Result<()> {
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
