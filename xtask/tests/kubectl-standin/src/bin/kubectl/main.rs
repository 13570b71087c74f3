//! The `kubectl` stand-in: every call xtask makes, as the real kubectl answers it, on
//! the JSON cluster of `kubectl_standin` (see its crate documentation). Anything else,
//! and any call to a cluster without `--context kind-monitoring-demo`, fails the way
//! kubectl fails (a message on stderr, exit 1), so a wrong call in xtask fails its test.
//!
//! Where each behaviour comes from:
//! - flags anywhere, `--context`/`-n` global; unknown flag: "error: unknown flag: --x",
//!   unknown command: "error: unknown command "x" for "kubectl"" (cobra, as kubectl
//!   uses it; k8s.io/kubectl pkg/cmd/cmd.go);
//! - a context missing from the kubeconfig: "Error in configuration: context was not
//!   found for specified context: X" (client-go tools/clientcmd/validation.go);
//! - `get ... -o jsonpath=...`: the template's output with no newline after it
//!   (k8s.io/cli-runtime pkg/printers/jsonpath.go); `-o wide` tables and "No resources
//!   found in NS namespace." on stderr (k8s.io/kubectl pkg/cmd/get/get.go);
//! - `port-forward`: see `port_forward.rs`;
//! - `scale`: "deployment.apps/X scaled" once the spec is changed, not when pods are gone
//!   (pkg/cmd/scale/scale.go); a missing --replicas: "--replicas=COUNT is required, and
//!   COUNT must be greater than or equal to 0";
//! - `rollout status`: "Waiting for deployment "X" rollout to finish: N of M updated
//!   replicas are available..." (or "N old replicas are pending termination..."), then "deployment "X" successfully rolled out", or on
//!   --timeout "error: timed out waiting for the condition" (pkg/polymorphichelpers/
//!   rollout_status.go, pkg/cmd/rollout/rollout_status.go);
//! - `logs`: see `logs.rs`;
//! - `apply -f`: "KIND/NAME created|configured|unchanged" per object, "error: the path
//!   "F" does not exist" (pkg/cmd/apply/apply.go);
//! - `config current-context` / `use-context`: "Switched to context "X"." and "error: no
//!   context exists with the name: "X"" (pkg/cmd/config/use_context.go);
//! - `kustomize`: rendered offline by the real kubectl (`KUBECTL_STANDIN_REAL`).
//!
//! Not modelled: other resources, other jsonpath templates, `--since` (kubelet's
//! timestamps; every line is kept), pods that crash.

mod logs;
mod port_forward;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    time::{Duration, Instant},
};

use kubectl_standin::{CONTEXT, Cluster, Pod, REAL_KUBECTL_VARIABLE, die_of_sigpipe_like_go, fail};
use serde_json::{Value, json};

fn main() {
    die_of_sigpipe_like_go();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let call = Call::parse(&args);
    match call.verb.as_str() {
        // Local commands: no cluster is asked, so no context is needed.
        "config" => return config(&call),
        "kustomize" => return kustomize(&args),
        _ => {}
    }
    if call.context.as_deref() != Some(CONTEXT) {
        fail(&format!(
            "error: (stand-in) refusing a call to a cluster without --context {CONTEXT} \
             (xtask acts only on its own kind cluster, ARCHITECTURE.md): kubectl {}",
            args.join(" ")
        ));
    }
    check_kubeconfig_has(CONTEXT);
    let mut cluster = Cluster::open();
    cluster.record_call("kubectl", &args);
    match call.verb.as_str() {
        "get" => get(&cluster, &call),
        "port-forward" => port_forward::run(&cluster, &call),
        "scale" => scale(&mut cluster, &call),
        "rollout" => rollout(&call),
        "logs" => logs::run(&cluster, &call),
        "apply" => apply(&mut cluster, &call),
        verb => fail(&format!(
            "error: unknown command \"{verb}\" for \"kubectl\"\nRun 'kubectl --help' for usage."
        )),
    }
}

/// A command line: the global flags, the verb, and the verb's own words and flags.
pub struct Call {
    pub context: Option<String>,
    pub namespace: String,
    pub verb: String,
    pub rest: Vec<String>,
}

