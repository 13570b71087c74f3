//! The load engine: virtual users (closed model) or a fixed schedule served by connections
//! that open on demand (open model), watched once a second for the progress line, and
//! summed up at the end with every request accounted for.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
    time::Instant,
};

use crate::{
    client::Reachable,
    plan::{Plan, Rate},
    schedule::{self, Pool, Schedule},
    slowest::SlowRequest,
    stats::Stats,
    worker::Registry,
};

/// Once a second, for a progress line.
#[derive(Clone, Debug)]
pub struct Tick {
    pub elapsed: Duration,
    /// Requests answered or failed so far.
    pub requests: u64,
    /// Failures so far.
    pub failures: u64,
    /// Answers per second since the last tick.
    pub interval_rps: f64,
    /// The 95th percentile latency of the answers since the last tick.
    pub interval_p95: Option<Duration>,
    /// Open model: requests scheduled so far.
    pub scheduled: Option<u64>,
    /// Open model: requests not sent so far (no connection free in time).
    pub not_sent: u64,
    /// Connections opened so far.
    pub connections: usize,
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
    /// Every request the run meant to send, per endpoint: answered, in flight at the
    /// end, or (open model) not sent.
    pub stats: Stats,
    /// The plan's `slowest` answered requests, slowest first.
    pub slowest: Vec<SlowRequest>,
    /// Tasks of the run (workers, or the open model's schedule) that ended by an error (a
    /// panic) instead of by the plan, and why; the run went on without them.
    pub worker_errors: Vec<String>,
    pub elapsed: Duration,
    pub stop: StopReason,
    /// Open model: what the schedule did; `None` for virtual users.
    pub schedule: Option<Schedule>,
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
    on_tick: impl FnMut(&Tick),
) -> Outcome {
    let started = Instant::now();
    let (halt_tx, halt) = watch::channel(false);
    let mut run = Run::start(target, plan, halt);
    let stop = run.watch(started, plan.duration, cancel, on_tick).await;
    let _ = halt_tx.send(true);
    while let Some(joined) = run.tasks.join_next().await {
        if let Err(error) = joined {
            run.worker_errors.push(error.to_string());
        }
    }
    run.outcome(started.elapsed(), stop)
}

/// Resolves once the run is halted (at once if it already is).
pub(crate) async fn halted(halt: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens once the run is over.
    let _ = halt.wait_for(|halted| *halted).await;
}

/// The open model's schedule and the requests for more connections it makes.
struct OpenModel {
    rate: Rate,
    pool: Arc<Pool>,
    wanted: mpsc::UnboundedReceiver<()>,
}

/// A run's tasks and what they share.
struct Run<'a> {
    target: &'a Reachable,
    registry: Registry,
    /// Every task of the run, so that a task that fails is reported, not lost.
    tasks: JoinSet<()>,
    open: Option<OpenModel>,
    halt: watch::Receiver<bool>,
    worker_errors: Vec<String>,
}

