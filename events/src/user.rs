//! The user aggregate: device tokens, conversation marks and the write-spread command queue.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};

use crate::aggregate::{Aggregate, Rejection};
use crate::chain::{sha256, ChainHash, Position};
use crate::envelope::Event;
use crate::ids::{ChannelKey, DeviceFlag, DeviceLevel, MessageId, MessageSeq, Timestamp, Uid};

/// Something that happened to a user.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum UserEvent {
    /// A device token was registered or replaced. Only the token's SHA-256 is stored, so the log
    /// never holds a usable credential.
    TokenSet {
        /// Which device kind.
        device_flag: DeviceFlag,
        /// Master or slave.
        device_level: DeviceLevel,
        /// SHA-256 of the token.
        token_hash: ChainHash,
    },
    /// A device (or, with `None`, every device) was logged out: its token no longer authenticates.
    DeviceQuit {
        /// The device kind, or every kind.
        device_flag: Option<DeviceFlag>,
    },
    /// A command message was queued for this user (write spread). Written by the channel that
    /// stored the message, in the same atomic append.
    CommandQueued {
        /// The channel the command was sent in.
        channel: ChannelKey,
        /// Its seq in the channel's command sequence.
        message_seq: MessageSeq,
        /// Its id.
        message_id: MessageId,
    },
    /// The user acknowledged queued commands; they will not be offered again.
    SyncAcked {
        /// Log positions of the acknowledged `CommandQueued` events.
        entries: Vec<Position>,
    },
    /// The unread count of a conversation was set as of a channel position.
    UnreadSet {
        /// The conversation's channel.
        channel: ChannelKey,
        /// The new unread count.
        unread: u64,
        /// Where the channel was when it was set.
        at: ChannelMark,
    },
    /// A conversation was removed from the user's list up to a channel position.
    ConversationDeleted {
        /// The conversation's channel.
        channel: ChannelKey,
        /// Messages up to here are hidden from the conversation.
        at: ChannelMark,
    },
    /// The user got a conversation with a channel (joined a group, or a first person message).
    /// Written by the channel, in the same atomic append as the change that caused it.
    ConversationJoined {
        /// The channel.
        channel: ChannelKey,
        /// Where the channel was: history up to here is not unread.
        at: ChannelMark,
    },
    /// The user left a channel's conversation (removed from its subscribers, or the channel was
    /// deleted). Written by the channel.
    ConversationLeft {
        /// The channel.
        channel: ChannelKey,
    },
    /// A token for one of the OpenIM family's platforms was issued, replacing that platform's
    /// previous one. Only its SHA-256 is stored; it authenticates until `expires_at`.
    PlatformTokenIssued {
        /// The platform: 1 iOS, 2 Android, 3 Windows, 4 macOS, 5 web, 6 mini program, 7 Linux.
        platform: u8,
        /// SHA-256 of the token.
        token_hash: ChainHash,
        /// When it stops authenticating (ms since the epoch).
        expires_at: Timestamp,
    },
    /// Messages of a conversation were hidden from this user only (deleted for oneself).
    MessagesHidden {
        /// The conversation's channel.
        channel: ChannelKey,
        /// The hidden messages.
        seqs: Vec<MessageSeq>,
    },
    /// The user's own settings of a conversation changed: the fields given replace the old ones.
    ConversationSettingsChanged {
        /// The conversation's channel.
        channel: ChannelKey,
        /// Pinned to the top of the list.
        pinned: Option<bool>,
        /// The user's own name for it (empty: none).
        remark: Option<String>,
    },
}

/// A point in a channel's message sequence, with the channel's red-dot count there, so unread counts
/// from that point on are one subtraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Encode, Decode)]
pub struct ChannelMark {
    /// The channel's last message_seq at that point.
    pub seq: MessageSeq,
    /// The channel's red-dot count at that point.
    pub red_dots: u64,
}

