//! mock-service's integration tests, one binary with a module per area: the routers
//! driven with `oneshot` (handlers, faults, `/metrics`'s formats), the mesh in one
//! process, and the real binary as processes (traces, exemplars, a real Prometheus).

mod exposition;
mod faults;
mod handlers;
mod mesh;
mod otlp;
mod processes;
mod support;
mod trace_links;
