//! The same questions about the mesh in the kind cluster, answered through kubectl with
//! the project's context: which services, which pods, an admin API through the API
//! server (`kubectl port-forward`, never an exposed port), the replica count.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use super::AdminApi;
use crate::cluster::{CONTEXT, kubectl};

/// The namespace of the seven services; the observability tools are in `monitoring`.
pub const SERVICES_NAMESPACE: &str = "services";
pub const MONITORING_NAMESPACE: &str = "monitoring";
/// The admin (fault) API's port inside every service pod, on its loopback: the manifests
/// leave `ADMIN_PORT` unset, so it is the default.
const ADMIN_PORT: u16 = contract::admin::DEFAULT_PORT;

/// The names of the Deployments in `namespace`.
pub fn deployments(namespace: &str) -> anyhow::Result<Vec<String>> {
    let names = kubectl(
        "listing the deployments",
        [
            "-n",
            namespace,
            "get",
            "deployments",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    )
    .read()?;
    Ok(names.split_whitespace().map(str::to_owned).collect())
}

/// The pods of a Deployment (its pods carry `app=<name>`).
pub fn pods(namespace: &str, app: &str) -> anyhow::Result<Vec<String>> {
    let pods = kubectl(
        &format!("listing the pods of {app}"),
        [
            "-n",
            namespace,
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    )
    .read()?;
    let pods: Vec<String> = pods.split_whitespace().map(str::to_owned).collect();
    if pods.is_empty() {
        bail!(
            "no pods of {app} in namespace {namespace} of the cluster ({CONTEXT}); is the mesh deployed (`cargo xtask up`)?"
        );
    }
    Ok(pods)
}

/// The admin API of every replica of `service`, each through its own port-forward.
pub async fn admin_apis(service: &str) -> anyhow::Result<Vec<AdminApi>> {
    let mut apis = Vec::new();
    for pod in pods(SERVICES_NAMESPACE, service)? {
        apis.push(port_forward(&pod).await?);
    }
    Ok(apis)
}

/// `kubectl port-forward pod/POD :9901`, through the API server, to the pod's loopback
/// admin port; returns once kubectl says where it listens. The forward lives as long as
/// the returned value.
async fn port_forward(pod: &str) -> anyhow::Result<AdminApi> {
    let mut child = kubectl(
        &format!("forwarding to the admin API of pod {pod}"),
        [
            "-n",
            SERVICES_NAMESPACE,
            "port-forward",
            &format!("pod/{pod}"),
            &format!(":{ADMIN_PORT}"),
        ],
    )
    .spawn_piped_with_stderr()?;
    let stdout = child.stdout.take().context("port-forward stdout")?;
    let stderr = child.stderr.take().context("port-forward stderr")?;
    let said = Arc::new(Mutex::new(Vec::new()));
    let stderr_read = tokio::spawn(keep_last_lines(stderr, said.clone(), &[]));
    let mut forward = PortForward {
        child,
        said,
        stderr_read: Some(stderr_read),
    };
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
        .await
        .with_context(|| format!("kubectl port-forward to {pod} did not start within 15 s"))?
        .with_context(|| format!("reading kubectl port-forward's output for {pod}"))?;
    let Some(line) = first else {
        bail!(
            "kubectl port-forward to {pod} {}",
            forward.exit_report().await
        );
    };
    // kubectl writes "Handling connection for N" for every connection from now on, and
    // dies of SIGPIPE if nobody reads it: read (and drop) it for the forward's life.
    tokio::spawn(keep_last_lines(
        lines.into_inner(),
        forward.said.clone(),
        &["Forwarding from ", "Handling connection for "],
    ));
    // "Forwarding from 127.0.0.1:41235 -> 9901"
    let address = line
        .split_whitespace()
        .find(|word| word.starts_with("127.0.0.1:"))
        .with_context(|| format!("unexpected port-forward output: {line}"))?
        .to_owned();
    Ok(AdminApi {
        replica: pod.to_owned(),
        base_url: format!("http://{address}"),
        port_forward: Some(forward),
    })
}

/// A running `kubectl port-forward`, killed when dropped. What it said on stderr (and
/// anything unexpected on stdout) is kept, to say why it died.
pub struct PortForward {
    child: tokio::process::Child,
    said: Arc<Mutex<Vec<String>>>,
    stderr_read: Option<tokio::task::JoinHandle<()>>,
}

impl PortForward {
    /// Why the forward is gone ("exited (signal: 13 (SIGPIPE)): ..."), if it is.
    pub fn died(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok().flatten()?;
        Some(format!("exited ({status}){}", self.last_words()))
    }

    /// Waits (briefly) for a forward that closed its output to exit, and says how.
    async fn exit_report(&mut self) -> String {
        let status = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        if let Some(reading) = self.stderr_read.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), reading).await;
        }
        match status {
            Ok(Ok(status)) => format!("exited ({status}){}", self.last_words()),
            _ => format!("closed its output{}", self.last_words()),
        }
    }

    fn last_words(&self) -> String {
        let said = self
            .said
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if said.is_empty() {
            String::new()
        } else {
            format!(": {}", said.join(" | "))
        }
    }
}

/// Reads `output` to its end, keeping the last few lines that start with none of
/// `routine`.
async fn keep_last_lines(
    output: impl tokio::io::AsyncRead + Unpin,
    said: Arc<Mutex<Vec<String>>>,
    routine: &'static [&'static str],
) {
    const KEPT: usize = 5;
    let mut lines = BufReader::new(output).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if routine.iter().any(|prefix| line.starts_with(prefix)) {
            continue;
        }
        let mut said = said
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if said.len() == KEPT {
            said.remove(0);
        }
        said.push(line);
    }
}

/// How many replicas a service's Deployment asks for.
pub fn replicas(service: &str) -> anyhow::Result<u32> {
    let count = kubectl(
        &format!("reading the replicas of {service}"),
        [
            "-n",
            SERVICES_NAMESPACE,
            "get",
            &format!("deployment/{service}"),
            "-o",
            "jsonpath={.spec.replicas}",
        ],
    )
    .read()?;
    count
        .trim()
        .parse()
        .with_context(|| format!("kubectl gave `{count}` as the replicas of {service}"))
}

/// Scales a service's Deployment and waits for the rollout. Cancellable: dropping the
/// future kills the kubectl it runs.
pub async fn scale(service: &str, replicas: u32) -> anyhow::Result<()> {
    kubectl(
        &format!("scaling {service} to {replicas}"),
        [
            "-n",
            SERVICES_NAMESPACE,
            "scale",
            &format!("deployment/{service}"),
            &format!("--replicas={replicas}"),
        ],
    )
    .run_async()
    .await?;
    kubectl(
        &format!("waiting for {service} to scale"),
        [
            "-n",
            SERVICES_NAMESPACE,
            "rollout",
            "status",
            &format!("deployment/{service}"),
            "--timeout=120s",
        ],
    )
    .run_async()
    .await
}
