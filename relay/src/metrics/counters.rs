//! The relay's counters and their Prometheus text exposition.
//!
//! Metrics are aggregate counts only: no mailbox ids, no addresses.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use enlace_protocol::command::RelayError;

use crate::store::Store;

/// Refusals the relay counts that no client is answered with: connection
/// attempts turned away before a handshake, and connections closed for
/// their host's failed checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Past the connection limit, per host or in total.
    ConnectionLimit,
    /// Past the host's new-connection rate.
    ConnectionRate,
    /// The host's failed-check budget ran out.
    HostFailedChecks,
}

impl Refusal {
    /// Every one, in the order they are counted after the errors.
    const ALL: [Self; 3] = [
        Self::ConnectionLimit,
        Self::ConnectionRate,
        Self::HostFailedChecks,
    ];

    /// Its `reason` label.
    fn label(self) -> &'static str {
        match self {
            Self::ConnectionLimit => "connection_limit",
            Self::ConnectionRate => "connection_rate",
            Self::HostFailedChecks => "host_failed_checks",
        }
    }
}

/// Refusal reasons counted: every [`RelayError`] in code order, then the
/// relay's own [`Refusal`]s.
const REASONS: usize = RelayError::ALL.len() + Refusal::ALL.len();

/// The `reason` label of counter `i`: an error's documented name with `_`
/// for spaces (`unknown_mailbox`), or a [`Refusal`]'s label. Operators'
/// dashboards use these: they stay as they are.
struct Label(usize);

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match RelayError::ALL.get(self.0) {
            Some(e) => e.name().split(' ').enumerate().try_for_each(|(i, word)| {
                if i > 0 {
                    f.write_str("_")?;
                }
                f.write_str(word)
            }),
            None => {
                let relay_only = self.0.saturating_sub(RelayError::ALL.len());
                f.write_str(Refusal::ALL.get(relay_only).map_or("", |r| r.label()))
            }
        }
    }
}

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
    /// Refusals by reason (see [`Label`]).
    rejections: [AtomicU64; REASONS],
}

impl Metrics {
    fn count(&self, i: usize) {
        if let Some(c) = self.rejections.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a refusal of the relay's own.
    pub fn reject(&self, refusal: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == refusal) {
            self.count(RelayError::ALL.len() + i);
        }
    }

    /// Counts a refusal sent to a client (an error code this relay does
    /// not know counts as `internal`).
    pub fn reject_error(&self, e: &RelayError) {
        let known = RelayError::ALL.iter().position(|a| a.code() == e.code());
        let internal = RelayError::ALL
            .iter()
            .position(|a| *a == RelayError::Internal);
        if let Some(i) = known.or(internal) {
            self.count(i);
        }
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
        for (i, count) in self.rejections.iter().enumerate() {
            let _ = writeln!(
                out,
                "enlace_rejections_total{{reason=\"{}\"}} {}",
                Label(i),
                count.load(Ordering::Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The labels operators' dashboards use: the sixteen that were written
    /// out by hand before they were derived from the error table. (The
    /// exposition lists them in this order now: error codes first, then
    /// the relay's own reasons; before, `connection_limit` came after
    /// `unknown_command`. Prometheus does not depend on line order.)
    #[test]
    fn rejection_labels_stay_what_dashboards_use() {
        let labels: Vec<String> = (0..REASONS).map(|i| Label(i).to_string()).collect();
        assert_eq!(
            labels,
            [
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
                "not_own_client",
                "forward_queue_full",
                "unreachable",
                "connection_limit",
                "connection_rate",
                "host_failed_checks",
            ]
        );
    }

    #[test]
    fn refusals_are_counted_under_their_label() {
        let m = Metrics::default();
        m.reject_error(&RelayError::UnknownMailbox);
        m.reject_error(&RelayError::RateLimited {
            retry_after_secs: 9,
        });
        m.reject_error(&RelayError::Other(999));
        m.reject(Refusal::HostFailedChecks);
        let counted: Vec<(String, u64)> = m
            .rejections
            .iter()
            .enumerate()
            .map(|(i, c)| (Label(i).to_string(), c.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let expected = [
            ("rate_limited", 1),
            ("internal", 1),
            ("unknown_mailbox", 1),
            ("host_failed_checks", 1),
        ];
        for (label, n) in expected {
            assert!(
                counted.contains(&(label.to_owned(), n)),
                "{label}: {counted:?}"
            );
        }
        assert_eq!(counted.len(), expected.len());
    }
}
