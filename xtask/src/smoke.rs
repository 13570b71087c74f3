//! `cargo xtask smoke`: the guide's `test-services.sh` ("all 4 tests pass"), plus the
//! metric names, against the local mesh or the cluster.

use std::time::Duration;

use anyhow::bail;
use mock_service::endpoints;

use crate::mesh::RunningMesh;

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

/// The guide's metric names, which `/metrics` must show once traffic has flowed.
pub const GUIDE_METRICS: [&str; 4] = [
    "http_requests_total",
    "http_request_duration_seconds",
    "downstream_requests_total",
    "business_events_total",
];

impl SmokeArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let base = match self.target {
            Some(target) => target.trim_end_matches('/').to_owned(),
            None => RunningMesh::find(false).entry_url(),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let checks: [(&str, reqwest::Method, &str, u16); 4] = [
            ("health", reqwest::Method::GET, endpoints::HEALTH, 200),
            ("data", reqwest::Method::GET, endpoints::DATA, 200),
            (
                "action, through the whole call graph",
                reqwest::Method::POST,
                endpoints::ACTION,
                200,
            ),
            (
                "error, answering 500 as designed",
                reqwest::Method::GET,
                endpoints::ERROR,
                500,
            ),
        ];
        let mut failed = 0;
        // The four requests, and the metric names.
        let total = checks.len() + 1;
        for (name, method, path, expected) in checks {
            let label = format!("{method} {path}");
            match client.request(method, format!("{base}{path}")).send().await {
                Ok(response) if response.status().as_u16() == expected => {
                    println!("ok    {label:<18} {expected} ({name})");
                }
                Ok(response) => {
                    failed += 1;
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    println!(
                        "FAIL  {label:<18} expected {expected}, got {status}: {}",
                        body.trim()
                    );
                }
                Err(error) => {
                    failed += 1;
                    println!("FAIL  {label:<18} no answer: {}", root_cause(&error));
                }
            }
        }
        match client
            .get(format!("{base}{}", endpoints::METRICS))
            .send()
            .await
        {
            Ok(response) => {
                let text = response.text().await.unwrap_or_default();
                let missing: Vec<&str> = GUIDE_METRICS
                    .into_iter()
                    .filter(|m| !text.contains(m))
                    .collect();
                if missing.is_empty() {
                    println!(
                        "ok    GET /metrics       shows {}",
                        GUIDE_METRICS.join(", ")
                    );
                } else {
                    failed += 1;
                    println!("FAIL  GET /metrics       missing {}", missing.join(", "));
                }
            }
            Err(error) => {
                failed += 1;
                println!("FAIL  GET /metrics       no answer: {}", root_cause(&error));
            }
        }
        println!("{} passed, {failed} failed", total - failed);
        if failed > 0 {
            bail!("{failed} smoke check(s) failed against {base}");
        }
        Ok(())
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
