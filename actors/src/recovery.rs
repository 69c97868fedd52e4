//! Building an aggregate from its snapshot and the tail of its streams: the only way actors get state.

use std::ops::ControlFlow;

use rookery_events::{decode_state, encode_state, Aggregate, EnvelopeBody, Position, StreamId};
use rookery_storage::{EventLog, Snapshot};

use crate::error::CoreError;

/// How many records a tail read fetches at once.
const TAIL_BATCH: usize = 1024;

/// Loads `A` from the snapshot stored under `streams[0]` and every later event of all `streams`,
/// applied in log order. Returns the state and the position up to which it includes every event.
///
/// # Errors
/// [`CoreError::Storage`] when the log cannot be read or holds undecodable bytes.
pub(crate) fn recover<A: Aggregate>(log: &dyn EventLog, streams: &[StreamId]) -> Result<(A, Position), CoreError> {
    let horizon = log.head().0;
    let snapshot = log.get_snapshot(&streams[0].key()).map_err(storage)?;
    let (state, base, _) = fold_streams::<A>(log, streams, snapshot, horizon)?;
    Ok((state, horizon.max(base)))
}

/// `A` from `snapshot` (taken under `streams[0]`; the default state without one) plus every event of
/// `streams` after it up to `until`, applied in log order. Returns the state, the snapshot's position
/// and how many events were applied.
pub(crate) fn fold_streams<A: Aggregate>(log: &dyn EventLog, streams: &[StreamId], snapshot: Option<Snapshot>, until: Position) -> Result<(A, Position, u64), CoreError> {
    let (mut state, base) = match snapshot {
        Some(s) => (decode_state::<A>(&s.state).map_err(|e| CoreError::Storage(format!("snapshot of {}: {e}", streams[0])))?, s.position),
        None => (A::default(), Position::ZERO),
    };
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
pub(crate) fn read_tail(log: &dyn EventLog, stream: &StreamId, after: Position, until: Position, out: &mut Vec<(Position, EnvelopeBody)>) -> Result<(), CoreError> {
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
/// With more than one core, a reader thread walks the log and copies the stored bodies into batches
/// while the calling thread decodes them and runs `f`, so RocksDB's part of a replay (block reads,
/// decompression, iteration) overlaps the rest. `f` still sees every record in order, and a record
/// that does not decode (or a failed read) ends the visit with an error after `f` has seen everything
/// before it, exactly as when one thread does both. Each body is decoded, visited and dropped on the
/// same thread: handing decoded bodies from one thread to the other made the allocator's frees the
/// bottleneck (measured: one thread alone was faster).
///
/// # Errors
/// [`CoreError::Storage`] when the log cannot be read or a record does not decode.
pub fn scan_bodies(log: &dyn EventLog, from: Position, f: &mut dyn FnMut(Position, &EnvelopeBody) -> ControlFlow<()>) -> Result<(), CoreError> {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return scan_bodies_inline(log, from, f);
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
                    batch.push(r.position, &r.body);
                    if batch.is_full() && full_tx.send(std::mem::replace(&mut batch, next_batch())).is_err() {
                        // The visitor stopped.
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                });
                // What was read before the end (or before a failure) is still visited.
                if !batch.ends.is_empty() {
                    let _ = full_tx.send(batch);
                }
                read.map_err(storage)
            })
            .map_err(|e| CoreError::Storage(format!("cannot start the replay reader: {e}")))?;
        let mut visited = Ok(ControlFlow::Continue(()));
        for batch in full_rx.iter() {
            visited = batch.visit(f);
            // Buffers go back for reuse; once the reader is done they are simply dropped.
            let _ = spent_tx.send(batch);
            if !matches!(visited, Ok(ControlFlow::Continue(()))) {
                break;
            }
        }
        // Unblocks a reader waiting to hand over a batch nobody will visit.
        drop(full_rx);
        let read = reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match visited {
            Ok(ControlFlow::Continue(())) => read,
            Ok(ControlFlow::Break(())) => Ok(()),
            Err(e) => Err(e),
        }
    })
}

/// Stored bodies a replay's reader hands over at once: one buffer of concatenated bodies and where
/// each ends.
#[derive(Default)]
struct Stored {
    bytes: Vec<u8>,
    ends: Vec<(Position, usize)>,
}

