//! `cargo xtask traffic`: the guide's `generate-traffic.sh`, grown up.

mod client;
mod engine;
pub mod options;
mod random_chaos;
mod report;

use std::{io::IsTerminal as _, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use tokio::sync::watch;

pub use self::{
    engine::{Outcome, Plan, StopReason},
    options::{Endpoint, Mix, Slo, Target, Think},
    report::Report,
};

#[derive(Debug, Default, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask traffic --duration 600                 # the guide's mix, 5 users, 10 minutes
  DURATION=0 CONCURRENT_USERS=10 cargo xtask traffic # until Ctrl+C, as generate-traffic.sh
  cargo xtask traffic --scenario spike               # the guide's demo scenario 2
  cargo xtask traffic --mix data=1 --think 0 --users 64 --duration 10   # maximum load
  cargo xtask traffic --rate 200 --duration 60 --slo 'p99<500ms,errors<1%' --json run.json")]
pub struct TrafficArgs {
    // `Default` is for callers (`cargo xtask scenario`) that set a few fields; the
    // command line's defaults are in each `#[arg]`.
    /// How long to run, in seconds; 0 runs until Ctrl+C [default: 300]
    #[arg(long, env = "DURATION", value_name = "SECS")]
    pub duration: Option<u64>,

    /// Concurrent virtual users (in --rate mode: connections) [default: 5]
    #[arg(long, env = "CONCURRENT_USERS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub users: Option<u32>,

    /// Base URL of the gateway
    #[arg(long, value_name = "URL", default_value = "http://localhost:30080")]
    pub target: Target,

    /// `random`: during the run, inject one fault at a time (latency, errors, an
    /// unreachable dependency) into a random service at random intervals, logging each
    #[arg(long, value_enum)]
    pub chaos: Option<ChaosMode>,

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
    #[arg(long, value_name = "PER_SECOND", value_parser = parse_rate)]
    pub rate: Option<f64>,

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

    /// One of the guide's demo scenarios, as a preset (explicit flags still win)
    #[arg(long, value_enum)]
    pub scenario: Option<Scenario>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ChaosMode {
    /// One random fault at a time, at random intervals
    Random,
}

/// The guide's four demo scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Steady moderate traffic: 5 users for 3 minutes, the guide's mix
    Normal,
    /// A burst: 200 concurrent POST /api/action, as fast as they answer
    Spike,
    /// 100 requests to /api/error, one every 100 ms
    Errors,
    /// Normal traffic while inventory-service is degraded (prints how to degrade it)
    Degradation,
}

/// The options with the scenario's presets and the defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub duration: Option<Duration>,
    pub users: u32,
    pub mix: Mix,
    pub think: Think,
    pub rate: Option<f64>,
    pub requests: Option<u64>,
}

impl Scenario {
    /// (duration in seconds, users, mix, think, request limit): what the guide's
    /// scenario does; no scenario is the guide's `generate-traffic.sh` defaults.
    fn preset(scenario: Option<Scenario>) -> (u64, u32, &'static str, Think, Option<u64>) {
        let realistic = Think::REALISTIC.parse().expect("valid");
        match scenario {
            None | Some(Scenario::Degradation) => (300, 5, Mix::GUIDE, realistic, None),
            Some(Scenario::Normal) => (180, 5, Mix::GUIDE, realistic, None),
            Some(Scenario::Spike) => (120, 200, "action=1", Think::None, Some(200)),
            Some(Scenario::Errors) => (
                120,
                1,
                "error=1",
                Think::Fixed(Duration::from_millis(100)),
                Some(100),
            ),
        }
    }
}

