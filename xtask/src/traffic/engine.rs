//! The load engine: virtual users (closed model) or a fixed schedule (open model), each
//! worker with its own connection and its own statistics, merged once a second for the
//! progress line and at the end for the report.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use super::{
    client::{Connection, RequestError},
    options::{Endpoint, Mix, Target, Think},
};

/// What to send, how, and for how long.
#[derive(Clone, Debug)]
pub struct Plan {
    pub address: SocketAddr,
    pub target: Target,
    pub mix: Mix,
    /// Virtual users (closed model), or connections serving the schedule (open model).
    pub users: u32,
    pub think: Think,
    /// Open model: requests per second, started on schedule whatever the answers do.
    pub rate: Option<f64>,
    /// `None` runs until cancelled (or until `requests` are done).
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
}

/// Per-endpoint results. Latencies are in microseconds, from the request's start (open
/// model: from its scheduled start, so a stall shows as latency instead of hiding).
#[derive(Clone, Debug)]
pub struct EndpointStats {
    pub requests: u64,
    pub successes: u64,
    /// Answers that are errors by design (`/api/error`'s 500).
    pub expected_errors: u64,
    /// Everything else: unexpected status codes, timeouts, broken connections.
    pub failures: u64,
    pub latency_us: Histogram<u64>,
    pub failure_reasons: BTreeMap<String, u64>,
}

#[derive(Clone, Debug)]
pub struct Stats {
    pub endpoints: [EndpointStats; 5],
}

/// Once a second, for the progress line.
#[derive(Clone, Debug)]
pub struct Tick {
    pub elapsed: Duration,
    pub requests: u64,
    pub failures: u64,
    pub interval_rps: f64,
    pub interval_p95: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    /// The duration or the request count was reached.
    Finished,
    /// Ctrl+C (or the caller's cancellation).
    Cancelled,
    /// Nothing answered for three seconds; the last connection error.
    TargetDown(String),
}

pub struct Outcome {
    pub stats: Stats,
    pub elapsed: Duration,
    pub stop: StopReason,
}

const TARGET_DOWN_AFTER: u32 = 3;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("3 significant figures"))
}

impl EndpointStats {
    fn new() -> EndpointStats {
        EndpointStats {
            requests: 0,
            successes: 0,
            expected_errors: 0,
            failures: 0,
            latency_us: new_histogram(),
            failure_reasons: BTreeMap::new(),
        }
    }

    pub fn merge(&mut self, other: &EndpointStats) {
        self.requests += other.requests;
        self.successes += other.successes;
        self.expected_errors += other.expected_errors;
        self.failures += other.failures;
        let _ = self.latency_us.add(&other.latency_us);
        for (reason, count) in &other.failure_reasons {
            *self.failure_reasons.entry(reason.clone()).or_default() += count;
        }
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            endpoints: std::array::from_fn(|_| EndpointStats::new()),
        }
    }

    pub fn endpoint(&self, endpoint: Endpoint) -> &EndpointStats {
        &self.endpoints[endpoint.index()]
    }

    pub fn total(&self) -> EndpointStats {
        let mut total = EndpointStats::new();
        for endpoint in &self.endpoints {
            total.merge(endpoint);
        }
        total
    }

    fn merge(&mut self, other: &Stats) {
        for (mine, theirs) in self.endpoints.iter_mut().zip(&other.endpoints) {
            mine.merge(theirs);
        }
    }
}

/// What one worker has recorded; locked by its worker per request and by the progress
/// loop once a second, so never contended.
struct WorkerStats {
    total: Stats,
    recent_latency_us: Histogram<u64>,
    recent_answers: u64,
    recent_connect_error: Option<String>,
}

