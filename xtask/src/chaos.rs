//! `cargo xtask chaos`: set, clear or show the injected faults of a service, on every
//! replica: the local mesh's processes (admin API on 127.0.0.1), or the cluster's pods,
//! reached through the Kubernetes API (`kubectl port-forward`), never an exposed port.
//! Which services there are, and where, comes from the running mesh ([`RunningMesh`]).

use std::time::Duration;

use anyhow::{Context as _, bail};
use contract::admin::{self, FaultRejection, FaultSpec, FaultStatus, Latency};

use loadgen::parse_duration;

use crate::mesh::RunningMesh;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask chaos inventory-service --latency 300ms --for 2m
  cargo xtask chaos inventory-service --latency 100ms..800ms --route /api/data
  cargo xtask chaos payment-service --error-rate 0.2 --status 503 --for 5m
  cargo xtask chaos product-service --unreachable inventory-service
  cargo xtask chaos inventory-service --clear
  cargo xtask chaos all --clear          # every service back to normal
  cargo xtask chaos status               # every service's faults, every replica

It acts on the local mesh while `cargo xtask local` runs (the services of its topology),
otherwise on the kind cluster's pods.")]
pub struct ChaosArgs {
    /// The service to break (e.g. inventory-service), `all` (every service: only with
    /// --clear), or `status` to show every fault
    #[arg(value_name = "SERVICE|all|status")]
    pub service: String,

    /// Added latency: a duration (300ms) or a range (100ms..800ms)
    #[arg(long, value_name = "PAUSE", value_parser = parse_latency)]
    pub latency: Option<Latency>,

    /// Share of requests answered with an error, 0 to 1
    #[arg(long, value_name = "RATIO", value_parser = parse_ratio)]
    pub error_rate: Option<f64>,

    /// The status code of those errors [default: 500]
    #[arg(long, value_name = "CODE", value_parser = clap::value_parser!(u16).range(400..=599))]
    pub status: Option<u16>,

    /// Treat this dependency as unreachable (its calls fail as in an outage)
    #[arg(long, value_name = "SERVICE")]
    pub unreachable: Option<String>,

    /// Only this route: /api/data, /api/action, /api/slow or /api/error
    #[arg(long, value_name = "PATH")]
    pub route: Option<String>,

    /// Back to normal by itself after this long (e.g. 2m) [default: until --clear]
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub for_: Option<Duration>,

    /// Remove the service's fault
    #[arg(long, conflicts_with_all = ["latency", "error_rate", "status", "unreachable", "route", "for_"])]
    pub clear: bool,

    /// Act on the kind cluster's pods even if a local mesh is running
    #[arg(long)]
    pub cluster: bool,
}

/// The service name that means every service.
pub const ALL_SERVICES: &str = "all";

impl ChaosArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let mesh = RunningMesh::find(self.cluster);
        if self.service == "status" {
            for name in mesh.services()? {
                for line in show(&mesh, &name).await? {
                    println!("{line}");
                }
            }
            return Ok(());
        }
        if self.service == ALL_SERVICES {
            if !self.clear {
                bail!("`all` goes with --clear (one fault at a time is injected per service)");
            }
            for line in clear_all(&mesh).await? {
                println!("{line}");
            }
            return Ok(());
        }
        mesh.check_service(&self.service)?;
        let spec = if self.clear {
            None
        } else {
            let spec = FaultSpec {
                latency_ms: self.latency,
                error_rate: self.error_rate,
                error_status: self.status,
                unreachable: self.unreachable,
                route: self.route,
                for_seconds: self.for_.map(|d| d.as_secs().max(1)),
            };
            if spec.latency_ms.is_none() && spec.error_rate.is_none() && spec.unreachable.is_none()
            {
                bail!("say what to break: --latency, --error-rate or --unreachable (or --clear)");
            }
            Some(spec)
        };
        for line in apply(&mesh, &self.service, spec.as_ref()).await? {
            println!("{line}");
        }
        Ok(())
    }
}

/// Clears the fault of every service of the mesh; a line per replica.
pub async fn clear_all(mesh: &RunningMesh) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for service in mesh.services()? {
        lines.extend(apply(mesh, &service, None).await?);
    }
    Ok(lines)
}

/// Sets (`Some`) or clears (`None`) the fault of every replica of `service`; returns a
/// line per replica saying what it now has. A fault is set on every replica or on none:
/// when one replica cannot take it, those that did are cleared again.
pub async fn apply(
    mesh: &RunningMesh,
    service: &str,
    spec: Option<&FaultSpec>,
) -> anyhow::Result<Vec<String>> {
    let Some(spec) = spec else {
        return clear(mesh, service).await;
    };
    let body = serde_json::to_string(spec)?;
    let set = each_replica(mesh, service, |client, base| {
        let body = body.clone();
        async move {
            client
                .put(format!("{base}{}", admin::FAULTS))
                .body(body)
                .send()
                .await
        }
    })
    .await;
    let Err(error) = set else {
        return set;
    };
    match clear(mesh, service).await {
        Ok(_) => Err(error.context(format!(
            "the fault was not set on every replica of {service}, so it is set on none"
        ))),
        Err(undo) => Err(error.context(format!(
            "the fault was not set on every replica of {service}, and clearing it failed too \
             ({undo:#}); `cargo xtask chaos {service} --clear` clears it"
        ))),
    }
}

