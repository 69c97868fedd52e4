//! Events of stream messages (an AI reply arriving piece by piece): appending one — decided and
//! stored by the channel's actor in the message's own event stream — then pushing it live to the
//! channel's online sessions, in order with the channel's messages; and reading them back.

use std::collections::BTreeMap;
use std::sync::Arc;

use rookery_actors::{CoreError, Origin};

use rookery_events::{
    event_kinds, ChannelKey, ChannelType, ClientMsgNo, Message, MessageEventRecord, MessageHeader, MessageStream, NewMessageEvent, Rejection, Timestamp, Uid,
    STREAM_SETTING, SYSTEM_UID,
};

use super::{validate, Error, Field, Lookup, UseCases};
use crate::presence::{Delivery, EventDelivery, Outbound};

/// Most events one read returns.
pub const MAX_EVENT_PAGE: usize = 2000;

/// Where an event goes: the channel as its caller names it (a person channel by the peer's uid,
/// with `from_uid` the other party), and the message by client_msg_no.
#[derive(Debug, Clone)]
pub struct EventTarget {
    /// The channel id as named.
    pub channel_id: String,
    /// Its type code.
    pub channel_type: Option<u8>,
    /// The stream message's sender; `None` or empty is the system account.
    pub from_uid: Option<String>,
    /// The message's id, when the caller gives it (an edit or revoke finds the message by it).
    pub message_id: Option<i64>,
}

/// The answer to an append.
#[derive(Debug, Clone)]
pub struct AppendedEvent {
    /// The channel the message is in.
    pub channel: ChannelKey,
    /// The message's sender.
    pub from_uid: Uid,
    /// The event's key.
    pub event_key: String,
    /// Its event seq (the key's last one when nothing new was stored).
    pub event_seq: u64,
    /// The key's status after it.
    pub status: &'static str,
    /// Whether it was stored now (`false`: a retry, or a key that had ended).
    pub stored: bool,
}

/// A page of a message's events.
#[derive(Debug, Clone)]
pub struct EventPage {
    /// The events, oldest first.
    pub events: Vec<MessageEventRecord>,
    /// More events follow.
    pub more: bool,
}

impl UseCases {
    /// The channel an event request names.
    fn event_channel(&self, target: &EventTarget) -> Result<(ChannelKey, Uid), Error> {
        let from = match target.from_uid.as_deref() {
            None | Some("") => Uid::from(SYSTEM_UID),
            Some(uid) => {
                validate::uid("from_uid", uid)?;
                Uid::from(uid)
            }
        };
        let key = validate::channel(&from, &target.channel_id, validate::channel_type(target.channel_type)?)?;
        Ok((key, from))
    }

    /// Appends `event` to its stream message, answers once it is durable, then pushes it to the online
    /// sessions of the channel (public events only). A retry of the key's last event id, or any event
    /// for a key that has ended, is answered with the key's state and stores nothing.
    ///
    /// # Errors
    /// [`Error::Invalid`] for malformed input; [`Error::Core`] with `NotFound` when the channel has no
    /// stream message with that client_msg_no, `NotAllowed` when the message's stream has ended.
    pub async fn append_message_event(&self, target: EventTarget, event: NewMessageEvent, origin: Origin) -> Result<AppendedEvent, Error> {
        let (key, _) = self.event_channel(&target)?;
        event.check().map_err(CoreError::from)?;
        // An edit or a revoke may be for any message: find it (by id, else by client_msg_no).
        let message = if event_kinds::is_message_change(&event.event_type) {
            let what = match target.message_id.filter(|id| *id != 0) {
                Some(id) => Lookup { ids: vec![id], ..Lookup::default() },
                None => Lookup { client_msg_nos: vec![event.client_msg_no.0.clone()], ..Lookup::default() },
            };
            let (found, _) = self.find_messages(&key, &what).await?;
            let m = found.into_iter().next().ok_or_else(|| CoreError::Rejected(Rejection::NotFound(format!("message {}", event.client_msg_no.0))))?;
            if m.client_msg_no != event.client_msg_no {
                return Err(Error::invalid(Field::ClientMsgNo, "message_id and client_msg_no name different messages"));
            }
            Some((m.message_seq, m.message_id, m.from_uid))
        } else {
            None
        };
        let reply = self.core.append_message_event(&key, event, message, origin).await?;
        let status = reply.status.as_str();
        if let Some(stored) = &reply.stored {
            if stored.is_public() {
                let message = Delivery {
                    key: key.clone(),
                    from: reply.from_uid.clone(),
                    header: MessageHeader::default(),
                    setting: STREAM_SETTING,
                    expire: 0,
                    client_msg_no: stored.client_msg_no.0.clone(),
                    topic: None,
                    message_id: stored.message_id,
                    message_seq: stored.message_seq.0,
                    timestamp: (stored.occurred_at.max(0) / 1000) as u32,
                    payload: Vec::new(),
                };
                // One rendering for every session, unless each party names the channel by the other.
                let shared = (key.ty != ChannelType::PERSON).then(|| {
                    let data = crate::render::event_data(stored, &key.id.0, key.ty.0, status);
                    let chunk = crate::render::stream_chunk_payload(&data);
                    (data, chunk)
                });
                let item = Outbound::Event(Arc::new(EventDelivery { message, event: stored.clone(), status, shared }));
                self.fanout.submit(item, reply.recipients.clone(), None).await;
            }
        }
        Ok(AppendedEvent {
            channel: key,
            from_uid: reply.from_uid,
            event_key: reply.event_key,
            event_seq: reply.event_seq,
            status,
            stored: reply.stored.is_some(),
        })
    }

