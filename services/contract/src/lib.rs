//! The contract between the mesh's services and everything that talks to them (loadgen,
//! xtask, tests): the endpoint paths, the trace-id header, the admin API (its paths, port
//! and fault spec) and the topology. Nothing here runs a server, so a client depends on
//! this crate alone and never on the services' code (axum, tokio, jemalloc, OTLP).

pub mod admin;
pub mod endpoints;
pub mod topology;

/// The answer header that names a request's trace: `x-trace-id: <32 hex digits>`, on
/// every traced response.
///
/// The services' `telemetry` library keeps its own constant of the same value, and does
/// not depend on this crate: telemetry is the reusable part (any axum service can use
/// it), while this crate is the promise of this one mesh, so the dependency would point
/// the wrong way. mock-service, which uses both, has a test that they agree.
pub const TRACE_ID_HEADER: &str = "x-trace-id";
