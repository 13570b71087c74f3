//! `cargo xtask smoke`: four requests to the entry service (health, data, action, error),
//! each with the status it must get, and then its metrics: the samples those requests
//! must have raised, read before and after. Against the local mesh or the cluster.

use std::time::Duration;

use anyhow::{Context as _, bail};
use contract::{
    endpoints,
    topology::{Route, Service},
};
use telemetry::root_cause;

use crate::{mesh::RunningMesh, ports::entry_service};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask smoke                                  # the local mesh or the kind cluster
  cargo xtask smoke --target http://localhost:8080   # a port-forwarded gateway")]
pub struct SmokeArgs {
    /// Base URL of the gateway [default: the running mesh's entry, http://localhost:30080]
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
}

impl SmokeArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let mesh = RunningMesh::find(false);
        let base = match self.target {
            Some(target) => target.trim_end_matches('/').to_owned(),
            None => mesh.entry_url(),
        };
        let topology = mesh.topology()?;
        let entry = topology
            .service(entry_service(&topology))
            .context("the topology has no services")?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let before = scrape(&client, &base).await;
        let mut failed = 0;
        for check in CHECKS {
            if !check.run(&client, &base).await {
                failed += 1;
            }
        }
        let after = scrape(&client, &base).await;
        if !metrics_grew(&before, &after, &expected_growth(entry)) {
            failed += 1;
        }
        let total = CHECKS.len() + 1;
        println!("{} passed, {failed} failed", total - failed);
        if failed > 0 {
            bail!("{failed} smoke check(s) failed against {base}");
        }
        Ok(())
    }
}

/// One request and the status it must get.
struct Check {
    what: &'static str,
    method: reqwest::Method,
    path: &'static str,
    status: u16,
}

const CHECKS: [Check; 4] = [
    Check {
        what: "health",
        method: reqwest::Method::GET,
        path: endpoints::HEALTH,
        status: 200,
    },
    Check {
        what: "data",
        method: reqwest::Method::GET,
        path: endpoints::DATA,
        status: 200,
    },
    Check {
        what: "action, through the whole call graph",
        method: reqwest::Method::POST,
        path: endpoints::ACTION,
        status: 200,
    },
    Check {
        what: "error, answering 500 as designed",
        method: reqwest::Method::GET,
        path: endpoints::ERROR,
        status: 500,
    },
];

impl Check {
    /// Sends the request and prints the verdict; whether it passed.
    async fn run(&self, client: &reqwest::Client, base: &str) -> bool {
        let label = format!("{} {}", self.method, self.path);
        let request = client.request(self.method.clone(), format!("{base}{}", self.path));
        match request.send().await {
            Ok(response) if response.status().as_u16() == self.status => {
                println!("ok    {label:<18} {} ({})", self.status, self.what);
                true
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                println!(
                    "FAIL  {label:<18} expected {}, got {status}: {}",
                    self.status,
                    body.trim()
                );
                false
            }
            Err(error) => {
                println!("FAIL  {label:<18} no answer: {}", root_cause(&error));
                false
            }
        }
    }
}

