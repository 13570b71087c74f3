//! The command line: every flag parses, every bad value names its flag, every command's
//! help has an example.

use clap::{CommandFactory as _, Parser as _};
use xtask::{
    Cli, Command,
    traffic::{Preset, Think},
};

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("cargo xtask").chain(args.iter().copied()))
}

fn traffic(args: &[&str]) -> xtask::traffic::TrafficArgs {
    let mut all = vec!["traffic"];
    all.extend_from_slice(args);
    match parse(&all).expect("parses").command {
        Command::Traffic(args) => *args,
        other => panic!("not traffic: {other:?}"),
    }
}

#[test]
fn bad_values_name_their_flag() {
    for (args, flag) in [
        (&["traffic", "--users", "0"][..], "--users"),
        (&["traffic", "--users", "many"], "--users"),
        (&["traffic", "--duration", "ten"], "--duration"),
        (&["traffic", "--mix", "dta=40"], "--mix"),
        (&["traffic", "--think", "soon"], "--think"),
        (&["traffic", "--rate", "0"], "--rate"),
        (&["traffic", "--rate=-5"], "--rate"),
        (&["traffic", "--requests", "0"], "--requests"),
        (&["traffic", "--slowest=-1"], "--slowest"),
        (&["traffic", "--slowest", "101"], "--slowest"),
        (&["traffic", "--slo", "p99"], "--slo"),
        (
            &["traffic", "--target", "https://localhost:30080"],
            "--target",
        ),
        (&["traffic", "--preset", "sideways"], "--preset"),
        (&["smoke", "--colour"], "--colour"),
        (&["bench", "--connections", "0"], "--connections"),
        (&["bench", "--duration", "0"], "--duration"),
        (&["bench", "--duration", "long"], "--duration"),
        (
            &["chaos", "inventory-service", "--error-rate", "2"],
            "--error-rate",
        ),
        (
            &["chaos", "inventory-service", "--status", "200"],
            "--status",
        ),
        (
            &["chaos", "inventory-service", "--latency", "soon"],
            "--latency",
        ),
        (&["chaos", "inventory-service", "--for", "ever"], "--for"),
        (&["drill", "--level", "hard"], "--level"),
        (&["drill", "--duration", "0"], "--duration"),
        (&["drill", "--seed", "soon"], "--seed"),
        (
            &["chaos", "inventory-service", "--clear", "--latency", "1s"],
            "--clear",
        ),
        (&["scenario", "chaotic"], "chaotic"),
        (&["traffic", "--chaos", "sometimes"], "--chaos"),
        (&["traffic", "--seed", "3"], "--chaos"),
    ] {
        let error = parse(args).expect_err("must be rejected").to_string();
        assert!(error.contains(flag), "{args:?}: {error}");
    }
}

#[test]
fn the_defaults_are_the_documented_ones() {
    let settings = traffic(&[]).settings();
    assert_eq!(settings.duration, Some(std::time::Duration::from_secs(300)));
    assert_eq!(settings.users, 5);
    assert_eq!(
        settings.mix,
        "data=40,action=20,health=20,slow=10,error=10"
            .parse()
            .expect("mix")
    );
    assert_eq!(settings.think, "100ms..1s".parse().expect("think"));
    assert_eq!((settings.rate, settings.requests), (None, None));
    assert_eq!(settings.slowest, 5);
    assert_eq!(traffic(&["--slowest", "0"]).settings().slowest, 0);
    assert_eq!(
        traffic(&["--duration", "0"]).settings().duration,
        None,
        "0 runs until Ctrl+C"
    );
}

#[test]
fn presets_are_plans_that_explicit_flags_override() {
    let spike = traffic(&["--preset", "spike"]);
    assert_eq!(spike.preset, Some(Preset::Spike));
    // `--scenario` is the preset's old name, kept working.
    assert_eq!(
        traffic(&["--scenario", "spike"]).preset,
        Some(Preset::Spike)
    );
    let settings = spike.settings();
    assert_eq!(
        (settings.users, settings.requests, settings.think),
        (200, Some(200), Think::None)
    );
    assert_eq!(settings.mix, "action=1".parse().expect("mix"));

    let errors = traffic(&["--preset", "errors"]).settings();
    assert_eq!((errors.users, errors.requests), (1, Some(100)));
    assert_eq!(errors.mix, "error=1".parse().expect("mix"));

    let normal = traffic(&["--preset", "normal", "--users", "9"]).settings();
    assert_eq!(
        (normal.users, normal.duration.map(|d| d.as_secs())),
        (9, Some(180))
    );
}

/// Every scenario of `incidents`' table is a `scenario` command line and names a traffic
/// preset that exists; the command's help lists each one.
#[test]
fn every_scenario_of_the_table_is_a_command_with_a_preset() {
    let help = parse(&["scenario", "--help"])
        .expect_err("--help stops parsing")
        .to_string();
    for scenario in incidents::scenarios::all() {
        xtask::scenario::preset(&scenario).expect("the preset exists");
        parse(&["scenario", scenario.name]).expect("a scenario command");
        assert!(help.contains(scenario.summary), "{help}");
    }
    let broken = incidents::Scenario {
        preset: "sideways",
        ..incidents::scenarios::all().remove(0)
    };
    assert!(xtask::scenario::preset(&broken).is_err());
}

