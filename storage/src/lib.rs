//! Rookery's event log: an append-only sequence of envelopes, numbered by [`Position`], chained by hash,
//! with indexes by stream and by per-stream sequence number, plus projection snapshots.
//!
//! The log is engine-agnostic bytes: `rookery-events` encodes envelopes, this crate stores them.
//! [`RocksLog`] is the production engine; [`MemLog`] is its in-memory twin for tests.
//! Both pass the same conformance suite (`tests.rs`).
//!
//! **Invariant:** when a [`Commit`] resolves to `Ok`, every record of that append is in the log, atomically,
//! readable through every index, and (under [`Durability::SyncEveryGroup`]) on disk, so it survives `kill -9`
//! and power loss, indexes included (an engine may rebuild index entries from the records when it opens).
//! Nothing outside this crate names RocksDB.
#![warn(missing_docs)]

mod error;
mod mem;
mod rocks;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use error::{StorageError, DISK_FULL};
pub use mem::MemLog;
pub use rocks::histogram::{HistogramSnapshot, GROUP_RECORDS_BOUNDS, WRITE_MICROS_BOUNDS};
pub use rocks::{baseline, fault, LogStats, RocksLog, RocksOptions};
pub use rookery_events::{ChainHash, Position};

/// Checks what every engine refuses before anything is written.
pub(crate) fn check_batch(records: &[NewRecord]) -> Result<()> {
    if records.is_empty() {
        return Err(StorageError::Invalid("an append needs at least one record".into()));
    }
    for r in records {
        if r.stream.is_empty() {
            return Err(StorageError::Invalid("stream key must not be empty".into()));
        }
        if r.stream.contains(&0xFF) {
            return Err(StorageError::Invalid("stream key must not contain the byte 0xFF".into()));
        }
    }
    Ok(())
}

/// Result alias for storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// How hard an append works before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit group is written to the WAL and fsynced before any of its appends is acknowledged.
    /// Survives process and machine crashes. The default.
    #[default]
    SyncEveryGroup,
    /// Commit groups are written to the WAL without fsync: they survive `kill -9` of the process
    /// (the data is in the OS page cache) but not a machine crash.
    OsBuffered,
}

/// One record handed to [`EventLog::submit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// Key of the stream (aggregate) the record belongs to, e.g. one channel or one user.
    /// Must not contain the byte `0xFF` (UTF-8 text never does); the engine uses it as a separator.
    pub stream: Vec<u8>,
    /// The encoded envelope body, stored as given.
    pub body: Vec<u8>,
    /// The envelope's digest; the log chains it (see `rookery_events::link`).
    pub digest: ChainHash,
    /// A dense per-stream sequence number to index (a channel's message_seq), if any.
    /// Each (stream, seq) pair must be appended at most once, and a stream's seqs must grow with its
    /// positions (the RocksDB engine stores them in blocks that rely on it).
    pub seq: Option<u64>,
}

/// A new body for an already stored record, keeping its position, chain link and digest. Only for
/// payload erasure: the new body must have the same digest as the old one (the digest covers payloads
/// through their hashes), which `rookery verify` checks like any other record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The record to rewrite (at or below the head).
    pub position: Position,
    /// The digest the record has; the rewrite is refused if the stored one differs.
    pub digest: ChainHash,
    /// The new body.
    pub body: Vec<u8>,
}

/// A record as read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Where the record sits in the log.
    pub position: Position,
    /// The chain link of the record before it ([`ChainHash::GENESIS`] for position 1).
    pub prev_hash: ChainHash,
    /// The digest given at append time.
    pub digest: ChainHash,
    /// The body given at append time.
    pub body: Vec<u8>,
}

impl StoredRecord {
    /// This record's own chain link: what the next record stores as `prev_hash`.
    pub fn hash(&self) -> ChainHash {
        rookery_events::link(&self.prev_hash, self.position, &self.digest)
    }
}

