//! The committer and the syncer: group commit, position assignment and the hash chain.
//!
//! The committer is the only code that writes `log`: it assigns positions and extends the chain alone,
//! so the head it extends is the truth without any other coordination. A group is one key per record
//! in one write, synced before anyone hears of it; once synced, the group's index entries go to the
//! tail (`tail.rs`), the new head is published, in position order, and only then are the group's
//! callers answered. The syncer does nothing but the fsyncs; publishing is the committer's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SendError, Sender, TryRecvError};
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

/// What the committer's queue carries.
pub(super) enum Work {
    /// A `submit`.
    Append(Request),
    /// Groups the syncer has synced, in position order, for the committer to publish.
    Synced(Vec<Taken>),
    /// Sent by `close` behind every submit: nothing more will be submitted.
    Close,
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
    /// Microseconds from the start of each successful group's write until it was published (the WAL
    /// fsync included when syncing).
    pub(super) write_micros: AtomicHistogram,
    /// Refuses groups while the data directory's filesystem is below its free-space reserve (`None`
    /// for a read-only log).
    pub(super) disk: Option<super::disk::DiskGuard>,
    /// A write failed and the log refuses every append until it is reopened.
    pub(super) failed: std::sync::atomic::AtomicBool,
    /// Test hook: fail the next group's write.
    #[cfg(test)]
    pub(super) fail_next: std::sync::atomic::AtomicBool,
    /// Test hook: fail the next group after its batch is written, as a failed WAL sync would.
    #[cfg(test)]
    pub(super) fail_next_sync: std::sync::atomic::AtomicBool,
    /// Test hook: groups wait before publishing while this is set.
    #[cfg(test)]
    pub(super) hold_publish: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub(super) fn new(head: (Position, ChainHash), disk: Option<super::disk::DiskGuard>) -> Shared {
        Shared {
            head: Mutex::new(head),
            groups: AtomicU64::new(0),
            records: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            disk,
            failed: std::sync::atomic::AtomicBool::new(false),
            pending: AtomicU64::new(0),
            group_records: AtomicHistogram::new(GROUP_RECORDS_BOUNDS),
            write_micros: AtomicHistogram::new(WRITE_MICROS_BOUNDS),
            #[cfg(test)]
            fail_next: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            fail_next_sync: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            hold_publish: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// The commit path, on two threads.
///
/// The *committer* takes the queued requests, encodes them, extends the chain and writes the batch to
/// RocksDB without sync, then hands the group to the *syncer* and goes on with the next one. The
/// syncer takes every group written so far, syncs the WAL once for all of them, hands them back
/// through the committer's own queue and starts the next fsync at once. The committer publishes what
/// comes back (index entries to the tail, the new head, the replies), in position order, as it meets it
/// in its queue between requests. So the fsyncs run back to back, each covering everything written
/// while the last one ran, and no fsync waits for a group's publishing: that work (a reply and a wake-up
/// per append, freeing the records) overlaps the next fsync, on the thread that has room for it. The
/// price: while the committer is inside a write (RocksDB may stall one while it flushes), groups that
/// are already synced wait for their answers until the write returns.
///
/// A group that finds the log idle (nothing in flight, nothing else queued, nothing waiting when the
/// last group was published) is written with a synced write and published by the committer at once:
/// at low load an append costs one fsync and no hand-off between threads.
pub(super) struct Writer {
    db: Arc<DB>,
    shared: Arc<Shared>,
    tail: Arc<SharedTail>,
    options: RocksOptions,
    order: Mutex<Order>,
    /// Whether other appends were waiting when the last group was published: appends are arriving
    /// while groups are in flight, so the next group is worth handing to the syncer even if it looks
    /// alone.
    busy: std::sync::atomic::AtomicBool,
}

/// Starts the committer and the syncer; their handles, in the order to join them.
pub(super) fn start(
    db: Arc<DB>,
    shared: Arc<Shared>,
    tail: Arc<SharedTail>,
    options: RocksOptions,
    head: (Position, ChainHash),
    tx: &Sender<Work>,
    rx: Receiver<Work>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let writer = Arc::new(Writer {
        db,
        shared,
        tail,
        options,
        order: Mutex::new(Order { published: 0, failed: None }),
        busy: std::sync::atomic::AtomicBool::new(false),
    });
    let intake = Intake { rx, carry: None, head, ticket: 0, closed: false, failed: false, scratch: Vec::new() };
    let (to_syncer, written) = std::sync::mpsc::channel::<Taken>();
    let committer = {
        let writer = writer.clone();
        std::thread::Builder::new().name("rookery-log-commit".into()).spawn(move || writer.run_committer(intake, to_syncer))?
    };
    let back = tx.clone();
    let syncer = std::thread::Builder::new().name("rookery-log-sync".into()).spawn(move || writer.run_syncer(&written, &back))?;
    Ok(vec![committer, syncer])
}

/// What the intake step owns.
struct Intake {
    rx: Receiver<Work>,
    /// A request taken from the queue that did not fit in the previous group; it opens the next one.
    carry: Option<Request>,
    /// Where the next group starts: the head after the last batch written (not necessarily synced).
    head: (Position, ChainHash),
    /// Ticket of the last group taken in; publish follows ticket order.
    ticket: u64,
    /// Every sender is gone and the queue is empty.
    closed: bool,
    /// A write failed: nothing more is written, even before that group's publish stops the log.
    failed: bool,
    /// Reused buffer for encoding one record value.
    scratch: Vec<u8>,
}

/// What the publish step owns.
struct Order {
    /// Ticket of the last group published (or refused).
    published: u64,
    /// Set after a failed write or sync: every later append is refused until the log is reopened. A
    /// failed write (typically a failed WAL fsync) may still have reached the memtable or the disk, and
    /// RocksDB itself stops accepting writes after such an error, so reusing the positions could leave
    /// index entries pointing at the wrong records. Fail-stop is the safe answer; reopening recovers
    /// the head.
    failed: Option<String>,
}

/// A group after intake: its requests, where it starts and ends, and how its write went.
pub(super) struct Taken {
    ticket: u64,
    group: Vec<Request>,
    /// Records in the group's requests.
    records: u64,
    /// The head before and after the group.
    from: (Position, ChainHash),
    to: (Position, ChainHash),
    written: std::result::Result<(), String>,
    /// The group was refused before anything of it was written (the disk is below its reserve): the
    /// log stays usable, and later groups are written once space returns.
    transient: bool,
    /// Nothing else was in flight or waiting: written with a synced write (when syncing every group)
    /// and published by the committer itself.
    alone: bool,
    started: std::time::Instant,
}

impl Writer {
    /// The committer: serves the queue (appends, and synced groups to publish) until `close` has
    /// been met, so nothing submitted is dropped; then lets the syncer finish and publishes what it
    /// hands back.
    fn run_committer(&self, mut intake: Intake, to_syncer: Sender<Taken>) {
        while let Some(taken) = self.take_in(&mut intake) {
            if taken.alone {
                // Written alone (and synced, unless OS-buffered): nothing to overlap with.
                self.publish(taken);
                continue;
            }
            if let Err(unsent) = to_syncer.send(taken) {
                // The syncer is gone (it panicked); nobody else can answer this group.
                self.publish(Taken { written: Err("the event log's syncer stopped".into()), ..unsent.0 });
            }
        }
        // Closed: the syncer finishes what it has, hands it back and hangs up.
        drop(to_syncer);
        while let Ok(work) = intake.rx.recv() {
            if let Work::Synced(groups) = work {
                for taken in groups {
                    self.publish(taken);
                }
            }
        }
        tracing::debug!("event log committer stopped");
    }

    /// The syncer: one WAL fsync for every group written so far, then the groups go back to the
    /// committer to be published.
    fn run_syncer(&self, written: &Receiver<Taken>, back: &Sender<Work>) {
        while let Ok(first) = written.recv() {
            let mut ready: Vec<Taken> = std::iter::once(first).chain(written.try_iter()).collect();
            if self.options.durability == Durability::SyncEveryGroup && ready.iter().any(|t| t.written.is_ok()) {
                // RocksDB's SyncWAL: the WAL files up to the current one, written before the call, fsynced.
                match self.db.flush_wal(true) {
                    Ok(()) => {
                        self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        for taken in ready.iter_mut().filter(|t| t.written.is_ok()) {
                            taken.written = Err(e.to_string());
                        }
                    }
                }
            }
            // Back to the committer, which publishes them; this thread goes straight on to the next fsync.
            if let Err(SendError(Work::Synced(ready))) = back.send(Work::Synced(ready)) {
                // The committer is gone (it panicked): nobody else can answer these groups.
                for taken in ready {
                    self.publish(taken);
                }
            }
        }
        tracing::debug!("event log syncer stopped");
    }

    /// The next submitted request, publishing synced groups met on the way; waits for one if
    /// `block`. `None` when none is queued (not blocking) or the queue is closed (then `intake.closed`).
    fn next_request(&self, intake: &mut Intake, block: bool) -> Option<Request> {
        loop {
            let work = if block { intake.rx.recv().map_err(|_| TryRecvError::Disconnected) } else { intake.rx.try_recv() };
            match work {
                Ok(Work::Append(request)) => return Some(request),
                Ok(Work::Synced(groups)) => {
                    for taken in groups {
                        self.publish(taken);
                    }
                }
                Ok(Work::Close) | Err(TryRecvError::Disconnected) => {
                    intake.closed = true;
                    return None;
                }
                Err(TryRecvError::Empty) => return None,
            }
        }
    }

    /// The intake step: the next group, written without sync; `None` once the queue is closed and empty.
    fn take_in(&self, intake: &mut Intake) -> Option<Taken> {
        let max_records = self.options.max_group_records.max(1);
        let max_bytes = self.options.max_group_bytes.max(1);
        if intake.closed {
            return None;
        }
        // Block for the group's first request; a group is never empty.
        let first = match intake.carry.take() {
            Some(request) => request,
            None => self.next_request(intake, true)?,
        };
        let (mut records, mut bytes) = weight(&first);
        let mut group = vec![first];
        // Then take whatever else is already queued, without waiting: latency stays that of one
        // write, and the more callers are waiting, the larger (and cheaper per record) the group.
        while records < max_records && bytes < max_bytes {
            let Some(request) = self.next_request(intake, false) else { break };
            let (n, b) = weight(&request);
            if records + n > max_records || bytes + b > max_bytes {
                intake.carry = Some(request);
                break;
            }
            records += n;
            bytes += b;
            group.push(request);
        }
        // The tail's memory is bounded: past its limit, wait for the indexer before writing more.
        self.tail.wait_for_room();
        intake.ticket += 1;
        let from = intake.head;
        let started = std::time::Instant::now();
        // After a failure nothing more is written; `publish` refuses the group.
        let (failed, alone) = {
            let order = lock(&self.order);
            // Alone: no earlier group still in flight, nothing else submitted, and nothing was waiting
            // when the last group was published (else more appends are likely to arrive during this
            // fsync). Then there is nothing to overlap the fsync with, and a synced write is cheaper
            // than a write and a SyncWAL.
            let quiet = !self.busy.load(Ordering::Relaxed) && self.shared.pending.load(Ordering::Relaxed) == records as u64;
            (intake.failed || order.failed.is_some(), order.published + 1 == intake.ticket && quiet)
        };
        let sync_now = alone && self.options.durability == Durability::SyncEveryGroup;
        // Below the disk reserve nothing is written: RocksDB meeting a full disk mid-write stops for
        // good (Debian's build aborts the process), so the group is refused before it gets there.
        let full = if failed { None } else { self.shared.disk.as_ref().and_then(|d| d.refusal()) };
        let transient = full.is_some();
        let written = match full {
            Some(reason) => Err(reason),
            None if failed => Err(String::new()),
            None => self.write(&mut intake.scratch, from, &group, sync_now).map_err(|e| e.to_string()),
        };
        #[cfg(test)]
        let written = match written {
            Ok(_) if self.shared.fail_next_sync.swap(false, Ordering::SeqCst) => Err("injected sync failure".to_string()),
            other => other,
        };
        let to = match &written {
            Ok(to) => *to,
            Err(_) if transient => from,
            Err(_) => {
                intake.failed = true;
                from
            }
        };
        // The next group starts after this one even before it is synced: a batch written later is
        // synced no earlier, and publish keeps ticket order.
        intake.head = to;
        Some(Taken { ticket: intake.ticket, group, records: records as u64, from, to, alone, written: written.map(|_| ()), transient, started })
    }

    /// The publish step, in ticket order: index entries, head, counters, replies.
    fn publish(&self, taken: Taken) {
        let Taken { ticket, group, records: submitted, from, to, written, started, alone, transient } = taken;
        #[cfg(test)]
        while self.shared.hold_publish.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut order = lock(&self.order);
        // The syncer hands groups back in the order they were written, and a group written alone is
        // published at once only when nothing before it is unpublished.
        debug_assert_eq!(order.published + 1, ticket, "groups are published in position order");
        // Leaves the pending count just before the first reply, so a caller that has its answer
        // never sees its own records as pending.
        let refused = match (&order.failed, written) {
            (Some(reason), _) => Some(format!("event log stopped after a failed write: {reason}")),
            (None, Err(reason)) if transient => {
                order.published = ticket;
                drop(order);
                tracing::warn!(error = %reason, requests = group.len(), "appends refused: the disk is below its reserve");
                self.shared.pending.fetch_sub(submitted, Ordering::Relaxed);
                for request in group {
                    request.reply.send(Err(StorageError::DiskFull(reason.clone())));
                }
                return;
            }
            (None, Err(reason)) => {
                tracing::error!(error = %reason, requests = group.len(), "event log write failed; refusing further appends until reopened");
                order.failed = Some(reason.clone());
                self.shared.failed.store(true, Ordering::Relaxed);
                Some(reason)
            }
            (None, Ok(())) => None,
        };
        if let Some(reason) = refused {
            self.shared.pending.fetch_sub(submitted, Ordering::Relaxed);
            for request in group {
                request.reply.send(Err(StorageError::Backend(reason.clone().into())));
            }
        } else {
            self.shared.write_micros.observe(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
            let records = to.0 .0 - from.0 .0;
            // Index entries first, then the head: a reader that sees the new head finds the records
            // through every index. Both before any reply.
            let current = {
                let mut tail = lock(&self.tail.tail);
                let mut position = from.0 .0;
                for record in group.iter().flat_map(|request| &request.records) {
                    position += 1;
                    tail.add(&record.stream, position, record.seq);
                }
                tail.records()
            };
            self.tail.added(current);
            // Readers see the new head only now that the batch is in RocksDB (and synced).
            *lock(&self.shared.head) = to;
            self.shared.groups.fetch_add(1, Ordering::Relaxed);
            self.shared.records.fetch_add(records, Ordering::Relaxed);
            self.shared.group_records.observe(records);
            if alone && self.options.durability == Durability::SyncEveryGroup {
                // The syncer counts the syncs it makes; this group's own write was one.
                self.shared.syncs.fetch_add(1, Ordering::Relaxed);
            }
            let waiting = self.shared.pending.fetch_sub(submitted, Ordering::Relaxed) - submitted;
            self.busy.store(waiting > 0, Ordering::Relaxed);
            // Answered before the turn passes on, so callers hear of their commits in log order. The
            // records are freed after the turn has passed on.
            let mut next = from.0 .0 + 1;
            let mut spent = Vec::with_capacity(group.len());
            for request in group {
                let n = request.records.len() as u64;
                request.reply.send(Ok(Committed { first: Position(next), last: Position(next + n - 1) }));
                spent.push(request.records);
                next += n;
            }
            order.published = ticket;
            drop(order);
            drop(spent);
            return;
        }
        order.published = ticket;
    }

    /// Encodes the group after `from` into one batch and writes it, without sync; returns the new head.
    fn write(&self, scratch: &mut Vec<u8>, from: (Position, ChainHash), group: &[Request], sync: bool) -> Result<(Position, ChainHash)> {
        let log = cf(&self.db, LOG)?;
        let mut batch = WriteBatch::default();
        let (mut position, mut hash) = from;
        for record in group.iter().flat_map(|request| &request.records) {
            position = position.next();
            scratch.clear();
            encode_record_into(scratch, &hash, &record.digest, record);
            batch.put_cf(log, position.0.to_be_bytes(), &*scratch);
            hash = link(&hash, position, &record.digest);
        }
        for (key, value) in group.iter().flat_map(|request| &request.rewrites) {
            batch.put_cf(log, key, value);
        }
        #[cfg(test)]
        if self.shared.fail_next.swap(false, Ordering::SeqCst) {
            return Err(StorageError::Backend("injected write failure".into()));
        }
        // The WAL is always on; this write() reaches the WAL file (so it survives the process being
        // killed). Synced here when `sync`, else by the syncer, before anyone is told. Under
        // OsBuffered that is all, and the page cache may lose it in a machine crash.
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(batch, &wo).map_err(backend)?;
        Ok((position, hash))
    }
}

/// Records and approximate batch bytes of one request, for the group limits.
fn weight(request: &Request) -> (usize, usize) {
    let bytes: usize = request.records.iter().map(|r| RECORD_HEADER + 18 + r.stream.len() + r.body.len()).sum();
    let rewritten: usize = request.rewrites.iter().map(|(_, v)| v.len() + 8).sum();
    (request.records.len(), bytes + rewritten)
}
