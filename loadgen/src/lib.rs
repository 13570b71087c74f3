//! The playground's load generator: virtual users that pause between requests (the
//! closed model) or a fixed request rate whatever the answers do (the open model), over
//! the mesh's five request kinds in a chosen mix, each user on its own keep-alive
//! HTTP/1.1 connection. The open model opens connections on demand up to a cap, counts
//! latency from each request's scheduled time, and accounts for every request scheduled:
//! answered, in flight at the end, or not sent (no connection was free in time).
//!
//! It measures latency in HDR histograms, counts `/api/error`'s designed 500s apart from
//! real failures, checks service-level objectives, and keeps the slowest answered
//! requests with the trace id each answer carried in its [`contract::TRACE_ID_HEADER`], so a bad
//! p99 leads straight to the trace and the logs of the request behind it. The summary is
//! a table for people and a [`Report`] that serialises to JSON.
//!
//! `cargo xtask traffic` is its command line; this crate has no command line of its own.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use loadgen::{Mix, Plan, Report, Target, Think};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let target: Target = "http://localhost:30080".parse()?;
//! // Fails at once, in one sentence, when nothing answers `GET /health` there.
//! let reachable = loadgen::preflight(&target).await?;
//! let plan = Plan {
//!     mix: "data=3,action=1".parse::<Mix>()?,
//!     users: 8,
//!     think: Think::None,
//!     duration: Some(Duration::from_secs(10)),
//!     ..Plan::default()
//! };
//! let cancel = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! let outcome = loadgen::run(&reachable, &plan, cancel, |tick| {
//!     eprintln!("{:.0} requests/s", tick.interval_rps);
//! })
//! .await;
//! let report = Report::new(&outcome, Some(&"p99<500ms,errors<1%".parse()?));
//! print!("{}{}", report.table(), report.slowest_table());
//! println!("{}", serde_json::to_string_pretty(&report)?);
//! # Ok(())
//! # }
//! ```

mod client;
mod endpoint;
mod engine;
mod error;
mod mix;
mod plan;
mod report;
mod schedule;
mod slo;
mod slowest;
mod stats;
mod target;
mod think;
mod worker;

pub use self::{
    client::{PreflightError, Reachable, preflight},
    endpoint::Endpoint,
    engine::{Outcome, StopReason, Tick, run},
    error::ParseError,
    mix::Mix,
    plan::{Plan, Rate},
    report::{Report, Row, ScheduleRow, SloResult, SlowRequestRow},
    schedule::Schedule,
    slo::{Objective, Slo},
    slowest::SlowRequest,
    stats::{EndpointStats, Stats},
    target::Target,
    think::{Think, parse_duration},
};
