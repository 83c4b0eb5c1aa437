//! Where a connection stands (docs/protocol.md 7.6 and 7.6.1): which lane
//! its requests take ([`Standing`]), and whether a budget that closes it
//! (code 3) is spent ([`Tally::over_budget`]).
//!
//! The live counts ([`Counters`]) are atomics: a connection's streams read
//! them concurrently, also from the nice-19 thread, which must take no lock
//! that others wait on. The rules are pure functions of one reading of
//! them ([`Tally`]), so each decision sees one consistent set of counts.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Signature checks a connection's requests may fail (a signature that does
/// not verify, a command signed for another connection) before the relay
/// closes it: each costs a signature check, and an honest client fails one
/// only by mistake. Other `Auth` refusals (a used-up first-contact
/// allowance, which anyone knowing a send id can cause) do not count, nor
/// does the `Send` inside a `RelayDeliver` (a home relay forwards what its
/// clients sealed, bad or not; closing its connection would delay everyone
/// else's forwards). Checked before each request's check, so a connection
/// fails at most this many plus one per stream whose check was already
/// under way (at most `MAX_STREAMS` - 1 more).
pub const MAX_AUTH_FAILURES: u32 = 16;
/// The same budget for a connection none of whose checks has passed yet:
/// an honest client's first requests fail only by a mistake, which a few
/// cover, while an attacker's connection pays its handshake for this many
/// checks instead of [`MAX_AUTH_FAILURES`].
pub const UNPROVEN_MAX_AUTH_FAILURES: u32 = 8;
/// Failed forwarded deliveries (`RelayDeliver`) after which a connection
/// is served in the low-priority lane (see [`Tally::is_proven`]), unless
/// its passed ones keep up (see [`RELAYED_FAILURES_PER_PASS`]).
pub const RELAYED_FAILURES_DEMOTE: u32 = 64;
/// Failed forwarded deliveries a connection may have per one whose
/// signature check passed before it is demoted: a home relay carrying its
/// honest clients' forwards along with one client's garbage stays in the
/// proven lane (demoting it would queue every honest forward it carries
/// behind unproven strangers), while garbage costs the sender at least
/// one valid signed send per this many.
pub const RELAYED_FAILURES_PER_PASS: u32 = 8;
/// `Forward`s of one connection the destination refused `auth` after
/// which the home relay closes the connection (code 3), unless more than
/// one in [`RELAYED_FAILURES_PER_PASS`] + 1 of its forwards were stored:
/// see [`Tally::forwards_over_budget`].
pub const MAX_REFUSED_FORWARDS: u32 = 16;

/// Which lane a connection's requests take (docs/protocol.md 7.6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// A check passed and none failed ([`Tally::is_proven`]): no queue.
    Proven,
    /// Not proven, not suspect: newcomers, first-contact senders, and
    /// connections that passed a check and failed one later. They queue
    /// one request at a time, at normal priority.
    Unproven,
    /// None of its checks ever passed, and it failed something
    /// ([`Tally::is_suspect`]): a queue of its own, checked on the nice-19
    /// thread.
    Suspect,
}

/// One reading of a connection's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Signature checks the connection's own requests failed.
    pub failed_checks: u32,
    /// A check of the connection's own requests passed.
    pub passed_check: bool,
    /// The host's failed-check budget ran out on one of its failures.
    pub host_exhausted: bool,
    /// Forwarded deliveries that failed to open or to verify.
    pub failed_relayed: u32,
    /// Forwarded signed `Send`s that passed and were stored anew.
    pub passed_relayed: u32,
    /// Its `Forward`s the destination refused `auth`.
    pub refused_forwards: u32,
    /// Its `Forward`s the destination stored.
    pub stored_forwards: u32,
}

impl Tally {
    /// True once a signature check of the connection's own requests
    /// passed and none failed: its requests then skip the driver's
    /// low-priority gate. Proof of possession when creating a mailbox, a
    /// recipient command, a signed `Send` (also inside a `RelayDeliver`)
    /// prove a connection; an unsigned first-contact `Send` does not.
    /// A connection on which [`RELAYED_FAILURES_DEMOTE`] forwarded
    /// deliveries failed, more than [`RELAYED_FAILURES_PER_PASS`] per one
    /// that passed, is not proven either.
    pub fn is_proven(&self) -> bool {
        self.passed_check
            && self.failed_checks == 0
            && (self.failed_relayed < RELAYED_FAILURES_DEMOTE
                || self.failed_relayed
                    <= self
                        .passed_relayed
                        .saturating_mul(RELAYED_FAILURES_PER_PASS))
    }

