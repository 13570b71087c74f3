//! The traffic generator's option values, each parsed from its flag's text with an error
//! that says what was expected.

use std::{fmt, str::FromStr, time::Duration};

use anyhow::{Context as _, bail};

/// The requests a virtual user makes: the guide's five kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Endpoint {
    Data,
    Action,
    Health,
    Slow,
    Error,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::Data,
        Endpoint::Action,
        Endpoint::Health,
        Endpoint::Slow,
        Endpoint::Error,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn key(self) -> &'static str {
        match self {
            Endpoint::Data => "data",
            Endpoint::Action => "action",
            Endpoint::Health => "health",
            Endpoint::Slow => "slow",
            Endpoint::Error => "error",
        }
    }

    pub fn method(self) -> http::Method {
        match self {
            Endpoint::Action => http::Method::POST,
            _ => http::Method::GET,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Data => "/api/data",
            Endpoint::Action => "/api/action",
            Endpoint::Health => "/health",
            Endpoint::Slow => "/api/slow",
            Endpoint::Error => "/api/error",
        }
    }

    /// `/api/error` answers 500 by design: that is an expected error, not a failure.
    pub fn expects_error(self, status: u16) -> bool {
        self == Endpoint::Error && status == 500
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method(), self.path())
    }
}

/// How requests are spread over the endpoints, e.g. `data=40,action=20,health=20,slow=10,error=10`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mix {
    /// Cumulative weights in `Endpoint::ALL` order, the last one 1.0.
    cumulative: [f64; 5],
    weights: [f64; 5],
}

impl Mix {
    /// The guide's traffic pattern.
    pub const GUIDE: &'static str = "data=40,action=20,health=20,slow=10,error=10";

    pub fn pick(&self) -> Endpoint {
        let x = fastrand::f64();
        let index = self.cumulative.iter().position(|c| x < *c).unwrap_or(4);
        Endpoint::ALL[index]
    }

    /// The share of `endpoint`, 0 to 1.
    pub fn share(&self, endpoint: Endpoint) -> f64 {
        self.weights[endpoint.index()]
    }
}

impl FromStr for Mix {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> anyhow::Result<Mix> {
        let mut weights = [0.0; 5];
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, weight)) = part.split_once('=') else {
                bail!("`{part}` should be NAME=WEIGHT, e.g. data=40");
            };
            let endpoint = Endpoint::ALL
                .into_iter()
                .find(|e| e.key() == name.trim())
                .with_context(|| {
                    format!("`{name}` is not an endpoint: use data, action, health, slow, error")
                })?;
            let weight: f64 = weight
                .trim()
                .trim_end_matches('%')
                .parse()
                .ok()
                .filter(|w: &f64| w.is_finite() && *w >= 0.0)
                .with_context(|| format!("the weight of {name} must be a number of 0 or more"))?;
            weights[endpoint.index()] = weight;
        }
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            bail!("give at least one endpoint a weight above 0, e.g. data=100");
        }
        let mut cumulative = [0.0; 5];
        let mut running = 0.0;
        for (i, weight) in weights.iter_mut().enumerate() {
            *weight /= total;
            running += *weight;
            cumulative[i] = running;
        }
        cumulative[4] = 1.0;
        Ok(Mix {
            cumulative,
            weights,
        })
    }
}

/// A virtual user's pause between two requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Think {
    None,
    Fixed(Duration),
    /// Uniform between the two.
    Between(Duration, Duration),
}

impl Think {
    /// People pause: between 100 ms and 1 s after each answer.
    pub const REALISTIC: &'static str = "100ms..1s";

    pub fn pick(self) -> Duration {
        match self {
            Think::None => Duration::ZERO,
            Think::Fixed(pause) => pause,
            Think::Between(low, high) => {
                let span = high.saturating_sub(low).as_micros() as u64;
                low + Duration::from_micros(fastrand::u64(0..=span))
            }
        }
    }
}

impl FromStr for Think {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> anyhow::Result<Think> {
        let text = text.trim();
        if text == "0" {
            return Ok(Think::None);
        }
        if let Some((low, high)) = text.split_once("..") {
            let (low, high) = (parse_duration(low)?, parse_duration(high)?);
            if low > high {
                bail!("the range {text} runs backwards: write LOW..HIGH");
            }
            return Ok(Think::Between(low, high));
        }
        Ok(match parse_duration(text)? {
            Duration::ZERO => Think::None,
            pause => Think::Fixed(pause),
        })
    }
}

impl fmt::Display for Think {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |d: &Duration| humantime::format_duration(*d).to_string();
        match self {
            Think::None => write!(f, "0"),
            Think::Fixed(pause) => write!(f, "{}", show(pause)),
            Think::Between(low, high) => write!(f, "{}..{}", show(low), show(high)),
        }
    }
}

/// `250ms`, `2s`, `1m30s`.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(text.trim())
        .with_context(|| format!("`{}` is not a duration like 250ms, 2s or 1m", text.trim()))
}

/// The target's base URL, reduced to what the client needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// The `Host` header value.
    pub authority: String,
    pub url: String,
}