/// What a successful append reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Position of the first record of the append (records get consecutive positions).
    pub first: Position,
    /// Position of the last record of the append.
    pub last: Position,
}

/// A projection snapshot: the encoded state of one stream as of a log position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The last log position whose effects the state includes.
    pub position: Position,
    /// The encoded state (opaque to the log).
    pub state: Vec<u8>,
}

/// The pending result of [`EventLog::submit`]: resolves once the append is durable (or failed).
///
/// Await it from async code, or call [`Commit::wait`] from a plain thread.
#[must_use = "an append is not acknowledged until its Commit resolves"]
pub struct Commit(CommitInner);

enum CommitInner {
    Ready(Option<Result<Committed>>),
    Pending(tokio::sync::oneshot::Receiver<Result<Committed>>),
}

impl Commit {
    /// A commit that has already completed.
    pub fn ready(result: Result<Committed>) -> Commit {
        Commit(CommitInner::Ready(Some(result)))
    }

    /// A commit completed later by the sender half.
    pub fn channel() -> (CommitSender, Commit) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (CommitSender(tx), Commit(CommitInner::Pending(rx)))
    }

    /// Blocks the current thread until the append is durable.
    ///
    /// # Errors
    /// The append's error, or [`StorageError::Closed`] if the log shut down before answering.
    ///
    /// # Panics
    /// When called from within an async runtime thread (use `.await` there).
    pub fn wait(self) -> Result<Committed> {
        match self.0 {
            CommitInner::Ready(r) => r.unwrap_or(Err(StorageError::Closed)),
            CommitInner::Pending(rx) => rx.blocking_recv().unwrap_or(Err(StorageError::Closed)),
        }
    }
}

impl Future for Commit {
    type Output = Result<Committed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            CommitInner::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(StorageError::Closed))),
            CommitInner::Pending(rx) => Pin::new(rx).poll(cx).map(|r| r.unwrap_or(Err(StorageError::Closed))),
        }
    }
}

/// The completing half of [`Commit::channel`].
pub struct CommitSender(tokio::sync::oneshot::Sender<Result<Committed>>);

impl CommitSender {
    /// Completes the commit; a dropped receiver is ignored.
    pub fn send(self, result: Result<Committed>) {
        let _ = self.0.send(result);
    }
}

/// The event log.
///
/// Appends from all callers that arrive together are committed as one group: one atomic write batch and,
/// under [`Durability::SyncEveryGroup`], one WAL fsync. Records of one `submit` get consecutive positions
/// and are committed atomically; the log preserves submission order, so two submits from the same thread
/// are committed in the order they were made.
///
/// All methods may block on disk I/O; call them off async reactor threads except for `submit`,
/// which only enqueues.
pub trait EventLog: Send + Sync {
    /// Enqueues records for the next commit group and returns at once.
    ///
    /// # Errors
    /// The returned [`Commit`] resolves to [`StorageError::Closed`] after shutdown, to
    /// [`StorageError::Invalid`] for a record the log cannot store (empty batch, a stream containing
    /// `0xFF`), or to [`StorageError::Backend`] when the write failed; in every error case nothing of
    /// the batch is in the log.
    fn submit(&self, records: Vec<NewRecord>) -> Commit;

    /// Like [`EventLog::submit`], and in the same atomic write replaces the bodies of stored
    /// records (payload erasure). Each rewrite is checked against the stored record first: a position
    /// beyond the head or a digest that differs from the stored one fails the whole append with
    /// [`StorageError::Invalid`] and nothing is written.
    fn submit_with_rewrites(&self, records: Vec<NewRecord>, rewrites: Vec<Rewrite>) -> Commit;

    /// Makes the engine drop superseded versions of the records in `from..=to` (after rewrites), so
    /// erased bytes leave the disk and not only the readable log. May take a while; best effort.
    ///
    /// # Errors
    /// [`StorageError::Backend`] on I/O failure.
    fn purge_superseded(&self, from: Position, to: Position) -> Result<()>;

