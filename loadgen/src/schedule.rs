//! The open model's schedule: requests started on a fixed timeline, handed to an idle
//! connection, another connection opened when every one is busy (up to the plan's cap),
//! and a request that waits longer than the plan's `max_lag` for a connection dropped
//! and counted as not sent, so the queue stays bounded and nothing goes missing.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::{
    sync::{Notify, mpsc, watch},
    time::Instant,
};

use crate::{
    endpoint::Endpoint,
    engine::{Budget, halted},
    mix::Mix,
    plan::{Plan, Rate},
};

/// A request of the schedule.
pub(crate) struct Job {
    pub endpoint: Endpoint,
    pub scheduled: Instant,
}

/// What the open model's schedule did; `None` in an [`Outcome`](crate::Outcome) of the
/// closed model.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// The rate asked for, in requests per second.
    pub rate: f64,
    /// Requests scheduled: every one of them is sent or counted as not sent.
    pub scheduled: u64,
    /// Not sent: no connection was free within `max_lag` of the scheduled time.
    pub dropped_late: u64,
    /// Not sent: still waiting for a connection when the run stopped.
    pub queued_at_end: u64,
    /// Requests that found every one of `max_connections` busy at their scheduled time.
    pub waited_at_cap: u64,
    /// The longest a sent request waited between its scheduled time and its start.
    pub max_lag: Duration,
    /// The plan's bound on that wait.
    pub max_lag_bound: Duration,
    /// Connections opened (at most `max_connections`).
    pub connections: u32,
    pub max_connections: u32,
}

/// The requests waiting for a connection, and the connections waiting for a request.
pub(crate) struct Pool {
    queue: Mutex<Queue>,
    wake: Notify,
    max_lag: Duration,
}

struct Queue {
    jobs: VecDeque<Job>,
    /// Connections waiting for a request, not yet woken for one.
    idle: u32,
    /// Connections opened or being opened.
    open: u32,
    cap: u32,
    /// The schedule has ended: a connection with nothing to do may stop.
    closed: bool,
    scheduled: u64,
    dropped_late: u64,
    waited_at_cap: u64,
    max_lag: Duration,
    not_sent: [u64; Endpoint::ALL.len()],
}

/// What [`Pool::offer`] asks of the caller.
#[derive(Debug, PartialEq)]
pub(crate) enum Offered {
    /// An idle connection (or one about to be) takes the request.
    Taken,
    /// Every connection is busy and the cap allows another: open one.
    OpenConnection,
    /// Every connection is busy and the cap is reached: the request waits, at most
    /// `max_lag` from its scheduled time.
    Waits,
}

impl Pool {
    /// A pool whose first `plan.users` connections (at most the cap) are being opened.
    pub fn new(plan: &Plan) -> Pool {
        let cap = plan.max_connections.max(1);
        Pool {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                idle: 0,
                open: plan.users.clamp(1, cap),
                cap,
                closed: false,
                scheduled: 0,
                dropped_late: 0,
                waited_at_cap: 0,
                max_lag: Duration::ZERO,
                not_sent: [0; Endpoint::ALL.len()],
            }),
            wake: Notify::new(),
            max_lag: plan.max_lag,
        }
    }

    /// The connections to open at the start.
    pub fn initial_connections(&self) -> u32 {
        self.lock().open
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A connection that panicked holding the lock leaves the counts as they were.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a request at its scheduled time, and says who serves it.
    pub fn offer(&self, job: Job, now: Instant) -> Offered {
        let mut queue = self.lock();
        queue.drop_late(now, self.max_lag);
        queue.scheduled += 1;
        queue.jobs.push_back(job);
        if queue.idle > 0 {
            queue.idle -= 1;
            drop(queue);
            self.wake.notify_one();
            Offered::Taken
        } else if queue.open < queue.cap {
            queue.open += 1;
            Offered::OpenConnection
        } else {
            queue.waited_at_cap += 1;
            Offered::Waits
        }
    }

    /// The next request for a connection, dropping (and counting) the ones that waited
    /// too long; `None` once the schedule has ended and nothing waits, or at the halt.
    pub async fn next(&self, halt: &mut watch::Receiver<bool>) -> Option<Job> {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            {
                let mut queue = self.lock();
                if let Some(job) = queue.pop(Instant::now(), self.max_lag) {
                    return Some(job);
                }
                if queue.closed {
                    return None;
                }
                queue.idle += 1;
                // Registered before the lock is let go, so `offer`'s wake-up is not lost.
                woken.as_mut().enable();
            }
            tokio::select! {
                biased;
                () = halted(halt) => return None,
                () = woken => {}
            }
        }
    }

    /// The schedule has ended: connections stop once nothing waits.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_waiters();
    }

    /// Requests scheduled and not sent so far, for the progress line.
    pub fn progress(&self) -> (u64, u64) {
        let queue = self.lock();
        (queue.scheduled, queue.not_sent.iter().sum())
    }

    /// After the run: counts the requests still waiting as not sent, and returns each
    /// endpoint's not-sent count with the schedule's summary.
    pub fn finish(&self, rate: Rate, connections: u32) -> ([u64; Endpoint::ALL.len()], Schedule) {
        let mut queue = self.lock();
        let queued_at_end = queue.jobs.len() as u64;
        while let Some(job) = queue.jobs.pop_front() {
            queue.not_sent[job.endpoint.index()] += 1;
        }
        let schedule = Schedule {
            rate: rate.per_second(),
            scheduled: queue.scheduled,
            dropped_late: queue.dropped_late,
            queued_at_end,
            waited_at_cap: queue.waited_at_cap,
            max_lag: queue.max_lag,
            max_lag_bound: self.max_lag,
            connections,
            max_connections: queue.cap,
        };
        (queue.not_sent, schedule)
    }
}

