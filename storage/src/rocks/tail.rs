//! The index tail: index entries of committed records that are not in the index families yet, and the
//! indexer thread that moves them there in blocks.
//!
//! The writer's synchronous write is one key per record (the record, whose value carries its index
//! entries). Before it acknowledges a group it adds the group's index entries here, so a reader that
//! consults the tail and then the database sees every acknowledged record. The indexer thread takes the
//! whole tail every [`FLUSH_INTERVAL`] (or sooner when it holds [`FLUSH_RECORDS`] records) and writes
//! each stream's new entries as one block per family, and last the watermark
//! [`INDEXED_TO`]: a busy stream costs one index key per flush instead of one per record.
//!
//! Those writes go through the WAL but are not synced, in small chunks ([`CHUNK_ENTRIES`]). If a crash
//! loses the end of them, it loses the watermark with it (written last), and opening the log re-reads
//! the records after the watermark into the tail; blocks that did survive are rewritten under the same
//! first keys, since the next generation starts at the same watermark.
//!
//! Readers take the tail's entries first and the database's second and merge them: an entry moving
//! from the tail to the database meanwhile is then seen at least once, never missed.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rocksdb::{WriteBatch, WriteOptions, DB};
use rookery_events::Position;

use super::schema::*;
use super::{backend, cf, lock};
use crate::Result;

/// How often the indexer writes the tail to the index families.
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Records in the tail that wake the indexer before the interval is over.
const FLUSH_RECORDS: u64 = 32 * 1024;
/// Most entries in one block, so that a read near the end of a busy stream decodes little.
const MAX_BLOCK: usize = 1024;

/// One stream's entries in a generation, in log order.
#[derive(Default)]
struct StreamEntries {
    positions: Vec<u64>,
    /// (seq, position); seqs grow with positions.
    seqs: Vec<(u64, u64)>,
}

/// Index entries of consecutive records `(after, upto]`.
#[derive(Default)]
pub(super) struct Generation {
    streams: HashMap<Vec<u8>, StreamEntries>,
    records: u64,
    upto: u64,
}

impl Generation {
    fn is_empty(&self) -> bool {
        self.records == 0
    }
}

/// The tail: what the writer has added and the indexer has not written yet (`current`), and what the
/// indexer is writing (`flushing`).
#[derive(Default)]
pub(super) struct Tail {
    current: Generation,
    flushing: Option<Arc<Generation>>,
    /// Set by `close`: the indexer writes what is left and exits.
    stopping: bool,
    /// Set by `close` before it waits for the writer: the writer no longer waits for room, so a close
    /// cannot hang on an indexer that cannot write (the bound is exceeded by at most the queue).
    closing: bool,
    /// Set by `flush`: the indexer writes the tail now.
    flush_now: bool,
    /// The watermark: every record up to this position has its entries in the index families.
    indexed_to: u64,
    /// Test hook: the indexer writes nothing (and exits without writing when stopped), as if the
    /// process were killed before any flush.
    #[cfg(test)]
    pub(super) held: bool,
}

impl Tail {
    /// An empty tail over index families complete up to `indexed_to`.
    pub(super) fn new(indexed_to: u64) -> Tail {
        Tail { indexed_to, ..Tail::default() }
    }

    /// Adds the index entries of the record at `position`; positions must come in log order.
    pub(super) fn add(&mut self, stream: &[u8], position: u64, seq: Option<u64>) {
        let g = &mut self.current;
        let entries = match g.streams.get_mut(stream) {
            Some(e) => e,
            None => g.streams.entry(stream.to_vec()).or_default(),
        };
        entries.positions.push(position);
        if let Some(s) = seq {
            entries.seqs.push((s, position));
        }
        g.records += 1;
        g.upto = position;
    }

    /// Records in the tail (both generations).
    pub(super) fn records(&self) -> u64 {
        self.current.records + self.flushing.as_ref().map_or(0, |g| g.records)
    }

