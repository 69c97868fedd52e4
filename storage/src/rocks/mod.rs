//! `RocksLog`: the event log on RocksDB, with group commit.
//!
//! `submit` hands a batch over a channel to the committer thread (`writer.rs`), which takes everything
//! queued at that moment (up to a size limit), assigns positions, extends the hash chain and writes it
//! as one `WriteBatch` of one key per record, then goes on with the next group. Under
//! `Durability::SyncEveryGroup` the syncer thread syncs the WAL once for every group written so far
//! and hands them back to the committer, which, in position order, adds the records' index entries
//! to the in-memory index tail, publishes the head and completes every commit of those groups, while
//! the syncer's next fsync runs; an append that finds the log idle is written with a synced write and
//! answered by the committer alone. An indexer thread (`tail.rs`) moves the tail into
//! the index families in per-stream blocks. Reads go straight to the database from the calling thread,
//! merged with the tail: RocksDB is safe for concurrent readers and writers.
//!
//! The key layouts are in `schema.rs`; the record value codec is below.

pub mod baseline;
mod disk;
pub mod fault;
pub mod histogram;
pub(crate) mod schema;
mod tail;
mod writer;

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, IteratorMode, Options, ReadOptions, DB};
use rookery_events::{ChainHash, Position};

use crate::{check_batch, Commit, Durability, EventLog, NewRecord, Result, Rewrite, Snapshot, StorageError, StoredRecord};
use histogram::HistogramSnapshot;
use schema::*;
use tail::{SharedTail, Tail};
use writer::{Request, Shared, Work};

/// Settings of [`RocksLog`].
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// When appends are acknowledged (and whether each commit group fsyncs the WAL).
    pub durability: Durability,
    /// Most records one commit group takes; appends that would overflow it wait for the next group.
    /// A single append larger than this is still written, alone. Default 4096.
    pub max_group_records: usize,
    /// Most bytes (record bodies plus keys, roughly what the write batch holds) one commit group takes,
    /// with the same rule as `max_group_records`. Default 8 MiB.
    pub max_group_bytes: usize,
    /// Most committed records whose index entries may be held in memory, waiting for the indexer;
    /// past it, appends wait for the indexer. Bounds that memory (roughly 100 bytes per record plus its
    /// stream key). Default 1,048,576; at least 1.
    pub max_unindexed_records: u64,
    /// Free bytes the data directory's filesystem must keep: below it appends are refused
    /// ([`StorageError::DiskFull`]) before anything is written, and accepted again once space returns.
    /// 0 turns the check off. Default 64 MiB.
    pub disk_reserve_bytes: u64,
    /// Read the free bytes from this file (a decimal number) instead of the filesystem: for fault
    /// drills and tests of a full disk.
    pub disk_free_probe: Option<std::path::PathBuf>,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            durability: Durability::SyncEveryGroup,
            max_group_records: 4096,
            max_group_bytes: 8 << 20,
            max_unindexed_records: 1 << 20,
            disk_reserve_bytes: 64 << 20,
            disk_free_probe: None,
        }
    }
}

/// Counters of the writer threads (committer and syncer) since the log was opened, for benchmarks, the monitor and tests.
///
/// Reading them costs a few dozen relaxed atomic loads; they are not a consistent snapshot of each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStats {
    /// Commit groups written (one RocksDB write batch each).
    pub groups: u64,
    /// Records written. `records / groups` is the mean group size.
    pub records: u64,
    /// WAL fsyncs made under [`Durability::SyncEveryGroup`]: one covers every group written before
    /// it started, so at most one per group; none under [`Durability::OsBuffered`].
    pub syncs: u64,
    /// Records submitted and not yet answered: the writer's queue depth (in records, including the
    /// group being written).
    pub pending: u64,
    /// Records per written group ([`histogram::GROUP_RECORDS_BOUNDS`]).
    pub group_records: HistogramSnapshot,
    /// Microseconds per group from the start of its write until it was published, fsync included when
    /// syncing ([`histogram::WRITE_MICROS_BOUNDS`]).
    pub write_micros: HistogramSnapshot,
    /// Records whose index entries are held in memory only, waiting for the indexer (normally what
    /// arrived in the last 50 ms; steady growth means the indexer cannot keep up).
    pub unindexed: u64,
    /// The data directory's filesystem is below its free-space reserve: appends are refused until
    /// space is freed (read afresh, at most 50 ms old).
    pub disk_full: bool,
    /// Free bytes of that filesystem at the last reading (`u64::MAX`: not read).
    pub disk_free: u64,
    /// A write failed: the log refuses every append until the server reopens it.
    pub failed: bool,
}

