//! What the relay asks of a storage backend: the [`Store`] trait.

use enlace_protocol::command::ForwardId;
use enlace_protocol::envelope::MailboxId;
use enlace_protocol::keys::Fingerprint;

use super::error::StoreError;
use super::forward::{ForwardRecord, QueuedForward};
use super::ops::WriteOp;
use super::outcome::WriteOutcome;
use super::record::{MailboxRecord, Stats, StoredEnvelope};

/// A mailbox store.
///
/// [`Store::apply`] is called from one writer thread only; reads may come
/// from any thread at any time and see the last committed state.
pub trait Store: Send + Sync + 'static {
    /// Applies `ops` in order in one atomic transaction and makes it durable
    /// (fsynced) before returning. On error nothing of the batch may be
    /// reported as done.
    fn apply(&self, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, StoreError>;
    /// Looks a mailbox up by receive id.
    fn mailbox(&self, receive_id: &MailboxId) -> Result<Option<MailboxRecord>, StoreError>;
    /// Looks a mailbox up by send id, returning its receive id too.
    fn mailbox_by_send_id(
        &self,
        send_id: &MailboxId,
    ) -> Result<Option<(MailboxId, MailboxRecord)>, StoreError>;
    /// Up to `limit` envelopes with sequence numbers above `after` (all if
    /// `None`), in arrival order, skipping those that arrived before
    /// `not_before`.
    fn pending(
        &self,
        receive_id: &MailboxId,
        after: Option<u64>,
        not_before: u64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError>;
    /// Counts.
    fn stats(&self) -> Result<Stats, StoreError>;
    /// The status record of a forward.
    fn forward_status(&self, _id: &ForwardId) -> Result<Option<ForwardRecord>, StoreError> {
        Err(no_forwarding())
    }
    /// Up to `limit` queued forwards to `destination`, in queue order.
    fn forward_queue(
        &self,
        _destination: &Fingerprint,
        _limit: usize,
    ) -> Result<Vec<QueuedForward>, StoreError> {
        Err(no_forwarding())
    }
    /// Up to `limit` queued forwards to `destination` from queue position
    /// `from_seq` on, in queue order.
    fn forward_queue_from(
        &self,
        _destination: &Fingerprint,
        _from_seq: u64,
        _limit: usize,
    ) -> Result<Vec<QueuedForward>, StoreError> {
        Err(no_forwarding())
    }
    /// Fingerprints of destinations with forwards queued.
    fn forward_destinations(&self, _limit: usize) -> Result<Vec<Fingerprint>, StoreError> {
        Err(no_forwarding())
    }
}

fn no_forwarding() -> StoreError {
    StoreError::Backend("this store keeps no forward queue".into())
}

/// Implements every read of [`Store`] for a backend that implements
/// [`super::kv::KvRead`]: the reads are written once, in
/// [`super::mailbox`] and [`super::forward`].
macro_rules! kv_reads {
    () => {
        fn mailbox(
            &self,
            receive_id: &enlace_protocol::envelope::MailboxId,
        ) -> Result<Option<$crate::store::MailboxRecord>, $crate::store::StoreError> {
            $crate::store::mailbox::read_mailbox(self, receive_id)
        }

        fn mailbox_by_send_id(
            &self,
            send_id: &enlace_protocol::envelope::MailboxId,
        ) -> Result<
            Option<(
                enlace_protocol::envelope::MailboxId,
                $crate::store::MailboxRecord,
            )>,
            $crate::store::StoreError,
        > {
            $crate::store::mailbox::read_by_send_id(self, send_id)
        }

        fn pending(
            &self,
            receive_id: &enlace_protocol::envelope::MailboxId,
            after: Option<u64>,
            not_before: u64,
            limit: usize,
        ) -> Result<Vec<$crate::store::StoredEnvelope>, $crate::store::StoreError> {
            $crate::store::mailbox::read_pending(self, receive_id, after, not_before, limit)
        }

        fn stats(&self) -> Result<$crate::store::Stats, $crate::store::StoreError> {
            $crate::store::mailbox::read_stats(self)
        }

        fn forward_status(
            &self,
            id: &enlace_protocol::command::ForwardId,
        ) -> Result<Option<$crate::store::forward::ForwardRecord>, $crate::store::StoreError> {
            $crate::store::forward::read_status(self, id)
        }

        fn forward_queue(
            &self,
            destination: &enlace_protocol::keys::Fingerprint,
            limit: usize,
        ) -> Result<Vec<$crate::store::forward::QueuedForward>, $crate::store::StoreError> {
            $crate::store::forward::read_queue(self, destination, 0, limit)
        }

        fn forward_queue_from(
            &self,
            destination: &enlace_protocol::keys::Fingerprint,
            from_seq: u64,
            limit: usize,
        ) -> Result<Vec<$crate::store::forward::QueuedForward>, $crate::store::StoreError> {
            $crate::store::forward::read_queue(self, destination, from_seq, limit)
        }

        fn forward_destinations(
            &self,
            limit: usize,
        ) -> Result<Vec<enlace_protocol::keys::Fingerprint>, $crate::store::StoreError> {
            $crate::store::forward::read_destinations(self, limit)
        }
    };
}
pub(crate) use kv_reads;
