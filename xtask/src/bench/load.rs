//! The load generators: this project's (`xtask traffic`, the release build, as its own
//! process like the others), oha and wrk. Each drives one URL at full speed over a fixed
//! number of keep-alive connections and reports requests per second and latency.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use loadgen::{Endpoint, Mix, Report};
use serde::Deserialize;

use crate::cmd::{Cmd, find_on_path};

/// The oha release the bench installs when none is on PATH.
pub const OHA_VERSION: &str = "1.16.0";

/// What a generator measured.
#[derive(Clone, Debug)]
pub struct Load {
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Requests without a 2xx answer (or, for wrk, with a socket error or non-2xx).
    pub failures: u64,
}

/// One run's shape, the same for every generator.
#[derive(Clone, Debug)]
pub struct Shape {
    pub connections: u32,
    pub duration: Duration,
}

/// The project's generator: `xtask traffic` to `endpoint` only, with no think time.
pub fn traffic(
    xtask: &Path,
    address: &str,
    endpoint: Endpoint,
    shape: &Shape,
    json: &Path,
) -> anyhow::Result<Load> {
    Cmd::new(xtask, "running the traffic generator")
        .args(["traffic", "--target", &format!("http://{address}")])
        .args(["--mix", &Mix::only(endpoint).to_string(), "--think", "0"])
        .args(["--users", &shape.connections.to_string()])
        .args(["--duration", &shape.duration.as_secs().to_string()])
        .arg("--json")
        .arg(json)
        .read()?;
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let report: Report = serde_json::from_str(&text)
        .with_context(|| format!("parsing the traffic summary {}", json.display()))?;
    Ok(Load {
        requests_per_second: report.total.requests_per_second,
        p50_ms: report.total.p50_ms,
        p99_ms: report.total.p99_ms,
        failures: report.total.failures,
    })
}

pub fn oha(oha: &Path, url: &str, shape: &Shape) -> anyhow::Result<Load> {
    let output = Cmd::new(oha, "running oha")
        .args(["--no-tui", "--output-format", "json"])
        .args(["-c", &shape.connections.to_string()])
        .args(["-z", &format!("{}s", shape.duration.as_secs())])
        .arg(url)
        .read()?;
    parse_oha(&output)
}

fn parse_oha(json: &str) -> anyhow::Result<Load> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Report {
        summary: Summary,
        latency_percentiles: Percentiles,
        status_code_distribution: std::collections::BTreeMap<String, u64>,
        #[serde(default)]
        error_distribution: std::collections::BTreeMap<String, u64>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Summary {
        requests_per_sec: f64,
    }
    #[derive(Deserialize)]
    struct Percentiles {
        p50: Option<f64>,
        p99: Option<f64>,
    }
    let report: Report = serde_json::from_str(json).context("parsing oha's JSON output")?;
    let seconds_to_ms = |s: Option<f64>| s.map_or(f64::NAN, |s| s * 1000.0);
    let failures = report
        .status_code_distribution
        .iter()
        .filter(|(code, _)| !code.starts_with('2'))
        .map(|(_, n)| n)
        .chain(
            report
                .error_distribution
                .iter()
                // The requests still in flight when the duration ends: not failures.
                .filter(|(error, _)| !error.contains("aborted due to deadline"))
                .map(|(_, n)| n),
        )
        .sum();
    Ok(Load {
        requests_per_second: report.summary.requests_per_sec,
        p50_ms: seconds_to_ms(report.latency_percentiles.p50),
        p99_ms: seconds_to_ms(report.latency_percentiles.p99),
        failures,
    })
}

pub fn wrk(wrk: &Path, url: &str, shape: &Shape, threads: usize) -> anyhow::Result<Load> {
    let output = Cmd::new(wrk, "running wrk")
        .args(["--latency", "-t", &threads.to_string()])
        .args(["-c", &shape.connections.to_string()])
        .args(["-d", &format!("{}s", shape.duration.as_secs())])
        .arg(url)
        .read()?;
    parse_wrk(&output)
}

