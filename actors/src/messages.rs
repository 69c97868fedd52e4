//! Messages the actors accept and what they answer.

use std::sync::Arc;

use actix::Message;
use rookery_events::{
    Actor, ChannelCommand, ChannelState, MessageId, MessageSeq, Position, RequestId, SystemCommand, SystemState, Uid, UserCommand, UserEvent, UserState,
};

use crate::error::CoreError;

/// Who asks for a mutation, and through which request; the actor adds the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The acting party.
    pub actor: Actor,
    /// The request id (kept from the caller or made at the edge).
    pub request_id: RequestId,
    /// Peer address, when known.
    pub source: Option<String>,
    /// Peer user agent, when known.
    pub user_agent: Option<String>,
}

impl Origin {
    /// The audit part of the envelopes this origin's command records, decided at `now`.
    pub fn into_meta(self, now: rookery_events::Timestamp) -> rookery_events::Meta {
        rookery_events::Meta { recorded_at: now, actor: self.actor, request_id: self.request_id, source: self.source, user_agent: self.user_agent }
    }

    /// An origin for work the server does on its own.
    pub fn system(request_id: RequestId) -> Origin {
        Origin { actor: Actor::System, request_id, source: None, user_agent: None }
    }
}

/// What a channel answers to a command once it is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelReply {
    /// Accepted; `position` is the log position of the last event written (`None`: nothing changed).
    Done {
        /// Last written position.
        position: Option<Position>,
    },
    /// A message was accepted.
    Sent(SentMessage),
}

/// The outcome of a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The message's id.
    pub message_id: MessageId,
    /// Its seq (0 for `no_persist` messages).
    pub message_seq: MessageSeq,
    /// `true` when this was a retry answered from the original committed message.
    pub duplicate: bool,
    /// Who receives it: the channel's subscribers when it was decided (both parties of a person
    /// channel), shared with the channel actor, which rebuilds the list only after membership changes.
    /// Empty for a retry (it was delivered with the original).
    pub recipients: Arc<[Uid]>,
    /// The new message's log position and time; `None` for a retry (its original is in the log) and
    /// for a `no_persist` message (not stored).
    pub stored_at: Option<(Position, rookery_events::Timestamp)>,
}

/// Execute a command on a channel.
#[derive(Message)]
#[rtype(result = "Result<ChannelReply, CoreError>")]
pub struct ExecuteChannel {
    /// The command.
    pub cmd: ChannelCommand,
    /// Who asks.
    pub origin: Origin,
    /// Stored records to rewrite with the command's events (only for `ErasePayloads`).
    pub rewrites: Vec<rookery_storage::Rewrite>,
}

/// Read a channel's committed state.
#[derive(Message)]
#[rtype(result = "Result<ChannelState, CoreError>")]
pub struct GetChannel;

/// Read where a channel's sequence is and what one user last sent there.
#[derive(Message)]
#[rtype(result = "Result<ChannelView, CoreError>")]
pub struct GetChannelView {
    /// The user asking (for `own_last_sent`).
    pub uid: rookery_events::Uid,
}

/// Read who receives a message of a channel now: both parties of a person channel, otherwise the
/// subscribers. Shared with the sends the channel answers until its membership changes.
#[derive(Message)]
#[rtype(result = "Result<Arc<[Uid]>, CoreError>")]
pub struct GetRecipients;

/// Read what a user's own person channel says about a send by `sender`: the user's bans, and whether
/// the user's denylist holds `sender`. Answers without copying the channel's lists.
#[derive(Message)]
#[rtype(result = "Result<PersonPolicy, CoreError>")]
pub struct GetPersonPolicy {
    /// Who sends.
    pub sender: Uid,
}

/// The answer to [`GetPersonPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonPolicy {
    /// The user may not send (send ban or ban).
    pub send_banned: bool,
    /// The user's denylist holds the sender.
    pub blocks_sender: bool,
}

/// Read which messages of a channel with seqs in `from..=to` were retracted, and by whom.
#[derive(Message)]
#[rtype(result = "Result<Vec<(MessageSeq, Uid)>, CoreError>")]
pub struct GetRevoked {
    /// First seq.
    pub from: u64,
    /// Last seq.
    pub to: u64,
}

