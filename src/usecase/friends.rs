//! Friendships of a tenant's users: mutual, added strictly (an existing friendship refuses the whole
//! request), ended idempotently, each side with its own note about the other. The tenant aggregate
//! holds them by user number, so both sides change in one event.

use rookery_actors::Origin;
use rookery_events::{ChannelCommand, ChannelKey, ChannelType, FriendNote, ListKind, ListOp, TenantCommand, Uid};

use super::accounts::{not_found, view};
use super::{AccountView, Error, UseCases};

impl UseCases {
    /// Makes `username` and each of `peers` (usernames) friends.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user, [`Error::Core`] with `Exists` for a friendship that
    /// exists already.
    pub async fn add_friends(&self, tag: &str, username: &str, peers: Vec<String>, origin: Origin) -> Result<(), Error> {
        self.core.tenant(tag, TenantCommand::AddFriends { username: username.to_owned(), peers }, origin).await.map_err(not_found)?;
        Ok(())
    }

    /// Ends the friendships of `username` with `peers` (those that are not friends are skipped).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user.
    pub async fn remove_friends(&self, tag: &str, username: &str, peers: Vec<String>, origin: Origin) -> Result<(), Error> {
        self.core.tenant(tag, TenantCommand::RemoveFriends { username: username.to_owned(), peers }, origin).await.map_err(not_found)?;
        Ok(())
    }

    /// Changes `username`'s notes about friends: (friend's username, note name, other notes), the
    /// fields given replacing the old ones.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user or one that is not a friend.
    pub async fn set_friend_notes(&self, tag: &str, username: &str, notes: Vec<(String, Option<String>, Option<String>)>, origin: Origin) -> Result<(), Error> {
        self.core.tenant(tag, TenantCommand::SetFriendNotes { username: username.to_owned(), notes }, origin).await.map_err(not_found)?;
        Ok(())
    }

    /// The friends of `username`, by number, with its note about each.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user.
    pub async fn friends(&self, tag: &str, username: &str) -> Result<Vec<(AccountView, FriendNote)>, Error> {
        let (t, name) = (tag.to_owned(), username.to_owned());
        let found = self
            .core
            .tenant_read(tag, move |s| {
                let (n, _) = s.account(&name)?;
                let friends = s.friends.get(&n).into_iter().flatten();
                Some(friends.filter_map(|(p, note)| s.users.get(p).map(|a| (view(&t, *p, a), note.clone()))).collect::<Vec<_>>())
            })
            .await?;
        found.ok_or_else(|| Error::NotFound(format!("user {username:?}")))
    }

    /// Adds `listed` to `owner`'s blacklist (or removes them): their person messages to `owner` are
    /// refused. The list lives on `owner`'s own person channel, which the send path consults.
    ///
    /// # Errors
    /// [`Error::Core`] when the log fails.
    pub async fn change_blacklist(&self, owner: &Uid, listed: Vec<Uid>, add: bool, origin: Origin) -> Result<(), Error> {
        let op = if add { ListOp::Add(listed) } else { ListOp::Remove(listed) };
        self.change_channel(&own_settings(owner), ChannelCommand::List(ListKind::Blacklist, op), origin).await
    }

    /// The users on `owner`'s blacklist.
    ///
    /// # Errors
    /// [`Error::Core`] when the channel cannot be read.
    pub async fn blacklist_of(&self, owner: &Uid) -> Result<Vec<Uid>, Error> {
        Ok(self.core.channel_state(&own_settings(owner)).await?.blacklist.into_iter().collect())
    }
}

/// A user's own person channel, where its settings about others (the blacklist) live.
fn own_settings(uid: &Uid) -> ChannelKey {
    ChannelKey::new(uid.0.clone(), ChannelType::PERSON)
}
