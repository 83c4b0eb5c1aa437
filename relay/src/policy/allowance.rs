//! A connection's own allowances (docs/protocol.md 7.7): unsigned
//! first-contact sends, mailbox creations, and the other relays it may
//! name. Mailbox creations also count against the host's allowance
//! ([`super::hosts::HostLimits::take_create`]).

use super::bucket::{Rate, TokenBucket};

/// Unsigned (first-contact) sends one connection may burst.
pub const FIRST_CONTACT_BURST: u32 = 4;
/// Seconds to earn one more unsigned send on a connection.
pub const FIRST_CONTACT_REFILL_SECS: u64 = 15;
/// Mailboxes one connection may create in a burst: a new member sets up a
/// handful (one per contact and a spare relay), not thousands.
pub const CREATE_BURST: u32 = 16;
/// Seconds to earn one more mailbox creation on a connection; with the
/// burst this bounds how fast one connection can grow the database.
pub const CREATE_REFILL_SECS: u64 = 10;
/// Distinct relay addresses one connection may name per
/// [`DESTINATION_WINDOW_SECS`]: each makes this relay send QUIC handshakes
/// there, so a client cannot aim it at many hosts (128: twice the
/// fan-out of a full 64-member nucleus whose members all use other relays).
pub const MAX_DESTINATIONS_PER_CONN: usize = 128;
/// The window of [`MAX_DESTINATIONS_PER_CONN`].
pub const DESTINATION_WINDOW_SECS: u64 = 600;

const FIRST_CONTACTS: Rate = Rate::new(FIRST_CONTACT_BURST, FIRST_CONTACT_REFILL_SECS);
const CREATES: Rate = Rate::new(CREATE_BURST, CREATE_REFILL_SECS);

/// One connection's allowances; times are Unix seconds. Each refusal says
/// how many seconds to wait.
#[derive(Debug)]
pub struct Allowances {
    first_contact: TokenBucket,
    creates: TokenBucket,
    /// Other relays' addresses (encoded) this connection named in
    /// `FetchRelayKey` or `Forward`, with when each was first named.
    destinations: Vec<(Vec<u8>, u64)>,
}

impl Allowances {
    /// Full allowances of a connection opened at `now`.
    pub fn new(now: u64) -> Self {
        Self {
            first_contact: TokenBucket::full(FIRST_CONTACTS, now),
            creates: TokenBucket::full(CREATES, now),
            destinations: Vec::new(),
        }
    }

    /// Takes one unsigned-send token.
    pub fn take_first_contact(&mut self, now: u64) -> Result<(), u32> {
        self.first_contact.take(FIRST_CONTACTS, now)
    }

    /// Takes one mailbox-creation token (the connection's own; the host's
    /// is taken apart).
    pub fn take_create(&mut self, now: u64) -> Result<(), u32> {
        self.creates.take(CREATES, now)
    }

    /// Notes that the connection names relay `address` (encoded); refuses
    /// a new one past [`MAX_DESTINATIONS_PER_CONN`] in the window.
    pub fn note_destination(&mut self, address: &[u8], now: u64) -> Result<(), u32> {
        self.destinations
            .retain(|(_, t)| t.saturating_add(DESTINATION_WINDOW_SECS) > now);
        if self.destinations.iter().any(|(a, _)| a == address) {
            return Ok(());
        }
        if self.destinations.len() >= MAX_DESTINATIONS_PER_CONN {
            let oldest = self
                .destinations
                .iter()
                .map(|(_, t)| *t)
                .min()
                .unwrap_or(now);
            let wait = oldest
                .saturating_add(DESTINATION_WINDOW_SECS)
                .saturating_sub(now)
                .max(1);
            return Err(u32::try_from(wait).unwrap_or(u32::MAX));
        }
        self.destinations.push((address.to_vec(), now));
        Ok(())
    }
}
