//! The request logic's state: the store, the limits, the relay's identity
//! and the caches, with the checks every command shares.

use std::sync::Arc;

use enlace_protocol::command::{RelayError, Signed};
use enlace_protocol::envelope::MailboxId;
use enlace_protocol::forward::RelayKey;

use super::caches::{KeyCache, RecipientCache};
use super::conn::ConnState;
use super::limits::{Limits, RELAY_KEY_VALIDITY_SECS};
use crate::identity::Identity;
use crate::store::{MailboxRecord, Store, StoreError};

/// The relay's request logic over a store.
#[derive(Debug)]
pub struct Core<S: ?Sized> {
    pub(crate) store: Arc<S>,
    pub(crate) limits: Limits,
    identity: Option<Arc<Identity>>,
    pub(crate) keys: KeyCache,
    pub(crate) recipients: RecipientCache,
}

/// Maps a storage failure to what the client is told.
pub fn store_error(e: &StoreError) -> RelayError {
    match e {
        StoreError::Full => RelayError::StorageFull,
        _ => RelayError::Internal,
    }
}

impl<S: Store + ?Sized> Core<S> {
    /// A core over `store`.
    pub fn new(store: Arc<S>, limits: Limits) -> Self {
        Self {
            store,
            limits,
            identity: None,
            keys: KeyCache::default(),
            recipients: RecipientCache::default(),
        }
    }

    /// The same core, able to publish its relay key and open forwards
    /// sealed to `identity`.
    pub fn with_identity(mut self, identity: Arc<Identity>) -> Self {
        self.identity = Some(identity);
        self
    }

    pub(crate) fn identity(&self) -> Result<&Identity, RelayError> {
        // A core without an identity (unit tests) does not forward.
        self.identity.as_deref().ok_or(RelayError::UnknownCommand)
    }

    /// The signed relay key bundle, valid from `now`.
    pub fn relay_key(&self, now: u64) -> Result<RelayKey, RelayError> {
        let id = self.identity()?;
        Ok(RelayKey::sign(
            id.key(),
            *id.forward_key().public(),
            now.saturating_add(RELAY_KEY_VALIDITY_SECS),
        ))
    }

    /// The store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn load(&self, id: &MailboxId) -> Result<MailboxRecord, RelayError> {
        match self.store.mailbox(id) {
            Ok(Some(rec)) => Ok(rec),
            Ok(None) => Err(RelayError::UnknownMailbox),
            Err(e) => Err(store_error(&e)),
        }
    }

    /// Forgets what is cached about a mailbox: called once its Delete
    /// committed.
    pub(crate) fn forget(&self, receive_id: &MailboxId) {
        self.recipients.lock().remove(receive_id);
    }

    /// Checks a recipient command against the mailbox's recipient key.
    pub(crate) fn verify<'a, T>(
        &self,
        signed: &'a Signed<T>,
        conn: &ConnState,
        rec: &MailboxRecord,
    ) -> Result<&'a T, RelayError> {
        let key = self.keys.get(&rec.recipient_key)?;
        let cmd = signed
            .verify(&conn.binding, &key)
            .map_err(|_| conn.failed_check())?;
        conn.passed_check();
        Ok(cmd)
    }
}