    /// The stored events of a stream message with event seq above `after`, at most `limit`, oldest
    /// first; only public ones unless `include_private`; only those of `event_key` when given.
    ///
    /// # Errors
    /// [`Error::Invalid`] for malformed input, [`Error::Core`] on read failures.
    pub async fn message_events(
        &self,
        target: &EventTarget,
        client_msg_no: &str,
        after: u64,
        limit: usize,
        event_key: Option<&str>,
        include_private: bool,
    ) -> Result<(ChannelKey, EventPage), Error> {
        let (key, _) = self.event_channel(target)?;
        let no = ClientMsgNo(validate::client_msg_no(Some(client_msg_no.to_owned()))?);
        let limit = limit.clamp(1, MAX_EVENT_PAGE);
        let (core, k, wanted_key) = (self.core.clone(), key.clone(), event_key.map(str::to_owned));
        // Log reads, off the async threads (as history pages are).
        let page = tokio::task::spawn_blocking(move || {
            let mut events = Vec::new();
            let mut cursor = after;
            // Filtered events do not count toward the page; read on until it is full or the stream ends.
            loop {
                let batch = core.message_events(&k, &no, cursor, limit + 1)?;
                let exhausted = batch.len() <= limit;
                for e in batch {
                    cursor = e.event_seq;
                    if (include_private || e.is_public()) && wanted_key.as_deref().is_none_or(|w| w == e.event_key) {
                        events.push(e);
                    }
                }
                if events.len() > limit || exhausted {
                    break;
                }
            }
            let more = events.len() > limit;
            events.truncate(limit);
            Ok::<_, CoreError>(EventPage { events, more })
        })
        .await
        .map_err(|e| CoreError::Storage(format!("reading message events: {e}")))??;
        Ok((key, page))
    }

    /// The edits among `messages` (of channel `key`): by seq, when last edited and the new content.
    ///
    /// # Errors
    /// [`Error::Core`] when the channel or the events cannot be read.
    pub async fn edits(&self, key: &ChannelKey, messages: &[Message]) -> Result<BTreeMap<u64, (Timestamp, Vec<u8>)>, Error> {
        let mut out = BTreeMap::new();
        let (Some(lo), Some(hi)) = (messages.iter().map(|m| m.message_seq.0).min(), messages.iter().map(|m| m.message_seq.0).max()) else {
            return Ok(out);
        };
        if messages.iter().all(|m| m.header.sync_once) {
            return Ok(out);
        }
        for (seq, at) in self.core.edited(key, lo, hi).await? {
            let Some(m) = messages.iter().find(|m| m.message_seq == seq && !m.header.sync_once) else { continue };
            if let Some(content) = self.core.message_stream(key, &m.client_msg_no).await?.and_then(|s| s.edited_content()) {
                out.insert(seq.0, (at, content));
            }
        }
        Ok(out)
    }

    /// What the durable events of stream message `client_msg_no` of `key` come to.
    ///
    /// # Errors
    /// [`Error::Core`] on read failures.
    pub async fn message_stream(&self, key: &ChannelKey, client_msg_no: &str) -> Result<Option<MessageStream>, Error> {
        Ok(self.core.message_stream(key, &ClientMsgNo(client_msg_no.to_owned())).await?)
    }
}