/// Clears the fault of every replica of `service`.
async fn clear(mesh: &RunningMesh, service: &str) -> anyhow::Result<Vec<String>> {
    each_replica(mesh, service, |client, base| async move {
        client
            .delete(format!("{base}{}", admin::FAULTS))
            .send()
            .await
    })
    .await
}

/// What every replica of `service` has now.
pub async fn show(mesh: &RunningMesh, service: &str) -> anyhow::Result<Vec<String>> {
    each_replica(mesh, service, |client, base| async move {
        client.get(format!("{base}{}", admin::FAULTS)).send().await
    })
    .await
}

async fn each_replica<F, Fut>(
    mesh: &RunningMesh,
    service: &str,
    request: F,
) -> anyhow::Result<Vec<String>>
where
    F: Fn(reqwest::Client, String) -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut lines = Vec::new();
    for mut api in mesh.admin_apis(service).await? {
        let response = match request(client.clone(), api.base_url.clone()).await {
            Ok(response) => response,
            Err(error) => {
                // A pod's request fails when its port-forward died: say how it did.
                let why = api
                    .forward_died()
                    .map_or(String::new(), |how| format!(": {how}"));
                return Err(anyhow::Error::new(error).context(format!(
                    "{service} ({}) does not answer on its admin API{why}",
                    api.replica
                )));
            }
        };
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "{service} ({}) refused the fault: {}",
                api.replica,
                refusal(&body)
            );
        }
        let now: FaultStatus = serde_json::from_str(&body).with_context(|| {
            format!(
                "{service} ({}) answered {body:?}, not its fault status",
                api.replica
            )
        })?;
        lines.push(format!("{service} ({}): {}", api.replica, describe(&now)));
    }
    Ok(lines)
}

/// Why the admin API refused a fault: "--status: 302 is not an error status ...".
fn refusal(body: &str) -> String {
    match serde_json::from_str::<FaultRejection>(body) {
        Ok(FaultRejection {
            field: Some(field),
            reason,
            ..
        }) => format!("--{}: {reason}", flag_of(&field)),
        Ok(FaultRejection { reason, .. }) => reason,
        Err(_) if body.trim().is_empty() => "?".to_owned(),
        Err(_) => body.trim().to_owned(),
    }
}

/// "latency 300 ms, errors 20% (503), for 118 s more" or "no fault".
fn describe(status: &FaultStatus) -> String {
    let Some(fault) = &status.fault else {
        return "no fault".into();
    };
    let mut parts = Vec::new();
    match fault.latency_ms {
        Some(Latency::Fixed(ms)) => parts.push(format!("latency {ms} ms")),
        Some(Latency::Between([low, high])) => parts.push(format!("latency {low}..{high} ms")),
        None => {}
    }
    if let Some(rate) = fault.error_rate {
        parts.push(format!(
            "errors {:.0}% ({})",
            rate * 100.0,
            fault.error_status.unwrap_or(500)
        ));
    }
    if let Some(dependency) = &fault.unreachable {
        parts.push(format!("{dependency} unreachable"));
    }
    if let Some(route) = &fault.route {
        parts.push(format!("on {route} only"));
    }
    parts.push(match status.seconds_left {
        Some(seconds) => format!("for {seconds} s more"),
        None => "until cleared".into(),
    });
    parts.join(", ")
}

/// The flag that sets an admin API field, for error messages.
fn flag_of(field: &str) -> &str {
    match field {
        "latency_ms" => "latency",
        "error_rate" => "error-rate",
        "error_status" => "status",
        "for_seconds" => "for",
        other => other,
    }
}

fn parse_latency(text: &str) -> anyhow::Result<Latency> {
    let ms = |t: &str| parse_duration(t).map(|d| d.as_millis() as u64);
    match text.split_once("..") {
        Some((low, high)) => Ok(Latency::Between([ms(low)?, ms(high)?])),
        None => Ok(Latency::Fixed(ms(text)?)),
    }
}

fn parse_ratio(text: &str) -> anyhow::Result<f64> {
    let ratio: f64 = text
        .trim()
        .parse()
        .with_context(|| format!("`{text}` is not a number"))?;
    if !(0.0..=1.0).contains(&ratio) {
        bail!("{ratio} is not between 0 and 1 (0.2 means 20% of requests)");
    }
    Ok(ratio)
}
