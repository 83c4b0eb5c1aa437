//! One worker's retry times and lanes: per queued forward and per
//! destination address, exponential backoff with jitter, so one bad entry
//! or address delays only itself; which addresses get a lane, and how long
//! the worker may sleep (docs/protocol.md 12.4). Times are arguments.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use enlace_protocol::address::RelayAddress;

/// First retry delay after a failed attempt.
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay: a blocked relay is tried about every five minutes.
pub const RETRY_MAX: Duration = Duration::from_secs(300);
/// Addresses of one destination tried at once; the rest wait for a lane.
pub const MAX_LANES: usize = 64;

/// The retry delay after another failure: doubled, within
/// [`RETRY_MIN`, `RETRY_MAX`].
pub(crate) fn next_delay(delay: Duration) -> Duration {
    delay.saturating_mul(2).clamp(RETRY_MIN, RETRY_MAX)
}

/// A delay drawn from the second half of `delay` (jitter), so relays
/// that lost the same peer do not retry in step.
pub(crate) fn jitter(delay: Duration) -> Duration {
    let half = delay / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// When to try something again, and the delay that led there.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    next: Instant,
    delay: Duration,
}

/// One worker's retry times, in memory: per queued forward (by queue
/// position) and per destination address (encoded). Lost on restart, when
/// everything is tried once again.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    pub(crate) entries: HashMap<u64, Backoff>,
    pub(crate) addresses: HashMap<Vec<u8>, Backoff>,
    /// When each address last answered: those that did within
    /// [`ANSWERED_RECENTLY`] always find a lane.
    pub(crate) answered: HashMap<Vec<u8>, Instant>,
    /// When each address last got a lane: the least recently served go
    /// first (round robin over addresses).
    started: HashMap<Vec<u8>, Instant>,
}

/// Lanes kept for addresses that answered recently (review M-D): forwards
/// to many dead addresses hold at most `MAX_LANES - RESERVED_LANES`.
const RESERVED_LANES: usize = 8;
/// How long an address that answered counts as live.
const ANSWERED_RECENTLY: Duration = Duration::from_secs(3600);

/// Address failures one worker remembers before it drops those that are
/// due anyway.
const MAX_SCHEDULED_ADDRESSES: usize = 4096;

impl Schedule {
    /// Another failure of `key`: doubles its delay, from `now`.
    pub(crate) fn bump<K: std::hash::Hash + Eq>(
        map: &mut HashMap<K, Backoff>,
        key: K,
        now: Instant,
    ) {
        let b = map.entry(key).or_insert(Backoff {
            next: now,
            delay: Duration::ZERO,
        });
        b.delay = next_delay(b.delay);
        b.next = now + jitter(b.delay);
    }

    /// Whether the forward at `seq` to `address` may be tried at `now`.
    pub(crate) fn due(&self, seq: u64, address: &[u8], now: Instant) -> bool {
        let ready = |b: Option<&Backoff>| b.is_none_or(|b| b.next <= now);
        ready(self.entries.get(&seq)) && ready(self.addresses.get(address))
    }

    /// Drops the address failures that are due anyway once there are too
    /// many.
    pub(crate) fn trim(&mut self, now: Instant) {
        if self.addresses.len() > MAX_SCHEDULED_ADDRESSES {
            self.addresses.retain(|_, b| b.next > now);
        }
        let recent = |t: &Instant| now.saturating_duration_since(*t) < ANSWERED_RECENTLY;
        if self.answered.len() > MAX_SCHEDULED_ADDRESSES {
            self.answered.retain(|_, t| recent(t));
        }
        if self.started.len() > MAX_SCHEDULED_ADDRESSES {
            // Forgetting when an address was served only moves it ahead.
            self.started.retain(|_, t| recent(t));
            if self.started.len() > MAX_SCHEDULED_ADDRESSES {
                self.started.clear();
            }
        }
    }

    /// Whether `key` answered within [`ANSWERED_RECENTLY`] of `now`.
    fn live(&self, key: &[u8], now: Instant) -> bool {
        self.answered
            .get(key)
            .is_some_and(|t| now.saturating_duration_since(*t) < ANSWERED_RECENTLY)
    }

