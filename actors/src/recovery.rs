//! Building an aggregate from its snapshot and the tail of its streams: the only way actors get state.

use std::ops::ControlFlow;

use rookery_events::{decode_state, encode_state, Aggregate, ChainHash, EnvelopeBody, Position, StreamId};
use rookery_storage::{EventLog, Snapshot};

use crate::error::CoreError;

/// How many records a tail read fetches at once.
const TAIL_BATCH: usize = 1024;

/// Loads `A` from the snapshot stored under `streams[0]` and every later event of all `streams`,
/// applied in log order. Returns the state, the position up to which it includes every event, and
/// how many events it applied after the snapshot.
///
/// # Errors
/// [`CoreError::Storage`] when the log cannot be read or holds undecodable bytes.
pub(crate) fn recover<A: Aggregate>(log: &dyn EventLog, streams: &[StreamId]) -> Result<(A, Position, u64), CoreError> {
    let horizon = log.head().0;
    let snapshot = log.get_snapshot(&streams[0].key()).map_err(storage)?;
    let (state, base, applied) = fold_streams::<A>(log, streams, snapshot, horizon)?;
    Ok((state, horizon.max(base), applied))
}

/// `A` from `snapshot` (taken under `streams[0]`; the default state without one) plus every event of
/// `streams` after it up to `until`, applied in log order. Returns the state, the snapshot's position
/// and how many events were applied.
pub(crate) fn fold_streams<A: Aggregate>(
    log: &dyn EventLog,
    streams: &[StreamId],
    snapshot: Option<Snapshot>,
    until: Position,
) -> Result<(A, Position, u64), CoreError> {
    let decoded = match snapshot {
        Some(s) => decode_state::<A>(&s.state).map_err(|e| CoreError::Storage(format!("snapshot of {}: {e}", streams[0])))?.map(|state| (state, s.position)),
        None => None,
    };
    // No snapshot, or one an older build wrote: the whole streams.
    let (mut state, base) = decoded.unwrap_or((A::default(), Position::ZERO));
    let mut tail = Vec::new();
    for stream in streams {
        read_tail(log, stream, base, until, &mut tail)?;
    }
    tail.sort_by_key(|(p, _)| *p);
    let mut applied = 0;
    for (position, body) in tail {
        if let Some(e) = A::unwrap(&body.event) {
            state.apply(position, e);
            applied += 1;
        }
    }
    Ok((state, base, applied))
}

/// Appends to `out` the events of `stream` in `(after, until]`.
pub(crate) fn read_tail(
    log: &dyn EventLog,
    stream: &StreamId,
    after: Position,
    until: Position,
    out: &mut Vec<(Position, EnvelopeBody)>,
) -> Result<(), CoreError> {
    let key = stream.key();
    let mut from = after;
    loop {
        let batch = log.read_stream(&key, from, TAIL_BATCH).map_err(storage)?;
        let n = batch.len();
        for r in batch {
            from = r.position;
            if r.position > until {
                return Ok(());
            }
            let body = EnvelopeBody::decode(&r.body).map_err(|e| CoreError::Storage(format!("record {}: {e}", r.position)))?;
            out.push((r.position, body));
        }
        if n < TAIL_BATCH {
            return Ok(());
        }
    }
}

/// Stores `state` as the snapshot of `stream` at `position`.
pub(crate) fn save<A: Aggregate>(log: &dyn EventLog, stream: &StreamId, state: &A, position: Position) -> Result<(), CoreError> {
    log.put_snapshot(&stream.key(), &Snapshot { position, state: encode_state(state) }).map_err(storage)
}

pub(crate) fn storage(e: rookery_storage::StorageError) -> CoreError {
    CoreError::Storage(e.to_string())
}

/// Visits every record from `from` on, decoded, in log order, until `f` breaks. Used by full replays.
///
/// The records come from [`scan_stored`], so with two cores a reader thread walks the log meanwhile.
/// Each body is decoded, visited and dropped on the calling thread: handing decoded bodies from one
/// thread to the other made the allocator's frees the bottleneck (measured: slower than one thread).
/// A record that does not decode ends the visit with an error after `f` has seen everything before it.
///
/// # Errors
/// [`CoreError::Storage`] when the log cannot be read or a record does not decode.
pub fn scan_bodies(log: &dyn EventLog, from: Position, f: &mut dyn FnMut(Position, &EnvelopeBody) -> ControlFlow<()>) -> Result<(), CoreError> {
    bodies_of(log, from, f, reader_thread())
}

