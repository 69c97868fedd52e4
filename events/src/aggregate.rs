//! What every aggregate (channel, user, system) offers: a pure `decide` and an infallible `apply`.

use bincode::{Decode, Encode};

use crate::chain::Position;
use crate::envelope::{decode_exact, encode_plain, DecodeError, Event};
use crate::ids::Timestamp;

/// Why a command was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The command itself is malformed (empty id, empty list, wrong channel type...).
    #[error("{0}")]
    Invalid(String),
    /// The channel does not exist.
    #[error("channel not found")]
    ChannelNotFound,
    /// The channel was disbanded or deleted.
    #[error("channel is disbanded")]
    Disbanded,
    /// The channel is banned: only system accounts may send.
    #[error("channel is banned")]
    Banned,
    /// The sender may not send (own send_ban, or the channel's send_ban).
    #[error("sender is banned from sending")]
    SendBanned,
    /// The sender is on the denylist.
    #[error("sender is on the blacklist")]
    InBlacklist,
    /// The sender is not a subscriber.
    #[error("sender is not a subscriber")]
    NotSubscriber,
    /// The allowlist is not empty and the sender is not on it.
    #[error("sender is not on the whitelist")]
    NotInWhitelist,
    /// What the command names does not exist (the text says what).
    #[error("{0} not found")]
    NotFound(String),
    /// What the command would create exists already (the text says what).
    #[error("{0} exists already")]
    Exists(String),
    /// The sender is a muted member of the group (or the whole group is muted).
    #[error("sender is muted in this group")]
    Muted,
    /// The group has no room for more members.
    #[error("the group is full")]
    GroupFull,
    /// The acting party may not do this (the text says why).
    #[error("{0}")]
    NotAllowed(String),
    /// It is too late for this (the text says what).
    #[error("{0}")]
    Expired(String),
}

/// An event-sourced aggregate. State is `Default` before its first event.
pub trait Aggregate: Default + Clone + PartialEq + std::fmt::Debug + Encode + Decode<()> {
    /// Identity of one instance (a channel key, a uid, or `()`).
    type Key;
    /// Instructions it decides on.
    type Command;
    /// Facts it records.
    type Event: Clone + std::fmt::Debug;

    /// Holds every rule: the events that `cmd` produces, or why it is refused. Pure: the time comes in
    /// as `now`, ids inside the command. An empty list means "accepted, nothing changes".
    ///
    /// # Errors
    /// A [`Rejection`] naming the broken rule.
    fn decide(&self, key: &Self::Key, cmd: &Self::Command, now: Timestamp) -> Result<Vec<Self::Event>, Rejection>;

    /// Changes state; cannot fail, so replay never depends on today's rules.
    fn apply(&mut self, position: Position, event: &Self::Event);

    /// Makes this state, which has applied the same events as `committed` but some of them (the
    /// `settled` ones, given with their real positions) at a placeholder position
    /// ([`Position::ZERO`]: positions are known only once the log has them), equal to `committed`.
    /// The default copies it; an aggregate whose positions sit in fields that are cheap to set
    /// overrides this, so that catching up costs no copy of the state.
    ///
    /// `settled` is only kept for aggregates that set [`Aggregate::REALIGN_USES_EVENTS`], and may
    /// then be cut short: `realign` is not called after a stretch of more than [`SETTLED_MAX`]
    /// events (the state is copied instead), so a busy actor holds no growing list.
    fn realign(&mut self, committed: &Self, settled: &[(Position, Self::Event)]) {
        let _ = settled;
        self.clone_from(committed);
    }

    /// Whether [`Aggregate::realign`] reads its `settled` events (else they are not kept).
    const REALIGN_USES_EVENTS: bool = false;

    /// Wraps an event of this aggregate into the log's event type.
    fn wrap(event: Self::Event) -> Event;

    /// The aggregate's event inside a log event, if it is one.
    fn unwrap(event: &Event) -> Option<&Self::Event>;
}

/// Most settled events kept for one [`Aggregate::realign`].
pub const SETTLED_MAX: usize = 1024;

/// Byte that starts an encoded snapshot state: bincode standard of the states as this build defines
/// them. Raised whenever a state's fields change (2: channels have a group profile, tenants their
/// groups; 3: channels list their retracted messages; 4: tenants their friendships; 5: tenants their sensitive words
/// and switches; 6: tenants their users' no-disturb settings and shields;
/// 7: chatrooms their members' join times, tenants their rooms; 8: tenants their uploads; 9: users their OpenIM platform tokens; 10: tenants their friend requests and replies, channels their managers' changes and deleted messages, users their hidden messages and conversation settings). A snapshot of an older format is not decoded but ignored ([`decode_state`] answers
/// `None`): the state is rebuilt from the log, which always holds every event.
pub const STATE_FORMAT: u8 = 12;

/// Encodes an aggregate state for a snapshot.
pub fn encode_state<A: Aggregate>(state: &A) -> Vec<u8> {
    let mut out = vec![STATE_FORMAT];
    out.extend(encode_plain(state));
    out
}

/// Decodes a snapshot state; `None` for a snapshot an older build wrote (rebuild it from the log).
///
/// # Errors
/// [`DecodeError`] for formats newer than this build's and malformed bytes.
pub fn decode_state<A: Aggregate>(bytes: &[u8]) -> Result<Option<A>, DecodeError> {
    let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    match version {
        STATE_FORMAT => decode_exact(rest).map(Some),
        older if older < STATE_FORMAT => Ok(None),
        newer => Err(DecodeError::UnknownFormat(newer)),
    }
}
