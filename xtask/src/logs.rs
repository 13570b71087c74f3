//! `cargo xtask logs`: the mesh's logs, each line prefixed by the service (local) or the
//! pod (cluster) that wrote it; `--trace ID` gathers one trace's lines from every
//! service, merged in time order. Local logs are `target/local/logs/*.log` (kept after
//! the mesh stops, for a post-mortem); the cluster's come from `kubectl logs` with the
//! project's context.

use std::{
    collections::BTreeMap,
    io::{Read as _, Seek as _},
    path::PathBuf,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, bail};
use loadgen::parse_duration;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::{
    cluster::kubectl,
    mesh::{
        LocalMesh,
        cluster::{MONITORING_NAMESPACE, SERVICES_NAMESPACE},
        local::log_file,
    },
};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask logs                                   # every service's log so far
  cargo xtask logs order-service --since 5m          # one service, the last five minutes
  cargo xtask logs --follow                          # every service, as they write (Ctrl+C stops)
  cargo xtask logs jaeger                            # a tool: prometheus, alertmanager, grafana, otel-collector, jaeger
  cargo xtask logs --trace 4bf92f3577b34da6a3ce929d0e0e4736   # one request, across the mesh

Where a trace id comes from: the `x-trace-id` header of any answer
(`curl -i -X POST localhost:30080/api/action`), the slowest requests that
`cargo xtask traffic` lists at the end, a dot (exemplar) on a latency panel in Grafana,
or a trace in Jaeger.

It reads the local mesh's logs (target/local/logs/, also after it stopped) unless no
local mesh ever ran here or --cluster is given; then every replica's logs from the kind
cluster (kubectl logs --context kind-monitoring-demo).")]
pub struct LogsArgs {
    /// A service (e.g. order-service) or tool (prometheus, alertmanager, grafana,
    /// otel-collector, jaeger) [default: every service]
    #[arg(value_name = "SERVICE")]
    pub service: Option<String>,

    /// Keep printing lines as they are written, until Ctrl+C
    #[arg(long, short, conflicts_with = "trace")]
    pub follow: bool,

    /// Only lines written in the last DURATION (e.g. 30s, 5m, 1h)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<Duration>,

    /// Only the lines of this trace (32 hex digits), from every service, in time order
    #[arg(long, value_name = "TRACE_ID", value_parser = parse_trace_id)]
    pub trace: Option<String>,

    /// Read the kind cluster's pods even if there are local logs
    #[arg(long)]
    pub cluster: bool,
}

/// The observability tools, by the name of their log (local) and Deployment (cluster).
const TOOLS: [&str; 5] = [
    "prometheus",
    "alertmanager",
    "grafana",
    "otel-collector",
    "jaeger",
];

/// One log line, with who wrote it and when (if it says).
#[derive(Debug, PartialEq)]
pub struct Line {
    pub source: String,
    pub at: Option<SystemTime>,
    pub text: String,
}

impl LogsArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let local = (!self.cluster).then(LocalMesh::recorded).flatten();
        match local {
            Some(mesh) => self.local(&mesh).await,
            None => self.cluster().await,
        }
    }

    async fn local(&self, mesh: &LocalMesh) -> anyhow::Result<()> {
        let names: Vec<String> = match &self.service {
            Some(name) if mesh.service(name).is_some() || TOOLS.contains(&name.as_str()) => {
                vec![name.clone()]
            }
            Some(name) => bail!(
                "`{name}` is neither a service of the local mesh ({}) nor a tool ({})",
                mesh.services
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                TOOLS.join(", ")
            ),
            None => mesh.services.iter().map(|s| s.name.clone()).collect(),
        };
        let files: Vec<(String, PathBuf)> = names
            .into_iter()
            .map(|name| {
                let file = log_file(&name);
                (name, file)
            })
            .filter(|(_, file)| file.exists())
            .collect();
        if files.is_empty() {
            bail!("no log files in target/local/logs for that; has `cargo xtask local` run?");
        }
        let since = self.since.map(|d| SystemTime::now() - d);
        print_selected(read_files(&files)?, since, self.trace.as_deref());
        if self.follow {
            follow_files(&files).await?;
        }
        Ok(())
    }

    async fn cluster(&self) -> anyhow::Result<()> {
        let (namespace, selector) = match &self.service {
            Some(tool) if TOOLS.contains(&tool.as_str()) => {
                (MONITORING_NAMESPACE, format!("app={tool}"))
            }
            Some(service) => (SERVICES_NAMESPACE, format!("app={service}")),
            None => (
                SERVICES_NAMESPACE,
                "app.kubernetes.io/part-of=observability-playground".to_owned(),
            ),
        };
        let mut args = kubectl_logs_args(namespace, selector, self.since);
        if self.follow {
            args.push("--follow".to_owned());
            return follow_kubectl(&args).await;
        }
        print_selected(read_kubectl(&args)?, None, self.trace.as_deref());
        Ok(())
    }
}