fn bodies_of(log: &dyn EventLog, from: Position, f: &mut dyn FnMut(Position, &EnvelopeBody) -> ControlFlow<()>, threaded: bool) -> Result<(), CoreError> {
    let mut failure = None;
    scan_stored_with(
        log,
        from,
        &mut |r| match EnvelopeBody::decode(r.body) {
            Ok(body) => f(r.position, &body),
            Err(e) => {
                failure = Some(CoreError::Storage(format!("record {}: {e}", r.position)));
                ControlFlow::Break(())
            }
        },
        threaded,
    )?;
    failure.map_or(Ok(()), Err)
}

/// One stored record as a whole-log walk lends it: its place in the chain and its undecoded body.
pub(crate) struct StoredRef<'a> {
    pub(crate) position: Position,
    pub(crate) prev_hash: ChainHash,
    pub(crate) digest: ChainHash,
    pub(crate) body: &'a [u8],
}

/// Visits every stored record from `from` on, in log order, until `f` breaks: the walk under replays
/// and chain verification.
///
/// With more than one core, a reader thread walks the log and copies the records into batches (at most
/// four ahead) while the calling thread runs `f`, so RocksDB's part of the walk (block reads,
/// decompression, iteration) overlaps the visitor's. `f` sees every record in order either way, and a
/// failed read ends the walk with an error after `f` has seen everything read before it.
///
/// # Errors
/// [`CoreError::Storage`] when the log cannot be read.
pub(crate) fn scan_stored(log: &dyn EventLog, from: Position, f: &mut dyn FnMut(StoredRef<'_>) -> ControlFlow<()>) -> Result<(), CoreError> {
    scan_stored_with(log, from, f, reader_thread())
}

/// Whether a whole-log walk gets its own reader thread: only when there is a core for it.
fn reader_thread() -> bool {
    std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2
}

fn scan_stored_with(log: &dyn EventLog, from: Position, f: &mut dyn FnMut(StoredRef<'_>) -> ControlFlow<()>, threaded: bool) -> Result<(), CoreError> {
    if !threaded {
        return log.scan(from, &mut |r| f(StoredRef { position: r.position, prev_hash: r.prev_hash, digest: r.digest, body: &r.body })).map_err(storage);
    }
    // Bounded: the reader runs at most a few batches ahead, so memory stays small whatever the log.
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Stored>(4);
    let (spent_tx, spent_rx) = std::sync::mpsc::channel::<Stored>();
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("rookery-replay-read".into())
            .spawn_scoped(scope, move || {
                let next_batch = || spent_rx.try_recv().map(Stored::cleared).unwrap_or_default();
                let mut batch = next_batch();
                let read = log.scan(from, &mut |r| {
                    batch.push(&r);
                    if batch.is_full() && full_tx.send(std::mem::replace(&mut batch, next_batch())).is_err() {
                        // The visitor stopped.
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                });
                // What was read before the end (or before a failure) is still visited.
                if !batch.records.is_empty() {
                    let _ = full_tx.send(batch);
                }
                read.map_err(storage)
            })
            .map_err(|e| CoreError::Storage(format!("cannot start the replay reader: {e}")))?;
        let mut stopped = false;
        for batch in full_rx.iter() {
            stopped = batch.visit(f).is_break();
            // Buffers go back for reuse; once the reader is done they are simply dropped.
            let _ = spent_tx.send(batch);
            if stopped {
                break;
            }
        }
        // Unblocks a reader waiting to hand over a batch nobody will visit.
        drop(full_rx);
        let read = reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        if stopped {
            Ok(())
        } else {
            read
        }
    })
}

/// Stored records a whole-log walk's reader hands over at once: one buffer of concatenated bodies and,
/// per record, its position, chain link, digest and where its body ends.
#[derive(Default)]
struct Stored {
    bytes: Vec<u8>,
    records: Vec<(Position, ChainHash, ChainHash, usize)>,
}

impl Stored {
    /// Records per batch: large enough that the hand-over costs little per record, small enough that
    /// the visitor starts at once.
    const RECORDS: usize = 1024;
    /// Bytes per batch, so a few huge records do not pile up.
    const BYTES: usize = 1 << 20;

    fn cleared(mut self) -> Stored {
        self.bytes.clear();
        self.records.clear();
        self
    }

    fn push(&mut self, r: &rookery_storage::StoredRecord) {
        self.bytes.extend_from_slice(&r.body);
        self.records.push((r.position, r.prev_hash, r.digest, self.bytes.len()));
    }

    fn is_full(&self) -> bool {
        self.records.len() >= Self::RECORDS || self.bytes.len() >= Self::BYTES
    }

    /// Hands each record to `f` in turn, until `f` breaks.
    fn visit(&self, f: &mut dyn FnMut(StoredRef<'_>) -> ControlFlow<()>) -> ControlFlow<()> {
        let mut start = 0;
        for &(position, prev_hash, digest, end) in &self.records {
            f(StoredRef { position, prev_hash, digest, body: &self.bytes[start..end] })?;
            start = end;
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;
    use rookery_storage::{MemLog, NewRecord};

    fn log_of(records: impl IntoIterator<Item = NewRecord>) -> MemLog {
        let log = MemLog::new();
        sample::fill(&log, records).unwrap();
        log
    }

    /// Every visit of `log` from `from`: (position, client_msg_no of the message).
    fn visits(log: &dyn EventLog, from: Position, threaded: bool) -> Vec<(u64, String)> {
        let mut seen = Vec::new();
        bodies_of(
            log,
            from,
            &mut |p, body| {
                let rookery_events::Event::Channel(rookery_events::ChannelEvent::MessageAppended(m)) = &body.event else { panic!("a message") };
                seen.push((p.0, format!("{:?}", m.client_msg_no)));
                ControlFlow::Continue(())
            },
            threaded,
        )
        .unwrap();
        seen
    }

    #[test]
    fn every_record_is_visited_once_in_order_across_batches() {
        // Two full batches and a partial one; and a batch exactly full at the end.
        for n in [2 * Stored::RECORDS as u64 + 5, Stored::RECORDS as u64] {
            let log = log_of(sample::messages_over_channels(n, 10));
            let seen = visits(&log, Position(1), true);
            assert_eq!(seen.len() as u64, n);
            assert!(seen.iter().enumerate().all(|(i, (p, _))| *p == i as u64 + 1));
            assert_eq!(seen, visits(&log, Position(1), false));
            assert_eq!(visits(&log, Position(1000), true), visits(&log, Position(1000), false));
        }
    }

    #[test]
    fn large_records_are_batched_by_bytes() {
        let log = log_of(sample::messages_over_channels(12, 300_000));
        let seen = visits(&log, Position(1), true);
        assert_eq!(seen.iter().map(|(p, _)| *p).collect::<Vec<_>>(), (1..=12).collect::<Vec<_>>());
    }

    #[test]
    fn a_break_stops_the_visit_without_error() {
        let log = log_of(sample::messages_over_channels(3 * Stored::RECORDS as u64, 10));
        let mut visited = 0;
        scan_bodies(&log, Position(1), &mut |_, _| {
            visited += 1;
            if visited == 1500 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!(visited, 1500);
    }

    #[test]
    fn an_undecodable_record_fails_the_visit_after_everything_before_it() {
        let mut records: Vec<NewRecord> = sample::messages_over_channels(1500, 10).collect();
        let good = records[0].clone();
        records.push(NewRecord { body: vec![0xff; 7], ..good });
        records.extend(sample::messages_over_channels(10, 10));
        let log = log_of(records);
        for threaded in [true, false] {
            let mut visited = 0;
            let err = bodies_of(
                &log,
                Position(1),
                &mut |_, _| {
                    visited += 1;
                    ControlFlow::Continue(())
                },
                threaded,
            )
            .unwrap_err();
            assert_eq!(visited, 1500);
            assert!(err.to_string().contains("record 1501"), "{err}");
        }
    }
}
