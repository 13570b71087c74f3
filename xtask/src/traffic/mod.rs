//! `cargo xtask traffic`: realistic traffic to the gateway, as a command. The flags, their
//! defaults and the output are here; the load itself is the `loadgen` crate's.

mod random_chaos;

use std::{io::IsTerminal as _, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use loadgen::{Endpoint, Plan, PreflightError, StopReason, Tick};
use tokio::sync::watch;

pub use loadgen::{Mix, Rate, Report, Slo, Target, Think};

use crate::ports::GATEWAY_URL as GATEWAY;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask traffic --duration 600                 # the default mix, 5 users, 10 minutes
  DURATION=0 CONCURRENT_USERS=10 cargo xtask traffic # 10 users until Ctrl+C (variables work too)
  cargo xtask traffic --preset spike                 # a burst of 200 concurrent actions
  cargo xtask traffic --mix data=1 --think 0 --users 64 --duration 10   # maximum load
  cargo xtask traffic --rate 200 --duration 60 --slo 'p99<2500ms,errors<1%' --json run.json
  cargo xtask traffic --rate 1000 --max-connections 400 --duration 30   # more connections")]
pub struct TrafficArgs {
    // `Default` is for callers (`cargo xtask scenario`) that set a few fields; the
    // command line's defaults are in each `#[arg]`, and in `Preset::plan`.
    /// How long to run, in seconds; 0 runs until Ctrl+C [default: 300]
    #[arg(long, env = "DURATION", value_name = "SECS")]
    pub duration: Option<u64>,

    /// Concurrent virtual users; with --rate, the connections opened at the start (more
    /// open on demand, up to --max-connections) [default: 5]
    #[arg(long, env = "CONCURRENT_USERS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub users: Option<u32>,

    /// Base URL of the gateway
    #[arg(long, value_name = "URL", default_value = GATEWAY)]
    pub target: Target,

    /// `random`: during the run, inject one fault at a time (latency, errors, an
    /// unreachable dependency) into a random service at random intervals, logging each
    #[arg(long, value_enum)]
    pub chaos: Option<ChaosMode>,

    /// With --chaos random: inject the faults into the kind cluster's pods even if a
    /// local mesh is running
    #[arg(long, requires = "chaos")]
    pub cluster: bool,

    /// Seed of --chaos random, to repeat a run's faults exactly [default: random, printed]
    #[arg(long, requires = "chaos")]
    pub seed: Option<u64>,

    /// Share of each request kind, as weights [default: data=40,action=20,health=20,slow=10,error=10]
    #[arg(long, value_name = "NAME=WEIGHT,...")]
    pub mix: Option<Mix>,

    /// Pause between a user's requests: 0, a duration (250ms) or a range (100ms..1s) [default: 100ms..1s]
    #[arg(long, value_name = "PAUSE")]
    pub think: Option<Think>,

    /// Open model: start this many requests per second on a fixed schedule, whatever the
    /// answers do; latency counts from the scheduled start, so a stall is not hidden
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<Rate>,

    /// With --rate: when every connection is busy at a request's scheduled time, another
    /// opens, up to N, so the rate holds. The connections busy at once are the rate times
    /// the time per request (Little's law; a tenth of the default mix is /api/slow, 0.5 to
    /// 2 s: 200 requests/s of it kept 43 open on the local mesh). The cap keeps an
    /// overloaded target from being flooded, and the report warns when it was reached. A
    /// request with no free connection within 1 s of its scheduled time is not sent, and
    /// counted as not sent [default: 100, or --users if more]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_connections: Option<u32>,

    /// Stop after this many requests
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Also write the summary as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Objectives checked at the end; exit code 1 when one is broken (errors = unexpected
    /// failures, not /api/error's designed 500s)
    #[arg(long, value_name = "p99<500ms,errors<1%")]
    pub slo: Option<Slo>,

    /// A traffic preset (explicit flags still win); `--scenario` is its old name. The
    /// faults of a demo are `cargo xtask scenario`'s
    #[arg(long, value_enum, alias = "scenario")]
    pub preset: Option<Preset>,

    /// List the N slowest answered requests at the end, each with its trace id, to find
    /// its logs (`cargo xtask logs --trace ID`) and its trace in Jaeger; 0 lists none.
    /// The id is the answer's x-trace-id header; `trace -` means the answer had none: the
    /// target does not trace that request (/health, or tracing off with
    /// OTEL_SDK_DISABLED=true; spans not exported still have ids) [default: 5]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=100))]
    pub slowest: Option<u16>,
}

impl Default for TrafficArgs {
    fn default() -> TrafficArgs {
        TrafficArgs {
            duration: None,
            users: None,
            target: GATEWAY.parse().expect("the gateway's URL parses"),
            chaos: None,
            cluster: false,
            seed: None,
            mix: None,
            think: None,
            rate: None,
            max_connections: None,
            requests: None,
            json: None,
            slo: None,
            preset: None,
            slowest: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ChaosMode {
    /// One random fault at a time, at random intervals
    Random,
}

/// The traffic of the four demo scenarios: what is sent, never a fault (the demos
/// themselves, with their faults, are `incidents`' table, run by `cargo xtask scenario`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Steady moderate traffic: 5 users for 3 minutes, the default mix
    Normal,
    /// A burst: 200 concurrent POST /api/action, as fast as they answer
    Spike,
    /// 100 requests to /api/error, one every 100 ms
    Errors,
    /// Normal traffic while inventory-service is degraded (prints how to degrade it)
    Degradation,
}

impl Preset {
    /// What the preset sends; no preset is the default mix.
    pub fn plan(preset: Option<Preset>) -> Plan {
        let default = Plan::default();
        match preset {
            None | Some(Preset::Degradation) => default,
            Some(Preset::Normal) => Plan {
                duration: Some(Duration::from_secs(180)),
                ..default
            },
            Some(Preset::Spike) => Plan {
                duration: Some(Duration::from_secs(120)),
                users: 200,
                mix: Mix::only(Endpoint::Action),
                think: Think::None,
                requests: Some(200),
                ..default
            },
            Some(Preset::Errors) => Plan {
                duration: Some(Duration::from_secs(120)),
                users: 1,
                mix: Mix::only(Endpoint::Error),
                think: Think::Fixed(Duration::from_millis(100)),
                requests: Some(100),
                ..default
            },
        }
    }
}

impl TrafficArgs {
    /// The run the flags ask for: the preset, each flag given overriding it.
    pub fn settings(&self) -> Plan {
        let preset = Preset::plan(self.preset);
        let users = self.users.unwrap_or(preset.users);
        Plan {
            duration: match self.duration {
                Some(0) => None,
                Some(seconds) => Some(Duration::from_secs(seconds)),
                None => preset.duration,
            },
            users,
            // Old command lines (`--rate 400 --users 300`) keep their connections.
            max_connections: self
                .max_connections
                .unwrap_or(preset.max_connections.max(users)),
            mix: self.mix.clone().unwrap_or(preset.mix),
            think: self.think.unwrap_or(preset.think),
            rate: self.rate.or(preset.rate),
            requests: self.requests.or(preset.requests),
            slowest: self.slowest.map_or(preset.slowest, usize::from),
            ..preset
        }
    }

    /// The flags that contradict each other, named.
    fn check(&self, plan: &Plan) -> anyhow::Result<()> {
        let Some(max) = self.max_connections else {
            return Ok(());
        };
        if plan.rate.is_none() {
            bail!(
                "--max-connections caps the connections of the open model: give --rate too \
                 (without --rate, --users is the number of connections)"
            );
        }
        if plan.users > max {
            bail!(
                "--users {} is more than --max-connections {max}: with --rate, --users is the \
                 connections opened at the start, at most --max-connections",
                plan.users
            );
        }
        Ok(())
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let plan = self.settings();
        self.check(&plan)?;
        if self.preset == Some(Preset::Degradation) {
            eprintln!("{DEGRADATION_HOWTO}");
        }
        let reachable = loadgen::preflight(&self.target)
            .await
            .map_err(explain_preflight)?;
        eprintln!("{}", describe(&self.target, &plan));

        let ctrl_c = async {
            if tokio::signal::ctrl_c().await.is_err() {
                // No Ctrl+C to listen for: the run ends by its plan.
                std::future::pending::<()>().await;
            }
        };
        let (done_tx, done) = watch::channel(false);
        let chaos = self.chaos.map(|ChaosMode::Random| {
            let seed = self.seed.unwrap_or_else(|| fastrand::u64(..1_000_000));
            eprintln!("chaos: one random fault at a time, seed {seed} (repeat with --seed {seed})");
            tokio::spawn(random_chaos::run(seed, self.cluster, done))
        });
        let mut progress = Progress::new(plan.duration);
        let outcome = loadgen::run(&reachable, &plan, ctrl_c, |tick| progress.show(tick)).await;
        progress.finish();
        if let Some(chaos) = chaos {
            let _ = done_tx.send(true);
            let _ = chaos.await;
        }

        let report = Report::new(&outcome, self.slo.as_ref());
        print!("{}", report.table());
        let slowest = report.slowest_table();
        if !slowest.is_empty() {
            println!(
                "Slowest requests (cargo xtask logs --trace ID shows one's logs; Jaeger finds it by id):"
            );
            print!("{slowest}");
        }
        if let Some(path) = &self.json {
            let json = serde_json::to_string_pretty(&report)?;
            std::fs::write(path, json)
                .with_context(|| format!("writing --json {}", path.display()))?;
            eprintln!("summary written to {}", path.display());
        }
        if let StopReason::TargetDown(cause) = &outcome.stop {
            bail!(
                "{} stopped answering ({cause}); stopped after {:.0} s",
                self.target,
                outcome.elapsed.as_secs_f64()
            );
        }
        if !report.slo_met() {
            bail!("an objective of --slo was broken (see above)");
        }
        Ok(())
    }
}

/// A target that is not answering, with where the mesh comes from.
fn explain_preflight(error: PreflightError) -> anyhow::Error {
    match error {
        PreflightError::NotAnswering { .. } => anyhow::anyhow!(
            "{error}. Is the mesh running? Start it with `cargo xtask local` \
             (or `cargo xtask up` for the kind cluster), or point --target at it."
        ),
        PreflightError::Unresolved { .. } => error.into(),
    }
}

const DEGRADATION_HOWTO: &str = "\
Preset degradation: this runs the traffic only. For the whole scenario (the
fault, the traffic, the clean-up) run `cargo xtask scenario degradation`, or degrade
inventory-service yourself meanwhile:
  cargo xtask chaos inventory-service --latency 200ms..800ms --for 5m";

fn describe(target: &Target, plan: &Plan) -> String {
    let duration = plan.duration.map_or("until Ctrl+C".to_owned(), |d| {
        format!("for {} s", d.as_secs())
    });
    let model = match plan.rate {
        Some(rate) => format!(
            "{rate} requests/s, {} connections at first, up to {}",
            plan.users, plan.max_connections
        ),
        None => format!("{} users, think {}", plan.users, plan.think),
    };
    let limit = plan
        .requests
        .map_or(String::new(), |n| format!(", at most {n} requests"));
    format!("traffic to {target} {duration}: {model}{limit}")
}

/// The live progress line: rewritten in place on a terminal, a line every 5 s in a log.
struct Progress {
    total: Option<Duration>,
    terminal: bool,
}

impl Progress {
    fn new(total: Option<Duration>) -> Progress {
        Progress {
            total,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, tick: &Tick) {
        let elapsed = tick.elapsed.as_secs();
        let of = self
            .total
            .map_or(String::new(), |t| format!("/{}s", t.as_secs()));
        let p95 = tick.interval_p95.map_or("-".to_owned(), |p| {
            format!("{:.1}ms", p.as_secs_f64() * 1000.0)
        });
        let counts = match tick.scheduled {
            Some(scheduled) => format!(
                "{scheduled} scheduled, {} completed ({} failed), {} not sent, {} connections",
                tick.requests, tick.failures, tick.not_sent, tick.connections
            ),
            None => format!("{} requests, {} failed", tick.requests, tick.failures),
        };
        let line = format!(
            "[{elapsed}s{of}] {:.0} req/s, {counts}, p95 {p95}",
            tick.interval_rps
        );
        if self.terminal {
            eprint!("\r{line}\x1b[K");
        } else if elapsed.is_multiple_of(5) {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}
