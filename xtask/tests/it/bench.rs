//! `cargo xtask bench --quick` runs the whole suite (the mesh, the hello-world, the OTLP
//! receiver, the generators, the image) and writes its tables into an existing document
//! without losing the text around them (`--no-install`: a peer that is missing is skipped
//! with a note, not built here; `--profile dev`: the debug build the suite already has,
//! instead of minutes of release compiling). It checks that every figure was produced,
//! not how good it is: targets are for the benchmark to report.

use std::process::Command;

use contract::topology::Topology;
use xtask::bench::{RESULTS_END, RESULTS_START};

/// The number in column `column` (0-based, after the row's name) of the table row that
/// starts with `| name |`.
fn cell(markdown: &str, name: &str, column: usize) -> Option<String> {
    let row = markdown
        .lines()
        .find(|line| line.starts_with(&format!("| {name} |")))?;
    row.split('|')
        .map(str::trim)
        .nth(column + 2)
        .map(str::to_owned)
}

fn positive(markdown: &str, name: &str, column: usize) -> f64 {
    let text =
        cell(markdown, name, column).unwrap_or_else(|| panic!("no row `{name}`:\n{markdown}"));
    let value: f64 = text
        .parse()
        .unwrap_or_else(|_| panic!("`{text}` in row `{name}` is not a number:\n{markdown}"));
    assert!(
        value > 0.0,
        "row `{name}` column {column} is {value}:\n{markdown}"
    );
    value
}

/// The text of the section that starts with `heading`, down to the next section.
fn section<'a>(markdown: &'a str, heading: &str) -> &'a str {
    let start = markdown
        .find(heading)
        .unwrap_or_else(|| panic!("missing {heading}:\n{markdown}"));
    let rest = &markdown[start + heading.len()..];
    &rest[..rest.find("\n### ").unwrap_or(rest.len())]
}

#[test]
fn the_quick_suite_measures_every_section_and_keeps_the_documents_text() {
    let _serial = crate::support::serial();
    let dir = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let output = dir.join("benchmarks.md");
    std::fs::write(
        &output,
        format!("# Benchmarks\n\nHand-written notes.\n\n{RESULTS_START}\nold figures\n{RESULTS_END}\n\n## Profiling\nkept\n"),
    )
    .expect("seed the document");

    let run = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "bench",
            "--quick",
            "--no-install",
            "--profile",
            "dev",
            "--output",
        ])
        .arg(&output)
        .output()
        .expect("run cargo xtask bench");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bench failed:\n{stderr}");

    let document = std::fs::read_to_string(&output).expect("the document");
    assert!(
        document.contains("Hand-written notes.") && document.contains("## Profiling\nkept"),
        "{document}"
    );
    assert!(!document.contains("old figures"), "{document}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        document.contains(stdout.trim()),
        "stdout carries the same tables:\n{stdout}"
    );

    assert!(
        document.contains("Produced by `cargo xtask bench --quick --profile dev` at ")
            && document.contains("- **Built with the `dev` profile, not `release`**")
            && document.contains("| Image / dev build |"),
        "the document says which build it measured:\n{document}"
    );
    let cores = std::thread::available_parallelism().expect("cores").get();
    assert!(
        document.contains(&format!("- Machine: {cores} cores (")),
        "{document}"
    );
    for section in [
        "### 1. Mesh throughput",
        "### 2. Telemetry overhead",
        "### 3. Footprint",
        "### 4. Load generators",
        "### 5. Image and inner loop",
    ] {
        assert!(document.contains(section), "missing {section}:\n{document}");
    }
    // The mesh answered at full load, with and without span export.
    for endpoint in ["POST /api/action", "GET /api/data"] {
        positive(&document, endpoint, 1);
        assert_eq!(
            cell(&document, endpoint, 4).as_deref(),
            Some("0"),
            "failures:\n{document}"
        );
    }
    // Telemetry's cost: the mesh with spans and exemplars, with spans but no exemplars
    // (OTEL_METRICS_EXEMPLAR_FILTER=always_off), with trace ids but no export
    // (OTEL_TRACES_EXPORTER=none), and with tracing off; each cost a percentage of either
    // sign (short runs are noisy: the figure's size is the benchmark's business).
    let overhead = section(&document, "### 2. Telemetry overhead");
    for variable in [
        "OTEL_METRICS_EXEMPLAR_FILTER=always_off",
        "OTEL_TRACES_EXPORTER=none",
        "OTEL_SDK_DISABLED=true",
    ] {
        assert!(overhead.contains(variable), "{variable}:\n{overhead}");
    }
    assert!(
        overhead.contains("| Requests/s, ids only, no export |")
            && overhead.contains("| Fewer with ids only |"),
        "{overhead}"
    );
    for endpoint in ["POST /api/action", "GET /api/data"] {
        for column in 0..4 {
            positive(overhead, endpoint, column);
        }
        for column in [4, 6, 7] {
            let cost = cell(overhead, endpoint, column).unwrap_or_default();
            assert!(
                cost.strip_suffix('%')
                    .and_then(|n| n.parse::<f64>().ok())
                    .is_some_and(f64::is_finite),
                "`{cost}` in row `{endpoint}` column {column} is no percentage:\n{overhead}"
            );
        }
    }
    // The image's static binary, as a mesh, with spans exported and tracing off, and its
    // rebuild: only
    // where it can be built (the nodes' Rust target, which rust-toolchain.toml lists, and
    // a C compiler for musl).
    if crate::support::require_static_build() {
        for tracing in ["spans exported", "off"] {
            positive(&document, tracing, 0);
        }
        assert!(document.contains("after touching a handler"), "{document}");
    }
    let received = document
        .split("the OTLP receiver got ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .expect("the span count");
    assert!(
        received > 0,
        "span export was on but no span arrived:\n{document}"
    );
    // Memory of each of the seven services, and the start-ups.
    for service in Topology::built_in().service_names() {
        positive(&document, service, 0);
        positive(&document, service, 2);
    }
    assert!(document.contains("of 5 starts"), "{document}");
    // The project's generator always runs; a peer runs, or (outside CI, which installs
    // both) the report says why it was skipped and so does this test.
    positive(&document, "xtask traffic", 0);
    for peer in ["oha", "wrk"] {
        let first = cell(&document, peer, 0).unwrap_or_default();
        match first.strip_prefix("skipped: ") {
            Some(why) => crate::support::skip(&format!("{peer}, a peer of the benchmark"), why),
            None => {
                positive(&document, peer, 0);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