impl UserEvent {
    /// Stable kind name.
    pub fn kind(&self) -> &'static str {
        match self {
            UserEvent::TokenSet { .. } => "user.token_set",
            UserEvent::DeviceQuit { .. } => "user.device_quit",
            UserEvent::CommandQueued { .. } => "user.command_queued",
            UserEvent::SyncAcked { .. } => "user.sync_acked",
            UserEvent::UnreadSet { .. } => "user.unread_set",
            UserEvent::ConversationDeleted { .. } => "user.conversation_deleted",
            UserEvent::ConversationJoined { .. } => "user.conversation_joined",
            UserEvent::ConversationLeft { .. } => "user.conversation_left",
            UserEvent::PlatformTokenIssued { .. } => "user.platform_token_issued",
            UserEvent::MessagesHidden { .. } => "user.messages_hidden",
            UserEvent::ConversationSettingsChanged { .. } => "user.conversation_settings_changed",
        }
    }

    /// Events that channels write into user streams rather than the user deciding them.
    pub fn is_written_by_channel(&self) -> bool {
        matches!(self, UserEvent::CommandQueued { .. } | UserEvent::ConversationJoined { .. } | UserEvent::ConversationLeft { .. })
    }
}

/// An instruction to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Register a token for a device kind.
    SetToken {
        /// Device kind (0 app, 1 web, 2 desktop).
        device_flag: DeviceFlag,
        /// Master or slave.
        device_level: DeviceLevel,
        /// The token in clear (only its hash is recorded).
        token: String,
    },
    /// Log a device kind out (`None` = all).
    QuitDevice(Option<DeviceFlag>),
    /// Acknowledge queued commands by the positions of their queue entries.
    AckSync(Vec<Position>),
    /// Acknowledge queued commands by message id (a client's RECVACK of a command it received online);
    /// ids not in the queue are ignored.
    AckCommandMessages(Vec<MessageId>),
    /// Set a conversation's unread count as of the channel's current position.
    SetUnread {
        /// The conversation.
        channel: ChannelKey,
        /// Unread count.
        unread: u64,
        /// Where the channel is now.
        at: ChannelMark,
    },
    /// Delete a conversation up to the channel's current position.
    DeleteConversation {
        /// The conversation.
        channel: ChannelKey,
        /// Where the channel is now.
        at: ChannelMark,
    },
    /// Hide messages of a conversation from this user (those hidden already are skipped).
    HideMessages {
        /// The conversation.
        channel: ChannelKey,
        /// The messages.
        seqs: Vec<MessageSeq>,
    },
    /// Change the user's own settings of a conversation (unchanged fields are left out of the event).
    SetConversation {
        /// The conversation.
        channel: ChannelKey,
        /// Pinned.
        pinned: Option<bool>,
        /// The user's own name for it.
        remark: Option<String>,
    },
    /// Issue a token for an OpenIM platform (1 to 7), replacing the platform's previous one.
    IssuePlatformToken {
        /// The platform.
        platform: u8,
        /// The token in clear (only its hash is recorded).
        token: String,
        /// When it stops authenticating.
        expires_at: Timestamp,
    },
}

/// The OpenIM platforms, 1 to 7.
pub const PLATFORMS: std::ops::RangeInclusive<u8> = 1..=7;

/// The WKProto device kind a session of an OpenIM platform logs in as: phones (iOS 1, Android 2) are
/// the app (0), browsers and mini programs (5, 6) the web (1), desktops (Windows 3, macOS 4, Linux 7)
/// the PC (2). Kick rules are per device kind, so an iOS and an Android session of one user replace
/// each other like two WuKongIM app sessions.
pub fn platform_device_flag(platform: u8) -> DeviceFlag {
    match platform {
        1 | 2 => DeviceFlag(0),
        5 | 6 => DeviceFlag(1),
        _ => DeviceFlag(2),
    }
}

/// A token issued for an OpenIM platform.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PlatformToken {
    /// SHA-256 of the token.
    pub token_hash: ChainHash,
    /// When it stops authenticating.
    pub expires_at: Timestamp,
}

impl PlatformToken {
    /// Whether `token` is this one and still valid at `now`.
    pub fn admits(&self, token: &str, now: Timestamp) -> bool {
        !token.is_empty() && sha256(token.as_bytes()) == self.token_hash && now < self.expires_at
    }
}

/// A registered device token.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct DeviceToken {
    /// Master or slave.
    pub level: DeviceLevel,
    /// SHA-256 of the token.
    pub token_hash: ChainHash,
}