    /// The lanes to start out of `candidates` (one per address, all due and
    /// idle): addresses that answered recently first, then those served
    /// least recently, within [`MAX_LANES`] running lanes of which at most
    /// `MAX_LANES - RESERVED_LANES` for addresses not known to answer, so
    /// forwards to many dead addresses cannot take every lane.
    pub(crate) fn choose(
        &mut self,
        candidates: HashMap<Vec<u8>, Run>,
        lanes: &Lanes,
        now: Instant,
    ) -> Vec<(Vec<u8>, Run)> {
        let mut free = MAX_LANES.saturating_sub(lanes.busy.len());
        let unknown_busy = lanes.busy.iter().filter(|k| !self.live(k, now)).count();
        let mut free_unknown = (MAX_LANES - RESERVED_LANES).saturating_sub(unknown_busy);
        let mut candidates: Vec<(Vec<u8>, Run)> = candidates.into_iter().collect();
        candidates.sort_by_key(|(k, run)| {
            (
                !self.live(k, now),
                self.started.get(k).copied(),
                run.seqs.first().copied(),
            )
        });
        let mut chosen = Vec::new();
        for (key, run) in candidates {
            if free == 0 {
                break;
            }
            if !self.live(&key, now) {
                if free_unknown == 0 {
                    continue;
                }
                free_unknown -= 1;
            }
            free -= 1;
            self.started.insert(key.clone(), now);
            chosen.push((key, run));
        }
        chosen
    }

    /// How long until something not yet due at `planned` (when the last
    /// pass planned) becomes due, at least 10 ms, at most [`RETRY_MAX`].
    /// What was due at `planned` either went to a lane or waits for one (its
    /// address is busy, or every lane is): a lane's report wakes the worker
    /// for those, so they must not make it poll (review H-A: a due backoff
    /// of a running lane kept the worker re-reading its queue every 10 ms).
    /// With every lane busy nothing can start before a report.
    pub(crate) fn wait(&self, lanes: &Lanes, planned: Instant, now: Instant) -> Duration {
        if lanes.busy.len() >= MAX_LANES {
            return RETRY_MAX;
        }
        let entries = self
            .entries
            .iter()
            .filter(|(seq, _)| !lanes.given.contains(*seq))
            .map(|(_, b)| b);
        let addresses = self
            .addresses
            .iter()
            .filter(|(key, _)| !lanes.busy.contains(*key))
            .map(|(_, b)| b);
        entries
            .chain(addresses)
            .filter(|b| b.next > planned)
            .map(|b| b.next.saturating_duration_since(now))
            .min()
            .unwrap_or(RETRY_MAX)
            .clamp(Duration::from_millis(10), RETRY_MAX)
    }

    /// Records what a lane found.
    pub(crate) fn apply(&mut self, report: &LaneReport, now: Instant) {
        match report.address {
            AddressOutcome::Answered => {
                self.addresses.remove(&report.key);
                self.answered.insert(report.key.clone(), now);
                self.trim(now);
            }
            AddressOutcome::Failed => {
                Self::bump(&mut self.addresses, report.key.clone(), now);
                self.trim(now);
            }
            AddressOutcome::Untried => {}
        }
        for seq in &report.settled {
            self.entries.remove(seq);
        }
        for seq in &report.failed {
            Self::bump(&mut self.entries, *seq, now);
        }
    }
}

/// Whether a lane reached its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AddressOutcome {
    /// Connected, and every request got an answer.
    Answered,
    /// The connection or a request failed: the address waits.
    Failed,
    /// Shut down before connecting.
    Untried,
}

/// What one lane did with the forwards it was given.
#[derive(Debug)]
pub(crate) struct LaneReport {
    /// The address (encoded).
    pub(crate) key: Vec<u8>,
    /// Every forward the lane was given.
    pub(crate) given: Vec<u64>,
    /// Whether the address answered.
    pub(crate) address: AddressOutcome,
    /// Forwards settled for good (stored, refused).
    pub(crate) settled: Vec<u64>,
    /// Forwards that failed and wait for their own retry time.
    pub(crate) failed: Vec<u64>,
}

/// A worker's running lanes.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    /// Addresses with a lane running.
    pub(crate) busy: HashSet<Vec<u8>>,
    /// Forwards given to a running lane.
    pub(crate) given: HashSet<u64>,
}

impl Lanes {
    pub(crate) fn finish(&mut self, report: &LaneReport) {
        self.busy.remove(&report.key);
        for seq in &report.given {
            self.given.remove(seq);
        }
    }
}

/// A lane to start: one address and the forwards due for it.
pub(crate) struct Run {
    pub(crate) address: RelayAddress,
    pub(crate) seqs: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use enlace_protocol::keys::Fingerprint;

    use super::*;
    use crate::forward::peers::address_key;

    #[test]
    fn retry_delay_doubles_within_bounds() {
        assert_eq!(next_delay(Duration::ZERO), RETRY_MIN);
        assert_eq!(next_delay(RETRY_MIN), RETRY_MIN * 2);
        assert_eq!(next_delay(RETRY_MAX), RETRY_MAX);
        assert_eq!(next_delay(Duration::MAX), RETRY_MAX);
    }

