//! What a subscription pushes, and what the sweeps remove: envelopes
//! sealed for delivery, and the expiry operations at `now`.

use enlace_protocol::delivery::DeliveryKey;
use enlace_protocol::envelope::{MailboxId, MessageId};

use super::core::Core;
use super::limits::FORWARD_STATUS_KEEP_SECS;
use crate::store::{Store, StoreError, WriteOp};

/// One sealed delivery.
#[derive(Debug)]
pub struct Delivery {
    /// Arrival sequence number.
    pub seq: u64,
    /// The envelope's message id (what the recipient acks).
    pub message_id: MessageId,
    /// The envelope sealed under the delivery key.
    pub sealed: Vec<u8>,
}

impl<S: Store + ?Sized> Core<S> {
    /// Up to `limit` envelopes after `after`, sealed for delivery. Envelopes
    /// past their TTL are skipped even before the sweeper removes them.
    pub fn deliveries(
        &self,
        receive_id: &MailboxId,
        key: &DeliveryKey,
        after: Option<u64>,
        now: u64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let not_before = now.saturating_sub(self.limits.ttl_secs);
        let mut rng = rand::rng();
        Ok(self
            .store
            .pending(receive_id, after, not_before, limit)?
            .into_iter()
            .map(|env| Delivery {
                seq: env.seq,
                message_id: env.message_id,
                sealed: key.seal(&mut rng, receive_id, &env.bytes),
            })
            .collect())
    }

    /// The expiry batch to commit at `now`: envelopes past their TTL.
    pub fn expiry_op(&self, now: u64, limit: usize) -> WriteOp {
        WriteOp::Expire {
            before: now.saturating_sub(self.limits.ttl_secs),
            limit,
        }
    }

    /// The forward expiry batch to commit at `now`: forwards past their
    /// TTL, and final states past their keep time.
    pub fn forward_expiry_op(&self, now: u64, limit: usize) -> WriteOp {
        WriteOp::ForwardExpire {
            now,
            keep_until: now.saturating_add(FORWARD_STATUS_KEEP_SECS),
            limit,
        }
    }
}