impl DeviceToken {
    /// Whether `token` is the registered one.
    pub fn matches(&self, token: &str) -> bool {
        !token.is_empty() && sha256(token.as_bytes()) == self.token_hash
    }
}

/// A command waiting in the user's write-spread queue.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct QueuedCommand {
    /// Channel of the command.
    pub channel: ChannelKey,
    /// Its command seq.
    pub message_seq: MessageSeq,
    /// Its id.
    pub message_id: MessageId,
}

/// One conversation of the user: membership and what the user did to it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
pub struct ConversationMarks {
    /// Where the channel was when the user joined; `None` after leaving (or never joined: a mark
    /// set by the user alone does not make a conversation).
    pub joined: Option<ChannelMark>,
    /// Last explicit unread setting: (count, where the channel was).
    pub unread_set: Option<(u64, ChannelMark)>,
    /// Messages up to here are hidden from the conversation.
    pub deleted_at: ChannelMark,
    /// Log position of the last change, for the conversation's version.
    pub changed_at: Position,
    /// Messages hidden from this user.
    pub hidden: std::collections::BTreeSet<MessageSeq>,
    /// Pinned to the top of the list.
    pub pinned: bool,
    /// The user's own name for the conversation (empty: none).
    pub remark: String,
}

impl ConversationMarks {
    /// Whether the conversation is listed: the user is a member.
    pub fn is_member(&self) -> bool {
        self.joined.is_some()
    }

    /// The point up to which the user has seen the channel: the latest of joining, deleting the
    /// conversation and the user's own last message (`own_last_sent`).
    pub fn read_base(&self, own_last_sent: Option<ChannelMark>) -> ChannelMark {
        [self.joined.unwrap_or_default(), self.deleted_at, own_last_sent.unwrap_or_default()].into_iter().max_by_key(|m| m.seq).unwrap_or_default()
    }

    /// Unread messages as WuKongIM v2 counts them: every message after the read base (the last seq
    /// minus the base's), or after an explicit unread setting made later than that base (then counted
    /// on top of the set value).
    pub fn unread_by_seq(&self, last: ChannelMark, own_last_sent: Option<ChannelMark>) -> u64 {
        let base = self.read_base(own_last_sent);
        match self.unread_set {
            Some((count, at)) if at.seq >= base.seq => count + last.seq.0.saturating_sub(at.seq.0),
            _ => last.seq.0.saturating_sub(base.seq.0),
        }
    }

    /// Unread messages: red-dot messages of others after the read base, or after an explicit unread
    /// setting made later than that base (then counted on top of the set value).
    pub fn unread(&self, last: ChannelMark, own_last_sent: Option<ChannelMark>) -> u64 {
        let base = self.read_base(own_last_sent);
        match self.unread_set {
            Some((count, at)) if at.seq >= base.seq => count + last.red_dots.saturating_sub(at.red_dots),
            _ => last.red_dots.saturating_sub(base.red_dots),
        }
    }
}

/// The state of one user, rebuilt from its events.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
pub struct UserState {
    /// Registered tokens per device kind.
    pub tokens: BTreeMap<DeviceFlag, DeviceToken>,
    /// Write-spread queue, keyed by the position of the `CommandQueued` event.
    pub pending_commands: BTreeMap<Position, QueuedCommand>,
    /// Per-conversation marks.
    pub conversations: BTreeMap<ChannelKey, ConversationMarks>,
    /// Tokens issued per OpenIM platform.
    pub platform_tokens: BTreeMap<u8, PlatformToken>,
    /// Log position of the last event applied.
    pub position: Position,
}

impl Aggregate for UserState {
    type Key = Uid;
    type Command = UserCommand;
    type Event = UserEvent;

