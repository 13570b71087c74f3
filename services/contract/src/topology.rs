//! The call graph as data: which service calls which, on which route, with what
//! probability, and how long each service works. Parsed from YAML (see `topology.yaml`,
//! the built-in seven-service graph, compiled in as the default) and validated before a service starts:
//! an unknown service, a bad probability or a cycle is an error naming the line and the fix.

use std::{
    collections::HashMap,
    fmt,
    ops::RangeInclusive,
    path::{Path, PathBuf},
    str::FromStr,
};

use marked_yaml::Spanned;
use serde::Deserialize;

/// The built-in graph, used when no file is given. The file stays in mock-service's
/// directory: it is also the cluster's topology ConfigMap, the input of `cargo xtask
/// codegen` and a file Tilt watches, all of which name it there.
pub const DEFAULT_TOPOLOGY: &str = include_str!("../../mock-service/topology.yaml");

/// The routes whose behaviour the topology describes. The other endpoints (`/health`,
/// `/api/slow`, `/api/error`, ...) behave the same in every service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    /// `GET /api/data`
    Data,
    /// `POST /api/action`
    Action,
}

impl Route {
    pub const ALL: [Route; 2] = [Route::Data, Route::Action];

    pub fn method(self) -> http::Method {
        match self {
            Route::Data => http::Method::GET,
            Route::Action => http::Method::POST,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Route::Data => crate::endpoints::DATA,
            Route::Action => crate::endpoints::ACTION,
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method(), self.path())
    }
}

impl FromStr for Route {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        let mut words = text.split_whitespace();
        let route = match (words.next(), words.next()) {
            (Some(method), Some(path)) => *Route::ALL
                .iter()
                .find(|route| {
                    route.path() == path && method.eq_ignore_ascii_case(route.method().as_str())
                })
                .ok_or(())?,
            _ => return Err(()),
        };
        if words.next().is_some() {
            Err(())
        } else {
            Ok(route)
        }
    }
}

/// A validated topology.
#[derive(Clone, Debug)]
pub struct Topology {
    /// In file order.
    services: Vec<Service>,
}

#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    /// How many pods its Deployment runs in the cluster (`replicas:`, default 1); the
    /// local mesh runs one process per service whatever it says.
    pub replicas: u32,
    data: RoutePlan,
    action: RoutePlan,
}

/// What one route of one service does.
#[derive(Clone, Debug, Default)]
pub struct RoutePlan {
    /// Simulated work before the calls, in milliseconds, drawn uniformly.
    pub work_ms: Option<RangeInclusive<u64>>,
    /// The `event_type` counted in `business_events_total`, if any.
    pub event: Option<String>,
    /// Made one after another, in order.
    pub calls: Vec<Call>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub to: String,
    pub route: Route,
    pub probability: f64,
    /// Where the call is written, for error messages.
    pub line: Option<usize>,
}

/// An invalid topology: where, what, and how to fix it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}\n  fix: {fix}", location(file, *line))]
pub struct TopologyError {
    pub file: String,
    pub line: Option<usize>,
    pub problem: String,
    pub fix: String,
}

/// `file:line`, or the file alone when the line is not known.
fn location(file: &str, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{file}:{line}"),
        None => file.to_owned(),
    }
}

/// Why [`Topology::load`] has no topology: the file cannot be read, or it is invalid.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the topology file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] TopologyError),
}

impl Topology {
    /// The built-in graph (`services/mock-service/topology.yaml`, compiled in).
    pub fn built_in() -> Topology {
        Topology::parse("topology.yaml (built in)", DEFAULT_TOPOLOGY)
            .unwrap_or_else(|error| panic!("the built-in topology is invalid: {error}"))
    }

    /// The topology in `file`, parsed and validated; with no file, the built-in graph.
    /// The one way the services and the tools read "a file, or the built-in graph".
    pub fn load(file: Option<&Path>) -> Result<Topology, LoadError> {
        let Some(path) = file else {
            return Ok(Topology::built_in());
        };
        let yaml = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Topology::parse(&path.display().to_string(), &yaml)?)
    }

    /// Parses and validates `yaml`; `file` names it in errors.
    pub fn parse(file: &str, yaml: &str) -> Result<Topology, TopologyError> {
        let raw: RawTopology = marked_yaml::from_yaml(0, yaml).map_err(|error| TopologyError {
            file: file.to_owned(),
            line: match &error {
                marked_yaml::FromYamlError::FromNode(error) => error.start_mark().map(|m| m.line()),
                marked_yaml::FromYamlError::ParseYaml(_) => None,
            },
            problem: error.to_string(),
            fix: "correct the file at that point; the format is described at the top of \
                  services/mock-service/topology.yaml"
                .to_owned(),
        })?;
        Validator { file }.validate(raw)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|service| service.name == name)
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.iter()
    }

    pub fn service_names(&self) -> Vec<&str> {
        self.services
            .iter()
            .map(|service| service.name.as_str())
            .collect()
    }
}

