//! Raw RocksDB baselines for the benchmarks: the same bytes written or read without the log's
//! bookkeeping, so a benchmark can report Rookery's throughput as a fraction of the engine's.

use std::path::Path;

use rocksdb::{ReadOptions, WriteBatch, WriteOptions, DB};

use super::schema::{ALL, LOG};
use super::{backend, cf, db_options, encode_record_into, split_record};
use crate::{ChainHash, NewRecord, Result};

/// Writes `total` values of `value_len` bytes under sequential u64 keys into a fresh database at `path`,
/// `batch` per `WriteBatch`, syncing the WAL once per batch. Returns values per second.
///
/// # Errors
/// [`crate::StorageError::Backend`] on RocksDB failures.
pub fn raw_append(path: &Path, batch: usize, total: u64, value_len: usize) -> Result<f64> {
    let db = DB::open(&db_options(), path).map_err(backend)?;
    let value = value_bytes(value_len);
    synced_batches(&db, batch, total, |b, key| b.put(key.to_be_bytes(), &value))
}

/// Deterministic but incompressible-looking bytes, like encoded envelopes.
fn value_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect()
}

/// Writes keys 1..=total through `put`, `batch` per `WriteBatch`, syncing the WAL once per batch.
/// Returns keys per second.
fn synced_batches(db: &DB, batch: usize, total: u64, mut put: impl FnMut(&mut WriteBatch, u64)) -> Result<f64> {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    let started = std::time::Instant::now();
    let mut key = 0u64;
    while key < total {
        let mut b = WriteBatch::default();
        for _ in 0..batch.max(1) {
            key += 1;
            put(&mut b, key);
        }
        db.write_opt(b, &wo).map_err(backend)?;
    }
    Ok(key as f64 / started.elapsed().as_secs_f64())
}

/// Bytes `record` takes as a stored `log` value (header, chain link, index entries, body): the value
/// size that makes [`raw_append`] write what the log's synchronous write holds per record.
pub fn stored_len(record: &NewRecord) -> usize {
    let mut value = Vec::new();
    encode_record_into(&mut value, &ChainHash::GENESIS, &record.digest, record);
    value.len()
}

/// The event log at a path opened read-only as a plain RocksDB (so the log may be in use), for
/// [`RawReader::scan`]. Opening replays the WAL; it is kept apart from the scan so a benchmark can
/// time the scan alone, as it times a replay on an already open log.
pub struct RawReader {
    db: DB,
}

impl RawReader {
    /// Opens the log at `path`.
    ///
    /// # Errors
    /// [`crate::StorageError::Backend`] on RocksDB failures.
    pub fn open(path: &Path) -> Result<RawReader> {
        Ok(RawReader { db: DB::open_cf_for_read_only(&rocksdb::Options::default(), path, ALL, false).map_err(backend)? })
    }

    /// Iterates the `log` column family with a raw iterator and hands each record body to `f`, without
    /// decoding or checking it.
    ///
    /// # Errors
    /// [`crate::StorageError::Backend`] on RocksDB failures.
    pub fn scan(&self, f: &mut dyn FnMut(&[u8])) -> Result<()> {
        let mut ro = ReadOptions::default();
        // The same read options as `RocksLog::scan`, so the comparison is fair.
        ro.fill_cache(false);
        ro.set_readahead_size(4 << 20);
        let mut it = self.db.raw_iterator_cf_opt(cf(&self.db, LOG)?, ro);
        it.seek_to_first();
        while let Some(v) = it.value() {
            // Skips the header (and the index entries of format 2) without checking anything.
            let body = split_record(rookery_events::Position::ZERO, v).map_or(v, |parts| parts.body);
            f(body);
            it.next();
        }
        it.status().map_err(backend)
    }
}

/// One queued append of [`RawGroupCommit`]: completed with its key once synced.
type RawReply = tokio::sync::oneshot::Sender<u64>;

/// The least a group-committing log that answers every append must do, as a yardstick for the
/// log's own work: a thread takes every queued append, writes them as one `WriteBatch` of ready-made
/// values under sequential keys, syncs the WAL once and completes each append's one-shot reply. No
/// encoding, no chain, no index.
///
/// `pipelined` splits that in two threads the way a log could: one writes each batch without sync
/// and goes on with the next, the other syncs everything written so far with one fsync and answers
/// it, so writing overlaps syncing.
pub struct RawGroupCommit {
    tx: Option<std::sync::mpsc::Sender<RawReply>>,
    thread: Option<std::thread::JoinHandle<Result<(u64, u64)>>>,
}

