//! `kubectl logs`: the pods' log files (the real mock-service processes' stdout), as
//! kubectl prints them (k8s.io/kubectl pkg/cmd/logs/logs.go):
//!
//! - `--prefix`: every line starts with "[pod/NAME/CONTAINER] " (`addPrefixIfNeeded`);
//! - `--tail`: "Defaults to -1 with no selector, showing all log lines otherwise 10, if
//!   a selector is provided" (the flag's help);
//! - without `-f` the pods are read one after the other (`sequentialConsumeRequest`);
//!   with `-f` and more than one pod, more than `--max-log-requests` (default 5) streams
//!   is an error ("you are attempting to follow N log streams, but maximum allowed
//!   concurrency is M, use --max-log-requests to increase the limit"), otherwise every
//!   stream is followed (`parallelConsumeRequest`) until kubectl is killed, or dies of
//!   SIGPIPE writing to a closed stdout;
//! - no pod matched: "No resources found in NS namespace." on stderr, exit 0.

use std::{io::Read as _, io::Seek as _, path::Path, time::Duration};

use kubectl_standin::{Cluster, Pod, end_with_the_cluster, fail};

use crate::{Call, parse_go_duration, pods_selected};

pub fn run(cluster: &Cluster, call: &Call) {
    let flags = call.flags(
        &[
            "selector|l",
            "max-log-requests",
            "tail",
            "since",
            "container|c",
        ],
        &["prefix", "all-containers", "follow|f"],
    );
    let selector = flags.values.get("selector");
    let pods = match (selector, flags.words.as_slice()) {
        (Some(_), []) => pods_selected(cluster, &call.namespace, selector),
        (None, [target]) => {
            let name = target.strip_prefix("pod/").unwrap_or(target);
            match cluster
                .running_pods(&call.namespace)
                .into_iter()
                .find(|p| p.name == name)
            {
                Some(pod) => vec![pod],
                None => fail(&format!(
                    "error: error from server (NotFound): pods \"{name}\" not found"
                )),
            }
        }
        _ => fail(
            "error: expected 'logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]'.\nPOD or TYPE/NAME is a required argument for the logs command",
        ),
    };
    if let Some(since) = flags.values.get("since") {
        // Checked as kubectl checks it; kubelet's timestamps are not modelled.
        parse_go_duration(since);
    }
    if pods.is_empty() {
        eprintln!("No resources found in {} namespace.", call.namespace);
        return;
    }
    let number = |flag: &str, default: i64| {
        flags.values.get(flag).map_or(default, |v| {
            v.parse().unwrap_or_else(|_| {
                fail(&format!(
                    "error: invalid argument \"{v}\" for \"--{flag}\" flag"
                ))
            })
        })
    };
    let tail = number("tail", if selector.is_some() { 10 } else { -1 });
    let max_streams = number("max-log-requests", 5);
    let follow = flags.set.contains("follow");
    if follow && pods.len() > 1 && pods.len() as i64 > max_streams {
        fail(&format!(
            "error: you are attempting to follow {} log streams, but maximum allowed concurrency is {max_streams}, use --max-log-requests to increase the limit",
            pods.len()
        ));
    }
    let prefix = |pod: &Pod| {
        if flags.set.contains("prefix") {
            format!("[pod/{}/{}] ", pod.name, pod.container)
        } else {
            String::new()
        }
    };
    let mut offsets = Vec::new();
    for pod in &pods {
        let text = pod.log.as_deref().map(read).unwrap_or_default();
        let complete = text.rfind('\n').map_or(0, |end| end + 1);
        let lines: Vec<&str> = text[..complete].lines().collect();
        let skip = if tail < 0 {
            0
        } else {
            lines.len().saturating_sub(tail as usize)
        };
        for line in &lines[skip..] {
            println!("{}{line}", prefix(pod));
        }
        offsets.push(complete as u64);
    }
    if follow {
        end_with_the_cluster(cluster.path());
        follow_files(&pods, offsets, prefix);
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Prints the complete lines appended to each pod's file, until the process ends.
fn follow_files(pods: &[Pod], mut offsets: Vec<u64>, prefix: impl Fn(&Pod) -> String) {
    loop {
        for (pod, offset) in pods.iter().zip(offsets.iter_mut()) {
            let Some(Ok(mut file)) = pod.log.as_deref().map(std::fs::File::open) else {
                continue;
            };
            let mut text = String::new();
            if file.seek(std::io::SeekFrom::Start(*offset)).is_err()
                || file.read_to_string(&mut text).is_err()
            {
                continue;
            }
            let complete = text.rfind('\n').map_or(0, |end| end + 1);
            for line in text[..complete].lines() {
                println!("{}{line}", prefix(pod));
            }
            *offset += complete as u64;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