impl Service {
    pub fn plan(&self, route: Route) -> &RoutePlan {
        match route {
            Route::Data => &self.data,
            Route::Action => &self.action,
        }
    }

    /// Every service this one may call, without repeats, in call order.
    pub fn dependencies(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for call in self.data.calls.iter().chain(&self.action.calls) {
            if !names.contains(&call.to.as_str()) {
                names.push(&call.to);
            }
        }
        names
    }
}

/// The most pods a service may ask for: the demo runs on a small kind cluster.
pub const MAX_REPLICAS: u32 = 10;

// The file as written, with the position of everything an error may need to point at.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    services: HashMap<Spanned<String>, RawService>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawService {
    #[serde(default)]
    replicas: Option<Spanned<u32>>,
    #[serde(default)]
    routes: HashMap<Spanned<String>, RawRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(default)]
    work_ms: Option<Spanned<Vec<u64>>>,
    #[serde(default)]
    event: Option<Spanned<String>>,
    #[serde(default)]
    calls: Vec<RawCall>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCall {
    to: Spanned<String>,
    #[serde(default)]
    route: Option<Spanned<String>>,
    #[serde(default)]
    probability: Option<Spanned<f64>>,
}

fn line_of<T>(spanned: &Spanned<T>) -> Option<usize> {
    spanned.span().start().map(marked_yaml::Marker::line)
}

struct Validator<'a> {
    file: &'a str,
}