impl Call {
    fn parse(args: &[String]) -> Call {
        let mut context = None;
        let mut namespace = "default".to_owned();
        let mut rest = Vec::new();
        let mut words = args.iter();
        while let Some(word) = words.next() {
            let (flag, inline) = match word.split_once('=') {
                Some((flag, value)) if flag.starts_with('-') => (flag, Some(value.to_owned())),
                _ => (word.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| words.next().cloned())
                    .unwrap_or_else(|| fail(&format!("error: flag needs an argument: {flag}")))
            };
            match flag {
                "--context" => context = Some(value()),
                "-n" | "--namespace" => namespace = value(),
                _ => rest.push(word.clone()),
            }
        }
        let Some(position) = rest.iter().position(|w| !w.starts_with('-')) else {
            fail("error: (stand-in) no command given\nRun 'kubectl --help' for usage.");
        };
        if let Some(flag) = rest[..position].first() {
            fail(&format!(
                "error: unknown flag: {flag}\nSee 'kubectl --help' for usage."
            ));
        }
        let verb = rest.remove(position);
        Call {
            context,
            namespace,
            verb,
            rest,
        }
    }

    /// The verb's words and flags, checked against what the verb accepts.
    pub fn flags(&self, valued: &[&str], booleans: &[&str]) -> Flags {
        Flags::parse(&self.verb, &self.rest, valued, booleans)
    }
}

/// A verb's positional words and flags. Flags are named by their long form; `-x` short
/// forms are given as `"long|x"`.
pub struct Flags {
    pub words: Vec<String>,
    pub values: BTreeMap<String, String>,
    pub set: BTreeSet<String>,
}

impl Flags {
    fn parse(verb: &str, tokens: &[String], valued: &[&str], booleans: &[&str]) -> Flags {
        let long_of = |given: &str, table: &[&str]| {
            table.iter().find_map(|spec| {
                let (long, short) = spec.split_once('|').unwrap_or((spec, ""));
                let hit = given == format!("--{long}")
                    || (!short.is_empty() && given == format!("-{short}"));
                hit.then(|| long.to_owned())
            })
        };
        let mut flags = Flags {
            words: Vec::new(),
            values: BTreeMap::new(),
            set: BTreeSet::new(),
        };
        let mut tokens = tokens.iter();
        while let Some(token) = tokens.next() {
            if !token.starts_with('-') || token == "-" {
                flags.words.push(token.clone());
                continue;
            }
            let (given, inline) = match token.split_once('=') {
                Some((given, value)) => (given, Some(value.to_owned())),
                None => (token.as_str(), None),
            };
            if let Some(long) = long_of(given, valued) {
                let value = inline
                    .or_else(|| tokens.next().cloned())
                    .unwrap_or_else(|| fail(&format!("error: flag needs an argument: {given}")));
                flags.values.insert(long, value);
            } else if let Some(long) = long_of(given, booleans) {
                match inline.as_deref() {
                    None | Some("true") => flags.set.insert(long),
                    Some("false") => flags.set.remove(&long),
                    Some(other) => fail(&format!(
                        "error: invalid argument \"{other}\" for \"{given}\" flag: strconv.ParseBool: parsing \"{other}\": invalid syntax"
                    )),
                };
            } else if given.starts_with("--") {
                fail(&format!(
                    "error: unknown flag: {given}\nSee 'kubectl {verb} --help' for usage."
                ));
            } else {
                let letter = &given[1..];
                fail(&format!(
                    "error: unknown shorthand flag: '{letter}' in {given}\nSee 'kubectl {verb} --help' for usage."
                ));
            }
        }
        flags
    }
}

/// "deployment/X" or "deployment X" (and the type's other spellings) -> X.
fn named(words: &[String], kinds: &[&str], what: &str) -> String {
    let first = words.first().map(String::as_str).unwrap_or_default();
    match first.split_once('/') {
        Some((kind, name)) if kinds.contains(&kind) && words.len() == 1 => name.to_owned(),
        None if kinds.contains(&first) && words.len() == 2 => words[1].clone(),
        _ => fail(&format!(
            "error: (stand-in) expected {what}, got `{}`",
            words.join(" ")
        )),
    }
}

