//! The error the actor layer answers with.

use rookery_events::Rejection;

/// Why a request to the core failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The domain refused the command; nothing changed.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The event log failed; the command may not be acknowledged. Nothing the caller was told about
    /// is lost, but this command's effect is unknown until the log is read again.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The actor stopped (passivated or failed) while the request was queued; retry.
    #[error("actor unavailable")]
    Unavailable,
}
