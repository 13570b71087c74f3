//! mock-service's integration tests, one binary with a module per area: the routers
//! driven with `oneshot` (handlers, faults), the mesh in one process, and the real
//! binary as seven processes.

mod faults;
mod handlers;
mod mesh;
mod processes;
mod support;
