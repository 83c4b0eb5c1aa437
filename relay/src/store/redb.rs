//! The default backend: redb (stable file format, copy-on-write B-trees,
//! commits with `Durability::Immediate` fsync before returning).

use std::path::Path;

use enlace_protocol::envelope::MailboxId;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use super::{
    Entries, KvRead, KvTxn, MailboxRecord, Stats, Store, StoreError, StoredEnvelope, WriteOp,
    WriteOutcome, apply_ops, read_by_send_id, read_mailbox, read_pending, read_stats,
};

const TABLE: TableDefinition<'static, &'static [u8], &'static [u8]> =
    TableDefinition::new("enlace-v1");

/// A redb database file.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
}

fn err(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(io) => StoreError::from_io(&io),
        other => StoreError::Backend(other.to_string()),
    }
}

impl RedbStore {
    /// Opens or creates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::init(Database::create(path).map_err(err)?)
    }

    /// An in-memory database, for unit tests of the relay core.
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(err)?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, StoreError> {
        // Create the table so that readers never see it missing.
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(TABLE).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(Self { db })
    }
}

struct Txn<'a> {
    table: redb::Table<'a, &'static [u8], &'static [u8]>,
}

impl KvTxn for Txn<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .table
            .get(key)
            .map_err(err)?
            .map(|v| v.value().to_vec()))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.table.insert(key, value).map_err(err)?;
        Ok(())
    }

    fn del(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.table.remove(key).map_err(err)?;
        Ok(())
    }

    fn scan_prefix(&mut self, prefix: &[u8], limit: usize) -> Result<Entries, StoreError> {
        let mut out = Vec::new();
        for entry in self.table.range::<&[u8]>(prefix..).map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            if !k.value().starts_with(prefix) || out.len() == limit {
                break;
            }
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

fn run(txn: &WriteTransaction, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, StoreError> {
    let table = txn.open_table(TABLE).map_err(err)?;
    apply_ops(&mut Txn { table }, ops)
}

impl Store for RedbStore {
    fn apply(&self, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, StoreError> {
        let mut txn = self.db.begin_write().map_err(err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        match run(&txn, ops) {
            Ok(out) => {
                txn.commit().map_err(err)?;
                Ok(out)
            }
            Err(e) => {
                // Dropping aborts as well; an abort error adds nothing.
                let _ = txn.abort();
                Err(e)
            }
        }
    }

    fn mailbox(&self, receive_id: &MailboxId) -> Result<Option<MailboxRecord>, StoreError> {
        read_mailbox(self, receive_id)
    }

    fn mailbox_by_send_id(
        &self,
        send_id: &MailboxId,
    ) -> Result<Option<(MailboxId, MailboxRecord)>, StoreError> {
        read_by_send_id(self, send_id)
    }

    fn pending(
        &self,
        receive_id: &MailboxId,
        after: Option<u64>,
        not_before: u64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        read_pending(self, receive_id, after, not_before, limit)
    }

    fn stats(&self) -> Result<Stats, StoreError> {
        read_stats(self)
    }

    super::forward_reads!();
}

impl KvRead for RedbStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(TABLE).map_err(err)?;
        Ok(table.get(key).map_err(err)?.map(|v| v.value().to_vec()))
    }

    fn scan_from(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Entries, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(TABLE).map_err(err)?;
        let mut out = Vec::new();
        for entry in table.range::<&[u8]>(from..).map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            if !k.value().starts_with(prefix) || out.len() == limit {
                break;
            }
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance_in_memory() {
        super::super::conformance::run(&RedbStore::in_memory().unwrap());
        super::super::conformance::forwards(&RedbStore::in_memory().unwrap());
    }

    #[test]
    fn conformance_on_disk_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        super::super::conformance::run(&RedbStore::open(&path).unwrap());
        let path2 = dir.path().join("db2");
        super::super::conformance::persists(&|| Box::new(RedbStore::open(&path2).unwrap()));
    }
}
