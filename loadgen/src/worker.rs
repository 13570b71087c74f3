//! One connection's worker, a virtual user (closed model) or a server of the schedule
//! (open model), and what every worker recorded: merged once a second for the progress
//! line and at the end for the report.

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use hdrhistogram::Histogram;
use tokio::{sync::watch, time::Instant};

use crate::{
    client::{Answer, Connection, Reachable, RequestError},
    endpoint::Endpoint,
    engine::{Budget, halted},
    mix::Mix,
    schedule::{Job, Pool},
    slowest::{SlowRequest, Slowest},
    stats::{Stats, new_histogram},
    think::Think,
};

/// What one worker has recorded; locked by its worker per request and by the progress
/// loop once a second, so never contended.
pub(crate) struct WorkerStats {
    total: Stats,
    slowest: Slowest,
    recent_latency_us: Histogram<u64>,
    recent_answers: u64,
    recent_connect_error: Option<String>,
    /// The request sent and not answered yet: at the end of the run, in flight.
    in_flight: Option<Endpoint>,
}

impl WorkerStats {
    fn new(slowest: usize) -> WorkerStats {
        WorkerStats {
            total: Stats::new(),
            slowest: Slowest::new(slowest),
            recent_latency_us: new_histogram(),
            recent_answers: 0,
            recent_connect_error: None,
            in_flight: None,
        }
    }

    /// An answer or a failure; `latency` counts from the request's (scheduled) start,
    /// `service` from the moment it was sent.
    fn record(
        &mut self,
        endpoint: Endpoint,
        result: &Result<Answer, RequestError>,
        latency: Duration,
        service: Duration,
    ) {
        self.in_flight = None;
        let stats = self.total.endpoint_mut(endpoint);
        stats.requests += 1;
        stats.service_time += service;
        let answer = match result {
            Ok(answer) => answer,
            Err(error) => {
                stats.fail(error.to_string());
                if let RequestError::Connect(cause) = error {
                    self.recent_connect_error = Some(cause.clone());
                }
                return;
            }
        };
        let micros = (latency.as_micros() as u64).max(1);
        stats.latency_us.saturating_record(micros);
        self.recent_latency_us.saturating_record(micros);
        self.recent_answers += 1;
        let status = answer.status;
        if (200..300).contains(&status) {
            stats.successes += 1;
        } else if endpoint.expects_error(status) {
            stats.expected_errors += 1;
        } else {
            stats.fail(format!("HTTP {status}"));
        }
        if self.slowest.admits(latency) {
            self.slowest.offer(SlowRequest {
                endpoint,
                latency,
                status,
                trace_id: answer.trace_id(),
            });
        }
    }
}

fn lock(worker: &Mutex<WorkerStats>) -> MutexGuard<'_, WorkerStats> {
    // A worker that panicked leaves its counts as they were: still worth reporting.
    worker.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The workers' merged state at a tick.
pub(crate) struct Snapshot {
    /// Latencies of the answers since the last tick.
    pub recent: Histogram<u64>,
    /// Requests answered or failed so far, and failures so far.
    pub requests: u64,
    pub failures: u64,
    /// Answers since the last tick.
    pub answers: u64,
    /// A connection error since the last tick, if any.
    pub connect_error: Option<String>,
}

/// Every worker's record; the open model's grows as connections open.
pub(crate) struct Registry {
    workers: Mutex<Vec<Arc<Mutex<WorkerStats>>>>,
    slowest: usize,
}

impl Registry {
    pub fn new(slowest: usize) -> Registry {
        Registry {
            workers: Mutex::new(Vec::new()),
            slowest,
        }
    }

    fn workers(&self) -> Vec<Arc<Mutex<WorkerStats>>> {
        self.workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A worker on a new connection to `target`.
    pub fn worker(&self, target: &Reachable, halt: watch::Receiver<bool>) -> Worker {
        let stats = Arc::new(Mutex::new(WorkerStats::new(self.slowest)));
        self.workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&stats));
        Worker {
            connection: Connection::new(target),
            stats,
            halt,
        }
    }

    /// The connections opened so far.
    pub fn len(&self) -> usize {
        self.workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Merges what the workers saw since the last tick, and resets it.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot {
            recent: new_histogram(),
            requests: 0,
            failures: 0,
            answers: 0,
            connect_error: None,
        };
        for worker in self.workers() {
            let mut worker = lock(&worker);
            let _ = snapshot.recent.add(&worker.recent_latency_us);
            worker.recent_latency_us.reset();
            snapshot.answers += std::mem::take(&mut worker.recent_answers);
            if let Some(cause) = worker.recent_connect_error.take() {
                snapshot.connect_error = Some(cause);
            }
            for endpoint in &worker.total.endpoints {
                snapshot.requests += endpoint.requests;
                snapshot.failures += endpoint.failures;
            }
        }
        snapshot
    }

    /// Every worker's counts and slowest requests together, a request still unanswered
    /// counted as sent and in flight.
    pub fn merge(&self) -> (Stats, Slowest) {
        let mut stats = Stats::new();
        let mut slowest = Slowest::new(self.slowest);
        for worker in self.workers() {
            let worker = lock(&worker);
            stats.merge(&worker.total);
            slowest.merge(&worker.slowest);
            if let Some(endpoint) = worker.in_flight {
                let unanswered = stats.endpoint_mut(endpoint);
                unanswered.requests += 1;
                unanswered.in_flight += 1;
            }
        }
        (stats, slowest)
    }
}

/// One connection, and the record of what it sent.
pub(crate) struct Worker {
    connection: Connection,
    stats: Arc<Mutex<WorkerStats>>,
    halt: watch::Receiver<bool>,
}

impl Worker {
    /// Sends one request and records its answer, its latency counted from `start`;
    /// `None` when the run halted first (the request stays in flight).
    async fn send(
        &mut self,
        endpoint: Endpoint,
        start: Instant,
    ) -> Option<Result<Answer, RequestError>> {
        lock(&self.stats).in_flight = Some(endpoint);
        let sent = Instant::now();
        let result = tokio::select! {
            biased;
            () = halted(&mut self.halt) => return None,
            result = self.connection.send(endpoint) => result,
        };
        lock(&self.stats).record(endpoint, &result, start.elapsed(), sent.elapsed());
        Some(result)
    }

    /// Closed model: send, wait for the answer, think, repeat.
    pub async fn act_as_user(mut self, mix: Mix, think: Think, budget: Arc<Budget>) {
        while !*self.halt.borrow() && budget.claim() {
            let endpoint = mix.pick();
            let Some(result) = self.send(endpoint, Instant::now()).await else {
                return;
            };
            let pause = match result {
                // Do not spin on a refused connection.
                Err(RequestError::Connect(_)) => think.pick().max(Duration::from_millis(100)),
                _ => think.pick(),
            };
            if !pause.is_zero() {
                tokio::select! {
                    biased;
                    () = halted(&mut self.halt) => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    /// Open model: take the next scheduled request; latency counts from its schedule, so
    /// the wait for a free connection is part of it (no coordinated omission).
    pub async fn serve_schedule(mut self, pool: Arc<Pool>) {
        while let Some(Job {
            endpoint,
            scheduled,
        }) = pool.next(&mut self.halt).await
        {
            if self.send(endpoint, scheduled).await.is_none() {
                return;
            }
        }
    }
}
