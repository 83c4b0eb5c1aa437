//! The priority gate (docs/protocol.md 7.6.1): proven connections'
//! requests run at once; the others' CPU work waits its turn in the lane
//! their [`Standing`] says, the suspect lane's on the nice-19 thread.

use super::background::Background;
use crate::policy::standing::Standing;

/// Requests of connections not yet proven (see [`crate::policy::standing::Tally::is_proven`])
/// whose parse and checks may run at once. An attacker's connections never
/// pass a check, so however many of their streams are ready, at most this
/// many of their signature checks sit in the scheduler's run queue ahead
/// of a proven connection's request; the rest wait in the gate's queue.
/// One: the relay's core is the bottleneck under attack, and an idle
/// relay still serves a new connection's first request at once.
pub const UNPROVEN_PERMITS: usize = 1;
/// The low-priority lanes for connections not proven: their requests' CPU
/// work (parse, signature check, the core's decision) runs under one of
/// [`UNPROVEN_PERMITS`] permits of their lane, taken in arrival order and
/// released before anything is awaited (a commit, a write), then the task
/// yields. Proven connections skip both. Each connection queues at most
/// one request at a time (its streams take turns through the connection's
/// own lock first), so a queue is as long as the number of its
/// connections, not of their streams. Connections none of whose checks
/// ever passed that failed something (an attacker's, after its first
/// garbage) queue apart from those that only have not proven themselves
/// yet, and their work runs on the
/// [`Background`] thread at the lowest CPU priority: an honest newcomer
/// waits behind other newcomers' first requests only, at normal priority,
/// and an attacker's failing checks take no time slices from anyone.
#[derive(Debug)]
pub(crate) struct PriorityGate {
    unproven: tokio::sync::Semaphore,
    suspect: tokio::sync::Semaphore,
    background: Option<Background>,
}

impl PriorityGate {
    pub(crate) fn new(permits: usize, background: Option<Background>) -> Self {
        Self {
            unproven: tokio::sync::Semaphore::new(permits),
            suspect: tokio::sync::Semaphore::new(permits),
            background,
        }
    }

    /// Runs `work` in the lane `lane` says, asked again once the
    /// connection's `turn` is taken (a request queued behind one that
    /// proved the connection runs at once).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        lane: impl Fn() -> Standing,
        turn: &tokio::sync::Mutex<()>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        if lane() == Standing::Proven {
            return work();
        }
        let turn = turn.lock().await;
        // The semaphores are never closed; were one, the work runs ungated.
        let out = match lane() {
            Standing::Proven => work(),
            Standing::Unproven => {
                let _permit = self.unproven.acquire().await.ok();
                work()
            }
            Standing::Suspect => {
                let _permit = self.suspect.acquire().await.ok();
                match &self.background {
                    Some(background) => background.run(work).await,
                    None => work(),
                }
            }
        };
        drop(turn);
        tokio::task::yield_now().await;
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::server::background::BACKGROUND_NICE;

    #[tokio::test]
    async fn unproven_requests_wait_for_the_gate_and_proven_ones_do_not() {
        let gate = Arc::new(PriorityGate::new(1, None));
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        // An unproven request's check is under way (it holds the permit).
        let held = gate.unproven.acquire().await.unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let unproven = tokio::spawn({
            let (gate, ran, turn) = (gate.clone(), ran.clone(), turn.clone());
            async move {
                gate.run(
                    || Standing::Unproven,
                    &turn,
                    move || ran.fetch_add(1, Ordering::SeqCst),
                )
                .await;
            }
        });
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(ran.load(Ordering::SeqCst), 0, "ran without the permit");
        // A proven connection's request runs at once.
        assert_eq!(gate.run(|| Standing::Proven, &turn, || 7).await, 7);
        drop(held);
        tokio::time::timeout(Duration::from_secs(60), unproven)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        // The permit is back: the next unproven request runs.
        assert_eq!(gate.run(|| Standing::Unproven, &turn, || 8).await, 8);
    }

