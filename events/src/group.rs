//! Groups of the business APIs: a group channel (type 2) that also has a profile, an owner and muted
//! members. Membership is the channel's subscriber set, so sending, fan-out, conversations and the
//! audit trail work for these groups exactly as for any other.

use std::collections::{BTreeMap, BTreeSet};

use bincode::{Decode, Encode};

use crate::aggregate::Rejection;
use crate::channel::{ChannelEvent, ChannelInfo, ChannelState};
use crate::ids::{ChannelKey, ChannelType, Timestamp, Uid};

/// Members muted with this `until` stay muted until the mute is lifted.
pub const MUTED_UNTIL_LIFTED: Timestamp = Timestamp(u64::MAX);

/// What a business group is besides its members.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct GroupProfile {
    /// The tenant that owns the group.
    pub tenant: String,
    /// The group's number in its tenant (the id the families show).
    pub n: u64,
    /// Name.
    pub name: String,
    /// Description.
    pub desc: String,
    /// Avatar: a media id or a URL.
    pub avatar: String,
    /// Anyone may find and join it (else members are added by others).
    pub public: bool,
    /// The owner, always a member.
    pub owner: Uid,
    /// Most members it may have.
    pub max_members: u32,
    /// Members who may not send, with until when (`MUTED_UNTIL_LIFTED`: until lifted).
    pub muted: BTreeMap<Uid, Timestamp>,
    /// Managers (members other than the owner with the right to mute).
    pub managers: BTreeSet<Uid>,
    /// Only the owner and managers may send.
    pub mute_all: bool,
    /// When it was created.
    pub ctime: Timestamp,
    /// When its profile last changed.
    pub mtime: Timestamp,
}

impl GroupProfile {
    /// Whether `uid` may not send at `now` because of a mute.
    pub fn is_muted(&self, uid: &Uid, now: Timestamp) -> bool {
        if self.mute_all && *uid != self.owner && !self.managers.contains(uid) {
            return true;
        }
        self.muted.get(uid).is_some_and(|until| *until > now)
    }
}

/// A group to create: its profile (times are set when it is decided) and its first members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroup {
    /// The profile.
    pub profile: GroupProfile,
    /// Members besides the owner.
    pub members: Vec<Uid>,
    /// Its notice (none when empty).
    pub notice: String,
}

/// A change to a group's profile: the fields given replace the old ones.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
pub struct GroupPatch {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub desc: Option<String>,
    /// New avatar.
    pub avatar: Option<String>,
}

/// The group commands of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupCommand {
    /// Create the group: refused if the channel exists.
    Create(Box<NewGroup>),
    /// Change the profile.
    Update(GroupPatch),
    /// Add and remove members, strictly: adding a member or removing a non-member refuses the whole
    /// change. Removing every member deletes the group; the owner cannot be removed while others stay.
    Members {
        /// To add.
        add: Vec<Uid>,
        /// To remove.
        remove: Vec<Uid>,
    },
    /// Make another member the owner; the old owner stays an ordinary member.
    TransferOwner(Uid),
    /// Mute (until the given time; `MUTED_UNTIL_LIFTED` for good) or, with `None`, unmute members.
    Mute {
        /// Whom.
        uids: Vec<Uid>,
        /// Until when; `None` lifts the mute.
        until: Option<Timestamp>,
    },
    /// Make a member (not the owner) a manager, or an ordinary member again.
    SetManager {
        /// Whom.
        uid: Uid,
        /// Manager or not.
        on: bool,
    },
    /// Mute every member but the owner and managers, or lift that.
    MuteAll(bool),
    /// Delete the group: every member leaves it.
    Disband,
    /// A command on behalf of a user, allowed by the user's role: the owner alone disbands, removes
    /// others, transfers, names managers and changes the profile; the owner or a manager mutes (a
    /// manager never the owner or another manager); any member invites; a non-member may add only
    /// itself, and only to a public group; any member may remove itself.
    As {
        /// The acting user.
        by: Uid,
        /// What it asks.
        cmd: Box<GroupCommand>,
    },
}

impl ChannelState {
    fn group(&self) -> Result<&GroupProfile, Rejection> {
        match (&self.group, self.exists) {
            (Some(g), true) => Ok(g),
            _ => Err(if self.deleted { Rejection::Disbanded } else { Rejection::ChannelNotFound }),
        }
    }

