//! The channel aggregate: settings, subscribers, deny/allow lists and the message sequence.

use std::collections::{BTreeMap, BTreeSet};

use bincode::{Decode, Encode};

use crate::aggregate::{Aggregate, Rejection};
use crate::chain::{sha256, ChainHash, Position};
use crate::envelope::Event;
use crate::group::{GroupCommand, GroupPatch, GroupProfile};
use crate::ids::{ChannelKey, ChannelType, ClientMsgNo, MessageId, MessageSeq, StreamNo, Timestamp, Uid};
use crate::msgevent::{MessageEventRecord, MAX_OPEN_STREAMS};
use crate::user::ChannelMark;

/// Channel flags set by `/channel` and `/channel/info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Encode, Decode)]
pub struct ChannelInfo {
    /// Nobody but system accounts may send (on a person channel: the user cannot log in).
    pub ban: bool,
    /// The channel is dissolved; sends are rejected.
    pub disband: bool,
    /// Members cannot send (on a person channel: that user cannot send anything).
    pub send_ban: bool,
    /// Large-group hint.
    pub large: bool,
    /// Person channel: strangers may message this user when personal allowlists are on.
    pub allow_stranger: bool,
}

/// The flag bits of a message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Encode, Decode)]
pub struct MessageHeader {
    /// Not stored; delivered to online recipients only.
    pub no_persist: bool,
    /// Counts toward the recipients' unread badge.
    pub red_dot: bool,
    /// A command message: consumed once per recipient through the write-spread queue.
    pub sync_once: bool,
}

/// A message payload, or what is left of it after an erasure.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Payload {
    /// The plaintext bytes.
    Inline(Vec<u8>),
    /// The payload was erased; its SHA-256 remains so the hash chain still verifies.
    Erased(ChainHash),
}

impl Payload {
    /// Whether the bytes are still here.
    pub fn is_inline(&self) -> bool {
        matches!(self, Payload::Inline(_))
    }

    /// The erased form of this payload (itself if already erased).
    pub fn erased(&self) -> Payload {
        match self {
            Payload::Inline(bytes) => Payload::Erased(sha256(bytes)),
            Payload::Erased(h) => Payload::Erased(*h),
        }
    }

    /// The bytes, or an empty slice for an erased payload.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Payload::Inline(bytes) => bytes,
            Payload::Erased(_) => &[],
        }
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Message {
    /// The channel (internal id for person channels).
    pub channel: ChannelKey,
    /// Position in the channel's sequence (the command sequence for `sync_once` messages).
    pub message_seq: MessageSeq,
    /// Server-wide unique id.
    pub message_id: MessageId,
    /// Sender-chosen unique number, used for de-duplication.
    pub client_msg_no: ClientMsgNo,
    /// The sender.
    pub from_uid: Uid,
    /// Header flags.
    pub header: MessageHeader,
    /// The protocol's setting byte, stored and echoed.
    pub setting: u8,
    /// Stream-message number, if the message is part of a stream.
    pub stream_no: Option<StreamNo>,
    /// Expiry in seconds as given by the sender (0 = never); stored and echoed.
    pub expire: u32,
    /// Optional topic, stored and echoed.
    pub topic: Option<String>,
    /// When the message was committed.
    pub timestamp: Timestamp,
    /// How many red-dot messages the channel has had up to and including this one, so unread counts
    /// over any seq range are one subtraction.
    pub red_dot_ordinal: u64,
    /// The payload.
    pub payload: Payload,
}

