//! `--chaos random`: one fault at a time, on a random service, at random intervals,
//! reproducible from the seed; every fault expires by itself, and all are cleared at the
//! end of the run.

use std::{ops::RangeInclusive, time::Duration};

use contract::{
    admin::{FaultKind, FaultSpec},
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
        Ok((services, _)) if services.is_empty() => {
            eprintln!("[chaos] not injecting faults: the mesh has no service");
            return;
        }
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
        let Some((spec, what)) = random_fault(&mut rng, &topology, service) else {
            continue;
        };
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

/// A fault of a random kind that can apply to `service` (from the contract's list:
/// no unreachable dependency for a service that calls nobody), as that kind draws it,
/// lasting 5 to 15 s; and what it is, in words. `None` if no kind can apply.
fn random_fault(
    rng: &mut fastrand::Rng,
    topology: &Topology,
    service: &str,
) -> Option<(FaultSpec, String)> {
    let dependencies: Vec<String> = topology
        .service(service)
        .map(|s| s.dependencies().into_iter().map(str::to_owned).collect())
        .unwrap_or_default();
    let kinds: Vec<FaultKind> = FaultKind::ALL
        .into_iter()
        .filter(|kind| kind.can_apply(&dependencies))
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let kind = kinds[rng.usize(..kinds.len())];
    let mut draw = |range: RangeInclusive<u64>| rng.u64(range);
    let spec = FaultSpec {
        for_seconds: Some(draw(5..=15)),
        ..kind.random(&dependencies, &mut draw)?
    };
    let what = kind.describe(&spec)?;
    Some((spec, what))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use contract::admin::Latency;

    use super::*;

    /// `caller` calls two services; `leaf` calls nobody.
    const TOPOLOGY: &str = "services:
  caller:
    routes:
      GET /api/data:
        calls:
          - to: leaf
          - to: other
  leaf: {}
  other: {}
";

    /// What a seeded run draws for `service`, 300 times.
    fn draws(seed: u64, service: &str) -> Vec<(FaultSpec, String)> {
        let topology = Topology::parse("t.yaml", TOPOLOGY).expect("a topology");
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..300)
            .map(|_| random_fault(&mut rng, &topology, service).expect("a fault"))
            .collect()
    }

    /// The one kind a random fault has.
    fn kind(spec: &FaultSpec) -> FaultKind {
        let kinds: Vec<FaultKind> = spec.kinds().collect();
        assert_eq!(kinds.len(), 1, "one kind at a time: {spec:?}");
        kinds[0]
    }

    #[test]
    fn every_kind_is_reachable_and_every_fault_valid_within_its_bounds() {
        let dependencies = ["leaf".to_owned(), "other".to_owned()];
        let mut seen = BTreeSet::new();
        let mut unreachable = BTreeSet::new();
        for (spec, what) in draws(7, "caller") {
            assert_eq!(spec.validate(&dependencies), Ok(()), "{spec:?}");
            assert!(
                spec.for_seconds.is_some_and(|s| (5..=15).contains(&s)),
                "{spec:?}"
            );
            let kind = kind(&spec);
            assert_eq!(Some(what), kind.describe(&spec));
            seen.insert(kind.about().name);
            match (spec.latency_ms, spec.error_rate, &spec.unreachable) {
                (Some(Latency::Between([low, high])), _, _) => {
                    assert!((100..=300).contains(&low) && (low + 100..=low + 500).contains(&high));
                }
                (_, Some(rate), _) => assert!((0.2..=0.5).contains(&rate), "{rate}"),
                (_, _, Some(dependency)) => {
                    unreachable.insert(dependency.clone());
                }
                _ => panic!("not a fault random chaos makes: {spec:?}"),
            }
        }
        let every: BTreeSet<&str> = FaultKind::ALL.map(|k| k.about().name).into();
        assert_eq!(seen, every, "every kind is drawn");
        assert_eq!(
            unreachable,
            dependencies.into(),
            "every dependency is drawn"
        );
    }

    #[test]
    fn a_service_that_calls_nobody_gets_no_unreachable_dependency() {
        let faults = draws(7, "leaf");
        assert!(faults.iter().all(|(spec, _)| spec.validate(&[]).is_ok()));
        let kinds: BTreeSet<&str> = faults.iter().map(|(s, _)| kind(s).about().name).collect();
        assert_eq!(kinds, ["error", "latency"].into());
    }

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        assert_eq!(draws(42, "caller"), draws(42, "caller"));
        assert_ne!(draws(42, "caller"), draws(43, "caller"));
    }
}
