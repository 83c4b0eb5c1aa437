//! The group-commit writer: one thread applies every mutation, in batches
//! of whatever queued during the previous commit, and answers each
//! operation only once its batch is durable (docs/storage.md, "Group
//! commit"). This is where "stored means fsynced" is kept: nothing is
//! answered before [`Store::apply`] returned.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::api::Store;
use super::error::StoreError;
use super::ops::WriteOp;
use super::outcome::{Committed, WriteOutcome};

/// Operations committed in one write transaction at most: bounds commit
/// latency when thousands are queued.
pub const MAX_BATCH: usize = 1024;

struct Job {
    op: WriteOp,
    reply: Option<oneshot::Sender<Result<WriteOutcome, StoreError>>>,
}

/// Handle to the group-commit writer thread.
#[derive(Clone, Debug)]
pub struct Writer {
    tx: mpsc::Sender<Message>,
}

enum Message {
    Job(Job),
    Stop(oneshot::Sender<()>),
}

impl Writer {
    /// Starts the writer thread over `store`.
    pub fn spawn(store: Arc<dyn Store>) -> std::io::Result<Self> {
        let (tx, mut rx) = mpsc::channel::<Message>(4 * MAX_BATCH);
        std::thread::Builder::new()
            .name("enlace-writer".into())
            .spawn(move || {
                let mut stop = None;
                while stop.is_none() {
                    let Some(first) = rx.blocking_recv() else {
                        break;
                    };
                    let mut jobs = Vec::new();
                    match first {
                        Message::Job(j) => jobs.push(j),
                        Message::Stop(done) => stop = Some(done),
                    }
                    // Whatever queued while the last commit ran joins this one.
                    while stop.is_none() && jobs.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(Message::Job(j)) => jobs.push(j),
                            Ok(Message::Stop(done)) => stop = Some(done),
                            Err(_) => break,
                        }
                    }
                    if jobs.is_empty() {
                        continue;
                    }
                    commit_batch(&*store, jobs);
                }
                if let Some(done) = stop {
                    let _ = done.send(());
                }
            })?;
        Ok(Self { tx })
    }

    /// Queues `op` and waits until its batch is durable.
    pub async fn submit(&self, op: WriteOp) -> Result<WriteOutcome, StoreError> {
        self.queue(op).await?.await
    }

    /// Queues `op` and returns without waiting for its commit: operations
    /// queued back to back share a commit. The returned future resolves once
    /// `op`'s batch is durable.
    pub async fn queue(
        &self,
        op: WriteOp,
    ) -> Result<impl Future<Output = Committed> + use<>, StoreError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            op,
            reply: Some(reply),
        };
        self.tx
            .send(Message::Job(job))
            .await
            .map_err(|_| writer_stopped())?;
        Ok(async move { rx.await.map_err(|_| writer_stopped())? })
    }

    /// Commits everything queued so far, then stops the thread.
    pub async fn stop(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Message::Stop(done)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Backend("the writer has stopped".into())
}