    fn generations(&self) -> impl Iterator<Item = &Generation> {
        self.flushing.iter().map(|g| &**g).chain(std::iter::once(&self.current))
    }

    /// Positions of `stream` in the tail, ascending.
    pub(super) fn positions(&self, stream: &[u8]) -> Vec<u64> {
        let mut out: Vec<u64> = self.generations().filter_map(|g| g.streams.get(stream)).flat_map(|e| e.positions.iter().copied()).collect();
        out.sort_unstable();
        out
    }

    /// (seq, position) pairs of `stream` in the tail with seq in `from..=to`, ascending by seq.
    pub(super) fn seqs(&self, stream: &[u8], from: u64, to: u64) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> =
            self.generations().filter_map(|g| g.streams.get(stream)).flat_map(|e| e.seqs.iter().copied()).filter(|(s, _)| (from..=to).contains(s)).collect();
        out.sort_unstable();
        out
    }
}

/// The tail and the signals around it, shared by the writer threads, the indexer and readers.
pub(super) struct SharedTail {
    pub(super) tail: Mutex<Tail>,
    /// Wakes the indexer: the tail grew past [`FLUSH_RECORDS`], or the log is closing.
    pub(super) wake: Condvar,
    /// Wakes a writer waiting for room in the tail.
    pub(super) room: Condvar,
    /// Records in the tail at which the committer waits for the indexer: the tail's memory bound
    /// (`RocksOptions::max_unindexed_records`).
    max_records: u64,
}

impl SharedTail {
    /// Wraps a tail recovered at open.
    pub(super) fn with_tail(tail: Tail, max_records: u64) -> SharedTail {
        SharedTail { tail: Mutex::new(tail), wake: Condvar::new(), room: Condvar::new(), max_records: max_records.max(1) }
    }

