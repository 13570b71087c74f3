//! What the crates may depend on: loadgen, a client of the mesh, meets the services only
//! through the `contract` crate, so it needs none of their code (no C build of jemalloc,
//! no OTLP exporter, no gRPC).

use std::{collections::BTreeSet, process::Command};

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

/// The names of the crates in `cargo tree -p package -e normal`, the package included.
fn normal_dependencies(package: &str) -> BTreeSet<String> {
    // The cargo that runs this test, so that the tree is resolved as the build was.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args(["tree", "-p", package, "-e", "normal", "--prefix", "none"])
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|error| panic!("running {} tree: {error}", cargo.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo tree -p {package} failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
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