impl RawGroupCommit {
    /// Opens a fresh database at `path` whose appends are `value_len` bytes each.
    ///
    /// # Errors
    /// [`crate::StorageError::Backend`] on RocksDB failures.
    pub fn open(path: &Path, value_len: usize, pipelined: bool) -> Result<RawGroupCommit> {
        let db = std::sync::Arc::new(DB::open(&db_options(), path).map_err(backend)?);
        let value = value_bytes(value_len);
        let (tx, rx) = std::sync::mpsc::channel::<RawReply>();
        let thread = std::thread::spawn(move || if pipelined { pipelined_writer(&db, &value, &rx) } else { inline_writer(&db, &value, &rx) });
        Ok(RawGroupCommit { tx: Some(tx), thread: Some(thread) })
    }

    /// Appends one value; resolves to its key once it is synced.
    pub fn append(&self) -> tokio::sync::oneshot::Receiver<u64> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        if let Some(tx) = &self.tx {
            // A writer that stopped after an error drops `reply`; `finish` reports the error.
            let _ = tx.send(reply);
        }
        rx
    }

    /// Waits for every append to be answered and stops; returns (appends, fsyncs).
    ///
    /// # Errors
    /// The writer's RocksDB failure, if any.
    pub fn finish(mut self) -> Result<(u64, u64)> {
        drop(self.tx.take());
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(crate::StorageError::Backend("the raw group-commit writer panicked".into())),
            None => Ok((0, 0)),
        }
    }
}

/// Takes the first queued append (blocking) and every other one already queued, up to 4096.
fn next_group(rx: &std::sync::mpsc::Receiver<RawReply>) -> Option<Vec<RawReply>> {
    let first = rx.recv().ok()?;
    let mut group = vec![first];
    group.extend(rx.try_iter().take(4095));
    Some(group)
}

/// Writes `group` under the keys after `*key` in one batch.
fn write_group(db: &DB, value: &[u8], key: &mut u64, group: &[RawReply], wo: &WriteOptions) -> Result<()> {
    let mut batch = WriteBatch::default();
    for _ in group {
        *key += 1;
        batch.put(key.to_be_bytes(), value);
    }
    db.write_opt(batch, wo).map_err(backend)
}

/// Answers `group`, whose last key is `last`.
fn answer(group: Vec<RawReply>, last: u64) {
    let mut key = last - group.len() as u64;
    for reply in group {
        key += 1;
        let _ = reply.send(key);
    }
}

fn inline_writer(db: &DB, value: &[u8], rx: &std::sync::mpsc::Receiver<RawReply>) -> Result<(u64, u64)> {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    let (mut key, mut syncs) = (0, 0);
    while let Some(group) = next_group(rx) {
        write_group(db, value, &mut key, &group, &wo)?;
        syncs += 1;
        answer(group, key);
    }
    Ok((key, syncs))
}

fn pipelined_writer(db: &std::sync::Arc<DB>, value: &[u8], rx: &std::sync::mpsc::Receiver<RawReply>) -> Result<(u64, u64)> {
    let (to_syncer, written) = std::sync::mpsc::channel::<(u64, Vec<RawReply>)>();
    let syncer = {
        let db = db.clone();
        std::thread::spawn(move || -> Result<u64> {
            let mut syncs = 0;
            while let Ok(first) = written.recv() {
                let ready: Vec<_> = std::iter::once(first).chain(written.try_iter()).collect();
                // RocksDB's SyncWAL: one fdatasync covering every batch written so far.
                db.flush_wal(true).map_err(backend)?;
                syncs += 1;
                for (last, group) in ready {
                    answer(group, last);
                }
            }
            Ok(syncs)
        })
    };
    let mut key = 0;
    let mut result = Ok(());
    while let Some(group) = next_group(rx) {
        if let Err(e) = write_group(db, value, &mut key, &group, &WriteOptions::default()) {
            result = Err(e);
            break;
        }
        if to_syncer.send((key, group)).is_err() {
            break;
        }
    }
    drop(to_syncer);
    let syncs = syncer.join().unwrap_or_else(|_| Err(crate::StorageError::Backend("the raw syncer panicked".into())))?;
    result.map(|()| (key, syncs))
}
