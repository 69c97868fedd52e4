//! A user's conversation list as the server keeps it: which conversations have something new for a
//! client, with their unread counts and latest messages, and the marks a user sets on one (unread
//! count, cleared, deleted).

use std::collections::HashMap;

use rookery_actors::Origin;
use rookery_events::{person_channel_parties, ChannelKey, ChannelState, ChannelType, Message, Uid, UserCommand, SYSTEM_UID};

use super::{validate, Error, UseCases};

/// Most conversations one query returns (the most recently changed).
pub const MAX_CONVERSATIONS: usize = 1000;

/// Which conversations a client asks for.
#[derive(Debug, Clone, Default)]
pub struct ConversationQuery {
    /// Whose.
    pub uid: String,
    /// Only conversations with something new since the client's own state: its last seq per
    /// conversation (`(channel id as the user sees it, channel type)`), or, for the others, since the
    /// user's read point.
    pub incremental: bool,
    /// The last message seq the client has of some conversations.
    pub client_seqs: HashMap<(String, u8), u64>,
    /// Latest messages to return per conversation.
    pub recent: usize,
    /// Only conversations with unread messages.
    pub only_unread: bool,
    /// Channel types to leave out, unless the client named the conversation in `client_seqs`.
    pub exclude_types: Vec<u8>,
    /// Only these conversations (`(channel id as the user sees it, channel type)`), when given.
    pub only: Option<Vec<(String, u8)>>,
}

/// One conversation as a client shows it.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// The channel id as the user sees it (the peer of a person channel).
    pub channel_id: String,
    /// The channel type.
    pub channel_type: ChannelType,
    /// Unread messages.
    pub unread: u64,
    /// The seq the user has read to.
    pub read_to_seq: u64,
    /// The newest log position that changed it (the client's `version`).
    pub version: u64,
    /// The seq up to which the user deleted the conversation's messages (0: none).
    pub deleted_to_seq: u64,
    /// Some message of the channel was edited (its readers look edits up).
    pub has_edits: bool,
    /// Its newest messages, newest first (at least one).
    pub recent: Vec<Message>,
}

/// A mark a user sets on one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationMark {
    /// The unread count.
    Unread(u64),
    /// Remove it from the list until a new message arrives.
    Delete,
}

/// The id the user knows a channel by: the peer for person channels.
fn client_id(key: &ChannelKey, uid: &Uid) -> String {
    match (key.ty, person_channel_parties(&key.id)) {
        (ChannelType::PERSON, Some((a, b))) => {
            if a == *uid {
                b.0
            } else {
                a.0
            }
        }
        _ => key.id.0.clone(),
    }
}

