//! Serving with a graceful, bounded shutdown.

use std::{future::Future, time::Duration};

use tokio::{net::TcpListener, sync::watch};

use crate::{AppState, app};

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
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    timing: ShutdownTiming,
) -> std::io::Result<bool> {
    let (draining_tx, mut draining_rx) = watch::channel(false);
    let router = app(state.clone());
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        state.set_ready(false);
        tokio::time::sleep(timing.delay).await;
        let _ = draining_tx.send(true);
    });
    let drain_deadline = async move {
        let _ = draining_rx.wait_for(|draining| *draining).await;
        tokio::time::sleep(timing.drain).await;
    };
    tokio::select! {
        result = server => result.map(|()| true),
        () = drain_deadline => {
            tracing::warn!(
                drain_timeout_ms = timing.drain.as_millis() as u64,
                "requests still in flight after the drain timeout; stopping anyway"
            );
            Ok(false)
        }
    }
}
