//! The business APIs' groups: creating, reading, changing and deleting a tenant's groups, their
//! members, owner and mutes. A group is the channel `<tag>#g<n>` (type 2) with a profile; its rules
//! are the channel aggregate's (`GroupCommand`), and the tenant lists its live groups (`GroupOpened`,
//! `GroupClosed`) so that a page of them is one read.
//!
//! Creating takes two appends (the tenant's number, then the channel) and deleting two (the channel,
//! then the tenant's list). A crash between them leaves a listed number without a live group, which
//! every read skips; nothing acknowledged is lost.

use rookery_actors::{ChannelReply, CoreError, Origin};
use rookery_events::{
    tenant_group, tenant_group_parts, tenant_uid_parts, ChannelCommand, ChannelKey, ChannelState, ChannelType, GroupCommand, GroupPatch, GroupProfile,
    NewGroup, Rejection, TenantCommand, TenantEvent, Timestamp, Uid,
};

use super::{Error, UseCases};

/// Which of a tenant's circles: a group (channel `<tag>#g<n>`, members get conversations) or a
/// chatroom (`<tag>#r<n>`, a live channel: no conversations, members' join times kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circle {
    /// A group.
    Group,
    /// A chatroom.
    Room,
}

impl Circle {
    fn key(self, tag: &str, n: u64) -> ChannelKey {
        match self {
            Circle::Group => tenant_group(tag, n),
            Circle::Room => rookery_events::tenant_room(tag, n),
        }
    }

    fn open(self) -> TenantCommand {
        match self {
            Circle::Group => TenantCommand::OpenGroup,
            Circle::Room => TenantCommand::OpenRoom,
        }
    }

    fn close(self, n: u64) -> TenantCommand {
        match self {
            Circle::Group => TenantCommand::CloseGroup(n),
            Circle::Room => TenantCommand::CloseRoom(n),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Circle::Group => "group",
            Circle::Room => "chatroom",
        }
    }
}

/// A live group as the families show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// Its number in the tenant.
    pub n: u64,
    /// Its channel.
    pub key: ChannelKey,
    /// Profile, owner, mutes.
    pub profile: GroupProfile,
    /// Members, ordered by uid.
    pub members: Vec<Uid>,
    /// When each member joined (chatrooms only).
    pub joined_at: std::collections::BTreeMap<Uid, Timestamp>,
}

/// A group to create.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// The owner (a member).
    pub owner: Uid,
    /// The other first members.
    pub members: Vec<Uid>,
    /// Members (not the owner) who manage the group with the owner.
    pub managers: Vec<Uid>,
    /// Its notice (none when empty).
    pub notice: String,
    /// Name.
    pub name: String,
    /// Description.
    pub desc: String,
    /// Avatar.
    pub avatar: String,
    /// Open to anyone.
    pub public: bool,
    /// Most members.
    pub max_members: u32,
}

fn view(n: u64, key: ChannelKey, state: ChannelState) -> Option<GroupView> {
    let profile = state.group.filter(|_| state.exists)?;
    Some(GroupView { n, key, profile, members: state.subscribers.into_iter().collect(), joined_at: state.joined_at })
}

fn group_error(kind: Circle, n: u64, e: CoreError) -> Error {
    match e {
        CoreError::Rejected(Rejection::ChannelNotFound | Rejection::Disbanded) => Error::NotFound(format!("{} {n}", kind.what())),
        e => Error::Core(e),
    }
}

impl UseCases {
    /// Creates a group of tenant `tag` and answers its number.
    ///
    /// # Errors
    /// [`Error::Core`] with the group's refusal (too many members) or a failing log.
    pub async fn create_group(&self, tag: &str, kind: Circle, spec: GroupSpec, origin: Origin) -> Result<u64, Error> {
        let (_, events) = self.core.tenant(tag, kind.open(), origin.clone()).await?;
        let n = match events.first() {
            Some(TenantEvent::GroupOpened { n } | TenantEvent::RoomOpened { n }) => *n,
            _ => return Err(Error::Core(CoreError::Storage(format!("the tenant numbered no {}", kind.what())))),
        };
        let profile = GroupProfile {
            tenant: tag.to_owned(),
            n,
            name: spec.name,
            desc: spec.desc,
            avatar: spec.avatar,
            public: spec.public,
            owner: spec.owner,
            max_members: spec.max_members,
            muted: Default::default(),
            managers: spec.managers.into_iter().collect(),
            mute_all: false,
            ctime: Timestamp(0),
            mtime: Timestamp(0),
        };
        let cmd = ChannelCommand::Group(GroupCommand::Create(Box::new(NewGroup { profile, members: spec.members, notice: spec.notice })));
        if let Err(e) = self.core.channel(&kind.key(tag, n), cmd, origin.clone()).await {
            // The number stays taken; the list forgets it.
            self.core.tenant(tag, kind.close(n), origin).await?;
            return Err(e.into());
        }
        Ok(n)
    }

    /// The live group number `n` of tenant `tag`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is none, [`Error::Core`] when it cannot be read.
    pub async fn group(&self, tag: &str, kind: Circle, n: u64) -> Result<GroupView, Error> {
        let key = kind.key(tag, n);
        let state = self.core.channel_state(&key).await?;
        view(n, key, state).ok_or_else(|| Error::NotFound(format!("{} {n}", kind.what())))
    }

