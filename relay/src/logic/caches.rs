//! What the request logic keeps in memory to spare the store and the CPU:
//! parsed public keys, and recipient keys for acks.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use enlace_protocol::command::RelayError;
use enlace_protocol::envelope::MailboxId;
use enlace_protocol::keys::PublicKey;

/// Most entries either cache holds before it starts over.
pub const KEY_CACHE_ENTRIES: usize = 8192;

/// Recipient keys by receive id, for acks.
///
/// A subscriber acks every message; reading the mailbox record from the
/// store for each only to learn its recipient key cost a read transaction
/// per ack. A mailbox's recipient key is fixed when it is created and never
/// changes (Secure sets the sender key; ids are random 128-bit values and a
/// create whose id is taken is refused), so an entry can only be outlived by
/// its mailbox: it is removed when a Delete commits, and the Ack commit
/// itself checks that the mailbox still exists (`WriteOp::Ack` answers
/// `UnknownMailbox` otherwise), so a key cached for a mailbox deleted
/// meanwhile authorizes nothing. Bounded like [`KeyCache`].
#[derive(Debug, Default)]
pub(crate) struct RecipientCache(Mutex<HashMap<MailboxId, PublicKey>>);

impl RecipientCache {
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<MailboxId, PublicKey>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn insert(&self, id: MailboxId, key: PublicKey) {
        let mut map = self.lock();
        if map.len() >= KEY_CACHE_ENTRIES {
            map.clear();
        }
        map.insert(id, key);
    }
}

/// Parsed ed25519 public keys by their 32-byte encoding.
///
/// Parsing (point decompression, the canonical-encoding and small-order
/// checks) costs about as much as half a verification, and every Send and
/// recipient command parses a key read from the store. The cache maps bytes
/// to what [`PublicKey::from_bytes`] returns for them: a pure function, so an
/// entry is never stale and needs no invalidation. Which key a mailbox
/// accepts is still read from the store on every request (and re-checked
/// inside the commit for deposits); only the parse is skipped. Bounded:
/// cleared when full, so a flood of distinct keys costs at most one parse
/// each, as before.
#[derive(Debug, Default)]
pub(crate) struct KeyCache(Mutex<HashMap<[u8; 32], PublicKey>>);

impl KeyCache {
    pub(crate) fn get(&self, bytes: &[u8; 32]) -> Result<PublicKey, RelayError> {
        let lock = || self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = lock().get(bytes) {
            return Ok(*key);
        }
        // Parsed outside the lock (half a signature check): a thread at low
        // priority must not hold it while the others wait.
        // A stored key that does not parse is a corrupt record.
        let key = PublicKey::from_bytes(bytes).map_err(|_| RelayError::Internal)?;
        let mut map = lock();
        if map.len() >= KEY_CACHE_ENTRIES {
            map.clear();
        }
        map.insert(*bytes, key);
        Ok(key)
    }
}
