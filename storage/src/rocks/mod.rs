//! `RocksLog`: the event log on RocksDB, with group commit.
//!
//! One writer thread owns position assignment and the hash chain. `submit` hands it a batch over a
//! channel; the writer takes everything queued at that moment, writes it as one `WriteBatch` (records
//! and all their index entries) and, under `Durability::SyncEveryGroup`, syncs the WAL once for the
//! whole group before completing every commit in it. Reads go straight to the database from the
//! calling thread.

mod schema;

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rocksdb::{ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB};
use rookery_events::{link, ChainHash, Position};

use crate::{check_batch, Commit, CommitSender, Committed, Durability, EventLog, NewRecord, Result, Snapshot, StorageError, StoredRecord};
use schema::*;

/// Settings of [`RocksLog`].
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// When appends are acknowledged.
    pub durability: Durability,
    /// Most records one commit group takes (later ones wait for the next group).
    pub max_group_records: usize,
    /// Most body bytes one commit group takes.
    pub max_group_bytes: usize,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions { durability: Durability::SyncEveryGroup, max_group_records: 4096, max_group_bytes: 8 << 20 }
    }
}

/// Counters of the writer, for benchmarks and the monitor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Commit groups written.
    pub groups: u64,
    /// Records written.
    pub records: u64,
    /// WAL syncs made.
    pub syncs: u64,
}

struct Request {
    records: Vec<NewRecord>,
    reply: CommitSender,
}

#[derive(Default)]
struct Counters {
    groups: AtomicU64,
    records: AtomicU64,
    syncs: AtomicU64,
}

/// The RocksDB event log. See the crate docs for what a resolved commit guarantees.
pub struct RocksLog {
    db: Arc<DB>,
    tx: Option<Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    head: Arc<Mutex<(Position, ChainHash)>>,
    counters: Arc<Counters>,
}

fn backend(e: rocksdb::Error) -> StorageError {
    StorageError::Backend(Box::new(e))
}

fn corrupt(what: &'static str, position: Position, reason: impl Into<String>) -> StorageError {
    let reason = reason.into();
    tracing::error!(what, position = position.0, %reason, "corrupt data in event log");
    StorageError::Corrupt { what, position, reason }
}

fn db_options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    // Use both cores for flushes and compactions (https://github.com/facebook/rocksdb/wiki/Setup-Options-and-Basic-Tuning).
    o.increase_parallelism(2);
    o
}

fn cf_options(name: &str) -> Options {
    let mut o = Options::default();
    // The log is written once and read in bulk by replays: LZ4 halves its size for little CPU
    // (measured: 200 KB vs 4.3 MB uncompressed for repetitive payloads, STACK.md §1b).
    if name == LOG {
        o.set_compression_type(DBCompressionType::Lz4);
    }
    o
}

impl RocksLog {
    /// Opens (or creates) the log in `path` and starts its writer thread.
    ///
    /// # Errors
    /// [`StorageError::Backend`] when RocksDB cannot open the directory (another process holds its lock,
    /// permissions, corruption); [`StorageError::Corrupt`] when the last record is unreadable.
    pub fn open(path: &Path, options: RocksOptions) -> Result<RocksLog> {
        let cfs = ALL.iter().map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n)));
        let db = Arc::new(DB::open_cf_descriptors(&db_options(), path, cfs).map_err(backend)?);
        let head = Arc::new(Mutex::new(read_head(&db)?));
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel();
        let writer = {
            let (db, head, counters) = (db.clone(), head.clone(), counters.clone());
            std::thread::Builder::new()
                .name("rookery-log-writer".into())
                .spawn(move || Writer { db, head, counters, options, failed: None }.run(rx))
                .map_err(|e| StorageError::Backend(Box::new(e)))?
        };
        Ok(RocksLog { db, tx: Some(tx), writer: Some(writer), head, counters })
    }

    /// Writer counters since open.
    pub fn stats(&self) -> LogStats {
        LogStats {
            groups: self.counters.groups.load(Ordering::Relaxed),
            records: self.counters.records.load(Ordering::Relaxed),
            syncs: self.counters.syncs.load(Ordering::Relaxed),
        }
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| StorageError::Invalid(format!("column family {name} is missing")))
    }

    fn get_record(&self, position: Position) -> Result<StoredRecord> {
        let value = self.db.get_cf(self.cf(LOG)?, position.0.to_be_bytes()).map_err(backend)?;
        let value = value.ok_or_else(|| corrupt("index entry", position, "points at a missing record"))?;
        decode_record(position, &value)
    }

    /// Positions found under an index prefix, walking from `start` in `direction`, with the key suffix.
    fn index_walk(&self, cf: &str, prefix: &[u8], start: &[u8], forward: bool, limit: usize, mut keep: impl FnMut(&[u8]) -> bool) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut it = self.db.raw_iterator_cf(self.cf(cf)?);
        if forward {
            it.seek(start);
        } else {
            it.seek_for_prev(start);
        }
        while it.valid() && out.len() < limit {
            let (Some(k), Some(v)) = (it.key(), it.value()) else { break };
            if !k.starts_with(prefix) || !keep(&k[prefix.len()..]) {
                break;
            }
            out.push((k[prefix.len()..].to_vec(), v.to_vec()));
            if forward {
                it.next();
            } else {
                it.prev();
            }
        }
        it.status().map_err(backend)?;
        Ok(out)
    }
}

