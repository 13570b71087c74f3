//! Every endpoint a service serves, named once. mock-service's router and fault
//! middleware, the topology, loadgen and xtask (smoke test, benchmarks) all take the paths
//! from here.

use http::Method;

/// Liveness: 200 while the process runs.
pub const HEALTH: &str = "/health";
/// Readiness: 200, or 503 once shutdown has begun.
pub const READY: &str = "/ready";
/// Prometheus's scrape.
pub const METRICS: &str = "/metrics";
/// Simulated work, then the topology's calls.
pub const DATA: &str = "/api/data";
/// The topology's calls, counted as a business event.
pub const ACTION: &str = "/api/action";
/// Answers after 0.5 to 2 s.
pub const SLOW: &str = "/api/slow";
/// Always 500, by design.
pub const ERROR: &str = "/api/error";

/// Every endpoint with its method, in the order a 404 lists them.
pub const ALL: [(Method, &str); 7] = [
    (Method::GET, HEALTH),
    (Method::GET, READY),
    (Method::GET, METRICS),
    (Method::GET, DATA),
    (Method::POST, ACTION),
    (Method::GET, SLOW),
    (Method::GET, ERROR),
];

/// The application's routes: what a fault can target, and what traces show.
pub const API: [&str; 4] = [DATA, ACTION, SLOW, ERROR];

/// Probes and scrapes: never faulted, so they keep telling the truth during a demo.
pub const OPERATIONAL: [&str; 3] = [HEALTH, READY, METRICS];