impl TrafficArgs {
    pub fn settings(&self) -> Settings {
        let (duration, users, mix, think, requests) = Scenario::preset(self.scenario);
        let duration = self.duration.unwrap_or(duration);
        Settings {
            duration: (duration > 0).then(|| Duration::from_secs(duration)),
            users: self.users.unwrap_or(users),
            mix: self
                .mix
                .clone()
                .unwrap_or_else(|| mix.parse().expect("presets parse")),
            think: self.think.unwrap_or(think),
            rate: self.rate,
            requests: self.requests.or(requests),
        }
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let settings = self.settings();
        if self.scenario == Some(Scenario::Degradation) {
            eprintln!("{DEGRADATION_HOWTO}");
        }
        let address = client::preflight(&self.target).await?;
        eprintln!("{}", describe(&self.target, &settings));

        let (cancel_tx, cancel) = watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = cancel_tx.send(true);
            }
        });
        let plan = Plan {
            address,
            target: self.target.clone(),
            mix: settings.mix.clone(),
            users: settings.users,
            think: settings.think,
            rate: settings.rate,
            duration: settings.duration,
            requests: settings.requests,
        };
        let (done_tx, done) = watch::channel(false);
        let chaos = self.chaos.map(|ChaosMode::Random| {
            let seed = self.seed.unwrap_or_else(|| fastrand::u64(..1_000_000));
            eprintln!("chaos: one random fault at a time, seed {seed} (repeat with --seed {seed})");
            tokio::spawn(random_chaos::run(seed, done))
        });
        let mut progress = Progress::new(settings.duration);
        let outcome = engine::run(plan, cancel, |tick| progress.show(tick)).await;
        progress.finish();
        if let Some(chaos) = chaos {
            let _ = done_tx.send(true);
            let _ = chaos.await;
        }

        let report = Report::new(&self.target.url, &outcome, self.slo.as_ref());
        print!("{}", report.table());
        if let Some(path) = &self.json {
            let json = serde_json::to_string_pretty(&report)?;
            std::fs::write(path, json)
                .with_context(|| format!("writing --json {}", path.display()))?;
            eprintln!("summary written to {}", path.display());
        }
        if let StopReason::TargetDown(cause) = &outcome.stop {
            bail!(
                "{} stopped answering ({cause}); stopped after {:.0} s",
                self.target.url,
                outcome.elapsed.as_secs_f64()
            );
        }
        if !report.slo_met() {
            bail!("an objective of --slo was broken (see above)");
        }
        Ok(())
    }
}

const DEGRADATION_HOWTO: &str = "\
Scenario 4, service degradation: this runs the traffic only. For the whole scenario (the
fault, the traffic, the clean-up) run `cargo xtask scenario degradation`, or degrade
inventory-service yourself meanwhile:
  cargo xtask chaos inventory-service --latency 200ms..800ms --for 5m";

fn describe(target: &Target, settings: &Settings) -> String {
    let duration = settings.duration.map_or("until Ctrl+C".to_owned(), |d| {
        format!("for {} s", d.as_secs())
    });
    let model = match settings.rate {
        Some(rate) => format!("{rate} requests/s over {} connections", settings.users),
        None => format!("{} users, think {}", settings.users, settings.think),
    };
    let limit = settings
        .requests
        .map_or(String::new(), |n| format!(", at most {n} requests"));
    format!("traffic to {} {duration}: {model}{limit}", target.url)
}

fn parse_rate(text: &str) -> anyhow::Result<f64> {
    let rate: f64 = text
        .trim()
        .parse()
        .with_context(|| format!("`{text}` is not a number"))?;
    if !(rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0) {
        bail!("the rate must be above 0 and at most 1000000 requests per second");
    }
    Ok(rate)
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

    fn show(&mut self, tick: &engine::Tick) {
        let elapsed = tick.elapsed.as_secs();
        let of = self
            .total
            .map_or(String::new(), |t| format!("/{}s", t.as_secs()));
        let p95 = tick.interval_p95.map_or("-".to_owned(), |p| {
            format!("{:.1}ms", p.as_secs_f64() * 1000.0)
        });
        let line = format!(
            "[{elapsed}s{of}] {:.0} req/s, {} requests, {} failed, p95 {p95}",
            tick.interval_rps, tick.requests, tick.failures
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

#[cfg(test)]
mod tests;