impl Target {
    /// The gateway of the local mesh and of the kind cluster alike.
    pub const GATEWAY: &'static str = "http://localhost:30080";
}

impl Default for Target {
    fn default() -> Target {
        Target::GATEWAY.parse().expect("the gateway URL parses")
    }
}

impl FromStr for Target {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> anyhow::Result<Target> {
        let uri: http::Uri = text
            .trim()
            .parse()
            .with_context(|| format!("`{text}` is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("only http:// targets are supported, not {other}://"),
            None => bail!("`{text}` needs a scheme: http://HOST:PORT"),
        }
        if !matches!(uri.path(), "" | "/") {
            bail!("give the base URL only (e.g. http://localhost:30080), without a path");
        }
        let authority = uri.authority().context("the URL has no host")?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(80);
        Ok(Target {
            host,
            port,
            authority: authority.as_str().to_owned(),
            url: format!("http://{}", authority.as_str()),
        })
    }
}

/// Service-level objectives checked at the end, e.g. `p99<500ms,errors<1%`.
#[derive(Clone, Debug, PartialEq)]
pub struct Slo(pub Vec<Objective>);

#[derive(Clone, Debug, PartialEq)]
pub enum Objective {
    /// The latency percentile (e.g. 99.0) stays below the duration.
    Latency { percentile: f64, below: Duration },
    /// Unexpected failures stay below this fraction of requests.
    Errors { below: f64 },
}

impl FromStr for Slo {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> anyhow::Result<Slo> {
        let objectives = text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                let (name, limit) = part.split_once('<').with_context(|| {
                    format!("`{part}` should be NAME<LIMIT, e.g. p99<500ms or errors<1%")
                })?;
                let (name, limit) = (name.trim(), limit.trim());
                if name == "errors" {
                    let percent: f64 = limit
                        .strip_suffix('%')
                        .and_then(|p| p.trim().parse().ok())
                        .filter(|p: &f64| (0.0..=100.0).contains(p))
                        .with_context(|| {
                            format!("the errors limit `{limit}` should be a percentage, e.g. 1%")
                        })?;
                    return Ok(Objective::Errors {
                        below: percent / 100.0,
                    });
                }
                let percentile: f64 = name
                    .strip_prefix('p')
                    .and_then(|p| p.parse().ok())
                    .filter(|p: &f64| *p > 0.0 && *p <= 100.0)
                    .with_context(|| {
                        format!("`{name}` is not an objective: use p50, p95, p99, p99.9 or errors")
                    })?;
                Ok(Objective::Latency {
                    percentile,
                    below: parse_duration(limit)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if objectives.is_empty() {
            bail!("give at least one objective, e.g. p99<500ms");
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
    fn the_guides_mix() {
        let mix: Mix = Mix::GUIDE.parse().expect("valid");
        assert_eq!(mix.share(Endpoint::Data), 0.4);
        assert_eq!(mix.share(Endpoint::Action), 0.2);
        assert_eq!(mix.share(Endpoint::Error), 0.1);
        let only_errors: Mix = "error=1".parse().expect("valid");
        assert!((0..100).all(|_| only_errors.pick() == Endpoint::Error));
    }

    #[test]
    fn bad_mixes_say_why() {
        for (text, reason) in [
            ("data", "NAME=WEIGHT"),
            ("dta=40", "not an endpoint"),
            ("data=-1", "0 or more"),
            ("data=0", "at least one"),
        ] {
            let error = text.parse::<Mix>().expect_err(text).to_string();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn think_times() {
        assert_eq!("0".parse::<Think>().expect("valid"), Think::None);
        assert_eq!(
            "250ms".parse::<Think>().expect("valid"),
            Think::Fixed(Duration::from_millis(250))
        );
        let range: Think = "100ms..1s".parse().expect("valid");
        assert_eq!(
            range,
            Think::Between(Duration::from_millis(100), Duration::from_secs(1))
        );
        assert!((0..100).all(|_| {
            (Duration::from_millis(100)..=Duration::from_secs(1)).contains(&range.pick())
        }));
        assert!("1s..100ms".parse::<Think>().is_err());
        assert!("soon".parse::<Think>().is_err());
    }

    #[test]
    fn targets() {
        let target: Target = "http://localhost:30080".parse().expect("valid");
        assert_eq!((target.host.as_str(), target.port), ("localhost", 30080));
        let default_port: Target = "http://127.0.0.1/".parse().expect("valid");
        assert_eq!(default_port.port, 80);
        assert!(
            "https://localhost"
                .parse::<Target>()
                .expect_err("tls")
                .to_string()
                .contains("http://")
        );
        assert!("localhost:30080".parse::<Target>().is_err());
        assert!(
            "http://localhost:30080/api"
                .parse::<Target>()
                .expect_err("path")
                .to_string()
                .contains("without a path")
        );
    }

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
        for bad in ["p99", "p200<1s", "errors<1", "latency<1s", ""] {
            assert!(bad.parse::<Slo>().is_err(), "{bad}");
        }
    }
}
