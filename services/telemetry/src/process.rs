//! The process's own metrics, read from /proc at each scrape: the set that Prometheus's
//! client libraries call process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, ...), under the same names.

use std::fmt;

use procfs::process::{LimitValue, Process};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric as _},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

#[derive(Debug)]
pub(crate) struct ProcessMetrics {
    /// Fixed for the process's life, so read once.
    start_time_seconds: Option<f64>,
}

impl ProcessMetrics {
    pub(crate) fn new() -> Self {
        let start_time_seconds = Process::myself()
            .and_then(|process| process.stat())
            .ok()
            .zip(procfs::boot_time_secs().ok())
            .map(|(stat, boot)| {
                boot as f64 + stat.starttime as f64 / procfs::ticks_per_second() as f64
            });
        Self { start_time_seconds }
    }
}

/// The metrics of `/proc/self/stat`: CPU time, memory, threads.
fn encode_stat(encoder: &mut DescriptorEncoder, stat: &procfs::process::Stat) -> fmt::Result {
    let cpu_seconds = (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64;
    let counter = ConstCounter::new(cpu_seconds);
    // Registered as `process_cpu_seconds`: the encoder appends `_total`.
    counter.encode(encoder.encode_descriptor(
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds.",
        None,
        counter.metric_type(),
    )?)?;
    gauge(
        encoder,
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        stat.vsize,
    )?;
    gauge(
        encoder,
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        stat.rss * procfs::page_size(),
    )?;
    gauge(
        encoder,
        "process_threads",
        "Number of OS threads in the process.",
        stat.num_threads,
    )?;
    Ok(())
}

/// A metric that cannot be read this time (a /proc file missing, say, under a sandbox) is
/// left out of this scrape; the others are still exposed.
impl Collector for ProcessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let Ok(process) = Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = process.stat() {
            encode_stat(&mut encoder, &stat)?;
        }
        if let Ok(open) = process.fd_count() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                open,
            )?;
        }
        if let Ok(limits) = process.limits()
            && let LimitValue::Value(max) = limits.max_open_files.soft_limit
        {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max,
            )?;
        }
        if let Some(start) = self.start_time_seconds {
            gauge(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                start,
            )?;
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}