    /// Applies a group command to group `n` of tenant `tag`; a group emptied of members is taken off
    /// the tenant's list.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown group, [`Error::Core`] with the group's refusal.
    pub async fn change_group(&self, tag: &str, kind: Circle, n: u64, cmd: GroupCommand, origin: Origin) -> Result<(), Error> {
        let key = kind.key(tag, n);
        self.core.channel(&key, ChannelCommand::Group(cmd), origin.clone()).await.map_err(|e| group_error(kind, n, e))?;
        // Emptied of members, the group was deleted: the list forgets it. (A channel view tells without
        // copying the members; its per-user part is not read.)
        if !self.core.channel_view(&key, &Uid::from(rookery_events::SYSTEM_UID)).await?.exists {
            self.core.tenant(tag, kind.close(n), origin).await?;
        }
        Ok(())
    }

    /// Changes a group's name, description or avatar.
    ///
    /// # Errors
    /// As for [`UseCases::change_group`].
    pub async fn update_group(&self, tag: &str, kind: Circle, n: u64, patch: GroupPatch, origin: Origin) -> Result<(), Error> {
        self.change_group(tag, kind, n, GroupCommand::Update(patch), origin).await
    }

    /// Deletes group `n`: its members leave it and it is taken off the tenant's list.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown group, [`Error::Core`] when the log fails.
    pub async fn delete_group(&self, tag: &str, kind: Circle, n: u64, origin: Origin) -> Result<(), Error> {
        self.group(tag, kind, n).await?;
        match self.core.channel(&kind.key(tag, n), ChannelCommand::Delete, origin.clone()).await {
            Ok(ChannelReply::Done { .. } | ChannelReply::Sent(_)) => {}
            Err(e) => return Err(group_error(kind, n, e)),
        }
        self.core.tenant(tag, kind.close(n), origin).await?;
        Ok(())
    }

    /// A page of tenant `tag`'s live groups by number: skips `start`, at most `count`, and the total.
    ///
    /// # Errors
    /// [`Error::Core`] when the tenant or a group cannot be read.
    pub async fn group_page(&self, tag: &str, kind: Circle, start: usize, count: usize) -> Result<(usize, Vec<GroupView>), Error> {
        let (total, ns) = self
            .core
            .tenant_read(tag, move |s| {
                let listed = if kind == Circle::Group { &s.groups } else { &s.rooms };
                (listed.len(), listed.iter().skip(start).take(count).copied().collect::<Vec<u64>>())
            })
            .await?;
        let mut out = Vec::with_capacity(ns.len());
        for n in ns {
            match self.group(tag, kind, n).await {
                Ok(g) => out.push(g),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((total, out))
    }

    /// The live groups of tenant `tag` that `uid` is a member of, by number.
    ///
    /// # Errors
    /// [`Error::Core`] when the user or a group cannot be read.
    pub async fn groups_of(&self, tag: &str, uid: &Uid) -> Result<Vec<GroupView>, Error> {
        let state = self.core.user_state(uid).await?;
        let mut ns: Vec<u64> = state
            .conversations
            .iter()
            .filter(|(k, marks)| k.ty == ChannelType::GROUP && marks.is_member())
            .filter_map(|(k, _)| tenant_group_parts(&k.id).filter(|(t, _)| *t == tag).map(|(_, n)| n))
            .collect();
        ns.sort_unstable();
        let mut out = Vec::with_capacity(ns.len());
        for n in ns {
            match self.group(tag, Circle::Group, n).await {
                Ok(g) if g.members.contains(uid) => out.push(g),
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The live chatrooms of tenant `tag` that `uid` is a member of, by number. Rooms have no
    /// conversations, so this reads every listed room: its cost grows with the tenant's rooms.
    ///
    /// # Errors
    /// [`Error::Core`] when the tenant or a room cannot be read.
    pub async fn rooms_of(&self, tag: &str, uid: &Uid) -> Result<Vec<GroupView>, Error> {
        let ns: Vec<u64> = self.core.tenant_read(tag, |s| s.rooms.iter().copied().collect()).await?;
        let mut out = Vec::new();
        for n in ns {
            match self.group(tag, Circle::Room, n).await {
                Ok(g) if g.members.contains(uid) => out.push(g),
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Takes `uid` out of every group and chatroom of its tenant (a deleted account). An owner hands the group to
    /// the member with the lowest number first; a group left empty is deleted.
    ///
    /// # Errors
    /// [`Error::Core`] when a group cannot be changed.
    pub(crate) async fn leave_all_groups(&self, uid: &Uid, origin: Origin) -> Result<(), Error> {
        let Some((tag, _)) = tenant_uid_parts(uid) else { return Ok(()) };
        let groups = self.groups_of(tag, uid).await?.into_iter().map(|g| (Circle::Group, g));
        let rooms = self.rooms_of(tag, uid).await?.into_iter().map(|g| (Circle::Room, g));
        for (kind, g) in groups.chain(rooms).collect::<Vec<_>>() {
            if g.profile.owner == *uid {
                let heir = g.members.iter().filter(|m| *m != uid).min_by_key(|m| tenant_uid_parts(m).map_or(u64::MAX, |(_, n)| n)).cloned();
                if let Some(heir) = heir {
                    self.change_group(tag, kind, g.n, GroupCommand::TransferOwner(heir), origin.clone()).await?;
                }
            }
            self.change_group(tag, kind, g.n, GroupCommand::Members { add: Vec::new(), remove: vec![uid.clone()] }, origin.clone()).await?;
        }
        Ok(())
    }
}