    fn decide(&self, uid: &Uid, cmd: &UserCommand, _now: Timestamp) -> Result<Vec<UserEvent>, Rejection> {
        if uid.0.is_empty() {
            return Err(Rejection::Invalid("uid must not be empty".into()));
        }
        Ok(match cmd {
            UserCommand::SetToken { device_flag, device_level, token } => {
                if token.is_empty() {
                    return Err(Rejection::Invalid("token must not be empty".into()));
                }
                if !device_flag.is_client() {
                    return Err(Rejection::Invalid(format!("unknown device_flag {}", device_flag.0)));
                }
                if device_level.0 > 1 {
                    return Err(Rejection::Invalid(format!("unknown device_level {}", device_level.0)));
                }
                let token_hash = sha256(token.as_bytes());
                let unchanged = self.tokens.get(device_flag).is_some_and(|t| t.level == *device_level && t.token_hash == token_hash);
                if unchanged {
                    Vec::new()
                } else {
                    vec![UserEvent::TokenSet { device_flag: *device_flag, device_level: *device_level, token_hash }]
                }
            }
            UserCommand::QuitDevice(flag) => {
                if let Some(f) = flag {
                    if !f.is_client() {
                        return Err(Rejection::Invalid(format!("unknown device_flag {}", f.0)));
                    }
                }
                let any = match flag {
                    Some(f) => self.tokens.contains_key(f) || self.platform_tokens.keys().any(|p| platform_device_flag(*p) == *f),
                    None => !self.tokens.is_empty() || !self.platform_tokens.is_empty(),
                };
                if any {
                    vec![UserEvent::DeviceQuit { device_flag: *flag }]
                } else {
                    Vec::new()
                }
            }
            UserCommand::AckSync(entries) => {
                let acked: Vec<Position> = entries.iter().copied().filter(|p| self.pending_commands.contains_key(p)).collect();
                if acked.is_empty() {
                    Vec::new()
                } else {
                    vec![UserEvent::SyncAcked { entries: acked }]
                }
            }
            UserCommand::AckCommandMessages(ids) => {
                let acked: Vec<Position> = self.pending_commands.iter().filter(|(_, c)| ids.contains(&c.message_id)).map(|(p, _)| *p).collect();
                if acked.is_empty() {
                    Vec::new()
                } else {
                    vec![UserEvent::SyncAcked { entries: acked }]
                }
            }
            UserCommand::SetUnread { channel, unread, at } => {
                if *unread > at.seq.0 {
                    return Err(Rejection::Invalid(format!("unread {unread} is more than the channel's {} messages", at.seq.0)));
                }
                vec![UserEvent::UnreadSet { channel: channel.clone(), unread: *unread, at: *at }]
            }
            UserCommand::DeleteConversation { channel, at } => {
                vec![UserEvent::ConversationDeleted { channel: channel.clone(), at: *at }]
            }
            UserCommand::IssuePlatformToken { platform, token, expires_at } => {
                if !PLATFORMS.contains(platform) {
                    return Err(Rejection::Invalid(format!("platform must be 1 to 7, got {platform}")));
                }
                if token.is_empty() {
                    return Err(Rejection::Invalid("token must not be empty".into()));
                }
                vec![UserEvent::PlatformTokenIssued { platform: *platform, token_hash: sha256(token.as_bytes()), expires_at: *expires_at }]
            }
            UserCommand::HideMessages { channel, seqs } => {
                let marks = self.conversations.get(channel);
                let mut fresh: Vec<MessageSeq> = seqs.iter().copied().filter(|q| q.0 > 0 && !marks.is_some_and(|m| m.hidden.contains(q))).collect();
                fresh.sort_unstable();
                fresh.dedup();
                if fresh.is_empty() {
                    Vec::new()
                } else {
                    vec![UserEvent::MessagesHidden { channel: channel.clone(), seqs: fresh }]
                }
            }
            UserCommand::SetConversation { channel, pinned, remark } => {
                let marks = self.conversations.get(channel);
                let pinned = pinned.filter(|p| marks.map_or(*p, |m| m.pinned != *p));
                let remark = remark.clone().filter(|r| marks.map_or(!r.is_empty(), |m| m.remark != *r));
                if pinned.is_none() && remark.is_none() {
                    Vec::new()
                } else {
                    vec![UserEvent::ConversationSettingsChanged { channel: channel.clone(), pinned, remark }]
                }
            }
        })
    }

