//! Open connections to relays, one per relay, for the length of one
//! command.

use std::collections::{HashMap, HashSet};

use enlace_protocol::address::RelayAddress;
use enlace_quic::{RelayConnection, TransportError, VerifiedRelayKey};

use crate::error::Error;

/// The relay's reason, if it refused; `None` if it could not be reached.
pub(crate) fn relay_error(e: &TransportError) -> Option<String> {
    match e {
        TransportError::Relay(r) => Some(r.to_string()),
        _ => None,
    }
}

/// A failed relay command as the client's error: refused or unreachable.
pub(crate) fn refused(e: &TransportError) -> Error {
    relay_error(e).map_or(Error::RelayUnreachable { queued: 0 }, Error::RelayRefused)
}

/// Open connections, one per relay. A relay that could not be reached is
/// not tried again by the same command (each try can take the whole
/// connect timeout).
#[derive(Default)]
pub(crate) struct Relays {
    conns: HashMap<RelayAddress, RelayConnection>,
    unreachable: HashSet<RelayAddress>,
    /// Connections that proved they hold a mailbox on that relay, so it
    /// forwards for them.
    proven: HashSet<RelayAddress>,
    /// Verified forwarding keys of destination relays.
    keys: HashMap<RelayAddress, VerifiedRelayKey>,
}

impl Relays {
    /// The connection to `relay`, made if there is none yet.
    pub(crate) async fn get(&mut self, relay: &RelayAddress) -> Result<&RelayConnection, Error> {
        if self.unreachable.contains(relay) {
            return Err(Error::RelayUnreachable { queued: 0 });
        }
        if !self.conns.contains_key(relay) {
            let Ok(conn) = RelayConnection::connect(relay).await else {
                self.unreachable.insert(relay.clone());
                return Err(Error::RelayUnreachable { queued: 0 });
            };
            self.conns.insert(relay.clone(), conn);
        }
        self.conns
            .get(relay)
            .ok_or(Error::RelayUnreachable { queued: 0 })
    }

    /// Drops the connection to `relay` (it broke); the next use reconnects.
    pub(crate) fn forget(&mut self, relay: &RelayAddress) {
        self.conns.remove(relay);
        self.proven.remove(relay);
    }

    /// Whether this command's connection to `relay` proved it is one of
    /// the relay's own clients.
    pub(crate) fn is_proven(&self, relay: &RelayAddress) -> bool {
        self.proven.contains(relay)
    }

    /// The connection to `relay` proved it is one of its clients.
    pub(crate) fn mark_proven(&mut self, relay: &RelayAddress) {
        self.proven.insert(relay.clone());
    }

    /// A forwarding key of `relay` fetched earlier, if still valid at `now`.
    pub(crate) fn forward_key(&self, relay: &RelayAddress, now: u64) -> Option<VerifiedRelayKey> {
        self.keys.get(relay).filter(|k| k.expires > now).copied()
    }

    /// Keeps a forwarding key of `relay`.
    pub(crate) fn keep_forward_key(&mut self, relay: &RelayAddress, key: VerifiedRelayKey) {
        self.keys.insert(relay.clone(), key);
    }

    /// Closes every connection.
    pub(crate) async fn close(self) {
        for (_, conn) in self.conns {
            conn.close().await;
        }
    }
}