/// Every line of these files, each of its source.
fn read_files(files: &[(String, PathBuf)]) -> anyhow::Result<Vec<Line>> {
    let mut lines = Vec::new();
    for (name, file) in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        lines.extend(text.lines().map(|line| parse(name, line)));
    }
    Ok(lines)
}

/// Every line `kubectl logs ARGS --prefix` prints, each of its pod.
fn read_kubectl(args: &[String]) -> anyhow::Result<Vec<Line>> {
    let output = kubectl("reading the pods' logs", args).read()?;
    Ok(output
        .lines()
        .map(|line| {
            let (pod, text) = split_kubectl_prefix(line);
            parse(pod, text)
        })
        .collect())
}

/// `kubectl logs` of every replica `selector` picks in `namespace`, each line prefixed by
/// kubectl with its pod ("[pod/NAME/CONTAINER]"), since `since` when given.
fn kubectl_logs_args(namespace: &str, selector: String, since: Option<Duration>) -> Vec<String> {
    let mut args = vec![
        "-n".to_owned(),
        namespace.to_owned(),
        "logs".to_owned(),
        "--selector".to_owned(),
        selector,
        "--prefix".to_owned(),
        "--all-containers".to_owned(),
        "--max-log-requests=50".to_owned(),
        "--tail=-1".to_owned(),
    ];
    if let Some(since) = since {
        args.push(format!("--since={}s", since.as_secs().max(1)));
    }
    args
}

/// What the mesh's services logged in the last `since` (all they logged when `None`):
/// `service`'s lines (every service's when `None`) from the local mesh's files, or from
/// every replica in the cluster (`kubectl logs`, each line of its pod).
pub fn read_services(
    local: Option<&LocalMesh>,
    service: Option<&str>,
    since: Option<Duration>,
) -> anyhow::Result<Vec<Line>> {
    let lines = match local {
        Some(mesh) => {
            let files: Vec<(String, PathBuf)> = mesh
                .services
                .iter()
                .filter(|s| service.is_none_or(|name| s.name == name))
                .map(|s| (s.name.clone(), log_file(&s.name)))
                .filter(|(_, file)| file.exists())
                .collect();
            read_files(&files)?
        }
        None => {
            let selector = service.map_or_else(
                || "app.kubernetes.io/part-of=observability-playground".to_owned(),
                |name| format!("app={name}"),
            );
            read_kubectl(&kubectl_logs_args(SERVICES_NAMESPACE, selector, since))?
        }
    };
    Ok(select(lines, since.map(|d| SystemTime::now() - d), None))
}

/// Who logged a line of `trace_id`, as `cargo xtask logs --trace` finds them (for
/// `scenario --verify`): the local mesh's services, or the cluster's pods (named after
/// their service), each once.
pub fn sources_of_trace(local: Option<&LocalMesh>, trace_id: &str) -> anyhow::Result<Vec<String>> {
    let lines = read_services(local, None, None)?;
    let mut sources: Vec<String> = select(lines, None, Some(trace_id))
        .into_iter()
        .map(|line| line.source)
        .collect();
    sources.sort();
    sources.dedup();
    Ok(sources)
}