const DEPLOYMENT: [&str; 3] = ["deployment", "deployments", "deploy"];
const POD: [&str; 3] = ["pod", "pods", "po"];
const NODE: [&str; 3] = ["node", "nodes", "no"];
const NAMES_OF_ITEMS: &str = "jsonpath={.items[*].metadata.name}";
const REPLICAS: &str = "jsonpath={.spec.replicas}";

fn get(cluster: &Cluster, call: &Call) {
    let flags = call.flags(&["output|o", "selector|l"], &[]);
    let output = flags.values.get("output").map_or("", String::as_str);
    let selector = flags.values.get("selector");
    let words: Vec<&str> = flags.words.iter().map(String::as_str).collect();
    let namespace = &call.namespace;
    match (words.as_slice(), output) {
        ([kind], NAMES_OF_ITEMS) if DEPLOYMENT.contains(kind) && selector.is_none() => {
            let names: Vec<String> = cluster
                .deployments(namespace)
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            print!("{}", names.join(" "));
        }
        ([kind], NAMES_OF_ITEMS) if POD.contains(kind) => {
            let names: Vec<String> = pods_selected(cluster, namespace, selector)
                .into_iter()
                .map(|p| p.name)
                .collect();
            print!("{}", names.join(" "));
        }
        ([kind], "wide") if POD.contains(kind) => {
            pods_table(&pods_selected(cluster, namespace, selector), namespace);
        }
        ([kind], "wide") if NODE.contains(kind) => nodes_table(),
        (_, REPLICAS) => {
            let name = named(&flags.words, &DEPLOYMENT, "deployment/NAME");
            let Some((_, deployment)) = cluster
                .deployments(namespace)
                .into_iter()
                .find(|(n, _)| *n == name)
            else {
                fail(&format!(
                    "Error from server (NotFound): deployments.apps \"{name}\" not found"
                ));
            };
            print!("{}", deployment["replicas"].as_u64().unwrap_or(0));
        }
        ([kind, ..], _)
            if ![&DEPLOYMENT[..], &POD, &NODE].concat().contains(kind) && !kind.contains('/') =>
        {
            fail(&format!(
                "error: the server doesn't have a resource type \"{kind}\""
            ));
        }
        _ => fail(&format!(
            "error: (stand-in) `kubectl get {}` is not modelled",
            call.rest.join(" ")
        )),
    }
}

fn pods_selected(cluster: &Cluster, namespace: &str, selector: Option<&String>) -> Vec<Pod> {
    cluster
        .running_pods(namespace)
        .into_iter()
        .filter(|pod| selector.is_none_or(|s| pod.matches(s)))
        .collect()
}

fn pods_table(pods: &[Pod], namespace: &str) {
    if pods.is_empty() {
        eprintln!("No resources found in {namespace} namespace.");
        return;
    }
    println!(
        "{:<40} {:<7} {:<9} {:<9} {:<5} {:<12} {:<30} {:<16} READINESS GATES",
        "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE"
    );
    for (index, pod) in pods.iter().enumerate() {
        println!(
            "{:<40} {:<7} {:<9} {:<9} {:<5} {:<12} {:<30} {:<16} <none>",
            pod.name,
            "1/1",
            "Running",
            "0",
            "5m",
            format!("10.244.0.{}", index + 10),
            "monitoring-demo-control-plane",
            "<none>"
        );
    }
}

fn nodes_table() {
    println!(
        "NAME                            STATUS   ROLES           AGE   VERSION   INTERNAL-IP   EXTERNAL-IP   OS-IMAGE                         KERNEL-VERSION   CONTAINER-RUNTIME"
    );
    println!(
        "monitoring-demo-control-plane   Ready    control-plane   5m    v1.32.2   172.18.0.2    <none>        Debian GNU/Linux 12 (bookworm)   6.1.0            containerd://2.0.2"
    );
}

fn scale(cluster: &mut Cluster, call: &Call) {
    let flags = call.flags(&["replicas"], &[]);
    let name = named(&flags.words, &DEPLOYMENT, "deployment/NAME");
    let Some(replicas) = flags
        .values
        .get("replicas")
        .and_then(|r| r.parse::<u64>().ok())
    else {
        fail("error: --replicas=COUNT is required, and COUNT must be greater than or equal to 0");
    };
    let Some(deployment) = cluster.deployment_mut(&call.namespace, &name) else {
        fail(&format!(
            "Error from server (NotFound): deployments.apps \"{name}\" not found"
        ));
    };
    deployment["replicas"] = json!(replicas);
    cluster.save();
    println!("deployment.apps/{name} scaled");
}