/// Commits `jobs` in one transaction and answers each. A batch that fails
/// on a corrupt record is retried one operation per commit, so one bad
/// mailbox does not fail every deposit that happened to share its commit.
fn commit_batch(store: &dyn Store, jobs: Vec<Job>) {
    // The operations move out of their jobs: envelope bytes are not copied.
    let (ops, replies): (Vec<WriteOp>, Vec<_>) = jobs.into_iter().map(|j| (j.op, j.reply)).unzip();
    match store.apply(&ops) {
        Ok(outcomes) => {
            for (reply, out) in replies.into_iter().zip(outcomes) {
                if let Some(r) = reply {
                    let _ = r.send(Ok(out));
                }
            }
        }
        Err(StoreError::Corrupt(what)) if ops.len() > 1 => {
            tracing::error!(
                "commit failed on a corrupt record ({what}); retrying {} operations one by one",
                ops.len()
            );
            for (op, reply) in ops.into_iter().zip(replies) {
                commit_batch(store, vec![Job { op, reply }]);
            }
        }
        Err(e) => {
            tracing::error!("commit failed, {} operations refused: {e}", ops.len());
            for r in replies.into_iter().flatten() {
                let _ = r.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::mpsc as std_mpsc;
    use std::time::Duration;

    use enlace_protocol::envelope::{MailboxId, MessageId};

    use super::*;
    use crate::store::redb::RedbStore;
    use crate::store::{MailboxRecord, Stats, StoredEnvelope};

    /// A store whose first commit waits for a signal, recording batch sizes.
    struct Gated {
        inner: RedbStore,
        gate: Mutex<Option<std_mpsc::Receiver<()>>>,
        entered: Mutex<Option<std_mpsc::Sender<()>>>,
        batches: Mutex<Vec<usize>>,
    }

    impl Store for Gated {
        fn apply(&self, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, StoreError> {
            if let Some(gate) = self.gate.lock().unwrap().take() {
                if let Some(entered) = self.entered.lock().unwrap().take() {
                    entered.send(()).unwrap();
                }
                gate.recv().unwrap();
            }
            self.batches.lock().unwrap().push(ops.len());
            self.inner.apply(ops)
        }
        fn mailbox(&self, id: &MailboxId) -> Result<Option<MailboxRecord>, StoreError> {
            self.inner.mailbox(id)
        }
        fn mailbox_by_send_id(
            &self,
            id: &MailboxId,
        ) -> Result<Option<(MailboxId, MailboxRecord)>, StoreError> {
            self.inner.mailbox_by_send_id(id)
        }
        fn pending(
            &self,
            id: &MailboxId,
            after: Option<u64>,
            not_before: u64,
            limit: usize,
        ) -> Result<Vec<StoredEnvelope>, StoreError> {
            self.inner.pending(id, after, not_before, limit)
        }
        fn stats(&self) -> Result<Stats, StoreError> {
            self.inner.stats()
        }
    }

    #[tokio::test]
    async fn deposits_queued_during_a_commit_share_the_next_one() {
        let (open, gate) = std_mpsc::channel();
        let (entered_tx, entered) = std_mpsc::channel();
        let store = Arc::new(Gated {
            inner: RedbStore::in_memory().unwrap(),
            gate: Mutex::new(Some(gate)),
            entered: Mutex::new(Some(entered_tx)),
            batches: Mutex::new(Vec::new()),
        });
        let writer = Writer::spawn(store.clone()).unwrap();
        let rid = MailboxId([1; 16]);
        let record = MailboxRecord {
            send_id: MailboxId([2; 16]),
            recipient_key: [3; 32],
            sender_key: None,
            delivery_key: [4; 32],
            first_contact: 0,
            next_seq: 0,
            stored: 0,
        };
        let first = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .submit(WriteOp::Create {
                        receive_id: rid,
                        record: Box::new(record),
                    })
                    .await
            }
        });
        // The create is being committed (and held) before any deposit queues.
        tokio::task::spawn_blocking(move || entered.recv_timeout(Duration::from_secs(60)))
            .await
            .unwrap()
            .unwrap();
        let n = 200;
        let mut deposits = Vec::new();
        for i in 0..n {
            let writer = writer.clone();
            deposits.push(tokio::spawn(async move {
                let op = WriteOp::Deposit {
                    receive_id: rid,
                    message_id: MessageId([i as u8; 16]),
                    bytes: vec![i as u8; 10],
                    arrival: 1,
                    verified_with: None,
                    quota: 1000,
                    first_contact_limit: 1000,
                };
                writer.submit(op).await
            }));
        }
        // Release the first commit once every deposit is queued behind it.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while writer.tx.max_capacity() - writer.tx.capacity() < n {
            assert!(std::time::Instant::now() < deadline, "deposits not queued");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        open.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), WriteOutcome::Done);
        let mut stored = 0;
        for d in deposits {
            match d.await.unwrap().unwrap() {
                WriteOutcome::Stored { .. } | WriteOutcome::Duplicate => stored += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(stored, n);
        // One commit for the create, one for all 200 deposits.
        assert_eq!(*store.batches.lock().unwrap(), vec![1, n]);
        writer.stop().await;
    }

    /// Fails any batch that touches mailbox `[9; 16]` as if its record
    /// were corrupt on disk.
    struct OnePoisoned(RedbStore);

    impl Store for OnePoisoned {
        fn apply(&self, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, StoreError> {
            let poisoned = ops.iter().any(|op| {
                matches!(op, WriteOp::Deposit { receive_id, .. } if *receive_id == MailboxId([9; 16]))
            });
            if poisoned {
                return Err(StoreError::Corrupt("mailbox record"));
            }
            self.0.apply(ops)
        }
        fn mailbox(&self, id: &MailboxId) -> Result<Option<MailboxRecord>, StoreError> {
            self.0.mailbox(id)
        }
        fn mailbox_by_send_id(
            &self,
            id: &MailboxId,
        ) -> Result<Option<(MailboxId, MailboxRecord)>, StoreError> {
            self.0.mailbox_by_send_id(id)
        }
        fn pending(
            &self,
            id: &MailboxId,
            after: Option<u64>,
            not_before: u64,
            limit: usize,
        ) -> Result<Vec<StoredEnvelope>, StoreError> {
            self.0.pending(id, after, not_before, limit)
        }
        fn stats(&self) -> Result<Stats, StoreError> {
            self.0.stats()
        }
    }

    #[test]
    fn a_corrupt_mailbox_does_not_fail_the_rest_of_its_batch() {
        let store = OnePoisoned(RedbStore::in_memory().unwrap());
        let good = MailboxId([1; 16]);
        store
            .apply(&[WriteOp::Create {
                receive_id: good,
                record: Box::new(MailboxRecord {
                    send_id: MailboxId([2; 16]),
                    recipient_key: [3; 32],
                    sender_key: None,
                    delivery_key: [4; 32],
                    first_contact: 0,
                    next_seq: 0,
                    stored: 0,
                }),
            }])
            .unwrap();
        let deposit = |rid: MailboxId, msg: u8| WriteOp::Deposit {
            receive_id: rid,
            message_id: MessageId([msg; 16]),
            bytes: vec![msg; 10],
            arrival: 1,
            verified_with: None,
            quota: 10,
            first_contact_limit: 10,
        };
        let mut answers = Vec::new();
        let mut jobs = Vec::new();
        for op in [
            deposit(good, 1),
            deposit(MailboxId([9; 16]), 2),
            deposit(good, 3),
        ] {
            let (reply, rx) = oneshot::channel();
            jobs.push(Job {
                op,
                reply: Some(reply),
            });
            answers.push(rx);
        }
        commit_batch(&store, jobs);
        let answers: Vec<_> = answers
            .into_iter()
            .map(|mut rx| rx.try_recv().unwrap())
            .collect();
        assert!(matches!(answers[0], Ok(WriteOutcome::Stored { .. })));
        assert!(matches!(answers[1], Err(StoreError::Corrupt(_))));
        assert!(matches!(answers[2], Ok(WriteOutcome::Stored { .. })));
        assert_eq!(store.stats().unwrap().envelopes, 2);
    }
}
