//! Counters and a loopback-only Prometheus text endpoint (HTTP/1.0, one
//! response per connection, no HTTP library).
//!
//! Metrics are aggregate counts only: no mailbox ids, no addresses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use enlace_protocol::command::RelayError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::store::Store;

/// Rejection reasons, in the order of [`Metrics::rejections`].
pub const REASONS: [&str; 16] = [
    "malformed",
    "unsupported_version",
    "auth",
    "unknown_mailbox",
    "quota",
    "too_large",
    "storage_full",
    "rate_limited",
    "internal",
    "unknown_command",
    "connection_limit",
    "not_own_client",
    "forward_queue_full",
    "unreachable",
    "connection_rate",
    "host_failed_checks",
];

/// Relay counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open connections (including handshakes in progress).
    pub connections: AtomicU64,
    /// Envelopes answered `stored`.
    pub deposits: AtomicU64,
    /// Envelopes pushed to subscribers.
    pub deliveries: AtomicU64,
    /// Forwards queued for other relays.
    pub forwards_queued: AtomicU64,
    /// Forwards another relay answered stored.
    pub forwards_stored: AtomicU64,
    /// Forwards another relay refused for good.
    pub forwards_refused: AtomicU64,
    /// Forwards that expired undelivered.
    pub forwards_expired: AtomicU64,
    /// Refusals by reason.
    pub rejections: [AtomicU64; REASONS.len()],
}

impl Metrics {
    /// Counts a refusal by reason name.
    pub fn reject(&self, reason: &str) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason)
            && let Some(c) = self.rejections.get(i)
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a refusal sent to a client.
    pub fn reject_error(&self, e: &RelayError) {
        let reason = match e {
            RelayError::Malformed => "malformed",
            RelayError::UnsupportedVersion { .. } => "unsupported_version",
            RelayError::Auth => "auth",
            RelayError::UnknownMailbox => "unknown_mailbox",
            RelayError::Quota => "quota",
            RelayError::TooLarge => "too_large",
            RelayError::StorageFull => "storage_full",
            RelayError::RateLimited { .. } => "rate_limited",
            RelayError::UnknownCommand => "unknown_command",
            RelayError::NotOwnClient => "not_own_client",
            RelayError::ForwardQueueFull => "forward_queue_full",
            RelayError::Unreachable => "unreachable",
            _ => "internal",
        };
        self.reject(reason);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, store: &dyn Store) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        gauge(
            "enlace_connections",
            "Open client connections.",
            "gauge",
            self.connections.load(Ordering::Relaxed),
        );
        match store.stats() {
            Ok(s) => {
                gauge("enlace_mailboxes", "Mailboxes.", "gauge", s.mailboxes);
                gauge(
                    "enlace_stored_envelopes",
                    "Envelopes on disk.",
                    "gauge",
                    s.envelopes,
                );
                gauge(
                    "enlace_stored_bytes",
                    "Bytes of envelopes on disk.",
                    "gauge",
                    s.bytes,
                );
            }
            Err(e) => tracing::error!("stats unavailable: {e}"),
        }
        gauge(
            "enlace_deposits_total",
            "Envelopes answered stored.",
            "counter",
            self.deposits.load(Ordering::Relaxed),
        );
        gauge(
            "enlace_deliveries_total",
            "Envelopes pushed to subscribers.",
            "counter",
            self.deliveries.load(Ordering::Relaxed),
        );
        gauge(
            "enlace_forwards_queued_total",
            "Forward requests accepted (a retried forward id counts again).",
            "counter",
            self.forwards_queued.load(Ordering::Relaxed),
        );
        gauge(
            "enlace_forwards_stored_total",
            "Forwards the destination relay answered stored.",
            "counter",
            self.forwards_stored.load(Ordering::Relaxed),
        );
        gauge(
            "enlace_forwards_refused_total",
            "Forwards the destination relay refused for good.",
            "counter",
            self.forwards_refused.load(Ordering::Relaxed),
        );
        gauge(
            "enlace_forwards_expired_total",
            "Forwards that expired before the destination accepted them.",
            "counter",
            self.forwards_expired.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP enlace_rejections_total Requests or connections refused, by reason.\n# TYPE enlace_rejections_total counter"
        );
        for (reason, count) in REASONS.iter().zip(&self.rejections) {
            let _ = writeln!(
                out,
                "enlace_rejections_total{{reason=\"{reason}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        out
    }
}

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
            () = crate::shutdown::until_shutdown(&mut shutdown) => return,
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