impl Validator<'_> {
    fn error(&self, line: Option<usize>, problem: String, fix: impl Into<String>) -> TopologyError {
        TopologyError {
            file: self.file.to_owned(),
            line,
            problem,
            fix: fix.into(),
        }
    }

    fn validate(&self, raw: RawTopology) -> Result<Topology, TopologyError> {
        let mut entries: Vec<_> = raw.services.into_iter().collect();
        entries.sort_by_key(|(name, _)| line_of(name));
        if entries.is_empty() {
            return Err(self.error(
                None,
                "`services:` is empty".into(),
                "declare at least one service",
            ));
        }
        let names: Vec<String> = entries
            .iter()
            .map(|(name, _)| name.as_str().to_owned())
            .collect();

        let mut services = Vec::with_capacity(entries.len());
        for (name, raw_service) in entries {
            services.push(self.service(&name, raw_service, &names)?);
        }
        let topology = Topology { services };
        self.reject_cycles(&topology)?;
        Ok(topology)
    }

    fn service(
        &self,
        name: &Spanned<String>,
        raw: RawService,
        names: &[String],
    ) -> Result<Service, TopologyError> {
        if !is_dns_label(name) {
            return Err(self.error(
                line_of(name),
                format!("`{}` is not a valid service name", name.as_str()),
                "use lowercase letters, digits and `-` (it is also a Kubernetes Service name), \
                 e.g. `billing-service`",
            ));
        }
        let mut service = Service {
            name: name.as_str().to_owned(),
            replicas: self.replicas(name, raw.replicas.as_ref())?,
            data: RoutePlan::default(),
            action: RoutePlan::default(),
        };
        for (route_key, raw_route) in raw.routes {
            let route: Route = route_key.parse().map_err(|()| {
                self.error(
                    line_of(&route_key),
                    format!(
                        "`{}` is not a route the topology can describe",
                        route_key.as_str()
                    ),
                    "use `GET /api/data` or `POST /api/action`",
                )
            })?;
            let plan = self.route(&service.name, route, raw_route, names)?;
            match route {
                Route::Data => service.data = plan,
                Route::Action => service.action = plan,
            }
        }
        if service.action.event.is_none() {
            service.action.event = Some("action".to_owned());
        }
        Ok(service)
    }

    fn replicas(
        &self,
        name: &Spanned<String>,
        replicas: Option<&Spanned<u32>>,
    ) -> Result<u32, TopologyError> {
        match replicas {
            None => Ok(1),
            Some(count) if (1..=MAX_REPLICAS).contains(&**count) => Ok(**count),
            Some(count) => Err(self.error(
                line_of(count),
                format!(
                    "`replicas` of {} is {}, not between 1 and {MAX_REPLICAS}",
                    name.as_str(),
                    **count
                ),
                "write how many pods its Deployment runs, e.g. `replicas: 2`, or remove the \
                 key for one",
            )),
        }
    }

    fn route(
        &self,
        service: &str,
        route: Route,
        raw: RawRoute,
        names: &[String],
    ) -> Result<RoutePlan, TopologyError> {
        let work_ms = match raw.work_ms {
            None => None,
            Some(work) => match work.as_slice() {
                &[min, max] if min <= max && max <= 60_000 => Some(min..=max),
                _ => {
                    return Err(self.error(
                        line_of(&work),
                        format!("`work_ms` of {service} {route} must be `[min, max]` milliseconds"),
                        "write two whole numbers, the first not above the second, at most 60000, \
                         e.g. `work_ms: [2, 8]`",
                    ));
                }
            },
        };
        let event = match raw.event {
            Some(event) if event.trim().is_empty() => {
                return Err(self.error(
                    line_of(&event),
                    format!("`event` of {service} {route} is empty"),
                    "name the business event, e.g. `event: order_created`, or remove the key",
                ));
            }
            event => event.map(|event| event.as_str().to_owned()),
        };
        let calls = raw
            .calls
            .into_iter()
            .map(|call| self.call(service, route, &call, names))
            .collect::<Result<_, _>>()?;
        Ok(RoutePlan {
            work_ms,
            event,
            calls,
        })
    }

    fn call(
        &self,
        service: &str,
        caller_route: Route,
        raw: &RawCall,
        names: &[String],
    ) -> Result<Call, TopologyError> {
        let to = raw.to.as_str();
        if !names.iter().any(|name| name == to) {
            return Err(self.error(
                line_of(&raw.to),
                format!(
                    "{service} {caller_route} calls `{to}`, which is not a service of this topology"
                ),
                format!(
                    "call one of {}, or add `{to}:` under `services:`",
                    names.join(", ")
                ),
            ));
        }
        let route = match &raw.route {
            None => caller_route,
            Some(route) => route.parse().map_err(|()| {
                self.error(
                    line_of(route),
                    format!(
                        "{service} calls {to} on `{}`, which is not a route",
                        route.as_str()
                    ),
                    "use `route: GET /api/data` or `route: POST /api/action`",
                )
            })?,
        };
        let probability = match &raw.probability {
            None => 1.0,
            Some(p) if p.is_finite() && (0.0..=1.0).contains(&**p) => **p,
            Some(p) => {
                return Err(self.error(
                    line_of(p),
                    format!(
                        "probability {} of the call from {service} to {to} is not between 0 and 1",
                        **p
                    ),
                    "write a fraction, e.g. `probability: 0.7` for 70% of requests",
                ));
            }
        };
        Ok(Call {
            to: to.to_owned(),
            route,
            probability,
            line: line_of(&raw.to),
        })
    }

    /// Calls must form a DAG over (service, route): a cycle would make every request
    /// recurse until it times out.
    fn reject_cycles(&self, topology: &Topology) -> Result<(), TopologyError> {
        let mut finished = Vec::new();
        for service in topology.services() {
            for route in Route::ALL {
                let mut path = Vec::new();
                if let Some(cycle) =
                    find_cycle(topology, (&service.name, route), &mut path, &mut finished)
                {
                    let steps: Vec<String> = cycle
                        .iter()
                        .map(|(name, route, _)| format!("{name} {route}"))
                        .collect();
                    let (caller, caller_route, closing) = cycle[cycle.len() - 1];
                    let target = format!("{} {}", closing.to, closing.route);
                    return Err(self.error(
                        closing.line,
                        format!("calls form a cycle: {} -> {target}", steps.join(" -> ")),
                        format!(
                            "remove the call from {caller} {caller_route} to {target}: every \
                             request would go round the loop until it times out"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One step of a call path: the caller, its route, and the call it makes.
type Step<'t> = (&'t str, Route, &'t Call);

/// Depth-first search from `node`; returns the calls that lead back to a node already on
/// `path`. `finished` holds the nodes known to reach no cycle.
fn find_cycle<'t>(
    topology: &'t Topology,
    node: (&'t str, Route),
    path: &mut Vec<Step<'t>>,
    finished: &mut Vec<(&'t str, Route)>,
) -> Option<Vec<Step<'t>>> {
    if finished.contains(&node) {
        return None;
    }
    if let Some(start) = path
        .iter()
        .position(|(name, route, _)| (*name, *route) == node)
    {
        return Some(path[start..].to_vec());
    }
    let service = topology.service(node.0)?;
    for call in &service.plan(node.1).calls {
        path.push((node.0, node.1, call));
        if let Some(cycle) = find_cycle(topology, (&call.to, call.route), path, finished) {
            return Some(cycle);
        }
        path.pop();
    }
    finished.push(node);
    None
}

/// The environment variable that gives a service the base URL of its dependency
/// `service`: `product-service` -> `PRODUCT_SERVICE_URL` (default `http://<service>`).
pub fn url_variable(service: &str) -> String {
    format!("{}_URL", service.to_ascii_uppercase().replace('-', "_"))
}

/// A Kubernetes Service name (RFC 1123 label): it also names the `<NAME>_URL` variable.
fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(topology: &Topology, service: &str, route: Route) -> Vec<(String, Route, f64)> {
        let plan = topology
            .service(service)
            .expect("service exists")
            .plan(route);
        plan.calls
            .iter()
            .map(|c| (c.to.clone(), c.route, c.probability))
            .collect()
    }

    fn call(to: &str, route: Route, probability: f64) -> (String, Route, f64) {
        (to.to_owned(), route, probability)
    }

    #[test]
    fn the_built_in_topology_is_the_seven_service_graph() {
        let topology = Topology::built_in();
        assert_eq!(
            topology.service_names(),
            [
                "gateway-service",
                "order-service",
                "user-service",
                "product-service",
                "inventory-service",
                "payment-service",
                "notification-service"
            ]
        );
        use Route::{Action, Data};
        assert_eq!(
            calls(&topology, "gateway-service", Data),
            [call("product-service", Data, 0.7)]
        );
        assert_eq!(
            calls(&topology, "gateway-service", Action),
            [
                call("order-service", Action, 1.0),
                call("user-service", Data, 1.0),
                call("product-service", Data, 1.0)
            ]
        );
        assert_eq!(
            calls(&topology, "order-service", Action),
            [
                call("user-service", Data, 1.0),
                call("product-service", Data, 1.0),
                call("payment-service", Action, 1.0)
            ]
        );
        assert_eq!(
            calls(&topology, "product-service", Data),
            [call("inventory-service", Data, 1.0)]
        );
        assert_eq!(
            calls(&topology, "payment-service", Action),
            [call("notification-service", Action, 1.0)]
        );
        for leaf in ["user-service", "inventory-service", "notification-service"] {
            assert!(
                topology
                    .service(leaf)
                    .expect("exists")
                    .dependencies()
                    .is_empty(),
                "{leaf}"
            );
        }
        let gateway = topology.service("gateway-service").expect("exists");
        assert_eq!(gateway.plan(Action).event.as_deref(), Some("action"));
        // Two pods each in the cluster, but the last of the chain: 13 in all.
        let replicas: Vec<(&str, u32)> = topology
            .services()
            .map(|service| (service.name.as_str(), service.replicas))
            .collect();
        assert_eq!(
            replicas,
            [
                ("gateway-service", 2),
                ("order-service", 2),
                ("user-service", 2),
                ("product-service", 2),
                ("inventory-service", 2),
                ("payment-service", 2),
                ("notification-service", 1)
            ]
        );
    }

    #[test]
    fn replicas_default_to_one_and_must_be_a_small_positive_count() {
        let topology = Topology::parse("t.yaml", "services:\n  a: {}\n  b:\n    replicas: 3\n")
            .expect("valid");
        assert_eq!(topology.service("a").expect("a").replicas, 1);
        assert_eq!(topology.service("b").expect("b").replicas, 3);
        for bad in ["0", "11"] {
            let error = parse_error(&format!("services:\n  a:\n    replicas: {bad}\n"));
            assert_eq!(error.line, Some(3), "{bad}: {error}");
            assert!(error.problem.contains("`replicas` of a"), "{error}");
            assert!(error.fix.contains("replicas: 2"), "{error}");
        }
        let negative = parse_error("services:\n  a:\n    replicas: -1\n");
        assert_eq!(negative.line, Some(3), "{negative}");
    }

    fn parse_error(yaml: &str) -> TopologyError {
        Topology::parse("t.yaml", yaml).expect_err("the topology must be rejected")
    }

    #[test]
    fn an_unknown_service_names_the_line_and_the_choices() {
        let error = parse_error(
            "services:\n  a:\n    routes:\n      GET /api/data:\n        calls:\n          - to: b\n",
        );
        assert_eq!(error.line, Some(6));
        assert!(error.problem.contains("`b`"), "{error}");
        assert!(
            error.fix.contains("call one of a") && error.fix.contains("add `b:`"),
            "{error}"
        );
        assert!(error.to_string().starts_with("t.yaml:6: "), "{error}");
    }

    #[test]
    fn a_probability_outside_zero_to_one_is_rejected() {
        for bad in ["1.5", "-0.1", "2"] {
            let error = parse_error(&format!(
                "services:\n  a:\n    routes:\n      GET /api/data:\n        calls:\n          - to: b\n            probability: {bad}\n  b: {{}}\n"
            ));
            assert_eq!(error.line, Some(7), "{bad}: {error}");
            assert!(error.fix.contains("probability: 0.7"), "{error}");
        }
    }

    #[test]
    fn a_cycle_names_the_closing_call() {
        let error = parse_error(
            "services:\n  a:\n    routes:\n      GET /api/data:\n        calls:\n          - to: b\n  b:\n    routes:\n      GET /api/data:\n        calls:\n          - to: c\n  c:\n    routes:\n      GET /api/data:\n        calls:\n          - to: a\n",
        );
        assert_eq!(error.line, Some(16), "{error}");
        assert!(
            error.problem.contains(
                "a GET /api/data -> b GET /api/data -> c GET /api/data -> a GET /api/data"
            ),
            "{error}"
        );
        assert!(
            error.fix.contains("remove the call from c GET /api/data"),
            "{error}"
        );
    }

    #[test]
    fn calling_oneself_is_a_cycle_but_another_route_is_not() {
        let selfcall = "services:\n  a:\n    routes:\n      GET /api/data:\n        calls:\n          - to: a\n";
        assert!(parse_error(selfcall).problem.contains("cycle"));
        let other_route = "services:\n  a:\n    routes:\n      GET /api/data:\n        calls:\n          - to: a\n            route: POST /api/action\n";
        assert!(Topology::parse("t.yaml", other_route).is_ok());
    }

    #[test]
    fn unknown_routes_fields_and_names_are_rejected_with_a_fix() {
        let route = parse_error("services:\n  a:\n    routes:\n      GET /api/other: {}\n");
        assert_eq!(route.line, Some(4));
        assert!(route.fix.contains("POST /api/action"), "{route}");

        let field = parse_error("services:\n  a:\n    routs: {}\n");
        assert_eq!(field.line, Some(2), "{field}");
        assert!(field.problem.contains("routs"), "{field}");

        let name = parse_error("services:\n  Billing_Service: {}\n");
        assert_eq!(name.line, Some(2));
        assert!(name.fix.contains("lowercase"), "{name}");

        let work = parse_error(
            "services:\n  a:\n    routes:\n      GET /api/data:\n        work_ms: [9, 3]\n",
        );
        assert_eq!(work.line, Some(5), "{work}");

        let empty = parse_error("services: {}\n");
        assert!(empty.problem.contains("empty"), "{empty}");
    }

    #[test]
    fn load_reads_a_file_or_takes_the_built_in_graph() {
        let built_in = Topology::load(None).expect("the built-in graph");
        assert_eq!(
            built_in.service_names(),
            Topology::built_in().service_names()
        );

        let dir = std::env::temp_dir().join(format!("contract-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let good = dir.join("good.yaml");
        std::fs::write(&good, "services:\n  solo: {}\n").expect("written");
        let solo = Topology::load(Some(&good)).expect("a valid file");
        assert_eq!(solo.service_names(), ["solo"]);

        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "services:\n  a:\n    replicas: 0\n").expect("written");
        match Topology::load(Some(&bad)) {
            Err(LoadError::Invalid(error)) => {
                assert_eq!(error.file, bad.display().to_string());
                assert_eq!(error.line, Some(3), "{error}");
            }
            other => panic!("an invalid file must be LoadError::Invalid: {other:?}"),
        }

        let missing = dir.join("missing.yaml");
        let error = Topology::load(Some(&missing)).expect_err("no such file");
        assert!(matches!(error, LoadError::Read { .. }), "{error:?}");
        assert!(
            error.to_string().contains(&missing.display().to_string()),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).expect("cleaned up");
    }

    #[test]
    fn a_user_can_add_a_service_without_touching_rust() {
        let yaml = DEFAULT_TOPOLOGY.replace(
            "  notification-service:\n",
            "  audit-service:\n    routes:\n      POST /api/action:\n        event: audited\n\n  notification-service:\n",
        ).replace(
            "        event: notification_sent\n",
            "        event: notification_sent\n        calls:\n          - to: audit-service\n",
        );
        let topology = Topology::parse("custom.yaml", &yaml).expect("valid");
        assert_eq!(topology.service_names().len(), 8);
        assert_eq!(
            calls(&topology, "notification-service", Route::Action),
            [call("audit-service", Route::Action, 1.0)]
        );
    }
}
