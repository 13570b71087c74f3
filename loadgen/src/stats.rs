//! What a run counted, per endpoint: requests, how they ended, latency.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;

use crate::endpoint::Endpoint;

/// One endpoint's results. Latencies are of answered requests, in microseconds, from the
/// request's start (open model: from its scheduled start, so a stall shows as latency
/// instead of hiding).
///
/// Every request the run meant to send is in exactly one count:
/// `scheduled() = requests + not_sent` and
/// `requests = successes + expected_errors + failures + in_flight`.
#[derive(Clone, Debug)]
pub struct EndpointStats {
    /// Requests sent: answered, failed, or still in flight when the run stopped.
    pub requests: u64,
    pub successes: u64,
    /// Answers that are errors by design (`/api/error`'s 500).
    pub expected_errors: u64,
    /// Everything else: unexpected status codes, timeouts, broken connections.
    pub failures: u64,
    /// Sent, and not answered yet when the run stopped (the duration ran out, Ctrl+C).
    pub in_flight: u64,
    /// Open model: scheduled but never sent, because no connection was free within the
    /// plan's `max_lag` of the scheduled time, or the run stopped while it waited.
    pub not_sent: u64,
    /// The time from sending to the answer, summed over the answered requests: without
    /// the wait for a free connection, so `service_time / answered` is what one request
    /// holds a connection for (Little's law sizes the connections from it).
    pub service_time: Duration,
    pub latency_us: Histogram<u64>,
    /// How many failures of each kind (`HTTP 503`, `no answer within 10 s`, ...).
    pub failure_reasons: BTreeMap<String, u64>,
}

/// Every endpoint's results, in [`Endpoint::ALL`] order.
#[derive(Clone, Debug)]
pub struct Stats {
    pub endpoints: [EndpointStats; Endpoint::ALL.len()],
}

/// Latencies from 1 µs to two minutes, to three significant figures.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("3 significant figures"))
}

impl EndpointStats {
    pub(crate) fn new() -> EndpointStats {
        EndpointStats {
            requests: 0,
            successes: 0,
            expected_errors: 0,
            failures: 0,
            in_flight: 0,
            not_sent: 0,
            service_time: Duration::ZERO,
            latency_us: new_histogram(),
            failure_reasons: BTreeMap::new(),
        }
    }

    pub(crate) fn fail(&mut self, reason: String) {
        self.failures += 1;
        *self.failure_reasons.entry(reason).or_default() += 1;
    }

    /// Requests the run meant to send: sent or not.
    pub fn scheduled(&self) -> u64 {
        self.requests + self.not_sent
    }

    /// Requests that got an answer or failed (timeouts and broken connections included).
    pub fn answered(&self) -> u64 {
        self.successes + self.expected_errors + self.failures
    }

    pub fn merge(&mut self, other: &EndpointStats) {
        self.requests += other.requests;
        self.successes += other.successes;
        self.expected_errors += other.expected_errors;
        self.failures += other.failures;
        self.in_flight += other.in_flight;
        self.not_sent += other.not_sent;
        self.service_time += other.service_time;
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (reason, count) in &other.failure_reasons {
            *self.failure_reasons.entry(reason.clone()).or_default() += count;
        }
    }
}

impl Stats {
    pub(crate) fn new() -> Stats {
        Stats {
            endpoints: std::array::from_fn(|_| EndpointStats::new()),
        }
    }

    pub fn endpoint(&self, endpoint: Endpoint) -> &EndpointStats {
        &self.endpoints[endpoint.index()]
    }

    pub(crate) fn endpoint_mut(&mut self, endpoint: Endpoint) -> &mut EndpointStats {
        &mut self.endpoints[endpoint.index()]
    }

    /// All endpoints together.
    pub fn total(&self) -> EndpointStats {
        let mut total = EndpointStats::new();
        for endpoint in &self.endpoints {
            total.merge(endpoint);
        }
        total
    }

    pub(crate) fn merge(&mut self, other: &Stats) {
        for (mine, theirs) in self.endpoints.iter_mut().zip(&other.endpoints) {
            mine.merge(theirs);
        }
    }
}
