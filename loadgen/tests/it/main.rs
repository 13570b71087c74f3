//! loadgen's integration tests, one binary with a module per area, each against an
//! in-process axum server on a loopback port.

mod engine;
mod open_model;
mod server;
mod slowest;