#[test]
fn the_documented_environment_variables_work() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["traffic", "--target", "http://127.0.0.1:1"])
        .env("CONCURRENT_USERS", "lots")
        .output()
        .expect("run xtask");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--users"), "{stderr}");
}

#[test]
fn every_command_explains_itself_with_an_example() {
    let cli = Cli::command();
    assert_eq!(cli.get_bin_name(), Some("cargo xtask"));
    for sub in cli.get_subcommands() {
        assert!(
            sub.get_about().is_some(),
            "{} has no one-line description",
            sub.get_name()
        );
        let help = sub
            .get_after_help()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            help.contains("cargo xtask"),
            "{} --help has no example",
            sub.get_name()
        );
    }
}

/// A stand-in gateway on 127.0.0.1 whose `/api/data` names trace `n` in its `n`th answer
/// (`x-trace-id`, as the services do) and whose `/health` names none; it serves for as
/// long as the returned runtime lives.
fn tracing_gateway() -> (tokio::runtime::Runtime, String) {
    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::{Router, http::HeaderMap, routing::get};

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let answers = std::sync::Arc::new(AtomicU64::new(0));
    let router = Router::new()
        .route(
            contract::endpoints::DATA,
            get(move || async move {
                let n = answers.fetch_add(1, Ordering::Relaxed);
                let mut headers = HeaderMap::new();
                let trace = format!("{n:032x}").parse().expect("a header value");
                headers.insert(contract::TRACE_ID_HEADER, trace);
                headers
            }),
        )
        .route(contract::endpoints::HEALTH, get(|| async { "ok" }));
    runtime.spawn(async move { axum::serve(listener, router).await });
    (runtime, url)
}

#[test]
fn the_summary_ends_with_the_slowest_requests_and_their_traces() {
    let (_gateway, url) = tracing_gateway();
    let json = std::env::temp_dir().join(format!("xtask-traffic-{}.json", std::process::id()));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["traffic", "--target", &url, "--mix", "data=1,health=1"])
        .args(["--think", "0", "--users", "2", "--requests", "40"])
        .args(["--slowest", "40", "--json"])
        .arg(&json)
        .output()
        .expect("run xtask");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (table, slowest) = stdout
        .split_once(
            "Slowest requests (cargo xtask logs --trace ID shows one's logs; Jaeger finds it by id):\n",
        )
        .unwrap_or_else(|| panic!("no slowest requests:\n{stdout}"));
    assert!(
        table.contains("GET /api/data") && table.contains("total"),
        "{table}"
    );
    let lines: Vec<&str> = slowest.lines().collect();
    assert_eq!(lines.len(), 40, "{slowest}");
    for line in lines {
        let (_, trace) = line.split_once("  trace ").expect("a trace column");
        if line.contains("GET /health") {
            assert_eq!(trace, "-", "{line}");
        } else {
            assert!(
                line.contains("GET /api/data  ") && line.contains(" 200  ") && trace.len() == 32,
                "{line}"
            );
        }
    }

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the --json file"))
            .expect("JSON");
    let _ = std::fs::remove_file(&json);
    let slowest = summary["slowest"].as_array().expect("a slowest array");
    assert_eq!(slowest.len(), 40);
    for slow in slowest {
        let endpoint = slow["endpoint"].as_str().expect("endpoint");
        assert!(
            slow["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0),
            "{slow}"
        );
        assert_eq!(slow["status"], 200, "{slow}");
        match endpoint {
            "GET /health" => assert!(slow["trace_id"].is_null(), "{slow}"),
            _ => assert_eq!(slow["trace_id"].as_str().map(str::len), Some(32), "{slow}"),
        }
    }
    assert_eq!(summary["total"]["requests"], 40);
}

#[test]
fn a_target_that_is_down_is_one_sentence_with_the_way_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["traffic", "--target", &url])
        .output()
        .expect("run xtask");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{url} is not answering ("))
            && stderr.contains("Is the mesh running? Start it with `cargo xtask local`"),
        "{stderr}"
    );
}

/// A gateway that answers every request as it should but whose `/metrics` only
/// registers the families (HELP and TYPE lines, no new samples) fails the smoke test:
/// it checks that its own requests were counted, not that the names appear.
#[test]
fn smoke_fails_when_the_metrics_do_not_count_its_requests() {
    use axum::{http::StatusCode, routing::get};
    let families = "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n\
        # HELP http_request_duration_seconds Latency.\n# TYPE http_request_duration_seconds histogram\n\
        # HELP downstream_requests_total Calls.\n# TYPE downstream_requests_total counter\n\
        # HELP business_events_total Events.\n# TYPE business_events_total counter\n\
        http_requests_total{endpoint=\"/health\",status=\"200\"} 7\n";
    let app = axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/api/data", get(|| async { "{}" }))
        .route("/api/action", axum::routing::post(|| async { "{}" }))
        .route(
            "/api/error",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "{}") }),
        )
        .route("/metrics", get(move || async move { families }));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        axum::serve(listener, app).await
    });
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["smoke", "--target", &url])
        .output()
        .expect("run xtask smoke");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("4 passed, 1 failed"), "{stdout}");
    assert!(
        stdout.contains("FAIL  GET /metrics       did not count the requests above: http_requests_total{endpoint=\"/api/action\"} 0 -> 0"),
        "{stdout}"
    );
}
