//! `cargo xtask scenario NAME --verify`: three phases (baseline, fault, recovery), each
//! under a fixed open-model rate with its own table, then every expectation of the
//! scenario's table checked against the tools, and a verdict table.

use std::{fmt::Write as _, time::Duration};

use loadgen::{Mix, Plan, Rate, Report, Slo, Target, Think};
use serde::Serialize;

use crate::{
    checks::{self, Status, Tools, Verdict},
    scenarios::{Phase, Scenario},
};

/// The gateway-availability SLO of `prometheus/rules/slo.yml` (99.5%), as each phase's
/// objective.
pub const PHASE_SLO: &str = "errors<0.5%";

/// How the faults of a scenario are set and cleared: by the caller, which knows where
/// the mesh runs (local processes, or pods through kubectl).
// Used only through generics here and in xtask, never as `dyn` or across threads, so a
// plain `async fn` is enough.
#[allow(async_fn_in_trait)]
pub trait Incident {
    /// Sets the scenario's faults (and any other change it makes).
    async fn inject(&mut self) -> Result<(), String>;
    /// Puts back what `inject` changed.
    async fn clear(&mut self) -> Result<(), String>;
}

/// How long each phase runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Phases {
    pub baseline: Duration,
    pub fault: Duration,
    pub recovery: Duration,
}

impl Phases {
    pub fn length(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Baseline => self.baseline,
            Phase::Fault => self.fault,
            Phase::Recovery => self.recovery,
        }
    }
}

/// Where the traffic goes and how.
#[derive(Clone, Debug)]
pub struct Options {
    pub target: Target,
    pub phases: Phases,
    /// Connections serving each phase's rate.
    pub connections: u32,
    /// How long a failing check is asked again before it counts as failed.
    pub settle: Duration,
}

/// Why a verification could not run to its verdicts.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}. Is the mesh running? Start it with `cargo xtask local` (or `cargo xtask up`).")]
    Target(#[from] loadgen::PreflightError),
    #[error("scenario {scenario}: rate {rate}: {reason}")]
    Rate {
        scenario: String,
        rate: f64,
        reason: String,
    },
    #[error("setting the scenario's faults: {0}")]
    Inject(String),
    #[error("clearing the scenario's faults: {0}")]
    Clear(String),
}

/// One phase's traffic.
#[derive(Debug, Serialize)]
pub struct PhaseRun {
    pub phase: Phase,
    pub rate: f64,
    pub seconds: f64,
    pub report: Report,
}

/// Everything `--verify` found: the phases' traffic and the verdicts.
#[derive(Debug, Serialize)]
pub struct Verification {
    pub scenario: String,
    pub passed: bool,
    pub phases: Vec<PhaseRun>,
    pub verdicts: Vec<Verdict>,
}

/// Runs the three phases of `scenario` against `options.target`, setting its faults
/// through `incident` for the fault phase only, and checks its expectations at the end
/// of each phase (those of the fault phase while the fault is still in force).
/// `progress` gets a line at each step.
pub async fn verify(
    scenario: &Scenario,
    incident: &mut impl Incident,
    tools: &Tools,
    options: &Options,
    mut progress: impl FnMut(&str),
) -> Result<Verification, VerifyError> {
    let reachable = loadgen::preflight(&options.target).await?;
    let mut phases = Vec::new();
    let mut verdicts = Vec::new();
    for phase in Phase::ALL {
        let rate = match phase {
            Phase::Fault => scenario.rates.fault,
            Phase::Baseline | Phase::Recovery => scenario.rates.steady,
        };
        let length = options.phases.length(phase);
        if phase == Phase::Fault {
            progress("setting the scenario's faults");
            incident.inject().await.map_err(VerifyError::Inject)?;
        }
        progress(&format!(
            "phase {}: {rate} requests/s for {} s",
            phase.name(),
            length.as_secs()
        ));
        let plan = phase_plan(scenario, rate, length, options.connections)?;
        let outcome = loadgen::run(&reachable, &plan, std::future::pending(), |_| {}).await;
        let slo = PHASE_SLO.parse::<Slo>().ok();
        let run = PhaseRun {
            phase,
            rate,
            seconds: outcome.elapsed.as_secs_f64(),
            report: Report::new(&outcome, slo.as_ref()),
        };
        progress(&phase_table(&run));
        phases.push(run);
        progress(&format!(
            "checking the {} phase's expectations",
            phase.name()
        ));
        for expectation in scenario.expectations.iter().filter(|e| e.phase == phase) {
            verdicts.push(checks::check(tools, expectation, length, options.settle).await);
        }
        if phase == Phase::Fault {
            progress("clearing the scenario's faults");
            incident.clear().await.map_err(VerifyError::Clear)?;
        }
    }
    let passed = verdicts.iter().all(|v| v.status != Status::Fail);
    Ok(Verification {
        scenario: scenario.name.to_owned(),
        passed,
        phases,
        verdicts,
    })
}

/// A phase's open-model run: the default mix at `rate`, for `length`.
fn phase_plan(
    scenario: &Scenario,
    rate: f64,
    length: Duration,
    connections: u32,
) -> Result<Plan, VerifyError> {
    let rate = Rate::new(rate).map_err(|error| VerifyError::Rate {
        scenario: scenario.name.to_owned(),
        rate,
        reason: error.to_string(),
    })?;
    Ok(Plan {
        mix: Mix::default(),
        users: connections,
        think: Think::None,
        rate: Some(rate),
        duration: Some(length),
        requests: None,
        slowest: 3,
    })
}

/// A phase's table: its rate, error ratio and SLO verdict, then loadgen's table
/// (latency percentiles per request kind).
pub fn phase_table(run: &PhaseRun) -> String {
    let total = &run.report.total;
    let ratio = if total.requests == 0 {
        0.0
    } else {
        total.failures as f64 / total.requests as f64
    };
    let slo = run
        .report
        .slo
        .iter()
        .map(|s| {
            let verdict = if s.met { "met" } else { "BROKEN" };
            format!("{} {verdict} ({})", s.objective, s.measured)
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "== phase {}: {} requests/s scheduled for {:.0} s, {:.1} answered/s, error ratio {:.2}%, SLO {slo}\n{}",
        run.phase.name(),
        run.rate,
        run.seconds,
        total.requests_per_second,
        ratio * 100.0,
        run.report.table()
    )
}

impl Verification {
    /// The verdict table: expectation, phase, what was seen, PASS/FAIL/NOT CHECKED.
    pub fn verdict_table(&self) -> String {
        let width = self
            .verdicts
            .iter()
            .map(|v| v.expectation.len())
            .max()
            .unwrap_or(11)
            .max(11);
        let mut table = format!(
            "{:<11}  {:<9}  {:<width$}  seen\n",
            "verdict", "phase", "expectation"
        );
        for v in &self.verdicts {
            let _ = writeln!(
                table,
                "{:<11}  {:<9}  {:<width$}  {}",
                v.status.word(),
                v.phase.name(),
                v.expectation,
                v.seen
            );
        }
        let count = |status| self.verdicts.iter().filter(|v| v.status == status).count();
        let _ = writeln!(
            table,
            "scenario {}: {} passed, {} failed, {} not checked",
            self.scenario,
            count(Status::Pass),
            count(Status::Fail),
            count(Status::NotChecked)
        );
        table
    }

    /// The verdicts that failed.
    pub fn failures(&self) -> Vec<&Verdict> {
        self.verdicts
            .iter()
            .filter(|v| v.status == Status::Fail)
            .collect()
    }
}
