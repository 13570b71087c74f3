//! `cargo xtask chaos`: set, clear or show the injected faults of a service, on every
//! replica: the local mesh's processes (admin API on 127.0.0.1), or the cluster's pods,
//! reached through the Kubernetes API (`kubectl port-forward`), never an exposed port.
//! Which services there are, and where, comes from the running mesh ([`RunningMesh`]).

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Arg, ArgMatches, error::ErrorKind};
use contract::admin::{self, FaultKind, FaultRejection, FaultSpec, FaultStatus};

use loadgen::parse_duration;

use crate::mesh::RunningMesh;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask chaos inventory-service --latency 300ms --for 2m
  cargo xtask chaos inventory-service --latency 100ms..800ms --route /api/data
  cargo xtask chaos payment-service --error-rate 0.2 --status 503 --for 5m
  cargo xtask chaos product-service --unreachable inventory-service
  cargo xtask chaos inventory-service --clear
  cargo xtask chaos all --clear          # every service back to normal
  cargo xtask chaos status               # every service's faults, every replica

It acts on the local mesh while `cargo xtask local` runs (the services of its topology),
otherwise on the kind cluster's pods.")]
pub struct ChaosArgs {
    /// The service to break (e.g. inventory-service), `all` (every service: only with
    /// --clear), or `status` to show every fault
    #[arg(value_name = "SERVICE|all|status")]
    pub service: String,

    /// One flag per kind of fault (--latency, --error-rate, ...: the contract's list)
    #[command(flatten)]
    pub kinds: KindFlags,

    /// The status code of those errors [default: 500]
    #[arg(long, value_name = "CODE", value_parser = clap::value_parser!(u16).range(400..=599))]
    pub status: Option<u16>,

    /// Only this route: /api/data, /api/action, /api/slow or /api/error
    #[arg(long, value_name = "PATH")]
    pub route: Option<String>,

    /// Back to normal by itself after this long (e.g. 2m) [default: until --clear]
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub for_: Option<Duration>,

    /// Remove the service's fault
    // Each kind's flag (`KindFlags`) declares its conflict with this one itself.
    #[arg(long, conflicts_with_all = ["status", "route", "for_"])]
    pub clear: bool,

    /// Act on the kind cluster's pods even if a local mesh is running
    #[arg(long)]
    pub cluster: bool,
}

/// The service name that means every service.
pub const ALL_SERVICES: &str = "all";

impl ChaosArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let mesh = RunningMesh::find(self.cluster);
        if self.service == "status" {
            for line in status(&mesh).await? {
                println!("{line}");
            }
            return Ok(());
        }
        if self.service == ALL_SERVICES {
            if !self.clear {
                bail!("`all` goes with --clear (one fault at a time is injected per service)");
            }
            for line in clear_all(&mesh).await? {
                println!("{line}");
            }
            return Ok(());
        }
        mesh.check_service(&self.service)?;
        let service = self.service.clone();
        let spec = if self.clear {
            None
        } else {
            Some(self.fault()?)
        };
        for line in apply(&mesh, &service, spec.as_ref()).await? {
            println!("{line}");
        }
        Ok(())
    }

    /// The fault the flags ask for: at least one kind, and the options.
    fn fault(self) -> anyhow::Result<FaultSpec> {
        let spec = FaultSpec {
            error_status: self.status,
            route: self.route,
            for_seconds: self.for_.map(|d| d.as_secs().max(1)),
            ..self.kinds.0
        };
        if spec.kinds().next().is_none() {
            bail!(
                "say what to break: give at least one of {} (or --clear)",
                FaultKind::list(|about| format!("--{}", about.flag))
            );
        }
        Ok(spec)
    }
}

/// Clears the fault of every service of the mesh; a line per replica.
pub async fn clear_all(mesh: &RunningMesh) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for service in mesh.services()? {
        lines.extend(apply(mesh, &service, None).await?);
    }
    Ok(lines)
}

