//! The writer thread: group commit, position assignment and the hash chain.
//!
//! It is the only code that writes `log`, so it can assign positions and extend the chain without any
//! lock: its own `head` is the truth. A group is one key per record in one synced write; once that
//! write has returned, the writer adds the group's index entries to the tail (`tail.rs`) and publishes
//! the new head, and only then answers the group's callers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use rocksdb::{WriteBatch, WriteOptions, DB};
use rookery_events::{link, ChainHash, Position};

use super::histogram::{AtomicHistogram, GROUP_RECORDS_BOUNDS, WRITE_MICROS_BOUNDS};
use super::schema::*;
use super::tail::SharedTail;
use super::{backend, cf, encode_record_into, lock, RocksOptions};
use crate::{CommitSender, Committed, Durability, NewRecord, Result, StorageError};

/// One `submit`: its records and the commit to complete.
pub(super) struct Request {
    pub(super) records: Vec<NewRecord>,
    /// Encoded replacement values of stored records (log key, value), checked by the submitter.
    pub(super) rewrites: Vec<([u8; 8], Vec<u8>)>,
    pub(super) reply: CommitSender,
}

/// What the writer publishes to readers.
pub(super) struct Shared {
    /// Last committed position and chain link; updated only after the write batch is in RocksDB.
    pub(super) head: Mutex<(Position, ChainHash)>,
    pub(super) groups: AtomicU64,
    pub(super) records: AtomicU64,
    pub(super) syncs: AtomicU64,
    /// Records submitted and not yet answered (queued for or inside the group being written).
    pub(super) pending: AtomicU64,
    /// Records per successfully written group.
    pub(super) group_records: AtomicHistogram,
    /// Microseconds each successful group write took (write plus WAL fsync when syncing).
    pub(super) write_micros: AtomicHistogram,
    /// Test hook: fail the next group's write.
    #[cfg(test)]
    pub(super) fail_next: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub(super) fn new(head: (Position, ChainHash)) -> Shared {
        Shared {
            head: Mutex::new(head),
            groups: AtomicU64::new(0),
            records: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            group_records: AtomicHistogram::new(GROUP_RECORDS_BOUNDS),
            write_micros: AtomicHistogram::new(WRITE_MICROS_BOUNDS),
            #[cfg(test)]
            fail_next: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

pub(super) struct Writer {
    db: Arc<DB>,
    shared: Arc<Shared>,
    tail: Arc<SharedTail>,
    options: RocksOptions,
    /// The writer's own head: where the next group starts.
    head: (Position, ChainHash),
    /// A request taken from the queue that did not fit in the previous group; it opens the next one.
    carry: Option<Request>,
    /// Set after a failed write: every later append is refused until the log is reopened. A failed
    /// write (typically a failed WAL fsync) may still have reached the memtable or the disk, and RocksDB
    /// itself stops accepting writes after such an error, so reusing the positions could leave index
    /// entries pointing at the wrong records. Fail-stop is the safe answer; reopening recovers the head.
    failed: Option<String>,
    /// Reused buffer for encoding one record value.
    scratch: Vec<u8>,
}

impl Writer {
    pub(super) fn new(db: Arc<DB>, shared: Arc<Shared>, tail: Arc<SharedTail>, options: RocksOptions, head: (Position, ChainHash)) -> Writer {
        Writer { db, shared, tail, options, head, carry: None, failed: None, scratch: Vec::new() }
    }

    /// Serves the queue until every sender is gone and it is empty, so nothing submitted is dropped.
    pub(super) fn run(mut self, rx: Receiver<Request>) {
        let max_records = self.options.max_group_records.max(1);
        let max_bytes = self.options.max_group_bytes.max(1);
        loop {
            // Block for the group's first request; a group is never empty.
            let first = match self.carry.take() {
                Some(request) => request,
                None => match rx.recv() {
                    Ok(request) => request,
                    Err(_) => break,
                },
            };
            let (mut records, mut bytes) = weight(&first);
            let mut group = vec![first];
            // Then take whatever else is already queued, without waiting: latency stays that of one
            // write, and the more callers are waiting, the larger (and cheaper per record) the group.
            while records < max_records && bytes < max_bytes {
                let Ok(request) = rx.try_recv() else { break };
                let (n, b) = weight(&request);
                if records + n > max_records || bytes + b > max_bytes {
                    self.carry = Some(request);
                    break;
                }
                records += n;
                bytes += b;
                group.push(request);
            }
            // The tail's memory is bounded: past its limit, wait for the indexer before writing more.
            self.tail.wait_for_room();
            self.commit(group);
        }
        tracing::debug!(head = self.head.0 .0, "event log writer stopped");
    }

    /// Writes one group and completes each of its commits.
    fn commit(&mut self, group: Vec<Request>) {
        // Leaves the pending count just before the first reply, so a caller that has its answer
        // never sees its own records as pending.
        let submitted: u64 = group.iter().map(|r| r.records.len() as u64).sum();
        let shared = self.shared.clone();
        let answered = || shared.pending.fetch_sub(submitted, Ordering::Relaxed);
        if let Some(reason) = &self.failed {
            answered();
            for request in group {
                request.reply.send(Err(StorageError::Backend(format!("event log stopped after a failed write: {reason}").into())));
            }
            return;
        }
        let started = std::time::Instant::now();
        match self.write(&group) {
            Ok(head) => {
                self.shared.write_micros.observe(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
                let records = head.0 .0 - self.head.0 .0;
                // Index entries first, then the head: a reader that sees the new head finds the
                // records through every index. Both before any reply.
                let current = {
                    let mut tail = lock(&self.tail.tail);
                    let mut position = self.head.0 .0;
                    for record in group.iter().flat_map(|request| &request.records) {
                        position += 1;
                        tail.add(&record.stream, position, record.seq, record.dedupe.as_deref());
                    }
                    tail.records()
                };
                self.tail.added(current);
                self.head = head;
                // Readers see the new head only now that the batch is in RocksDB (and synced).
                *lock(&self.shared.head) = head;
                self.shared.groups.fetch_add(1, Ordering::Relaxed);
                self.shared.records.fetch_add(records, Ordering::Relaxed);
                self.shared.group_records.observe(records);
                if self.options.durability == Durability::SyncEveryGroup {
                    self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                }
                answered();
                let mut next = head.0 .0 - records + 1;
                for request in group {
                    let n = request.records.len() as u64;
                    request.reply.send(Ok(Committed { first: Position(next), last: Position(next + n - 1) }));
                    next += n;
                }
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(error = %reason, requests = group.len(), "event log write failed; refusing further appends until reopened");
                self.failed = Some(reason.clone());
                answered();
                for request in group {
                    request.reply.send(Err(StorageError::Backend(reason.clone().into())));
                }
            }
        }
    }

    /// Builds and writes the group's batch; returns the new head. Does not touch `self.head`.
    fn write(&mut self, group: &[Request]) -> Result<(Position, ChainHash)> {
        let log = cf(&self.db, LOG)?;
        let mut batch = WriteBatch::default();
        let (mut position, mut hash) = self.head;
        for record in group.iter().flat_map(|request| &request.records) {
            position = position.next();
            self.scratch.clear();
            encode_record_into(&mut self.scratch, &hash, &record.digest, record);
            batch.put_cf(log, position.0.to_be_bytes(), &self.scratch);
            hash = link(&hash, position, &record.digest);
        }
        for (key, value) in group.iter().flat_map(|request| &request.rewrites) {
            batch.put_cf(log, key, value);
        }
        #[cfg(test)]
        if self.shared.fail_next.swap(false, Ordering::SeqCst) {
            return Err(StorageError::Backend("injected write failure".into()));
        }
        let mut wo = WriteOptions::default();
        // The WAL is always on. SyncEveryGroup: fsync it before anyone is told, so an acknowledged append
        // survives power loss. OsBuffered: the write() to the WAL file is done, so it survives the process
        // being killed, but the page cache may lose it in a machine crash.
        wo.set_sync(self.options.durability == Durability::SyncEveryGroup);
        self.db.write_opt(batch, &wo).map_err(backend)?;
        Ok((position, hash))
    }
}

/// Records and approximate batch bytes of one request, for the group limits.
fn weight(request: &Request) -> (usize, usize) {
    let bytes: usize = request
        .records
        .iter()
        .map(|r| RECORD_HEADER + 18 + r.stream.len() + r.body.len() + r.dedupe.as_ref().map_or(0, |d| d.len() + 4))
        .sum();
    let rewritten: usize = request.rewrites.iter().map(|(_, v)| v.len() + 8).sum();
    (request.records.len(), bytes + rewritten)
}