impl Drop for RocksLog {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and exit.
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn read_head(db: &DB) -> Result<(Position, ChainHash)> {
    let cf = db.cf_handle(LOG).ok_or_else(|| StorageError::Invalid("column family log is missing".into()))?;
    let mut it = db.iterator_cf(cf, IteratorMode::End);
    match it.next() {
        None => Ok((Position::ZERO, ChainHash::GENESIS)),
        Some(Err(e)) => Err(backend(e)),
        Some(Ok((k, v))) => {
            let position = Position(be_u64(&k).ok_or_else(|| corrupt("record key", Position::ZERO, "not 8 bytes"))?);
            let r = decode_record(position, &v)?;
            Ok((position, r.hash()))
        }
    }
}

fn decode_record(position: Position, value: &[u8]) -> Result<StoredRecord> {
    if value.len() < RECORD_HEADER {
        return Err(corrupt("record", position, format!("{} bytes is shorter than the record header", value.len())));
    }
    if value[0] != RECORD_FORMAT {
        return Err(corrupt("record", position, format!("unknown record format {}", value[0])));
    }
    let hash = |r: std::ops::Range<usize>| ChainHash(value[r].try_into().expect("32 bytes"));
    Ok(StoredRecord { position, prev_hash: hash(1..33), digest: hash(33..65), body: value[RECORD_HEADER..].to_vec() })
}

fn encode_record(prev: &ChainHash, digest: &ChainHash, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(RECORD_HEADER + body.len());
    v.push(RECORD_FORMAT);
    v.extend_from_slice(&prev.0);
    v.extend_from_slice(&digest.0);
    v.extend_from_slice(body);
    v
}

struct Writer {
    db: Arc<DB>,
    head: Arc<Mutex<(Position, ChainHash)>>,
    counters: Arc<Counters>,
    options: RocksOptions,
    /// Set after a failed write: the log refuses every later append until reopened, because callers
    /// may have decided later appends on state that never became durable.
    failed: Option<String>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            let (mut records, mut bytes) = (group[0].records.len(), group[0].records.iter().map(|r| r.body.len()).sum::<usize>());
            while records < self.options.max_group_records && bytes < self.options.max_group_bytes {
                match rx.try_recv() {
                    Ok(r) => {
                        records += r.records.len();
                        bytes += r.records.iter().map(|r| r.body.len()).sum::<usize>();
                        group.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
    }

    fn commit(&mut self, group: Vec<Request>) {
        if let Some(reason) = &self.failed {
            for r in group {
                r.reply.send(Err(StorageError::Backend(format!("event log failed earlier: {reason}").into())));
            }
            return;
        }
        let (start, start_hash) = *self.head.lock().expect("head lock");
        match self.write(&group, start, start_hash) {
            Ok((last, hash)) => {
                *self.head.lock().expect("head lock") = (last, hash);
                let mut next = start.next();
                for r in group {
                    let n = r.records.len() as u64;
                    let committed = Committed { first: next, last: Position(next.0 + n - 1) };
                    next = Position(next.0 + n);
                    r.reply.send(Ok(committed));
                }
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(error = %reason, "event log write failed; refusing further appends");
                self.failed = Some(reason.clone());
                for r in group {
                    r.reply.send(Err(StorageError::Backend(reason.clone().into())));
                }
            }
        }
    }

    fn write(&self, group: &[Request], start: Position, start_hash: ChainHash) -> Result<(Position, ChainHash)> {
        let cf = |n: &str| self.db.cf_handle(n).ok_or_else(|| StorageError::Invalid(format!("column family {n} is missing")));
        let (log, pos, seq, dedupe) = (cf(LOG)?, cf(STREAM_POS)?, cf(STREAM_SEQ)?, cf(STREAM_DEDUPE)?);
        let mut batch = WriteBatch::default();
        let mut position = start;
        let mut hash = start_hash;
        let mut claimed: HashSet<Vec<u8>> = HashSet::new();
        for request in group {
            for r in &request.records {
                position = position.next();
                let be = position.0.to_be_bytes();
                batch.put_cf(log, be, encode_record(&hash, &r.digest, &r.body));
                hash = link(&hash, position, &r.digest);
                batch.put_cf(pos, stream_key(&r.stream, &be), []);
                if let Some(s) = r.seq {
                    batch.put_cf(seq, stream_key(&r.stream, &s.to_be_bytes()), be);
                }
                if let Some(key) = &r.dedupe {
                    let k = stream_key(&r.stream, key);
                    // First one wins: neither an earlier group nor an earlier record of this group.
                    if !claimed.contains(&k) && self.db.get_pinned_cf(dedupe, &k).map_err(backend)?.is_none() {
                        batch.put_cf(dedupe, &k, be);
                        claimed.insert(k);
                    }
                }
            }
        }
        let mut wo = WriteOptions::default();
        // SyncEveryGroup: fsync the WAL before anyone is told; OsBuffered: leave it in the page cache.
        wo.set_sync(self.options.durability == Durability::SyncEveryGroup);
        self.db.write_opt(batch, &wo).map_err(backend)?;
        self.counters.groups.fetch_add(1, Ordering::Relaxed);
        self.counters.records.fetch_add(position.0 - start.0, Ordering::Relaxed);
        if self.options.durability == Durability::SyncEveryGroup {
            self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok((position, hash))
    }
}

impl EventLog for RocksLog {
    fn submit(&self, records: Vec<NewRecord>) -> Commit {
        if let Err(e) = check_batch(&records) {
            return Commit::ready(Err(e));
        }
        let (reply, commit) = Commit::channel();
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::SendError(req)) = tx.send(Request { records, reply }) {
                    req.reply.send(Err(StorageError::Closed));
                }
            }
            None => reply.send(Err(StorageError::Closed)),
        }
        commit
    }