/// Something that happened to a channel.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum ChannelEvent {
    /// The channel came into existence (or back after a delete) with these flags.
    Created {
        /// Initial flags.
        info: ChannelInfo,
    },
    /// The channel's flags changed.
    InfoUpdated {
        /// New flags.
        info: ChannelInfo,
    },
    /// The channel was deleted: subscribers and lists are gone, sends are rejected.
    Deleted,
    /// Users became subscribers.
    SubscribersAdded {
        /// The new subscribers (none was one before).
        uids: Vec<Uid>,
    },
    /// Users stopped being subscribers.
    SubscribersRemoved {
        /// The removed subscribers (each was one before).
        uids: Vec<Uid>,
    },
    /// The subscriber set was replaced.
    SubscribersReset {
        /// The whole new set.
        uids: Vec<Uid>,
    },
    /// Users were added to the denylist.
    BlacklistAdded {
        /// Added uids.
        uids: Vec<Uid>,
    },
    /// Users were removed from the denylist.
    BlacklistRemoved {
        /// Removed uids.
        uids: Vec<Uid>,
    },
    /// The denylist was replaced.
    BlacklistSet {
        /// The whole new list.
        uids: Vec<Uid>,
    },
    /// Users were added to the allowlist.
    WhitelistAdded {
        /// Added uids.
        uids: Vec<Uid>,
    },
    /// Users were removed from the allowlist.
    WhitelistRemoved {
        /// Removed uids.
        uids: Vec<Uid>,
    },
    /// The allowlist was replaced.
    WhitelistSet {
        /// The whole new list.
        uids: Vec<Uid>,
    },
    /// A message was stored.
    MessageAppended(Box<Message>),
    /// The payloads of one sender's messages in a seq range were erased (e.g. a legal erasure
    /// request). The stored records of those messages were rewritten in the same atomic append with
    /// each payload replaced by its SHA-256, so their digests, and the hash chain, are unchanged.
    PayloadsErased {
        /// Whose messages.
        from_uid: Uid,
        /// The command (sync-once) sequence rather than the ordinary one.
        commands: bool,
        /// First message_seq examined.
        first_seq: MessageSeq,
        /// Last message_seq examined.
        last_seq: MessageSeq,
        /// How many payloads were erased by this event (already erased ones are not counted).
        erased: u64,
        /// Why, as given by the operator (e.g. a ticket number).
        reason: String,
    },
    /// The channel became a business group with this profile (in the same append as its `Created`
    /// and its first `SubscribersAdded`).
    GroupCreated {
        /// The profile, owner included.
        profile: Box<GroupProfile>,
    },
    /// Fields of the group's profile changed.
    GroupProfileUpdated {
        /// The changed fields only.
        patch: GroupPatch,
        /// When.
        at: Timestamp,
    },
    /// The group has a new owner; the old one stays an ordinary member.
    OwnerTransferred {
        /// The old owner.
        from: Uid,
        /// The new owner.
        to: Uid,
        /// When.
        at: Timestamp,
    },
    /// Members were muted until `until` (`MUTED_UNTIL_LIFTED`: until lifted), or with `until` 0
    /// unmuted.
    MembersMuted {
        /// Whom.
        uids: Vec<Uid>,
        /// Until when (0: the mute is lifted).
        until: Timestamp,
        /// When.
        at: Timestamp,
    },
    /// A message was retracted: readers no longer see its content (the log keeps it, for audits).
    MessageRevoked {
        /// The message.
        seq: MessageSeq,
        /// Who retracted it (its sender).
        by: Uid,
        /// When.
        at: Timestamp,
    },
    /// Users joined a chatroom (a live channel's members, with when they joined).
    RoomMembersAdded {
        /// The new members.
        uids: Vec<Uid>,
        /// When.
        at: Timestamp,
    },
    /// A group's notice (its pinned announcement) was set.
    GroupNoticeSet {
        /// The notice.
        notice: String,
        /// When.
        at: Timestamp,
    },
    /// Members became managers of a group, or ordinary members again.
    ManagersChanged {
        /// New managers.
        added: Vec<Uid>,
        /// Former managers.
        removed: Vec<Uid>,
        /// When.
        at: Timestamp,
    },
    /// Every member but the owner and managers was muted, or that was lifted.
    MuteAllSet {
        /// Muted.
        on: bool,
        /// When.
        at: Timestamp,
    },
    /// A message was deleted for everyone by its sender: no reader sees it any more (the log keeps it).
    MessageDeleted {
        /// The message.
        seq: MessageSeq,
        /// Who deleted it (its sender).
        by: Uid,
        /// When.
        at: Timestamp,
    },
    /// An event of a stream message, stored in that message's own stream (`StreamId::MessageEvents`).
    MessageEvent(Box<MessageEventRecord>),
    /// A stream message ended (written beside the event that ended it): it is no longer open.
    MessageStreamEnded {
        /// The message's client_msg_no.
        client_msg_no: ClientMsgNo,
    },
    /// A message's content was replaced (written beside its `message.edit` event, which holds the new
    /// content): readers look for the edit.
    MessageEdited {
        /// The message.
        seq: MessageSeq,
        /// Who edited it.
        by: Uid,
        /// When.
        at: Timestamp,
    },
}

