//! Channels and their lists as an app server manages them: create or update, delete, subscribers,
//! deny and allow lists. The rules are the channel aggregate's (`ChannelState::decide`); what lives
//! here is naming the channel and the answers every family gives alike.

use rookery_actors::{CoreError, Origin};
use rookery_events::{ChannelCommand, ChannelInfo, ChannelKey, ChannelType, ListKind, ListOp, Rejection, Uid};

use super::{validate, Error, Field, UseCases};

/// A change to one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelChange {
    /// Create it or update its flags, adding subscribers (replacing them with `reset`).
    Upsert {
        /// Its flags.
        info: ChannelInfo,
        /// Subscribers to add.
        subscribers: Vec<Uid>,
        /// Replace the subscriber set instead of adding.
        reset: bool,
    },
    /// Create it or update its flags only.
    SetInfo(ChannelInfo),
    /// Delete it. Deleting a channel that does not exist (any more) succeeds: the caller's goal holds.
    Delete,
    /// Add subscribers (replace them with `reset`), creating the channel if needed.
    AddSubscribers {
        /// At least one.
        uids: Vec<Uid>,
        /// Replace instead of add.
        reset: bool,
    },
    /// Remove subscribers.
    RemoveSubscribers(Vec<Uid>),
    /// Change its deny or allow list.
    List(ListKind, ListOp),
}

impl UseCases {
    /// The channel named by its own `id` and type code (never a person conversation's `a@b` id: a
    /// person-type key names one user's own settings).
    ///
    /// # Errors
    /// [`Error::Invalid`] on [`Field::ChannelId`] or [`Field::ChannelType`].
    pub fn channel_key(id: &str, ty: Option<i64>) -> Result<ChannelKey, Error> {
        validate::id(Field::ChannelId, "channel_id", id)?;
        let ty = match ty {
            None => None,
            Some(n) => Some(u8::try_from(n).map_err(|_| Error::invalid(Field::ChannelType, format!("unknown channel_type {n}")))?),
        };
        Ok(ChannelKey::new(id, validate::channel_type(ty)?))
    }

    /// Applies `change` to channel `key` and waits until it is durable.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a change the channel type cannot take (subscribers of a person channel,
    /// deleting a person channel), [`Error::Core`] when the channel refuses or the log fails.
    pub async fn change_channel(&self, key: &ChannelKey, change: ChannelChange, origin: Origin) -> Result<(), Error> {
        let touches_subscribers = match &change {
            ChannelChange::Upsert { subscribers, .. } => !subscribers.is_empty(),
            ChannelChange::AddSubscribers { .. } | ChannelChange::RemoveSubscribers(_) => true,
            _ => false,
        };
        if touches_subscribers {
            validate::may_have_subscribers(key.ty)?;
        }
        let cmd = match change {
            ChannelChange::Upsert { info, subscribers, reset } => ChannelCommand::Upsert { info, subscribers, reset },
            ChannelChange::SetInfo(info) => ChannelCommand::SetInfo(info),
            ChannelChange::Delete if key.ty == ChannelType::PERSON => return Err(Error::invalid(Field::ChannelType, "person channels cannot be deleted")),
            ChannelChange::Delete => {
                return match self.core.channel(key, ChannelCommand::Delete, origin).await {
                    Ok(_) | Err(CoreError::Rejected(Rejection::ChannelNotFound | Rejection::Disbanded)) => Ok(()),
                    Err(e) => Err(e.into()),
                };
            }
            ChannelChange::AddSubscribers { uids, reset } => ChannelCommand::AddSubscribers { uids, reset },
            ChannelChange::RemoveSubscribers(uids) => ChannelCommand::RemoveSubscribers(uids),
            ChannelChange::List(kind, op) => ChannelCommand::List(kind, op),
        };
        self.core.channel(key, cmd, origin).await?;
        Ok(())
    }

    /// The allow list of channel `key`, sorted (a channel that does not exist has none).
    ///
    /// # Errors
    /// [`Error::Core`] when the channel cannot be read.
    pub async fn whitelist(&self, key: &ChannelKey) -> Result<Vec<Uid>, Error> {
        Ok(self.core.channel_state(key).await?.whitelist.into_iter().collect())
    }
}
