//! Whether a new connection gets a slot (docs/protocol.md 7.6,
//! "Connection limits").

/// What to do with a connection attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Give it a slot.
    Accept,
    /// Answer with a QUIC Retry first: the client must prove it receives
    /// packets at its source address before it may take a slot.
    Retry,
    /// Refuse it (`CONNECTION_REFUSED`).
    Refuse,
    /// Drop it unanswered (a host refused many times this second).
    Ignore,
}

/// The decision by connection slots: `host_count` of the host's
/// connections and `total` in all are open, of `max_per_ip` and
/// `max_total`.
///
/// Slots are taken before the handshake and held until it times out, so
/// Initial packets with spoofed source addresses could otherwise fill every
/// slot (or every slot of a victim's address) without ever answering. Once
/// a host or the relay is half full, an address not yet validated by a
/// Retry round trip gets a Retry instead of a slot: spoofed attempts then
/// hold at most half the slots.
pub fn admission(
    host_count: u32,
    total: u64,
    max_per_ip: u32,
    max_total: u32,
    validated: bool,
) -> Admission {
    if host_count >= max_per_ip || total >= u64::from(max_total) {
        return Admission::Refuse;
    }
    if !validated && (host_count >= max_per_ip / 2 || total >= u64::from(max_total / 2)) {
        return Admission::Retry;
    }
    Admission::Accept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unvalidated_addresses_get_a_retry_once_half_the_slots_are_taken() {
        use Admission::*;
        // (host count, total, validated)
        assert_eq!(admission(0, 0, 64, 10_000, false), Accept);
        assert_eq!(admission(31, 0, 64, 10_000, false), Accept);
        assert_eq!(admission(32, 0, 64, 10_000, false), Retry);
        assert_eq!(admission(32, 0, 64, 10_000, true), Accept);
        assert_eq!(admission(0, 5_000, 64, 10_000, false), Retry);
        assert_eq!(admission(0, 5_000, 64, 10_000, true), Accept);
        assert_eq!(admission(64, 0, 64, 10_000, true), Refuse);
        assert_eq!(admission(0, 10_000, 64, 10_000, true), Refuse);
    }
}
