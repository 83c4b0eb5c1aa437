//! The loopback-only Prometheus endpoint: HTTP/1.0, one response per
//! connection, no HTTP library.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::counters::Metrics;
use crate::shutdown::until_shutdown;
use crate::store::Store;

/// Serves `GET /metrics` (any path) until shutdown.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (mut sock, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("metrics accept: {e}");
                    continue;
                }
            },
            () = until_shutdown(&mut shutdown) => return,
        };
        let metrics = metrics.clone();
        let store = store.clone();
        tokio::spawn(async move {
            // Read (and ignore) the request head; bounded in size and time.
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await;
            let body = metrics.render(&*store);
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
