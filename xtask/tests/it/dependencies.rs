//! What the crates may depend on: loadgen, a client of the mesh, meets the services only
//! through the `contract` crate, so it needs none of their code (no C build of jemalloc,
//! no OTLP exporter, no gRPC); xtask, which every `cargo xtask` compiles first, carries
//! nothing that only the benchmark or the tests run, and builds its dependencies with the
//! features the services need, so that the first `cargo xtask local` compiles each once.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
};

use xtask::paths::workspace_root;

/// Crates (by name prefix) that must not be among loadgen's normal dependencies, and
/// what each would mean.
const NOT_IN_LOADGEN: [(&str, &str); 5] = [
    ("mock-service", "the services' code"),
    ("telemetry", "the services' observability library"),
    ("tikv-jemalloc", "the services' allocator, a C build"),
    ("tonic", "gRPC, for the OTLP exporter"),
    ("opentelemetry-otlp", "the OTLP span exporter"),
];

/// The lines of `cargo tree ARGS --prefix none` (one per crate in the tree, repeats
/// marked ` (*)` removed), for the workspace.
fn cargo_tree(args: &[&str]) -> BTreeSet<String> {
    // The cargo that runs this test, so that the tree is resolved as the build was.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .arg("tree")
        .args(args)
        .args(["--prefix", "none"])
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|error| panic!("running {} tree: {error}", cargo.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo tree {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| line.trim_end_matches(" (*)").to_owned())
        .filter(|line| !line.is_empty())
        .collect()
}

/// The names of the crates in `cargo tree -p package -e normal`, the package included.
fn normal_dependencies(package: &str) -> BTreeSet<String> {
    cargo_tree(&["-p", package, "-e", "normal"])
        .iter()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Each crate (`name vVERSION`) of the tree of `packages` built together (`-e` normal and
/// build dependencies), with the features it is compiled with; a crate built for the
/// build scripts with other features than for the binaries has two entries.
fn features_of(packages: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let mut args = vec!["-e", "normal,build", "-f", "{p} [{f}]"];
    for package in packages {
        args.extend(["-p", package]);
    }
    let mut crates: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in cargo_tree(&args) {
        // `tokio v1.48.0 [io-util,macros]`, `xtask v0.0.0 (/path) [default]`.
        let Some((package, features)) = line.rsplit_once(" [") else {
            panic!("`{line}` is not `{{p}} [{{f}}]`");
        };
        let mut words = package.split_whitespace();
        let name = format!(
            "{} {}",
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default()
        );
        crates
            .entry(name)
            .or_default()
            .insert(features.trim_end_matches(']').to_owned());
    }
    crates
}

/// What xtask's normal dependencies must not bring back, and where it belongs instead:
/// (crate, a feature of it or "" for the crate itself, why).
const NOT_IN_XTASK: [(&str, &str, &str); 4] = [
    (
        "promql-parser",
        "",
        "the dashboards lint's PromQL parser (with a grammar toolchain built for the host too): a dev-dependency",
    ),
    (
        "tonic",
        "server",
        "a gRPC server, for the benchmark's OTLP receiver: the bench-server crate",
    ),
    (
        "tonic",
        "router",
        "a gRPC server, for the benchmark's OTLP receiver: the bench-server crate",
    ),
    (
        "opentelemetry-proto",
        "direct",
        "the OTLP protocol, for the benchmark's receiver: the bench-server crate",
    ),
];

#[test]
fn xtask_compiles_nothing_that_only_the_benchmark_or_the_tests_run() {
    let crates = features_of(&["xtask"]);
    let direct = normal_dependencies_at_depth_one("xtask");
    // The tree was read: xtask, the contract, and tonic (the services' span exporter).
    for expected in ["xtask", "contract", "tonic"] {
        assert!(
            crates
                .keys()
                .any(|name| name.starts_with(&format!("{expected} "))),
            "`{expected}` is not in xtask's dependency tree: {crates:?}"
        );
    }
    let mut found = Vec::new();
    for (name, feature, why) in NOT_IN_XTASK {
        for (package, features) in &crates {
            if !package.starts_with(&format!("{name} ")) {
                continue;
            }
            let present = match feature {
                "" => true,
                "direct" => direct.contains(name),
                feature => features
                    .iter()
                    .any(|list| list.split(',').any(|f| f == feature)),
            };
            if present {
                found.push(format!("{package} {feature} ({why})"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "every `cargo xtask` compiles xtask's normal dependencies first, and they bring in: {}",
        found.join("; ")
    );
}

/// xtask's direct normal dependencies, by name.
fn normal_dependencies_at_depth_one(package: &str) -> BTreeSet<String> {
    cargo_tree(&["-p", package, "-e", "normal", "--depth", "1"])
        .iter()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// `cargo xtask local` builds xtask, then `--package mock-service --package xtask`: every
/// crate of xtask's tree must keep its features in the second build, or it compiles
/// again (and with it everything that depends on it, xtask included).
#[test]
fn the_services_build_reuses_every_crate_that_xtask_built() {
    let xtask = features_of(&["xtask"]);
    let both = features_of(&["mock-service", "xtask"]);
    assert!(
        both.keys()
            .any(|name| name.starts_with("tikv-jemallocator ")),
        "the services' tree was not read: {both:?}"
    );
    let rebuilt: Vec<String> = both
        .iter()
        .filter_map(|(name, features)| {
            let before = xtask.get(name)?;
            (before != features)
                .then(|| format!("{name}: xtask's build {before:?}, the services' {features:?}"))
        })
        .collect();
    assert!(
        rebuilt.is_empty(),
        "the services' build would compile these again with other features (xtask's \
         dependencies must include what the services' need; see telemetry in \
         xtask/Cargo.toml):\n{}",
        rebuilt.join("\n")
    );
}

#[test]
fn loadgen_depends_on_the_contract_and_no_service_code() {
    let crates = normal_dependencies("loadgen");
    // The tree was read: loadgen itself, the contract, its HTTP client.
    for expected in ["loadgen", "contract", "hyper"] {
        assert!(
            crates.contains(expected),
            "`{expected}` is not in loadgen's dependency tree: {crates:?}"
        );
    }
    let found: Vec<String> = crates
        .iter()
        .filter_map(|name| {
            NOT_IN_LOADGEN
                .iter()
                .find(|(prefix, _)| name.starts_with(prefix))
                .map(|(_, what)| format!("{name} ({what})"))
        })
        .collect();
    assert!(
        found.is_empty(),
        "loadgen must reach the services only through the contract crate, but depends on: {}",
        found.join(", ")
    );
}
