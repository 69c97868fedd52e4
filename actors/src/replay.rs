//! Whole-log replays: the start-up catch-up that refreshes snapshots from the log tail, and the
//! verification that rebuilds every aggregate from position 1 and compares it with what snapshots
//! plus tails give.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use rookery_events::{
    decode_state, link, Aggregate, ChainHash, ChannelKey, ChannelState, EnvelopeBody, Event, Position, StreamId, SystemState, TenantState, Uid, UserState,
};
use rookery_storage::{EventLog, Snapshot};

use crate::error::CoreError;
use crate::recovery::{self, scan_bodies, storage};

/// Snapshot key under which the catch-up remembers how far it got. Not a stream key: those start
/// with a lower-case tag letter.
const CHECKPOINT_KEY: &[u8] = b"!checkpoint";
/// The catch-up writes snapshots and moves its checkpoint after this many events, which bounds the
/// memory it needs to the streams touched in one chunk.
const CHUNK: u64 = 500_000;

/// Progress of a long replay, reported about once a second.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Events replayed so far.
    pub done: u64,
    /// Events to replay in all.
    pub total: u64,
    /// Time since the replay started.
    pub elapsed: Duration,
}

impl Progress {
    /// Events per second so far.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Percent done.
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            100.0
        } else {
            self.done as f64 * 100.0 / self.total as f64
        }
    }
}

/// All aggregate states touched by a replay.
#[derive(Default)]
struct States {
    channels: HashMap<ChannelKey, (ChannelState, Position)>,
    users: HashMap<Uid, (UserState, Position)>,
    system: Option<(SystemState, Position)>,
    tenants: HashMap<String, (TenantState, Position)>,
}

/// Gets (or, seeded from its snapshot, creates) the state of one aggregate, with the position its
/// snapshot already covers.
fn slot<'a, K: std::hash::Hash + Eq + Clone, A: Aggregate>(
    map: &'a mut HashMap<K, (A, Position)>,
    key: &K,
    stream: impl FnOnce() -> StreamId,
    seed: Option<&dyn EventLog>,
) -> Result<&'a mut (A, Position), CoreError> {
    if !map.contains_key(key) {
        let loaded = match seed {
            Some(log) => load_snapshot::<A>(log, &stream())?,
            None => (A::default(), Position::ZERO),
        };
        map.insert(key.clone(), loaded);
    }
    Ok(map.get_mut(key).expect("inserted above"))
}

fn load_snapshot<A: Aggregate>(log: &dyn EventLog, stream: &StreamId) -> Result<(A, Position), CoreError> {
    match log.get_snapshot(&stream.key()).map_err(storage)? {
        Some(s) => Ok(decode_state(&s.state)
            .map_err(|e| CoreError::Storage(format!("snapshot of {stream}: {e}")))?
            .map_or((A::default(), Position::ZERO), |state| (state, s.position))),
        None => Ok((A::default(), Position::ZERO)),
    }
}

fn fold<A: Aggregate>(entry: &mut (A, Position), position: Position, event: &Event) {
    if position > entry.1 {
        if let Some(e) = A::unwrap(event) {
            entry.0.apply(position, e);
        }
    }
}

impl States {
    fn apply(&mut self, position: Position, body: &EnvelopeBody, seed: Option<&dyn EventLog>) -> Result<(), CoreError> {
        match &body.stream {
            StreamId::Channel(k) | StreamId::ChannelCommands(k) => {
                fold(slot(&mut self.channels, k, || StreamId::Channel(k.clone()), seed)?, position, &body.event)
            }
            StreamId::User(u) => fold(slot(&mut self.users, u, || StreamId::User(u.clone()), seed)?, position, &body.event),
            StreamId::Tenant(t) => fold(slot(&mut self.tenants, t, || StreamId::Tenant(t.clone()), seed)?, position, &body.event),
            // A message's events are folded by its channel's actor when it needs them; no snapshot.
            StreamId::MessageEvents(..) => {}
            StreamId::System => {
                if self.system.is_none() {
                    self.system = Some(match seed {
                        Some(log) => load_snapshot(log, &StreamId::System)?,
                        None => (SystemState::default(), Position::ZERO),
                    });
                }
                fold(self.system.as_mut().expect("set above"), position, &body.event)
            }
        }
        Ok(())
    }