/// Reads wrk's text report: `Requests/sec:`, the `--latency` distribution, and the
/// error lines.
fn parse_wrk(text: &str) -> anyhow::Result<Load> {
    let mut load = Load {
        requests_per_second: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        failures: 0,
    };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", rate] => load.requests_per_second = rate.parse()?,
            ["50%", latency] => load.p50_ms = wrk_duration_ms(latency)?,
            ["99%", latency] => load.p99_ms = wrk_duration_ms(latency)?,
            ["Non-2xx", "or", "3xx", "responses:", n] => load.failures += n.parse::<u64>()?,
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0"
                load.failures += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    if load.requests_per_second.is_nan() {
        bail!("wrk's output has no Requests/sec line:\n{text}");
    }
    Ok(load)
}

/// `254.00us`, `1.23ms`, `2.00s`, `1.5m` in milliseconds.
fn wrk_duration_ms(text: &str) -> anyhow::Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("`{text}` has no unit"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .with_context(|| format!("`{text}` is not a duration"))?;
    let factor = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        _ => bail!("unknown unit in `{text}`"),
    };
    Ok(number * factor)
}

/// oha from PATH, else from `tools/bin`, else installed there with cargo; `Err` says why
/// it cannot be had.
pub fn find_or_install_oha(tools: &Path, install: bool) -> anyhow::Result<PathBuf> {
    if let Some(oha) = find_on_path("oha") {
        return Ok(oha);
    }
    let installed = tools.join("bin").join("oha");
    if installed.exists() {
        return Ok(installed);
    }
    if !install {
        bail!("oha is not installed (--no-install); `nix develop` has it");
    }
    eprintln!(
        "bench: installing oha {OHA_VERSION} into {} (a few minutes, once)",
        tools.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Cmd::new(cargo, "installing oha")
        .args(["install", "--locked"])
        .arg(format!("oha@{OHA_VERSION}"))
        .arg("--root")
        .arg(tools)
        .run()?;
    Ok(installed)
}

/// wrk from PATH; it is a C program, so the bench does not build it.
pub fn find_wrk() -> anyhow::Result<PathBuf> {
    find_on_path("wrk").context(
        "wrk is not installed: `nix develop` has it (or `apt-get install wrk`, `brew install wrk`)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrks_report() {
        let report = "\
Running 3s test @ http://127.0.0.1:41000/api/data
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   540.12us  300.00us   9.80ms   90.00%
    Req/Sec    60.10k     3.00k   66.00k    70.00%
  Latency Distribution
     50%  480.00us
     75%  600.00us
     90%  800.00us
     99%    1.50ms
  360000 requests in 3.00s, 45.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec: 120000.50
Transfer/sec:     15.00MB
";
        let load = parse_wrk(report).expect("parses");
        assert!((load.requests_per_second - 120_000.5).abs() < 1e-6);
        assert!((load.p50_ms - 0.48).abs() < 1e-9);
        assert!((load.p99_ms - 1.5).abs() < 1e-9);
        assert_eq!(load.failures, 7);
        assert!(parse_wrk("garbage").is_err());
    }

    #[test]
    fn reads_ohas_json() {
        let json = r#"{"summary":{"successRate":1.0,"total":3.0,"requestsPerSec":105000.25},
            "latencyPercentiles":{"p10":0.0001,"p50":0.0005,"p99":0.002},
            "statusCodeDistribution":{"200":300000,"503":2},
            "errorDistribution":{"aborted due to deadline":64,"connection closed":3}}"#;
        let load = parse_oha(json).expect("parses");
        assert!((load.requests_per_second - 105_000.25).abs() < 1e-6);
        assert!((load.p50_ms - 0.5).abs() < 1e-9);
        assert!((load.p99_ms - 2.0).abs() < 1e-9);
        assert_eq!(load.failures, 5);
    }
}
