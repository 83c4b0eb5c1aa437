//! The default backend: redb (stable file format, copy-on-write B-trees,
//! commits with `Durability::Immediate` fsync before returning).
//!
//! I/O failures (`docs/storage.md`, "When the disk fails"): redb latches
//! any I/O error until the database is reopened. A commit that failed
//! because the disk is full wrote nothing the page cache holds, so the
//! store reopens the file and goes on (deposits get `StorageFull` meanwhile).
//! Any other I/O failure, and above all a failed fsync, stops writes for
//! good: as PostgreSQL learned, after a failed fsync the page cache no
//! longer tells what is on disk, so nothing more is acknowledged until an
//! operator has checked the disk and restarted the relay. The database is
//! closed then, so reads fail too (`StoreError::Backend`, "check the disk,
//! then restart the relay") until the restart; callers that retry reads,
//! like the forwarding worker, back off.

use std::fs::OpenOptions;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use redb::{
    BackendError, Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable,
    StorageBackend, TableDefinition, WriteTransaction,
};

use super::api::{Store, kv_reads};
use super::batch::apply_ops;
use super::error::StoreError;
use super::kv::{Entries, KvRead, KvTxn};
use super::ops::WriteOp;
use super::outcome::WriteOutcome;

const TABLE: TableDefinition<'static, &'static [u8], &'static [u8]> =
    TableDefinition::new("enlace-v1");

/// Opens the database (again) over a fresh backend.
type Opener = Box<dyn Fn(&Arc<Health>) -> Result<Database, StoreError> + Send + Sync>;

/// What the backend saw go wrong.
#[derive(Debug, Default)]
struct Health {
    /// An fsync or a write failed with anything but "disk full".
    untrusted: AtomicBool,
}

/// A storage backend that records failures the database may not report
/// precisely (redb reports the error, not which call failed).
#[derive(Debug)]
struct Watched<B> {
    inner: B,
    health: Arc<Health>,
}

impl<B> Watched<B> {
    fn note<T>(&self, r: std::io::Result<T>, sync: bool) -> std::io::Result<T> {
        if let Err(e) = &r
            && (sync || e.kind() != std::io::ErrorKind::StorageFull)
        {
            self.health.untrusted.store(true, Ordering::SeqCst);
        }
        r
    }
}

impl<B: StorageBackend> StorageBackend for Watched<B> {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let r = self.inner.set_len(len);
        self.note(r, false)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        let r = self.inner.sync_data();
        self.note(r, true)
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let r = self.inner.write(offset, data);
        self.note(r, false)
    }

    fn close(&self) -> std::io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

/// A redb database.
pub struct RedbStore {
    /// `None` after a failed commit until a reopen succeeds.
    db: RwLock<Option<Database>>,
    /// `None` for an in-memory database, which is never reopened.
    opener: Option<Opener>,
    health: Arc<Health>,
    /// The directory whose file system holds the database, watched for
    /// free space.
    dir: Option<PathBuf>,
}

/// Free space kept for acks, deletes and expiry: deposits are refused
/// below it (a tenth of the file system, at most 64 MiB), so that a full
/// disk never stops the operations that free it.
const RESERVE_MAX: u64 = 64 << 20;

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

fn err(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(io) => StoreError::from_io(&io),
        other => StoreError::Backend(other.to_string()),
    }
}