impl WorkerStats {
    fn record(
        &mut self,
        endpoint: Endpoint,
        result: &Result<u16, RequestError>,
        latency: Duration,
    ) {
        let stats = &mut self.total.endpoints[endpoint.index()];
        stats.requests += 1;
        match result {
            Ok(status) => {
                let micros = latency.as_micros() as u64;
                stats.latency_us.saturating_record(micros.max(1));
                self.recent_latency_us.saturating_record(micros.max(1));
                self.recent_answers += 1;
                if (200..300).contains(status) {
                    stats.successes += 1;
                } else if endpoint.expects_error(*status) {
                    stats.expected_errors += 1;
                } else {
                    stats.failures += 1;
                    *stats
                        .failure_reasons
                        .entry(format!("HTTP {status}"))
                        .or_default() += 1;
                }
            }
            Err(error) => {
                stats.failures += 1;
                *stats.failure_reasons.entry(error.to_string()).or_default() += 1;
                if let RequestError::Connect(cause) = error {
                    self.recent_connect_error = Some(cause.clone());
                }
            }
        }
    }
}

/// Runs `plan` until its duration or request count is reached, `cancel` turns true, or
/// the target stops answering. `on_tick` is called once a second.
pub async fn run(
    plan: Plan,
    mut cancel: watch::Receiver<bool>,
    mut on_tick: impl FnMut(&Tick),
) -> Outcome {
    let started = Instant::now();
    let (halt_tx, halt) = watch::channel(false);
    let issued = Arc::new(AtomicU64::new(0));
    let limit = plan.requests.unwrap_or(u64::MAX);
    let workers: Arc<Vec<Mutex<WorkerStats>>> = Arc::new(
        (0..plan.users.max(1))
            .map(|_| {
                Mutex::new(WorkerStats {
                    total: Stats::new(),
                    recent_latency_us: new_histogram(),
                    recent_answers: 0,
                    recent_connect_error: None,
                })
            })
            .collect(),
    );

    let jobs = plan.rate.map(|rate| {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(schedule(
            rate,
            plan.mix.clone(),
            tx,
            halt.clone(),
            Arc::clone(&issued),
            limit,
        ));
        Arc::new(tokio::sync::Mutex::new(rx))
    });

    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..workers.len() {
        let worker = Worker {
            connection: match Connection::new(plan.address, &plan.target) {
                Ok(connection) => connection,
                Err(_) => continue,
            },
            workers: Arc::clone(&workers),
            index,
            halt: halt.clone(),
        };
        match &jobs {
            Some(jobs) => tasks.spawn(worker.serve_schedule(Arc::clone(jobs))),
            None => tasks.spawn(worker.act_as_user(
                plan.mix.clone(),
                plan.think,
                Arc::clone(&issued),
                limit,
            )),
        };
    }

    let deadline = plan.duration.map(|d| started + d);
    let deadline_reached = async move {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    let cancelled = async move {
        if cancel.wait_for(|cancelled| *cancelled).await.is_err() {
            // Nobody can cancel any more: never resolve.
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(deadline_reached, cancelled);

    let mut ticker =
        tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    let mut last_tick = started;
    let mut silent_ticks = 0;
    let stop = loop {
        tokio::select! {
            _ = ticker.tick() => {
                let now = Instant::now();
                let (tick, answered, connect_error) = snapshot(&workers, now - started, now - last_tick);
                last_tick = now;
                on_tick(&tick);
                match (answered, connect_error) {
                    (0, Some(cause)) => {
                        silent_ticks += 1;
                        if silent_ticks >= TARGET_DOWN_AFTER {
                            break StopReason::TargetDown(cause);
                        }
                    }
                    _ => silent_ticks = 0,
                }
            }
            () = &mut deadline_reached => break StopReason::Finished,
            () = &mut cancelled => break StopReason::Cancelled,
            joined = tasks.join_next() => {
                if joined.is_none() {
                    break StopReason::Finished;
                }
            }
        }
    };
    let _ = halt_tx.send(true);
    while tasks.join_next().await.is_some() {}

    let mut stats = Stats::new();
    for worker in workers.iter() {
        stats.merge(&lock(worker).total);
    }
    Outcome {
        stats,
        elapsed: started.elapsed(),
        stop,
    }
}

fn lock(worker: &Mutex<WorkerStats>) -> std::sync::MutexGuard<'_, WorkerStats> {
    worker
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Merges what the workers saw since the last tick, and resets it.
fn snapshot(
    workers: &[Mutex<WorkerStats>],
    elapsed: Duration,
    interval: Duration,
) -> (Tick, u64, Option<String>) {
    let mut recent = new_histogram();
    let (mut requests, mut failures, mut answered, mut connect_error) = (0, 0, 0, None);
    for worker in workers {
        let mut worker = lock(worker);
        let _ = recent.add(&worker.recent_latency_us);
        worker.recent_latency_us.reset();
        answered += std::mem::take(&mut worker.recent_answers);
        if let Some(cause) = worker.recent_connect_error.take() {
            connect_error = Some(cause);
        }
        for endpoint in &worker.total.endpoints {
            requests += endpoint.requests;
            failures += endpoint.failures;
        }
    }
    let tick = Tick {
        elapsed,
        requests,
        failures,
        interval_rps: recent.len() as f64 / interval.as_secs_f64().max(1e-3),
        interval_p95: (!recent.is_empty())
            .then(|| Duration::from_micros(recent.value_at_quantile(0.95))),
    };
    (tick, answered, connect_error)
}

/// Takes one request from the budget; false once it is spent.
fn claim(issued: &AtomicU64, limit: u64) -> bool {
    issued.fetch_add(1, Ordering::Relaxed) < limit
}

struct Worker {
    connection: Connection,
    workers: Arc<Vec<Mutex<WorkerStats>>>,
    index: usize,
    halt: watch::Receiver<bool>,
}

impl Worker {
    fn record(&self, endpoint: Endpoint, result: &Result<u16, RequestError>, latency: Duration) {
        lock(&self.workers[self.index]).record(endpoint, result, latency);
    }

    /// Closed model: send, wait for the answer, think, repeat.
    async fn act_as_user(mut self, mix: Mix, think: Think, issued: Arc<AtomicU64>, limit: u64) {
        while !*self.halt.borrow() && claim(&issued, limit) {
            let endpoint = mix.pick();
            let started = Instant::now();
            let result = tokio::select! {
                _ = self.halt.changed() => return,
                result = self.connection.send(endpoint) => result,
            };
            self.record(endpoint, &result, started.elapsed());
            let pause = match result {
                // Do not spin on a refused connection.
                Err(RequestError::Connect(_)) => think.pick().max(Duration::from_millis(100)),
                _ => think.pick(),
            };
            if !pause.is_zero() {
                tokio::select! {
                    _ = self.halt.changed() => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    /// Open model: take the next scheduled request; latency counts from its schedule.
    async fn serve_schedule(
        mut self,
        jobs: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(Endpoint, Instant)>>>,
    ) {
        loop {
            let job = tokio::select! {
                _ = self.halt.changed() => return,
                job = async { jobs.lock().await.recv().await } => job,
            };
            let Some((endpoint, scheduled)) = job else {
                return;
            };
            let result = tokio::select! {
                _ = self.halt.changed() => return,
                result = self.connection.send(endpoint) => result,
            };
            self.record(endpoint, &result, scheduled.elapsed());
        }
    }
}

/// Emits one request every `1 / rate` seconds, on a fixed timeline: a slow answer delays
/// nothing that comes after it.
async fn schedule(
    rate: f64,
    mix: Mix,
    jobs: mpsc::UnboundedSender<(Endpoint, Instant)>,
    mut halt: watch::Receiver<bool>,
    issued: Arc<AtomicU64>,
    limit: u64,
) {
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut n: u32 = 0;
    while claim(&issued, limit) {
        let at = start + period * n;
        n = n.saturating_add(1);
        tokio::select! {
            _ = halt.changed() => return,
            () = tokio::time::sleep_until(at) => {}
        }
        if jobs.send((mix.pick(), at)).is_err() {
            return;
        }
    }
}