/// A small read-only view of a channel for conversation lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelView {
    /// The channel exists (created and not deleted).
    pub exists: bool,
    /// Where its ordinary message sequence is.
    pub mark: rookery_events::ChannelMark,
    /// The asking user's last ordinary message there.
    pub own_last_sent: Option<rookery_events::ChannelMark>,
    /// Some message of the channel was edited (readers then look up edits).
    pub has_edits: bool,
}

/// Execute a command on a user.
#[derive(Message)]
#[rtype(result = "Result<Option<Position>, CoreError>")]
pub struct ExecuteUser {
    /// The command.
    pub cmd: UserCommand,
    /// Who asks.
    pub origin: Origin,
}

/// Read a user's committed state.
#[derive(Message)]
#[rtype(result = "Result<UserState, CoreError>")]
pub struct GetUser;

/// Events written into a user's stream by another actor (write-spread), now durable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ForeignCommitted {
    /// The events with their log positions.
    pub events: Vec<(Position, UserEvent)>,
}

/// Execute a command on the server-wide aggregate.
#[derive(Message)]
#[rtype(result = "Result<Option<Position>, CoreError>")]
pub struct ExecuteSystem {
    /// The command.
    pub cmd: SystemCommand,
    /// Who asks.
    pub origin: Origin,
}

/// Execute a command on a tenant.
#[derive(Message)]
#[rtype(result = "Result<crate::tenant::TenantReply, CoreError>")]
pub struct ExecuteTenant {
    /// The command.
    pub cmd: rookery_events::TenantCommand,
    /// Who asks.
    pub origin: Origin,
}

/// Run a read on a tenant's committed state inside its actor (the state is not copied out).
#[derive(Message)]
#[rtype(result = "Result<(), CoreError>")]
pub struct QueryTenant {
    /// The read; it sends its own answer.
    pub read: Box<dyn FnOnce(&rookery_events::TenantState) + Send>,
}

/// Read the server-wide state.
#[derive(Message)]
#[rtype(result = "Result<SystemState, CoreError>")]
pub struct GetSystem;

/// Append an event to a stream message of a channel.
#[derive(Message)]
#[rtype(result = "Result<MessageEventReply, CoreError>")]
pub struct AppendMessageEvent {
    /// The event.
    pub event: rookery_events::NewMessageEvent,
    /// The stored message it is for (seq, id, sender), when the caller found one: an edit or revoke
    /// of a message that has no events yet.
    pub message: Option<(MessageSeq, MessageId, Uid)>,
    /// Who asks.
    pub origin: Origin,
}

/// What an event append answers once it is durable.
#[derive(Debug, Clone)]
pub struct MessageEventReply {
    /// The stored event; `None` when nothing was stored (a retry of the key's last event, or an event
    /// for a key that has ended).
    pub stored: Option<Arc<rookery_events::MessageEventRecord>>,
    /// The event's key.
    pub event_key: String,
    /// Its event seq (the key's last one when nothing was stored).
    pub event_seq: u64,
    /// The key's status after it.
    pub status: rookery_events::KeyStatus,
    /// The message's sender.
    pub from_uid: Uid,
    /// The message's id.
    pub message_id: MessageId,
    /// Who receives it live (the channel's recipients now).
    pub recipients: Arc<[Uid]>,
}

/// Read which messages of a channel with seqs in `from..=to` were edited, and when last.
#[derive(Message)]
#[rtype(result = "Result<Vec<(MessageSeq, rookery_events::Timestamp)>, CoreError>")]
pub struct GetEdited {
    /// First seq.
    pub from: u64,
    /// Last seq.
    pub to: u64,
}

/// Read what the events of one stream message of a channel come to (`None`: no such stream message).
#[derive(Message)]
#[rtype(result = "Result<Option<rookery_events::MessageStream>, CoreError>")]
pub struct GetMessageStream {
    /// The message's client_msg_no.
    pub client_msg_no: rookery_events::ClientMsgNo,
}