/// A sample that the smoke test's own requests must raise: a metric and some of its
/// labels, summed over the series that have them.
#[derive(Debug, PartialEq)]
struct Growth {
    metric: &'static str,
    labels: Vec<(&'static str, String)>,
}

/// What one `POST /api/action` to `entry` must add: its request counter and latency
/// count on that route, its calls (when the topology makes one for sure) and its
/// business event (when it has one).
fn expected_growth(entry: &Service) -> Vec<Growth> {
    let action = || vec![("endpoint", endpoints::ACTION.to_owned())];
    let plan = entry.plan(Route::Action);
    let mut growth = vec![
        Growth {
            metric: "http_requests_total",
            labels: action(),
        },
        Growth {
            metric: "http_request_duration_seconds_count",
            labels: action(),
        },
    ];
    if plan.calls.iter().any(|call| call.probability >= 1.0) {
        growth.push(Growth {
            metric: "downstream_requests_total",
            labels: vec![],
        });
    }
    if let Some(event) = &plan.event {
        growth.push(Growth {
            metric: "business_events_total",
            labels: vec![
                ("event_type", event.clone()),
                ("status", "success".to_owned()),
            ],
        });
    }
    growth
}

/// The gateway's `/metrics` in the Prometheus text format, or why there is none.
async fn scrape(client: &reqwest::Client, base: &str) -> Result<String, String> {
    let response = client
        .get(format!("{base}{}", endpoints::METRICS))
        .send()
        .await
        .map_err(|error| format!("no answer: {}", root_cause(&error)))?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    response.text().await.map_err(|error| error.to_string())
}

/// Prints and returns whether every expected sample grew between the two scrapes.
fn metrics_grew(
    before: &Result<String, String>,
    after: &Result<String, String>,
    expected: &[Growth],
) -> bool {
    let (before, after) = match (before, after) {
        (Ok(before), Ok(after)) => (before, after),
        (Err(why), _) | (_, Err(why)) => {
            println!("FAIL  GET /metrics       {why}");
            return false;
        }
    };
    let mut grew = Vec::new();
    let mut flat = Vec::new();
    for growth in expected {
        let labels: Vec<(&str, &str)> = growth
            .labels
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let (from, to) = (
            sum(before, growth.metric, &labels),
            sum(after, growth.metric, &labels),
        );
        let line = format!(
            "{}{} {from} -> {to}",
            growth.metric,
            describe_labels(&labels)
        );
        if to > from {
            grew.push(line);
        } else {
            flat.push(line);
        }
    }
    if flat.is_empty() {
        println!(
            "ok    GET /metrics       counted the requests above: {}",
            grew.join(", ")
        );
        true
    } else {
        println!(
            "FAIL  GET /metrics       did not count the requests above: {}",
            flat.join(", ")
        );
        false
    }
}

fn describe_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", pairs.join(","))
}

/// The sum of the samples of `metric` that carry all of `labels`, in the Prometheus text
/// format. Written here rather than taken from a crate: a dozen lines against the one
/// crate for it (prometheus-parse), which would add chrono and itertools to the first
/// build of xtask.
fn sum(exposition: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            let matches = name == metric
                && labels
                    .iter()
                    .all(|(key, value)| series_labels.contains(&format!("{key}=\"{value}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        // Not `sum()`: an empty f64 sum is -0, which would print as such.
        .fold(0.0, |total, value| total + value)
}

#[cfg(test)]
mod tests {
    use contract::topology::Topology;

    use super::*;

    const EXPOSITION: &str = "\
# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{service_name=\"gateway-service\",method=\"POST\",endpoint=\"/api/action\",status=\"200\"} 3
http_requests_total{service_name=\"gateway-service\",method=\"POST\",endpoint=\"/api/action\",status=\"502\"} 1
http_requests_total{service_name=\"gateway-service\",method=\"GET\",endpoint=\"/health\",status=\"200\"} 40
downstream_requests_total{service_name=\"gateway-service\",target=\"order-service\",status=\"200\"} 2
";

    #[test]
    fn samples_are_summed_over_the_series_with_the_labels() {
        let action = [("endpoint", "/api/action")];
        assert_eq!(sum(EXPOSITION, "http_requests_total", &action), 4.0);
        assert_eq!(sum(EXPOSITION, "http_requests_total", &[]), 44.0);
        assert_eq!(sum(EXPOSITION, "downstream_requests_total", &[]), 2.0);
        // The families being registered (their HELP lines) is not a sample.
        assert_eq!(
            sum(
                "# HELP business_events_total x\n",
                "business_events_total",
                &[]
            ),
            0.0
        );
    }

    #[test]
    fn registered_families_without_new_samples_fail() {
        let expected = expected_growth(
            Topology::built_in()
                .service("gateway-service")
                .expect("the gateway"),
        );
        let metrics = expected.iter().map(|g| g.metric).collect::<Vec<_>>();
        assert_eq!(
            metrics,
            [
                "http_requests_total",
                "http_request_duration_seconds_count",
                "downstream_requests_total",
                "business_events_total"
            ]
        );
        let scraped = Ok(EXPOSITION.to_owned());
        assert!(!metrics_grew(&scraped, &scraped, &expected));
        let more = EXPOSITION
            .replace("} 3\n", "} 4\n")
            .replace("} 2\n", "} 3\n");
        assert!(
            !metrics_grew(&scraped, &Ok(more), &expected),
            "no latency or event samples"
        );
    }
}
