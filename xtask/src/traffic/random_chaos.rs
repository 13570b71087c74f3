//! `--chaos random`: one fault at a time, on a random service, at random intervals,
//! reproducible from the seed; every fault expires by itself, and all are cleared at the
//! end of the run.

use std::time::Duration;

use contract::{
    admin::{FaultSpec, Latency},
    topology::Topology,
};
use tokio::{sync::watch, time::Instant};

use crate::{chaos, mesh::RunningMesh};

/// Runs until `done` turns true, then clears every service's fault. The services, and
/// what each depends on, are those of the running mesh (the kind cluster's with
/// `force_cluster`).
pub async fn run(seed: u64, force_cluster: bool, mut done: watch::Receiver<bool>) {
    let mesh = RunningMesh::find(force_cluster);
    let (services, topology) = match mesh.services().and_then(|s| Ok((s, mesh.topology()?))) {
        Ok(found) => found,
        Err(error) => {
            eprintln!("[chaos] not injecting faults: {error:#}");
            return;
        }
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
    loop {
        let gap = Duration::from_secs(rng.u64(5..=20));
        if stopped(&mut done, gap).await {
            break;
        }
        let service = &services[rng.usize(..services.len())];
        let (spec, what) = random_fault(&mut rng, &topology, service);
        let seconds = spec.for_seconds.unwrap_or(10);
        eprintln!(
            "\n[chaos] {:>4} s  {service}: {what} for {seconds} s",
            started.elapsed().as_secs()
        );
        if let Err(error) = chaos::apply(&mesh, service, Some(&spec)).await {
            eprintln!("[chaos] could not inject into {service}: {error:#}");
        }
        if stopped(&mut done, Duration::from_secs(seconds)).await {
            break;
        }
    }
    match chaos::clear_all(&mesh).await {
        Ok(_) => eprintln!("[chaos] all faults cleared"),
        Err(error) => eprintln!(
            "[chaos] could not clear every fault ({error:#}); each expires by itself within 15 s"
        ),
    }
}

/// Waits `pause`; true if the run ended meanwhile.
async fn stopped(done: &mut watch::Receiver<bool>, pause: Duration) -> bool {
    tokio::select! {
        _ = done.wait_for(|done| *done) => true,
        () = tokio::time::sleep(pause) => false,
    }
}

fn random_fault(
    rng: &mut fastrand::Rng,
    topology: &Topology,
    service: &str,
) -> (FaultSpec, String) {
    let dependencies = topology
        .service(service)
        .map(|s| s.dependencies())
        .unwrap_or_default();
    let kinds = if dependencies.is_empty() { 2 } else { 3 };
    let for_seconds = Some(rng.u64(5..=15));
    match rng.u8(0..kinds) {
        0 => {
            let low = rng.u64(100..=300);
            let high = low + rng.u64(100..=500);
            let spec = FaultSpec {
                latency_ms: Some(Latency::Between([low, high])),
                for_seconds,
                ..FaultSpec::default()
            };
            (spec, format!("latency {low}..{high} ms"))
        }
        1 => {
            let rate = f64::from(rng.u8(2..=5)) / 10.0;
            let spec = FaultSpec {
                error_rate: Some(rate),
                for_seconds,
                ..FaultSpec::default()
            };
            (spec, format!("{:.0}% errors", rate * 100.0))
        }
        _ => {
            let dependency = dependencies[rng.usize(..dependencies.len())].to_owned();
            let what = format!("{dependency} unreachable");
            (
                FaultSpec {
                    unreachable: Some(dependency),
                    for_seconds,
                    ..FaultSpec::default()
                },
                what,
            )
        }
    }
}