impl ChannelEvent {
    /// Stable kind name.
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelEvent::Created { .. } => "channel.created",
            ChannelEvent::InfoUpdated { .. } => "channel.info_updated",
            ChannelEvent::Deleted => "channel.deleted",
            ChannelEvent::SubscribersAdded { .. } => "channel.subscribers_added",
            ChannelEvent::SubscribersRemoved { .. } => "channel.subscribers_removed",
            ChannelEvent::SubscribersReset { .. } => "channel.subscribers_reset",
            ChannelEvent::BlacklistAdded { .. } => "channel.blacklist_added",
            ChannelEvent::BlacklistRemoved { .. } => "channel.blacklist_removed",
            ChannelEvent::BlacklistSet { .. } => "channel.blacklist_set",
            ChannelEvent::WhitelistAdded { .. } => "channel.whitelist_added",
            ChannelEvent::WhitelistRemoved { .. } => "channel.whitelist_removed",
            ChannelEvent::WhitelistSet { .. } => "channel.whitelist_set",
            ChannelEvent::MessageAppended(_) => "channel.message_appended",
            ChannelEvent::PayloadsErased { .. } => "channel.payloads_erased",
            ChannelEvent::GroupCreated { .. } => "channel.group_created",
            ChannelEvent::GroupProfileUpdated { .. } => "channel.group_profile_updated",
            ChannelEvent::OwnerTransferred { .. } => "channel.owner_transferred",
            ChannelEvent::MembersMuted { .. } => "channel.members_muted",
            ChannelEvent::MessageRevoked { .. } => "channel.message_revoked",
            ChannelEvent::RoomMembersAdded { .. } => "channel.room_members_added",
            ChannelEvent::GroupNoticeSet { .. } => "channel.group_notice_set",
            ChannelEvent::ManagersChanged { .. } => "channel.managers_changed",
            ChannelEvent::MuteAllSet { .. } => "channel.mute_all_set",
            ChannelEvent::MessageDeleted { .. } => "channel.message_deleted",
            ChannelEvent::MessageEvent(_) => "channel.message_event",
            ChannelEvent::MessageStreamEnded { .. } => "channel.message_stream_ended",
            ChannelEvent::MessageEdited { .. } => "channel.message_edited",
        }
    }
}

/// Which list a [`ListOp`] works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// The denylist.
    Blacklist,
    /// The allowlist.
    Whitelist,
}

/// A change to a deny or allow list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListOp {
    /// Add these (must not be empty).
    Add(Vec<Uid>),
    /// Remove these (must not be empty).
    Remove(Vec<Uid>),
    /// Replace the list (empty clears it).
    Set(Vec<Uid>),
}

/// What the rest of the server knows about a sender, gathered before deciding a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderStanding {
    /// The sender is a system account (bypasses lists and membership).
    pub is_system: bool,
    /// The sender's own person channel has `send_ban`.
    pub send_banned: bool,
    /// The send comes from a client's connection, not from the app server's API: it may not bring a
    /// channel into being, not even one of the types anyone may post to.
    pub via_client: bool,
}

/// For person channels: what the receiver's own settings say about this sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerPolicy {
    /// The receiver is a system account.
    pub receiver_is_system: bool,
    /// The sender is on the receiver's denylist.
    pub blocked: bool,
}

/// A message to send, with everything decided outside the domain (id, sender standing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMessage {
    /// Server-wide id chosen by the caller.
    pub message_id: MessageId,
    /// De-duplication number (may be empty: then no de-duplication).
    pub client_msg_no: ClientMsgNo,
    /// The sender.
    pub from_uid: Uid,
    /// Header flags.
    pub header: MessageHeader,
    /// Setting byte.
    pub setting: u8,
    /// Stream number, if any.
    pub stream_no: Option<StreamNo>,
    /// Expiry (seconds).
    pub expire: u32,
    /// Topic.
    pub topic: Option<String>,
    /// Plaintext payload.
    pub payload: Vec<u8>,
    /// Sender facts.
    pub sender: SenderStanding,
    /// Receiver facts (person channels only).
    pub peer: PeerPolicy,
}

/// An instruction to a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelCommand {
    /// Create or update the channel's flags and add (or with `reset`, replace) subscribers.
    Upsert {
        /// New flags.
        info: ChannelInfo,
        /// Subscribers to add.
        subscribers: Vec<Uid>,
        /// Replace the subscriber set instead of adding.
        reset: bool,
    },
    /// Create or update the flags only.
    SetInfo(ChannelInfo),
    /// Delete the channel.
    Delete,
    /// Add subscribers (creating the channel if needed); with `reset`, replace the set.
    AddSubscribers {
        /// Subscribers (non-empty).
        uids: Vec<Uid>,
        /// Replace instead of add.
        reset: bool,
    },
    /// Remove subscribers.
    RemoveSubscribers(Vec<Uid>),
    /// Change a deny or allow list.
    List(ListKind, ListOp),
    /// Store a message (or, for `no_persist`, only check that it may be sent).
    Send(Box<SendMessage>),
    /// Record the erasure of one sender's payloads in a seq range; the caller found `erased` stored
    /// messages to rewrite and hands the rewrites to the log with the event.
    ErasePayloads {
        /// Whose messages.
        from_uid: Uid,
        /// The command sequence rather than the ordinary one.
        commands: bool,
        /// First message_seq examined.
        first_seq: MessageSeq,
        /// Last message_seq examined.
        last_seq: MessageSeq,
        /// Payloads being erased.
        erased: u64,
        /// Why.
        reason: String,
    },
    /// A business group's command (profile, strict membership, owner, mutes).
    Group(GroupCommand),
    /// Retract an ordinary message. The caller read the stored message first and hands over its
    /// sender and time, as an erasure does.
    Revoke {
        /// The message.
        seq: MessageSeq,
        /// Its stored sender.
        from: Uid,
        /// Its stored time.
        sent_at: Timestamp,
        /// Who asks: only the sender may retract.
        by: Uid,
        /// How long after sending a retraction is allowed (`None`: any time).
        window_ms: Option<u64>,
    },
    /// Delete an ordinary message for everyone: only its sender, once. The caller read the stored
    /// sender first, as for `Revoke`.
    DeleteMessage {
        /// The message.
        seq: MessageSeq,
        /// Its stored sender.
        from: Uid,
        /// Who asks.
        by: Uid,
    },
}

