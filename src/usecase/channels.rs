//! Channels and their lists as an app server manages them: create or update, delete, subscribers,
//! deny and allow lists. The rules are the channel aggregate's (`ChannelState::decide`); what lives
//! here is naming the channel and the answers every family gives alike.

use rookery_actors::{CoreError, Origin};
use rookery_events::{ChannelCommand, ChannelKey, ChannelType, Rejection, Uid};

use super::{validate, Error, Field, UseCases};

impl UseCases {
    /// The channel named by its own `id` and type code (never a person conversation's `a@b` id: a
    /// person-type key names one user's own settings).
    ///
    /// # Errors
    /// [`Error::Invalid`] on [`Field::ChannelId`] or [`Field::ChannelType`].
    pub fn channel_key(id: &str, ty: Option<i64>) -> Result<ChannelKey, Error> {
        // Only the channels the app server names itself: a tenant's groups and rooms (`<tag>#g<n>`,
        // `<tag>#r<n>`) are changed through their own family, never created or reshaped here.
        validate::id(Field::ChannelId, "channel_id", id)?;
        let ty = match ty {
            None => None,
            Some(n) => Some(u8::try_from(n).map_err(|_| Error::invalid(Field::ChannelType, format!("unknown channel_type {n}")))?),
        };
        Ok(ChannelKey::new(id, validate::channel_type(ty)?))
    }

    /// Applies `cmd` to channel `key` and waits until it is durable. Deleting a channel that does not
    /// exist (any more) succeeds: the caller's goal holds. Sends and erasures have their own use cases.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a change the channel type cannot take (subscribers of a person channel,
    /// deleting a person channel) and for a send or an erasure, [`Error::Core`] when the channel
    /// refuses or the log fails.
    pub async fn change_channel(&self, key: &ChannelKey, cmd: ChannelCommand, origin: Origin) -> Result<(), Error> {
        match &cmd {
            ChannelCommand::Upsert { subscribers, .. } if !subscribers.is_empty() => validate::may_have_subscribers(key.ty)?,
            ChannelCommand::AddSubscribers { .. } | ChannelCommand::RemoveSubscribers(_) => validate::may_have_subscribers(key.ty)?,
            ChannelCommand::Delete if key.ty == ChannelType::PERSON => return Err(Error::invalid(Field::ChannelType, "person channels cannot be deleted")),
            ChannelCommand::Send(_) | ChannelCommand::ErasePayloads { .. } => {
                return Err(Error::invalid(Field::Header, "sends and erasures are not channel changes"));
            }
            _ => {}
        }
        let delete = matches!(cmd, ChannelCommand::Delete);
        match self.core.channel(key, cmd, origin).await {
            Ok(_) => Ok(()),
            Err(CoreError::Rejected(Rejection::ChannelNotFound | Rejection::Disbanded)) if delete => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The allow list of channel `key`, sorted (a channel that does not exist has none).
    ///
    /// # Errors
    /// [`Error::Core`] when the channel cannot be read.
    pub async fn whitelist(&self, key: &ChannelKey) -> Result<Vec<Uid>, Error> {
        Ok(self.core.channel_state(key).await?.whitelist.into_iter().collect())
    }

    /// Takes every subscriber out of channel `key` (the channel stays). Members added while this runs
    /// stay members.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a channel that does not exist, [`Error::Core`] when the log fails.
    pub async fn remove_all_subscribers(&self, key: &ChannelKey, origin: Origin) -> Result<(), Error> {
        let state = self.core.channel_state(key).await?;
        if !state.exists {
            return Err(Error::NotFound(format!("channel {} of type {}", key.id, key.ty.0)));
        }
        if state.subscribers.is_empty() {
            return Ok(());
        }
        self.change_channel(key, ChannelCommand::RemoveSubscribers(state.subscribers.into_iter().collect()), origin).await
    }
}