impl Default for LogStats {
    fn default() -> Self {
        LogStats {
            groups: 0,
            records: 0,
            syncs: 0,
            pending: 0,
            group_records: HistogramSnapshot::empty(histogram::GROUP_RECORDS_BOUNDS),
            write_micros: HistogramSnapshot::empty(histogram::WRITE_MICROS_BOUNDS),
            unindexed: 0,
            disk_full: false,
            disk_free: u64::MAX,
            failed: false,
        }
    }
}

/// The RocksDB event log. See the crate docs for what a resolved commit guarantees.
///
/// A RocksDB directory can be opened for writing by one process (and one `RocksLog`) at a time: RocksDB
/// holds a `LOCK` file. Other processes can read it meanwhile through [`RocksLog::open_read_only`].
/// Dropping the log stops the writer after it has written everything already submitted.
pub struct RocksLog {
    db: Arc<DB>,
    /// The writer's queue; `None` once closed, and always for a read-only log.
    tx: Mutex<Option<Sender<Work>>>,
    /// The committer and syncer threads, joined by `close` in that order.
    writer: Mutex<Vec<JoinHandle<()>>>,
    /// Index entries not yet in the index families.
    tail: Arc<SharedTail>,
    /// The indexer thread, joined by `close` after the writer.
    indexer: Mutex<Option<JoinHandle<()>>>,
    /// Head and counters, updated by the writer after each successful write.
    shared: Arc<Shared>,
    read_only: bool,
    /// Serialises `put_snapshot`'s read-compare-write, so racing writers cannot move a snapshot back.
    snapshot_lock: Mutex<()>,
}