    pub(crate) fn decide_group(&self, key: &ChannelKey, cmd: &GroupCommand, now: Timestamp) -> Result<Vec<ChannelEvent>, Rejection> {
        if key.ty != ChannelType::GROUP && key.ty != ChannelType::LIVE {
            return Err(Rejection::Invalid(format!("channel type {} cannot be a group", key.ty.0)));
        }
        match cmd {
            GroupCommand::Create(new) => {
                if self.exists {
                    return Err(Rejection::Exists(format!("group {}", key.id)));
                }
                let mut members = vec![new.profile.owner.clone()];
                for m in &new.members {
                    if !members.contains(m) {
                        members.push(m.clone());
                    }
                }
                if members.len() > new.profile.max_members as usize {
                    return Err(Rejection::GroupFull);
                }
                if let Some(m) = new.profile.managers.iter().find(|m| **m == new.profile.owner || !members.contains(m)) {
                    return Err(Rejection::Invalid(format!("manager {m} must be a member other than the owner")));
                }
                let profile = GroupProfile { ctime: now, mtime: now, ..new.profile.clone() };
                let mut events = vec![ChannelEvent::Created { info: ChannelInfo::default() }, ChannelEvent::GroupCreated { profile: Box::new(profile) }];
                if !new.notice.is_empty() {
                    events.push(ChannelEvent::GroupNoticeSet { notice: new.notice.clone(), at: now });
                }
                events.push(joined(key, members, now));
                Ok(events)
            }
            GroupCommand::Update(patch) => {
                let g = self.group()?;
                let changed = GroupPatch {
                    name: patch.name.clone().filter(|v| *v != g.name),
                    desc: patch.desc.clone().filter(|v| *v != g.desc),
                    avatar: patch.avatar.clone().filter(|v| *v != g.avatar),
                };
                Ok(if changed == GroupPatch::default() { Vec::new() } else { vec![ChannelEvent::GroupProfileUpdated { patch: changed, at: now }] })
            }
            GroupCommand::Members { add, remove } => {
                let g = self.group()?;
                if add.is_empty() && remove.is_empty() {
                    return Err(Rejection::Invalid("add or remove members".into()));
                }
                let add = dedup(add);
                let remove = dedup(remove);
                if let Some(u) = add.iter().find(|u| self.subscribers.contains(*u) && !remove.contains(*u)) {
                    return Err(Rejection::Exists(format!("member {u}")));
                }
                if let Some(u) = remove.iter().find(|u| !self.subscribers.contains(*u)) {
                    return Err(Rejection::NotFound(format!("member {u}")));
                }
                let after = self.subscribers.len() - remove.len() + add.iter().filter(|u| !self.subscribers.contains(*u) || remove.contains(*u)).count();
                if after > g.max_members as usize {
                    return Err(Rejection::GroupFull);
                }
                if after == 0 {
                    return Ok(vec![ChannelEvent::SubscribersRemoved { uids: remove }, ChannelEvent::Deleted]);
                }
                let owner_leaves = remove.contains(&g.owner) && !add.contains(&g.owner);
                if owner_leaves {
                    return Err(Rejection::Invalid("the owner cannot be removed while others stay: transfer the group first".into()));
                }
                let mut events = Vec::new();
                if !remove.is_empty() {
                    events.push(ChannelEvent::SubscribersRemoved { uids: remove });
                }
                if !add.is_empty() {
                    events.push(joined(key, add, now));
                }
                Ok(events)
            }
            GroupCommand::TransferOwner(to) => {
                let g = self.group()?;
                if !self.subscribers.contains(to) {
                    return Err(Rejection::NotFound(format!("member {to}")));
                }
                Ok(if *to == g.owner { Vec::new() } else { vec![ChannelEvent::OwnerTransferred { from: g.owner.clone(), to: to.clone(), at: now }] })
            }
            GroupCommand::SetManager { uid, on } => {
                let g = self.group()?;
                if !self.subscribers.contains(uid) {
                    return Err(Rejection::NotFound(format!("member {uid}")));
                }
                if *uid == g.owner {
                    return Err(Rejection::Invalid("the owner cannot be a manager".into()));
                }
                Ok(match (g.managers.contains(uid), on) {
                    (false, true) => vec![ChannelEvent::ManagersChanged { added: vec![uid.clone()], removed: Vec::new(), at: now }],
                    (true, false) => vec![ChannelEvent::ManagersChanged { added: Vec::new(), removed: vec![uid.clone()], at: now }],
                    _ => Vec::new(),
                })
            }
            GroupCommand::MuteAll(on) => {
                let g = self.group()?;
                Ok(if g.mute_all == *on { Vec::new() } else { vec![ChannelEvent::MuteAllSet { on: *on, at: now }] })
            }
            GroupCommand::Disband => {
                self.group()?;
                Ok(vec![ChannelEvent::Deleted])
            }
            GroupCommand::As { by, cmd } => {
                let g = self.group()?;
                self.allows(g, by, cmd)?;
                self.decide_group(key, cmd, now)
            }
            GroupCommand::Mute { uids, until } => {
                let g = self.group()?;
                if uids.is_empty() {
                    return Err(Rejection::Invalid("name the members to mute".into()));
                }
                let uids = dedup(uids);
                if let Some(u) = uids.iter().find(|u| !self.subscribers.contains(*u)) {
                    return Err(Rejection::NotFound(format!("member {u}")));
                }
                let until = until.unwrap_or(Timestamp(0));
                let changed: Vec<Uid> = uids.into_iter().filter(|u| g.muted.get(u).copied().unwrap_or(Timestamp(0)) != until).collect();
                Ok(if changed.is_empty() { Vec::new() } else { vec![ChannelEvent::MembersMuted { uids: changed, until, at: now }] })
            }
        }
    }

