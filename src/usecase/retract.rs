//! Retracting a message: only its sender, once, and (where the family says so) within a time window.
//! The message stays in the log, for audits; every read of a channel's history shows it without its
//! content from then on (`UseCases::hide_revoked`).

use rookery_actors::Origin;
use rookery_events::{ChannelCommand, ChannelEvent, ChannelKey, EnvelopeBody, Event, Message, MessageSeq, Position, Uid};

use super::{Error, UseCases};

impl UseCases {
    /// The stored ordinary message at log position `position`, if there is one there.
    ///
    /// # Errors
    /// [`Error::Core`] when the log cannot be read.
    pub fn message_at(&self, position: u64) -> Result<Option<Message>, Error> {
        if position == 0 || position > self.core.log().head().0 .0 {
            return Ok(None);
        }
        let records = self.core.log().read_range(Position(position), 1).map_err(|e| rookery_actors::CoreError::Storage(e.to_string()))?;
        let Some(record) = records.into_iter().find(|r| r.position.0 == position) else { return Ok(None) };
        let body = EnvelopeBody::decode(&record.body).map_err(|e| rookery_actors::CoreError::Storage(format!("record {position}: {e}")))?;
        Ok(match body.event {
            Event::Channel(ChannelEvent::MessageAppended(m)) if !m.header.sync_once => Some(*m),
            _ => None,
        })
    }

    /// The log position and the time of the stored ordinary message `seq` of channel `key`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is none, [`Error::Core`] when the log cannot be read.
    pub async fn message_position(&self, key: &ChannelKey, seq: MessageSeq) -> Result<(u64, rookery_events::Timestamp), Error> {
        let (core, k) = (self.core.clone(), key.clone());
        let found = tokio::task::spawn_blocking(move || core.messages_at(&k, seq.0, seq.0, 1, false, false))
            .await
            .map_err(|e| rookery_actors::CoreError::Storage(format!("reading a message: {e}")))??;
        found.first().map(|(p, m)| (p.0, m.timestamp)).ok_or_else(|| Error::NotFound(format!("message {} of {key}", seq.0)))
    }

    /// The stored ordinary message `seq` of channel `key`, if there is one.
    ///
    /// # Errors
    /// [`Error::Core`] when the log cannot be read.
    pub async fn message_by_seq(&self, key: &ChannelKey, seq: MessageSeq) -> Result<Option<Message>, Error> {
        let (core, k) = (self.core.clone(), key.clone());
        let found = tokio::task::spawn_blocking(move || core.messages_at(&k, seq.0, seq.0, 1, false, false))
            .await
            .map_err(|e| rookery_actors::CoreError::Storage(format!("reading a message: {e}")))??;
        Ok(found.into_iter().map(|(_, m)| m).find(|m| m.message_seq == seq && !m.header.sync_once))
    }

    /// Deletes `message` for everyone on behalf of `by` (its sender only, once).
    ///
    /// # Errors
    /// [`Error::Core`] with the channel's refusal: not the sender, deleted already.
    pub async fn delete_for_all(&self, message: &Message, by: &Uid, origin: Origin) -> Result<(), Error> {
        let cmd = ChannelCommand::DeleteMessage { seq: message.message_seq, from: message.from_uid.clone(), by: by.clone() };
        self.core.channel(&message.channel, cmd, origin).await?;
        Ok(())
    }

    /// Hides messages of channel `key` from `uid` only.
    ///
    /// # Errors
    /// [`Error::Core`] when the log fails.
    pub async fn hide_messages(&self, uid: &Uid, key: &ChannelKey, seqs: Vec<MessageSeq>, origin: Origin) -> Result<(), Error> {
        self.core.user(uid, rookery_events::UserCommand::HideMessages { channel: key.clone(), seqs }, origin).await?;
        Ok(())
    }

    /// Retracts `message` (as read from the log) on behalf of `by`, at most `window_ms` after it was
    /// sent when given.
    ///
    /// # Errors
    /// [`Error::Core`] with the channel's refusal: not the sender, retracted already, too late.
    pub async fn retract(&self, message: &Message, by: &Uid, window_ms: Option<u64>, origin: Origin) -> Result<(), Error> {
        let cmd = ChannelCommand::Revoke { seq: message.message_seq, from: message.from_uid.clone(), sent_at: message.timestamp, by: by.clone(), window_ms };
        self.core.channel(&message.channel, cmd, origin).await?;
        Ok(())
    }
}
