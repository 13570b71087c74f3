//! Every cluster-facing command of xtask, run against the kubectl and kind stand-ins
//! (`standin.rs`; they answer as the real programs do, port-forward's SIGPIPE included)
//! and real mock-service processes as the pods: `chaos` on every replica, the four
//! `scenario`s, `traffic --chaos random --cluster`, `logs` (with `--trace`, `--follow`),
//! `smoke`, `dashboards`, `cluster status`, a `drill` (quiet, its reveal from the pods'
//! logs), and each Tilt button's command. And what a
//! command changed is put back on every way out: a fault that fails to apply after the
//! scale-down, and Ctrl+C during the traffic.

use std::{
    process::{Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

use crate::support::{
    lines_of, serial,
    standin::{StandinCluster, http},
};

/// The built-in graph's gateway port: the gateway pod listens where the NodePort would.
const GATEWAY: u16 = xtask::ports::GATEWAY_PORT;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Fails with both outputs unless the command succeeded; its stdout.
fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}\n--- stdout:\n{}\n--- stderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Every pod of `deployment` has no fault.
fn cleared(cluster: &StandinCluster, deployment: &str) -> bool {
    cluster
        .faults(deployment)
        .iter()
        .all(|(_, fault)| fault.is_null())
}

#[test]
fn chaos_sets_shows_and_clears_the_fault_of_every_replica_through_port_forwards() {
    let _serial = serial();
    let cluster = StandinCluster::start(&[("inventory-service", 2)]);
    let set = ok(&cluster.xtask(&[
        "chaos",
        "inventory-service",
        "--latency",
        "50ms",
        "--cluster",
    ]));
    assert_eq!(set.lines().count(), 2, "a line per replica: {set}");
    for (pod, fault) in cluster.faults("inventory-service") {
        assert_eq!(fault["latency_ms"], 50, "{pod}: {fault}");
    }
    let forwards: Vec<String> = cluster
        .kubectl_calls()
        .into_iter()
        .filter(|call| call.contains("port-forward"))
        .collect();
    assert_eq!(
        forwards,
        [
            "--context kind-monitoring-demo -n services port-forward pod/inventory-service-0 :9901",
            "--context kind-monitoring-demo -n services port-forward pod/inventory-service-1 :9901"
        ]
    );

    let status = ok(&cluster.xtask(&["chaos", "status", "--cluster"]));
    let replicas: Vec<&str> = status
        .lines()
        .filter_map(|line| line.split_once(": ").map(|(who, _)| who))
        .collect();
    assert_eq!(replicas.len(), cluster.pods.len(), "{status}");
    assert!(
        status.contains("inventory-service (inventory-service-1): latency 50 ms"),
        "{status}"
    );

    ok(&cluster.xtask(&["chaos", "inventory-service", "--clear", "--cluster"]));
    assert!(cleared(&cluster, "inventory-service"));
    ok(&cluster.xtask(&[
        "chaos",
        "payment-service",
        "--error-rate",
        "0.5",
        "--cluster",
    ]));
    ok(&cluster.xtask(&["chaos", "all", "--clear", "--cluster"]));
    assert!(
        cluster.no_faults_anywhere(),
        "a fault survived `chaos all --clear`"
    );
}

#[test]
fn a_fault_that_one_replica_cannot_take_is_set_on_none() {
    let _serial = serial();
    let cluster = StandinCluster::start(&[("inventory-service", 2)]);
    cluster.fail_forwards_to("inventory-service-1");
    let set = cluster.xtask(&[
        "chaos",
        "inventory-service",
        "--latency",
        "50ms",
        "--cluster",
    ]);
    assert!(!set.status.success());
    let stderr = text(&set.stderr);
    assert!(
        stderr.contains("pod is not running"),
        "kubectl's reason is passed on: {stderr}"
    );
    assert!(cleared(&cluster, "inventory-service"), "{stderr}");
}

#[test]
fn every_scenario_runs_in_the_cluster_and_degradation_puts_the_replicas_back() {
    let _serial = serial();
    let cluster = StandinCluster::start(&[("inventory-service", 2)]);
    for scenario in ["normal", "spike", "errors", "degradation"] {
        ok(&cluster.xtask(&["scenario", scenario, "--cluster", "--duration", "1"]));
        assert!(
            cluster.no_faults_anywhere(),
            "{scenario} left a fault behind"
        );
    }
    let scaled: Vec<String> = cluster
        .kubectl_calls()
        .into_iter()
        .filter(|call| call.contains(" scale ") || call.contains(" rollout "))
        .collect();
    assert_eq!(
        scaled,
        [
            "--context kind-monitoring-demo -n services scale deployment/inventory-service --replicas=1",
            "--context kind-monitoring-demo -n services rollout status deployment/inventory-service --timeout=120s",
            "--context kind-monitoring-demo -n services scale deployment/inventory-service --replicas=2",
            "--context kind-monitoring-demo -n services rollout status deployment/inventory-service --timeout=120s",
        ]
    );
    assert_eq!(cluster.replicas("inventory-service"), 2);
}

#[test]
fn degradation_scales_back_when_its_fault_cannot_be_set() {
    let _serial = serial();
    let cluster = StandinCluster::start(&[("inventory-service", 2)]);
    // The pod that stays after the scale-down cannot be reached.
    cluster.fail_forwards_to("inventory-service-0");
    let run = cluster.xtask(&["scenario", "degradation", "--cluster", "--duration", "1"]);
    let stderr = text(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(
        stderr.contains("forwarding to the admin API of pod inventory-service-0")
            || stderr.contains("kubectl port-forward to inventory-service-0"),
        "the error names the step that failed: {stderr}"
    );
    assert!(
        stderr.contains("scaling inventory-service back to 2 replicas"),
        "{stderr}"
    );
    assert_eq!(cluster.replicas("inventory-service"), 2, "{stderr}");
}

/// Starts `xtask ARGS`; its stderr lines arrive on the returned channel.
fn spawn_reading_stderr(
    cluster: &StandinCluster,
    args: &[&str],
) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = cluster
        .command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xtask");
    let received = lines_of(child.stderr.take().expect("stderr"));
    (child, received)
}

/// Waits (at most 60 s) for a line containing `what`; the lines seen meanwhile.
fn wait_for_line(lines: &mpsc::Receiver<String>, what: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(what) => return seen,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no line with `{what}`; saw:\n{}", seen.join("\n"));
}

/// Sends SIGINT to `child` every 300 ms until it exits (at most 30 s), as a user
/// pressing Ctrl+C would, in case the first lands before a handler listens.
fn interrupt(child: &mut std::process::Child) -> std::process::ExitStatus {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        let _ = nix::sys::signal::kill(pid, Signal::SIGINT);
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = child.kill();
    panic!("xtask did not stop within 30 s of Ctrl+C");
}

#[test]
fn ctrl_c_during_the_traffic_clears_the_fault_and_restores_the_replicas() {
    let _serial = serial();
    let cluster = StandinCluster::start(&[("inventory-service", 2)]);
    let (mut run, lines) = spawn_reading_stderr(
        &cluster,
        &["scenario", "degradation", "--cluster", "--duration", "60"],
    );
    let before = wait_for_line(&lines, "traffic to ");
    assert!(
        before
            .iter()
            .any(|line| line.starts_with("fault set: inventory-service")),
        "{before:?}"
    );
    assert_eq!(cluster.replicas("inventory-service"), 1);
    interrupt(&mut run);
    let after: Vec<String> = lines.try_iter().collect();
    assert_eq!(cluster.replicas("inventory-service"), 2, "{after:?}");
    assert!(cleared(&cluster, "inventory-service"), "{after:?}");
}

/// A seed whose first random fault comes after 5 s, the shortest gap.
fn seed_with_an_early_fault() -> u64 {
    (0..10_000)
        .find(|seed| fastrand::Rng::with_seed(*seed).u64(5..=20) == 5)
        .expect("a seed")
}

#[test]
fn traffic_with_random_chaos_injects_into_the_cluster_and_clears_at_the_end() {
    let _serial = serial();
    let cluster = StandinCluster::start(&[]);
    let seed = seed_with_an_early_fault().to_string();
    let run = cluster.xtask(&[
        "traffic",
        "--chaos",
        "random",
        "--cluster",
        "--seed",
        &seed,
        "--duration",
        "7",
    ]);
    ok(&run);
    let stderr = text(&run.stderr);
    assert!(
        stderr.contains("[chaos]    5 s"),
        "a fault at 5 s: {stderr}"
    );
    assert!(!stderr.contains("could not"), "{stderr}");
    assert!(stderr.contains("[chaos] all faults cleared"), "{stderr}");
    assert!(cluster.no_faults_anywhere());
}

/// One POST /api/action through the gateway pod; the trace id it answered with.
fn traced_action() -> String {
    let (status, head, _) = http(GATEWAY, "POST", "/api/action");
    assert_eq!(status, 200, "{head}");
    head.lines()
        .find_map(|line| line.strip_prefix("x-trace-id: "))
        .expect("an x-trace-id header")
        .trim()
        .to_owned()
}

/// Waits (at most 10 s) until the gateway pod's log has a line of `trace`.
fn logged(cluster: &StandinCluster, trace: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(cluster.log_of("gateway-service-0"))
        .unwrap_or_default()
        .contains(trace)
    {
        assert!(Instant::now() < deadline, "trace {trace} never logged");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn logs_read_every_pod_gather_a_trace_and_follow_until_ctrl_c() {
    let _serial = serial();
    let cluster = StandinCluster::start(&[("inventory-service", 2)]);
    let trace = traced_action();
    logged(&cluster, &trace);

    let all = ok(&cluster.xtask(&["logs", "--cluster"]));
    for pod in &cluster.pods {
        assert!(
            all.lines()
                .any(|line| line.starts_with(&format!("{} ", pod.name))),
            "no line of {}:\n{all}",
            pod.name
        );
    }
    let one = ok(&cluster.xtask(&["logs", "--trace", &trace, "--cluster"]));
    assert!(one.lines().all(|line| line.contains(&trace)), "{one}");
    let sources: std::collections::BTreeSet<&str> = one
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        sources.contains("gateway-service-0") && sources.len() > 2,
        "{one}"
    );

    let mut follow = cluster
        .command(&["logs", "gateway-service", "--follow", "--cluster"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start logs --follow");
    let received = lines_of(follow.stdout.take().expect("stdout"));
    let next = traced_action();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = received
            .recv_timeout(left)
            .expect("logs --follow shows new lines");
        if line.contains(&next) {
            break;
        }
    }
    interrupt(&mut follow);
    let follower = cluster
        .pid_of_call_with("--follow")
        .expect("the kubectl logs --follow call");
    assert_gone(follower, "kubectl logs --follow");
}

/// Fails unless process `pid` ends within 5 s.
fn assert_gone(pid: u32, what: &str) {
    let gone = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < gone,
            "{what} (pid {pid}) outlived xtask's Ctrl+C"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_during_the_rollout_wait_scales_back() {
    let _serial = serial();
    let cluster = StandinCluster::start(&[("inventory-service", 2)]);
    cluster.slow_termination("inventory-service", Duration::from_secs(100));
    let (mut run, lines) = spawn_reading_stderr(
        &cluster,
        &["scenario", "degradation", "--cluster", "--duration", "1"],
    );
    wait_for_line(&lines, "old replicas are pending termination");
    let status = interrupt(&mut run);
    let after: Vec<String> = lines.try_iter().collect();
    assert!(!status.success(), "{after:?}");
    assert!(
        after.iter().any(|line| line.contains("interrupted")),
        "{after:?}"
    );
    assert_eq!(cluster.replicas("inventory-service"), 2, "{after:?}");
    let waiting = cluster
        .pid_of_call_with("rollout")
        .expect("the kubectl rollout status call");
    assert_gone(waiting, "kubectl rollout status");
}

#[test]
fn cluster_status_lists_nodes_and_pods() {
    let _serial = serial();
    let cluster = StandinCluster::start(&[]);
    let run = cluster.xtask(&["cluster", "status"]);
    ok(&run);
    // Runner::run shows a command's output on stderr.
    let shown = text(&run.stderr);
    assert!(
        shown.contains("monitoring-demo-control-plane   Ready"),
        "{shown}"
    );
    for pod in &cluster.pods {
        assert!(
            shown.contains(&pod.name),
            "{} is not listed:\n{shown}",
            pod.name
        );
    }
    assert!(
        shown.contains("No resources found in monitoring namespace."),
        "{shown}"
    );
}

#[test]
fn dashboards_reapply_the_configmap_in_the_cluster() {
    let Some(_) = crate::support::require(
        "kubectl",
        "kubectl renders the manifests (kubectl kustomize)",
    ) else {
        return;
    };
    let _serial = serial();
    let cluster = StandinCluster::start(&[]);
    let out = ok(&cluster.xtask(&["dashboards"]));
    assert!(
        out.contains("ok    kind cluster monitoring-demo: ConfigMap grafana-dashboards re-applied"),
        "{out}"
    );
    let applied = &cluster.state()["applied"]["monitoring/configmap/grafana-dashboards"];
    assert!(
        applied["bytes"].as_u64().is_some_and(|b| b > 0),
        "{applied}"
    );
}

/// A button's command line, with its traffic shortened to a second (each phase, for a
/// verification).
fn shortened(cmd: &str) -> Vec<String> {
    let mut words: Vec<String> = cmd.split_whitespace().map(str::to_owned).collect();
    assert_eq!(
        words[..2],
        ["cargo", "xtask"],
        "a button runs cargo xtask: {cmd}"
    );
    words.drain(..2);
    if words.iter().any(|w| w == "--verify") {
        let short = [
            "--baseline",
            "1s",
            "--fault",
            "1s",
            "--recovery",
            "1s",
            "--settle",
            "0s",
        ];
        words.extend(short.map(str::to_owned));
        return words;
    }
    match words.iter().position(|w| w == "--duration") {
        Some(at) => words[at + 1] = "1".to_owned(),
        None if matches!(words[0].as_str(), "scenario" | "traffic") => {
            words.extend(["--duration".to_owned(), "1".to_owned()]);
        }
        None => {}
    }
    words
}

#[test]
fn every_tilt_button_works_against_the_cluster() {
    let _serial = serial();
    let cluster = StandinCluster::start(&[("inventory-service", 2)]);
    let buttons = crate::tiltfile::buttons();
    assert!(buttons.len() >= 7, "{buttons:?}");
    for (name, cmd) in buttons {
        let args = shortened(&cmd);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = cluster.xtask(&args);
        assert!(
            run.status.success(),
            "button {name} (`{cmd}`) failed:\n{}",
            text(&run.stderr)
        );
        assert!(cluster.no_faults_anywhere(), "button {name} left a fault");
    }
    assert_eq!(cluster.replicas("inventory-service"), 2);
}

/// A drill in the cluster: its fault set quietly on every replica through port-forwards
/// (the pods' admin APIs show it only as hidden), and the reveal reads the faulted
/// service's pods' logs (`kubectl logs`) for the line that shows it; no fault is left.
#[test]
fn a_drill_in_the_cluster_is_quiet_and_its_reveal_reads_the_pods_logs() {
    use contract::topology::Topology;
    use incidents::drill::{self, Level};
    let _serial = serial();
    let cluster = StandinCluster::start(&[("product-service", 2)]);
    let seed = (0..1000)
        .find(|&seed| {
            drill::pick(&Topology::built_in(), Level::Single, seed).is_ok_and(|d| {
                d.service == "product-service" && d.kind == contract::admin::FaultKind::Error
            })
        })
        .expect("a seed that hides errors in product-service");
    let seed = seed.to_string();
    let args = ["drill", "--cluster", "--level", "single", "--seed", &seed];
    let running = cluster
        .command(&[&args[..], &["--duration", "8"]].concat())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the drill");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cluster
        .faults("product-service")
        .iter()
        .all(|(_, f)| f["hidden"] == true)
    {
        assert!(Instant::now() < deadline, "the drill's fault was never set");
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = ok(&cluster.xtask(&["chaos", "status", "--cluster"]));
    assert!(status.starts_with("A drill is running"), "{status}");
    let said = ok(&running.wait_with_output().expect("the drill ends"));
    let shown = said
        .lines()
        .skip_while(|line| !line.starts_with("The log line that shows it (product-service"))
        .nth(1)
        .unwrap_or_default();
    assert!(shown.contains(r#""status":500"#), "{said}");
    let read = cluster.kubectl_calls();
    assert!(
        read.iter()
            .any(|call| call.contains("logs --selector app=product-service")),
        "{read:?}"
    );
    assert!(cluster.no_faults_anywhere(), "{said}");
}
