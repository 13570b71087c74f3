//! Service-level objectives, checked against a run's totals.

use std::{fmt, str::FromStr, time::Duration};

use crate::{error::ParseError, report::SloResult, stats::EndpointStats, think::parse_duration};

/// Objectives checked at the end, e.g. `p99<500ms,errors<1%`.
#[derive(Clone, Debug, PartialEq)]
pub struct Slo(pub Vec<Objective>);

#[derive(Clone, Debug, PartialEq)]
pub enum Objective {
    /// The latency percentile (e.g. 99.0) stays below the duration.
    Latency { percentile: f64, below: Duration },
    /// Unexpected failures stay below this fraction of requests.
    Errors { below: f64 },
}

impl Objective {
    /// Measures the objective on a run's totals. An objective with nothing to measure
    /// (no answer at all) is broken.
    pub(crate) fn check(&self, total: &EndpointStats) -> SloResult {
        match self {
            Objective::Latency { percentile, below } => {
                let measured =
                    Duration::from_micros(total.latency_us.value_at_quantile(percentile / 100.0));
                SloResult {
                    objective: self.to_string(),
                    measured: format!("{:.1} ms", measured.as_secs_f64() * 1000.0),
                    met: !total.latency_us.is_empty() && measured < *below,
                }
            }
            Objective::Errors { below } => {
                let ratio = if total.requests == 0 {
                    0.0
                } else {
                    total.failures as f64 / total.requests as f64
                };
                SloResult {
                    objective: self.to_string(),
                    measured: format!("{:.2}%", ratio * 100.0),
                    met: total.requests > 0 && ratio < *below,
                }
            }
        }
    }
}

impl FromStr for Objective {
    type Err = ParseError;
    fn from_str(part: &str) -> Result<Objective, ParseError> {
        let (name, limit) = part.split_once('<').ok_or_else(|| {
            ParseError::new(format!(
                "`{part}` should be NAME<LIMIT, e.g. p99<500ms or errors<1%"
            ))
        })?;
        let (name, limit) = (name.trim(), limit.trim());
        if name == "errors" {
            let percent: f64 = limit
                .strip_suffix('%')
                .and_then(|p| p.trim().parse().ok())
                .filter(|p: &f64| (0.0..=100.0).contains(p))
                .ok_or_else(|| {
                    ParseError::new(format!(
                        "the errors limit `{limit}` should be a percentage, e.g. 1%"
                    ))
                })?;
            return Ok(Objective::Errors {
                below: percent / 100.0,
            });
        }
        let percentile: f64 = name
            .strip_prefix('p')
            .and_then(|p| p.parse().ok())
            .filter(|p: &f64| *p > 0.0 && *p <= 100.0)
            .ok_or_else(|| {
                ParseError::new(format!(
                    "`{name}` is not an objective: use p50, p95, p99, p99.9 or errors"
                ))
            })?;
        Ok(Objective::Latency {
            percentile,
            below: parse_duration(limit)?,
        })
    }
}

impl FromStr for Slo {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Slo, ParseError> {
        let objectives = text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Objective>, ParseError>>()?;
        if objectives.is_empty() {
            return Err(ParseError::new(
                "give at least one objective, e.g. p99<500ms",
            ));
        }
        Ok(Slo(objectives))
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Objective::Latency { percentile, below } => {
                write!(f, "p{percentile}<{}", humantime::format_duration(*below))
            }
            Objective::Errors { below } => write!(f, "errors<{}%", below * 100.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slos() {
        let slo: Slo = "p99<500ms, errors<1%".parse().expect("valid");
        assert_eq!(
            slo.0,
            [
                Objective::Latency {
                    percentile: 99.0,
                    below: Duration::from_millis(500)
                },
                Objective::Errors { below: 0.01 }
            ]
        );
        assert_eq!(slo.0[0].to_string(), "p99<500ms");
        for (bad, reason) in [
            ("p99", "NAME<LIMIT"),
            ("p200<1s", "not an objective"),
            ("errors<1", "a percentage"),
            ("latency<1s", "not an objective"),
            ("p99<soon", "not a duration"),
            ("", "at least one"),
        ] {
            let error = bad.parse::<Slo>().expect_err(bad).to_string();
            assert!(error.contains(reason), "{bad}: {error}");
        }
    }

    #[test]
    fn verdicts() {
        let mut stats = EndpointStats::new();
        let latency_p99 = "p99<10ms".parse::<Objective>().expect("valid");
        let errors = "errors<10%".parse::<Objective>().expect("valid");
        // Nothing measured: nothing is met.
        assert!(!latency_p99.check(&stats).met && !errors.check(&stats).met);

        for micros in [1_000, 2_000, 3_000] {
            stats.requests += 1;
            stats.latency_us.record(micros).expect("in range");
        }
        assert!(latency_p99.check(&stats).met);
        stats.requests += 1;
        stats.failures += 1;
        stats.latency_us.record(50_000).expect("in range");
        let latency = latency_p99.check(&stats);
        assert!(!latency.met, "{latency:?}");
        let errors = errors.check(&stats);
        assert_eq!((errors.met, errors.measured.as_str()), (false, "25.00%"));
    }
}
