//! mock-service: one binary that plays any service of the mesh (the guide's `app.py`).
//! `SERVICE_NAME` picks the role; the topology says whom it calls.

pub mod app;
pub mod config;
pub mod endpoints;
pub mod faults;
pub mod server;
pub mod topology;

pub use app::{AppState, app};