    /// Writes a snapshot at `at` for every aggregate touched (each includes every event up to `at`).
    fn flush(&mut self, log: &dyn EventLog, at: Position) -> Result<usize, CoreError> {
        let mut n = 0;
        for (k, (s, _)) in self.channels.drain() {
            recovery::save(log, &StreamId::Channel(k), &s, at)?;
            n += 1;
        }
        for (u, (s, _)) in self.users.drain() {
            recovery::save(log, &StreamId::User(u), &s, at)?;
            n += 1;
        }
        if let Some((s, _)) = self.system.take() {
            recovery::save(log, &StreamId::System, &s, at)?;
            n += 1;
        }
        for (t, (s, _)) in self.tenants.drain() {
            recovery::save(log, &StreamId::Tenant(t), &s, at)?;
            n += 1;
        }
        Ok(n)
    }
}

/// Replays the log tail since the last checkpoint into the snapshots, so that actors start from
/// fresh snapshots and restart costs O(tail), not O(log). Calls `progress` about once a second.
///
/// # Errors
/// [`CoreError::Storage`] when the log cannot be read or written.
pub fn catch_up(log: &dyn EventLog, progress: &mut dyn FnMut(Progress)) -> Result<Progress, CoreError> {
    let head = log.head().0;
    // A checkpoint an older build wrote (its snapshots may be of an older format, which are ignored)
    // counts as none: the whole log is folded once into snapshots of this build's format.
    let checkpoint =
        log.get_snapshot(CHECKPOINT_KEY).map_err(storage)?.filter(|s| s.state == [rookery_events::STATE_FORMAT]).map(|s| s.position).unwrap_or(Position::ZERO);
    let total = head.0.saturating_sub(checkpoint.0);
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut states = States::default();
    let mut done = 0u64;
    let mut failure = None;
    scan_bodies(log, checkpoint.next(), &mut |position, body| {
        if position > head {
            return ControlFlow::Break(());
        }
        if let Err(e) = states.apply(position, body, Some(log)) {
            failure = Some(e);
            return ControlFlow::Break(());
        }
        done += 1;
        if done.is_multiple_of(CHUNK) {
            if let Err(e) = states.flush(log, position).and_then(|_| set_checkpoint(log, position)) {
                failure = Some(e);
                return ControlFlow::Break(());
            }
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            progress(Progress { done, total, elapsed: started.elapsed() });
        }
        ControlFlow::Continue(())
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    states.flush(log, head)?;
    set_checkpoint(log, head)?;
    Ok(Progress { done, total, elapsed: started.elapsed() })
}

/// Rebuilds every aggregate from position 1 in memory and throws the result away: the cost of a
/// replay without snapshots (decode and fold of every event), for benchmarks and diagnostics.
///
/// # Errors
/// [`CoreError::Storage`] when the log cannot be read.
pub fn rebuild_all(log: &dyn EventLog) -> Result<Progress, CoreError> {
    let total = log.head().0 .0;
    let started = Instant::now();
    let mut states = States::default();
    let mut done = 0u64;
    let mut failure = None;
    scan_bodies(log, Position(1), &mut |position, body| {
        if let Err(e) = states.apply(position, body, None) {
            failure = Some(e);
            return ControlFlow::Break(());
        }
        done += 1;
        ControlFlow::Continue(())
    })?;
    failure.map_or(Ok(Progress { done, total, elapsed: started.elapsed() }), Err)
}

fn set_checkpoint(log: &dyn EventLog, at: Position) -> Result<(), CoreError> {
    log.put_snapshot(CHECKPOINT_KEY, &Snapshot { position: at, state: vec![rookery_events::STATE_FORMAT] }).map_err(storage)
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events replayed.
    pub events: u64,
    /// Aggregates compared.
    pub aggregates: usize,
    /// The chain head (position and hash) that was verified.
    pub head: (Position, ChainHash),
}

/// Rebuilds every aggregate from position 1, checks the hash chain on the way, and compares each
/// aggregate with its snapshot-plus-tail state.
///
/// # Errors
/// `Err(message)` naming the first difference or broken link; [`CoreError`] text on read failures.
pub fn verify(log: &dyn EventLog, progress: &mut dyn FnMut(Progress)) -> Result<VerifyReport, String> {
    let mut states = States::default();
    let (events, head) = walk_chain(log, progress, &mut |position, body| states.apply(position, body, None).map_err(|e| e.to_string()))?;
    let mut aggregates = 0;
    let mut channels: Vec<_> = states.channels.into_iter().collect();
    channels.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, (replayed, _)) in channels {
        let streams = [StreamId::Channel(key.clone()), StreamId::ChannelCommands(key.clone())];
        compare(&format!("channel {key}"), &replayed, log, &streams)?;
        aggregates += 1;
    }
    let mut users: Vec<_> = states.users.into_iter().collect();
    users.sort_by(|a, b| a.0.cmp(&b.0));
    for (uid, (replayed, _)) in users {
        compare(&format!("user {uid}"), &replayed, log, &[StreamId::User(uid.clone())])?;
        aggregates += 1;
    }
    if let Some((replayed, _)) = states.system {
        compare("system", &replayed, log, &[StreamId::System])?;
        aggregates += 1;
    }
    let mut tenants: Vec<_> = states.tenants.into_iter().collect();
    tenants.sort_by(|a, b| a.0.cmp(&b.0));
    for (tag, (replayed, _)) in tenants {
        compare(&format!("tenant {tag}"), &replayed, log, &[StreamId::Tenant(tag.clone())])?;
        aggregates += 1;
    }
    Ok(VerifyReport { events, aggregates, head })
}

/// Walks the hash chain from position 1: every position present once and in order, every record's
/// stored previous hash equal to the chain so far, every digest equal to its contents. Returns the
/// number of records and the verified head.
///
/// # Errors
/// `Err(message)` naming the first position where the chain breaks.
pub fn verify_chain(log: &dyn EventLog, progress: &mut dyn FnMut(Progress)) -> Result<(u64, (Position, ChainHash)), String> {
    walk_chain(log, progress, &mut |_, _| Ok(()))
}

fn walk_chain(
    log: &dyn EventLog,
    progress: &mut dyn FnMut(Progress),
    visit: &mut dyn FnMut(Position, &EnvelopeBody) -> Result<(), String>,
) -> Result<(u64, (Position, ChainHash)), String> {
    let (head, _) = log.head();
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut prev = ChainHash::GENESIS;
    let mut expected = Position(1);
    let mut problem: Option<String> = None;
    // With two cores a reader thread walks the log meanwhile (`recovery::scan_stored`).
    recovery::scan_stored(log, Position(1), &mut |r| {
        let checked = if r.position != expected {
            Err(format!("position {} follows {}: the log has a gap", r.position, expected.0 - 1))
        } else if r.prev_hash != prev {
            Err(format!("chain broken at position {}: stored previous hash {} but the chain gives {}", r.position, r.prev_hash.to_hex(), prev.to_hex()))
        } else {
            match EnvelopeBody::decode(r.body) {
                Err(e) => Err(format!("record at position {} does not decode: {e}", r.position)),
                Ok(body) if body.digest() != r.digest => Err(format!("record at position {} was altered: its digest does not match its contents", r.position)),
                Ok(body) => visit(r.position, &body),
            }
        };
        if let Err(p) = checked {
            problem = Some(p);
            return ControlFlow::Break(());
        }
        prev = link(&prev, r.position, &r.digest);
        expected = expected.next();
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            progress(Progress { done: expected.0 - 1, total: head.0, elapsed: started.elapsed() });
        }
        ControlFlow::Continue(())
    })
    .map_err(|e| e.to_string())?;
    if let Some(p) = problem {
        return Err(p);
    }
    if expected.0 - 1 != head.0 {
        return Err(format!("the log head says position {} but the scan ended at {}", head.0, expected.0 - 1));
    }
    Ok((head.0, (head, prev)))
}

fn compare<A: Aggregate>(what: &str, replayed: &A, log: &dyn EventLog, streams: &[StreamId]) -> Result<(), String> {
    let (from_snapshot, _, _) = recovery::recover::<A>(log, streams).map_err(|e| format!("{what}: {e}"))?;
    if &from_snapshot == replayed {
        return Ok(());
    }
    Err(format!("{what} differs: {}", first_difference(&format!("{replayed:#?}"), &format!("{from_snapshot:#?}"))))
}

/// The first differing line of two pretty-printed states.
fn first_difference(replayed: &str, snapshot: &str) -> String {
    for (a, b) in replayed.lines().zip(snapshot.lines()) {
        if a != b {
            return format!("full replay has `{}`, snapshot + tail has `{}`", a.trim(), b.trim());
        }
    }
    "one state has more entries than the other".into()
}