impl Queue {
    /// Drops the requests at the front that can no longer start within `max_lag`.
    fn drop_late(&mut self, now: Instant, max_lag: Duration) {
        while let Some(job) = self.jobs.front() {
            if now.saturating_duration_since(job.scheduled) <= max_lag {
                return;
            }
            self.not_sent[job.endpoint.index()] += 1;
            self.dropped_late += 1;
            self.jobs.pop_front();
        }
    }

    fn pop(&mut self, now: Instant, max_lag: Duration) -> Option<Job> {
        self.drop_late(now, max_lag);
        let job = self.jobs.pop_front()?;
        self.max_lag = self
            .max_lag
            .max(now.saturating_duration_since(job.scheduled));
        Some(job)
    }
}

/// Schedules one request every `1 / rate` seconds on a fixed timeline (a slow answer
/// delays nothing after it), asking `open` for a connection when every one is busy.
pub(crate) async fn schedule(
    rate: Rate,
    mix: Mix,
    pool: Arc<Pool>,
    open: mpsc::UnboundedSender<()>,
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
            biased;
            () = halted(&mut halt) => return,
            () = tokio::time::sleep_until(scheduled) => {}
        }
        let job = Job {
            endpoint: mix.pick(),
            scheduled,
        };
        if pool.offer(job, Instant::now()) == Offered::OpenConnection && open.send(()).is_err() {
            return;
        }
    }
    pool.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(users: u32, max_connections: u32) -> Pool {
        Pool::new(&Plan {
            users,
            max_connections,
            max_lag: Duration::from_secs(1),
            ..Plan::default()
        })
    }

    fn job(endpoint: Endpoint, scheduled: Instant) -> Job {
        Job {
            endpoint,
            scheduled,
        }
    }

    #[test]
    fn connections_open_while_all_are_busy_up_to_the_cap() {
        let pool = pool(1, 3);
        assert_eq!(pool.initial_connections(), 1);
        let now = Instant::now();
        let offers: Vec<Offered> = (0..4)
            .map(|_| pool.offer(job(Endpoint::Data, now), now))
            .collect();
        assert_eq!(
            offers,
            [
                Offered::OpenConnection,
                Offered::OpenConnection,
                Offered::Waits,
                Offered::Waits
            ]
        );
        // An idle connection takes the next request instead of a new one opening.
        let pool = self::pool(2, 3);
        pool.lock().idle = 1;
        assert_eq!(pool.offer(job(Endpoint::Data, now), now), Offered::Taken);
        assert_eq!(pool.lock().idle, 0);
    }

    #[test]
    fn every_scheduled_request_is_sent_or_counted_as_not_sent() {
        let pool = pool(1, 1);
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // Six requests, one every 100 ms, while the one connection is busy.
        for n in 0..6 {
            let endpoint = if n % 2 == 0 {
                Endpoint::Data
            } else {
                Endpoint::Slow
            };
            let _ = pool.offer(job(endpoint, at(n * 100)), at(n * 100));
        }
        let mut sent = Vec::new();
        {
            let mut queue = pool.lock();
            // At 1.2 s the ones scheduled at 0 and 100 ms waited too long.
            sent.extend(queue.pop(at(1200), Duration::from_secs(1)));
            sent.extend(queue.pop(at(1250), Duration::from_secs(1)));
            assert_eq!(queue.max_lag, Duration::from_millis(1000));
        }
        let (not_sent, schedule) = pool.finish(Rate::new(10.0).expect("rate"), 1);
        assert_eq!(sent.len(), 2);
        assert_eq!(
            (schedule.dropped_late, schedule.queued_at_end),
            (2, 2),
            "{schedule:?}"
        );
        assert_eq!(
            schedule.scheduled,
            sent.len() as u64 + schedule.dropped_late + schedule.queued_at_end
        );
        assert_eq!(not_sent.iter().sum::<u64>(), 4);
        assert_eq!(
            (
                not_sent[Endpoint::Data.index()],
                not_sent[Endpoint::Slow.index()]
            ),
            (2, 2)
        );
        assert_eq!(schedule.waited_at_cap, 6);
    }
}
