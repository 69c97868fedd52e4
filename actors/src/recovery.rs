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

/// Visits every record from `from` on, decoded. Used by full replays.
pub fn scan_bodies(log: &dyn EventLog, from: Position, f: &mut dyn FnMut(Position, EnvelopeBody) -> ControlFlow<()>) -> Result<(), CoreError> {
    let mut failure = None;
    log.scan(from, &mut |r| match EnvelopeBody::decode(&r.body) {
        Ok(body) => f(r.position, body),
        Err(e) => {
            failure = Some(CoreError::Storage(format!("record {}: {e}", r.position)));
            ControlFlow::Break(())
        }
    })
    .map_err(storage)?;
    failure.map_or(Ok(()), Err)
}
