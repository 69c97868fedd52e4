//! State as of a past point of the log ("time travel"), for audits.
//!
//! A past state is rebuilt from one aggregate's own streams through the log's stream index, never by
//! replaying the whole log: the cost is the number of events of that channel or user up to the
//! point, independent of how long the log is. When the aggregate's stored snapshot is not newer than
//! the point asked for, the rebuild starts from it instead of from the beginning.
//!
//! A time is turned into a log position by binary search over the envelopes' `recorded_at`: the
//! state "at time T" is the state after every event up to the last position recorded at or before
//! T. Positions are assigned in commit order and `recorded_at` is read when an event is decided, so
//! two events decided in the same millisecond by different actors may commit in either order; the
//! answer is exact to the millisecond, not within it.

use rookery_events::{Aggregate, ChannelKey, ChannelMark, ChannelState, EnvelopeBody, Position, StreamId, SystemState, TenantState, Timestamp, Uid, UserState};
use rookery_storage::EventLog;

use crate::error::CoreError;
use crate::recovery::{fold_streams, storage};

/// Where in the past to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// After the event at this log position (clamped to the log's head).
    Position(Position),
    /// After every event recorded at or before this instant.
    Time(Timestamp),
}

/// A state rebuilt as of a past point.
#[derive(Debug, Clone, PartialEq)]
pub struct Past<S> {
    /// The log position the state includes every event up to.
    pub position: Position,
    /// The state.
    pub state: S,
    /// Events applied on top of the starting point (a snapshot or nothing) to get there.
    pub events_replayed: u64,
    /// Whether the rebuild started from a stored snapshot.
    pub from_snapshot: bool,
}

/// One conversation of a user as of a past point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastConversation {
    /// The channel.
    pub channel: ChannelKey,
    /// The channel's last ordinary message_seq then.
    pub last_message_seq: u64,
    /// The user's unread count then.
    pub unread: u64,
}

/// A user as of a past point, with what depends on other streams.
#[derive(Debug, Clone, PartialEq)]
pub struct PastUser {
    /// The user's own state (tokens, conversation marks, queued commands).
    pub user: Past<UserState>,
    /// Whether the uid was a system uid then.
    pub is_system: bool,
    /// Conversations the user was a member of then, with unread counts.
    pub conversations: Vec<PastConversation>,
}

/// The log position that [`At`] stands for, never beyond the head.
///
/// # Errors
/// [`CoreError::Storage`] when the log cannot be read.
pub fn resolve(log: &dyn EventLog, at: At) -> Result<Position, CoreError> {
    let head = log.head().0;
    match at {
        At::Position(p) => Ok(p.min(head)),
        At::Time(t) => position_at_time(log, t, head),
    }
}

/// The last position whose `recorded_at` is at or before `t` (`Position::ZERO` when there is none),
/// by binary search: O(log n) point reads.
fn position_at_time(log: &dyn EventLog, t: Timestamp, head: Position) -> Result<Position, CoreError> {
    // Invariant: recorded_at(lo) <= t (or lo = 0), recorded_at(hi + 1) > t (or hi = head).
    let (mut lo, mut hi) = (0u64, head.0);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if recorded_at(log, Position(mid))? <= t {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(Position(lo))
}

fn recorded_at(log: &dyn EventLog, p: Position) -> Result<Timestamp, CoreError> {
    let record = log.read_range(p, 1).map_err(storage)?.into_iter().next().ok_or_else(|| CoreError::Storage(format!("record {p} is missing")))?;
    if record.position != p {
        return Err(CoreError::Storage(format!("record {p} is missing (found {})", record.position)));
    }
    let body = EnvelopeBody::decode(&record.body).map_err(|e| CoreError::Storage(format!("record {p}: {e}")))?;
    Ok(body.meta.recorded_at)
}

/// Rebuilds `A` from its streams as of `at` (a resolved position).
fn rebuild<A: Aggregate>(log: &dyn EventLog, streams: &[StreamId], at: Position) -> Result<Past<A>, CoreError> {
    let snapshot = log.get_snapshot(&streams[0].key()).map_err(storage)?.filter(|s| s.position <= at);
    let from_snapshot = snapshot.is_some();
    let (state, _, events_replayed) = fold_streams::<A>(log, streams, snapshot, at)?;
    Ok(Past { position: at, state, events_replayed, from_snapshot })
}

/// A channel (settings, subscribers, lists, sequences) as of `at`.
///
/// # Errors
/// [`CoreError::Storage`] when the log cannot be read.
pub fn channel_at(log: &dyn EventLog, key: &ChannelKey, at: At) -> Result<Past<ChannelState>, CoreError> {
    let at = resolve(log, at)?;
    rebuild(log, &[StreamId::Channel(key.clone()), StreamId::ChannelCommands(key.clone())], at)
}

/// A tenant (its accounts and profiles) as of `at`.
///
/// # Errors
/// [`CoreError::Storage`] when the log cannot be read.
pub fn tenant_at(log: &dyn EventLog, tag: &str, at: At) -> Result<Past<TenantState>, CoreError> {
    let at = resolve(log, at)?;
    rebuild(log, &[StreamId::Tenant(tag.to_owned())], at)
}

/// A user as of `at`: tokens, system-uid flag, and the conversations the user was a member of with
/// their unread counts (each needs its channel as of `at`, so the cost grows with the events of
/// those channels).
///
/// # Errors
/// [`CoreError::Storage`] when the log cannot be read.
pub fn user_at(log: &dyn EventLog, uid: &Uid, at: At) -> Result<PastUser, CoreError> {
    let at = resolve(log, at)?;
    let user: Past<UserState> = rebuild(log, &[StreamId::User(uid.clone())], at)?;
    let system: Past<SystemState> = rebuild(log, &[StreamId::System], at)?;
    let mut conversations = Vec::new();
    for (key, marks) in &user.state.conversations {
        if !marks.is_member() || !ChannelState::has_conversations(key.ty) {
            continue;
        }
        let channel: Past<ChannelState> = rebuild(log, &[StreamId::Channel(key.clone()), StreamId::ChannelCommands(key.clone())], at)?;
        let last: ChannelMark = channel.state.mark();
        let own = channel.state.last_sent.get(uid).copied();
        conversations.push(PastConversation { channel: key.clone(), last_message_seq: last.seq.0, unread: marks.unread(last, own) });
    }
    Ok(PastUser { is_system: system.state.is_system(uid), user, conversations })
}
