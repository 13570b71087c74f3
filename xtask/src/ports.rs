//! Ports on loopback: the local mesh's fixed ones (with a clear error when one is
//! taken), and free ones for the benchmark's meshes.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use contract::topology::Topology;

use crate::tools;

/// The gateway's port: the kind cluster's NodePort, so the docs'
/// `curl http://localhost:30080/...` works in both modes.
pub const GATEWAY_PORT: u16 = 30080;

/// The gateway's URL, the same for the local mesh and the kind cluster's NodePort.
pub const GATEWAY_URL: &str = "http://localhost:30080";

/// The service that takes the mesh's traffic: gateway-service, or in a topology
/// without one, its first service.
pub fn entry_service(topology: &Topology) -> &str {
    topology
        .service("gateway-service")
        .or_else(|| topology.services().next())
        .map_or("gateway-service", |service| service.name.as_str())
}

/// The entry service on 30080, the others on 30081, 30082, ... in topology order.
pub fn service_ports(topology: &Topology) -> BTreeMap<String, u16> {
    let entry = entry_service(topology);
    let mut next = GATEWAY_PORT + 1;
    topology
        .services()
        .map(|service| {
            let port = if service.name == entry {
                GATEWAY_PORT
            } else {
                next += 1;
                next - 1
            };
            (service.name.clone(), port)
        })
        .collect()
}

/// The admin (fault injection) API of the service on `port`: 1000 above it
/// (gateway-service 31080, ...), on 127.0.0.1.
pub fn admin_port(port: u16) -> u16 {
    port + 1000
}

/// A port the local mesh is to listen on, on 127.0.0.1, and what would listen there
/// (e.g. `order-service`, `jaeger's query gRPC API`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub port: u16,
    pub owner: String,
}

/// The services' listeners: each service's port and its fault API's.
pub fn service_listeners(ports: &BTreeMap<String, u16>) -> impl Iterator<Item = Listener> + '_ {
    ports.iter().flat_map(|(service, &port)| {
        [
            Listener {
                port,
                owner: service.clone(),
            },
            Listener {
                port: admin_port(port),
                owner: format!("{service}'s fault API"),
            },
        ]
    })
}

/// Fails, naming each taken port, what was to listen there, and the port's likely
/// current owner, if any port cannot be bound on loopback.
pub fn check_free(listeners: impl IntoIterator<Item = Listener>) -> anyhow::Result<()> {
    let taken: Vec<String> = listeners
        .into_iter()
        .filter(|listener| std::net::TcpListener::bind(("127.0.0.1", listener.port)).is_err())
        .map(|Listener { port, owner }| {
            format!(
                "  port {port} (for {owner}) is in use, probably by {}",
                likely_owner(port)
            )
        })
        .collect();
    if taken.is_empty() {
        return Ok(());
    }
    bail!("cannot start the local mesh:\n{}", taken.join("\n"))
}

/// `count` distinct free ports on loopback: bound together (so no two are the same),
/// read, and released (the OS does not hand them out again at once).
pub fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

fn likely_owner(port: u16) -> String {
    match port {
        GATEWAY_PORT => "the kind cluster's gateway NodePort (`cargo xtask cluster down`) or \
                         another `cargo xtask local` (`cargo xtask local --stop`)"
            .to_owned(),
        30081..=30099 | 31080..=31099 => {
            "another `cargo xtask local` (`cargo xtask local --stop`)".to_owned()
        }
        _ => tools::likely_owner(port)
            .unwrap_or_else(|| "another program (`ss -ltnp` shows which)".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_gets_the_clusters_node_port_and_the_others_follow() {
        let ports = service_ports(&Topology::built_in());
        assert_eq!(ports["gateway-service"], 30080);
        let mut others: Vec<u16> = ports
            .iter()
            .filter(|(n, _)| *n != "gateway-service")
            .map(|(_, p)| *p)
            .collect();
        others.sort_unstable();
        assert_eq!(others, (30081..=30086).collect::<Vec<_>>());
    }

    #[test]
    fn a_taken_port_is_named_with_its_likely_owner() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let wanted = || Listener {
            port,
            owner: "jaeger's query gRPC API".to_owned(),
        };
        let error = check_free([wanted()]).expect_err("taken").to_string();
        assert!(
            error.contains(&format!(
                "port {port} (for jaeger's query gRPC API) is in use"
            )),
            "{error}"
        );
        drop(listener);
        assert!(check_free([wanted()]).is_ok());
    }
}