impl<'a> Run<'a> {
    /// Spawns the virtual users, or the schedule and its first connections.
    fn start(target: &'a Reachable, plan: &Plan, halt: watch::Receiver<bool>) -> Run<'a> {
        let budget = Arc::new(Budget::new(plan.requests));
        let mut run = Run {
            target,
            registry: Registry::new(plan.slowest),
            tasks: JoinSet::new(),
            open: None,
            halt,
            worker_errors: Vec::new(),
        };
        let Some(rate) = plan.rate else {
            for _ in 0..plan.users.max(1) {
                let user = run.registry.worker(target, run.halt.clone());
                let (mix, budget) = (plan.mix.clone(), Arc::clone(&budget));
                run.tasks.spawn(user.act_as_user(mix, plan.think, budget));
            }
            return run;
        };
        let pool = Arc::new(Pool::new(plan));
        let (want, wanted) = mpsc::unbounded_channel();
        let scheduler = schedule::schedule(
            rate,
            plan.mix.clone(),
            Arc::clone(&pool),
            want,
            run.halt.clone(),
            budget,
        );
        run.tasks.spawn(scheduler);
        let initial = pool.initial_connections();
        run.open = Some(OpenModel { rate, pool, wanted });
        for _ in 0..initial {
            run.open_connection();
        }
        run
    }

    fn open_connection(&mut self) {
        if let Some(open) = &self.open {
            let worker = self.registry.worker(self.target, self.halt.clone());
            self.tasks
                .spawn(worker.serve_schedule(Arc::clone(&open.pool)));
        }
    }

    /// Ticks once a second and opens the connections the schedule asks for, until the
    /// plan is done, `cancel` resolves or the target is down.
    async fn watch(
        &mut self,
        started: Instant,
        duration: Option<Duration>,
        cancel: impl Future<Output = ()>,
        mut on_tick: impl FnMut(&Tick),
    ) -> StopReason {
        let deadline = async move {
            match duration {
                Some(duration) => tokio::time::sleep_until(started + duration).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline, cancel);
        let mut ticker =
            tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
        let (mut last_tick, mut silent_ticks) = (started, 0);
        loop {
            tokio::select! {
                biased;
                Some(()) = wanted(&mut self.open) => self.open_connection(),
                _ = ticker.tick() => {
                    let (tick, down) = self.tick(started, last_tick);
                    last_tick = Instant::now();
                    on_tick(&tick);
                    silent_ticks = if down.is_some() { silent_ticks + 1 } else { 0 };
                    if let (Some(cause), true) = (down, silent_ticks >= TARGET_DOWN_AFTER) {
                        return StopReason::TargetDown(cause);
                    }
                }
                () = &mut deadline => return StopReason::Finished,
                () = &mut cancel => return StopReason::Cancelled,
                joined = self.tasks.join_next() => match joined {
                    None => return StopReason::Finished,
                    Some(Err(error)) => self.worker_errors.push(error.to_string()),
                    Some(Ok(())) => {}
                },
            }
        }
    }

    /// The progress since `last_tick`, and the connection error if nothing answered
    /// since then and a connection was refused.
    fn tick(&self, started: Instant, last_tick: Instant) -> (Tick, Option<String>) {
        let now = Instant::now();
        let snapshot = self.registry.snapshot();
        let (scheduled, not_sent) = match &self.open {
            Some(open) => {
                let (scheduled, not_sent) = open.pool.progress();
                (Some(scheduled), not_sent)
            }
            None => (None, 0),
        };
        let interval = (now - last_tick).as_secs_f64().max(1e-3);
        let tick = Tick {
            elapsed: now - started,
            requests: snapshot.requests,
            failures: snapshot.failures,
            interval_rps: snapshot.recent.len() as f64 / interval,
            interval_p95: (!snapshot.recent.is_empty())
                .then(|| Duration::from_micros(snapshot.recent.value_at_quantile(0.95))),
            scheduled,
            not_sent,
            connections: self.registry.len(),
        };
        let down = snapshot.connect_error.filter(|_| snapshot.answers == 0);
        (tick, down)
    }

    /// The summary, once every task has ended.
    fn outcome(self, elapsed: Duration, stop: StopReason) -> Outcome {
        let (mut stats, slowest) = self.registry.merge();
        let schedule = self.open.map(|open| {
            let connections = u32::try_from(self.registry.len()).unwrap_or(u32::MAX);
            let (not_sent, schedule) = open.pool.finish(open.rate, connections);
            for (endpoint, not_sent) in stats.endpoints.iter_mut().zip(not_sent) {
                endpoint.not_sent += not_sent;
            }
            schedule
        });
        Outcome {
            target: self.target.target().url().to_owned(),
            stats,
            slowest: slowest.into_vec(),
            worker_errors: self.worker_errors,
            elapsed,
            stop,
            schedule,
        }
    }
}

/// The schedule's next request for a connection; never, in the closed model.
async fn wanted(open: &mut Option<OpenModel>) -> Option<()> {
    match open {
        Some(open) => open.wanted.recv().await,
        None => std::future::pending().await,
    }
}

/// The requests the run may still send, shared by every worker.
pub(crate) struct Budget {
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
    pub fn claim(&self) -> bool {
        self.issued.fetch_add(1, Ordering::Relaxed) < self.limit
    }
}
