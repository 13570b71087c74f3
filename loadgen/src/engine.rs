//! The load engine: virtual users (closed model) or a fixed schedule (open model), each
//! worker with its own connection and its own statistics, merged once a second for the
//! progress line and at the end for the report.

use std::{
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
    time::Instant,
};

use crate::{
    client::{Answer, Connection, Reachable, RequestError},
    endpoint::Endpoint,
    mix::Mix,
    plan::{Plan, Rate},
    slowest::{SlowRequest, Slowest},
    stats::{Stats, new_histogram},
    think::Think,
};

/// Once a second, for a progress line.
#[derive(Clone, Debug)]
pub struct Tick {
    pub elapsed: Duration,
    /// Requests sent so far.
    pub requests: u64,
    /// Failures so far.
    pub failures: u64,
    /// Answers per second since the last tick.
    pub interval_rps: f64,
    /// The 95th percentile latency of the answers since the last tick.
    pub interval_p95: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    /// The duration or the request count was reached.
    Finished,
    /// The caller's cancellation (Ctrl+C).
    Cancelled,
    /// Nothing answered for three seconds; the last connection error.
    TargetDown(String),
}

/// What a run did.
#[derive(Debug)]
pub struct Outcome {
    /// The target's URL.
    pub target: String,
    pub stats: Stats,
    /// The plan's `slowest` answered requests, slowest first.
    pub slowest: Vec<SlowRequest>,
    /// Tasks of the run (workers, or the open model's schedule) that ended by an error (a
    /// panic) instead of by the plan, and why; the run went on without them.
    pub worker_errors: Vec<String>,
    pub elapsed: Duration,
    pub stop: StopReason,
}

/// Seconds of answers from nobody, with connections refused, after which the target
/// counts as down.
const TARGET_DOWN_AFTER: u32 = 3;