    /// One unproven connection queues one request at a time: however many
    /// of its streams wait, another connection's request is next in line.
    #[tokio::test]
    async fn an_unproven_connection_queues_one_request_at_a_time() {
        let gate = Arc::new(PriorityGate::new(1, None));
        let (busy, newcomer) = (
            Arc::new(tokio::sync::Mutex::new(())),
            Arc::new(tokio::sync::Mutex::new(())),
        );
        let held = gate.unproven.acquire().await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        // Ten streams of one connection queue first...
        for i in 0..10 {
            let (gate, busy, order) = (gate.clone(), busy.clone(), order.clone());
            tasks.spawn(async move {
                gate.run(
                    || Standing::Unproven,
                    &busy,
                    move || order.lock().unwrap().push(i),
                )
                .await;
            });
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        // ...then another connection's one request.
        tasks.spawn({
            let (gate, newcomer, order) = (gate.clone(), newcomer.clone(), order.clone());
            async move {
                gate.run(
                    || Standing::Unproven,
                    &newcomer,
                    move || order.lock().unwrap().push(99),
                )
                .await;
            }
        });
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        drop(held);
        tokio::time::timeout(Duration::from_secs(60), async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .unwrap();
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 11);
        let at = order.iter().position(|&i| i == 99).unwrap();
        assert!(at <= 1, "the newcomer ran {at}th: {order:?}");
    }

    /// The suspect lane's work runs on its own thread at the lowest CPU
    /// priority; the other lanes' where they are asked for. A panic there
    /// ends the waiting task (as it did inline) and the thread goes on.
    #[tokio::test]
    async fn suspect_work_runs_on_a_thread_at_the_lowest_priority() {
        let gate = Arc::new(PriorityGate::new(1, Background::start(1)));
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        let here = std::thread::current().id();
        let (thread, nice) = gate
            .run(
                || Standing::Suspect,
                &turn,
                || {
                    let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
                    (std::thread::current().id(), nice.unwrap())
                },
            )
            .await;
        assert_ne!(thread, here);
        assert_eq!(nice, BACKGROUND_NICE);
        for lane in [Standing::Proven, Standing::Unproven] {
            let ran = gate
                .run(|| lane, &turn, || std::thread::current().id())
                .await;
            assert_eq!(ran, here, "{lane:?}");
        }
        let panicked = tokio::spawn({
            let gate = gate.clone();
            async move {
                let turn = tokio::sync::Mutex::new(());
                gate.run(|| Standing::Suspect, &turn, || panic!("a bad job"))
                    .await
            }
        })
        .await;
        assert!(panicked.unwrap_err().is_panic());
        let after = gate
            .run(|| Standing::Suspect, &turn, || std::thread::current().id())
            .await;
        assert_eq!(after, thread, "the same thread goes on");
    }

    /// A newcomer does not queue behind connections that failed something,
    /// and a request that waited for its connection's turn while another
    /// proved the connection runs at once, without a permit.
    #[tokio::test]
    async fn lanes_are_apart_and_asked_again_after_the_turn() {
        let gate = Arc::new(PriorityGate::new(1, None));
        let suspect = gate.suspect.acquire().await.unwrap();
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        let newcomer = gate.run(|| Standing::Unproven, &turn, || 1);
        let newcomer = tokio::time::timeout(Duration::from_secs(60), newcomer).await;
        assert_eq!(
            newcomer.ok(),
            Some(1),
            "the newcomer waited for the suspect lane"
        );
        drop(suspect);
        let unproven = gate.unproven.acquire().await.unwrap();
        let proven = Arc::new(AtomicBool::new(false));
        let held = turn.clone().lock_owned().await;
        let waiting = tokio::spawn({
            let (gate, turn, proven) = (gate.clone(), turn.clone(), proven.clone());
            async move {
                let lane = || {
                    if proven.load(Ordering::SeqCst) {
                        Standing::Proven
                    } else {
                        Standing::Unproven
                    }
                };
                gate.run(lane, &turn, || 2).await
            }
        });
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        proven.store(true, Ordering::SeqCst);
        drop(held);
        let ran = tokio::time::timeout(Duration::from_secs(60), waiting).await;
        assert_eq!(
            ran.unwrap().unwrap(),
            2,
            "it waited for the unproven permit"
        );
        drop(unproven);
    }
}
