//! The NetworkPolicy evaluator the manifest tests use: which connections a rendering's
//! ingress policies let in (pod and namespace selectors, ports, ipBlocks against the kind
//! pod subnet), from every address a source may have or from at least one.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;
use xtask::paths::{KIND_CONFIG, workspace_root};

use crate::manifests::{Rendering, array, labels_at, name, namespace, number_at, text_at};

/// A Deployment's pods, as network policies see them.
pub struct Pod<'a> {
    pub deployment: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub template: &'a Value,
}

impl Pod<'_> {
    /// Every container port of the pod.
    pub fn ports(&self) -> Vec<u64> {
        array(self.template, "/spec/containers")
            .iter()
            .flat_map(|c| array(c, "/ports"))
            .map(|p| number_at(p, "/containerPort"))
            .collect()
    }

    fn named_port(&self, name: &str) -> Option<u64> {
        array(self.template, "/spec/containers")
            .iter()
            .flat_map(|c| array(c, "/ports"))
            .find(|p| text_at(p, "/name") == name)
            .map(|p| number_at(p, "/containerPort"))
    }
}

impl Rendering {
    pub fn pods(&self) -> Vec<Pod<'_>> {
        self.all("Deployment")
            .map(|d| Pod {
                deployment: name(d).to_owned(),
                namespace: namespace(d).to_owned(),
                labels: labels_at(d, "/spec/template/metadata/labels"),
                template: &d["spec"]["template"],
            })
            .collect()
    }

    fn namespace_labels(&self, ns: &str) -> BTreeMap<String, String> {
        let mut labels = self
            .get("Namespace", "", ns)
            .map(|doc| labels_at(doc, "/metadata/labels"))
            .unwrap_or_default();
        // Set by the API server on every namespace.
        labels.insert("kubernetes.io/metadata.name".to_owned(), ns.to_owned());
        labels
    }

    /// The ingress policies that select `pod`.
    pub fn policies_for<'a>(&'a self, pod: &'a Pod<'_>) -> impl Iterator<Item = &'a Value> + 'a {
        self.all("NetworkPolicy").filter(move |policy| {
            namespace(policy) == pod.namespace
                && selector_matches(&policy["spec"]["podSelector"], &pod.labels)
                && {
                    let types = array(policy, "/spec/policyTypes");
                    types.is_empty() || types.iter().any(|t| t == "Ingress")
                }
        })
    }

    /// Whether a connection from `from` (`None`: outside the pod network) to `to`'s
    /// container port `port` is allowed from every address `from` may have: what a
    /// needed path must be.
    pub fn ingress_allowed(&self, from: Option<&Pod>, to: &Pod, port: u64) -> bool {
        self.ingress_allowed_by(from, to, port, Reach::Every, |_| true)
    }

    /// Whether it is allowed from at least one address `from` may have: what a refused
    /// path must not be.
    pub fn ingress_possible(&self, from: Option<&Pod>, to: &Pod, port: u64) -> bool {
        self.ingress_allowed_by(from, to, port, Reach::Some, |_| true)
    }

    /// Allowed from every address, counting only the rules that name their sources
    /// (`from`): whether the connection is let in by a policy written for it, not by one
    /// open to anyone.
    pub fn ingress_allowed_from_named_peers(
        &self,
        from: Option<&Pod>,
        to: &Pod,
        port: u64,
    ) -> bool {
        self.ingress_allowed_by(from, to, port, Reach::Every, |rule| {
            !array(rule, "/from").is_empty()
        })
    }

    fn ingress_allowed_by(
        &self,
        from: Option<&Pod>,
        to: &Pod,
        port: u64,
        reach: Reach,
        counts: impl Fn(&Value) -> bool,
    ) -> bool {
        let mut policies = self.policies_for(to).peekable();
        if policies.peek().is_none() {
            return true; // not isolated
        }
        policies.any(|policy| {
            array(policy, "/spec/ingress")
                .iter()
                .filter(|rule| counts(rule))
                .any(|rule| {
                    let peers = array(rule, "/from");
                    let from_ok = peers.is_empty()
                        || peers
                            .iter()
                            .any(|peer| self.peer_matches(policy, peer, from, reach));
                    rule_port_matches(rule, to, port) && from_ok
                })
        })
    }

    fn peer_matches(&self, policy: &Value, peer: &Value, from: Option<&Pod>, reach: Reach) -> bool {
        if let Some(block) = peer.get("ipBlock") {
            return ip_block_matches(block, from.is_some(), reach);
        }
        let Some(from) = from else { return false };
        let namespace_ok = match peer.get("namespaceSelector") {
            Some(selector) => selector_matches(selector, &self.namespace_labels(&from.namespace)),
            None => from.namespace == namespace(policy),
        };
        let pod_ok = peer
            .get("podSelector")
            .is_none_or(|selector| selector_matches(selector, &from.labels));
        namespace_ok && pod_ok
    }
}

