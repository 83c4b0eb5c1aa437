//! The limits the request logic enforces, with their defaults.

/// Default per-mailbox quota: a week of steady chat for a busy member
/// without letting one mailbox fill the disk.
pub const DEFAULT_QUOTA: u32 = 128;
/// Default envelope lifetime: 21 days, long enough to ride out a seized or
/// offline phone, short enough that a seized relay holds little history.
pub const DEFAULT_TTL_SECS: u64 = 21 * 24 * 3600;
/// Envelopes an unsecured mailbox accepts without a signature check: the
/// first contact needs one (a handshake), a few more cover retries; anyone
/// holding the send id could otherwise fill the mailbox before it is secured.
pub const FIRST_CONTACT_LIMIT: u32 = 8;
/// Forwards queued for one destination relay: a few days of a busy
/// nucleus's traffic to a blocked relay, small enough that one client
/// cannot fill the disk through one destination.
pub const DEFAULT_FORWARD_QUEUE_LIMIT: u32 = 4096;
/// Forwards queued for all destinations together (an own client could
/// otherwise name many made-up destinations): about 280 MiB of small ones.
pub const FORWARD_QUEUE_TOTAL: u64 = 131_072;
/// Seconds a forward's final state (stored, refused, expired) is kept for
/// status queries: a client offline for a week still learns it.
pub const FORWARD_STATUS_KEEP_SECS: u64 = 7 * 24 * 3600;
/// Lifetime of a signed relay key bundle: clients may cache it this long.
pub const RELAY_KEY_VALIDITY_SECS: u64 = 30 * 24 * 3600;

/// Limits the core enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Envelopes per mailbox.
    pub quota: u32,
    /// Envelope lifetime from its arrival at this relay; also how long a
    /// forward waits in the queue.
    pub ttl_secs: u64,
    /// Unsigned envelopes per unsecured mailbox.
    pub first_contact_limit: u32,
    /// Forwards queued per destination relay.
    pub forward_queue_limit: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            quota: DEFAULT_QUOTA,
            ttl_secs: DEFAULT_TTL_SECS,
            first_contact_limit: FIRST_CONTACT_LIMIT,
            forward_queue_limit: DEFAULT_FORWARD_QUEUE_LIMIT,
        }
    }
}