/// Sets (`Some`) or clears (`None`) the fault of every replica of `service`; returns a
/// line per replica saying what it now has. A fault is set on every replica or on none:
/// when one replica cannot take it, those that did are cleared again.
pub async fn apply(
    mesh: &RunningMesh,
    service: &str,
    spec: Option<&FaultSpec>,
) -> anyhow::Result<Vec<String>> {
    let Some(spec) = spec else {
        return clear(mesh, service).await;
    };
    let body = serde_json::to_string(spec)?;
    let set = each_replica(mesh, service, |client, base| {
        let body = body.clone();
        async move {
            client
                .put(format!("{base}{}", admin::FAULTS))
                .body(body)
                .send()
                .await
        }
    })
    .await;
    let Err(error) = set else {
        return set;
    };
    match clear(mesh, service).await {
        Ok(_) => Err(error.context(format!(
            "the fault was not set on every replica of {service}, so it is set on none"
        ))),
        Err(undo) => Err(error.context(format!(
            "the fault was not set on every replica of {service}, and clearing it failed too \
             ({undo:#}); `cargo xtask chaos {service} --clear` clears it"
        ))),
    }
}

/// Clears the fault of every replica of `service`.
async fn clear(mesh: &RunningMesh, service: &str) -> anyhow::Result<Vec<String>> {
    each_replica(mesh, service, |client, base| async move {
        client
            .delete(format!("{base}{}", admin::FAULTS))
            .send()
            .await
    })
    .await
}

/// What every replica of every service has now; one line in all while a drill's hidden
/// fault is in force, since a line per service would point at the one that has it.
async fn status(mesh: &RunningMesh) -> anyhow::Result<Vec<String>> {
    let mut replicas = Vec::new();
    for service in mesh.services()? {
        let shown = each_replica_status(mesh, &service, |client, base| async move {
            client.get(format!("{base}{}", admin::FAULTS)).send().await
        })
        .await?;
        replicas.extend(shown);
    }
    if replicas.iter().any(|(_, now)| now.hidden) {
        return Ok(vec![HIDDEN.to_owned()]);
    }
    Ok(replicas
        .iter()
        .map(|(replica, now)| line(replica, now))
        .collect())
}

/// What `status` says while a quiet fault is in force.
const HIDDEN: &str = "A drill is running: its fault is hidden, so no service's fault is shown \
                      (`cargo xtask drill give-up` reveals it and clears it; should its drill \
                      have been killed, `cargo xtask chaos all --clear`).";

/// "inventory-service (pid 4242): latency 300 ms, until cleared".
fn line(replica: &str, now: &FaultStatus) -> String {
    format!("{}: {}", replica, describe(now))
}

/// A line per replica of `service` saying what it has after `request`.
async fn each_replica<F, Fut>(
    mesh: &RunningMesh,
    service: &str,
    request: F,
) -> anyhow::Result<Vec<String>>
where
    F: Fn(reqwest::Client, String) -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    let statuses = each_replica_status(mesh, service, request).await?;
    Ok(statuses
        .iter()
        .map(|(replica, now)| line(replica, now))
        .collect())
}

/// `request` sent to every replica of `service`'s admin API: each replica
/// ("inventory-service (pid 4242)") and what it has now.
async fn each_replica_status<F, Fut>(
    mesh: &RunningMesh,
    service: &str,
    request: F,
) -> anyhow::Result<Vec<(String, FaultStatus)>>
where
    F: Fn(reqwest::Client, String) -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut lines = Vec::new();
    for mut api in mesh.admin_apis(service).await? {
        let response = match request(client.clone(), api.base_url.clone()).await {
            Ok(response) => response,
            Err(error) => {
                // A pod's request fails when its port-forward died: say how it did.
                let why = api
                    .forward_died()
                    .map_or(String::new(), |how| format!(": {how}"));
                return Err(anyhow::Error::new(error).context(format!(
                    "{service} ({}) does not answer on its admin API{why}",
                    api.replica
                )));
            }
        };
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "{service} ({}) refused the fault: {}",
                api.replica,
                refusal(&body)
            );
        }
        let now: FaultStatus = serde_json::from_str(&body).with_context(|| {
            format!(
                "{service} ({}) answered {body:?}, not its fault status",
                api.replica
            )
        })?;
        lines.push((format!("{service} ({})", api.replica), now));
    }
    Ok(lines)
}

/// Why the admin API refused a fault: "--status: 302 is not an error status ...".
fn refusal(body: &str) -> String {
    match serde_json::from_str::<FaultRejection>(body) {
        Ok(FaultRejection {
            field: Some(field),
            reason,
            ..
        }) => format!("--{}: {reason}", flag_of(&field)),
        Ok(FaultRejection { reason, .. }) => reason,
        Err(_) if body.trim().is_empty() => "?".to_owned(),
        Err(_) => body.trim().to_owned(),
    }
}

