//! mock-service: one binary that plays any service of the mesh.
//! `SERVICE_NAME` picks the role; the topology says whom it calls.

pub mod app;
pub mod config;
pub mod faults;
pub mod server;

pub use app::{AppState, app};

#[cfg(test)]
mod tests {
    /// The contract promises the trace-id header that telemetry writes; telemetry keeps
    /// its own constant (it does not depend on the contract), so the two must agree.
    #[test]
    fn the_contracts_trace_id_header_is_the_one_telemetry_writes() {
        assert_eq!(contract::TRACE_ID_HEADER, telemetry::TRACE_ID_HEADER);
    }
}