    /// Whether `by` may ask `cmd` of this group (see [`GroupCommand::As`]).
    fn allows(&self, g: &GroupProfile, by: &Uid, cmd: &GroupCommand) -> Result<(), Rejection> {
        let owner = *by == g.owner;
        let manager = g.managers.contains(by);
        let member = self.subscribers.contains(by);
        let refuse = |what: &str| Err(Rejection::NotAllowed(format!("{by} may not {what} in this group")));
        match cmd {
            GroupCommand::Members { add, remove } => {
                let only_self = |l: &Vec<Uid>| l.iter().all(|u| u == by);
                if !remove.is_empty() && !only_self(remove) && !owner {
                    return refuse("remove members");
                }
                let may_add = add.is_empty() || member || (only_self(add) && g.public);
                if !may_add {
                    return refuse("add members");
                }
                Ok(())
            }
            GroupCommand::Mute { .. } | GroupCommand::MuteAll(_) if !owner && !manager => refuse("mute members"),
            GroupCommand::Mute { uids, .. } if !owner && uids.iter().any(|u| *u == g.owner || g.managers.contains(u)) => refuse("mute the owner or a manager"),
            GroupCommand::Mute { .. } | GroupCommand::MuteAll(_) => Ok(()),
            GroupCommand::As { .. } => Err(Rejection::Invalid("a command on behalf of a user cannot nest".into())),
            GroupCommand::Create(_) => Err(Rejection::Invalid("a group is created by its owner's app".into())),
            _ if owner => Ok(()),
            _ => refuse("do this"),
        }
    }

    /// Applies a group event (the caller has checked it is one).
    pub(crate) fn apply_group(&mut self, event: &ChannelEvent) {
        match event {
            ChannelEvent::GroupCreated { profile } => self.group = Some((**profile).clone()),
            ChannelEvent::GroupProfileUpdated { patch, at } => {
                if let Some(g) = &mut self.group {
                    if let Some(v) = &patch.name {
                        g.name = v.clone();
                    }
                    if let Some(v) = &patch.desc {
                        g.desc = v.clone();
                    }
                    if let Some(v) = &patch.avatar {
                        g.avatar = v.clone();
                    }
                    g.mtime = *at;
                }
            }
            ChannelEvent::GroupNoticeSet { notice, .. } => self.notice = notice.clone(),
            ChannelEvent::ManagersChanged { added, removed, at } => {
                if let Some(g) = &mut self.group {
                    g.managers.extend(added.iter().filter(|u| self.subscribers.contains(*u)).cloned());
                    for u in removed {
                        g.managers.remove(u);
                    }
                    g.mtime = *at;
                }
            }
            ChannelEvent::MuteAllSet { on, at } => {
                if let Some(g) = &mut self.group {
                    g.mute_all = *on;
                    g.mtime = *at;
                }
            }
            ChannelEvent::OwnerTransferred { to, at, .. } => {
                if let Some(g) = &mut self.group {
                    g.owner = to.clone();
                    g.managers.remove(to);
                    g.mtime = *at;
                }
            }
            ChannelEvent::MembersMuted { uids, until, .. } => {
                if let Some(g) = &mut self.group {
                    for u in uids {
                        if until.0 == 0 {
                            g.muted.remove(u);
                        } else {
                            g.muted.insert(u.clone(), *until);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Members joining: a room (a live channel, which has no conversations) records when each joined.
fn joined(key: &ChannelKey, uids: Vec<Uid>, now: Timestamp) -> ChannelEvent {
    if key.ty == ChannelType::LIVE {
        ChannelEvent::RoomMembersAdded { uids, at: now }
    } else {
        ChannelEvent::SubscribersAdded { uids }
    }
}

fn dedup(uids: &[Uid]) -> Vec<Uid> {
    let mut seen = BTreeSet::new();
    uids.iter().filter(|u| seen.insert((*u).clone())).cloned().collect()
}