/// `kubectl logs --follow`: its lines printed as they come, its errors passed on, until
/// it ends (an error says how) or Ctrl+C, which stops it too rather than leaving it
/// following.
async fn follow_kubectl(args: &[String]) -> anyhow::Result<()> {
    let mut child = kubectl("following the pods' logs", args).spawn_piped_with_stderr()?;
    let stdout = child.stdout.take().context("kubectl's output")?;
    let stderr = child.stderr.take().context("kubectl's errors")?;
    let errors = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{line}");
        }
    });
    let mut lines = BufReader::new(stdout).lines();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(line) => println!("{line}"),
                None => break,
            },
            _ = &mut ctrl_c => {
                child.kill().await.context("stopping kubectl logs")?;
                return Ok(());
            }
        }
    }
    let status = child.wait().await.context("waiting for kubectl logs")?;
    let _ = errors.await;
    if !status.success() {
        bail!("kubectl logs --follow ended ({status})");
    }
    Ok(())
}

/// Prints the lines written since `since` and, with `trace`, only that trace's, merged
/// in time order (lines without a time keep their place after the line before them).
fn print_selected(lines: Vec<Line>, since: Option<SystemTime>, trace: Option<&str>) {
    let selected = select(lines, since, trace);
    let width = selected.iter().map(|l| l.source.len()).max().unwrap_or(0);
    for line in selected {
        println!("{:<width$} | {}", line.source, line.text);
    }
}

/// The lines to show, in order: with a trace id, only that trace's lines, sorted by
/// their time across sources; otherwise each source's lines in the order written, the
/// sources one after another.
pub fn select(lines: Vec<Line>, since: Option<SystemTime>, trace: Option<&str>) -> Vec<Line> {
    let recent = |line: &Line| match (since, line.at) {
        (Some(since), Some(at)) => at >= since,
        // A line without a time (a panic's message, a tool's banner) is kept.
        _ => true,
    };
    let mut selected: Vec<Line> = lines
        .into_iter()
        .filter(|line| recent(line))
        .filter(|line| trace.is_none_or(|id| trace_id(&line.text).as_deref() == Some(id)))
        .collect();
    if trace.is_some() {
        selected.sort_by_key(|line| line.at);
    }
    selected
}

/// A line of `source`, with its time when it is one of the services' JSON lines.
pub fn parse(source: &str, text: &str) -> Line {
    let at = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|json| json["timestamp"].as_str().map(str::to_owned))
        .and_then(|stamp| humantime::parse_rfc3339_weak(&stamp).ok());
    Line {
        source: source.to_owned(),
        at,
        text: text.to_owned(),
    }
}

/// The `trace_id` of a JSON log line.
pub fn trace_id(text: &str) -> Option<String> {
    let json: Value = serde_json::from_str(text).ok()?;
    json["trace_id"].as_str().map(str::to_owned)
}

/// "[pod/order-service-7d9f/mock-service] {...}" -> ("order-service-7d9f", "{...}").
fn split_kubectl_prefix(line: &str) -> (&str, &str) {
    let Some(rest) = line.strip_prefix('[') else {
        return ("?", line);
    };
    let Some((prefix, text)) = rest.split_once("] ") else {
        return ("?", line);
    };
    let pod = prefix
        .strip_prefix("pod/")
        .and_then(|p| p.split('/').next())
        .unwrap_or(prefix);
    (pod, text)
}

/// A trace id as OpenTelemetry writes it: 32 lowercase hex digits, not all zero.
pub fn parse_trace_id(text: &str) -> anyhow::Result<String> {
    let id = text.trim().to_ascii_lowercase();
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("`{text}` is not a trace id: 32 hex digits, e.g. 4bf92f3577b34da6a3ce929d0e0e4736");
    }
    if id.bytes().all(|b| b == b'0') {
        bail!("the all-zero trace id is invalid");
    }
    Ok(id)
}

/// Prints what is appended to the files from now on, until Ctrl+C.
async fn follow_files(files: &[(String, PathBuf)]) -> anyhow::Result<()> {
    let mut offsets: BTreeMap<&str, u64> = BTreeMap::new();
    for (name, file) in files {
        offsets.insert(name, std::fs::metadata(file).map_or(0, |m| m.len()));
    }
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tick.tick() => {}
        }
        for (name, file) in files {
            let offset = offsets
                .get_mut(name.as_str())
                .context("an offset per file")?;
            for line in appended(file, offset)? {
                println!("{name} | {line}");
            }
        }
    }
}