    /// Position and chain link of the last committed record, or `(Position::ZERO, ChainHash::GENESIS)`
    /// for an empty log.
    fn head(&self) -> (Position, ChainHash);

    /// Calls `f` with every record from position `from` (inclusive) upward, in order, until `f` breaks
    /// or the committed end is reached. Meant for replay and audit: it does not churn the block cache.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] for an undecodable record, [`StorageError::Backend`] on I/O failure.
    fn scan(&self, from: Position, f: &mut dyn FnMut(StoredRecord) -> ControlFlow<()>) -> Result<()>;

    /// Up to `limit` records of `stream` with positions greater than `after`, oldest first.
    ///
    /// # Errors
    /// As for [`EventLog::scan`].
    fn read_stream(&self, stream: &[u8], after: Position, limit: usize) -> Result<Vec<StoredRecord>>;

    /// Up to `limit` records of `stream` with positions less than `before`, newest first: the
    /// backward twin of [`EventLog::read_stream`], for audit queries that page newest-first.
    ///
    /// The default walks the stream forward and keeps the tail, O(stream); both engines here
    /// override it with an O(log n + k) backward walk of the index.
    ///
    /// # Errors
    /// As for [`EventLog::scan`].
    fn read_stream_back(&self, stream: &[u8], before: Position, limit: usize) -> Result<Vec<StoredRecord>> {
        let mut tail = std::collections::VecDeque::with_capacity(limit.min(1024));
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut after = Position::ZERO;
        loop {
            let batch = self.read_stream(stream, after, 1024)?;
            let Some(last) = batch.last() else { break };
            after = last.position;
            for r in batch.into_iter().take_while(|r| r.position < before) {
                if tail.len() == limit {
                    tail.pop_front();
                }
                tail.push_back(r);
            }
            if after >= before {
                break;
            }
        }
        Ok(tail.into_iter().rev().collect())
    }

    /// Records of `stream` whose indexed seq lies in `from..=to`, at most `limit` of them, with their seq.
    /// `newest_first = false` returns the lowest seqs ascending; `true` the highest seqs descending.
    /// Costs O(log n + k).
    ///
    /// # Errors
    /// As for [`EventLog::scan`].
    fn read_seq_range(&self, stream: &[u8], from: u64, to: u64, limit: usize, newest_first: bool) -> Result<Vec<(u64, StoredRecord)>>;

    /// Stores a snapshot of `stream`'s projection, replacing an older one. A snapshot at a lower position
    /// than the stored one is ignored, so racing writers cannot move a snapshot backwards.
    ///
    /// # Errors
    /// [`StorageError::Backend`] on I/O failure.
    fn put_snapshot(&self, stream: &[u8], snapshot: &Snapshot) -> Result<()>;

    /// The latest snapshot of `stream`, if any.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] or [`StorageError::Backend`].
    fn get_snapshot(&self, stream: &[u8]) -> Result<Option<Snapshot>>;

    /// Calls `f` with every stored snapshot (stream key and snapshot), in stream-key order.
    ///
    /// # Errors
    /// As for [`EventLog::get_snapshot`].
    fn scan_snapshots(&self, f: &mut dyn FnMut(&[u8], Snapshot) -> ControlFlow<()>) -> Result<()>;

    /// Convenience: [`EventLog::submit`] and block until durable.
    ///
    /// # Errors
    /// As for [`EventLog::submit`].
    fn append(&self, records: Vec<NewRecord>) -> Result<Committed> {
        self.submit(records).wait()
    }

    /// Up to `limit` records from position `from` (inclusive), in order.
    ///
    /// # Errors
    /// As for [`EventLog::scan`].
    fn read_range(&self, from: Position, limit: usize) -> Result<Vec<StoredRecord>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.scan(from, &mut |r| {
            out.push(r);
            if out.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(out)
    }
}