/// The state of one channel, rebuilt from its events.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
pub struct ChannelState {
    /// The channel exists (created and not deleted since).
    pub exists: bool,
    /// The channel was deleted at least once and not re-created.
    pub deleted: bool,
    /// Flags.
    pub info: ChannelInfo,
    /// Subscribers.
    pub subscribers: BTreeSet<Uid>,
    /// Denylist.
    pub blacklist: BTreeSet<Uid>,
    /// Allowlist.
    pub whitelist: BTreeSet<Uid>,
    /// Last ordinary message_seq (0 = none yet).
    pub last_message_seq: MessageSeq,
    /// Last command (sync-once) message_seq.
    pub last_command_seq: MessageSeq,
    /// Red-dot messages so far (see [`Message::red_dot_ordinal`]).
    pub red_dot_count: u64,
    /// Timestamp of the last ordinary message.
    pub last_message_at: Timestamp,
    /// Each sender's last ordinary message (sending reads everything before it).
    pub last_sent: BTreeMap<Uid, ChannelMark>,
    /// A business group's profile, owner and mutes (`None` for other channels).
    pub group: Option<GroupProfile>,
    /// Retracted messages and who retracted them.
    pub revoked: BTreeMap<MessageSeq, Uid>,
    /// When each member of a chatroom joined it.
    pub joined_at: BTreeMap<Uid, Timestamp>,
    /// A group's notice (empty when it has none).
    pub notice: String,
    /// Messages deleted for everyone, and by whom.
    pub deleted_messages: BTreeMap<MessageSeq, Uid>,
    /// Edited messages and when they were last edited.
    pub edited: BTreeMap<MessageSeq, Timestamp>,
    /// Stream messages still open, by client_msg_no (at most [`MAX_OPEN_STREAMS`]).
    pub open_streams: BTreeMap<ClientMsgNo, (MessageSeq, MessageId, Uid)>,
    /// Log position of the last event applied.
    pub position: Position,
}

impl ChannelState {
    /// Where the channel's ordinary message sequence is now.
    pub fn mark(&self) -> ChannelMark {
        ChannelMark { seq: self.last_message_seq, red_dots: self.red_dot_count }
    }

    /// A member who leaves a group loses its mute and its manager role.
    fn forget_roles_of_non_members(&mut self) {
        let members = &self.subscribers;
        self.joined_at.retain(|u, _| members.contains(u));
        if let Some(g) = &mut self.group {
            let members = &self.subscribers;
            g.muted.retain(|u, _| members.contains(u));
            g.managers.retain(|u| members.contains(u));
        }
    }

    /// Whether users get conversation rows for this channel type (not for data, temp and live channels).
    pub fn has_conversations(ty: ChannelType) -> bool {
        !matches!(ty, ChannelType::DATA | ChannelType::TEMP | ChannelType::LIVE)
    }
}

fn dedup(uids: &[Uid]) -> Vec<Uid> {
    let mut seen = BTreeSet::new();
    uids.iter().filter(|u| seen.insert((*u).clone())).cloned().collect()
}

fn check_uids(uids: &[Uid]) -> Result<(), Rejection> {
    match uids.iter().find(|u| u.0.is_empty()) {
        Some(_) => Err(Rejection::Invalid("uids must not contain an empty uid".into())),
        None => Ok(()),
    }
}

/// The setting bit of a stream message (WKProto's Stream bit).
pub const STREAM_SETTING: u8 = 0x02;

/// Most subscribers a command message (`sync_once`) sent by a client may be queued for.
pub const MAX_CLIENT_COMMAND_RECIPIENTS: usize = 200;