    /// Blocks while the tail holds its bound of records or more, so memory stays bounded when the
    /// indexer falls behind.
    pub(super) fn wait_for_room(&self) {
        let mut tail = lock(&self.tail);
        while tail.records() >= self.max_records && !tail.stopping && !tail.closing {
            self.wake.notify_one();
            tail = self.room.wait(tail).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Called by the writer after adding a group.
    pub(super) fn added(&self, current_records: u64) {
        if current_records >= FLUSH_RECORDS {
            self.wake.notify_one();
        }
    }

    /// Has the indexer write the whole tail now and waits until it has (or the log is closing).
    pub(super) fn flush(&self) {
        let mut tail = lock(&self.tail);
        // Up to what is in the tail now; appends made meanwhile are not waited for.
        let target = tail.generations().map(|g| g.upto).max().unwrap_or(0);
        while tail.indexed_to < target && !tail.stopping {
            tail.flush_now = true;
            self.wake.notify_one();
            tail = self.room.wait_timeout(tail, FLUSH_INTERVAL).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
    }

    /// Lets a writer waiting for room go on: the log is closing.
    pub(super) fn closing(&self) {
        lock(&self.tail).closing = true;
        self.room.notify_all();
    }

    /// Asks the indexer to write what is left and exit.
    pub(super) fn stop(&self) {
        lock(&self.tail).stopping = true;
        self.wake.notify_all();
        self.room.notify_all();
    }
}

/// The indexer thread: writes the tail to the index families until stopped, then writes the rest.
pub(super) fn run_indexer(db: Arc<DB>, shared: Arc<SharedTail>) {
    let mut next_flush = Instant::now() + FLUSH_INTERVAL;
    loop {
        let generation = {
            let mut tail = lock(&shared.tail);
            loop {
                #[cfg(test)]
                if tail.held {
                    if tail.stopping {
                        return;
                    }
                    tail = shared.wake.wait_timeout(tail, FLUSH_INTERVAL).unwrap_or_else(std::sync::PoisonError::into_inner).0;
                    continue;
                }
                let now = Instant::now();
                if tail.stopping || tail.flush_now || tail.current.records >= FLUSH_RECORDS || (now >= next_flush && !tail.current.is_empty()) {
                    break;
                }
                let wait = if now >= next_flush { FLUSH_INTERVAL } else { next_flush - now };
                if now >= next_flush {
                    next_flush = now + FLUSH_INTERVAL;
                }
                tail = shared.wake.wait_timeout(tail, wait).unwrap_or_else(std::sync::PoisonError::into_inner).0;
            }
            tail.flush_now = false;
            if tail.current.is_empty() {
                if tail.stopping {
                    break;
                }
                continue;
            }
            let generation = Arc::new(std::mem::take(&mut tail.current));
            tail.flushing = Some(generation.clone());
            next_flush = Instant::now() + FLUSH_INTERVAL;
            generation
        };
        // Written outside the lock; readers keep finding the entries in `flushing` meanwhile.
        let mut attempt = 0u32;
        while let Err(e) = write_generation(&db, &generation) {
            // The entries stay readable from the tail and the write is retried: nothing is lost, and
            // a crash meanwhile is covered by re-reading the log after the watermark at open.
            attempt += 1;
            if attempt >= 3 && lock(&shared.tail).stopping {
                // Closing: the records are durable and the next open re-reads them; do not hang.
                tracing::error!(error = %e, "writing the index tail failed while closing; the next open re-reads it from the log");
                return;
            }
            tracing::error!(error = %e, attempt, "writing the index tail failed; retrying");
            std::thread::sleep(Duration::from_millis(100 * u64::from(attempt.min(50))));
        }
        let mut tail = lock(&shared.tail);
        tail.flushing = None;
        tail.indexed_to = tail.indexed_to.max(generation.upto);
        drop(tail);
        shared.room.notify_all();
    }
    tracing::debug!("event log indexer stopped");
}

/// Builds and writes one generation's blocks and watermark.
fn write_generation(db: &DB, g: &Generation) -> Result<()> {
    let (pos_cf, seq_cf) = (cf(db, STREAM_POS)?, cf(db, STREAM_SEQ)?);
    // Written in chunks: RocksDB runs one write at a time, so a large index write would hold up the
    // writer's next commit group for as long as its memtable inserts take. Through the WAL, without
    // sync: the records themselves are synced by the writer, and whatever a crash loses of this is
    // rebuilt from them at the next open, because the watermark goes in the last chunk. A chunk that
    // survives without the watermark is harmless: blocks are rewritten under the same first keys
    // (the next generation starts at the same watermark), and index entries are idempotent.
    let mut chunk = Chunk { db, batch: WriteBatch::default() };
    for (stream, entries) in &g.streams {
        for block in entries.positions.chunks(MAX_BLOCK) {
            chunk.put(pos_cf, &stream_key(stream, &block[0].to_be_bytes()), &pos_block_value(block))?;
        }
        for block in entries.seqs.chunks(MAX_BLOCK) {
            chunk.put(seq_cf, &stream_key(stream, &block[0].0.to_be_bytes()), &seq_block_value(block))?;
        }
    }
    chunk.batch.put_cf(pos_cf, INDEXED_TO, g.upto.to_be_bytes());
    chunk.write()
}

/// Index entries per RocksDB write of the indexer. Small, because the writer's next commit group may
/// wait behind one such write: at 256 concurrent appenders, chunks of 512 / 128 / 32 / 8 entries gave
/// 127k / 144k / 175k / 168k appends per second (`bench --only-append 256`, runs of 200,000 appends);
/// in runs of 2,000,000, 8 entries gave 141-143k/s against 152-157k/s with 32 (two alternating runs).
/// Those runs still wrote an idempotency entry per message; since only blocks are written, the chunk
/// size (32 or 256) and the interval (50 or 200 ms) measure the same (docs/BENCHMARKS.md).
const CHUNK_ENTRIES: usize = 32;

/// The indexer's write batch under construction, written whenever it holds [`CHUNK_ENTRIES`].
struct Chunk<'a> {
    db: &'a DB,
    batch: WriteBatch,
}

impl Chunk<'_> {
    fn put(&mut self, cf: &rocksdb::ColumnFamily, key: &[u8], value: &[u8]) -> Result<()> {
        self.batch.put_cf(cf, key, value);
        if self.batch.len() >= CHUNK_ENTRIES {
            self.write()?;
        }
        Ok(())
    }

    fn write(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        self.db.write_opt(batch, &WriteOptions::default()).map_err(backend)
    }
}

/// The value of the `stream_pos` block holding `positions` (its key ends in the first one): the rest.
fn pos_block_value(positions: &[u64]) -> Vec<u8> {
    positions[1..].iter().flat_map(|p| p.to_be_bytes()).collect()
}

/// The value of the `stream_seq` block holding `pairs` of (seq, position) (its key ends in the first
/// seq): the first position, then the other pairs.
fn seq_block_value(pairs: &[(u64, u64)]) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + 16 * (pairs.len() - 1));
    value.extend_from_slice(&pairs[0].1.to_be_bytes());
    for (s, p) in &pairs[1..] {
        value.extend_from_slice(&s.to_be_bytes());
        value.extend_from_slice(&p.to_be_bytes());
    }
    value
}

