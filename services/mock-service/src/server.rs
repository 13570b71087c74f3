//! Serving with a graceful, bounded shutdown.

use std::{future::Future, time::Duration};

use tokio::{net::TcpListener, sync::watch};

use crate::{AppState, app};

/// Serves `state` on `listener` until `shutdown` resolves. Then `/ready` turns 503, no new
/// connections are accepted, and in-flight requests get up to `drain_timeout` to finish.
/// Returns whether every request finished in time.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain_timeout: Duration,
) -> std::io::Result<bool> {
    let (draining_tx, mut draining_rx) = watch::channel(false);
    let router = app(state.clone());
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        state.set_ready(false);
        let _ = draining_tx.send(true);
    });
    let drain_deadline = async move {
        let _ = draining_rx.wait_for(|draining| *draining).await;
        tokio::time::sleep(drain_timeout).await;
    };
    tokio::select! {
        result = server => result.map(|()| true),
        () = drain_deadline => {
            tracing::warn!(
                drain_timeout_ms = drain_timeout.as_millis() as u64,
                "requests still in flight after the drain timeout; stopping anyway"
            );
            Ok(false)
        }
    }
}
