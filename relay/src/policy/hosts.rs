//! Allowances per host, shared by all of a host's connections and
//! outliving them, so reconnecting earns nothing (docs/protocol.md 7.6):
//! mailbox creations, failed signature checks and new connections.
//!
//! A host is an IPv4 address or an IPv6 /64 ([`limit_key`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;

use super::admission::Admission;
use super::allowance::CREATE_REFILL_SECS;
use super::bucket::{Rate, TokenBucket};

/// Mailboxes all connections from one host (IPv4 address or IPv6 /64) may
/// create in a burst: a household or office behind one NAT, not a client
/// that reconnects to get a fresh per-connection burst each time.
pub const HOST_CREATE_BURST: u32 = 64;
/// Hosts whose creation buckets are remembered before full (idle) ones are
/// forgotten; a forgotten bucket is the same as a new one.
pub(crate) const HOST_TABLE_PRUNE_AT: usize = 4096;
/// Hosts whose failed-check and connection buckets are remembered before
/// fresh ones (full, not refusing) are forgotten.
pub(crate) const HOST_RATE_PRUNE_AT: usize = 4096;
/// Connection attempts a blocked host is answered `CONNECTION_REFUSED` per
/// second; the rest are dropped unanswered, so a host that keeps trying
/// does not make the relay send a packet per attempt.
pub const REFUSALS_PER_SEC: u32 = 8;

/// Failed signature checks one host (IPv4 address or IPv6 /64) may make
/// in a burst: four connections' worth of [`MAX_AUTH_FAILURES`], more than
/// a household of honest clients with a wrong key ever fails.
///
/// [`MAX_AUTH_FAILURES`]: super::standing::MAX_AUTH_FAILURES
pub const DEFAULT_HOST_FAILED_CHECKS: u32 = 64;
/// Seconds to earn one more failed check per host.
pub const DEFAULT_HOST_FAILED_CHECK_REFILL_SECS: u64 = 10;
/// New connections one host may open in a burst: 64 organizers behind one
/// NAT reconnect at once after a network change.
pub const DEFAULT_HOST_NEW_CONNECTIONS: u32 = 64;
/// New connections per second per host, past the burst: a busy NAT, and a
/// client opening a connection per request, both stay far below it.
pub const DEFAULT_HOST_NEW_CONNECTIONS_PER_SEC: u32 = 20;

/// The host's creations: [`HOST_CREATE_BURST`], one more per
/// [`CREATE_REFILL_SECS`] (seconds).
const HOST_CREATES: Rate = Rate::new(HOST_CREATE_BURST, CREATE_REFILL_SECS);

/// The address a connection counts against for the per-host limits: an
/// IPv4 address (also when it arrives IPv4-mapped on a dual-stack socket),
/// or the /64 of an IPv6 address, since one host is routinely given a whole
/// /64 and could otherwise take every slot with addresses of its own.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

/// Per-host allowances across connections (see docs/protocol.md 7.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostPolicy {
    /// Failed signature checks a host's connections may make in a burst.
    pub failed_checks: u32,
    /// Milliseconds to earn one more failed check.
    pub failed_check_refill_ms: u64,
    /// New connections a host may open in a burst.
    pub new_connections: u32,
    /// Milliseconds to earn one more new connection.
    pub new_connection_refill_ms: u64,
}

impl Default for HostPolicy {
    fn default() -> Self {
        Self {
            failed_checks: DEFAULT_HOST_FAILED_CHECKS,
            failed_check_refill_ms: DEFAULT_HOST_FAILED_CHECK_REFILL_SECS * 1000,
            new_connections: DEFAULT_HOST_NEW_CONNECTIONS,
            new_connection_refill_ms: 1000 / u64::from(DEFAULT_HOST_NEW_CONNECTIONS_PER_SEC),
        }
    }
}

impl HostPolicy {
    /// Failed checks, in milliseconds.
    fn failures(&self) -> Rate {
        Rate::new(self.failed_checks, self.failed_check_refill_ms)
    }

    /// New connections, in milliseconds.
    fn connections(&self) -> Rate {
        Rate::new(self.new_connections, self.new_connection_refill_ms)
    }
}

/// Allowances per host, shared by all of a host's connections and
/// outliving them, so reconnecting earns nothing.
#[derive(Debug, Default)]
pub struct HostLimits {
    creates: Mutex<HostTable>,
    rates: Mutex<RateTable>,
    policy: HostPolicy,
}

#[derive(Debug, Default)]
struct HostTable {
    buckets: HashMap<IpAddr, TokenBucket>,
    /// Size at which full buckets are next pruned; doubles when pruning
    /// frees little, so the scan stays amortized O(1) per creation.
    prune_at: usize,
}

#[derive(Debug, Default)]
struct RateTable {
    hosts: HashMap<IpAddr, HostRates>,
    /// As [`HostTable::prune_at`].
    prune_at: usize,
}

/// One host's failed-check and new-connection buckets (milliseconds).
#[derive(Debug)]
struct HostRates {
    failures: TokenBucket,
    connections: TokenBucket,
    /// Start (ms) of the second whose refusals `refused` counts.
    refused_since: u64,
    refused: u32,
}