impl RocksLog {
    /// Opens (or creates) the log in directory `path` and starts its writer thread.
    ///
    /// The head is recovered from the last record of the log.
    ///
    /// # Errors
    /// [`StorageError::Backend`] when RocksDB cannot open the directory (another process holds its lock,
    /// permissions, a damaged manifest); [`StorageError::Corrupt`] when the last record is undecodable.
    pub fn open(path: &Path, options: RocksOptions) -> Result<RocksLog> {
        let cfs = ALL.iter().map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name)));
        let mut db = DB::open_cf_descriptors(&db_options(), path, cfs).map_err(backend)?;
        drop_legacy_index(&mut db)?;
        let db = Arc::new(db);
        let head = read_head(&db)?;
        let tail = Arc::new(SharedTail::with_tail(recover_tail(&db, head.0, true)?, options.max_unindexed_records));
        let disk = disk::DiskGuard::new(path.to_path_buf(), options.disk_reserve_bytes, options.disk_free_probe.clone());
        let shared = Arc::new(Shared::new(head, Some(disk)));
        let indexer = {
            let (db, tail) = (db.clone(), tail.clone());
            std::thread::Builder::new()
                .name("rookery-log-indexer".into())
                .spawn(move || tail::run_indexer(db, tail))
                .map_err(|e| StorageError::Backend(Box::new(e)))?
        };
        let (tx, rx) = mpsc::channel();
        let writers = writer::start(db.clone(), shared.clone(), tail.clone(), options, head, &tx, rx).map_err(|e| StorageError::Backend(Box::new(e)))?;
        tracing::info!(path = %path.display(), head = head.0 .0, "event log opened");
        Ok(RocksLog {
            db,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(writers),
            tail,
            indexer: Mutex::new(Some(indexer)),
            shared,
            read_only: false,
            snapshot_lock: Mutex::new(()),
        })
    }

    /// Opens the log in `path` for reading only, without taking RocksDB's lock, so a CLI tool can read a
    /// log that a running server has open.
    ///
    /// The view is frozen at the moment of opening (RocksDB's read-only mode replays the WAL once and
    /// never follows the writer); open again to see newer records. `submit` and `put_snapshot` fail
    /// with [`StorageError::Invalid`].
    ///
    /// # Errors
    /// [`StorageError::Backend`] when the directory is not an event log or cannot be read
    /// (a concurrent writer deleting a WAL file at that instant can also cause this; retry);
    /// [`StorageError::Corrupt`] when the last record is undecodable.
    pub fn open_read_only(path: &Path) -> Result<RocksLog> {
        // `false`: an unflushed WAL is expected (the server may be running); it is replayed into memory.
        // The same per-family options as a writable open: the same codecs and filters.
        let cfs = ALL.iter().map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name)));
        let db = DB::open_cf_descriptors_read_only(&Options::default(), path, cfs, false).map_err(backend)?;
        let db = Arc::new(db);
        let head = read_head(&db)?;
        // Records after the watermark are indexed in memory; nothing moves them, the view is frozen.
        let tail = Arc::new(SharedTail::with_tail(recover_tail(&db, head.0, false)?, u64::MAX));
        Ok(RocksLog {
            db,
            tx: Mutex::new(None),
            writer: Mutex::new(Vec::new()),
            tail,
            indexer: Mutex::new(None),
            shared: Arc::new(Shared::new(head, None)),
            read_only: true,
            snapshot_lock: Mutex::new(()),
        })
    }

    /// Stops accepting appends, lets the writer finish everything already submitted, and waits for it
    /// to exit. Later appends and snapshot writes fail with [`StorageError::Closed`]; reads keep working
    /// until the log is dropped. Idempotent; dropping the log does the same.
    pub fn close(&self) {
        // No submit can follow once the sender is taken; the marker goes behind every one already
        // queued, and the committer stops taking appends when it meets it (the syncer holds a sender
        // of the same queue, so the queue itself does not close).
        if let Some(tx) = lock(&self.tx).take() {
            let _ = tx.send(Work::Close);
        }
        self.tail.closing();
        // Holding the lock while joining makes a concurrent `close` return only after the writer is gone.
        let mut writer = lock(&self.writer);
        for handle in writer.drain(..) {
            if handle.join().is_err() {
                tracing::error!("event log writer thread panicked");
            }
        }
        // Then the indexer writes the rest of the tail, so a clean close leaves nothing to re-read.
        let mut indexer = lock(&self.indexer);
        if let Some(handle) = indexer.take() {
            self.tail.stop();
            if handle.join().is_err() {
                tracing::error!("event log indexer thread panicked");
            }
        }
    }

    /// Writer counters since open (all zero for a read-only log).
    pub fn stats(&self) -> LogStats {
        LogStats {
            groups: self.shared.groups.load(Ordering::Relaxed),
            records: self.shared.records.load(Ordering::Relaxed),
            syncs: self.shared.syncs.load(Ordering::Relaxed),
            pending: self.shared.pending.load(Ordering::Relaxed),
            group_records: self.shared.group_records.snapshot(),
            write_micros: self.shared.write_micros.snapshot(),
            unindexed: self.unindexed(),
            disk_full: self.shared.disk.as_ref().is_some_and(|d| d.refusal().is_some()),
            disk_free: self.shared.disk.as_ref().map_or(u64::MAX, |d| d.last_free()),
            failed: self.shared.failed.load(Ordering::Relaxed),
        }
    }

    /// Writes a consistent copy of the whole log (records, indexes, snapshots) into `dir`, which must not
    /// exist yet, and returns the head of that copy. Works while appends go on: the copy holds every
    /// record committed before it started and possibly some committed meanwhile, always whole commit
    /// groups, so its chain is a prefix of this log's. On the same file system, immutable table files
    /// are hard-linked rather than copied.
    ///
    /// # Errors
    /// [`StorageError::Invalid`] when `dir` exists; [`StorageError::Backend`] when RocksDB cannot write
    /// the copy; [`StorageError::Corrupt`] when the copy's last record is undecodable.
    pub fn checkpoint(&self, dir: &Path) -> Result<(Position, ChainHash)> {
        if dir.exists() {
            return Err(StorageError::Invalid(format!("{} already exists; a checkpoint needs a new directory", dir.display())));
        }
        // Not needed for correctness (opening the copy re-reads what its index lacks), but it makes
        // the copy open without that work.
        self.flush_index();
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(backend)?;
        checkpoint.create_checkpoint(dir).map_err(backend)?;
        let copy = RocksLog::open_read_only(dir)?;
        Ok(copy.head())
    }

    /// Writes every index entry held in memory at the time of the call to the index families and waits
    /// until it is done (appends made meanwhile are not waited for). Never needed for correctness (reads consult memory too, and opening the log re-reads
    /// what a crash lost); it makes a following copy or read-only open find everything indexed.
    pub fn flush_index(&self) {
        if !self.read_only {
            self.tail.flush();
        }
    }

    /// Records whose index entries are held in memory only (not yet written to the index families).
    pub fn unindexed(&self) -> u64 {
        lock(&self.tail.tail).records()
    }

    /// The entries of column family `family`, as this log's database sees them (memtables included).
    #[cfg(test)]
    pub(crate) fn entries(&self, family: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.db.iterator_cf(self.cf(family).unwrap(), IteratorMode::Start).map(|kv| kv.unwrap()).map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
    }

    /// Checks that the index blocks of every stream in `stream_pos` and `stream_seq` do not overlap.
    #[cfg(test)]
    pub(crate) fn assert_blocks_disjoint(&self) {
        for family in [STREAM_POS, STREAM_SEQ] {
            let mut last: Option<(Vec<u8>, u64)> = None;
            for (key, value) in self.entries(family) {
                if key.as_slice() == INDEXED_TO {
                    continue;
                }
                let split = key.len() - 8;
                let (stream, first) = (key[..split].to_vec(), &key[split..]);
                let entries: Vec<u64> = if family == STREAM_POS {
                    tail::pos_block(first, &value).unwrap()
                } else {
                    tail::seq_block(first, &value).unwrap().into_iter().map(|(s, _)| s).collect()
                };
                if let Some((prev_stream, prev_max)) = &last {
                    if *prev_stream == stream {
                        assert!(
                            entries[0] > *prev_max,
                            "{family}: a block of {:?} starting at {} overlaps the one before (up to {prev_max})",
                            String::from_utf8_lossy(&stream),
                            entries[0]
                        );
                    }
                }
                last = Some((stream, *entries.iter().max().unwrap()));
            }
        }
    }

    /// Writes every column family's memtable to table files, so reads go through them.
    #[cfg(test)]
    pub(crate) fn flush_memtables(&self) {
        for name in ALL {
            self.db.flush_cf(self.cf(name).unwrap()).unwrap();
        }
    }

    /// Stops the indexer from writing anything from now on, as if the process were about to be killed.
    #[cfg(test)]
    pub(crate) fn hold_index(&self) {
        lock(&self.tail.tail).held = true;
    }

    /// Lets the indexer write again after `hold_index`.
    #[cfg(test)]
    pub(crate) fn release_index(&self) {
        lock(&self.tail.tail).held = false;
        self.tail.wake.notify_all();
    }

    /// Makes the writer's next group fail as if RocksDB had refused the write.
    #[cfg(test)]
    pub(crate) fn fail_next_write(&self) {
        self.shared.fail_next.store(true, Ordering::SeqCst);
    }

    /// Makes the writer's next group fail after its batch is written, as a failed WAL sync would.
    #[cfg(test)]
    pub(crate) fn fail_next_sync(&self) {
        self.shared.fail_next_sync.store(true, Ordering::SeqCst);
    }

    /// Holds (`true`) or lets go (`false`) every written group before it is published.
    #[cfg(test)]
    pub(crate) fn hold_publish(&self, hold: bool) {
        self.shared.hold_publish.store(hold, Ordering::SeqCst);
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily> {
        cf(&self.db, name)
    }

    /// Why a write is refused before reaching RocksDB, if it is.
    fn refuse_writes(&self) -> Option<StorageError> {
        if self.read_only {
            Some(StorageError::Invalid("the event log is opened read-only".into()))
        } else if lock(&self.tx).is_none() {
            Some(StorageError::Closed)
        } else {
            None
        }
    }

    /// The stored value of the record at `position`.
    fn get_raw(&self, position: Position) -> Result<Vec<u8>> {
        self.db.get_cf(self.cf(LOG)?, position.0.to_be_bytes()).map_err(backend)?.ok_or_else(|| corrupt("record", position, "missing below the head"))
    }

    /// The records at `positions`, in that order; an absent one means a dangling index entry.
    fn get_records(&self, positions: &[u64], sorted: bool) -> Result<Vec<StoredRecord>> {
        let keys = positions.iter().map(|p| p.to_be_bytes());
        let values = self.db.batched_multi_get_cf(self.cf(LOG)?, keys, sorted);
        positions
            .iter()
            .zip(values)
            .map(|(&p, value)| match value.map_err(backend)? {
                Some(v) => decode_record(Position(p), &v),
                None => Err(corrupt("index entry", Position(p), "points at a missing record")),
            })
            .collect()
    }

    /// Walks the index blocks of `stream` in column family `cf`, starting with the block that may hold
    /// `start` (the last block whose first key is at or before `stream ‖ 0xFF ‖ start`, or else the
    /// first one after it, going forward), handing `visit` each block's key suffix and value until it
    /// breaks or the stream's blocks end. Blocks do not overlap, so that block is the only earlier one
    /// that can hold entries at or after `start`.
    fn walk_blocks(&self, cf: &str, stream: &[u8], start: &[u8], forward: bool, mut visit: impl FnMut(&[u8], &[u8]) -> Result<ControlFlow<()>>) -> Result<()> {
        let prefix = stream_prefix(stream);
        let mut it = self.db.raw_iterator_cf(self.cf(cf)?);
        let start = stream_key(stream, start);
        it.seek_for_prev(&start);
        if forward && !(it.valid() && it.key().is_some_and(|k| k.starts_with(&prefix))) {
            it.status().map_err(backend)?;
            it.seek(&start);
        }
        while it.valid() {
            let (Some(key), Some(value)) = (it.key(), it.value()) else { break };
            let Some(suffix) = key.strip_prefix(prefix.as_slice()) else { break };
            if visit(suffix, value)?.is_break() {
                return Ok(());
            }
            if forward {
                it.next();
            } else {
                it.prev();
            }
        }
        it.status().map_err(backend)
    }

    /// Positions of `stream` after `after` (ascending) or before `before` (descending), at most `limit`,
    /// from the tail and the index blocks.
    fn stream_positions(&self, stream: &[u8], bound: u64, forward: bool, limit: usize) -> Result<Vec<u64>> {
        // The tail first, the database second: see `tail.rs`.
        let in_range = |p: &u64| if forward { *p > bound } else { *p < bound };
        let mut positions: Vec<u64> = lock(&self.tail.tail).positions(stream).into_iter().filter(in_range).collect();
        let start = if forward { bound + 1 } else { bound - 1 };
        let mut found = 0usize;
        self.walk_blocks(STREAM_POS, stream, &start.to_be_bytes(), forward, |first, rest| {
            let block = tail::pos_block(first, rest).ok_or_else(|| corrupt("index entry", Position::ZERO, "malformed stream_pos block"))?;
            let before = positions.len();
            positions.extend(block.into_iter().filter(in_range));
            found += positions.len() - before;
            Ok(if found >= limit { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
        })?;
        positions.sort_unstable();
        positions.dedup();
        if !forward {
            positions.reverse();
        }
        positions.truncate(limit);
        Ok(positions)
    }
}

impl Drop for RocksLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl EventLog for RocksLog {
    fn submit(&self, records: Vec<NewRecord>) -> Commit {
        self.submit_with_rewrites(records, Vec::new())
    }

    fn submit_with_rewrites(&self, records: Vec<NewRecord>, rewrites: Vec<Rewrite>) -> Commit {
        // Validation happens here, before the writer sees the batch, so a bad append fails alone.
        if let Err(e) = check_batch(&records) {
            return Commit::ready(Err(e));
        }
        if self.read_only {
            return Commit::ready(Err(StorageError::Invalid("the event log is opened read-only".into())));
        }
        // Rewrites are checked against the stored records here. Only erasure rewrites records, and a
        // rewrite keeps the digest, so a check racing with another rewrite of the same record still
        // holds when the writer applies it.
        let mut values = Vec::with_capacity(rewrites.len());
        if !rewrites.is_empty() {
            let head = self.head().0;
            if let Some(w) = rewrites.iter().find(|w| w.position > head || w.position == Position::ZERO) {
                return Commit::ready(Err(StorageError::Invalid(format!("rewrite of record {} beyond the head {head}", w.position))));
            }
            for w in rewrites {
                // The new value keeps everything of the old one but the body (chain link, digest, index entries).
                let rewritten = self.get_raw(w.position).and_then(|old| {
                    let parts = split_record(w.position, &old)?;
                    if parts.digest != w.digest {
                        return Err(StorageError::Invalid(format!("rewrite of record {} with a different digest", w.position)));
                    }
                    let mut value = old[..parts.body_offset].to_vec();
                    value.extend_from_slice(&w.body);
                    Ok(value)
                });
                match rewritten {
                    Ok(value) => values.push((w.position.0.to_be_bytes(), value)),
                    Err(e) => return Commit::ready(Err(e)),
                }
            }
        }
        let (reply, commit) = Commit::channel();
        match lock(&self.tx).as_ref() {
            Some(tx) => {
                // Counted before sending, so the writer's decrement never runs ahead of it.
                let n = records.len() as u64;
                self.shared.pending.fetch_add(n, Ordering::Relaxed);
                // The writer only hangs up if it panicked; the request comes back and is refused.
                if let Err(mpsc::SendError(Work::Append(request))) = tx.send(Work::Append(Request { records, rewrites: values, reply })) {
                    self.shared.pending.fetch_sub(n, Ordering::Relaxed);
                    request.reply.send(Err(StorageError::Closed));
                }
            }
            None => reply.send(Err(StorageError::Closed)),
        }
        commit
    }

    fn purge_superseded(&self, from: Position, to: Position) -> Result<()> {
        if let Some(e) = self.refuse_writes() {
            return Err(e);
        }
        // Flushing every column family lets RocksDB drop the WAL files that still hold old bodies;
        // compacting the range rewrites the SST files without the superseded versions.
        for name in ALL {
            self.db.flush_cf(self.cf(name)?).map_err(backend)?;
        }
        self.db.compact_range_cf(self.cf(LOG)?, Some(from.0.to_be_bytes()), Some(to.0.to_be_bytes()));
        Ok(())
    }

    fn head(&self) -> (Position, ChainHash) {
        *lock(&self.shared.head)
    }

    fn scan(&self, from: Position, f: &mut dyn FnMut(StoredRecord) -> ControlFlow<()>) -> Result<()> {
        let mut ro = ReadOptions::default();
        // A one-pass replay should not evict the working set from the block cache; reading ahead 4 MiB
        // instead keeps it fast on a cold cache (STACK.md §3b: 2.48M records/s with decode).
        ro.fill_cache(false);
        ro.set_readahead_size(4 << 20);
        // Batches are written before they are synced and published: the committed end is the head,
        // read before the iterator pins its view, not the last key the iterator finds.
        let head = self.head().0;
        let mut it = self.db.raw_iterator_cf_opt(self.cf(LOG)?, ro);
        it.seek(from.0.max(1).to_be_bytes());
        while it.valid() {
            let (Some(key), Some(value)) = (it.key(), it.value()) else { break };
            let position = Position(be_u64(key).ok_or_else(|| corrupt("record key", Position::ZERO, format!("{} bytes, not 8", key.len())))?);
            if position > head {
                break;
            }
            if f(decode_record(position, value)?).is_break() {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(backend)
    }

    fn read_stream(&self, stream: &[u8], after: Position, limit: usize) -> Result<Vec<StoredRecord>> {
        if after.0 == u64::MAX || limit == 0 {
            return Ok(Vec::new());
        }
        let positions = self.stream_positions(stream, after.0, true, limit)?;
        self.get_records(&positions, true)
    }

    fn read_stream_back(&self, stream: &[u8], before: Position, limit: usize) -> Result<Vec<StoredRecord>> {
        if before.0 == 0 || limit == 0 {
            return Ok(Vec::new());
        }
        let positions = self.stream_positions(stream, before.0, false, limit)?;
        self.get_records(&positions, false)
    }

    fn read_seq_range(&self, stream: &[u8], from: u64, to: u64, limit: usize, newest_first: bool) -> Result<Vec<(u64, StoredRecord)>> {
        if from > to || limit == 0 {
            return Ok(Vec::new());
        }
        // The tail first, the database second: see `tail.rs`.
        let mut hits: Vec<(u64, u64)> = lock(&self.tail.tail).seqs(stream, from, to);
        let start = if newest_first { to } else { from };
        let mut found = 0usize;
        self.walk_blocks(STREAM_SEQ, stream, &start.to_be_bytes(), !newest_first, |first, value| {
            let block = tail::seq_block(first, value).ok_or_else(|| corrupt("index entry", Position::ZERO, "malformed stream_seq block"))?;
            // Blocks are in seq order, so a block entirely past the range ends the walk.
            let past = if newest_first { block.last().is_some_and(|(s, _)| *s < from) } else { block[0].0 > to };
            let before = hits.len();
            hits.extend(block.into_iter().filter(|(s, _)| (from..=to).contains(s)));
            found += hits.len() - before;
            Ok(if past || found >= limit { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
        })?;
        hits.sort_unstable();
        hits.dedup();
        if newest_first {
            hits.reverse();
        }
        hits.truncate(limit);
        let positions: Vec<u64> = hits.iter().map(|(_, p)| *p).collect();
        let records = self.get_records(&positions, false)?;
        Ok(hits.into_iter().map(|(seq, _)| seq).zip(records).collect())
    }

    fn put_snapshot(&self, stream: &[u8], snapshot: &Snapshot) -> Result<()> {
        if let Some(refusal) = self.refuse_writes() {
            return Err(refusal);
        }
        let _serial = lock(&self.snapshot_lock);
        if let Some(existing) = self.get_snapshot(stream)? {
            if existing.position > snapshot.position {
                return Ok(());
            }
        }
        let mut value = Vec::with_capacity(8 + snapshot.state.len());
        value.extend_from_slice(&snapshot.position.0.to_be_bytes());
        value.extend_from_slice(&snapshot.state);
        // Written through the WAL but not synced: a snapshot is derivable from the log, and RocksDB's one
        // WAL for all families means a snapshot never survives a crash that loses the records it covers.
        self.db.put_cf(self.cf(SNAPSHOT)?, stream, value).map_err(backend)
    }

    fn get_snapshot(&self, stream: &[u8]) -> Result<Option<Snapshot>> {
        match self.db.get_pinned_cf(self.cf(SNAPSHOT)?, stream).map_err(backend)? {
            None => Ok(None),
            Some(v) => decode_snapshot(&v).map(Some),
        }
    }

    fn scan_snapshots(&self, f: &mut dyn FnMut(&[u8], Snapshot) -> ControlFlow<()>) -> Result<()> {
        for item in self.db.iterator_cf(self.cf(SNAPSHOT)?, IteratorMode::Start) {
            let (key, value) = item.map_err(backend)?;
            if f(&key, decode_snapshot(&value)?).is_break() {
                break;
            }
        }
        Ok(())
    }
}

/// Database-wide options. Each non-default one says what it buys.
pub(crate) fn db_options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    // RocksDB defaults to a single background thread for flushes and compactions; a long compaction of
    // the log would then delay memtable flushes and stall writes. Use every core
    // (https://github.com/facebook/rocksdb/wiki/Setup-Options-and-Basic-Tuning).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    o.increase_parallelism(i32::try_from(cores).unwrap_or(i32::MAX));
    // A WAL file is deleted only once every column family with data in it has flushed. The snapshot
    // family is written rarely, so it would pin old WAL files for a long time; capping the
    // total WAL size forces its flush, bounding disk use and the replay time at open
    // (https://github.com/facebook/rocksdb/wiki/Write-Ahead-Log-(WAL)).
    o.set_max_total_wal_size(256 << 20);
    // RocksDB starts a new info LOG file at every open and keeps 1000 by default; ten are plenty.
    o.set_keep_log_file_num(10);
    // One thread inserts a whole write group into the memtables. Concurrent inserts (RocksDB's
    // default) only help when the indexer's write shares a group with a committer's, and they give up
    // the skiplist's cached search path that the indexer's sorted inserts reuse: 140-142k appends/s
    // against 147-155k without, at 256 appenders over 2,000,000 appends (two alternating runs).
    o.set_allow_concurrent_memtable_write(false);
    o
}

/// Per-column-family options.
pub(crate) fn cf_options(name: &str) -> Options {
    let mut o = Options::default();
    if name == LOG {
        // The log is written once and read in bulk by replays; LZ4 is the cheap codec that still shrinks
        // envelope bodies well (STACK.md §1b: 200 KB against 4.3 MB uncompressed, Snappy 379 KB). The
        // index families keep the default (Snappy): their values are empty or 8 bytes.
        o.set_compression_type(DBCompressionType::Lz4);
    }
    o
}

/// Appends the `log` value of `record` to `out`: `[RECORD_FORMAT][prev_hash][digest][index entries][body]`,
/// the index entries being `[stream length: u32 BE][stream][flags: bit 0 seq]`, then the seq (u64 BE)
/// when flagged. Flag bit 1 marked an idempotency key (`[key length: u32 BE][key]` after the seq),
/// written by earlier versions and skipped when read.
pub(crate) fn encode_record_into(out: &mut Vec<u8>, prev: &ChainHash, digest: &ChainHash, record: &NewRecord) {
    out.reserve(RECORD_HEADER + 4 + record.stream.len() + 1 + 8 + record.body.len());
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&prev.0);
    out.extend_from_slice(&digest.0);
    out.extend_from_slice(&(record.stream.len() as u32).to_be_bytes());
    out.extend_from_slice(&record.stream);
    out.push(u8::from(record.seq.is_some()));
    if let Some(seq) = record.seq {
        out.extend_from_slice(&seq.to_be_bytes());
    }
    out.extend_from_slice(&record.body);
}

/// The index entries a format-2 record carries.
pub(crate) struct IndexMeta<'a> {
    pub(crate) stream: &'a [u8],
    pub(crate) seq: Option<u64>,
}

/// A `log` value taken apart without copying.
pub(crate) struct RecordParts<'a> {
    pub(crate) prev_hash: ChainHash,
    pub(crate) digest: ChainHash,
    /// `None` for format 1, which carries no index entries.
    pub(crate) meta: Option<IndexMeta<'a>>,
    /// Where the body starts in the value.
    pub(crate) body_offset: usize,
    pub(crate) body: &'a [u8],
}

/// Takes a `log` value stored at `position` apart.
pub(crate) fn split_record(position: Position, value: &[u8]) -> Result<RecordParts<'_>> {
    let short = || corrupt("record", position, format!("{} bytes is shorter than its header", value.len()));
    let Some((&format, rest)) = value.split_first() else {
        return Err(corrupt("record", position, "empty value"));
    };
    if format != RECORD_FORMAT && format != RECORD_FORMAT_V1 {
        return Err(corrupt("record", position, format!("unknown record format {format}")));
    }
    let (prev_hash, rest) = rest.split_first_chunk::<32>().ok_or_else(short)?;
    let (digest, rest) = rest.split_first_chunk::<32>().ok_or_else(short)?;
    let (meta, body) = if format == RECORD_FORMAT_V1 {
        (None, rest)
    } else {
        let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(short)?;
        let (stream, rest) = split_at_checked(rest, u32::from_be_bytes(*len) as usize).ok_or_else(short)?;
        let (&flags, mut rest) = rest.split_first().ok_or_else(short)?;
        let mut seq = None;
        if flags & 1 != 0 {
            let (s, r) = rest.split_first_chunk::<8>().ok_or_else(short)?;
            seq = Some(u64::from_be_bytes(*s));
            rest = r;
        }
        if flags & 2 != 0 {
            // An idempotency key, indexed by earlier versions; nothing reads it now.
            let (len, r) = rest.split_first_chunk::<4>().ok_or_else(short)?;
            rest = split_at_checked(r, u32::from_be_bytes(*len) as usize).ok_or_else(short)?.1;
        }
        (Some(IndexMeta { stream, seq }), rest)
    };
    Ok(RecordParts { prev_hash: ChainHash(*prev_hash), digest: ChainHash(*digest), meta, body_offset: value.len() - body.len(), body })
}

fn split_at_checked(bytes: &[u8], at: usize) -> Option<(&[u8], &[u8])> {
    (at <= bytes.len()).then(|| bytes.split_at(at))
}

/// Decodes a `log` value stored at `position`.
pub(crate) fn decode_record(position: Position, value: &[u8]) -> Result<StoredRecord> {
    let parts = split_record(position, value)?;
    Ok(StoredRecord { position, prev_hash: parts.prev_hash, digest: parts.digest, body: parts.body.to_vec() })
}

/// Decodes a `snapshot` value: `[position BE][state]`.
fn decode_snapshot(value: &[u8]) -> Result<Snapshot> {
    let Some((position, state)) = value.split_first_chunk::<8>() else {
        return Err(corrupt("snapshot", Position::ZERO, format!("{} bytes is shorter than its position", value.len())));
    };
    Ok(Snapshot { position: Position(u64::from_be_bytes(*position)), state: state.to_vec() })
}

/// Empties `stream_dedupe`, the idempotency index earlier versions kept (one key per message, nothing
/// reads it now), so an upgraded data directory gets its disk space back. Dropping the family deletes
/// its files at once; it is created again, empty, because every open names it. A crash in between
/// leaves it missing, and the next open creates it.
fn drop_legacy_index(db: &mut DB) -> Result<()> {
    let empty = {
        let mut it = db.raw_iterator_cf(cf(db, STREAM_DEDUPE)?);
        it.seek_to_first();
        let empty = !it.valid();
        it.status().map_err(backend)?;
        empty
    };
    if empty {
        return Ok(());
    }
    db.drop_cf(STREAM_DEDUPE).map_err(backend)?;
    db.create_cf(STREAM_DEDUPE, &cf_options(STREAM_DEDUPE)).map_err(backend)?;
    tracing::info!("dropped the idempotency index written by an earlier version");
    Ok(())
}

/// The head of the log as stored: the last record's position and its chain link.
fn read_head(db: &DB) -> Result<(Position, ChainHash)> {
    let mut it = db.raw_iterator_cf(cf(db, LOG)?);
    it.seek_to_last();
    let head = match (it.key(), it.value()) {
        (Some(key), Some(value)) => {
            let position = Position(be_u64(key).ok_or_else(|| corrupt("record key", Position::ZERO, format!("{} bytes, not 8", key.len())))?);
            (position, decode_record(position, value)?.hash())
        }
        _ => (Position::ZERO, ChainHash::GENESIS),
    };
    it.status().map_err(backend)?;
    Ok(head)
}

/// The index tail as of opening: the index entries of every record after the watermark, read from the
/// records themselves. A log without a watermark was written when each record's index entries went into
/// its own write batch, so its indexes are complete; a writable open records that with a watermark at
/// the head before anything is appended.
fn recover_tail(db: &DB, head: Position, writable: bool) -> Result<Tail> {
    let indexed_to = match tail::read_indexed_to(db)? {
        Some(p) => p,
        None => {
            if writable {
                tail::write_indexed_to(db, head)?;
            }
            head.0
        }
    };
    let mut recovered = Tail::new(indexed_to);
    if indexed_to >= head.0 {
        return Ok(recovered);
    }
    let started = std::time::Instant::now();
    let mut it = db.raw_iterator_cf(cf(db, LOG)?);
    it.seek((indexed_to + 1).to_be_bytes());
    while it.valid() {
        let (Some(key), Some(value)) = (it.key(), it.value()) else { break };
        let position = Position(be_u64(key).ok_or_else(|| corrupt("record key", Position::ZERO, format!("{} bytes, not 8", key.len())))?);
        let parts = split_record(position, value)?;
        let meta = parts.meta.ok_or_else(|| corrupt("record", position, "a format-1 record after the index watermark"))?;
        recovered.add(meta.stream, position.0, meta.seq);
        it.next();
    }
    it.status().map_err(backend)?;
    tracing::info!(
        from = indexed_to + 1,
        to = head.0,
        records = recovered.records(),
        millis = started.elapsed().as_millis() as u64,
        "re-read the index tail from the log"
    );
    Ok(recovered)
}

fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a ColumnFamily> {
    // Opening names every family, so a missing one means the handle table itself is broken.
    db.cf_handle(name).ok_or_else(|| corrupt("column family", Position::ZERO, format!("{name} is missing")))
}

/// The only place a RocksDB error becomes a storage error.
pub(crate) fn backend(e: rocksdb::Error) -> StorageError {
    StorageError::Backend(Box::new(e))
}

/// Builds a [`StorageError::Corrupt`], logging it: corruption needs an operator, not just a caller.
pub(crate) fn corrupt(what: &'static str, position: Position, reason: impl Into<String>) -> StorageError {
    let reason = reason.into();
    tracing::error!(what, position = position.0, %reason, "corrupt data in event log");
    StorageError::Corrupt { what, position, reason }
}

/// Locks a mutex, ignoring poisoning: every value guarded here is replaced in one assignment, so a
/// panic elsewhere cannot leave it half-updated.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