/// "latency 300 ms, errors 20% (503), for 118 s more" or "no fault": each kind in force
/// as the contract's list describes it, then the options.
fn describe(status: &FaultStatus) -> String {
    if status.hidden {
        return "a hidden fault (a drill's)".into();
    }
    let Some(fault) = &status.fault else {
        return "no fault".into();
    };
    let mut parts: Vec<String> = FaultKind::ALL
        .into_iter()
        .filter_map(|kind| kind.describe(fault))
        .collect();
    if let Some(route) = &fault.route {
        parts.push(format!("on {route} only"));
    }
    parts.push(match status.seconds_left {
        Some(seconds) => format!("for {seconds} s more"),
        None => "until cleared".into(),
    });
    parts.join(", ")
}

/// The flag that sets an admin API field, for error messages: a kind's flag from the
/// contract's list, or one of the options of [`ChaosArgs`].
fn flag_of(field: &str) -> &str {
    match FaultKind::from_field(field) {
        Some(kind) => kind.about().flag,
        None => match field {
            "error_status" => "status",
            "for_seconds" => "for",
            other => other,
        },
    }
}

/// The flags of the kinds of fault, one per [`FaultKind`], made from the contract's list
/// (name, value, help); what they set is the kinds' part of the [`FaultSpec`] to send.
#[derive(Clone, Debug, Default)]
pub struct KindFlags(pub FaultSpec);

impl clap::Args for KindFlags {
    fn augment_args(command: clap::Command) -> clap::Command {
        FaultKind::ALL
            .into_iter()
            .fold(command, |command, kind| command.arg(kind_flag(kind)))
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl clap::FromArgMatches for KindFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = KindFlags::default();
        flags.update_from_arg_matches(matches)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for kind in FaultKind::ALL {
            if let Some(value) = matches.get_one::<String>(kind.about().field) {
                kind.set_from_flag(&mut self.0, value)
                    .map_err(|reason| clap::Error::raw(ErrorKind::ValueValidation, reason))?;
            }
        }
        Ok(())
    }
}

