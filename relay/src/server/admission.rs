//! Admission of new connections (docs/protocol.md 7.6): per-host and
//! total slots, taken before the handshake and held until the connection
//! ends; the host's new-connection rate; Retry, refuse or ignore.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::connection::serve_connection;
use super::shared::Shared;
use crate::metrics::Refusal;
use crate::policy::admission::{Admission, admission};
use crate::policy::hosts::limit_key;

/// Decides on one incoming connection: a slot (per host and in total),
/// then the host's new-connection rate; refused ones are counted.
pub(crate) fn accept(shared: &Arc<Shared>, incoming: quinn::Incoming) {
    let ip = limit_key(incoming.remote_address().ip());
    {
        let mut per_ip = shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let total: u64 = shared.metrics.connections.load(Ordering::Relaxed);
        let count = per_ip.entry(ip).or_insert(0);
        let validated = incoming.remote_address_validated();
        let decision = match admission(
            *count,
            total,
            shared.max_per_ip,
            shared.max_connections,
            validated,
        ) {
            Admission::Accept => match shared.hosts.admit(ip, shared.clock.now_ms(), validated) {
                Admission::Accept => Ok(()),
                Admission::Retry => Err((Admission::Retry, Refusal::ConnectionRate)),
                Admission::Refuse => Err((Admission::Refuse, Refusal::ConnectionRate)),
                Admission::Ignore => Err((Admission::Ignore, Refusal::ConnectionRate)),
            },
            // Answered before the host's rates are looked at: a Retry
            // takes no new-connection token.
            other => Err((other, Refusal::ConnectionLimit)),
        };
        if let Err((decision, reason)) = decision {
            if *count == 0 {
                per_ip.remove(&ip);
            }
            drop(per_ip);
            match decision {
                Admission::Retry => {
                    if let Err(e) = incoming.retry() {
                        e.into_incoming().refuse();
                    }
                }
                Admission::Ignore => {
                    shared.metrics.reject(reason);
                    incoming.ignore();
                }
                _ => {
                    shared.metrics.reject(reason);
                    incoming.refuse();
                }
            }
            return;
        }
        *count += 1;
    }
    shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
    let shared = shared.clone();
    // The handshake state is large and only needed until the connection is
    // up: boxed, it is freed then instead of sizing the connection's task.
    let handshake = Box::pin(std::future::IntoFuture::into_future(incoming));
    tokio::spawn(async move {
        let _slot = ConnSlot {
            shared: shared.clone(),
            ip,
        };
        match handshake.await {
            Ok(conn) => serve_connection(shared, conn).await,
            Err(e) => tracing::debug!("handshake failed: {e}"),
        }
    });
}

/// Releases a connection's slot when its task ends.
struct ConnSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.shared
            .metrics
            .connections
            .fetch_sub(1, Ordering::Relaxed);
        let mut per_ip = self.shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = per_ip.get_mut(&self.ip) {
            *c -= 1;
            if *c == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}
