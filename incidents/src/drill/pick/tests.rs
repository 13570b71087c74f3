//! Drawing drills: deterministic by seed, valid for the service drawn, as deep as the
//! level asks, and as mild as an intermittent one must be.

use std::collections::BTreeSet;

use contract::topology::Topology;

use super::*;

/// Every seed from 0 to 300 at `level` over the built-in graph.
fn drills(level: Level) -> Vec<Drill> {
    let topology = Topology::built_in();
    (0..300)
        .map(|seed| pick(&topology, level, seed).expect("a drill"))
        .collect()
}

fn dependencies(topology: &Topology, service: &str) -> Vec<String> {
    topology
        .service(service)
        .expect("a service of the topology")
        .dependencies()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_same_seed_draws_the_same_drill_and_seeds_differ() {
    let topology = Topology::built_in();
    for level in Level::ALL {
        let first: Vec<Drill> = (0..50)
            .map(|s| pick(&topology, level, s).unwrap())
            .collect();
        let again: Vec<Drill> = (0..50)
            .map(|s| pick(&topology, level, s).unwrap())
            .collect();
        assert_eq!(first, again, "{level}");
        let distinct: BTreeSet<String> = first.iter().map(Drill::describe).collect();
        assert!(distinct.len() > 5, "{level}: {distinct:?}");
    }
}

#[test]
fn the_built_in_graph_is_reached_with_its_depths() {
    let depths: Vec<(String, usize)> = reached(&Topology::built_in())
        .into_iter()
        .map(|r| (r.service, r.depth))
        .collect();
    let expected = [
        ("gateway-service", 0),
        ("order-service", 1),
        ("user-service", 1),
        ("product-service", 1),
        ("inventory-service", 2),
        ("payment-service", 2),
        ("notification-service", 3),
    ];
    assert_eq!(depths, expected.map(|(s, d)| (s.to_owned(), d)));
}

#[test]
fn every_level_draws_valid_faults_on_reached_services_of_its_depth() {
    let topology = Topology::built_in();
    for level in Level::ALL {
        let mut kinds = BTreeSet::new();
        for drill in drills(level) {
            let spec = &drill.spec;
            let deps = dependencies(&topology, &drill.service);
            assert_eq!(spec.validate(&deps), Ok(()), "{level}: {spec:?}");
            assert_eq!(spec.kinds().collect::<Vec<_>>(), [drill.kind], "one kind");
            assert_eq!(spec.for_seconds, None, "the injection sets the expiry");
            match level {
                Level::Single => assert!(drill.depth <= 1, "{}", drill.describe()),
                Level::Cascading => assert!(drill.depth >= 2, "{}", drill.describe()),
                Level::Intermittent => {}
            }
            kinds.insert(drill.kind.about().name);
        }
        let every: BTreeSet<&str> = FaultKind::ALL.map(|k| k.about().name).into();
        assert_eq!(kinds, every, "{level} draws every kind");
    }
}

#[test]
fn intermittent_faults_are_mild_or_on_one_reached_route() {
    let reach = reached(&Topology::built_in());
    for drill in drills(Level::Intermittent) {
        let spec = &drill.spec;
        if let Some(rate) = spec.error_rate {
            assert!((0.05..=0.10).contains(&rate), "{rate}");
            continue;
        }
        let route = spec.route.as_deref().expect("one route only");
        let service = reach.iter().find(|r| r.service == drill.service).unwrap();
        assert!(
            service.routes.iter().any(|r| r.path() == route),
            "{}: {route} is not reached",
            drill.describe()
        );
    }
}

#[test]
fn a_shallow_topology_has_no_cascading_drill() {
    let topology = Topology::parse(
        "t.yaml",
        "services:\n  front:\n    routes:\n      GET /api/data:\n        calls:\n          - to: back\n  back: {}\n",
    )
    .expect("a topology");
    let error = pick(&topology, Level::Cascading, 1).expect_err("too shallow");
    assert!(error.to_string().contains("two calls or more"), "{error}");
    assert_eq!(
        pick(&topology, Level::Single, 1).unwrap().level,
        Level::Single
    );
}

#[test]
fn levels_parse_by_name_and_refuse_others_naming_every_level() {
    for level in Level::ALL {
        assert_eq!(level.name().parse::<Level>().unwrap(), level);
    }
    let error = "hard"
        .parse::<Level>()
        .expect_err("not a level")
        .to_string();
    assert!(error.contains("`hard`") && error.contains("single, cascading and intermittent"));
}
