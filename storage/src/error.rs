//! The storage error type; no engine type leaks through it.

use rookery_events::Position;

/// How a refusal for want of disk space begins, in every error text that carries it (the REST families
/// answer it with 507).
pub const DISK_FULL: &str = "disk full";

/// Everything that can go wrong in the event log.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The log has shut down.
    #[error("event log is closed")]
    Closed,
    /// The caller handed the log something it cannot store.
    #[error("invalid append: {0}")]
    Invalid(String),
    /// A stored record or snapshot could not be decoded.
    #[error("corrupt {what} at position {position}: {reason}")]
    Corrupt {
        /// What was being read ("record", "snapshot", "index entry").
        what: &'static str,
        /// The log position involved, or 0 when not applicable.
        position: Position,
        /// Why it is considered corrupt.
        reason: String,
    },
    /// The append was refused before anything was written: the data directory's filesystem is below
    /// its free-space reserve. The log stays usable; appends succeed again once space is freed.
    #[error("{DISK_FULL}: {0}")]
    DiskFull(String),
    /// The storage engine failed (I/O error, full disk, lock held by another process...).
    #[error("storage backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}
