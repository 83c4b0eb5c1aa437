//! A sled 0.34 backend, behind the cargo feature `sled`.
//!
//! Not the default: sled 0.34's `flush` ends in `sync_file_range`, which is
//! not a durability barrier (sled issue 1452), so "stored" cannot be
//! promised after a power loss; see `docs/storage.md`.
//!
//! A batch is built in an overlay (reads see earlier writes of the batch),
//! then applied with one atomic `apply_batch` and flushed. Only the relay's
//! writer thread writes, so scans of the tree outside a transaction are
//! stable while the overlay is built.

use std::collections::BTreeMap;
use std::path::Path;

use super::api::{Store, kv_reads};
use super::batch::apply_ops;
use super::error::StoreError;
use super::kv::{Entries, KvRead, KvTxn};
use super::ops::WriteOp;
use super::outcome::WriteOutcome;

/// A sled database directory.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
}

fn err(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) => StoreError::from_io(&io),
        other => StoreError::Backend(other.to_string()),
    }
}

impl SledStore {
    /// Opens or creates the database in directory `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            db: sled::open(path).map_err(err)?,
        })
    }
}

struct Overlay<'a> {
    tree: &'a sled::Db,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl KvTxn for Overlay<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.writes.get(key) {
            return Ok(v.clone());
        }
        Ok(self.tree.get(key).map_err(err)?.map(|v| v.to_vec()))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn del(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.writes.insert(key.to_vec(), None);
        Ok(())
    }

    fn scan_prefix(&mut self, prefix: &[u8], limit: usize) -> Result<Entries, StoreError> {
        // Merge the committed tree with the overlay: overlay entries win.
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut from_tree = 0;
        for entry in self.tree.scan_prefix(prefix) {
            let (k, v) = entry.map_err(err)?;
            if !self.writes.contains_key(k.as_ref()) {
                merged.insert(k.to_vec(), v.to_vec());
                from_tree += 1;
                if from_tree == limit {
                    break;
                }
            }
        }
        for (k, v) in self.writes.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            if let Some(v) = v {
                merged.insert(k.clone(), v.clone());
            }
        }
        Ok(merged.into_iter().take(limit).collect())
    }
}

impl Store for SledStore {
    fn apply(&self, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, StoreError> {
        let mut overlay = Overlay {
            tree: &self.db,
            writes: BTreeMap::new(),
        };
        let out = apply_ops(&mut overlay, ops)?;
        let mut batch = sled::Batch::default();
        for (k, v) in overlay.writes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.db.apply_batch(batch).map_err(err)?;
        self.db.flush().map_err(err)?;
        Ok(out)
    }

    kv_reads!();
}

impl KvRead for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key).map_err(err)?.map(|v| v.to_vec()))
    }

    fn scan_from(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Entries, StoreError> {
        let mut out = Vec::new();
        for entry in self.db.range(from..) {
            let (k, v) = entry.map_err(err)?;
            if !k.starts_with(prefix) || out.len() == limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        crate::store::conformance::run(&SledStore::open(&dir.path().join("db")).unwrap());
        crate::store::conformance::forwards(&SledStore::open(&dir.path().join("fwd")).unwrap());
        let path = dir.path().join("db2");
        crate::store::conformance::persists(&|| Box::new(SledStore::open(&path).unwrap()));
    }
}