/// Runs `plan` against `target` until its duration or request count is reached,
/// `cancel` resolves, or the target stops answering. `on_tick` is called once a second.
pub async fn run(
    target: &Reachable,
    plan: &Plan,
    cancel: impl Future<Output = ()>,
    mut on_tick: impl FnMut(&Tick),
) -> Outcome {
    let started = Instant::now();
    let (halt_tx, halt) = watch::channel(false);
    let budget = Arc::new(Budget::new(plan.requests));
    let workers: Arc<[Mutex<WorkerStats>]> = (0..plan.users.max(1))
        .map(|_| Mutex::new(WorkerStats::new(plan.slowest)))
        .collect();

    // Every task of the run, so that a task that fails is reported, not lost.
    let mut tasks = JoinSet::new();
    let jobs = plan.rate.map(|rate| {
        let (tx, rx) = mpsc::unbounded_channel();
        tasks.spawn(schedule(
            rate,
            plan.mix.clone(),
            tx,
            halt.clone(),
            Arc::clone(&budget),
        ));
        Arc::new(tokio::sync::Mutex::new(rx))
    });
    for index in 0..workers.len() {
        let worker = Worker {
            connection: Connection::new(target),
            workers: Arc::clone(&workers),
            index,
            halt: halt.clone(),
        };
        match &jobs {
            Some(jobs) => tasks.spawn(worker.serve_schedule(Arc::clone(jobs))),
            None => {
                tasks.spawn(worker.act_as_user(plan.mix.clone(), plan.think, Arc::clone(&budget)))
            }
        };
    }

    let deadline = plan.duration.map(|d| started + d);
    let deadline_reached = async move {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline_reached, cancel);

    let mut ticker =
        tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    let mut last_tick = started;
    let mut silent_ticks = 0;
    let mut worker_errors = Vec::new();
    let stop = loop {
        tokio::select! {
            _ = ticker.tick() => {
                let now = Instant::now();
                let snapshot = snapshot(&workers, now - started, now - last_tick);
                last_tick = now;
                on_tick(&snapshot.tick);
                match (snapshot.answers, snapshot.connect_error) {
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
            () = &mut cancel => break StopReason::Cancelled,
            joined = tasks.join_next() => match joined {
                None => break StopReason::Finished,
                Some(Err(error)) => worker_errors.push(error.to_string()),
                Some(Ok(())) => {}
            },
        }
    };
    let _ = halt_tx.send(true);
    while let Some(joined) = tasks.join_next().await {
        if let Err(error) = joined {
            worker_errors.push(error.to_string());
        }
    }

    let mut stats = Stats::new();
    let mut slowest = Slowest::new(plan.slowest);
    for worker in workers.iter() {
        let worker = lock(worker);
        stats.merge(&worker.total);
        slowest.merge(&worker.slowest);
    }
    Outcome {
        target: target.target().url().to_owned(),
        stats,
        slowest: slowest.into_vec(),
        worker_errors,
        elapsed: started.elapsed(),
        stop,
    }
}

/// What one worker has recorded; locked by its worker per request and by the progress
/// loop once a second, so never contended.
struct WorkerStats {
    total: Stats,
    slowest: Slowest,
    recent_latency_us: Histogram<u64>,
    recent_answers: u64,
    recent_connect_error: Option<String>,
}

impl WorkerStats {
    fn new(slowest: usize) -> WorkerStats {
        WorkerStats {
            total: Stats::new(),
            slowest: Slowest::new(slowest),
            recent_latency_us: new_histogram(),
            recent_answers: 0,
            recent_connect_error: None,
        }
    }

    fn record(
        &mut self,
        endpoint: Endpoint,
        result: &Result<Answer, RequestError>,
        latency: Duration,
    ) {
        let stats = self.total.endpoint_mut(endpoint);
        stats.requests += 1;
        match result {
            Ok(answer) => {
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
            Err(error) => {
                stats.fail(error.to_string());
                if let RequestError::Connect(cause) = error {
                    self.recent_connect_error = Some(cause.clone());
                }
            }
        }
    }
}

fn lock(worker: &Mutex<WorkerStats>) -> MutexGuard<'_, WorkerStats> {
    // A worker that panicked leaves its counts as they were: still worth reporting.
    worker.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The workers' merged state at a tick.
struct Snapshot {
    tick: Tick,
    /// Answers since the last tick.
    answers: u64,
    /// A connection error since the last tick, if any.
    connect_error: Option<String>,
}

/// Merges what the workers saw since the last tick, and resets it.
fn snapshot(workers: &[Mutex<WorkerStats>], elapsed: Duration, interval: Duration) -> Snapshot {
    let mut recent = new_histogram();
    let (mut requests, mut failures, mut answers, mut connect_error) = (0, 0, 0, None);
    for worker in workers {
        let mut worker = lock(worker);
        let _ = recent.add(&worker.recent_latency_us);
        worker.recent_latency_us.reset();
        answers += std::mem::take(&mut worker.recent_answers);
        if let Some(cause) = worker.recent_connect_error.take() {
            connect_error = Some(cause);
        }
        for endpoint in &worker.total.endpoints {
            requests += endpoint.requests;
            failures += endpoint.failures;
        }
    }
    Snapshot {
        tick: Tick {
            elapsed,
            requests,
            failures,
            interval_rps: recent.len() as f64 / interval.as_secs_f64().max(1e-3),
            interval_p95: (!recent.is_empty())
                .then(|| Duration::from_micros(recent.value_at_quantile(0.95))),
        },
        answers,
        connect_error,
    }
}

/// The requests the run may still send, shared by every worker.
struct Budget {
    issued: AtomicU64,
    limit: u64,
}

impl Budget {
    fn new(limit: Option<u64>) -> Budget {
        Budget {
            issued: AtomicU64::new(0),
            limit: limit.unwrap_or(u64::MAX),
        }
    }

    /// Takes one request from the budget; false once it is spent.
    fn claim(&self) -> bool {
        self.issued.fetch_add(1, Ordering::Relaxed) < self.limit
    }
}

/// A request of the open model's schedule.
struct Job {
    endpoint: Endpoint,
    scheduled: Instant,
}

type Jobs = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Job>>>;

struct Worker {
    connection: Connection,
    workers: Arc<[Mutex<WorkerStats>]>,
    index: usize,
    halt: watch::Receiver<bool>,
}

impl Worker {
    fn record(&self, endpoint: Endpoint, result: &Result<Answer, RequestError>, latency: Duration) {
        lock(&self.workers[self.index]).record(endpoint, result, latency);
    }

    /// Closed model: send, wait for the answer, think, repeat.
    async fn act_as_user(mut self, mix: Mix, think: Think, budget: Arc<Budget>) {
        while !*self.halt.borrow() && budget.claim() {
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
    async fn serve_schedule(mut self, jobs: Jobs) {
        loop {
            let job = tokio::select! {
                _ = self.halt.changed() => return,
                job = async { jobs.lock().await.recv().await } => job,
            };
            let Some(Job {
                endpoint,
                scheduled,
            }) = job
            else {
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
    rate: Rate,
    mix: Mix,
    jobs: mpsc::UnboundedSender<Job>,
    mut halt: watch::Receiver<bool>,
    budget: Arc<Budget>,
) {
    let period = rate.period();
    let start = Instant::now();
    let mut n: u32 = 0;
    while budget.claim() {
        let scheduled = start + period * n;
        n = n.saturating_add(1);
        tokio::select! {
            _ = halt.changed() => return,
            () = tokio::time::sleep_until(scheduled) => {}
        }
        let job = Job {
            endpoint: mix.pick(),
            scheduled,
        };
        if jobs.send(job).is_err() {
            return;
        }
    }
}
