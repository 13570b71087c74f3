//! Incidents that prove themselves: the playground's demo scenarios as one table
//! ([`scenarios`]: each one's traffic preset, faults, length, what to watch, and what must
//! be seen in each phase). `cargo xtask scenario` is its command line; Tilt's scenario
//! buttons are generated from the same table (`cargo xtask codegen`). Incident drills
//! ([`drill`]): a hidden fault drawn from the topology, the answer, its score, the reveal.

pub mod drill;
pub mod scenarios;

pub use scenarios::{Expect, Expectation, Fault, Phase, Rates, Scenario};
