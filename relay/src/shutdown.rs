//! Shutdown: the operating system's signals that start it, and the watch
//! every long-running task observes.

use tokio::sync::watch;

/// Resolves once shutdown has been signalled on `rx`.
pub async fn until_shutdown(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await.
    let _ = rx.wait_for(|s| *s).await.is_ok();
}

/// Resolves on SIGTERM or SIGINT (SIGINT only if no SIGTERM handler can
/// be installed, which is said at warn level).
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!("no SIGTERM handler ({e}); stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
