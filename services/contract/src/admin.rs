//! The admin (fault injection) API every service serves on 127.0.0.1 only: its path, its
//! default port, and the JSON it exchanges (a [`FaultSpec`] in, a [`FaultStatus`] or a
//! [`FaultRejection`] out), with the rules a fault must follow. Keeping a fault in force
//! and injecting it is mock-service's business, not the contract's.

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

/// What a client asks for (`PUT /faults`). At least one of `latency_ms`, `error_rate`
/// and `unreachable` must be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Added before the request is handled: `300` or `[100, 500]` (uniform), in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Latency>,
    /// Share of requests answered with `error_status` instead, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// The status of injected errors, 400 to 599 (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_status: Option<u16>,
    /// A dependency every call to which fails as if it were down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    /// Only this route (`/api/data`, `/api/action`, `/api/slow`, `/api/error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Back to normal after this many seconds (default: until cleared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_seconds: Option<u64>,
}

/// Added latency in milliseconds: `300`, or `[100, 500]` drawn uniformly.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Latency {
    Fixed(u64),
    Between([u64; 2]),
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
    /// `null` when the service runs normally.
    pub fault: Option<FaultSpec>,
    /// Seconds until the fault ends by itself; `null` when it lasts until cleared (or
    /// there is none).
    #[serde(default)]
    pub seconds_left: Option<u64>,
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
    /// Checks every field; `dependencies` are the services this one calls.
    pub fn validate(&self, dependencies: &[String]) -> Result<(), Invalid> {
        let invalid = |field, reason: String| Err(Invalid { field, reason });
        if self.latency_ms.is_none() && self.error_rate.is_none() && self.unreachable.is_none() {
            return invalid(
                "latency_ms",
                "set at least one of latency_ms, error_rate, unreachable".into(),
            );
        }
        self.validate_latency()?;
        self.validate_error()?;
        if let Some(dependency) = &self.unreachable
            && !dependencies.contains(dependency)
        {
            let known = if dependencies.is_empty() {
                "none: this service calls nobody".to_owned()
            } else {
                dependencies.join(", ")
            };
            return invalid(
                "unreachable",
                format!(
                    "`{dependency}` is not a dependency of this service (its dependencies: {known})"
                ),
            );
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

    fn validate_latency(&self) -> Result<(), Invalid> {
        let reason = match self.latency_ms {
            Some(Latency::Fixed(ms)) if ms > MAX_LATENCY_MS => {
                format!("{ms} ms is over {MAX_LATENCY_MS}")
            }
            Some(Latency::Between([low, high])) if low > high || high > MAX_LATENCY_MS => {
                format!("[{low}, {high}] must be [min, max] with max at most {MAX_LATENCY_MS}")
            }
            _ => return Ok(()),
        };
        Err(Invalid {
            field: "latency_ms",
            reason,
        })
    }

    fn validate_error(&self) -> Result<(), Invalid> {
        let invalid = |field, reason: String| Err(Invalid { field, reason });
        if let Some(rate) = self.error_rate
            && !(0.0..=1.0).contains(&rate)
        {
            return invalid("error_rate", format!("{rate} is not between 0 and 1"));
        }
        if let Some(status) = self.error_status {
            if !(400..=599).contains(&status) {
                return invalid(
                    "error_status",
                    format!("{status} is not an error status (400 to 599)"),
                );
            }
            if self.error_rate.is_none() {
                return invalid("error_status", "only meaningful with error_rate".into());
            }
        }
        Ok(())
    }

    /// Whether the fault acts on requests to `route` (a matched path).
    pub fn applies_to(&self, route: &str) -> bool {
        FAULTABLE_ROUTES.contains(&route) && self.route.as_deref().is_none_or(|only| only == route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_reads_both_latency_forms_and_rejects_unknown_fields() {
        let fixed: FaultSpec = serde_json::from_str(r#"{"latency_ms": 300}"#).expect("fixed");
        assert_eq!(fixed.latency_ms, Some(Latency::Fixed(300)));
        let range: FaultSpec =
            serde_json::from_str(r#"{"latency_ms": [100, 500]}"#).expect("range");
        assert_eq!(range.latency_ms, Some(Latency::Between([100, 500])));
        assert!(serde_json::from_str::<FaultSpec>(r#"{"latency": 300}"#).is_err());
    }

    #[test]
    fn validation_names_the_field_at_fault() {
        let spec = |json: &str| serde_json::from_str::<FaultSpec>(json).expect("a spec");
        let deps = ["inventory-service".to_owned()];
        for (json, field) in [
            ("{}", "latency_ms"),
            (r#"{"latency_ms": 60001}"#, "latency_ms"),
            (r#"{"latency_ms": [9, 3]}"#, "latency_ms"),
            (r#"{"error_rate": 1.5}"#, "error_rate"),
            (
                r#"{"error_rate": 0.5, "error_status": 302}"#,
                "error_status",
            ),
            (r#"{"latency_ms": 5, "error_status": 503}"#, "error_status"),
            (r#"{"unreachable": "user-service"}"#, "unreachable"),
            (r#"{"latency_ms": 5, "route": "/health"}"#, "route"),
            (r#"{"latency_ms": 5, "for_seconds": 0}"#, "for_seconds"),
        ] {
            let error = spec(json).validate(&deps).expect_err(json);
            assert_eq!(error.field, field, "{json}: {error}");
        }
        let good = spec(r#"{"unreachable": "inventory-service", "route": "/api/data"}"#);
        assert_eq!(good.validate(&deps), Ok(()));
        assert!(good.applies_to("/api/data") && !good.applies_to("/api/action"));
    }

    #[test]
    fn a_rejection_says_which_field_or_none() {
        let json = serde_json::to_value(FaultRejection::from(Invalid {
            field: "route",
            reason: "no".into(),
        }))
        .expect("json");
        assert_eq!(
            json,
            serde_json::json!({"error": "invalid fault", "field": "route", "reason": "no"})
        );
        let unreadable = serde_json::to_value(FaultRejection::unreadable("eof".into()));
        assert_eq!(unreadable.expect("json")["field"], serde_json::Value::Null);
    }
}