impl UseCases {
    /// The conversations of `q.uid` that have something for the client, most recently changed first,
    /// at most [`MAX_CONVERSATIONS`].
    ///
    /// # Errors
    /// [`Error::Invalid`] for a malformed uid, [`Error::Core`] when state cannot be read.
    pub async fn conversations(&self, q: &ConversationQuery) -> Result<Vec<Conversation>, Error> {
        validate::uid("uid", &q.uid)?;
        let uid = Uid::from(q.uid.as_str());
        let user = self.core.user_state(&uid).await?;
        let system = self.core.system_view();
        let mut out = Vec::new();
        for (key, marks) in &user.conversations {
            if !marks.is_member() || !ChannelState::has_conversations(key.ty) {
                continue;
            }
            let cid = client_id(key, &uid);
            if key.ty == ChannelType::PERSON && (cid == SYSTEM_UID || system.is_system(&Uid(cid.clone()))) {
                continue;
            }
            if q.only.as_ref().is_some_and(|only| !only.iter().any(|(id, ty)| *id == cid && *ty == key.ty.0)) {
                continue;
            }
            let client_seq = q.client_seqs.get(&(cid.clone(), key.ty.0)).copied();
            if q.exclude_types.contains(&key.ty.0) && client_seq.is_none() {
                continue;
            }
            let view = self.core.channel_view(key, &uid).await?;
            let last = view.mark;
            let read_base = marks.read_base(view.own_last_sent);
            let bound = match client_seq {
                Some(l) if l > 0 => l,
                _ if q.incremental => read_base.seq.0,
                _ => 0,
            }
            .max(marks.deleted_at.seq.0);
            if last.seq.0 <= bound {
                continue;
            }
            let unread = self.unread_of(marks, last, view.own_last_sent);
            if q.only_unread && unread == 0 {
                continue;
            }
            let (core, k) = (self.core.clone(), key.clone());
            let (from, to, fetch) = (bound + 1, last.seq.0, q.recent.max(1));
            let recents = tokio::task::spawn_blocking(move || core.messages_at(&k, from, to, fetch, true, false))
                .await
                .map_err(|e| rookery_actors::CoreError::Storage(format!("reading recent messages: {e}")))??;
            let Some((newest_position, _)) = recents.first() else { continue };
            let version = newest_position.0.max(marks.changed_at.0);
            let mut recent: Vec<rookery_events::Message> = recents.into_iter().map(|(_, m)| m).collect();
            self.hide_revoked(key, &mut recent, &mut Default::default()).await?;
            out.push(Conversation {
                channel_id: cid,
                channel_type: key.ty,
                unread,
                read_to_seq: read_base.seq.0.min(last.seq.0),
                version,
                deleted_to_seq: marks.deleted_at.seq.0,
                has_edits: view.has_edits,
                recent,
            });
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.version));
        out.truncate(MAX_CONVERSATIONS);
        Ok(out)
    }

    /// Sets `mark` on `uid`'s conversation in channel `channel_id` of type `ty` (named as the user
    /// names it), as of the channel's latest message.
    ///
    /// # Errors
    /// [`Error::Invalid`] for malformed ids, [`Error::NotFound`] for a channel that neither exists nor
    /// has messages, [`Error::Core`] when the log fails.
    pub async fn mark_conversation(&self, uid: &str, channel_id: &str, ty: Option<u8>, mark: ConversationMark, origin: Origin) -> Result<(), Error> {
        validate::uid("uid", uid)?;
        let uid = Uid::from(uid);
        let ty = validate::channel_type(ty)?;
        let key = validate::channel(&uid, channel_id, ty)?;
        let view = self.core.channel_view(&key, &uid).await?;
        if !view.exists && view.mark.seq.0 == 0 {
            return Err(Error::NotFound(format!("channel {channel_id} of type {} has no messages and does not exist", ty.0)));
        }
        let cmd = match mark {
            ConversationMark::Unread(unread) => UserCommand::SetUnread { channel: key, unread, at: view.mark },
            ConversationMark::Delete => UserCommand::DeleteConversation { channel: key, at: view.mark },
        };
        self.core.user(&uid, cmd, origin).await?;
        Ok(())
    }

    /// A conversation's unread count under the configured rule (`unread_counting`).
    fn unread_of(&self, marks: &rookery_events::ConversationMarks, last: rookery_events::ChannelMark, own: Option<rookery_events::ChannelMark>) -> u64 {
        match self.config.unread_counting {
            crate::config::UnreadCounting::Seq => marks.unread_by_seq(last, own),
            crate::config::UnreadCounting::RedDot => marks.unread(last, own),
        }
    }

    /// `uid`'s unread messages in channel `key`.
    ///
    /// # Errors
    /// [`Error::Core`] when state cannot be read.
    pub async fn unread_in(&self, uid: &Uid, key: &ChannelKey) -> Result<u64, Error> {
        let user = self.core.user_state(uid).await?;
        let view = self.core.channel_view(key, uid).await?;
        Ok(user.conversations.get(key).map_or(0, |m| self.unread_of(m, view.mark, view.own_last_sent)))
    }

    /// Marks `uid`'s conversation in `key` read up to `until` (ms; `None`: everything so far): the
    /// messages of others after it stay unread. Looks back at most [`MAX_READ_SCAN`] messages.
    ///
    /// # Errors
    /// [`Error::Core`] when state cannot be read or the log fails.
    pub async fn read_until(&self, uid: &Uid, key: &ChannelKey, until: Option<rookery_events::Timestamp>, origin: Origin) -> Result<(), Error> {
        let view = self.core.channel_view(key, uid).await?;
        let unread = match until {
            None => 0,
            Some(t) => {
                let (core, k, last) = (self.core.clone(), key.clone(), view.mark.seq.0);
                let newest = tokio::task::spawn_blocking(move || core.messages_at(&k, 1, last, MAX_READ_SCAN, true, false))
                    .await
                    .map_err(|e| rookery_actors::CoreError::Storage(format!("reading recent messages: {e}")))??;
                let every = self.config.unread_counting == crate::config::UnreadCounting::Seq;
                newest.iter().take_while(|(_, m)| m.timestamp > t).filter(|(_, m)| m.from_uid != *uid && (every || m.header.red_dot)).count() as u64
            }
        };
        self.core.user(uid, UserCommand::SetUnread { channel: key.clone(), unread: unread.min(view.mark.seq.0), at: view.mark }, origin).await?;
        Ok(())
    }

    /// Sets `uid`'s own settings of the conversation in `key`: pinned, and its name for it.
    ///
    /// # Errors
    /// [`Error::Core`] when the log fails.
    pub async fn set_conversation(&self, uid: &Uid, key: &ChannelKey, pinned: Option<bool>, remark: Option<String>, origin: Origin) -> Result<(), Error> {
        self.core.user(uid, UserCommand::SetConversation { channel: key.clone(), pinned, remark }, origin).await?;
        Ok(())
    }

    /// Hides `uid`'s conversation in `key` until a new message arrives.
    ///
    /// # Errors
    /// [`Error::Core`] when state cannot be read or the log fails.
    pub async fn hide_conversation(&self, uid: &Uid, key: &ChannelKey, origin: Origin) -> Result<(), Error> {
        let view = self.core.channel_view(key, uid).await?;
        self.core.user(uid, UserCommand::DeleteConversation { channel: key.clone(), at: view.mark }, origin).await?;
        Ok(())
    }
}

/// A channel's newest messages after a seq, for a user.
#[derive(Debug, Clone, Default)]
pub struct RecentMessages {
    /// Ascending by seq; retracted ones without payload.
    pub messages: Vec<Message>,
    /// The retracted ones among them, with who retracted them.
    pub revoked: std::collections::BTreeMap<u64, Uid>,
    /// The seq of the user's own last message in the channel (0: none).
    pub own_last_seq: u64,
}

impl UseCases {
    /// The newest `count` ordinary messages of `key` with seq above `after`, and `uid`'s own last seq there.
    ///
    /// # Errors
    /// [`Error::Core`] when state or the log cannot be read.
    pub async fn recent_messages(&self, uid: &Uid, key: &ChannelKey, after: u64, count: usize) -> Result<RecentMessages, Error> {
        let view = self.core.channel_view(key, uid).await?;
        let own_last_seq = view.own_last_sent.map_or(0, |m| m.seq.0);
        let last = view.mark.seq.0;
        if last <= after || count == 0 {
            return Ok(RecentMessages { own_last_seq, ..RecentMessages::default() });
        }
        let page = self.channel_page(key, after + 1, last, count, true).await?;
        Ok(RecentMessages { messages: page.messages, revoked: page.revoked, own_last_seq })
    }
}

/// Most messages [`UseCases::read_until`] looks back through.
pub const MAX_READ_SCAN: usize = 1000;