    fn head(&self) -> (Position, ChainHash) {
        *self.head.lock().expect("head lock")
    }

    fn scan(&self, from: Position, f: &mut dyn FnMut(StoredRecord) -> ControlFlow<()>) -> Result<()> {
        let mut ro = ReadOptions::default();
        // A one-pass replay should not evict the working set from the block cache; read ahead instead.
        ro.fill_cache(false);
        ro.set_readahead_size(4 << 20);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(LOG)?, ro);
        it.seek(from.0.max(1).to_be_bytes());
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else { break };
            let position = Position(be_u64(k).ok_or_else(|| corrupt("record key", Position::ZERO, "not 8 bytes"))?);
            if f(decode_record(position, v)?).is_break() {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(backend)
    }

    fn read_stream(&self, stream: &[u8], after: Position, limit: usize) -> Result<Vec<StoredRecord>> {
        let prefix = stream_prefix(stream);
        let start = stream_key(stream, &after.0.saturating_add(1).to_be_bytes());
        let hits = self.index_walk(STREAM_POS, &prefix, &start, true, limit, |_| true)?;
        hits.iter()
            .map(|(suffix, _)| {
                let p = be_u64(suffix).ok_or_else(|| corrupt("index entry", Position::ZERO, "stream_pos suffix is not 8 bytes"))?;
                self.get_record(Position(p))
            })
            .collect()
    }

    fn read_seq_range(&self, stream: &[u8], from: u64, to: u64, limit: usize, newest_first: bool) -> Result<Vec<(u64, StoredRecord)>> {
        if from > to || limit == 0 {
            return Ok(Vec::new());
        }
        let prefix = stream_prefix(stream);
        let in_range = |suffix: &[u8]| be_u64(suffix).is_some_and(|s| (from..=to).contains(&s));
        let hits = if newest_first {
            self.index_walk(STREAM_SEQ, &prefix, &stream_key(stream, &to.to_be_bytes()), false, limit, in_range)?
        } else {
            self.index_walk(STREAM_SEQ, &prefix, &stream_key(stream, &from.to_be_bytes()), true, limit, in_range)?
        };
        hits.iter()
            .map(|(suffix, value)| {
                let seq = be_u64(suffix).ok_or_else(|| corrupt("index entry", Position::ZERO, "stream_seq suffix is not 8 bytes"))?;
                let p = be_u64(value).ok_or_else(|| corrupt("index entry", Position::ZERO, "stream_seq value is not 8 bytes"))?;
                Ok((seq, self.get_record(Position(p))?))
            })
            .collect()
    }

