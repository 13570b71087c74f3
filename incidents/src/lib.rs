//! Incidents that prove themselves: the playground's demo scenarios as one table
//! ([`scenarios`]: each one's traffic preset, faults, length, what to watch, and what must
//! be seen in each phase), and their verification ([`verify`]: baseline, fault and
//! recovery under a fixed rate, each expectation checked against the real tools, a
//! verdict table). `cargo xtask scenario` is its command line; Tilt's scenario buttons
//! are generated from the same table (`cargo xtask codegen`). Incident drills
//! ([`drill`]): a hidden fault drawn from the topology, the answer, its score, the reveal.

pub mod checks;
pub mod drill;
pub mod panels;
pub mod scenarios;
pub mod tools;
pub mod traces;
pub mod verify;

pub use checks::{Status, Tools, Verdict};
pub use scenarios::{Expect, Expectation, Fault, Phase, Rates, Scenario};
pub use traces::{Jaeger, LogSource, Span, TraceSource};
pub use verify::{Incident, Options, Phases, Verification, VerifyError, verify};