/// `--latency <PAUSE>` and the like: its value checked as the kind reads it, so a bad
/// one is refused by clap, naming the flag.
fn kind_flag(kind: FaultKind) -> Arg {
    let about = kind.about();
    Arg::new(about.field)
        .long(about.flag)
        .value_name(about.value_name)
        .help(kind.help())
        .value_parser(move |value: &str| {
            kind.set_from_flag(&mut FaultSpec::default(), value)
                .map(|()| value.to_owned())
        })
        .conflicts_with("clear")
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};
    use contract::admin::Latency;

    use super::*;
    use crate::{Cli, Command};

    fn chaos(args: &[&str]) -> Result<ChaosArgs, clap::Error> {
        let line = ["cargo xtask", "chaos", "inventory-service"];
        match Cli::try_parse_from(line.iter().chain(args)).map(|cli| cli.command) {
            Ok(Command::Chaos(chaos)) => Ok(chaos),
            Ok(other) => panic!("not chaos: {other:?}"),
            Err(error) => Err(error),
        }
    }

    fn status(fault: Option<FaultSpec>, seconds_left: Option<u64>) -> FaultStatus {
        FaultStatus {
            service: "inventory-service".into(),
            fault,
            seconds_left,
            hidden: false,
        }
    }

    #[test]
    fn describe_says_no_fault_when_there_is_none() {
        assert_eq!(describe(&status(None, None)), "no fault");
    }

    #[test]
    fn a_hidden_fault_is_described_as_hidden_and_nothing_more() {
        let body = r#"{"service": "inventory-service", "fault": null, "seconds_left": null,
            "hidden": true}"#;
        let now: FaultStatus = serde_json::from_str(body).expect("a status");
        assert_eq!(describe(&now), "a hidden fault (a drill's)");
    }

    #[test]
    fn describe_names_each_kind_alone() {
        for (json, described) in [
            (r#"{"latency_ms": 300}"#, "latency 300 ms, until cleared"),
            (
                r#"{"latency_ms": [100, 800]}"#,
                "latency 100..800 ms, until cleared",
            ),
            (r#"{"error_rate": 0.2}"#, "errors 20% (500), until cleared"),
            (
                r#"{"error_rate": 0.05, "error_status": 503}"#,
                "errors 5% (503), until cleared",
            ),
            (
                r#"{"unreachable": "inventory-service"}"#,
                "inventory-service unreachable, until cleared",
            ),
        ] {
            let fault = serde_json::from_str(json).expect("a fault");
            assert_eq!(describe(&status(Some(fault), None)), described, "{json}");
        }
        // And every kind of the list, from its flag's example: it is described.
        for kind in FaultKind::ALL {
            let mut fault = FaultSpec::default();
            kind.set_from_flag(&mut fault, kind.about().example)
                .expect("the example is valid");
            let described = describe(&status(Some(fault.clone()), None));
            let own = kind.describe(&fault).expect("a description");
            assert_eq!(described, format!("{own}, until cleared"), "{kind:?}");
        }
    }

    #[test]
    fn describe_joins_several_kinds_and_the_options() {
        let body = r#"{"service": "inventory-service",
            "fault": {"latency_ms": [100, 800], "error_rate": 0.25, "error_status": 503,
                      "unreachable": "audit-service", "route": "/api/data", "for_seconds": 120},
            "seconds_left": 118}"#;
        let now: FaultStatus = serde_json::from_str(body).expect("a status");
        assert_eq!(
            describe(&now),
            "latency 100..800 ms, errors 25% (503), audit-service unreachable, \
             on /api/data only, for 118 s more"
        );
    }

    #[test]
    fn every_kind_has_a_flag_in_the_help_that_clap_accepts() {
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("chaos")
            .expect("chaos")
            .render_help()
            .to_string();
        let mut all = Vec::new();
        for kind in FaultKind::ALL {
            let about = kind.about();
            let flag = format!("--{}", about.flag);
            assert!(
                help.contains(&format!("{flag} <{}>", about.value_name)),
                "{flag} not in:\n{help}"
            );
            let args = chaos(&[&flag, about.example]).unwrap_or_else(|e| panic!("{flag}: {e}"));
            let fault = args.fault().expect("a fault");
            assert_eq!(fault.kinds().collect::<Vec<_>>(), [kind], "{flag}");
            assert_eq!(flag_of(about.field), about.flag);
            let clear = chaos(&["--clear", &flag, about.example]).expect_err("conflicts");
            assert_eq!(
                clear.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{flag}"
            );
            all.extend([flag, about.example.to_owned()]);
        }
        let every: Vec<&str> = all.iter().map(String::as_str).collect();
        let fault = chaos(&every).expect("every kind at once").fault();
        assert_eq!(
            fault.expect("a fault").kinds().collect::<Vec<_>>(),
            FaultKind::ALL
        );
    }

    #[test]
    fn the_flags_set_the_fields_of_the_admin_api() {
        let args = chaos(&[
            "--latency",
            "100ms..800ms",
            "--error-rate",
            "0.5",
            "--status",
            "503",
            "--route",
            "/api/data",
            "--for",
            "2m",
        ]);
        let fault = args.expect("parses").fault().expect("a fault");
        assert_eq!(
            fault,
            FaultSpec {
                latency_ms: Some(Latency::Between([100, 800])),
                error_rate: Some(0.5),
                error_status: Some(503),
                unreachable: None,
                route: Some("/api/data".into()),
                for_seconds: Some(120),
                quiet: false,
            }
        );
        assert_eq!(flag_of("error_status"), "status");
        assert_eq!(flag_of("for_seconds"), "for");
        assert_eq!(flag_of("route"), "route");
    }

    #[test]
    fn a_fault_without_a_kind_names_every_kind_flag() {
        let error = chaos(&["--status", "503"]).expect("parses").fault();
        assert_eq!(
            error.expect_err("no kind").to_string(),
            "say what to break: give at least one of --latency, --error-rate, --unreachable \
             (or --clear)"
        );
    }

    #[test]
    fn a_bad_kind_value_is_refused_naming_its_flag_and_why() {
        for (flag, value, why) in [
            (
                "--latency",
                "soon",
                "`soon` is not a duration like 250ms, 2s or 1m",
            ),
            ("--latency", "800ms..100ms", "[800, 100] must be [min, max]"),
            ("--error-rate", "2", "2 is not between 0 and 1"),
            ("--unreachable", "", "name the dependency"),
        ] {
            let error = chaos(&[flag, value]).expect_err(flag).to_string();
            assert!(
                error.contains(flag) && error.contains(why),
                "{flag} {value}: {error}"
            );
        }
    }

    #[test]
    fn a_refusal_names_the_flag_of_the_field() {
        let body =
            r#"{"error":"invalid fault","field":"error_rate","reason":"2 is not between 0 and 1"}"#;
        assert_eq!(refusal(body), "--error-rate: 2 is not between 0 and 1");
        let body = r#"{"error":"invalid fault","field":null,"reason":"unknown field"}"#;
        assert_eq!(refusal(body), "unknown field");
    }
}