impl ChannelState {
    fn decide_send(&self, key: &ChannelKey, m: &SendMessage, now: Timestamp) -> Result<Vec<ChannelEvent>, Rejection> {
        if m.from_uid.0.is_empty() {
            return Err(Rejection::Invalid("from_uid must not be empty".into()));
        }
        if m.payload.is_empty() {
            return Err(Rejection::Invalid("payload must not be empty".into()));
        }
        self.check_send_permission(key, m, now)?;
        if m.setting & STREAM_SETTING != 0 {
            self.check_stream_open(m)?;
        }
        if m.header.no_persist {
            return Ok(Vec::new());
        }
        // A stored command is one queue entry per subscriber, in the same append: a client's is
        // bounded, so that one member of a big group cannot multiply writes by its size. The app
        // server's API has no such bound.
        let client = m.sender.via_client && !m.sender.is_system;
        if m.header.sync_once && client && self.subscribers.len() > MAX_CLIENT_COMMAND_RECIPIENTS {
            return Err(Rejection::NotAllowed(format!(
                "a client's command message reaches at most {MAX_CLIENT_COMMAND_RECIPIENTS} subscribers and this channel has {}; send it through the server API",
                self.subscribers.len()
            )));
        }
        let message_seq = if m.header.sync_once { self.last_command_seq.next() } else { self.last_message_seq.next() };
        let red_dot_ordinal = self.red_dot_count + u64::from(m.header.red_dot && !m.header.sync_once);
        Ok(vec![ChannelEvent::MessageAppended(Box::new(Message {
            channel: key.clone(),
            message_seq,
            message_id: m.message_id,
            client_msg_no: m.client_msg_no.clone(),
            from_uid: m.from_uid.clone(),
            header: m.header,
            setting: m.setting,
            stream_no: m.stream_no.clone(),
            expire: m.expire,
            topic: m.topic.clone(),
            timestamp: now,
            red_dot_ordinal,
            payload: Payload::Inline(m.payload.clone()),
        }))])
    }

    /// A stream message is stored and numbered by its client_msg_no: one open stream per number, and
    /// a bounded number open at once.
    fn check_stream_open(&self, m: &SendMessage) -> Result<(), Rejection> {
        if m.header.no_persist || m.header.sync_once {
            return Err(Rejection::Invalid("a stream message cannot be no_persist or sync_once".into()));
        }
        if m.client_msg_no.0.is_empty() {
            return Err(Rejection::Invalid("a stream message needs a client_msg_no".into()));
        }
        if self.open_streams.contains_key(&m.client_msg_no) {
            return Err(Rejection::Exists(format!("stream message {}", m.client_msg_no.0)));
        }
        if self.open_streams.len() >= MAX_OPEN_STREAMS {
            return Err(Rejection::NotAllowed(format!("a channel may have at most {MAX_OPEN_STREAMS} stream messages open")));
        }
        Ok(())
    }

    /// Send permission rules, first failure wins (protocol spec §8.6).
    fn check_send_permission(&self, key: &ChannelKey, m: &SendMessage, now: Timestamp) -> Result<(), Rejection> {
        if m.sender.send_banned && !m.sender.is_system {
            return Err(Rejection::SendBanned);
        }
        let ty = key.ty;
        if ty == ChannelType::PERSON || ty == ChannelType::AGENT {
            if m.sender.is_system || m.peer.receiver_is_system {
                return Ok(());
            }
            if m.peer.blocked {
                return Err(Rejection::InBlacklist);
            }
            return Ok(());
        }
        // Temp channels carry their recipients with each send; info and customer-service channels
        // are open to anyone.
        let open = matches!(ty, ChannelType::TEMP | ChannelType::INFO | ChannelType::CUSTOMER_SERVICE);
        if !self.exists {
            // Even system accounts cannot post into a group that was never created.
            if open {
                // A client cannot create channels by posting into them: only the app server's API can.
                return if self.deleted {
                    Err(Rejection::Disbanded)
                } else if m.sender.via_client && !m.sender.is_system {
                    Err(Rejection::ChannelNotFound)
                } else {
                    Ok(())
                };
            }
            return Err(if self.deleted { Rejection::Disbanded } else { Rejection::ChannelNotFound });
        }
        if self.info.disband {
            return Err(Rejection::Disbanded);
        }
        if m.sender.is_system || open {
            return Ok(());
        }
        if self.info.ban {
            return Err(Rejection::Banned);
        }
        if ty == ChannelType::VISITORS && m.from_uid.0 == key.id.0 {
            return Ok(());
        }
        if self.blacklist.contains(&m.from_uid) {
            return Err(Rejection::InBlacklist);
        }
        if !self.subscribers.contains(&m.from_uid) {
            return Err(Rejection::NotSubscriber);
        }
        if self.group.as_ref().is_some_and(|g| g.is_muted(&m.from_uid, now)) {
            return Err(Rejection::Muted);
        }
        if self.info.send_ban {
            return Err(Rejection::SendBanned);
        }
        if !self.whitelist.is_empty() && !self.whitelist.contains(&m.from_uid) {
            return Err(Rejection::NotInWhitelist);
        }
        Ok(())
    }