/// Positions in a `stream_pos` block whose key suffix is `first` (8 bytes) and whose value is `rest`.
pub(super) fn pos_block(first: &[u8], rest: &[u8]) -> Option<Vec<u64>> {
    if !rest.len().is_multiple_of(8) {
        return None;
    }
    let mut out = Vec::with_capacity(1 + rest.len() / 8);
    out.push(be_u64(first)?);
    out.extend(rest.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes"))));
    Some(out)
}

/// (seq, position) pairs in a `stream_seq` block whose key suffix is `first` (the first seq) and whose
/// value is the first position followed by (seq, position) pairs.
pub(super) fn seq_block(first: &[u8], value: &[u8]) -> Option<Vec<(u64, u64)>> {
    let first_seq = be_u64(first)?;
    let (first_pos, rest) = value.split_first_chunk::<8>()?;
    if rest.len() % 16 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(1 + rest.len() / 16);
    out.push((first_seq, u64::from_be_bytes(*first_pos)));
    for pair in rest.chunks_exact(16) {
        let (s, p) = pair.split_at(8);
        out.push((be_u64(s)?, be_u64(p)?));
    }
    Some(out)
}

/// The watermark as stored, if any.
pub(super) fn read_indexed_to(db: &DB) -> Result<Option<u64>> {
    let value = db.get_pinned_cf(cf(db, STREAM_POS)?, INDEXED_TO).map_err(backend)?;
    Ok(value.and_then(|v| be_u64(&v)))
}

/// Writes the watermark through a synced WAL write (used once at open, before any record is added
/// without its index entries).
pub(super) fn write_indexed_to(db: &DB, position: Position) -> Result<()> {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    let mut batch = WriteBatch::default();
    batch.put_cf(cf(db, STREAM_POS)?, INDEXED_TO, position.0.to_be_bytes());
    db.write_opt(batch, &wo).map_err(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_decode_to_what_was_encoded() {
        for positions in [vec![7u64], vec![7, 9, 1 << 40]] {
            assert_eq!(pos_block(&positions[0].to_be_bytes(), &pos_block_value(&positions)), Some(positions.clone()));
        }
        for pairs in [vec![(3u64, 70u64)], vec![(3, 70), (4, 92), (5, 1 << 40)]] {
            assert_eq!(seq_block(&pairs[0].0.to_be_bytes(), &seq_block_value(&pairs)), Some(pairs.clone()));
        }
        assert_eq!(pos_block(&1u64.to_be_bytes(), &[0; 7]), None, "a value that is not whole positions");
        assert_eq!(seq_block(&1u64.to_be_bytes(), &[0; 12]), None, "a value that is not whole pairs");
        assert_eq!(seq_block(&1u64.to_be_bytes(), &[0; 3]), None, "no first position");
    }
}