    #[test]
    fn one_failing_forward_or_address_waits_alone() {
        let now = Instant::now();
        let mut schedule = Schedule::default();
        assert!(schedule.due(1, b"a", now));
        Schedule::bump(&mut schedule.entries, 1, now);
        Schedule::bump(&mut schedule.addresses, b"bad".to_vec(), now);
        // The failed forward and the failed address wait; others do not.
        assert!(!schedule.due(1, b"a", now));
        assert!(!schedule.due(2, b"bad", now));
        assert!(schedule.due(2, b"a", now));
        let later = now + RETRY_MIN;
        assert!(schedule.due(1, b"a", later));
        assert!(schedule.due(2, b"bad", later));
        let wait = schedule.wait(&Lanes::default(), now, now);
        assert!(wait >= RETRY_MIN / 2 && wait <= RETRY_MIN, "{wait:?}");
        // Delays double per failure.
        Schedule::bump(&mut schedule.entries, 1, now);
        assert_eq!(schedule.entries[&1].delay, RETRY_MIN * 2);
    }

    #[test]
    fn due_work_held_by_a_lane_does_not_make_the_worker_poll() {
        let now = Instant::now();
        let mut schedule = Schedule::default();
        Schedule::bump(&mut schedule.entries, 1, now);
        Schedule::bump(&mut schedule.addresses, b"dead".to_vec(), now);
        let later = now + RETRY_MIN;
        let mut lanes = Lanes::default();
        // Both due and taken by a lane: the lane's report wakes the worker.
        lanes.given.insert(1);
        lanes.busy.insert(b"dead".to_vec());
        assert_eq!(schedule.wait(&lanes, later, later), RETRY_MAX);
        // Due at planning but held back (address busy elsewhere, lane cap):
        // also a report's business.
        let idle = Lanes::default();
        assert_eq!(schedule.wait(&idle, later, later), RETRY_MAX);
        // Not yet due at planning: its own time.
        let wait = schedule.wait(&idle, now, now);
        assert!(wait >= RETRY_MIN / 2 && wait <= RETRY_MIN, "{wait:?}");
        // Every lane busy: nothing can start before a report.
        let mut full = Lanes::default();
        for n in 0..MAX_LANES {
            full.busy.insert(n.to_be_bytes().to_vec());
        }
        assert_eq!(schedule.wait(&full, now, now), RETRY_MAX);
    }

    /// Forwards to many dead addresses, queued first, do not take every
    /// lane: an address that answered recently gets one, and the dead ones
    /// take turns (review M-D).
    #[test]
    fn dead_addresses_cannot_take_every_lane() {
        let now = Instant::now();
        let run = |port: u16| {
            let address = RelayAddress::new(Fingerprint([1; 32]), "192.0.2.1", port).unwrap();
            (
                address_key(&address),
                Run {
                    address,
                    seqs: vec![u64::from(port)],
                },
            )
        };
        let (live, live_run) = run(1);
        let mut schedule = Schedule::default();
        schedule.answered.insert(live.clone(), now);
        // The dead ones come first in the queue.
        let mut candidates: HashMap<Vec<u8>, Run> =
            (100..100 + 2 * MAX_LANES as u16).map(run).collect();
        candidates.insert(live.clone(), live_run);
        let chosen = schedule.choose(candidates, &Lanes::default(), now);
        assert_eq!(chosen.len(), MAX_LANES - RESERVED_LANES + 1);
        assert!(chosen.iter().any(|(k, _)| *k == live));

        // Every unknown lane busy: the live address still gets one.
        let mut lanes = Lanes::default();
        for (k, _) in &chosen {
            if *k != live {
                lanes.busy.insert(k.clone());
            }
        }
        let mut candidates: HashMap<Vec<u8>, Run> = (1000..1010).map(run).collect();
        candidates.insert(live.clone(), run(1).1);
        let chosen2 = schedule.choose(candidates, &lanes, now);
        assert_eq!(chosen2.len(), 1);
        assert_eq!(chosen2[0].0, live);

        // Round robin: dead addresses never served go before those served.
        let served: HashSet<Vec<u8>> = chosen.into_iter().map(|(k, _)| k).collect();
        let candidates: HashMap<Vec<u8>, Run> =
            (100..100 + 2 * MAX_LANES as u16).map(run).collect();
        let chosen3 = schedule.choose(candidates, &Lanes::default(), now + RETRY_MIN);
        assert_eq!(chosen3.len(), MAX_LANES - RESERVED_LANES);
        assert!(chosen3.iter().all(|(k, _)| !served.contains(k)));
    }
}
