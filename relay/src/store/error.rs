//! Why storage failed.

/// Why storage failed. The relay never acknowledges an operation whose
/// batch failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The disk is full (ENOSPC).
    #[error("storage is full")]
    Full,
    /// Any other I/O or engine failure.
    #[error("storage failure: {0}")]
    Backend(String),
    /// Bytes on disk do not decode: the store is corrupt.
    #[error("corrupt record in the store: {0}")]
    Corrupt(&'static str),
}

impl StoreError {
    pub(crate) fn from_io(err: &std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::StorageFull {
            Self::Full
        } else {
            Self::Backend(err.to_string())
        }
    }
}
