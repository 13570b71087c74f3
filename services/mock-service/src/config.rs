//! The process's configuration, all from environment variables (the twelve-factor way,
//! and what a Kubernetes Deployment sets).

use std::{collections::HashMap, net::IpAddr, path::Path, time::Duration};

use telemetry::{EXEMPLAR_FILTER_VARIABLE, ExemplarFilter, TelemetryError, TracingMode};

use contract::{
    admin,
    topology::{LoadError, Topology, url_variable},
};

use crate::server::ShutdownTiming;

pub const USAGE: &str = "\
mock-service: plays one service of the mesh, chosen by SERVICE_NAME.

Usage: SERVICE_NAME=gateway-service mock-service

Environment:
  SERVICE_NAME             which service to play (required), e.g. gateway-service
  HOST                     address to listen on (default 127.0.0.1; 0.0.0.0 in a container)
  PORT                     port to listen on (default 8080; 0 picks a free one)
  ADMIN_PORT               fault-injection API, on 127.0.0.1 only (default 9901; 0 picks one)
  TOPOLOGY_FILE            call graph to use (default: the built-in one, topology.yaml)
  <NAME>_URL               base URL of a dependency, e.g. PRODUCT_SERVICE_URL
                           (default http://<name>, its Kubernetes Service)
  DOWNSTREAM_TIMEOUT_MS    timeout of each call to a dependency (default 2000)
  SHUTDOWN_DELAY_MS        after SIGTERM, keep serving with /ready at 503 this long
                           (default 0; give Kubernetes time to stop routing here)
  SHUTDOWN_DRAIN_SECONDS   then, how long in-flight requests may take to finish (default 10)
  RUST_LOG                 log filter (default info); logs are JSON lines on stdout
  OTEL_EXPORTER_OTLP_ENDPOINT  where spans go over OTLP/gRPC (default http://localhost:4317)
  OTEL_TRACES_EXPORTER     otlp (default): spans exported; none: spans made (trace ids,
                           traceparent, x-trace-id, the logs' trace_id, exemplars) but
                           sent nowhere
  OTEL_SDK_DISABLED        true turns tracing off: no spans and no trace ids
  OTEL_METRICS_EXEMPLAR_FILTER  trace_based (default): a latency observation made in a
                           sampled span carries its trace_id and span_id as an exemplar
                           (OpenMetrics scrapes only); always_off: no exemplars

Every traced response (not /health, /ready, /metrics) carries `x-trace-id: <trace id>`,
with span export or without. A request still running at the drain deadline answers 503
and its span ends as an error, before the last spans are flushed.
GET /metrics answers OpenMetrics 1.0.0 (with exemplars) to an Accept that asks for
application/openmetrics-text, as Prometheus does, else the Prometheus text format 0.0.4.

Endpoints: GET /health, /ready, /metrics, /api/data, /api/slow, /api/error; POST /api/action
";

/// A configuration that cannot run, saying which variable and what to set instead.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("TOPOLOGY_FILE: {0}")]
    Topology(LoadError),
    #[error("SERVICE_NAME is not set: set it to the service to play, one of {choices}")]
    NoService { choices: String },
    #[error("SERVICE_NAME={name} is not a service of the topology; use one of {choices}")]
    UnknownService { name: String, choices: String },
    #[error("{variable}={url} is not an http:// URL")]
    NotHttp { variable: String, url: String },
    #[error("{variable}={value} is not valid: {reason}")]
    Invalid {
        variable: String,
        value: String,
        reason: String,
    },
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
}

#[derive(Debug)]
pub struct Config {
    pub service_name: String,
    pub host: IpAddr,
    pub port: u16,
    /// The admin (fault injection) API's port, always on 127.0.0.1: reached locally, or
    /// in a cluster through `kubectl port-forward` (the Kubernetes API), never through a
    /// Service.
    pub admin_port: u16,
    pub topology: Topology,
    /// Base URL of each service this one calls.
    pub dependency_urls: HashMap<String, String>,
    pub downstream_timeout: Duration,
    pub shutdown: ShutdownTiming,
    pub exemplars: ExemplarFilter,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let file = env("TOPOLOGY_FILE");
        let topology =
            Topology::load(file.as_deref().map(Path::new)).map_err(ConfigError::Topology)?;

        let choices = || topology.service_names().join(", ");
        let Some(service_name) = env("SERVICE_NAME") else {
            return Err(ConfigError::NoService { choices: choices() });
        };
        let Some(service) = topology.service(&service_name) else {
            return Err(ConfigError::UnknownService {
                name: service_name,
                choices: choices(),
            });
        };

        let dependency_urls = service
            .dependencies()
            .into_iter()
            .map(|name| {
                let variable = url_variable(name);
                let url = env(&variable).unwrap_or_else(|| format!("http://{name}"));
                let url = url.trim_end_matches('/').to_owned();
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::NotHttp { variable, url });
                }
                Ok((name.to_owned(), url))
            })
            .collect::<Result<_, ConfigError>>()?;
        // `telemetry::init` reads these itself; checked here too, so that a bad value is a
        // configuration error (exit status 2, before logging starts) like any other.
        TracingMode::from_lookup(&env)?;

        Ok(Config {
            host: parse_var(&env, "HOST", IpAddr::from([127, 0, 0, 1]))?,
            port: parse_var(&env, "PORT", 8080)?,
            admin_port: parse_var(&env, "ADMIN_PORT", admin::DEFAULT_PORT)?,
            downstream_timeout: Duration::from_millis(parse_var(
                &env,
                "DOWNSTREAM_TIMEOUT_MS",
                2000,
            )?),
            shutdown: ShutdownTiming {
                delay: Duration::from_millis(parse_var(&env, "SHUTDOWN_DELAY_MS", 0)?),
                drain: Duration::from_secs(parse_var(&env, "SHUTDOWN_DRAIN_SECONDS", 10)?),
            },
            exemplars: parse_var(&env, EXEMPLAR_FILTER_VARIABLE, ExemplarFilter::default())?,
            service_name,
            topology,
            dependency_urls,
        })
    }
}