impl HostRates {
    fn new(policy: &HostPolicy, now_ms: u64) -> Self {
        Self {
            failures: TokenBucket::full(policy.failures(), now_ms),
            connections: TokenBucket::full(policy.connections(), now_ms),
            refused_since: now_ms,
            refused: 0,
        }
    }

    /// Equal to a fresh entry at `now_ms`: both buckets full.
    fn is_fresh(&mut self, policy: &HostPolicy, now_ms: u64) -> bool {
        self.failures.refill(policy.failures(), now_ms);
        self.connections.refill(policy.connections(), now_ms);
        self.failures.tokens() >= policy.failed_checks
            && self.connections.tokens() >= policy.new_connections
    }

    /// Refuse, or past [`REFUSALS_PER_SEC`] this second, ignore.
    fn refuse(&mut self, now_ms: u64) -> Admission {
        if now_ms.saturating_sub(self.refused_since) >= 1000 {
            self.refused_since = now_ms;
            self.refused = 0;
        }
        self.refused = self.refused.saturating_add(1);
        if self.refused > REFUSALS_PER_SEC {
            Admission::Ignore
        } else {
            Admission::Refuse
        }
    }
}

impl HostLimits {
    /// Limits with `policy` for failed checks and new connections.
    pub fn new(policy: HostPolicy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// Takes one creation token for `host` at `now` (seconds), or says how
    /// long to wait.
    pub fn take_create(&self, host: IpAddr, now: u64) -> Result<(), u32> {
        let mut table = self.creates.lock().unwrap_or_else(|p| p.into_inner());
        let table = &mut *table;
        if table.buckets.len() >= table.prune_at.max(HOST_TABLE_PRUNE_AT) {
            // A bucket that has refilled completely equals a fresh one.
            table.buckets.retain(|_, b| !b.is_full(HOST_CREATES, now));
            table.prune_at = table.buckets.len().saturating_mul(2);
        }
        table
            .buckets
            .entry(host)
            .or_insert_with(|| TokenBucket::full(HOST_CREATES, now))
            .take(HOST_CREATES, now)
    }

    /// `f` over `host`'s entry, created fresh if absent; prunes fresh
    /// entries first when the table has grown.
    fn with_rates<T>(&self, host: IpAddr, now_ms: u64, f: impl FnOnce(&mut HostRates) -> T) -> T {
        let mut table = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let table = &mut *table;
        let policy = &self.policy;
        if table.hosts.len() >= table.prune_at.max(HOST_RATE_PRUNE_AT) {
            table.hosts.retain(|_, h| !h.is_fresh(policy, now_ms));
            table.prune_at = table.hosts.len().saturating_mul(2);
        }
        let entry = table
            .hosts
            .entry(host)
            .or_insert_with(|| HostRates::new(policy, now_ms));
        f(entry)
    }

    /// Counts a failed signature check against `host`; false once the host
    /// has none left (its failing connection is then closed).
    pub fn fail_check(&self, host: IpAddr, now_ms: u64) -> bool {
        let p = self.policy;
        self.with_rates(host, now_ms, |h| {
            h.failures.refill(p.failures(), now_ms);
            match h.failures.spend() {
                Some(left) => left > 0,
                None => false,
            }
        })
    }

    /// Decides on a new connection from `host` (whose address is
    /// `validated` by a Retry round trip or not), taking a new-connection
    /// token when it is admitted.
    pub fn admit(&self, host: IpAddr, now_ms: u64, validated: bool) -> Admission {
        let p = self.policy;
        self.with_rates(host, now_ms, |h| {
            h.failures.refill(p.failures(), now_ms);
            h.connections.refill(p.connections(), now_ms);
            // A host out of failed checks is still admitted: each of its
            // connections is closed at its first failure (`fail_check`), so
            // it pays a handshake per failure, while its neighbours behind
            // the same address (a workplace network, a carrier NAT) who fail
            // nothing keep connecting. Refusing the host would let one
            // attacker there lock them all out.
            if h.connections.tokens() == 0 {
                return h.refuse(now_ms);
            }
            if !validated && h.connections.tokens() <= p.new_connections / 2 {
                return Admission::Retry;
            }
            h.connections.spend();
            Admission::Accept
        })
    }

    /// Hosts in the failed-check/new-connection table.
    pub fn tracked_hosts(&self) -> usize {
        self.rates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .hosts
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn policy() -> HostPolicy {
        HostPolicy {
            failed_checks: 4,
            failed_check_refill_ms: 1_000,
            new_connections: 8,
            new_connection_refill_ms: 100,
        }
    }

    #[test]
    fn the_host_table_is_pruned_of_full_buckets_only() {
        let hosts = HostLimits::default();
        let n = HOST_TABLE_PRUNE_AT + 10;
        for i in 0..n {
            let ip = IpAddr::V6(std::net::Ipv6Addr::from_bits((i as u128) << 64));
            hosts.take_create(ip, NOW).unwrap();
        }
        // Nothing was full yet: all kept, and the next prune is further out.
        let table = hosts.creates.lock().unwrap();
        assert_eq!(table.buckets.len(), n);
        assert!(table.prune_at >= 2 * HOST_TABLE_PRUNE_AT);
        drop(table);
        // Long after, every old bucket is full again and is forgotten.
        let later = NOW + u64::from(HOST_CREATE_BURST) * CREATE_REFILL_SECS;
        for i in 0..(2 * HOST_TABLE_PRUNE_AT) {
            let ip = IpAddr::V6(std::net::Ipv6Addr::from_bits(((n + i) as u128) << 64));
            hosts.take_create(ip, later).unwrap();
        }
        assert!(hosts.creates.lock().unwrap().buckets.len() < n + HOST_TABLE_PRUNE_AT);
    }

    #[test]
    fn a_host_out_of_failed_checks_is_still_admitted_and_fails_one_at_a_time() {
        let hosts = HostLimits::new(policy());
        let (bad, other): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t = 5_000_000;
        assert!(hosts.fail_check(bad, t));
        assert!(hosts.fail_check(bad, t));
        assert!(hosts.fail_check(bad, t));
        // The fourth uses the budget up: that connection is closed, and so
        // is every connection of the host at its first failure until one
        // is earned back.
        assert!(!hosts.fail_check(bad, t));
        assert!(!hosts.fail_check(bad, t));
        // Neighbours behind the same address who fail nothing still
        // connect (only the new-connection rate limits them).
        assert_eq!(hosts.admit(bad, t, true), Admission::Accept);
        assert_eq!(hosts.admit(other, t, true), Admission::Accept);
        assert!(!hosts.fail_check(bad, t + 999));
        // One earned back after the refill time, then spent at once.
        assert!(!hosts.fail_check(bad, t + 1_999));
        assert!(!hosts.fail_check(bad, t + 2_000));
        assert!(hosts.fail_check(bad, t + 10_000));
    }

    #[test]
    fn refusals_past_a_few_per_second_are_dropped_unanswered() {
        let hosts = HostLimits::new(HostPolicy {
            new_connection_refill_ms: 60_000,
            ..policy()
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t = 5_000_000;
        for _ in 0..8 {
            assert_eq!(hosts.admit(ip, t, true), Admission::Accept);
        }
        for _ in 0..REFUSALS_PER_SEC {
            assert_eq!(hosts.admit(ip, t, true), Admission::Refuse);
        }
        assert_eq!(hosts.admit(ip, t + 10, true), Admission::Ignore);
        // A new second: refused (answered) again.
        assert_eq!(hosts.admit(ip, t + 1_010, true), Admission::Refuse);
    }

    #[test]
    fn new_connections_past_the_burst_are_refused_and_past_half_need_a_retry() {
        let hosts = HostLimits::new(policy());
        let (ip, other): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t = 5_000_000;
        for _ in 0..4 {
            assert_eq!(hosts.admit(ip, t, false), Admission::Accept);
        }
        // Half the burst is left: unvalidated (maybe spoofed) attempts get
        // a Retry and take no token, validated ones go on.
        for _ in 0..100 {
            assert_eq!(hosts.admit(ip, t, false), Admission::Retry);
        }
        for _ in 0..4 {
            assert_eq!(hosts.admit(ip, t, true), Admission::Accept);
        }
        assert_eq!(hosts.admit(ip, t, true), Admission::Refuse);
        assert_eq!(hosts.admit(other, t, false), Admission::Accept);
        // One more per 100 ms.
        assert_eq!(hosts.admit(ip, t + 100, true), Admission::Accept);
        assert_eq!(hosts.admit(ip, t + 150, true), Admission::Refuse);
    }

    #[test]
    fn the_host_rate_table_is_pruned_of_fresh_entries_only() {
        let hosts = HostLimits::new(policy());
        let t = 5_000_000;
        let ip = |i: usize| IpAddr::V6(std::net::Ipv6Addr::from_bits((i as u128) << 64));
        let n = HOST_RATE_PRUNE_AT + 10;
        for i in 0..n {
            hosts.fail_check(ip(i), t);
        }
        // Nothing has refilled: all kept, and the next prune is further out.
        assert_eq!(hosts.tracked_hosts(), n);
        assert!(hosts.rates.lock().unwrap().prune_at >= 2 * HOST_RATE_PRUNE_AT);
        // A host still refused is remembered across a prune.
        for _ in 0..4 {
            hosts.fail_check(ip(0), t);
        }
        // Once refilled, the old entries equal fresh ones and are forgotten.
        let later = t + 1_000;
        for i in 0..(2 * HOST_RATE_PRUNE_AT) {
            hosts.admit(ip(n + i), later, true);
        }
        assert!(hosts.tracked_hosts() < n + HOST_RATE_PRUNE_AT);
        assert!(hosts.rates.lock().unwrap().hosts.contains_key(&ip(0)));
    }

    #[test]
    fn connection_limits_count_ipv6_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limit_key(a), limit_key(b));
        assert_ne!(limit_key(a), limit_key(other));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let mapped_other: IpAddr = "::ffff:192.0.2.8".parse().unwrap();
        assert_eq!(limit_key(mapped), v4);
        assert_ne!(limit_key(mapped), limit_key(mapped_other));
    }
}