/// The complete lines appended to `file` after `offset`, which moves past them. A file
/// that shrank (a new `cargo xtask local` replaced it) is read from its start.
fn appended(file: &std::path::Path, offset: &mut u64) -> anyhow::Result<Vec<String>> {
    let Ok(mut handle) = std::fs::File::open(file) else {
        return Ok(Vec::new());
    };
    let length = handle.metadata()?.len();
    if length < *offset {
        *offset = 0;
    }
    handle.seek(std::io::SeekFrom::Start(*offset))?;
    let mut text = String::new();
    handle.take(length - *offset).read_to_string(&mut text)?;
    let complete = text.rfind('\n').map_or(0, |end| end + 1);
    *offset += complete as u64;
    Ok(text[..complete].lines().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(at: &str, trace: &str, message: &str) -> String {
        format!(
            r#"{{"timestamp":"{at}","level":"INFO","message":"{message}","trace_id":"{trace}"}}"#
        )
    }

    const A: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const B: &str = "0af7651916cd43dd8448eb211c80319c";

    #[test]
    fn a_trace_is_merged_in_time_order_across_sources_and_nothing_else() {
        let lines = vec![
            parse(
                "order-service",
                &json("2026-11-27T10:00:00.300Z", A, "third"),
            ),
            parse(
                "order-service",
                &json("2026-11-27T10:00:00.100Z", B, "other"),
            ),
            parse(
                "gateway-service",
                &json("2026-11-27T10:00:00.100Z", A, "first"),
            ),
            parse("user-service", "a panic, not JSON"),
            parse(
                "user-service",
                &json("2026-11-27T10:00:00.200Z", A, "second"),
            ),
        ];
        let selected = select(lines, None, Some(A));
        let order: Vec<(&str, bool)> = selected
            .iter()
            .map(|l| (l.source.as_str(), l.text.contains(A)))
            .collect();
        assert_eq!(
            order,
            [
                ("gateway-service", true),
                ("user-service", true),
                ("order-service", true)
            ]
        );
    }

    #[test]
    fn since_keeps_recent_lines_and_lines_without_a_time() {
        let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let lines = vec![
            parse("a", &json("2020-01-01T00:00:00Z", A, "old")),
            parse("a", &json(&now, A, "new")),
            parse("a", "banner"),
        ];
        let kept = select(
            lines,
            Some(SystemTime::now() - Duration::from_secs(60)),
            None,
        );
        let texts: Vec<bool> = kept.iter().map(|l| l.text.contains("old")).collect();
        assert_eq!(texts, [false, false]);
    }

    #[test]
    fn trace_ids_are_checked_and_normalised() {
        assert_eq!(parse_trace_id(&A.to_uppercase()).expect("valid"), A);
        for bad in ["", "xyz", &A[..31], &"0".repeat(32)] {
            assert!(parse_trace_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kubectl_prefixes_name_the_pod() {
        assert_eq!(
            split_kubectl_prefix("[pod/order-service-7d9f-x2/mock-service] {\"a\":1}"),
            ("order-service-7d9f-x2", "{\"a\":1}")
        );
        assert_eq!(split_kubectl_prefix("plain"), ("?", "plain"));
    }

    #[test]
    fn following_reads_only_complete_new_lines() {
        let file = std::env::temp_dir().join(format!("xtask-logs-{}.log", std::process::id()));
        std::fs::write(&file, "old\n").expect("write");
        let mut offset = std::fs::metadata(&file).expect("len").len();
        std::fs::write(&file, "old\nnew\npart").expect("append");
        assert_eq!(appended(&file, &mut offset).expect("read"), ["new"]);
        std::fs::write(&file, "old\nnew\npartial line\n").expect("complete it");
        assert_eq!(
            appended(&file, &mut offset).expect("read"),
            ["partial line"]
        );
        std::fs::write(&file, "fresh\n").expect("replaced");
        assert_eq!(appended(&file, &mut offset).expect("read"), ["fresh"]);
        let _ = std::fs::remove_file(&file);
    }
}