impl RedbStore {
    /// Opens or creates the database at `path`, checking the whole file's
    /// checksums first: a file damaged outside redb is refused with
    /// [`StoreError::Corrupt`] instead of being served.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let dir = path.parent().map(Path::to_owned);
        let path: PathBuf = path.to_owned();
        let mut store = Self::over(move || {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| StoreError::from_io(&e))?;
            redb::backends::FileBackend::new(file).map_err(open_err)
        })?;
        store.dir = dir;
        Ok(store)
    }

    /// Whether free space is below the reserve kept for acks and deletes.
    fn low_on_space(&self) -> bool {
        let Some(dir) = &self.dir else {
            return false;
        };
        match rustix::fs::statvfs(dir) {
            Ok(st) => {
                let total = st.f_blocks.saturating_mul(st.f_frsize);
                let free = st.f_bavail.saturating_mul(st.f_frsize);
                free < (total / 10).min(RESERVE_MAX)
            }
            Err(_) => false,
        }
    }

    /// A database over any redb storage backend; `backend` is called again
    /// for a fresh one to reopen the database after a full disk. Used by
    /// the fault-injection and power-loss tests.
    pub fn over<B: StorageBackend>(
        backend: impl Fn() -> Result<B, StoreError> + Send + Sync + 'static,
    ) -> Result<Self, StoreError> {
        let opener: Opener = Box::new(move |health| {
            let inner = backend()?;
            Database::builder()
                .set_check_integrity_on_open(true)
                .create_with_backend(Watched {
                    inner,
                    health: health.clone(),
                })
                .map_err(open_err)
        });
        let health = Arc::new(Health::default());
        let db = init(opener(&health)?)?;
        Ok(Self {
            db: RwLock::new(Some(db)),
            opener: Some(opener),
            health,
            dir: None,
        })
    }

    /// An in-memory database, for unit tests of the relay core.
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(err)?;
        Ok(Self {
            db: RwLock::new(Some(init(db)?)),
            opener: None,
            health: Arc::default(),
            dir: None,
        })
    }

    fn read_db(&self) -> std::sync::RwLockReadGuard<'_, Option<Database>> {
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the database and, unless the disk can no longer be trusted,
    /// opens it again from the file.
    fn reopen(&self) {
        let Some(open) = &self.opener else {
            return;
        };
        let mut db = self.db.write().unwrap_or_else(|p| p.into_inner());
        // Close first: redb locks the file.
        *db = None;
        if self.health.untrusted.load(Ordering::SeqCst) {
            return;
        }
        match open(&self.health).and_then(init) {
            Ok(fresh) => {
                tracing::warn!("storage reopened after a full disk");
                *db = Some(fresh);
            }
            Err(e) => tracing::error!("storage could not be reopened ({e}); will retry"),
        }
    }

    fn unavailable(&self) -> StoreError {
        if self.health.untrusted.load(Ordering::SeqCst) {
            StoreError::Backend(
                "an fsync or write failed: writes stopped; check the disk, then restart the relay"
                    .into(),
            )
        } else {
            StoreError::Backend("storage unavailable after a full disk".into())
        }
    }
}

/// Creates the table so that readers never see it missing.
fn init(db: Database) -> Result<Database, StoreError> {
    let txn = db.begin_write().map_err(err)?;
    txn.open_table(TABLE).map_err(err)?;
    txn.commit().map_err(err)?;
    Ok(db)
}

fn open_err(e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(what)) => {
            tracing::error!("database integrity check failed: {what}");
            StoreError::Corrupt("the database file failed its integrity check")
        }
        other => err(other),
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

