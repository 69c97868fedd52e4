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
        // Skips the header (and the index entries of format 2) without checking anything.
        let body = split_record(rookery_events::Position::ZERO, v).map_or(v, |parts| parts.body);
        f(body);
        it.next();
    }
    it.status().map_err(backend)
}
