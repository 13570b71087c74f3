//! Stopping a server: the signal that asks it to stop, and the deadline at which the
//! requests still in flight are cancelled (their spans ended as errors, not lost).

use std::sync::Arc;

use tokio::sync::watch;

/// The moment a server gives up waiting for its in-flight requests. Give it to
/// [`crate::HttpObserver::cancelled_at`], and call [`DrainDeadline::reach`] when the drain
/// time is over, before flushing the spans ([`crate::TelemetryGuard::shutdown`]): each
/// traced request still running then stops at once, answers 503, and ends its server span
/// with an ERROR status ("cancelled: the server stopped at its drain deadline"). Without
/// it, such a request is only dropped when the runtime ends, after the flush, and its
/// span never reaches the collector.
#[derive(Clone, Debug)]
pub struct DrainDeadline(Arc<watch::Sender<bool>>);

impl Default for DrainDeadline {
    fn default() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }
}

impl DrainDeadline {
    /// A deadline not reached yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every request in flight under this deadline, and every later one.
    pub fn reach(&self) {
        self.0.send_replace(true);
    }

    /// Whether [`DrainDeadline::reach`] was called.
    pub fn is_reached(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the deadline is reached (at once if it was).
    pub(crate) async fn reached(&self) {
        let mut reached = self.0.subscribe();
        // The sender lives in `self`, so this ends only when the value turns true.
        let _ = reached.wait_for(|reached| *reached).await;
    }
}

/// Resolves when the process is asked to stop: SIGTERM (what Kubernetes and
/// `cargo xtask local --stop` send) or Ctrl+C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, Ctrl+C keeps its default meaning (exit).
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "shutdown requested"),
        () = terminate => tracing::info!(signal = "SIGTERM", "shutdown requested"),
    }
}