    fn find_dedupe(&self, stream: &[u8], key: &[u8]) -> Result<Option<StoredRecord>> {
        match self.db.get_pinned_cf(self.cf(STREAM_DEDUPE)?, stream_key(stream, key)).map_err(backend)? {
            None => Ok(None),
            Some(v) => {
                let p = be_u64(&v).ok_or_else(|| corrupt("index entry", Position::ZERO, "stream_dedupe value is not 8 bytes"))?;
                self.get_record(Position(p)).map(Some)
            }
        }
    }

    fn put_snapshot(&self, stream: &[u8], snapshot: &Snapshot) -> Result<()> {
        // Only the newest snapshot counts; a racing older one must not replace it. Writers of one
        // stream are serialised by its actor, so read-then-write is enough here.
        if let Some(existing) = self.get_snapshot(stream)? {
            if existing.position > snapshot.position {
                return Ok(());
            }
        }
        let mut v = Vec::with_capacity(8 + snapshot.state.len());
        v.extend_from_slice(&snapshot.position.0.to_be_bytes());
        v.extend_from_slice(&snapshot.state);
        // Not synced on its own: snapshots are derivable from the log, and RocksDB's single WAL means a
        // snapshot never survives a crash that loses the events it covers.
        self.db.put_cf(self.cf(SNAPSHOT)?, stream, v).map_err(backend)
    }

    fn get_snapshot(&self, stream: &[u8]) -> Result<Option<Snapshot>> {
        match self.db.get_cf(self.cf(SNAPSHOT)?, stream).map_err(backend)? {
            None => Ok(None),
            Some(v) if v.len() < 8 => Err(corrupt("snapshot", Position::ZERO, "shorter than its position")),
            Some(v) => Ok(Some(Snapshot { position: Position(be_u64(&v[..8]).unwrap_or(0)), state: v[8..].to_vec() })),
        }
    }

    fn scan_snapshots(&self, f: &mut dyn FnMut(&[u8], Snapshot) -> ControlFlow<()>) -> Result<()> {
        for item in self.db.iterator_cf(self.cf(SNAPSHOT)?, IteratorMode::From(&[], Direction::Forward)) {
            let (k, v) = item.map_err(backend)?;
            if v.len() < 8 {
                return Err(corrupt("snapshot", Position::ZERO, "shorter than its position"));
            }
            if f(&k, Snapshot { position: Position(be_u64(&v[..8]).unwrap_or(0)), state: v[8..].to_vec() }).is_break() {
                break;
            }
        }
        Ok(())
    }
}

/// Raw RocksDB baselines for the benchmarks: the same bytes written or read without the log's
/// bookkeeping, so a benchmark can report Rookery's throughput as a fraction of the engine's.
pub mod baseline {
    use super::*;

    /// Writes `total` values of `value_len` bytes under sequential u64 keys, `batch` per `WriteBatch`,
    /// syncing the WAL once per batch. Returns values per second.
    ///
    /// # Errors
    /// [`StorageError::Backend`] on RocksDB failures.
    pub fn raw_append(path: &Path, batch: usize, total: u64, value_len: usize) -> Result<f64> {
        let db = DB::open(&db_options(), path).map_err(backend)?;
        let value: Vec<u8> = (0..value_len).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let started = std::time::Instant::now();
        let mut key = 0u64;
        while key < total {
            let mut b = WriteBatch::default();
            for _ in 0..batch.max(1) {
                key += 1;
                b.put(key.to_be_bytes(), &value);
            }
            db.write_opt(b, &wo).map_err(backend)?;
        }
        Ok(key as f64 / started.elapsed().as_secs_f64())
    }

    /// Iterates the `log` column family of a closed log directory with a raw iterator and hands each
    /// record body to `f`.
    ///
    /// # Errors
    /// [`StorageError::Backend`] on RocksDB failures.
    pub fn raw_scan(path: &Path, f: &mut dyn FnMut(&[u8])) -> Result<()> {
        let cfs = ALL.iter().map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n)));
        let db = DB::open_cf_descriptors(&db_options(), path, cfs).map_err(backend)?;
        let cf = db.cf_handle(LOG).ok_or_else(|| StorageError::Invalid("column family log is missing".into()))?;
        let mut ro = ReadOptions::default();
        ro.fill_cache(false);
        ro.set_readahead_size(4 << 20);
        let mut it = db.raw_iterator_cf_opt(cf, ro);
        it.seek_to_first();
        while let Some(v) = it.value() {
            f(&v[RECORD_HEADER.min(v.len())..]);
            it.next();
        }
        it.status().map_err(backend)
    }
}
