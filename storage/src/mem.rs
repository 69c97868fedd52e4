//! `MemLog`: the in-memory twin of `RocksLog`, for tests. Same semantics, no durability: one mutex
//! guards everything, and every append completes before `submit` returns.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use rookery_events::{link, ChainHash, Position};

use crate::{check_batch, Commit, Committed, EventLog, NewRecord, Result, Rewrite, Snapshot, StorageError, StoredRecord};

#[derive(Default)]
struct Inner {
    /// The record at position `p` sits at index `p - 1`.
    records: Vec<StoredRecord>,
    head: ChainHash,
    by_stream: BTreeMap<Vec<u8>, Vec<Position>>,
    by_seq: BTreeMap<(Vec<u8>, u64), Position>,
    snapshots: BTreeMap<Vec<u8>, Snapshot>,
}

/// An event log held in memory. Clones share the same log, so a test can "reopen" it by cloning.
#[derive(Clone, Default)]
pub struct MemLog {
    inner: Arc<Mutex<Inner>>,
}

impl MemLog {
    /// An empty log.
    pub fn new() -> MemLog {
        MemLog::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("memlog lock poisoned")
    }
}

impl Inner {
    fn get(&self, p: Position) -> Option<&StoredRecord> {
        p.0.checked_sub(1).and_then(|i| self.records.get(i as usize))
    }
}

impl EventLog for MemLog {
    fn submit(&self, records: Vec<NewRecord>) -> Commit {
        self.submit_with_rewrites(records, Vec::new())
    }

    fn submit_with_rewrites(&self, records: Vec<NewRecord>, rewrites: Vec<Rewrite>) -> Commit {
        if let Err(e) = check_batch(&records) {
            return Commit::ready(Err(e));
        }
        let mut g = self.lock();
        for w in &rewrites {
            match g.get(w.position) {
                Some(r) if r.digest == w.digest => {}
                Some(_) => return Commit::ready(Err(StorageError::Invalid(format!("rewrite of record {} with a different digest", w.position)))),
                None => return Commit::ready(Err(StorageError::Invalid(format!("rewrite of record {} beyond the head", w.position)))),
            }
        }
        for w in rewrites {
            let i = (w.position.0 - 1) as usize;
            g.records[i].body = w.body;
        }
        let first = Position(g.records.len() as u64 + 1);
        for r in records {
            let position = Position(g.records.len() as u64 + 1);
            let prev_hash = g.head;
            g.head = link(&prev_hash, position, &r.digest);
            g.by_stream.entry(r.stream.clone()).or_default().push(position);
            if let Some(seq) = r.seq {
                g.by_seq.insert((r.stream.clone(), seq), position);
            }
            g.records.push(StoredRecord { position, prev_hash, digest: r.digest, body: r.body });
        }
        let last = Position(g.records.len() as u64);
        Commit::ready(Ok(Committed { first, last }))
    }

    fn purge_superseded(&self, _from: Position, _to: Position) -> Result<()> {
        // Nothing superseded is kept in memory.
        Ok(())
    }

    fn head(&self) -> (Position, ChainHash) {
        let g = self.lock();
        (Position(g.records.len() as u64), g.head)
    }

    fn scan(&self, from: Position, f: &mut dyn FnMut(StoredRecord) -> ControlFlow<()>) -> Result<()> {
        let mut next = from.max(Position(1));
        // One lock per record, not one for the whole scan: `f` may append or read the log itself.
        loop {
            let Some(r) = self.lock().get(next).cloned() else { return Ok(()) };
            if f(r).is_break() {
                return Ok(());
            }
            next = next.next();
        }
    }

    fn read_stream(&self, stream: &[u8], after: Position, limit: usize) -> Result<Vec<StoredRecord>> {
        let g = self.lock();
        let Some(positions) = g.by_stream.get(stream) else { return Ok(Vec::new()) };
        let start = positions.partition_point(|p| *p <= after);
        Ok(positions[start..].iter().take(limit).filter_map(|p| g.get(*p).cloned()).collect())
    }

    fn read_stream_back(&self, stream: &[u8], before: Position, limit: usize) -> Result<Vec<StoredRecord>> {
        let g = self.lock();
        let Some(positions) = g.by_stream.get(stream) else { return Ok(Vec::new()) };
        let end = positions.partition_point(|p| *p < before);
        Ok(positions[..end].iter().rev().take(limit).filter_map(|p| g.get(*p).cloned()).collect())
    }

    fn read_seq_range(&self, stream: &[u8], from: u64, to: u64, limit: usize, newest_first: bool) -> Result<Vec<(u64, StoredRecord)>> {
        if from > to {
            return Ok(Vec::new());
        }
        let g = self.lock();
        let range = g.by_seq.range((stream.to_vec(), from)..=(stream.to_vec(), to));
        let pick = |((_, seq), p): (&(Vec<u8>, u64), &Position)| g.get(*p).cloned().map(|r| (*seq, r));
        Ok(if newest_first { range.rev().take(limit).filter_map(pick).collect() } else { range.take(limit).filter_map(pick).collect() })
    }

    fn put_snapshot(&self, stream: &[u8], snapshot: &Snapshot) -> Result<()> {
        let mut g = self.lock();
        if let Some(existing) = g.snapshots.get(stream) {
            if existing.position > snapshot.position {
                return Ok(());
            }
        }
        g.snapshots.insert(stream.to_vec(), snapshot.clone());
        Ok(())
    }

    fn get_snapshot(&self, stream: &[u8]) -> Result<Option<Snapshot>> {
        Ok(self.lock().snapshots.get(stream).cloned())
    }

    fn scan_snapshots(&self, f: &mut dyn FnMut(&[u8], Snapshot) -> ControlFlow<()>) -> Result<()> {
        let all: Vec<(Vec<u8>, Snapshot)> = self.lock().snapshots.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (k, s) in all {
            if f(&k, s).is_break() {
                break;
            }
        }
        Ok(())
    }
}