    fn decide_subscribers(&self, key: &ChannelKey, uids: &[Uid], reset: bool) -> Result<Vec<ChannelEvent>, Rejection> {
        if !key.ty.has_subscribers() && !uids.is_empty() {
            return Err(Rejection::Invalid(format!("channel type {} cannot have subscribers", key.ty.0)));
        }
        check_uids(uids)?;
        let uids = dedup(uids);
        let mut events = Vec::new();
        if reset {
            let new: BTreeSet<Uid> = uids.iter().cloned().collect();
            if new != self.subscribers {
                events.push(ChannelEvent::SubscribersReset { uids });
            }
        } else {
            let added: Vec<Uid> = uids.into_iter().filter(|u| !self.subscribers.contains(u)).collect();
            if self.group.as_ref().is_some_and(|g| self.subscribers.len() + added.len() > g.max_members as usize) {
                return Err(Rejection::GroupFull);
            }
            if !added.is_empty() {
                events.push(ChannelEvent::SubscribersAdded { uids: added });
            }
        }
        Ok(events)
    }

    fn decide_list(&self, key: &ChannelKey, kind: ListKind, op: &ListOp) -> Result<Vec<ChannelEvent>, Rejection> {
        // A person-type key names one user's own settings ("B blocks A"); it exists implicitly.
        if !self.exists && key.ty != ChannelType::PERSON {
            return Err(if self.deleted { Rejection::Disbanded } else { Rejection::ChannelNotFound });
        }
        let list = match kind {
            ListKind::Blacklist => &self.blacklist,
            ListKind::Whitelist => &self.whitelist,
        };
        let event = match op {
            ListOp::Add(uids) | ListOp::Remove(uids) if uids.is_empty() => {
                return Err(Rejection::Invalid("uids must not be empty".into()));
            }
            ListOp::Add(uids) => {
                check_uids(uids)?;
                let added: Vec<Uid> = dedup(uids).into_iter().filter(|u| !list.contains(u)).collect();
                if added.is_empty() {
                    return Ok(Vec::new());
                }
                match kind {
                    ListKind::Blacklist => ChannelEvent::BlacklistAdded { uids: added },
                    ListKind::Whitelist => ChannelEvent::WhitelistAdded { uids: added },
                }
            }
            ListOp::Remove(uids) => {
                check_uids(uids)?;
                let removed: Vec<Uid> = dedup(uids).into_iter().filter(|u| list.contains(u)).collect();
                if removed.is_empty() {
                    return Ok(Vec::new());
                }
                match kind {
                    ListKind::Blacklist => ChannelEvent::BlacklistRemoved { uids: removed },
                    ListKind::Whitelist => ChannelEvent::WhitelistRemoved { uids: removed },
                }
            }
            ListOp::Set(uids) => {
                check_uids(uids)?;
                let uids = dedup(uids);
                if uids.iter().cloned().collect::<BTreeSet<_>>() == *list {
                    return Ok(Vec::new());
                }
                match kind {
                    ListKind::Blacklist => ChannelEvent::BlacklistSet { uids },
                    ListKind::Whitelist => ChannelEvent::WhitelistSet { uids },
                }
            }
        };
        let mut events = self.implicit_create(key);
        events.push(event);
        Ok(events)
    }

    /// Person-type keys and `subscriber_add` create the channel on first use.
    fn implicit_create(&self, _key: &ChannelKey) -> Vec<ChannelEvent> {
        if self.exists {
            Vec::new()
        } else {
            vec![ChannelEvent::Created { info: ChannelInfo::default() }]
        }
    }

    fn decide_info(&self, info: ChannelInfo) -> Vec<ChannelEvent> {
        if !self.exists {
            vec![ChannelEvent::Created { info }]
        } else if self.info != info {
            vec![ChannelEvent::InfoUpdated { info }]
        } else {
            Vec::new()
        }
    }
}

impl Aggregate for ChannelState {
    type Key = ChannelKey;
    type Command = ChannelCommand;
    type Event = ChannelEvent;

