//! The admin (fault injection) API every service serves on 127.0.0.1 only: its path, its
//! default port, and the JSON it exchanges (a [`FaultSpec`] in, a [`FaultStatus`] or a
//! [`FaultRejection`] out), with the rules a fault must follow, and the one list of the
//! kinds of fault ([`FaultKind`]) with everything a client needs to know of each. Keeping
//! a fault in force and injecting it is mock-service's business, not the contract's.

use std::{fmt, ops::RangeInclusive, str::FromStr};

use serde::{Deserialize, Serialize};

/// `GET` (the fault in force), `PUT` (replace it with a [`FaultSpec`]), `DELETE` (clear it).
pub const FAULTS: &str = "/faults";

/// The admin API's port when `ADMIN_PORT` is not set: the one the cluster's pods serve it
/// on, reached through `kubectl port-forward`.
pub const DEFAULT_PORT: u16 = 9901;

/// The longest latency a fault may add, in milliseconds.
pub const MAX_LATENCY_MS: u64 = 60_000;

/// The longest a fault may last, in seconds (a day).
pub const MAX_FOR_SECONDS: u64 = 86_400;

/// The routes a fault can target: the application's, never the probes or the scrape.
pub const FAULTABLE_ROUTES: [&str; 4] = crate::endpoints::API;

/// What a client asks for (`PUT /faults`): at least one [`FaultKind`]'s field, and
/// the options that shape it (`error_status`, `route`, `for_seconds`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// [`FaultKind::Latency`]: added before the request is handled, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Latency>,
    /// [`FaultKind::Error`]: share of requests answered with `error_status` instead, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// The status of injected errors, 400 to 599 (default [`DEFAULT_ERROR_STATUS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_status: Option<u16>,
    /// [`FaultKind::Unreachable`]: a dependency every call to which fails as if it were down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    /// Only this route (`/api/data`, `/api/action`, `/api/slow`, `/api/error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Back to normal after this many seconds (default: until cleared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_seconds: Option<u64>,
    /// Not announced: the service behaves as the fault says, but leaves it out of
    /// `fault_active` and `fault_injections_total`, writes no "fault injected" line or
    /// span event, answers its errors as a plain failure, and the admin API shows it only
    /// as hidden ([`FaultStatus::hidden`]). What `cargo xtask drill` injects, so that the
    /// learner finds it from its effects, not from its announcement.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quiet: bool,
}

/// Added latency in milliseconds: `300`, or `[100, 500]` drawn uniformly.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Latency {
    Fixed(u64),
    Between([u64; 2]),
}

/// The status of injected errors when `error_status` is not set.
pub const DEFAULT_ERROR_STATUS: u16 = 500;

/// Every kind of fault, the one list that the admin API's validation, mock-service's
/// metrics, `cargo xtask chaos`'s flags and messages, random chaos, the description of
/// a fault in force and the docs' table (checked by a test) are made from. A new kind is
/// a variant here, its [`FaultSpec`] field, an arm in each `match` below, and its
/// behaviour in mock-service's `faults.rs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    Latency,
    Error,
    Unreachable,
}

/// How a [`FaultKind`] is named and written wherever it shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct About {
    /// The `kind` label of the fault metrics (`fault_active{kind="latency"}`).
    pub name: &'static str,
    /// Its [`FaultSpec`] field, in the admin API's JSON.
    pub field: &'static str,
    /// The field's JSON value.
    pub json_value: &'static str,
    /// Its `cargo xtask chaos` flag, without the dashes.
    pub flag: &'static str,
    /// The flag's value in `--help` (`--latency <PAUSE>`).
    pub value_name: &'static str,
    /// What the flag's value may be.
    pub syntax: &'static str,
    /// A value the flag accepts, for examples.
    pub example: &'static str,
    /// One line: what the fault does.
    pub description: &'static str,
}

impl FaultKind {
    /// Every kind, in the order help texts, messages and metrics list them.
    pub const ALL: [FaultKind; 3] = [FaultKind::Latency, FaultKind::Error, FaultKind::Unreachable];

