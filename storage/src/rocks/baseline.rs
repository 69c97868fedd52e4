//! Raw RocksDB baselines for the benchmarks: the same bytes written or read without the log's
//! bookkeeping, so a benchmark can report Rookery's throughput as a fraction of the engine's.

use std::path::Path;

use rocksdb::{ReadOptions, WriteBatch, WriteOptions, DB};

use super::schema::{stream_key, ALL, LOG, RECORD_HEADER, STREAM_DEDUPE, STREAM_POS, STREAM_SEQ};
use super::{backend, cf, cf_options, db_options};
use crate::Result;

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

/// Like [`raw_append`], but writes the event log's whole write set per value: the record under its
/// position plus the stream, seq and idempotency index entries of a message in one of `streams`
/// channels, into the log's column families. What remains between this and `RocksLog` is the log's
/// own work: queueing, encoding, hashing, waking callers.
///
/// # Errors
/// [`crate::StorageError::Backend`] on RocksDB failures.
pub fn raw_append_indexed(path: &Path, batch: usize, total: u64, value_len: usize, streams: u64) -> Result<f64> {
    let cfs = ALL.iter().map(|n| rocksdb::ColumnFamilyDescriptor::new(*n, cf_options(n)));
    let db = DB::open_cf_descriptors(&db_options(), path, cfs).map_err(backend)?;
    let (log, pos, seq, dedupe) = (cf(&db, LOG)?, cf(&db, STREAM_POS)?, cf(&db, STREAM_SEQ)?, cf(&db, STREAM_DEDUPE)?);
    let value = value_bytes(value_len);
    let streams = streams.max(1);
    synced_batches(&db, batch, total, |b, key| {
        let be = key.to_be_bytes();
        let stream = format!("c\u{2}group-{}", key % streams).into_bytes();
        b.put_cf(log, be, &value);
        b.put_cf(pos, stream_key(&stream, &be), []);
        b.put_cf(seq, stream_key(&stream, &(key / streams).to_be_bytes()), be);
        b.put_cf(dedupe, stream_key(&stream, format!("user-{}c{key}", key % 50).as_bytes()), be);
    })
}

/// Iterates the `log` column family of the event log at `path` (opened read-only, so the log may be in
/// use) with a raw iterator and hands each record body to `f`, without decoding or checking it.
///
/// # Errors
/// [`crate::StorageError::Backend`] on RocksDB failures.
pub fn raw_scan(path: &Path, f: &mut dyn FnMut(&[u8])) -> Result<()> {
    let db = DB::open_cf_for_read_only(&rocksdb::Options::default(), path, ALL, false).map_err(backend)?;
    let mut ro = ReadOptions::default();
    // The same read options as `RocksLog::scan`, so the comparison is fair.
    ro.fill_cache(false);
    ro.set_readahead_size(4 << 20);
    let mut it = db.raw_iterator_cf_opt(cf(&db, LOG)?, ro);
    it.seek_to_first();
    while let Some(v) = it.value() {
        f(&v[RECORD_HEADER.min(v.len())..]);
        it.next();
    }
    it.status().map_err(backend)
}
