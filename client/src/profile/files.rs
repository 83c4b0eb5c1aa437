//! The file operations of the store, each preceded by a [`step`] (where
//! tests interrupt it): reading with a bound, writing a new file and
//! fsyncing it, overwriting a file in place, renaming, destroying.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::steps::step;
use crate::error::Error;

/// Reads `path` whole, refusing more than `max` bytes; `None` if it does
/// not exist.
pub(super) fn read_bounded(path: &Path, max: u64) -> Result<Option<Vec<u8>>, Error> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("cannot read the profile", e)),
    };
    let mut bytes = Vec::new();
    Read::by_ref(&mut f)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("cannot read the profile", e))?;
    if bytes.len() as u64 > max {
        return Err(Error::CannotOpen);
    }
    Ok(Some(bytes))
}

/// Creates the profile directory (mode 0700) if it is missing.
pub(super) fn create_private_dir(dir: &Path) -> Result<(), Error> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| Error::io("cannot create the profile directory", e))
}

fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Writes `bytes` as the whole of `path` (created, mode 0600, or
/// truncated) and fsyncs it.
pub(super) fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    step("write a new file");
    let mut f = private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(bytes)?;
    step("fsync the new file");
    f.sync_all()
}

/// Overwrites `path` in place from its first byte (never truncated,
/// renamed or copied, so the file system reuses its blocks where it can)
/// and fsyncs it.
pub(super) fn overwrite_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    step("overwrite in place");
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.write_all(bytes)?;
    step("fsync the overwritten file");
    f.sync_all()
}

/// Renames `from` over `to` and fsyncs the directory.
pub(super) fn rename_synced(dir: &Path, from: &str, to: &str) -> io::Result<()> {
    step("rename");
    fs::rename(dir.join(from), dir.join(to))?;
    sync_dir(dir)
}

/// Fsyncs the directory, so renames, creations and removals in it last.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    step("fsync the directory");
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Overwrites the whole of `path` with random bytes in place, fsyncs it
/// and removes it. A file that is not there is not an error.
pub(super) fn destroy(path: &Path, rng: &mut impl CryptoRng) -> io::Result<()> {
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    step("overwrite with random bytes");
    let mut f = OpenOptions::new().write(true).open(path)?;
    let mut block = Zeroizing::new(vec![0u8; 64 * 1024]);
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(block.len() as u64)).unwrap_or(block.len());
        let chunk = block.get_mut(..n).unwrap_or_default();
        rng.fill_bytes(chunk);
        f.write_all(chunk)?;
        left -= n as u64;
    }
    step("fsync the overwritten file");
    f.sync_all()?;
    drop(f);
    step("remove");
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