    pub const fn about(self) -> About {
        match self {
            FaultKind::Latency => About {
                name: "latency",
                field: "latency_ms",
                json_value: "`300` or `[100, 500]` (ms, drawn uniformly)",
                flag: "latency",
                value_name: "PAUSE",
                syntax: "a duration (300ms) or a range (100ms..800ms), at most 60s",
                example: "100ms..800ms",
                description: "Added latency, before the request is handled",
            },
            FaultKind::Error => About {
                name: "error",
                field: "error_rate",
                json_value: "`0.2` (0 to 1)",
                flag: "error-rate",
                value_name: "RATIO",
                syntax: "0 to 1 (0.2 means 20% of requests)",
                example: "0.2",
                description: "Share of requests answered with an error (status 500, or --status / error_status)",
            },
            FaultKind::Unreachable => About {
                name: "unreachable",
                field: "unreachable",
                json_value: "`\"inventory-service\"`",
                flag: "unreachable",
                value_name: "SERVICE",
                syntax: "a service this one calls",
                example: "inventory-service",
                description: "Calls to this dependency fail as in an outage (the caller answers 502)",
            },
        }
    }

    /// The flag's `--help` line.
    pub fn help(self) -> String {
        let About {
            description,
            syntax,
            ..
        } = self.about();
        format!("{description}: {syntax}")
    }

    /// Every kind's `part`, joined: "latency_ms, error_rate, unreachable" from
    /// `|about| about.field.into()`.
    pub fn list(part: impl Fn(About) -> String) -> String {
        FaultKind::ALL.map(|kind| part(kind.about())).join(", ")
    }

    /// The kind whose [`FaultSpec`] field is `field`.
    pub fn from_field(field: &str) -> Option<FaultKind> {
        FaultKind::ALL
            .into_iter()
            .find(|kind| kind.about().field == field)
    }

    /// Whether `spec` sets this kind.
    pub fn in_force(self, spec: &FaultSpec) -> bool {
        match self {
            FaultKind::Latency => spec.latency_ms.is_some(),
            FaultKind::Error => spec.error_rate.is_some(),
            FaultKind::Unreachable => spec.unreachable.is_some(),
        }
    }

    /// Sets this kind in `spec` from its flag's `value`, or says why the value is not one.
    pub fn set_from_flag(self, spec: &mut FaultSpec, value: &str) -> Result<(), String> {
        match self {
            FaultKind::Latency => spec.latency_ms = Some(value.parse()?),
            FaultKind::Error => spec.error_rate = Some(parse_ratio(value)?),
            FaultKind::Unreachable => match value.trim() {
                "" => return Err("name the dependency, e.g. inventory-service".into()),
                name => spec.unreachable = Some(name.to_owned()),
            },
        }
        Ok(())
    }

    /// This kind in `spec`, in words ("latency 100..800 ms"); `None` if it is not set.
    pub fn describe(self, spec: &FaultSpec) -> Option<String> {
        match self {
            FaultKind::Latency => spec.latency_ms.map(|latency| format!("latency {latency}")),
            FaultKind::Error => spec.error_rate.map(|rate| {
                let status = spec.error_status.unwrap_or(DEFAULT_ERROR_STATUS);
                format!("errors {:.0}% ({status})", rate * 100.0)
            }),
            FaultKind::Unreachable => spec
                .unreachable
                .as_ref()
                .map(|dependency| format!("{dependency} unreachable")),
        }
    }