/// Whether an ingress rule's `ports` include `to`'s container port `port`.
fn rule_port_matches(rule: &Value, to: &Pod, port: u64) -> bool {
    let ports = array(rule, "/ports");
    ports.is_empty()
        || ports.iter().any(|p| {
            let protocol_ok = ["", "TCP"].contains(&text_at(p, "/protocol"));
            let number = match p.get("port") {
                None => return protocol_ok,
                Some(Value::String(name)) => to.named_port(name),
                Some(number) => number.as_u64(),
            };
            let end = p.get("endPort").and_then(Value::as_u64);
            protocol_ok
                && number
                    .is_some_and(|n| n == port || end.is_some_and(|end| (n..=end).contains(&port)))
        })
}

/// Of the addresses a source may have, how many an ipBlock must admit.
#[derive(Clone, Copy)]
enum Reach {
    Every,
    Some,
}

/// Whether an ipBlock admits a pod (any address of the pod subnet) or a source outside
/// the pod network (any other address), at `reach`. Its `except` entries lie inside its
/// `cidr` (the API server refuses others).
fn ip_block_matches(block: &Value, from_a_pod: bool, reach: Reach) -> bool {
    let pods = kind_pod_subnet();
    let cidr = Cidr::parse(text_at(block, "/cidr"));
    let except: Vec<Cidr> = array(block, "/except")
        .iter()
        .map(|e| Cidr::parse(e.as_str().unwrap_or_default()))
        .collect();
    match (from_a_pod, reach) {
        (true, Reach::Every) => cidr.contains(pods) && !except.iter().any(|e| e.overlaps(pods)),
        (true, Reach::Some) => {
            cidr.overlaps(pods) && !except.iter().any(|e| e.contains(cidr.narrower(pods)))
        }
        (false, Reach::Every) => cidr.prefix == 0 && except.iter().all(|e| pods.contains(*e)),
        (false, Reach::Some) => !pods.contains(cidr) && !except.iter().any(|e| e.contains(cidr)),
    }
}

/// An IPv4 CIDR block.
#[derive(Clone, Copy, Debug)]
struct Cidr {
    address: u32,
    prefix: u32,
}

impl Cidr {
    fn parse(text: &str) -> Cidr {
        let parsed = text.split_once('/').and_then(|(address, prefix)| {
            let address: std::net::Ipv4Addr = address.parse().ok()?;
            let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 32)?;
            Some(Cidr {
                address: u32::from(address) & Self::mask(prefix),
                prefix,
            })
        });
        parsed.unwrap_or_else(|| panic!("{text:?} is not an IPv4 CIDR block"))
    }

    fn mask(prefix: u32) -> u32 {
        u32::MAX.checked_shl(32 - prefix).unwrap_or(0)
    }

    fn contains(self, other: Cidr) -> bool {
        other.prefix >= self.prefix && other.address & Self::mask(self.prefix) == self.address
    }

    fn overlaps(self, other: Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// Of two overlapping blocks, the one inside the other: their intersection.
    fn narrower(self, other: Cidr) -> Cidr {
        if self.prefix >= other.prefix {
            self
        } else {
            other
        }
    }
}

/// The pod subnet manifests/kind.yaml sets, which the kind overlay's ipBlocks depend on.
fn kind_pod_subnet() -> Cidr {
    static SUBNET: OnceLock<Cidr> = OnceLock::new();
    *SUBNET.get_or_init(read_kind_pod_subnet)
}

fn read_kind_pod_subnet() -> Cidr {
    let path = workspace_root().join(KIND_CONFIG);
    let config: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).expect("read"))
        .expect("kind.yaml parses");
    let subnet = text_at(&config, "/networking/podSubnet");
    assert!(
        !subnet.is_empty(),
        "manifests/kind.yaml must set networking.podSubnet: the NodePorts' network policies \
         admit every address outside it and none inside"
    );
    Cidr::parse(subnet)
}

/// Whether a label selector (`matchLabels`, `matchExpressions`) selects `labels`.
pub fn selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let match_labels = labels_at(selector, "/matchLabels")
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let match_expressions = array(selector, "/matchExpressions").iter().all(|e| {
        let value = labels.get(text_at(e, "/key"));
        let values: Vec<&str> = array(e, "/values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        match text_at(e, "/operator") {
            "In" => value.is_some_and(|v| values.contains(&v.as_str())),
            "NotIn" => value.is_none_or(|v| !values.contains(&v.as_str())),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => panic!("unknown selector operator {other}"),
        }
    });
    match_labels && match_expressions
}
