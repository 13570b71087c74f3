//! A stand-in gateway on 127.0.0.1: the five endpoints, with a latency, a status and an
//! `x-trace-id` header chosen by the test, counting the `/api/data` requests it got and
//! the most it served at once.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::{get, post},
};
use contract::endpoints;
use loadgen::{Plan, Rate, Reachable, Target, Think};
use tokio::{net::TcpListener, sync::oneshot};

/// How `/api/data` answers its `n`th request (from 0): after `latency`, with `status`,
/// and naming trace `n` in `x-trace-id`.
#[derive(Clone)]
pub struct Data {
    pub latency: fn(u64) -> Duration,
    pub status: StatusCode,
}

impl Data {
    pub fn fast() -> Data {
        Data {
            latency: |_| Duration::ZERO,
            status: StatusCode::OK,
        }
    }

    /// Answers with 200 after `latency(n)`.
    pub fn taking(latency: fn(u64) -> Duration) -> Data {
        Data {
            latency,
            ..Data::fast()
        }
    }
}

/// The 32-hex trace id of `/api/data`'s `n`th request.
pub fn trace_id(n: u64) -> String {
    format!("{n:032x}")
}

struct Served {
    data: Data,
    requests: AtomicU64,
    in_progress: AtomicU64,
    most_at_once: AtomicU64,
}

/// Counts a request in progress until dropped (also when the client goes away).
struct InProgress<'a>(&'a Served);

impl<'a> InProgress<'a> {
    fn new(served: &'a Served) -> InProgress<'a> {
        let now = served.in_progress.fetch_add(1, Ordering::SeqCst) + 1;
        served.most_at_once.fetch_max(now, Ordering::SeqCst);
        InProgress(served)
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn data(State(served): State<Arc<Served>>) -> (StatusCode, HeaderMap) {
    let n = served.requests.fetch_add(1, Ordering::Relaxed);
    let _in_progress = InProgress::new(&served);
    tokio::time::sleep((served.data.latency)(n)).await;
    let mut headers = HeaderMap::new();
    headers.insert(
        contract::TRACE_ID_HEADER,
        trace_id(n).parse().expect("a header value"),
    );
    (served.data.status, headers)
}

/// A running stand-in; dropping `stop` (or sending on it) shuts it down.
pub struct Server {
    pub target: Target,
    pub stop: oneshot::Sender<()>,
    served: Arc<Served>,
}

impl Server {
    /// The `/api/data` requests that arrived.
    pub fn data_requests(&self) -> u64 {
        self.served.requests.load(Ordering::SeqCst)
    }

    /// The most `/api/data` requests in progress at once: one connection carries one at a
    /// time (HTTP/1.1), so this many connections at least were open together.
    pub fn most_at_once(&self) -> u64 {
        self.served.most_at_once.load(Ordering::SeqCst)
    }
}

pub async fn start(data_answers: Data) -> Server {
    let served = Arc::new(Served {
        data: data_answers,
        requests: AtomicU64::new(0),
        in_progress: AtomicU64::new(0),
        most_at_once: AtomicU64::new(0),
    });
    let router = Router::new()
        // Untraced, as the services' probes are: no x-trace-id.
        .route(endpoints::HEALTH, get(|| async { "ok" }))
        .route(endpoints::DATA, get(data))
        .route(endpoints::ACTION, post(|| async { "done" }))
        .route(endpoints::SLOW, get(|| async { "slow" }))
        .route(
            endpoints::ERROR,
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .with_state(Arc::clone(&served));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let target: Target = format!("http://{}", listener.local_addr().expect("addr"))
        .parse()
        .expect("target");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    Server {
        target,
        stop,
        served,
    }
}

pub async fn reachable(target: &Target) -> Reachable {
    loadgen::preflight(target)
        .await
        .expect("the test server answers")
}

/// Four users, no think time, at most 30 s, sending `mix`.
pub fn plan(mix: &str) -> Plan {
    Plan {
        mix: mix.parse().expect("mix"),
        users: 4,
        think: Think::None,
        duration: Some(Duration::from_secs(30)),
        ..Plan::default()
    }
}

/// `data=1` in the open model at `per_second`, from one connection up to
/// `max_connections`.
pub fn open_plan(per_second: f64, max_connections: u32) -> Plan {
    Plan {
        rate: Some(Rate::new(per_second).expect("rate")),
        users: 1,
        max_connections,
        ..plan("data=1")
    }
}

/// Never resolves: a run nobody cancels.
pub fn never() -> impl Future<Output = ()> {
    std::future::pending()
}

pub async fn run(target: &Target, plan: &Plan) -> loadgen::Outcome {
    loadgen::run(&reachable(target).await, plan, never(), |_| {}).await
}