    /// A fault of this kind as random chaos injects it into a service that calls
    /// `dependencies`: latency 100 to 800 ms, 20% to 50% errors, or one dependency
    /// unreachable. `draw` returns a number in the range it is given, uniformly. `None`
    /// when the kind cannot apply (no dependency to make unreachable).
    pub fn random(
        self,
        dependencies: &[String],
        draw: &mut dyn FnMut(RangeInclusive<u64>) -> u64,
    ) -> Option<FaultSpec> {
        let spec = match self {
            FaultKind::Latency => {
                let low = draw(100..=300);
                let high = low + draw(100..=500);
                FaultSpec {
                    latency_ms: Some(Latency::Between([low, high])),
                    ..FaultSpec::default()
                }
            }
            FaultKind::Error => FaultSpec {
                error_rate: Some(draw(2..=5) as f64 / 10.0),
                ..FaultSpec::default()
            },
            FaultKind::Unreachable => {
                let last = u64::try_from(dependencies.len().checked_sub(1)?).ok()?;
                let index = usize::try_from(draw(0..=last)).ok()?;
                FaultSpec {
                    unreachable: Some(dependencies.get(index)?.clone()),
                    ..FaultSpec::default()
                }
            }
        };
        Some(spec)
    }

    /// Whether random chaos can inject this kind into a service that calls `dependencies`.
    pub fn can_apply(self, dependencies: &[String]) -> bool {
        match self {
            FaultKind::Latency | FaultKind::Error => true,
            FaultKind::Unreachable => !dependencies.is_empty(),
        }
    }

    /// This kind's fields of `spec` follow the rules (nothing to check when it is not set,
    /// but `error_status` without `error_rate` is refused).
    fn check(self, spec: &FaultSpec, dependencies: &[String]) -> Result<(), Invalid> {
        let field = self.about().field;
        let reason = match self {
            FaultKind::Latency => spec.latency_ms.and_then(|latency| latency.check().err()),
            FaultKind::Error => return check_error(spec),
            FaultKind::Unreachable => spec
                .unreachable
                .as_ref()
                .and_then(|dependency| check_dependency(dependency, dependencies).err()),
        };
        reason.map_or(Ok(()), |reason| Err(Invalid { field, reason }))
    }
}

impl Latency {
    /// Within [`MAX_LATENCY_MS`], and a range runs upwards.
    fn check(self) -> Result<(), String> {
        match self {
            Latency::Fixed(ms) if ms > MAX_LATENCY_MS => {
                Err(format!("{ms} ms is over {MAX_LATENCY_MS}"))
            }
            Latency::Between([low, high]) if low > high || high > MAX_LATENCY_MS => Err(format!(
                "[{low}, {high}] must be [min, max] with max at most {MAX_LATENCY_MS}"
            )),
            _ => Ok(()),
        }
    }
}

/// `--latency`'s syntax: a duration (`300ms`) or a range (`100ms..800ms`), whole
/// milliseconds, within the rules of the admin API.
impl FromStr for Latency {
    type Err = String;

    fn from_str(text: &str) -> Result<Latency, String> {
        let latency = match text.split_once("..") {
            Some((low, high)) => Latency::Between([millis(low)?, millis(high)?]),
            None => Latency::Fixed(millis(text)?),
        };
        latency.check()?;
        Ok(latency)
    }
}

/// "300 ms" or "100..800 ms".
impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Latency::Fixed(ms) => write!(f, "{ms} ms"),
            Latency::Between([low, high]) => write!(f, "{low}..{high} ms"),
        }
    }
}

