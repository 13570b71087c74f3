//! The mesh that is running now, and the one place that knows about it: what
//! `cargo xtask local` started (its record, `target/local/mesh.json`: the topology, the
//! ports, the pids, the tools), or the kind cluster's Deployments and pods, found
//! through kubectl. `chaos`, `smoke`, `scenario`, `traffic --chaos`, `logs` and
//! `local --stop` ask it which services exist and where to reach them, so a mesh
//! started from another topology is acted on as it runs, not as the built-in graph has it.

pub mod cluster;
pub mod local;

use anyhow::{Context as _, bail};
use contract::topology::Topology;

use crate::ports::GATEWAY_URL;
pub use local::LocalMesh;

/// Where the mesh runs.
pub enum RunningMesh {
    Local(LocalMesh),
    Cluster,
}

/// The admin (fault) API of one replica; for a pod, the port-forward lives as long as
/// this value.
pub struct AdminApi {
    /// `local`, or the pod's name.
    pub replica: String,
    pub base_url: String,
    pub(crate) port_forward: Option<cluster::PortForward>,
}

impl AdminApi {
    /// For a pod whose port-forward is gone: how it ended ("kubectl port-forward exited
    /// (...): its last words"), to explain a request that got no answer.
    pub fn forward_died(&mut self) -> Option<String> {
        self.port_forward
            .as_mut()
            .and_then(cluster::PortForward::died)
            .map(|how| format!("kubectl port-forward {how}"))
    }
}

impl RunningMesh {
    /// The local mesh while `cargo xtask local` runs, else the kind cluster;
    /// `force_cluster` (the commands' `--cluster`) picks the cluster regardless.
    pub fn find(force_cluster: bool) -> RunningMesh {
        match LocalMesh::running() {
            Some(local) if !force_cluster => RunningMesh::Local(local),
            _ => RunningMesh::Cluster,
        }
    }

    /// "the local mesh" or "the kind cluster", for messages.
    pub fn describe(&self) -> &'static str {
        match self {
            RunningMesh::Local(_) => "the local mesh",
            RunningMesh::Cluster => "the kind cluster",
        }
    }

    /// The services of the mesh as it runs, in its topology's order (the cluster: its
    /// Deployments in namespace `services`).
    pub fn services(&self) -> anyhow::Result<Vec<String>> {
        match self {
            RunningMesh::Local(mesh) => Ok(mesh.services.iter().map(|s| s.name.clone()).collect()),
            RunningMesh::Cluster => cluster::deployments(cluster::SERVICES_NAMESPACE),
        }
    }

    /// The call graph the mesh runs: the local mesh's `--topology` file or the built-in
    /// graph; in the cluster, the built-in graph (the manifests' topology ConfigMap is
    /// made from the very file the binary compiles in).
    pub fn topology(&self) -> anyhow::Result<Topology> {
        let file = match self {
            RunningMesh::Local(mesh) => mesh.topology_file.as_deref(),
            RunningMesh::Cluster => None,
        };
        Topology::load(file).context("the mesh's topology")
    }

    /// Fails, listing the services there are, unless `name` is one.
    pub fn check_service(&self, name: &str) -> anyhow::Result<()> {
        let services = self.services()?;
        if services.iter().any(|service| service == name) {
            return Ok(());
        }
        bail!(
            "`{name}` is not a service of {}; use one of {}",
            self.describe(),
            services.join(", ")
        )
    }

    /// The admin API of every replica of `service`.
    pub async fn admin_apis(&self, service: &str) -> anyhow::Result<Vec<AdminApi>> {
        match self {
            RunningMesh::Local(mesh) => {
                self.check_service(service)?;
                let process = mesh.service(service).context("checked above")?;
                Ok(vec![AdminApi {
                    replica: "local".into(),
                    base_url: format!("http://127.0.0.1:{}", process.admin_port),
                    port_forward: None,
                }])
            }
            RunningMesh::Cluster => cluster::admin_apis(service).await,
        }
    }

    /// Where the entry service answers: the local mesh's, or the kind cluster's NodePort
    /// (both on port 30080).
    pub fn entry_url(&self) -> String {
        match self {
            RunningMesh::Local(mesh) => mesh.entry_url(),
            RunningMesh::Cluster => GATEWAY_URL.to_owned(),
        }
    }
}