    fn apply(&mut self, position: Position, event: &UserEvent) {
        self.position = self.position.max(position);
        match event {
            UserEvent::TokenSet { device_flag, device_level, token_hash } => {
                self.tokens.insert(*device_flag, DeviceToken { level: *device_level, token_hash: *token_hash });
            }
            UserEvent::DeviceQuit { device_flag: Some(f) } => {
                self.tokens.remove(f);
                self.platform_tokens.retain(|p, _| platform_device_flag(*p) != *f);
            }
            UserEvent::DeviceQuit { device_flag: None } => {
                self.tokens.clear();
                self.platform_tokens.clear();
            }
            UserEvent::PlatformTokenIssued { platform, token_hash, expires_at } => {
                self.platform_tokens.insert(*platform, PlatformToken { token_hash: *token_hash, expires_at: *expires_at });
            }
            UserEvent::MessagesHidden { channel, seqs } => {
                let marks = self.conversations.entry(channel.clone()).or_default();
                marks.hidden.extend(seqs.iter().copied());
                marks.changed_at = marks.changed_at.max(position);
            }
            UserEvent::ConversationSettingsChanged { channel, pinned, remark } => {
                let marks = self.conversations.entry(channel.clone()).or_default();
                if let Some(p) = pinned {
                    marks.pinned = *p;
                }
                if let Some(r) = remark {
                    marks.remark = r.clone();
                }
                marks.changed_at = marks.changed_at.max(position);
            }
            UserEvent::CommandQueued { channel, message_seq, message_id } => {
                self.pending_commands.insert(position, QueuedCommand { channel: channel.clone(), message_seq: *message_seq, message_id: *message_id });
            }
            UserEvent::SyncAcked { entries } => entries.iter().for_each(|p| {
                self.pending_commands.remove(p);
            }),
            // Every arm below touches its own fields or takes a maximum, so channel-written and
            // user-decided events give the same state in whichever order a live actor sees them.
            UserEvent::UnreadSet { channel, unread, at } => {
                let marks = self.conversations.entry(channel.clone()).or_default();
                if marks.unread_set.is_none_or(|(_, prev)| at.seq >= prev.seq) {
                    marks.unread_set = Some((*unread, *at));
                }
                marks.changed_at = marks.changed_at.max(position);
            }
            UserEvent::ConversationDeleted { channel, at } => {
                let marks = self.conversations.entry(channel.clone()).or_default();
                if at.seq >= marks.deleted_at.seq {
                    marks.deleted_at = *at;
                }
                marks.changed_at = marks.changed_at.max(position);
            }
            UserEvent::ConversationJoined { channel, at } => {
                let marks = self.conversations.entry(channel.clone()).or_default();
                marks.joined = Some(*at);
                marks.changed_at = marks.changed_at.max(position);
            }
            UserEvent::ConversationLeft { channel } => {
                let marks = self.conversations.entry(channel.clone()).or_default();
                marks.joined = None;
                marks.changed_at = marks.changed_at.max(position);
            }
        }
    }

    const REALIGN_USES_EVENTS: bool = true;

    fn realign(&mut self, committed: &Self, settled: &[(Position, UserEvent)]) {
        // A placeholder position fails to raise `position` and a touched conversation's `changed_at`;
        // the queue is keyed by position, but only channels queue commands (with real positions).
        for (position, event) in settled {
            match event {
                UserEvent::UnreadSet { channel, .. }
                | UserEvent::MessagesHidden { channel, .. }
                | UserEvent::ConversationSettingsChanged { channel, .. }
                | UserEvent::ConversationDeleted { channel, .. }
                | UserEvent::ConversationJoined { channel, .. }
                | UserEvent::ConversationLeft { channel } => {
                    if let Some(marks) = self.conversations.get_mut(channel) {
                        marks.changed_at = marks.changed_at.max(*position);
                    }
                }
                UserEvent::CommandQueued { .. } => {
                    self.clone_from(committed);
                    return;
                }
                UserEvent::TokenSet { .. } | UserEvent::DeviceQuit { .. } | UserEvent::SyncAcked { .. } | UserEvent::PlatformTokenIssued { .. } => {}
            }
        }
        self.position = committed.position;
        debug_assert_eq!(self, committed, "a user state differs from the committed one by more than its positions");
    }

    fn wrap(event: UserEvent) -> Event {
        Event::User(event)
    }

    fn unwrap(event: &Event) -> Option<&UserEvent> {
        match event {
            Event::User(e) => Some(e),
            _ => None,
        }
    }
}
