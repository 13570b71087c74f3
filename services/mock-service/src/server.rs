//! Serving with a graceful, bounded shutdown.

use std::{future::Future, future::IntoFuture as _, time::Duration};

use tokio::{net::TcpListener, sync::watch};

use crate::{AppState, app};

/// How long the requests cancelled at the drain deadline get to send their 503 and close
/// their connections. They answer at once; the bound only keeps a stuck connection from
/// holding up the exit.
const CANCELLED_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// How a service stops once asked to.
#[derive(Clone, Copy, Debug)]
pub struct ShutdownTiming {
    /// After the signal, keep serving (with `/ready` at 503) this long, so that load
    /// balancers and Kubernetes Endpoints stop sending new requests first.
    pub delay: Duration,
    /// Then stop accepting and give in-flight requests up to this long to finish.
    pub drain: Duration,
}

/// Serves `state` on `listener` until `shutdown` resolves, then stops as `timing` says.
/// Returns whether every in-flight request finished in time.
///
/// A request still running at the drain deadline is cancelled there (the state's
/// [`AppState::drain_deadline`]): it answers 503 and its server span ends with an ERROR
/// status, and this returns once those answers are sent, so the caller's flush of the
/// spans includes them. Dropping the server instead would leave axum's connection tasks,
/// and their spans, running until the runtime ends, after the flush.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    timing: ShutdownTiming,
) -> std::io::Result<bool> {
    let (draining_tx, mut draining_rx) = watch::channel(false);
    let router = app(state.clone());
    let drain_deadline = state.drain_deadline().clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        state.set_ready(false);
        tokio::time::sleep(timing.delay).await;
        let _ = draining_tx.send(true);
    });
    let mut server = std::pin::pin!(server.into_future());
    let drain_time_over = async move {
        let _ = draining_rx.wait_for(|draining| *draining).await;
        tokio::time::sleep(timing.drain).await;
    };
    tokio::select! {
        result = &mut server => return result.map(|()| true),
        () = drain_time_over => {}
    }
    tracing::warn!(
        drain_timeout_ms = timing.drain.as_millis() as u64,
        "requests still in flight after the drain timeout; cancelling them"
    );
    drain_deadline.reach();
    if let Ok(result) = tokio::time::timeout(CANCELLED_ANSWER_TIMEOUT, server).await {
        result?;
    } else {
        tracing::warn!("connections still open after cancelling their requests; stopping anyway");
    }
    Ok(false)
}
