//! xtask's integration tests, one binary (linked once) with a module per area. Tests
//! that need a tool this machine may lack print `SKIPPED:` and the reason, except under
//! `CI`, where they fail (`support::require`).

mod alerting;
mod bench;
mod clean;
mod cli;
mod cluster_plans;
mod codegen;
mod dependencies;
mod docs;
mod drill;
mod grafana;
mod image;
mod kubectl;
mod local_mesh;
mod local_ports;
mod local_record;
mod local_topology;
mod manifests;
mod nix_flake;
mod prometheus;
mod scenario_verify;
mod service_containers;
mod support;
mod tidy;
mod tiltfile;
mod trace_ids;
mod traffic;
