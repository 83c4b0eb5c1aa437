//! One destination's worker: walks its durable queue in order and hands
//! the forwards that are due to one lane per address, then sleeps until a
//! retry time, a new forward or a lane's report (docs/protocol.md 12.4).
//! It never waits on the network itself.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use enlace_protocol::address::RelayAddress;
use enlace_protocol::keys::Fingerprint;
use tokio::sync::{Notify, mpsc};

use super::lane::{self, ReportOnDrop};
use super::schedule::{
    AddressOutcome, LaneReport, Lanes, MAX_LANES, Run, Schedule, jitter, next_delay,
};
use super::shared::{Shared, lock};
use crate::shutdown::until_shutdown;
use crate::store::StoreError;
use crate::store::forward::{QueueState, QueuedForward};

/// Queued forwards a worker reads at a time.
const WORKER_BATCH: usize = 32;
/// Forwards one lane takes per run (it reads each from the store when its
/// turn comes, so waiting forwards are not held in memory).
const LANE_BATCH: usize = 32;
/// Deliveries under way at once over all lanes of one destination: what
/// one lane per address had before lanes went concurrent, so a
/// destination whose addresses accept deliveries and never answer holds
/// no more forwards in memory than it did (each until its request times
/// out).
const DESTINATION_IN_FLIGHT: usize = MAX_LANES;

/// Drains one destination's queue until it is empty or shutdown. Each
/// pass walks the whole queue (local reads only) and hands the forwards
/// that are due to one lane per address; the worker then sleeps until
/// the next retry time, a new forward or a lane's report. A forward that
/// fails (its address does not answer, or the destination defers it)
/// waits for its own retry time, and a slow address holds only its own
/// lane, so one bad forward or address delays nothing else.
pub(crate) async fn run(shared: Arc<Shared>, destination: Fingerprint, kicked: Arc<Notify>) {
    let mut shutdown = shared.shutdown.clone();
    let mut schedule = Schedule::default();
    let mut lanes = Lanes::default();
    let (done, mut reports) = mpsc::channel(MAX_LANES);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(DESTINATION_IN_FLIGHT));
    let mut read_delay = Duration::ZERO;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let planned = shared.clock.instant();
        let wait = match pass(
            &shared,
            &destination,
            planned,
            &mut schedule,
            &mut lanes,
            &done,
            &in_flight,
        )
        .await
        {
            Err(e) => {
                // A failing read backs off too: without the wait the
                // loop would spin on the error at full CPU.
                tracing::error!("reading the forward queue failed: {e}");
                read_delay = next_delay(read_delay);
                jitter(read_delay)
            }
            Ok(false) if lanes.busy.is_empty() => {
                read_delay = Duration::ZERO;
                let mut workers = lock(&shared.workers);
                // An enqueue that committed before this lock is visible
                // now; one after it will find no worker and start one.
                if matches!(shared.store.forward_queue(&destination, 1), Ok(b) if b.is_empty()) {
                    workers.remove(&destination);
                    return;
                }
                continue;
            }
            Ok(_) => {
                read_delay = Duration::ZERO;
                schedule.wait(&lanes, planned, shared.clock.instant())
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = kicked.notified() => {}
            Some(report) = reports.recv() => {
                lanes.finish(&report);
                schedule.apply(&report, shared.clock.instant());
            }
            () = until_shutdown(&mut shutdown) => break,
        }
        while let Ok(report) = reports.try_recv() {
            lanes.finish(&report);
            schedule.apply(&report, shared.clock.instant());
        }
    }
    lock(&shared.workers).remove(&destination);
}

/// One pass over the queue: settles expired forwards and starts a lane
/// for every address with forwards due and no lane running. True if
/// forwards were queued when the pass began (some may still be).
/// Everything is judged due or not at `now`, so the wait that follows
/// knows exactly what this pass saw as due.
async fn pass(
    shared: &Arc<Shared>,
    destination: &Fingerprint,
    now: Instant,
    schedule: &mut Schedule,
    lanes: &mut Lanes,
    done: &mpsc::Sender<LaneReport>,
    in_flight: &Arc<tokio::sync::Semaphore>,
) -> Result<bool, StoreError> {
    let mut from = 0;
    let mut seen = HashSet::new();
    let mut runs: HashMap<Vec<u8>, Run> = HashMap::new();
    loop {
        let batch = shared
            .store
            .forward_queue_from(destination, from, WORKER_BATCH)?;
        let full = batch.len() == WORKER_BATCH;
        let Some(next) = batch.last().map(|e| e.seq.checked_add(1)) else {
            break;
        };
        for entry in batch {
            if *shared.shutdown.borrow() {
                return Ok(true);
            }
            seen.insert(entry.seq);
            if lanes.given.contains(&entry.seq) {
                continue;
            }
            plan(shared, entry, now, schedule, lanes, &mut runs).await;
        }
        match next {
            Some(n) if full => from = n,
            _ => break,
        }
    }
    // Forget the schedules of forwards no longer queued.
    schedule.entries.retain(|seq, _| seen.contains(seq));
    let chosen = schedule.choose(runs, lanes, now);
    schedule.trim(shared.clock.instant());
    for (key, run) in chosen {
        lanes.busy.insert(key.clone());
        lanes.given.extend(run.seqs.iter().copied());
        let guard = ReportOnDrop {
            report: Some(LaneReport {
                key,
                given: run.seqs.clone(),
                address: AddressOutcome::Untried,
                settled: Vec::new(),
                failed: Vec::new(),
            }),
            done: done.clone(),
        };
        tokio::spawn(lane::run(
            shared.clone(),
            *destination,
            run,
            in_flight.clone(),
            guard,
        ));
    }
    Ok(!seen.is_empty())
}

/// Settles `entry` if it expired; otherwise adds it to its address's
/// lane if it and its address are due and a lane is free.
async fn plan(
    shared: &Shared,
    entry: QueuedForward,
    now: Instant,
    schedule: &mut Schedule,
    lanes: &Lanes,
    runs: &mut HashMap<Vec<u8>, Run>,
) {
    let seq = entry.seq;
    if entry.arrival.saturating_add(shared.ttl_secs) <= shared.clock.now() {
        if shared.settle(entry.forward_id, QueueState::Expired).await {
            schedule.entries.remove(&seq);
        } else {
            Schedule::bump(&mut schedule.entries, seq, shared.clock.instant());
        }
        return;
    }
    if !schedule.due(seq, &entry.destination, now) || lanes.busy.contains(&entry.destination) {
        return;
    }
    if let Some(run) = runs.get_mut(&entry.destination) {
        if run.seqs.len() < LANE_BATCH {
            run.seqs.push(seq);
        }
        return;
    }
    // Every due idle address is a candidate; `Schedule::choose` picks
    // which get a lane (bounded by the queue: at most one per entry).
    let Ok(address) = RelayAddress::decode(&entry.destination) else {
        tracing::error!("corrupt destination in the forward queue");
        Schedule::bump(&mut schedule.entries, seq, shared.clock.instant());
        return;
    };
    runs.insert(
        entry.destination,
        Run {
            address,
            seqs: vec![seq],
        },
    );
}
