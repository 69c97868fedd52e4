//! Friendships of a tenant's users: mutual, added strictly (an existing friendship refuses the whole
//! request), ended idempotently, each side with its own note about the other. The tenant aggregate
//! holds them by user number, so both sides change in one event.

use rookery_actors::Origin;
use rookery_events::{ChannelCommand, ChannelKey, ChannelType, FriendNote, FriendRequest, ListKind, ListOp, TenantCommand, TenantEvent, Uid};

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

    /// User `from` asks user `to` (by number) to be friends; answers the request's number.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user, [`Error::Core`] with the tenant's refusal (oneself,
    /// friends already, a request pending).
    pub async fn request_friend(&self, tag: &str, from: u64, to: u64, postscript: String, origin: Origin) -> Result<u64, Error> {
        let (_, events) = self.core.tenant(tag, TenantCommand::RequestFriend { from, to, postscript }, origin).await.map_err(not_found)?;
        events
            .iter()
            .find_map(|e| if let TenantEvent::FriendRequested { nid, .. } = e { Some(*nid) } else { None })
            .ok_or_else(|| Error::Core(rookery_actors::CoreError::Storage("the tenant numbered no request".into())))
    }

    /// User `by` agrees to (or refuses) friend request `nid`.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown request, [`Error::Core`] with the tenant's refusal (not the
    /// addressee, answered already).
    pub async fn answer_friend_request(&self, tag: &str, by: u64, nid: u64, agree: bool, origin: Origin) -> Result<(), Error> {
        self.core.tenant(tag, TenantCommand::AnswerFriendRequest { by, nid, agree }, origin).await.map_err(not_found)?;
        Ok(())
    }

    /// The friend requests addressed to user `to`, newest first.
    ///
    /// # Errors
    /// [`Error::Core`] when the tenant cannot be read.
    pub async fn friend_requests_to(&self, tag: &str, to: u64) -> Result<Vec<(u64, FriendRequest)>, Error> {
        Ok(self.core.tenant_read(tag, move |s| s.requests.iter().rev().filter(|(_, r)| r.to == to).map(|(n, r)| (*n, r.clone())).collect()).await?)
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
