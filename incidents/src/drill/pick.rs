//! Drawing a drill's hidden fault from a topology: which (service, route) pairs the
//! entry's traffic reaches and how deep each service sits, then a service, a kind (from
//! the contract's [`FaultKind`] list, drawn as random chaos draws it) and, by level, a
//! route and a lower rate. The same topology, level and seed draw the same fault.

use std::{collections::VecDeque, ops::RangeInclusive};

use contract::{
    admin::{FaultKind, FaultSpec},
    topology::{Route, Topology},
};
use serde::{Deserialize, Serialize};

use super::{DrillError, Level};

/// A drill: its level and seed, and the fault it hides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Drill {
    pub level: Level,
    pub seed: u64,
    /// The service the fault is set on.
    pub service: String,
    /// The one kind of fault it sets.
    #[serde(with = "super::kind_name")]
    pub kind: FaultKind,
    /// What is sent to the admin API (without its expiry, which the injection adds).
    pub spec: FaultSpec,
    /// Hops from the entry to the service.
    pub depth: usize,
}

impl Drill {
    /// The fault in words: "inventory-service: latency 150..420 ms, on /api/data only".
    pub fn describe(&self) -> String {
        let what = self
            .kind
            .describe(&self.spec)
            .unwrap_or_else(|| self.kind.about().name.to_owned());
        match &self.spec.route {
            Some(route) => format!("{}: {what}, on {route} only", self.service),
            None => format!("{}: {what}", self.service),
        }
    }
}

/// A service the entry's traffic reaches: how deep, on which routes, and whom it calls
/// on them.
#[derive(Clone, Debug, PartialEq)]
pub struct Reached {
    pub service: String,
    /// The fewest hops from an entry (a service nobody calls).
    pub depth: usize,
    pub routes: Vec<Route>,
    pub dependencies: Vec<String>,
}

/// Every service the traffic at the entries reaches (both routes at each entry), in
/// topology order. Bounded: each (service, route) pair is visited once.
pub fn reached(topology: &Topology) -> Vec<Reached> {
    let called: Vec<&str> = topology
        .services()
        .flat_map(|service| service.dependencies())
        .collect();
    let mut queue: VecDeque<(String, Route, usize)> = topology
        .services()
        .filter(|service| !called.contains(&service.name.as_str()))
        .flat_map(|service| Route::ALL.map(|route| (service.name.clone(), route, 0)))
        .collect();
    let mut found: Vec<Reached> = Vec::new();
    while let Some((name, route, depth)) = queue.pop_front() {
        let Some(service) = topology.service(&name) else {
            continue;
        };
        let entry = match found.iter_mut().find(|r| r.service == name) {
            Some(entry) => entry,
            None => {
                found.push(Reached {
                    service: name.clone(),
                    depth,
                    routes: Vec::new(),
                    dependencies: Vec::new(),
                });
                found.last_mut().expect("just pushed")
            }
        };
        if entry.routes.contains(&route) {
            continue;
        }
        entry.routes.push(route);
        for call in &service.plan(route).calls {
            if !entry.dependencies.contains(&call.to) {
                entry.dependencies.push(call.to.clone());
            }
            queue.push_back((call.to.clone(), call.route, depth + 1));
        }
    }
    let order = topology.service_names();
    found.sort_by_key(|r| order.iter().position(|name| *name == r.service));
    found
}

/// The drill of `level` and `seed` over `topology`.
pub fn pick(topology: &Topology, level: Level, seed: u64) -> Result<Drill, DrillError> {
    let candidates: Vec<Reached> = reached(topology)
        .into_iter()
        .filter(|r| match level {
            Level::Single => r.depth <= 1,
            Level::Cascading => r.depth >= 2,
            Level::Intermittent => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(DrillError::NoCandidate {
            level,
            why: match level {
                Level::Cascading => "none is two calls or more away from the entry".into(),
                _ => "the entry's traffic reaches none".into(),
            },
        });
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let target = &candidates[rng.usize(..candidates.len())];
    let kinds: Vec<FaultKind> = FaultKind::ALL
        .into_iter()
        .filter(|kind| kind.can_apply(&target.dependencies))
        .collect();
    let kind = kinds[rng.usize(..kinds.len())];
    let mut draw = |range: RangeInclusive<u64>| rng.u64(range);
    let drawn = kind.random(&target.dependencies, &mut draw);
    let spec = drawn.ok_or_else(|| DrillError::NoCandidate {
        level,
        why: format!("{kind:?} cannot apply to {}", target.service),
    })?;
    let spec = match level {
        Level::Intermittent => intermittent(topology, target, spec, &mut draw),
        Level::Single | Level::Cascading => spec,
    };
    Ok(Drill {
        level,
        seed,
        service: target.service.clone(),
        kind,
        spec,
        depth: target.depth,
    })
}

/// An intermittent version of `spec`: errors at 5% to 10% instead; latency or an
/// unreachable dependency on one route only (one the traffic reaches, and for an
/// unreachable dependency one that calls it).
fn intermittent(
    topology: &Topology,
    target: &Reached,
    spec: FaultSpec,
    draw: &mut dyn FnMut(RangeInclusive<u64>) -> u64,
) -> FaultSpec {
    if spec.error_rate.is_some() {
        return FaultSpec {
            error_rate: Some(draw(5..=10) as f64 / 100.0),
            ..spec
        };
    }
    let calls_it = |route: &Route| match &spec.unreachable {
        Some(dependency) => topology.service(&target.service).is_some_and(|service| {
            service
                .plan(*route)
                .calls
                .iter()
                .any(|call| &call.to == dependency)
        }),
        None => true,
    };
    let routes: Vec<&Route> = target.routes.iter().filter(|r| calls_it(r)).collect();
    let last = u64::try_from(routes.len().saturating_sub(1)).unwrap_or(0);
    let route = usize::try_from(draw(0..=last))
        .ok()
        .and_then(|index| routes.get(index));
    FaultSpec {
        route: route.map(|route| route.path().to_owned()),
        ..spec
    }
}

#[cfg(test)]
mod tests;