fn apply_on(db: &Database, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, StoreError> {
    let mut txn = db.begin_write().map_err(err)?;
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

/// Writes that only add data (deposits and forward enqueues): refused when
/// free space is below the reserve, which is kept for the writes that free
/// space.
fn is_deposit(op: &WriteOp) -> bool {
    matches!(op, WriteOp::Deposit { .. } | WriteOp::ForwardEnqueue(_))
}

/// Commits all but the deposits, which are answered [`WriteOutcome::Full`].
fn refuse_deposits(db: &Database, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, StoreError> {
    let rest: Vec<WriteOp> = ops.iter().filter(|op| !is_deposit(op)).cloned().collect();
    let mut done = if rest.is_empty() {
        Vec::new()
    } else {
        apply_on(db, &rest)?
    }
    .into_iter();
    Ok(ops
        .iter()
        .map(|op| {
            if is_deposit(op) {
                WriteOutcome::Full
            } else {
                done.next().unwrap_or(WriteOutcome::Full)
            }
        })
        .collect())
}

impl Store for RedbStore {
    fn apply(&self, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, StoreError> {
        if self.read_db().is_none() {
            self.reopen();
        }
        let result = match &*self.read_db() {
            Some(db) if ops.iter().any(is_deposit) && self.low_on_space() => {
                refuse_deposits(db, ops)
            }
            Some(db) => apply_on(db, ops),
            None => Err(self.unavailable()),
        };
        // A corrupt record is a decode failure of ours, not an I/O failure:
        // the database itself is fine.
        if matches!(result, Err(StoreError::Full | StoreError::Backend(_))) {
            if self.health.untrusted.load(Ordering::SeqCst) {
                tracing::error!(
                    "an fsync or write failed: no more writes are accepted; check the disk, then restart the relay"
                );
            }
            self.reopen();
        }
        result
    }

    kv_reads!();
}

impl RedbStore {
    /// Runs `read` on the table in a fresh read transaction (a snapshot of
    /// the last commit), holding the database lock throughout, so a
    /// reopen after a failed commit waits for the read to finish.
    fn read<T>(
        &self,
        read: impl FnOnce(&ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self.read_db();
        let txn = guard
            .as_ref()
            .ok_or_else(|| self.unavailable())?
            .begin_read()
            .map_err(err)?;
        read(&txn.open_table(TABLE).map_err(err)?)
    }
}

impl KvRead for RedbStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|table| Ok(table.get(key).map_err(err)?.map(|v| v.value().to_vec())))
    }

    fn scan_from(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Entries, StoreError> {
        self.read(|table| {
            let mut out = Vec::new();
            for entry in table.range::<&[u8]>(from..).map_err(err)? {
                let (k, v) = entry.map_err(err)?;
                if !k.value().starts_with(prefix) || out.len() == limit {
                    break;
                }
                out.push((k.value().to_vec(), v.value().to_vec()));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance_in_memory() {
        crate::store::conformance::run(&RedbStore::in_memory().unwrap());
        crate::store::conformance::forwards(&RedbStore::in_memory().unwrap());
    }

    #[test]
    fn low_space_refuses_forward_enqueues_like_deposits() {
        use enlace_protocol::command::ForwardId;
        use enlace_protocol::keys::Fingerprint;

        use crate::store::forward::Enqueue;

        let store = RedbStore::in_memory().unwrap();
        let enqueue = WriteOp::ForwardEnqueue(Box::new(Enqueue {
            forward_id: ForwardId([9; 16]),
            destination_fp: Fingerprint([5; 32]),
            destination: vec![5; 40],
            sealed: vec![1; 300],
            arrival: 1_000,
            deadline: 2_000,
            per_destination: 10,
            total: 10,
        }));
        let expire = WriteOp::ForwardExpire {
            now: 1_000,
            keep_until: 5_000,
            limit: 10,
        };
        let guard = store.read_db();
        let db = guard.as_ref().unwrap();
        let out = refuse_deposits(db, &[enqueue, expire]).unwrap();
        assert!(matches!(out[0], WriteOutcome::Full), "{:?}", out[0]);
        assert!(!matches!(out[1], WriteOutcome::Full), "{:?}", out[1]);
        drop(guard);
        assert!(
            store
                .forward_queue(&Fingerprint([5; 32]), 10)
                .unwrap()
                .is_empty()
        );
        assert!(store.forward_status(&ForwardId([9; 16])).unwrap().is_none());
    }

    #[test]
    fn an_expired_forward_can_be_queued_again() {
        use enlace_protocol::command::ForwardId;
        use enlace_protocol::keys::Fingerprint;

        use crate::store::forward::{Enqueue, QueueState};

        let store = RedbStore::in_memory().unwrap();
        let id = ForwardId([4; 16]);
        let enqueue = |arrival: u64| {
            WriteOp::ForwardEnqueue(Box::new(Enqueue {
                forward_id: id,
                destination_fp: Fingerprint([6; 32]),
                destination: vec![6; 40],
                sealed: vec![1; 300],
                arrival,
                deadline: arrival + 100,
                per_destination: 10,
                total: 10,
            }))
        };
        let expire = |now: u64| WriteOp::ForwardExpire {
            now,
            keep_until: now + 1_000,
            limit: 100,
        };
        store.apply(&[enqueue(1_000)]).unwrap();
        store.apply(&[expire(1_200)]).unwrap();
        let state = |s: &RedbStore| s.forward_status(&id).unwrap().map(|r| r.state);
        assert_eq!(state(&store), Some(QueueState::Expired));
        assert!(
            store
                .forward_queue(&Fingerprint([6; 32]), 10)
                .unwrap()
                .is_empty()
        );
        // Sent again: queued again, not answered as a duplicate.
        let out = store.apply(&[enqueue(1_300)]).unwrap();
        assert!(
            matches!(out[0], WriteOutcome::Stored { .. }),
            "{:?}",
            out[0]
        );
        assert_eq!(state(&store), Some(QueueState::Queued));
        assert_eq!(
            store
                .forward_queue(&Fingerprint([6; 32]), 10)
                .unwrap()
                .len(),
            1
        );
        // A queued one is still a duplicate.
        let again = store.apply(&[enqueue(1_300)]).unwrap();
        assert!(
            matches!(again[0], WriteOutcome::Duplicate),
            "{:?}",
            again[0]
        );
        // The old "forget at" time (2_200) does not forget the new one.
        store.apply(&[expire(1_350)]).unwrap();
        store
            .apply(&[WriteOp::ForwardExpire {
                now: 2_300,
                keep_until: 9_000,
                limit: 100,
            }])
            .unwrap();
        assert_eq!(state(&store), Some(QueueState::Expired));
    }

    #[test]
    fn conformance_on_disk_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        crate::store::conformance::run(&RedbStore::open(&path).unwrap());
        let path2 = dir.path().join("db2");
        crate::store::conformance::persists(&|| Box::new(RedbStore::open(&path2).unwrap()));
    }
}
