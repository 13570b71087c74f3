//! Resident memory from /proc, and start-up time from exec to a 200 on `/ready`.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use contract::endpoints;

use crate::{
    cmd::Cmd,
    ports::free_ports,
    supervisor::{Role, Supervisor, Wait},
};

/// A process's resident set now (`VmRSS`) and at its highest (`VmHWM`), in KiB.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

impl Memory {
    pub fn of(pid: u32) -> anyhow::Result<Memory> {
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let kib = |key: &str| -> anyhow::Result<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("no {key} in {path}"))
        };
        Ok(Memory {
            rss_kib: kib("VmRSS:")?,
            peak_kib: kib("VmHWM:")?,
        })
    }
}

/// Starts the service binary `starts` times, one after another, and measures from just
/// before exec to its first 200 on `/ready` (polled every 200 µs). Returns the times.
pub async fn startup_times(
    binary: &Path,
    topology_file: &Path,
    otlp_endpoint: &str,
    log: &Path,
    starts: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(starts);
    for _ in 0..starts {
        let [port, admin_port] = free_ports(2)?[..] else {
            bail!("two free ports were asked for");
        };
        let cmd = Cmd::new(binary, "starting user-service for its start-up time")
            .env("SERVICE_NAME", "user-service")
            .env("PORT", port.to_string())
            .env("ADMIN_PORT", admin_port.to_string())
            .env("TOPOLOGY_FILE", topology_file)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint);
        let ready = Wait {
            name: "user-service".into(),
            url: format!("http://127.0.0.1:{port}{}", endpoints::READY),
            any_answer: false,
        };
        let mut supervisor = Supervisor::new();
        // From just before exec to the first 200, polled every 200 µs.
        let started = Instant::now();
        supervisor.spawn(&ready.name, Role::Essential, cmd, log.to_owned())?;
        supervisor
            .wait_ready(
                std::slice::from_ref(&ready),
                Duration::from_secs(10),
                Duration::from_micros(200),
            )
            .await
            .context("user-service, started for its start-up time")?;
        times.push(started.elapsed());
        supervisor.stop_all().await;
    }
    Ok(times)
}