fn parse_var<T>(
    env: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match env(name) {
        None => Ok(default),
        Some(value) => value
            .trim()
            .parse()
            .map_err(|error: T::Err| ConfigError::Invalid {
                variable: name.to_owned(),
                reason: error.to_string(),
                value,
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn dependencies_default_to_their_kubernetes_service_and_can_be_overridden() {
        let config = config(&[
            ("SERVICE_NAME", "gateway-service"),
            ("PRODUCT_SERVICE_URL", "http://127.0.0.1:30082/"),
        ])
        .expect("valid");
        assert_eq!(
            config.dependency_urls["product-service"],
            "http://127.0.0.1:30082"
        );
        assert_eq!(
            config.dependency_urls["order-service"],
            "http://order-service"
        );
        assert_eq!(
            config.dependency_urls["user-service"],
            "http://user-service"
        );
        assert_eq!(config.dependency_urls.len(), 3);
        assert_eq!(config.port, 8080);
        assert_eq!(config.host.to_string(), "127.0.0.1");
    }

    #[test]
    fn a_missing_or_unknown_service_name_lists_the_choices() {
        let missing = config(&[]).expect_err("must fail").to_string();
        assert!(
            missing.contains("SERVICE_NAME is not set") && missing.contains("notification-service"),
            "{missing}"
        );
        let unknown = config(&[("SERVICE_NAME", "billing")])
            .expect_err("must fail")
            .to_string();
        assert!(
            unknown.contains("billing") && unknown.contains("gateway-service"),
            "{unknown}"
        );
    }

    #[test]
    fn bad_numbers_name_the_variable() {
        let error =
            config(&[("SERVICE_NAME", "user-service"), ("PORT", "eighty")]).expect_err("must fail");
        assert!(format!("{error:#}").contains("PORT=eighty"), "{error:#}");
    }

    #[test]
    fn the_exemplar_filter_is_the_sdks_and_a_bad_one_names_the_variable_and_the_choices() {
        let user = ("SERVICE_NAME", "user-service");
        assert_eq!(
            config(&[user]).expect("valid").exemplars,
            ExemplarFilter::TraceBased
        );
        let off = config(&[user, ("OTEL_METRICS_EXEMPLAR_FILTER", "always_off")]).expect("valid");
        assert_eq!(off.exemplars, ExemplarFilter::AlwaysOff);
        let error =
            config(&[user, ("OTEL_METRICS_EXEMPLAR_FILTER", "sometimes")]).expect_err("must fail");
        let message = format!("{error:#}");
        for part in [
            "OTEL_METRICS_EXEMPLAR_FILTER=sometimes",
            "trace_based",
            "always_off",
        ] {
            assert!(message.contains(part), "{part}: {message}");
        }
    }

    #[test]
    fn an_unsupported_traces_exporter_is_a_configuration_error() {
        let user = ("SERVICE_NAME", "user-service");
        assert!(config(&[user, ("OTEL_TRACES_EXPORTER", "none")]).is_ok());
        let error = config(&[user, ("OTEL_TRACES_EXPORTER", "jaeger")]).expect_err("must fail");
        assert!(
            format!("{error:#}").contains("OTEL_TRACES_EXPORTER=jaeger"),
            "{error:#}"
        );
    }

    #[test]
    fn a_dependency_url_must_be_http() {
        let error = config(&[
            ("SERVICE_NAME", "product-service"),
            ("INVENTORY_SERVICE_URL", "inventory:80"),
        ])
        .expect_err("must fail");
        assert!(
            error.to_string().contains("INVENTORY_SERVICE_URL"),
            "{error}"
        );
    }
}