    /// True if none of the connection's checks ever passed and it failed
    /// something: a signature check of its own, or a forwarded delivery.
    /// Its requests then wait in a queue of their own, checked at the
    /// lowest CPU priority, apart from connections that only have not
    /// proven themselves yet (newcomers, first-contact senders). A
    /// connection that passed a check and then failed one (an honest
    /// member whose sends a malicious contact's re-secured mailbox refuses,
    /// a home relay demoted for its clients' garbage) is not proven any
    /// more but not suspect either: it waits with the newcomers, at normal
    /// priority.
    pub fn is_suspect(&self) -> bool {
        !self.passed_check && (self.failed_checks > 0 || self.failed_relayed > 0)
    }

    /// The lane.
    pub fn standing(&self) -> Standing {
        if self.is_proven() {
            Standing::Proven
        } else if self.is_suspect() {
            Standing::Suspect
        } else {
            Standing::Unproven
        }
    }

    /// True once [`MAX_REFUSED_FORWARDS`] of the connection's `Forward`s
    /// were refused `auth` by their destination, more than
    /// [`RELAYED_FAILURES_PER_PASS`] per one stored: its client seals
    /// blobs that do not open, or signs with keys the mailboxes do not
    /// hold. The driver then closes it (code 3), so an own client's garbage
    /// costs it a handshake and a proof of ownership per 16, not only the
    /// destination. Neither its priority nor its host's budget is touched:
    /// the destination is the one that says `auth`, and a hostile one must
    /// not be able to push this relay's honest clients, or their
    /// neighbours behind the same address, into the slow lane; an honest
    /// client whose forwards to one destination all come back `auth` (a
    /// used-up first-contact allowance answers `auth` too) loses this
    /// connection after 16 of them unless others get through.
    pub fn forwards_over_budget(&self) -> bool {
        self.refused_forwards >= MAX_REFUSED_FORWARDS
            && self.refused_forwards
                > self
                    .stored_forwards
                    .saturating_mul(RELAYED_FAILURES_PER_PASS)
    }

    /// True once the connection is to be closed (code 3): its own failed
    /// checks reached [`MAX_AUTH_FAILURES`] ([`UNPROVEN_MAX_AUTH_FAILURES`]
    /// if none of its checks passed), its host's failed-check budget ran
    /// out on one of them, or too many of its forwards were refused `auth`
    /// ([`Tally::forwards_over_budget`]).
    pub fn over_budget(&self) -> bool {
        self.failed_checks >= MAX_AUTH_FAILURES
            || (self.failed_checks >= UNPROVEN_MAX_AUTH_FAILURES && !self.passed_check)
            || self.host_exhausted
            || self.forwards_over_budget()
    }
}

/// A connection's live counts (see the module documentation).
#[derive(Debug, Default)]
pub struct Counters {
    failed_checks: AtomicU32,
    passed_check: AtomicBool,
    host_exhausted: AtomicBool,
    failed_relayed: AtomicU32,
    /// Failed checks not yet charged to the host (see [`Counters::take_uncharged`]).
    uncharged: AtomicU32,
    passed_relayed: AtomicU32,
    refused_forwards: AtomicU32,
    stored_forwards: AtomicU32,
}

impl Counters {
    /// The counts now.
    pub fn tally(&self) -> Tally {
        Tally {
            failed_checks: self.failed_checks.load(Ordering::SeqCst),
            passed_check: self.passed_check.load(Ordering::SeqCst),
            host_exhausted: self.host_exhausted.load(Ordering::SeqCst),
            failed_relayed: self.failed_relayed.load(Ordering::SeqCst),
            passed_relayed: self.passed_relayed.load(Ordering::SeqCst),
            refused_forwards: self.refused_forwards.load(Ordering::SeqCst),
            stored_forwards: self.stored_forwards.load(Ordering::SeqCst),
        }
    }

    /// A failed signature check of the connection's own, also to be
    /// charged to its host.
    pub fn failed_check(&self) {
        self.failed_checks.fetch_add(1, Ordering::SeqCst);
        self.uncharged.fetch_add(1, Ordering::SeqCst);
    }

    /// A signature check that passed.
    pub fn passed_check(&self) {
        self.passed_check.store(true, Ordering::SeqCst);
    }

    /// A forwarded delivery that failed.
    pub fn failed_relayed(&self) {
        self.failed_relayed.fetch_add(1, Ordering::SeqCst);
    }