fn rollout(call: &Call) {
    let flags = call.flags(&["timeout"], &[]);
    let (Some("status"), Some(_)) = (flags.words.first().map(String::as_str), flags.words.get(1))
    else {
        fail(&format!(
            "error: (stand-in) `kubectl rollout {}` is not modelled",
            call.rest.join(" ")
        ));
    };
    let name = named(&flags.words[1..], &DEPLOYMENT, "deployment/NAME");
    let timeout = flags
        .values
        .get("timeout")
        .map_or(Duration::ZERO, |t| parse_go_duration(t));
    let started = Instant::now();
    let mut said_waiting = false;
    kubectl_standin::end_with_the_cluster(Cluster::open().path());
    loop {
        let cluster = Cluster::open();
        let Some((_, deployment)) = cluster
            .deployments(&call.namespace)
            .into_iter()
            .find(|(n, _)| *n == name)
        else {
            fail(&format!(
                "Error from server (NotFound): deployments.apps \"{name}\" not found"
            ));
        };
        let waiting = rollout_waits_for(&cluster, &call.namespace, &name, &deployment, started);
        let Some(message) = waiting else {
            println!("deployment \"{name}\" successfully rolled out");
            return;
        };
        if !said_waiting {
            println!("Waiting for deployment \"{name}\" rollout to finish: {message}...");
            said_waiting = true;
        }
        // --timeout=0 (the default) waits forever; the stand-in's life is bounded anyway.
        if !timeout.is_zero() && started.elapsed() >= timeout {
            fail("error: timed out waiting for the condition");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a rollout still waits for, if anything: pods missing ("N of M updated replicas
/// are available"), or, after a scale-down, the old pods terminating for the
/// Deployment's `termination_ms` ("N old replicas are pending termination").
fn rollout_waits_for(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    deployment: &Value,
    started: Instant,
) -> Option<String> {
    let wanted = deployment["replicas"].as_u64().unwrap_or(0) as usize;
    let pods = cluster.pod_count(namespace, name);
    if pods < wanted {
        return Some(format!("{pods} of {wanted} updated replicas are available"));
    }
    let termination = Duration::from_millis(deployment["termination_ms"].as_u64().unwrap_or(0));
    (pods > wanted && started.elapsed() < termination)
        .then(|| format!("{} old replicas are pending termination", pods - wanted))
}

/// Go's `time.ParseDuration` for the forms kubectl's flags take (120s, 2m, 1h, 500ms).
fn parse_go_duration(text: &str) -> Duration {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let number: u64 = digits.parse().unwrap_or_else(|_| {
        fail(&format!("error: invalid argument \"{text}\" for \"--timeout\" flag: time: invalid duration \"{text}\""))
    });
    match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        "" if number == 0 => Duration::ZERO,
        _ => fail(&format!(
            "error: invalid argument \"{text}\" for \"--timeout\" flag: time: missing unit in duration \"{text}\""
        )),
    }
}

fn apply(cluster: &mut Cluster, call: &Call) {
    let flags = call.flags(&["filename|f"], &[]);
    let Some(file) = flags.values.get("filename") else {
        fail("error: must specify one of -f and -k");
    };
    if !flags.words.is_empty() {
        fail(&format!(
            "error: (stand-in) unexpected arguments: {}",
            flags.words.join(" ")
        ));
    }
    let Ok(text) = std::fs::read_to_string(file) else {
        fail(&format!("error: the path \"{file}\" does not exist"));
    };
    let objects = objects_of(&text);
    if objects.is_empty() {
        fail("error: no objects passed to apply");
    }
    for (kind, name, namespace) in objects {
        let namespace = namespace.unwrap_or_else(|| call.namespace.clone());
        let key = format!("{namespace}/{}/{name}", kind.to_ascii_lowercase());
        let digest = format!("{:x}", digest(&text));
        let before = cluster.state["applied"][&key]["digest"]
            .as_str()
            .map(str::to_owned);
        let verdict = match before {
            None => "created",
            Some(d) if d == digest => "unchanged",
            Some(_) => "configured",
        };
        cluster.state["applied"][&key] =
            json!({ "file": file, "bytes": text.len(), "digest": digest });
        println!("{}/{name} {verdict}", kind.to_ascii_lowercase());
    }
    cluster.save();
}

/// A stable digest of a file's text (FNV-1a), to tell "unchanged" from "configured".
fn digest(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Each YAML document's top-level `kind:` and its `metadata:` `name:` / `namespace:`:
/// enough of YAML for manifests as serde_yaml and kustomize write them.
fn objects_of(text: &str) -> Vec<(String, String, Option<String>)> {
    let mut objects = Vec::new();
    for document in text.split("\n---") {
        let (mut kind, mut name, mut namespace) = (None, None, None);
        let mut in_metadata = false;
        for line in document.lines() {
            if !line.starts_with(' ') {
                in_metadata = line.trim_end() == "metadata:";
                if let Some(value) = line.strip_prefix("kind:") {
                    kind = Some(value.trim().to_owned());
                }
            } else if in_metadata && !line.starts_with("   ") {
                if let Some(value) = line.trim_start().strip_prefix("name:") {
                    name = Some(value.trim().to_owned());
                } else if let Some(value) = line.trim_start().strip_prefix("namespace:") {
                    namespace = Some(value.trim().to_owned());
                }
            }
        }
        match (kind, name) {
            (Some(kind), Some(name)) => objects.push((kind, name, namespace)),
            (None, None) => {}
            _ => fail(
                "error: error validating data: (stand-in) an object without kind or metadata.name",
            ),
        }
    }
    objects
}

fn kubeconfig() -> (PathBuf, Value) {
    let Some(path) = std::env::var_os("KUBECONFIG").map(PathBuf::from) else {
        fail("error: (stand-in) KUBECONFIG is not set: tests must point it at a file of their own");
    };
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    // JSON is YAML: the tests write their kubeconfig as JSON.
    let config = serde_json::from_str(&text).unwrap_or_else(|error| {
        fail(&format!(
            "error: error loading config file \"{}\": {error}",
            path.display()
        ))
    });
    (path, config)
}

fn has_context(config: &Value, name: &str) -> bool {
    config["contexts"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["name"] == name)
}

fn check_kubeconfig_has(context: &str) {
    let (_, config) = kubeconfig();
    if !has_context(&config, context) {
        fail(&format!(
            "Error in configuration: context was not found for specified context: {context}"
        ));
    }
}

fn config(call: &Call) {
    let flags = call.flags(&[], &[]);
    let words: Vec<&str> = flags.words.iter().map(String::as_str).collect();
    let (path, mut config) = kubeconfig();
    match words.as_slice() {
        ["current-context"] => match config["current-context"].as_str() {
            Some(current) if !current.is_empty() => println!("{current}"),
            _ => fail("error: current-context is not set"),
        },
        ["use-context", name] => {
            if !has_context(&config, name) {
                fail(&format!(
                    "error: no context exists with the name: \"{name}\""
                ));
            }
            config["current-context"] = json!(name);
            let text = serde_json::to_string_pretty(&config).unwrap_or_default();
            if let Err(error) = std::fs::write(&path, text) {
                fail(&format!(
                    "error: (stand-in) writing {}: {error}",
                    path.display()
                ));
            }
            println!("Switched to context \"{name}\".");
        }
        _ => fail(&format!(
            "error: (stand-in) `kubectl config {}` is not modelled",
            words.join(" ")
        )),
    }
}

/// Rendering is offline: the real kubectl does it.
fn kustomize(args: &[String]) {
    let Some(real) = std::env::var_os(REAL_KUBECTL_VARIABLE) else {
        fail(&format!(
            "error: (stand-in) `kubectl kustomize` runs the real kubectl: set {REAL_KUBECTL_VARIABLE}"
        ));
    };
    match std::process::Command::new(real).args(args).status() {
        Ok(status) => std::process::exit(status.code().unwrap_or(1)),
        Err(error) => fail(&format!(
            "error: (stand-in) running the real kubectl: {error}"
        )),
    }
}
