//! The tiny ordered key-value interface the mailbox logic and the forward
//! queue are written over; each backend file maps it onto its engine.

use super::error::StoreError;

/// Key-value pairs in key order.
pub(crate) type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The ordered key-value operations a backend offers inside one write
/// transaction. Reads see the transaction's own earlier writes.
pub(crate) trait KvTxn {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    fn del(&mut self, key: &[u8]) -> Result<(), StoreError>;
    /// Up to `limit` entries whose keys start with `prefix`, in key order.
    fn scan_prefix(&mut self, prefix: &[u8], limit: usize) -> Result<Entries, StoreError>;
}

/// Reads outside a transaction: a backend supplies point reads and ordered
/// scans starting at a key.
pub(crate) trait KvRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Up to `limit` entries with keys in `[from, ..)` that start with `prefix`.
    fn scan_from(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Entries, StoreError>;
}

/// Bounds-checked reads of on-disk bytes.
pub(crate) struct Cursor<'a>(pub(crate) &'a [u8]);

impl Cursor<'_> {
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(StoreError::Corrupt("short record"))?;
        self.0 = rest;
        Ok(*head)
    }
}
