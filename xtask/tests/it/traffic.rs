//! `cargo xtask traffic`'s open model as a user runs it: the documented `--rate` example
//! reaches its rate against a gateway whose endpoints take as long as the mesh's, and a
//! rate the connections cannot carry is reported in the table, the JSON and a warning.

use std::{process::Output, time::Duration};

use axum::{
    Router,
    http::StatusCode,
    routing::{get, post},
};
use contract::endpoints;
use xtask::paths::workspace_root;

/// A stand-in gateway on 127.0.0.1 whose endpoints take as long as the mesh's: `/api/slow`
/// 0.5 to 2 s (mock-service's `SLOW_MS`), `/api/error` a designed 500, the rest at
/// once. It serves for as long as the returned runtime lives.
fn gateway_with_the_mesh_latencies() -> (tokio::runtime::Runtime, String) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let router = Router::new()
        .route(endpoints::HEALTH, get(|| async { "ok" }))
        .route(endpoints::DATA, get(|| async { "{}" }))
        .route(endpoints::ACTION, post(|| async { "{}" }))
        .route(
            endpoints::SLOW,
            get(|| async {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(500..=2000))).await;
                "{}"
            }),
        )
        .route(
            endpoints::ERROR,
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        );
    runtime.spawn(async move { axum::serve(listener, router).await });
    (runtime, url)
}

/// docs/traffic.md's `cargo xtask traffic --rate 200 ...` example, as words.
fn the_documented_rate_example() -> Vec<String> {
    let docs =
        std::fs::read_to_string(workspace_root().join("docs/traffic.md")).expect("docs/traffic.md");
    let line = docs
        .lines()
        .find(|line| line.starts_with("cargo xtask traffic --rate 200 "))
        .expect("docs/traffic.md has the `--rate 200` example");
    // Its only quoted word is the --slo value, which has no spaces.
    line.split_whitespace()
        .skip(2)
        .map(|word| word.trim_matches('\'').to_owned())
        .collect()
}

/// Runs `cargo xtask` with `args`, `--flag value` pairs of `replace` put in place of the
/// ones the args have; returns the output and the `--json` summary.
fn traffic(mut args: Vec<String>, replace: &[(&str, &str)]) -> (Output, serde_json::Value) {
    for (flag, value) in replace {
        match args.iter().position(|arg| arg == flag) {
            Some(at) => args[at + 1] = (*value).to_owned(),
            None => args.extend([(*flag).to_owned(), (*value).to_owned()]),
        }
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(&args)
        .output()
        .expect("run xtask");
    let json_at = args.iter().position(|arg| arg == "--json").expect("--json");
    let path = &args[json_at + 1];
    let text = std::fs::read_to_string(path).unwrap_or_else(|_| {
        panic!(
            "no summary in {path}: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let _ = std::fs::remove_file(path);
    (output, serde_json::from_str(&text).expect("JSON"))
}

fn json_path(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("xtask-{name}-{}.json", std::process::id()))
        .display()
        .to_string()
}

#[test]
fn the_documented_rate_example_reaches_its_rate() {
    let (_gateway, url) = gateway_with_the_mesh_latencies();
    let json = json_path("rate-example");
    let seconds = 5;
    let (output, summary) = traffic(
        the_documented_rate_example(),
        &[
            ("--duration", &seconds.to_string()),
            ("--target", &url),
            ("--json", &json),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Its objectives hold on a healthy mesh, so it exits 0.
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let due = 200 * seconds;
    let sent = summary["total"]["requests"].as_u64().expect("requests");
    assert!(
        sent * 10 >= due * 9,
        "{sent} requests sent of the {due} due at 200/s for {seconds} s:\n{stdout}"
    );
    let schedule = &summary["schedule"];
    assert_eq!(schedule["dropped_late"], 0, "{stdout}");
    assert_eq!(schedule["waited_at_cap"], 0, "{stdout}");
    // The connections kept up; a busy machine may still start requests late, which a
    // warning would say without naming the connections.
    assert!(!stdout.contains("--max-connections"), "{stdout}");
    let total = &summary["total"];
    let parts: u64 = [
        "successes",
        "expected_errors",
        "failures",
        "in_flight",
        "not_sent",
    ]
    .iter()
    .map(|part| total[part].as_u64().expect("a count"))
    .sum();
    assert_eq!(Some(parts), schedule["scheduled"].as_u64(), "{summary}");
}

#[test]
fn a_rate_the_connections_cannot_carry_is_reported() {
    // The command line, shortened: 2 connections cannot carry 50 requests/s of
    // /api/slow (0.5 to 2 s each).
    let (_gateway, url) = gateway_with_the_mesh_latencies();
    let json = json_path("cannot-carry");
    let args = "traffic --mix slow=1 --rate 50 --users 2 --max-connections 2 --duration 3";
    let (output, summary) = traffic(
        args.split(' ').map(str::to_owned).collect(),
        &[("--target", &url), ("--json", &json)],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let schedule = &summary["schedule"];
    let not_sent = summary["total"]["not_sent"].as_u64().expect("not_sent");
    assert!(not_sent > 0, "{stdout}");
    assert!(
        schedule["scheduled"].as_u64() >= Some(135),
        "about 150 were due: {schedule}"
    );
    assert!(
        stdout.contains("scheduled requests not sent")
            && stdout.contains("WARNING: the run fell behind its schedule: asked 50 requests/s")
            && stdout.contains("Raise --max-connections to about "),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("50 requests/s, 2 connections at first, up to 2"),
        "{stderr}"
    );
}

#[test]
fn old_command_lines_keep_their_connections() {
    use clap::Parser as _;
    let settings = |args: &[&str]| {
        let cli = xtask::Cli::try_parse_from(["cargo xtask", "traffic"].iter().chain(args))
            .expect("parses");
        match cli.command {
            xtask::Command::Traffic(traffic) => traffic.settings(),
            other => panic!("not traffic: {other:?}"),
        }
    };
    let default = settings(&["--rate", "200"]);
    assert_eq!((default.users, default.max_connections), (5, 100));
    // --users above the default cap raises it, as the connections it asked for.
    let many = settings(&["--rate", "400", "--users", "300"]);
    assert_eq!((many.users, many.max_connections), (300, 300));
    let capped = settings(&["--rate", "400", "--max-connections", "8"]);
    assert_eq!((capped.users, capped.max_connections), (5, 8));
}

#[test]
fn contradicting_connection_flags_are_named() {
    for (args, said) in [
        (
            &["--rate", "10", "--users", "8", "--max-connections", "4"][..],
            "--users 8 is more than --max-connections 4",
        ),
        (
            &["--max-connections", "4"],
            "--max-connections caps the connections of the open model: give --rate too",
        ),
        (
            &["--rate", "10", "--max-connections", "0"],
            "--max-connections",
        ),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("traffic")
            .args(args)
            .args(["--target", "http://127.0.0.1:1"])
            .output()
            .expect("run xtask");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(said),
            "{stderr}"
        );
    }
}