fn millis(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let duration = humantime::parse_duration(text)
        .map_err(|_| format!("`{text}` is not a duration like 250ms, 2s or 1m"))?;
    u64::try_from(duration.as_millis()).map_err(|_| format!("`{text}` is far too long"))
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    let ratio: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{}` is not a number", text.trim()))?;
    check_ratio(ratio).map_err(|reason| format!("{reason} (0.2 means 20% of requests)"))?;
    Ok(ratio)
}

fn check_ratio(ratio: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&ratio) {
        Ok(())
    } else {
        Err(format!("{ratio} is not between 0 and 1"))
    }
}

/// `error_rate` within 0 to 1; `error_status` an error status, and only with a rate.
fn check_error(spec: &FaultSpec) -> Result<(), Invalid> {
    let invalid = |field, reason: String| Err(Invalid { field, reason });
    if let Some(rate) = spec.error_rate {
        check_ratio(rate).or_else(|reason| invalid("error_rate", reason))?;
    }
    if let Some(status) = spec.error_status {
        if !(400..=599).contains(&status) {
            return invalid(
                "error_status",
                format!("{status} is not an error status (400 to 599)"),
            );
        }
        if spec.error_rate.is_none() {
            return invalid("error_status", "only meaningful with error_rate".into());
        }
    }
    Ok(())
}

fn check_dependency(dependency: &str, dependencies: &[String]) -> Result<(), String> {
    if dependencies.iter().any(|known| known == dependency) {
        return Ok(());
    }
    let known = if dependencies.is_empty() {
        "none: this service calls nobody".to_owned()
    } else {
        dependencies.join(", ")
    };
    Err(format!(
        "`{dependency}` is not a dependency of this service (its dependencies: {known})"
    ))
}

/// A rejected fault: which field, and why.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

/// The answer to every admin request that succeeds: the service, and its fault now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultStatus {
    pub service: String,
    /// `null` when the service runs normally, or when its fault is hidden.
    pub fault: Option<FaultSpec>,
    /// Seconds until the fault ends by itself; `null` when it lasts until cleared (or
    /// there is none, or it is hidden).
    #[serde(default)]
    pub seconds_left: Option<u64>,
    /// A [`FaultSpec::quiet`] fault is in force: neither it nor its expiry is shown
    /// (`DELETE` still clears it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
}

/// The answer (400) to a `PUT` of a fault that is not valid: nothing was applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRejection {
    /// Always "invalid fault".
    pub error: String,
    /// The [`FaultSpec`] field at fault; `null` when the body is not a fault at all.
    pub field: Option<String>,
    pub reason: String,
}

impl FaultRejection {
    /// The rejection of a body that is not a [`FaultSpec`] (bad JSON, unknown field).
    pub fn unreadable(reason: String) -> FaultRejection {
        FaultRejection {
            error: "invalid fault".to_owned(),
            field: None,
            reason,
        }
    }
}

impl From<Invalid> for FaultRejection {
    fn from(Invalid { field, reason }: Invalid) -> FaultRejection {
        FaultRejection {
            error: "invalid fault".to_owned(),
            field: Some(field.to_owned()),
            reason,
        }
    }
}

impl FaultSpec {
    /// The kinds of fault this spec sets, in [`FaultKind::ALL`]'s order.
    pub fn kinds(&self) -> impl Iterator<Item = FaultKind> + '_ {
        FaultKind::ALL
            .into_iter()
            .filter(|kind| kind.in_force(self))
    }

    /// Checks every field; `dependencies` are the services this one calls.
    pub fn validate(&self, dependencies: &[String]) -> Result<(), Invalid> {
        let invalid = |field, reason: String| Err(Invalid { field, reason });
        if self.kinds().next().is_none() {
            return invalid(
                FaultKind::ALL[0].about().field,
                format!(
                    "set at least one of {}",
                    FaultKind::list(|about| about.field.into())
                ),
            );
        }
        for kind in FaultKind::ALL {
            kind.check(self, dependencies)?;
        }
        if let Some(route) = &self.route
            && !FAULTABLE_ROUTES.contains(&route.as_str())
        {
            return invalid(
                "route",
                format!("`{route}` is not one of {}", FAULTABLE_ROUTES.join(", ")),
            );
        }
        if let Some(seconds) = self.for_seconds
            && !(1..=MAX_FOR_SECONDS).contains(&seconds)
        {
            return invalid(
                "for_seconds",
                format!("{seconds} is not between 1 and {MAX_FOR_SECONDS}"),
            );
        }
        Ok(())
    }

    /// Whether the fault acts on requests to `route` (a matched path).
    pub fn applies_to(&self, route: &str) -> bool {
        FAULTABLE_ROUTES.contains(&route) && self.route.as_deref().is_none_or(|only| only == route)
    }
}

#[cfg(test)]
mod tests;