    /// A forwarded signed `Send` stored anew.
    pub fn passed_relayed(&self) {
        self.passed_relayed.fetch_add(1, Ordering::SeqCst);
    }

    /// The failed checks counted since the last call, to charge to the host.
    pub fn take_uncharged(&self) -> u32 {
        self.uncharged.swap(0, Ordering::SeqCst)
    }

    /// The host's budget ran out on one of the connection's failures.
    pub fn host_exhausted(&self) {
        self.host_exhausted.store(true, Ordering::SeqCst);
    }

    /// One of the connection's `Forward`s the destination stored.
    pub fn forward_stored(&self) {
        self.stored_forwards.fetch_add(1, Ordering::SeqCst);
    }

    /// One of the connection's `Forward`s the destination refused `auth`.
    pub fn forward_refused(&self) {
        self.refused_forwards.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Today's rules, row by row: a connection's counts, the lane it takes
    /// and whether it is closed.
    #[test]
    fn standing_and_budgets_follow_the_rules_of_protocol_7_6() {
        let none = Tally::default();
        let passed = Tally {
            passed_check: true,
            ..none
        };
        use Standing::{Proven, Suspect, Unproven};
        #[rustfmt::skip]
        let rows: &[(&str, Tally, Standing, bool)] = &[
            ("a newcomer", none, Unproven, false),
            ("a passed check", passed, Proven, false),
            ("stored forwards prove nothing", Tally { stored_forwards: 3, ..none }, Unproven, false),
            ("a failed check, none passed", Tally { failed_checks: 1, ..none }, Suspect, false),
            ("a failed delivery, none passed", Tally { failed_relayed: 1, ..none }, Suspect, false),
            ("passed, then failed one", Tally { failed_checks: 1, ..passed }, Unproven, false),
            ("passed, failed deliveries below the demotion", Tally { failed_relayed: 63, ..passed }, Proven, false),
            ("passed, 64 failed deliveries", Tally { failed_relayed: 64, ..passed }, Unproven, false),
            ("64 failed deliveries, 8 passed", Tally { failed_relayed: 64, passed_relayed: 8, ..passed }, Proven, false),
            ("65 failed deliveries, 8 passed", Tally { failed_relayed: 65, passed_relayed: 8, ..passed }, Unproven, false),
            ("80 failed deliveries, 10 passed", Tally { failed_relayed: 80, passed_relayed: 10, ..passed }, Proven, false),
            ("failed deliveries never close", Tally { failed_relayed: 10_000, ..none }, Suspect, false),
            ("7 failed checks, none passed", Tally { failed_checks: 7, ..none }, Suspect, false),
            ("8 failed checks, none passed", Tally { failed_checks: 8, ..none }, Suspect, true),
            ("15 failed checks after a pass", Tally { failed_checks: 15, ..passed }, Unproven, false),
            ("16 failed checks after a pass", Tally { failed_checks: 16, ..passed }, Unproven, true),
            ("the host's budget ran out", Tally { host_exhausted: true, ..passed }, Proven, true),
            ("15 refused forwards", Tally { refused_forwards: 15, ..passed }, Proven, false),
            ("16 refused forwards, 1 stored", Tally { refused_forwards: 16, stored_forwards: 1, ..passed }, Proven, true),
            ("16 refused forwards, 2 stored", Tally { refused_forwards: 16, stored_forwards: 2, ..passed }, Proven, false),
            ("17 refused forwards, 2 stored", Tally { refused_forwards: 17, stored_forwards: 2, ..passed }, Proven, true),
        ];
        for (what, tally, standing, closed) in rows {
            assert_eq!(tally.standing(), *standing, "{what}");
            assert_eq!(tally.over_budget(), *closed, "{what}");
        }
    }

    #[test]
    fn counters_read_back_as_one_tally() {
        let c = Counters::default();
        c.failed_check();
        c.failed_check();
        c.passed_check();
        c.failed_relayed();
        c.passed_relayed();
        c.forward_refused();
        c.forward_stored();
        c.host_exhausted();
        assert_eq!(
            c.tally(),
            Tally {
                failed_checks: 2,
                passed_check: true,
                host_exhausted: true,
                failed_relayed: 1,
                passed_relayed: 1,
                refused_forwards: 1,
                stored_forwards: 1,
            }
        );
        assert_eq!(c.take_uncharged(), 2);
        assert_eq!(c.take_uncharged(), 0);
    }
}
