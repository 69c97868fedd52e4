//! Rookery's domain: the events every mutation is recorded as, the aggregates that decide and apply
//! them, and the byte format of the stored envelope.
//!
//! **Invariant:** this crate does no I/O, reads no clock and makes no random ids: time, ids and the
//! acting party arrive as arguments, so deciding and replaying are deterministic.
//!
//! Each aggregate ([`ChannelState`], [`UserState`], [`SystemState`], [`TenantState`]) has a pure
//! [`Aggregate::decide`] (command → events or a [`Rejection`]) and an infallible [`Aggregate::apply`].
//! Envelopes are stored as a format byte plus bincode ([`EnvelopeBody::encode`]); a persisted variant
//! is never edited, only new ones appended, and `tests/golden.rs` holds a checked-in log every later
//! version must still read.
#![warn(missing_docs)]

mod aggregate;
mod chain;
mod channel;
mod envelope;
mod group;
mod ids;
mod msgevent;
mod system;
mod tenant;
mod user;

#[cfg(test)]
mod tests;

pub use aggregate::{decode_state, encode_state, Aggregate, Rejection, SETTLED_MAX, STATE_FORMAT};
pub use chain::{link, sha256, ChainHash, Position};
pub use channel::{
    ChannelCommand, ChannelEvent, ChannelInfo, ChannelState, ListKind, ListOp, Message, MessageHeader, Payload, PeerPolicy, SendMessage, SenderStanding,
    MAX_CLIENT_COMMAND_RECIPIENTS, STREAM_SETTING,
};
pub use envelope::{Actor, DecodeError, Envelope, EnvelopeBody, Event, Meta, StreamId, FORMAT_V1};
pub use group::{GroupCommand, GroupPatch, GroupProfile, NewGroup, MUTED_UNTIL_LIFTED};
pub use ids::{
    person_channel_id, person_channel_parties, ChannelId, ChannelKey, ChannelType, ClientMsgNo, DeviceFlag, DeviceLevel, MessageId, MessageSeq, RequestId,
    StreamNo, Timestamp, Uid, SYSTEM_UID,
};
pub use msgevent::{
    kinds as event_kinds, EventDecision, KeyStatus, KeySummary, MessageEventRecord, MessageStream, NewMessageEvent, EVENT_KEY_FINISH, EVENT_KEY_MAIN,
    EVENT_KEY_MESSAGE, MAX_EVENT_PAYLOAD_BYTES, MAX_OPEN_STREAMS,
};
pub use system::{SystemCommand, SystemEvent, SystemState};
pub use tenant::{
    mask_words, tenant_group, tenant_group_parts, tenant_room, tenant_room_parts, tenant_uid, tenant_uid_parts, Account, FriendNote, FriendRequest,
    MediaRecord, NewAccount, NoDisturb, NoteChange, PasswordHash, Profile, Registration, Reply, TenantCommand, TenantEvent, TenantState, MAX_SENSITIVE_WORDS,
    MAX_SENSITIVE_WORD_CHARS,
};
pub use user::{platform_device_flag, ChannelMark, ConversationMarks, DeviceToken, PlatformToken, QueuedCommand, UserCommand, UserEvent, UserState, PLATFORMS};