    fn decide(&self, key: &ChannelKey, cmd: &ChannelCommand, now: Timestamp) -> Result<Vec<ChannelEvent>, Rejection> {
        if !key.ty.is_known() {
            return Err(Rejection::Invalid(format!("unknown channel_type {}", key.ty.0)));
        }
        if key.id.0.is_empty() {
            return Err(Rejection::Invalid("channel_id must not be empty".into()));
        }
        match cmd {
            ChannelCommand::Upsert { info, subscribers, reset } => {
                let mut events = self.decide_info(*info);
                let mut after = self.clone();
                for e in &events {
                    after.apply(Position::ZERO, e);
                }
                events.extend(after.decide_subscribers(key, subscribers, *reset)?);
                Ok(events)
            }
            ChannelCommand::SetInfo(info) => Ok(self.decide_info(*info)),
            ChannelCommand::Delete => {
                if key.ty == ChannelType::PERSON {
                    return Err(Rejection::Invalid("person channels cannot be deleted".into()));
                }
                if !self.exists {
                    return Err(if self.deleted { Rejection::Disbanded } else { Rejection::ChannelNotFound });
                }
                Ok(vec![ChannelEvent::Deleted])
            }
            ChannelCommand::AddSubscribers { uids, reset } => {
                if uids.is_empty() && !reset {
                    return Err(Rejection::Invalid("subscribers must not be empty".into()));
                }
                if !key.ty.has_subscribers() {
                    return Err(Rejection::Invalid(format!("channel type {} cannot have subscribers", key.ty.0)));
                }
                let mut events = self.implicit_create(key);
                let mut after = self.clone();
                for e in &events {
                    after.apply(Position::ZERO, e);
                }
                events.extend(after.decide_subscribers(key, uids, *reset)?);
                Ok(events)
            }
            ChannelCommand::RemoveSubscribers(uids) => {
                if uids.is_empty() {
                    return Err(Rejection::Invalid("subscribers must not be empty".into()));
                }
                check_uids(uids)?;
                if !self.exists {
                    return Err(if self.deleted { Rejection::Disbanded } else { Rejection::ChannelNotFound });
                }
                let removed: Vec<Uid> = dedup(uids).into_iter().filter(|u| self.subscribers.contains(u)).collect();
                if let Some(g) = &self.group {
                    if removed.contains(&g.owner) && removed.len() < self.subscribers.len() {
                        return Err(Rejection::Invalid("the owner cannot be removed while others stay: transfer the group first".into()));
                    }
                }
                Ok(if removed.is_empty() { Vec::new() } else { vec![ChannelEvent::SubscribersRemoved { uids: removed }] })
            }
            ChannelCommand::List(kind, op) => self.decide_list(key, *kind, op),
            ChannelCommand::Send(m) => self.decide_send(key, m, now),
            ChannelCommand::ErasePayloads { from_uid, commands, first_seq, last_seq, erased, reason } => {
                if from_uid.0.is_empty() {
                    return Err(Rejection::Invalid("uid must not be empty".into()));
                }
                if reason.trim().is_empty() {
                    return Err(Rejection::Invalid("an erasure needs a reason".into()));
                }
                let last = if *commands { self.last_command_seq } else { self.last_message_seq };
                if first_seq.0 == 0 || first_seq > last_seq || *last_seq > last {
                    return Err(Rejection::Invalid(format!("seq range {}..={} is not within 1..={}", first_seq.0, last_seq.0, last.0)));
                }
                if *erased > last_seq.0 - first_seq.0 + 1 {
                    return Err(Rejection::Invalid("more payloads erased than messages in the range".into()));
                }
                // An erasure that finds nothing is still recorded: the request itself is audited.
                Ok(vec![ChannelEvent::PayloadsErased {
                    from_uid: from_uid.clone(),
                    commands: *commands,
                    first_seq: *first_seq,
                    last_seq: *last_seq,
                    erased: *erased,
                    reason: reason.clone(),
                }])
            }
            ChannelCommand::Group(cmd) => self.decide_group(key, cmd, now),
            ChannelCommand::Revoke { seq, from, sent_at, by, window_ms } => {
                if seq.0 == 0 || *seq > self.last_message_seq {
                    return Err(Rejection::NotFound(format!("message {}", seq.0)));
                }
                if by != from {
                    return Err(Rejection::NotAllowed("only its sender may retract a message".into()));
                }
                if self.revoked.contains_key(seq) {
                    return Err(Rejection::Exists(format!("retraction of message {}", seq.0)));
                }
                if window_ms.is_some_and(|w| now.0.saturating_sub(sent_at.0) > w) {
                    return Err(Rejection::Expired(format!("message {} can no longer be retracted", seq.0)));
                }
                Ok(vec![ChannelEvent::MessageRevoked { seq: *seq, by: by.clone(), at: now }])
            }
            ChannelCommand::DeleteMessage { seq, from, by } => {
                if seq.0 == 0 || *seq > self.last_message_seq || self.deleted_messages.contains_key(seq) {
                    return Err(Rejection::NotFound(format!("message {}", seq.0)));
                }
                if by != from {
                    return Err(Rejection::NotAllowed("only its sender may delete a message for everyone".into()));
                }
                Ok(vec![ChannelEvent::MessageDeleted { seq: *seq, by: by.clone(), at: now }])
            }
        }
    }

    fn realign(&mut self, committed: &Self, _settled: &[(Position, ChannelEvent)]) {
        // A placeholder position only ever fails to raise `position`; no other field depends on the
        // position an event is applied at. So a channel with 10,000 subscribers catches up after each
        // message without copying them.
        self.position = committed.position;
        debug_assert_eq!(self, committed, "a channel state differs from the committed one by more than its position");
    }