impl Stored {
    /// Records per batch: large enough that the hand-over costs little per record, small enough that
    /// the visitor starts at once.
    const RECORDS: usize = 1024;
    /// Bytes per batch, so a few huge records do not pile up.
    const BYTES: usize = 1 << 20;

    fn cleared(mut self) -> Stored {
        self.bytes.clear();
        self.ends.clear();
        self
    }

    fn push(&mut self, position: Position, body: &[u8]) {
        self.bytes.extend_from_slice(body);
        self.ends.push((position, self.bytes.len()));
    }

    fn is_full(&self) -> bool {
        self.ends.len() >= Self::RECORDS || self.bytes.len() >= Self::BYTES
    }

    /// Decodes each body in turn and hands it to `f`, until `f` breaks or a body does not decode.
    fn visit(&self, f: &mut dyn FnMut(Position, &EnvelopeBody) -> ControlFlow<()>) -> Result<ControlFlow<()>, CoreError> {
        let mut start = 0;
        for &(position, end) in &self.ends {
            let body = EnvelopeBody::decode(&self.bytes[start..end]).map_err(|e| CoreError::Storage(format!("record {position}: {e}")))?;
            if f(position, &body).is_break() {
                return Ok(ControlFlow::Break(()));
            }
            start = end;
        }
        Ok(ControlFlow::Continue(()))
    }
}

/// [`scan_bodies`] on the calling thread alone.
fn scan_bodies_inline(log: &dyn EventLog, from: Position, f: &mut dyn FnMut(Position, &EnvelopeBody) -> ControlFlow<()>) -> Result<(), CoreError> {
    let mut failure = None;
    log.scan(from, &mut |r| match EnvelopeBody::decode(&r.body) {
        Ok(body) => f(r.position, &body),
        Err(e) => {
            failure = Some(CoreError::Storage(format!("record {}: {e}", r.position)));
            ControlFlow::Break(())
        }
    })
    .map_err(storage)?;
    failure.map_or(Ok(()), Err)
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
    fn visits(log: &dyn EventLog, from: Position, scan: fn(&dyn EventLog, Position, &mut dyn FnMut(Position, &EnvelopeBody) -> ControlFlow<()>) -> Result<(), CoreError>) -> Vec<(u64, String)> {
        let mut seen = Vec::new();
        scan(log, from, &mut |p, body| {
            let rookery_events::Event::Channel(rookery_events::ChannelEvent::MessageAppended(m)) = &body.event else { panic!("a message") };
            seen.push((p.0, format!("{:?}", m.client_msg_no)));
            ControlFlow::Continue(())
        })
        .unwrap();
        seen
    }

    #[test]
    fn every_record_is_visited_once_in_order_across_batches() {
        // Two full batches and a partial one; and a batch exactly full at the end.
        for n in [2 * Stored::RECORDS as u64 + 5, Stored::RECORDS as u64] {
            let log = log_of(sample::messages_over_channels(n, 10));
            let seen = visits(&log, Position(1), scan_bodies);
            assert_eq!(seen.len() as u64, n);
            assert!(seen.iter().enumerate().all(|(i, (p, _))| *p == i as u64 + 1));
            assert_eq!(seen, visits(&log, Position(1), scan_bodies_inline));
            assert_eq!(visits(&log, Position(1000), scan_bodies), visits(&log, Position(1000), scan_bodies_inline));
        }
    }

    #[test]
    fn large_records_are_batched_by_bytes() {
        let log = log_of(sample::messages_over_channels(12, 300_000));
        let seen = visits(&log, Position(1), scan_bodies);
        assert_eq!(seen.iter().map(|(p, _)| *p).collect::<Vec<_>>(), (1..=12).collect::<Vec<_>>());
    }

    #[test]
    fn a_break_stops_the_visit_without_error() {
        let log = log_of(sample::messages_over_channels(3 * Stored::RECORDS as u64, 10));
        let mut visited = 0;
        scan_bodies(&log, Position(1), &mut |_, _| {
            visited += 1;
            if visited == 1500 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
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
        for scan in [scan_bodies, scan_bodies_inline] {
            let mut visited = 0;
            let err = scan(&log, Position(1), &mut |_, _| {
                visited += 1;
                ControlFlow::Continue(())
            })
            .unwrap_err();
            assert_eq!(visited, 1500);
            assert!(err.to_string().contains("record 1501"), "{err}");
        }
    }
}
