//! The runtime a network command runs on.

use crate::error::Error;

/// Runs an async command on a single-threaded runtime.
pub(crate) fn block_on<T>(f: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the network runtime", e))?
        .block_on(f)
}
