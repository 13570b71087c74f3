//! The command line: every flag parses, every bad value names its flag, every command's
//! help has an example.

use clap::{CommandFactory as _, Parser as _};
use xtask::{
    Cli, Command,
    traffic::{Scenario, Think},
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
        (&["traffic", "--slo", "p99"], "--slo"),
        (
            &["traffic", "--target", "https://localhost:30080"],
            "--target",
        ),
        (&["traffic", "--scenario", "sideways"], "--scenario"),
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
fn the_defaults_are_the_guides() {
    let settings = traffic(&[]).settings();
    assert_eq!(settings.duration, Some(std::time::Duration::from_secs(300)));
    assert_eq!(settings.users, 5);
    assert_eq!(
        settings.mix,
        xtask::traffic::Mix::GUIDE.parse().expect("mix")
    );
    assert_eq!(settings.think, Think::REALISTIC.parse().expect("think"));
    assert_eq!((settings.rate, settings.requests), (None, None));
    assert_eq!(
        traffic(&["--duration", "0"]).settings().duration,
        None,
        "0 runs until Ctrl+C"
    );
}

#[test]
fn scenarios_are_presets_that_explicit_flags_override() {
    let spike = traffic(&["--scenario", "spike"]);
    assert_eq!(spike.scenario, Some(Scenario::Spike));
    let settings = spike.settings();
    assert_eq!(
        (settings.users, settings.requests, settings.think),
        (200, Some(200), Think::None)
    );
    assert_eq!(settings.mix, "action=1".parse().expect("mix"));

    let errors = traffic(&["--scenario", "errors"]).settings();
    assert_eq!((errors.users, errors.requests), (1, Some(100)));
    assert_eq!(errors.mix, "error=1".parse().expect("mix"));

    let normal = traffic(&["--scenario", "normal", "--users", "9"]).settings();
    assert_eq!(
        (normal.users, normal.duration.map(|d| d.as_secs())),
        (9, Some(180))
    );
}

#[test]
fn the_guides_environment_variables_work() {
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