    fn apply(&mut self, position: Position, event: &ChannelEvent) {
        // A message's events live in the message's own stream, not the channel's: they change nothing here.
        if matches!(event, ChannelEvent::MessageEvent(_)) {
            return;
        }
        if position > self.position {
            self.position = position;
        }
        match event {
            ChannelEvent::Created { info } => {
                self.exists = true;
                self.deleted = false;
                self.info = *info;
            }
            ChannelEvent::InfoUpdated { info } => self.info = *info,
            ChannelEvent::Deleted => {
                self.exists = false;
                self.deleted = true;
                self.info = ChannelInfo::default();
                self.subscribers.clear();
                self.blacklist.clear();
                self.whitelist.clear();
                self.group = None;
                self.joined_at.clear();
                self.notice.clear();
            }
            ChannelEvent::MessageDeleted { seq, by, .. } => {
                self.deleted_messages.insert(*seq, by.clone());
            }
            ChannelEvent::MessageEvent(_) => {}
            ChannelEvent::MessageStreamEnded { client_msg_no } => {
                self.open_streams.remove(client_msg_no);
            }
            ChannelEvent::MessageEdited { seq, at, .. } => {
                self.edited.insert(*seq, *at);
            }
            ChannelEvent::MessageRevoked { seq, by, .. } => {
                self.revoked.insert(*seq, by.clone());
            }
            ChannelEvent::RoomMembersAdded { uids, at } => {
                for u in uids {
                    self.subscribers.insert(u.clone());
                    self.joined_at.insert(u.clone(), *at);
                }
            }
            ChannelEvent::SubscribersAdded { uids } => self.subscribers.extend(uids.iter().cloned()),
            ChannelEvent::SubscribersRemoved { uids } => {
                for u in uids {
                    self.subscribers.remove(u);
                }
                self.forget_roles_of_non_members();
            }
            ChannelEvent::SubscribersReset { uids } => {
                self.subscribers = uids.iter().cloned().collect();
                self.forget_roles_of_non_members();
            }
            ChannelEvent::BlacklistAdded { uids } => self.blacklist.extend(uids.iter().cloned()),
            ChannelEvent::BlacklistRemoved { uids } => uids.iter().for_each(|u| {
                self.blacklist.remove(u);
            }),
            ChannelEvent::BlacklistSet { uids } => self.blacklist = uids.iter().cloned().collect(),
            ChannelEvent::WhitelistAdded { uids } => self.whitelist.extend(uids.iter().cloned()),
            ChannelEvent::WhitelistRemoved { uids } => uids.iter().for_each(|u| {
                self.whitelist.remove(u);
            }),
            ChannelEvent::WhitelistSet { uids } => self.whitelist = uids.iter().cloned().collect(),
            ChannelEvent::MessageAppended(m) => {
                if m.setting & STREAM_SETTING != 0 && !m.header.sync_once {
                    self.open_streams.insert(m.client_msg_no.clone(), (m.message_seq, m.message_id, m.from_uid.clone()));
                }
                if m.header.sync_once {
                    self.last_command_seq = self.last_command_seq.max(m.message_seq);
                } else {
                    self.last_message_seq = self.last_message_seq.max(m.message_seq);
                    self.red_dot_count = self.red_dot_count.max(m.red_dot_ordinal);
                    self.last_message_at = m.timestamp;
                    let mark = ChannelMark { seq: m.message_seq, red_dots: m.red_dot_ordinal };
                    // Looked up before inserting: the sender is nearly always known already, and a
                    // clone of the uid per message is most of what applying a message costs in a replay.
                    match self.last_sent.get_mut(&m.from_uid) {
                        Some(entry) if mark.seq >= entry.seq => *entry = mark,
                        Some(_) => {}
                        None => {
                            self.last_sent.insert(m.from_uid.clone(), mark);
                        }
                    }
                }
            }
            // Payloads are not part of the state; the rewritten records carry the erasure.
            ChannelEvent::PayloadsErased { .. } => {}
            ChannelEvent::GroupCreated { .. }
            | ChannelEvent::GroupProfileUpdated { .. }
            | ChannelEvent::OwnerTransferred { .. }
            | ChannelEvent::MembersMuted { .. }
            | ChannelEvent::GroupNoticeSet { .. }
            | ChannelEvent::ManagersChanged { .. }
            | ChannelEvent::MuteAllSet { .. } => self.apply_group(event),
        }
    }

    fn wrap(event: ChannelEvent) -> Event {
        Event::Channel(event)
    }

    fn unwrap(event: &Event) -> Option<&ChannelEvent> {
        match event {
            Event::Channel(e) => Some(e),
            _ => None,
        }
    }
}
