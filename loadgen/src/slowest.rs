//! The slowest answered requests of a run, with the trace id each answer carried: the
//! way from "p99 is bad" to the request behind it.

use std::time::Duration;

use crate::endpoint::Endpoint;

/// One answered request, with the trace id of its answer's `x-trace-id` header (`None`:
/// the answer carried none, so the target does not trace it).
#[derive(Clone, Debug, PartialEq)]
pub struct SlowRequest {
    pub endpoint: Endpoint,
    pub latency: Duration,
    pub status: u16,
    pub trace_id: Option<String>,
}

/// The `capacity` slowest requests offered, slowest first. Each worker keeps its own;
/// merging the workers' is exact, since the run's slowest are each among their worker's.
#[derive(Clone, Debug)]
pub(crate) struct Slowest {
    capacity: usize,
    requests: Vec<SlowRequest>,
}

impl Slowest {
    pub fn new(capacity: usize) -> Slowest {
        Slowest {
            capacity,
            requests: Vec::new(),
        }
    }

    /// Whether a request this slow would be kept: the caller reads its trace id only then.
    pub fn admits(&self, latency: Duration) -> bool {
        if self.requests.len() < self.capacity {
            return true;
        }
        self.requests
            .last()
            .is_some_and(|fastest_kept| latency > fastest_kept.latency)
    }

    pub fn offer(&mut self, request: SlowRequest) {
        if !self.admits(request.latency) {
            return;
        }
        let at = self
            .requests
            .partition_point(|kept| kept.latency >= request.latency);
        self.requests.insert(at, request);
        self.requests.truncate(self.capacity);
    }

    pub fn merge(&mut self, other: &Slowest) {
        for request in &other.requests {
            self.offer(request.clone());
        }
    }

    pub fn into_vec(self) -> Vec<SlowRequest> {
        self.requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(millis: u64) -> SlowRequest {
        SlowRequest {
            endpoint: Endpoint::Data,
            latency: Duration::from_millis(millis),
            status: 200,
            trace_id: None,
        }
    }

    fn latencies(slowest: Slowest) -> Vec<u64> {
        slowest
            .into_vec()
            .iter()
            .map(|r| r.latency.as_millis() as u64)
            .collect()
    }

    #[test]
    fn keeps_the_slowest_slowest_first() {
        let mut slowest = Slowest::new(3);
        for millis in [5, 1, 9, 3, 7, 2] {
            slowest.offer(request(millis));
        }
        assert!(!slowest.admits(Duration::from_millis(5)));
        assert!(slowest.admits(Duration::from_millis(6)));
        assert_eq!(latencies(slowest), [9, 7, 5]);
    }

    #[test]
    fn merging_the_workers_tops_is_exact() {
        let all: Vec<u64> = (0..200).map(|i| (i * 7919) % 1000).collect();
        let mut workers: Vec<Slowest> = (0..4).map(|_| Slowest::new(5)).collect();
        for (i, millis) in all.iter().enumerate() {
            workers[i % 4].offer(request(*millis));
        }
        let mut merged = Slowest::new(5);
        for worker in &workers {
            merged.merge(worker);
        }
        let mut expected = all;
        expected.sort_unstable_by(|a, b| b.cmp(a));
        expected.truncate(5);
        assert_eq!(latencies(merged), expected);
    }

    #[test]
    fn zero_keeps_nothing() {
        let mut slowest = Slowest::new(0);
        assert!(!slowest.admits(Duration::from_secs(60)));
        slowest.offer(request(60_000));
        assert!(slowest.into_vec().is_empty());
    }
}
