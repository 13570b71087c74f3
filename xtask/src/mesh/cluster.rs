//! The same questions about the mesh in the kind cluster, answered through kubectl with
//! the project's context: which services, which pods, an admin API through the API
//! server (`kubectl port-forward`, never an exposed port), the replica count.

use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use super::AdminApi;
use crate::cluster::{CONTEXT, kubectl};

/// The namespace of the seven services; the observability tools are in `monitoring`.
pub const SERVICES_NAMESPACE: &str = "services";
pub const MONITORING_NAMESPACE: &str = "monitoring";
/// The admin (fault) API's port inside every service pod, on its loopback.
const ADMIN_PORT: u16 = 9901;

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
/// admin port; returns once kubectl says where it listens.
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
    .spawn_piped()?;
    let stdout = child.stdout.take().context("port-forward stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
        .await
        .with_context(|| format!("kubectl port-forward to {pod} did not start within 15 s"))??
        .with_context(|| format!("kubectl port-forward to {pod} exited"))?;
    // "Forwarding from 127.0.0.1:41235 -> 9901"
    let address = line
        .split_whitespace()
        .find(|word| word.starts_with("127.0.0.1:"))
        .with_context(|| format!("unexpected port-forward output: {line}"))?
        .to_owned();
    Ok(AdminApi {
        replica: pod.to_owned(),
        base_url: format!("http://{address}"),
        _port_forward: Some(child),
    })
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

/// Scales a service's Deployment and waits for the rollout.
pub fn scale(service: &str, replicas: u32) -> anyhow::Result<()> {
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
    .run()?;
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
    .run()
}
