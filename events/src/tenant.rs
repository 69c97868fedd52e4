//! The tenant aggregate: one app of the business APIs (a JMessage appkey, later the PopIM and OpenIM
//! apps) and the accounts it owns: usernames, profiles and password hashes.
//!
//! A tenant has a short `tag` chosen in the configuration. Its users are numbered `1, 2, ...` in
//! registration order and never renumbered: the uid a user has everywhere else in the server (person
//! channels, groups, WKProto logins) is `<tag>#<n>` ([`tenant_uid`]). A username deleted and
//! registered again gets a new number, so nothing that named the old account (a conversation, a
//! group membership, a token) ever speaks for the new one.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};

use crate::aggregate::{Aggregate, Rejection};
use crate::chain::Position;
use crate::envelope::Event;
use crate::ids::{ChannelId, ChannelKey, ChannelType, Timestamp, Uid};

/// The uid of user number `n` of tenant `tag`. `#` never occurs in ids made through the WuKongIM
/// API, so tenant uids cannot clash with those.
pub fn tenant_uid(tag: &str, n: u64) -> Uid {
    Uid(format!("{tag}#{n}"))
}

/// The tenant tag and user number of a tenant uid, or `None` for any other uid.
pub fn tenant_uid_parts(uid: &Uid) -> Option<(&str, u64)> {
    tenant_id_parts(&uid.0, "")
}

/// The group channel of group number `n` of tenant `tag`: `<tag>#g<n>`, type 2.
pub fn tenant_group(tag: &str, n: u64) -> ChannelKey {
    ChannelKey::new(format!("{tag}#g{n}"), ChannelType::GROUP)
}

/// The tenant tag and group number of a tenant group's channel id, or `None` for any other id.
pub fn tenant_group_parts(id: &ChannelId) -> Option<(&str, u64)> {
    tenant_id_parts(&id.0, "g")
}

/// The channel of chatroom number `n` of tenant `tag`: `<tag>#r<n>`, a live channel (type 9: members
/// receive its messages, nobody gets a conversation).
pub fn tenant_room(tag: &str, n: u64) -> ChannelKey {
    ChannelKey::new(format!("{tag}#r{n}"), ChannelType::LIVE)
}

/// The tenant tag and chatroom number of a chatroom's channel id, or `None` for any other id.
pub fn tenant_room_parts(id: &ChannelId) -> Option<(&str, u64)> {
    tenant_id_parts(&id.0, "r")
}

/// `<tag>#<kind><n>`: a tag of 1 to 8 of `a-z 0-9`, then a number without leading zeros.
fn tenant_id_parts<'a>(id: &'a str, kind: &str) -> Option<(&'a str, u64)> {
    let (tag, rest) = id.split_once('#')?;
    let digits = rest.strip_prefix(kind)?;
    let valid_tag = !tag.is_empty() && tag.len() <= 8 && tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let valid_digits = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    if !valid_tag || !valid_digits {
        return None;
    }
    digits.parse().ok().map(|n| (tag, n))
}

/// What a user tells about themselves. Every field is optional, and unset is not the same as empty:
/// a family shows only the fields that were set. Text is stored as the family accepted it; each
/// family checks its own limits before anything reaches the domain.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
pub struct Profile {
    /// Shown name.
    pub nickname: Option<String>,
    /// Avatar: a media id or a URL.
    pub avatar: Option<String>,
    /// Date of birth, `yyyy-MM-dd`.
    pub birthday: Option<String>,
    /// 0 unknown, 1 male, 2 female.
    pub gender: Option<u8>,
    /// Signature line.
    pub signature: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Address.
    pub address: Option<String>,
    /// Mobile number.
    pub mobile: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// The app's own fields: a JSON object as compact text.
    pub extras: Option<String>,
}

impl Profile {
    /// This profile with every field that `patch` sets replaced.
    pub fn patched(&self, patch: &Profile) -> Profile {
        fn pick<T: Clone>(new: &Option<T>, old: &Option<T>) -> Option<T> {
            new.clone().or_else(|| old.clone())
        }
        Profile {
            nickname: pick(&patch.nickname, &self.nickname),
            avatar: pick(&patch.avatar, &self.avatar),
            birthday: pick(&patch.birthday, &self.birthday),
            gender: pick(&patch.gender, &self.gender),
            signature: pick(&patch.signature, &self.signature),
            region: pick(&patch.region, &self.region),
            address: pick(&patch.address, &self.address),
            mobile: pick(&patch.mobile, &self.mobile),
            email: pick(&patch.email, &self.email),
            extras: pick(&patch.extras, &self.extras),
        }
    }
}

/// A salted, stretched password hash. The clear password never reaches the domain: the hash is made
/// outside (salt from the operating system's generator) and passed in.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PasswordHash {
    /// The scheme: 1 = PBKDF2-HMAC-SHA256; 0 = no password (an account that signs in with tokens only).
    pub scheme: u8,
    /// Iterations of the scheme.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// The derived key.
    pub hash: Vec<u8>,
}

/// One account of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Account {
    /// The login name, unique among the tenant's live accounts (case-sensitive).
    pub username: String,
    /// The profile.
    pub profile: Profile,
    /// The password hash.
    pub password: PasswordHash,
    /// When it was registered.
    pub ctime: Timestamp,
    /// When its profile or password last changed.
    pub mtime: Timestamp,
}

/// One account in a [`TenantEvent::UsersRegistered`].
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Registration {
    /// The number the account got.
    pub n: u64,
    /// Its login name.
    pub username: String,
    /// Its profile.
    pub profile: Profile,
    /// Its password hash.
    pub password: PasswordHash,
}

/// Something that happened to a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum TenantEvent {
    /// Accounts were registered, numbered in order.
    UsersRegistered {
        /// The new accounts.
        users: Vec<Registration>,
        /// When.
        at: Timestamp,
    },
    /// An account's profile changed: the fields `patch` sets replace the old ones.
    ProfileUpdated {
        /// Whose.
        n: u64,
        /// The changed fields only.
        patch: Profile,
        /// When.
        at: Timestamp,
    },
    /// An account's password was replaced.
    PasswordChanged {
        /// Whose.
        n: u64,
        /// The new hash.
        password: PasswordHash,
        /// When.
        at: Timestamp,
    },
    /// Accounts were deleted; their usernames are free again, their numbers are never reused.
    UsersUnregistered {
        /// The deleted accounts.
        ns: Vec<u64>,
    },
    /// A group number was taken and the group listed (its channel is created next).
    GroupOpened {
        /// The group's number.
        n: u64,
    },
    /// A group left the list (its channel was deleted, or never came to be).
    GroupClosed {
        /// The group's number.
        n: u64,
    },
    /// User `n` and each of `peers` became friends (both ways).
    FriendsAdded {
        /// The user who asked.
        n: u64,
        /// The new friends.
        peers: Vec<u64>,
        /// When.
        at: Timestamp,
    },
    /// User `n` and each of `peers` are friends no more (both ways).
    FriendsRemoved {
        /// The user who asked.
        n: u64,
        /// The former friends.
        peers: Vec<u64>,
    },
    /// User `n`'s notes about some of its friends changed (its own side only).
    FriendNotesSet {
        /// Whose notes.
        n: u64,
        /// For each friend, the fields that change.
        notes: Vec<NoteChange>,
    },
    /// Words joined the sensitive-word list, in this order.
    SensitiveWordsAdded {
        /// The new words.
        words: Vec<String>,
        /// When.
        at: Timestamp,
    },
    /// A sensitive word was replaced by another, keeping its place in the list.
    SensitiveWordRenamed {
        /// The old word.
        old: String,
        /// The new word.
        new: String,
        /// When.
        at: Timestamp,
    },
    /// A word left the sensitive-word list.
    SensitiveWordRemoved {
        /// The word.
        word: String,
    },
    /// Masking sensitive words in sent text was switched on or off.
    SensitiveFilterSwitched {
        /// On.
        on: bool,
    },
    /// The app's SDK registration switch (kept and shown; this server has no SDK registration).
    SdkRegistrationSwitched {
        /// On.
        on: bool,
    },
    /// User `n`'s no-disturb settings changed (only the net changes are listed).
    NoDisturbChanged {
        /// Whose.
        n: u64,
        /// Users whose single messages no longer disturb.
        single_added: Vec<u64>,
        /// Users whose single messages disturb again.
        single_removed: Vec<u64>,
        /// Groups whose messages no longer disturb.
        groups_added: Vec<u64>,
        /// Groups whose messages disturb again.
        groups_removed: Vec<u64>,
        /// No-disturb for everything, switched on or off.
        global: Option<bool>,
    },
    /// User `n` shielded groups' messages, or stopped shielding them.
    GroupsShielded {
        /// Whose.
        n: u64,
        /// Groups now shielded.
        added: Vec<u64>,
        /// Groups no longer shielded.
        removed: Vec<u64>,
    },
    /// A chatroom number was taken and the room listed (its channel is created next).
    RoomOpened {
        /// The room's number.
        n: u64,
    },
    /// A chatroom left the list.
    RoomClosed {
        /// The room's number.
        n: u64,
    },
    /// An uploaded file was stored (its bytes were durable in the blob store before this event).
    MediaStored {
        /// What was stored.
        record: MediaRecord,
    },
    /// User `from` asked user `to` to be friends (request number `nid`).
    FriendRequested {
        /// The request's number in the tenant.
        nid: u64,
        /// Who asks.
        from: u64,
        /// Whom.
        to: u64,
        /// The asker's note.
        postscript: String,
        /// When.
        at: Timestamp,
    },
    /// The addressee of request `nid` agreed (the two are friends from now on) or refused.
    FriendRequestAnswered {
        /// The request.
        nid: u64,
        /// Agreed.
        agree: bool,
        /// When.
        at: Timestamp,
    },
    /// A canned reply was added (a new `id`) or replaced; a default clears the other defaults of its type.
    ReplySaved {
        /// Its id in the tenant.
        id: u64,
        /// The reply.
        reply: Reply,
    },
    /// A canned reply was removed.
    ReplyRemoved {
        /// Its id.
        id: u64,
    },
}

/// A request to be friends.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct FriendRequest {
    /// Who asks.
    pub from: u64,
    /// Whom.
    pub to: u64,
    /// The asker's note.
    pub postscript: String,
    /// When it was made.
    pub at: Timestamp,
    /// `None` while pending, then agreed or not.
    pub answer: Option<bool>,
}

/// A canned reply of an app (welcome text, quick reply, or frequent question).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Reply {
    /// 1 welcome, 2 quick reply, 3 frequent question.
    pub kind: u8,
    /// Title (the question for kind 3).
    pub title: String,
    /// Keyword.
    pub keyword: String,
    /// The reply's text.
    pub content: String,
    /// Order: larger first.
    pub weights: i64,
    /// The default of its kind.
    pub is_default: bool,
}

/// An uploaded file: its bytes live in the blob store under their SHA-256, the record here.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct MediaRecord {
    /// `image`, `file` or `voice`.
    pub kind: String,
    /// SHA-256 of the bytes, lower-case hex: the blob's name.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC-32 (IEEE) of the bytes.
    pub crc32: u32,
    /// Format: `jpg`, `png`, `gif`, `bmp` for images, else the file name's extension.
    pub format: String,
    /// Image width in pixels (0 for other kinds).
    pub width: u32,
    /// Image height in pixels (0 for other kinds).
    pub height: u32,
    /// The uploaded file's name.
    pub name: String,
    /// When it was stored.
    pub at: Timestamp,
}

/// A user's no-disturb settings. Stored and audited; this server pushes no notifications for them to
/// silence, and a later push or offline webhook reads them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
pub struct NoDisturb {
    /// Users (by number) whose single messages do not disturb.
    pub single: std::collections::BTreeSet<u64>,
    /// Groups (by number) whose messages do not disturb.
    pub groups: std::collections::BTreeSet<u64>,
    /// Nothing disturbs.
    pub global: bool,
}

/// Most words the sensitive-word list holds.
pub const MAX_SENSITIVE_WORDS: usize = 100;
/// Longest sensitive word, in characters.
pub const MAX_SENSITIVE_WORD_CHARS: usize = 10;

/// What a user notes about a friend.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct FriendNote {
    /// The name the user shows for the friend.
    pub note_name: String,
    /// Other notes.
    pub others: String,
    /// Friends since.
    pub since: Timestamp,
}

/// A change of a user's note about one friend: the fields given replace the old ones.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct NoteChange {
    /// The friend.
    pub peer: u64,
    /// New note name.
    pub note_name: Option<String>,
    /// New other notes.
    pub others: Option<String>,
}

impl TenantEvent {
    /// Stable kind name.
    pub fn kind(&self) -> &'static str {
        match self {
            TenantEvent::UsersRegistered { .. } => "tenant.users_registered",
            TenantEvent::ProfileUpdated { .. } => "tenant.profile_updated",
            TenantEvent::PasswordChanged { .. } => "tenant.password_changed",
            TenantEvent::UsersUnregistered { .. } => "tenant.users_unregistered",
            TenantEvent::GroupOpened { .. } => "tenant.group_opened",
            TenantEvent::GroupClosed { .. } => "tenant.group_closed",
            TenantEvent::FriendsAdded { .. } => "tenant.friends_added",
            TenantEvent::FriendsRemoved { .. } => "tenant.friends_removed",
            TenantEvent::FriendNotesSet { .. } => "tenant.friend_notes_set",
            TenantEvent::SensitiveWordsAdded { .. } => "tenant.sensitive_words_added",
            TenantEvent::SensitiveWordRenamed { .. } => "tenant.sensitive_word_renamed",
            TenantEvent::SensitiveWordRemoved { .. } => "tenant.sensitive_word_removed",
            TenantEvent::SensitiveFilterSwitched { .. } => "tenant.sensitive_filter_switched",
            TenantEvent::SdkRegistrationSwitched { .. } => "tenant.sdk_registration_switched",
            TenantEvent::NoDisturbChanged { .. } => "tenant.no_disturb_changed",
            TenantEvent::GroupsShielded { .. } => "tenant.groups_shielded",
            TenantEvent::RoomOpened { .. } => "tenant.room_opened",
            TenantEvent::RoomClosed { .. } => "tenant.room_closed",
            TenantEvent::MediaStored { .. } => "tenant.media_stored",
            TenantEvent::FriendRequested { .. } => "tenant.friend_requested",
            TenantEvent::FriendRequestAnswered { .. } => "tenant.friend_request_answered",
            TenantEvent::ReplySaved { .. } => "tenant.reply_saved",
            TenantEvent::ReplyRemoved { .. } => "tenant.reply_removed",
        }
    }
}

/// An account to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    /// Login name.
    pub username: String,
    /// Profile.
    pub profile: Profile,
    /// Password hash.
    pub password: PasswordHash,
}

/// An instruction to a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantCommand {
    /// Register accounts. A username already taken, or named twice in the batch, is skipped (the
    /// caller tells which were by comparing with the event); the others are registered in order.
    Register(Vec<NewAccount>),
    /// Change the profile fields `patch` sets.
    UpdateProfile {
        /// Whose.
        username: String,
        /// The fields to set.
        patch: Profile,
    },
    /// Replace the password.
    ChangePassword {
        /// Whose.
        username: String,
        /// The new hash.
        password: PasswordHash,
    },
    /// Delete accounts: every one must exist, or nothing is deleted.
    Unregister(Vec<String>),
    /// Take the next group number and list the group.
    OpenGroup,
    /// Take a group off the list (nothing happens for one not on it).
    CloseGroup(u64),
    /// Make `username` and each of `peers` friends: refused when one is a friend already, or is
    /// this tenant's uid without a live account.
    AddFriends {
        /// Who asks.
        username: String,
        /// The new friends, by username.
        peers: Vec<String>,
    },
    /// End friendships (peers that are not friends are skipped).
    RemoveFriends {
        /// Who asks.
        username: String,
        /// The former friends, by username.
        peers: Vec<String>,
    },
    /// Change `username`'s notes about friends (named by username): refused when one is not a friend.
    SetFriendNotes {
        /// Whose notes.
        username: String,
        /// The changes: friend's username, new note name, new other notes.
        notes: Vec<(String, Option<String>, Option<String>)>,
    },
    /// Add sensitive words (1 to 10 characters each; words on the list already are skipped; the list
    /// holds at most 100).
    AddSensitiveWords(Vec<String>),
    /// Replace a sensitive word by another.
    RenameSensitiveWord {
        /// The word on the list.
        old: String,
        /// Its replacement.
        new: String,
    },
    /// Remove a sensitive word.
    RemoveSensitiveWord(String),
    /// Switch masking of sensitive words on or off.
    SwitchSensitiveFilter(bool),
    /// Switch SDK registration on or off.
    SwitchSdkRegistration(bool),
    /// Change a user's no-disturb settings: users by username, groups by number. Adding a group whose
    /// no-disturb is on already is refused (`Exists`), as is removing one whose no-disturb is off
    /// (`NotAllowed`); single users are added and removed idempotently.
    SetNoDisturb {
        /// Whose.
        username: String,
        /// Users to add.
        single_add: Vec<String>,
        /// Users to remove.
        single_remove: Vec<String>,
        /// Groups to add.
        groups_add: Vec<u64>,
        /// Groups to remove.
        groups_remove: Vec<u64>,
        /// Everything on or off.
        global: Option<bool>,
    },
    /// Record a stored upload (the same bytes of the same kind again change nothing).
    StoreMedia(MediaRecord),
    /// Take the next chatroom number and list the room.
    OpenRoom,
    /// Take a chatroom off the list (nothing happens for one not on it).
    CloseRoom(u64),
    /// User `from` asks user `to` (by number) to be friends: refused for oneself, for friends already,
    /// and while an earlier request between the two is pending.
    RequestFriend {
        /// Who asks.
        from: u64,
        /// Whom.
        to: u64,
        /// The asker's note.
        postscript: String,
    },
    /// User `by` answers request `nid`: only its addressee, only while it is pending.
    AnswerFriendRequest {
        /// Who answers.
        by: u64,
        /// The request.
        nid: u64,
        /// Agree.
        agree: bool,
    },
    /// Add a canned reply (`id` `None`) or replace reply `id`.
    SaveReply {
        /// The reply to replace, or none for a new one.
        id: Option<u64>,
        /// The reply.
        reply: Reply,
    },
    /// Remove canned reply `id`.
    RemoveReply(u64),
    /// Shield groups' messages from a user, or stop (idempotently).
    ShieldGroups {
        /// Whose.
        username: String,
        /// Groups to shield.
        add: Vec<u64>,
        /// Groups to stop shielding.
        remove: Vec<u64>,
    },
}

/// The state of one tenant, rebuilt from its events.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
pub struct TenantState {
    /// Live accounts by number.
    pub users: BTreeMap<u64, Account>,
    /// Live accounts' numbers by username.
    pub by_name: BTreeMap<String, u64>,
    /// The highest number ever given.
    pub last_n: u64,
    /// Listed groups, by number.
    pub groups: std::collections::BTreeSet<u64>,
    /// The highest group number ever given.
    pub last_group: u64,
    /// Friendships of this tenant's users by number, both ways: user -> friend -> the user's note.
    pub friends: BTreeMap<u64, BTreeMap<u64, FriendNote>>,
    /// The sensitive words in the order they were added, with when.
    pub sensitive_words: Vec<(String, Timestamp)>,
    /// Sent text has its sensitive words masked.
    pub sensitive_filter_on: bool,
    /// SDK registration is switched off (it is on unless switched off).
    pub sdk_registration_off: bool,
    /// Users' no-disturb settings, by user number.
    pub no_disturb: BTreeMap<u64, NoDisturb>,
    /// Groups each user shields, by user number.
    pub shields: BTreeMap<u64, std::collections::BTreeSet<u64>>,
    /// Listed chatrooms, by number.
    pub rooms: std::collections::BTreeSet<u64>,
    /// The highest chatroom number ever given.
    pub last_room: u64,
    /// Stored uploads by kind and SHA-256.
    pub media: BTreeMap<(String, String), MediaRecord>,
    /// Friend requests by number.
    pub requests: BTreeMap<u64, FriendRequest>,
    /// The highest request number ever given.
    pub last_request: u64,
    /// Canned replies by id.
    pub replies: BTreeMap<u64, Reply>,
    /// The highest reply id ever given.
    pub last_reply: u64,
    /// Log position of the last event applied.
    pub position: Position,
}

impl TenantState {
    /// The live account named `username`, with its number.
    pub fn account(&self, username: &str) -> Option<(u64, &Account)> {
        let n = *self.by_name.get(username)?;
        self.users.get(&n).map(|a| (n, a))
    }

    fn has_word(&self, word: &str) -> bool {
        self.sensitive_words.iter().any(|(w, _)| w == word)
    }

    /// `text` with every sensitive word masked (`*` per character; ASCII letters match in either
    /// case), when the filter is on; `None` when nothing changes.
    pub fn masked(&self, text: &str) -> Option<String> {
        if !self.sensitive_filter_on || self.sensitive_words.is_empty() {
            return None;
        }
        let masked = mask_words(text, self.sensitive_words.iter().map(|(w, _)| w.as_str()));
        (masked != text).then_some(masked)
    }

    fn number(&self, username: &str) -> Result<u64, Rejection> {
        self.by_name.get(username).copied().ok_or_else(|| Rejection::NotFound(format!("user {username:?}")))
    }
}

impl Aggregate for TenantState {
    type Key = String;
    type Command = TenantCommand;
    type Event = TenantEvent;

    fn decide(&self, tag: &String, cmd: &TenantCommand, now: Timestamp) -> Result<Vec<TenantEvent>, Rejection> {
        if tag.is_empty() {
            return Err(Rejection::Invalid("tenant tag must not be empty".into()));
        }
        Ok(match cmd {
            TenantCommand::Register(accounts) => {
                if accounts.iter().any(|a| a.username.is_empty()) {
                    return Err(Rejection::Invalid("username must not be empty".into()));
                }
                let mut taken: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
                let mut users = Vec::new();
                for a in accounts {
                    if self.by_name.contains_key(&a.username) || !taken.insert(&a.username) {
                        continue;
                    }
                    let n = self.last_n + users.len() as u64 + 1;
                    users.push(Registration { n, username: a.username.clone(), profile: a.profile.clone(), password: a.password.clone() });
                }
                if users.is_empty() {
                    Vec::new()
                } else {
                    vec![TenantEvent::UsersRegistered { users, at: now }]
                }
            }
            TenantCommand::UpdateProfile { username, patch } => {
                let n = self.number(username)?;
                let current = &self.users[&n].profile;
                // Only the fields that change are recorded; a patch that changes nothing writes nothing.
                let changed = Profile {
                    nickname: patch.nickname.clone().filter(|v| current.nickname.as_ref() != Some(v)),
                    avatar: patch.avatar.clone().filter(|v| current.avatar.as_ref() != Some(v)),
                    birthday: patch.birthday.clone().filter(|v| current.birthday.as_ref() != Some(v)),
                    gender: patch.gender.filter(|v| current.gender != Some(*v)),
                    signature: patch.signature.clone().filter(|v| current.signature.as_ref() != Some(v)),
                    region: patch.region.clone().filter(|v| current.region.as_ref() != Some(v)),
                    address: patch.address.clone().filter(|v| current.address.as_ref() != Some(v)),
                    mobile: patch.mobile.clone().filter(|v| current.mobile.as_ref() != Some(v)),
                    email: patch.email.clone().filter(|v| current.email.as_ref() != Some(v)),
                    extras: patch.extras.clone().filter(|v| current.extras.as_ref() != Some(v)),
                };
                if changed == Profile::default() {
                    Vec::new()
                } else {
                    vec![TenantEvent::ProfileUpdated { n, patch: changed, at: now }]
                }
            }
            TenantCommand::ChangePassword { username, password } => {
                let n = self.number(username)?;
                vec![TenantEvent::PasswordChanged { n, password: password.clone(), at: now }]
            }
            TenantCommand::Unregister(usernames) => {
                if usernames.is_empty() {
                    return Err(Rejection::Invalid("usernames must not be empty".into()));
                }
                let mut ns = Vec::new();
                for name in usernames {
                    let n = self.number(name)?;
                    if !ns.contains(&n) {
                        ns.push(n);
                    }
                }
                vec![TenantEvent::UsersUnregistered { ns }]
            }
            TenantCommand::OpenGroup => vec![TenantEvent::GroupOpened { n: self.last_group + 1 }],
            TenantCommand::CloseGroup(n) => {
                if self.groups.contains(n) {
                    vec![TenantEvent::GroupClosed { n: *n }]
                } else {
                    Vec::new()
                }
            }
            TenantCommand::AddFriends { username, peers } => {
                let n = self.number(username)?;
                let mut added: Vec<u64> = Vec::new();
                for name in peers {
                    let p = self.number(name)?;
                    if p == n {
                        return Err(Rejection::Invalid("a user cannot befriend itself".into()));
                    }
                    if self.friends.get(&n).is_some_and(|f| f.contains_key(&p)) {
                        return Err(Rejection::Exists(format!("friendship with {name:?}")));
                    }
                    if !added.contains(&p) {
                        added.push(p);
                    }
                }
                if added.is_empty() {
                    return Err(Rejection::Invalid("name the new friends".into()));
                }
                vec![TenantEvent::FriendsAdded { n, peers: added, at: now }]
            }
            TenantCommand::RemoveFriends { username, peers } => {
                let n = self.number(username)?;
                let mut removed: Vec<u64> = Vec::new();
                for name in peers {
                    let p = self.number(name)?;
                    if self.friends.get(&n).is_some_and(|f| f.contains_key(&p)) && !removed.contains(&p) {
                        removed.push(p);
                    }
                }
                if removed.is_empty() {
                    Vec::new()
                } else {
                    vec![TenantEvent::FriendsRemoved { n, peers: removed }]
                }
            }
            TenantCommand::SetFriendNotes { username, notes } => {
                let n = self.number(username)?;
                let mut changed = Vec::new();
                for (name, note_name, others) in notes {
                    let p = self.number(name)?;
                    let Some(current) = self.friends.get(&n).and_then(|f| f.get(&p)) else {
                        return Err(Rejection::NotFound(format!("friend {name:?}")));
                    };
                    let change = NoteChange {
                        peer: p,
                        note_name: note_name.clone().filter(|v| *v != current.note_name),
                        others: others.clone().filter(|v| *v != current.others),
                    };
                    if change.note_name.is_some() || change.others.is_some() {
                        changed.push(change);
                    }
                }
                if changed.is_empty() {
                    Vec::new()
                } else {
                    vec![TenantEvent::FriendNotesSet { n, notes: changed }]
                }
            }
            TenantCommand::AddSensitiveWords(words) => {
                if words.is_empty() {
                    return Err(Rejection::Invalid("name the words to add".into()));
                }
                let mut added: Vec<String> = Vec::new();
                for w in words {
                    check_word(w)?;
                    if !self.has_word(w) && !added.contains(w) {
                        added.push(w.clone());
                    }
                }
                if self.sensitive_words.len() + added.len() > MAX_SENSITIVE_WORDS {
                    return Err(Rejection::Invalid(format!("the list holds at most {MAX_SENSITIVE_WORDS} words")));
                }
                if added.is_empty() {
                    Vec::new()
                } else {
                    vec![TenantEvent::SensitiveWordsAdded { words: added, at: now }]
                }
            }
            TenantCommand::RenameSensitiveWord { old, new } => {
                check_word(new)?;
                if !self.has_word(old) {
                    return Err(Rejection::NotFound(format!("sensitive word {old:?}")));
                }
                if old == new {
                    Vec::new()
                } else if self.has_word(new) {
                    return Err(Rejection::Exists(format!("sensitive word {new:?}")));
                } else {
                    vec![TenantEvent::SensitiveWordRenamed { old: old.clone(), new: new.clone(), at: now }]
                }
            }
            TenantCommand::RemoveSensitiveWord(word) => {
                if !self.has_word(word) {
                    return Err(Rejection::NotFound(format!("sensitive word {word:?}")));
                }
                vec![TenantEvent::SensitiveWordRemoved { word: word.clone() }]
            }
            TenantCommand::SwitchSensitiveFilter(on) => {
                if self.sensitive_filter_on == *on {
                    Vec::new()
                } else {
                    vec![TenantEvent::SensitiveFilterSwitched { on: *on }]
                }
            }
            TenantCommand::SetNoDisturb { username, single_add, single_remove, groups_add, groups_remove, global } => {
                let n = self.number(username)?;
                let current = self.no_disturb.get(&n).cloned().unwrap_or_default();
                let numbers = |names: &Vec<String>| names.iter().map(|u| self.number(u)).collect::<Result<Vec<u64>, Rejection>>();
                let (add, remove) = (numbers(single_add)?, numbers(single_remove)?);
                for g in groups_add.iter().chain(groups_remove) {
                    if !self.groups.contains(g) {
                        return Err(Rejection::NotFound(format!("group {g}")));
                    }
                }
                if let Some(g) = groups_add.iter().find(|g| current.groups.contains(g)) {
                    return Err(Rejection::Exists(format!("no-disturb of group {g}")));
                }
                if let Some(g) = groups_remove.iter().find(|g| !current.groups.contains(g)) {
                    return Err(Rejection::NotAllowed(format!("no-disturb of group {g} is off already")));
                }
                let mut single_added: Vec<u64> = add.into_iter().filter(|u| !current.single.contains(u)).collect();
                single_added.dedup();
                let mut single_removed: Vec<u64> = remove.into_iter().filter(|u| current.single.contains(u) && !single_added.contains(u)).collect();
                single_removed.dedup();
                let mut groups_added = groups_add.clone();
                groups_added.dedup();
                let mut groups_removed = groups_remove.clone();
                groups_removed.dedup();
                let global = global.filter(|g| *g != current.global);
                let nothing = single_added.is_empty() && single_removed.is_empty() && groups_added.is_empty() && groups_removed.is_empty() && global.is_none();
                if nothing {
                    Vec::new()
                } else {
                    vec![TenantEvent::NoDisturbChanged { n, single_added, single_removed, groups_added, groups_removed, global }]
                }
            }
            TenantCommand::OpenRoom => vec![TenantEvent::RoomOpened { n: self.last_room + 1 }],
            TenantCommand::StoreMedia(record) => {
                let valid_hash = record.sha256.len() == 64 && record.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if !valid_hash || !matches!(record.kind.as_str(), "image" | "file" | "voice") {
                    return Err(Rejection::Invalid("a media record needs a kind and a SHA-256".into()));
                }
                if self.media.contains_key(&(record.kind.clone(), record.sha256.clone())) {
                    Vec::new()
                } else {
                    vec![TenantEvent::MediaStored { record: MediaRecord { at: now, ..record.clone() } }]
                }
            }
            TenantCommand::CloseRoom(n) => {
                if self.rooms.contains(n) {
                    vec![TenantEvent::RoomClosed { n: *n }]
                } else {
                    Vec::new()
                }
            }
            TenantCommand::ShieldGroups { username, add, remove } => {
                let n = self.number(username)?;
                if let Some(g) = add.iter().chain(remove).find(|g| !self.groups.contains(g)) {
                    return Err(Rejection::NotFound(format!("group {g}")));
                }
                let current = self.shields.get(&n);
                let mut added: Vec<u64> = add.iter().copied().filter(|g| !current.is_some_and(|s| s.contains(g))).collect();
                added.dedup();
                let mut removed: Vec<u64> = remove.iter().copied().filter(|g| current.is_some_and(|s| s.contains(g)) && !added.contains(g)).collect();
                removed.dedup();
                if added.is_empty() && removed.is_empty() {
                    Vec::new()
                } else {
                    vec![TenantEvent::GroupsShielded { n, added, removed }]
                }
            }
            TenantCommand::SwitchSdkRegistration(on) => {
                if self.sdk_registration_off != *on {
                    Vec::new()
                } else {
                    vec![TenantEvent::SdkRegistrationSwitched { on: *on }]
                }
            }
            TenantCommand::RequestFriend { from, to, postscript } => {
                for n in [from, to] {
                    if !self.users.contains_key(n) {
                        return Err(Rejection::NotFound(format!("user {n}")));
                    }
                }
                if from == to {
                    return Err(Rejection::Invalid("a user cannot ask itself to be friends".into()));
                }
                if self.friends.get(from).is_some_and(|f| f.contains_key(to)) {
                    return Err(Rejection::Exists(format!("friendship of {from} and {to}")));
                }
                let pending = self.requests.values().any(|r| r.answer.is_none() && ((r.from, r.to) == (*from, *to) || (r.from, r.to) == (*to, *from)));
                if pending {
                    return Err(Rejection::Exists(format!("a pending request between {from} and {to}")));
                }
                vec![TenantEvent::FriendRequested { nid: self.last_request + 1, from: *from, to: *to, postscript: postscript.clone(), at: now }]
            }
            TenantCommand::AnswerFriendRequest { by, nid, agree } => {
                let r = self.requests.get(nid).ok_or_else(|| Rejection::NotFound(format!("friend request {nid}")))?;
                if r.to != *by {
                    return Err(Rejection::NotAllowed(format!("only the addressee of friend request {nid} may answer it")));
                }
                if r.answer.is_some() {
                    return Err(Rejection::Exists(format!("an answer to friend request {nid}")));
                }
                if !self.users.contains_key(&r.from) {
                    return Err(Rejection::NotFound(format!("user {}", r.from)));
                }
                vec![TenantEvent::FriendRequestAnswered { nid: *nid, agree: *agree, at: now }]
            }
            TenantCommand::SaveReply { id, reply } => {
                if !(1..=3).contains(&reply.kind) {
                    return Err(Rejection::Invalid(format!("reply type must be 1 to 3, got {}", reply.kind)));
                }
                let id = match id {
                    Some(id) if self.replies.contains_key(id) => *id,
                    Some(id) => return Err(Rejection::NotFound(format!("reply {id}"))),
                    None => self.last_reply + 1,
                };
                if self.replies.get(&id) == Some(reply) {
                    Vec::new()
                } else {
                    vec![TenantEvent::ReplySaved { id, reply: reply.clone() }]
                }
            }
            TenantCommand::RemoveReply(id) => {
                if !self.replies.contains_key(id) {
                    return Err(Rejection::NotFound(format!("reply {id}")));
                }
                vec![TenantEvent::ReplyRemoved { id: *id }]
            }
        })
    }

    fn apply(&mut self, position: Position, event: &TenantEvent) {
        self.position = self.position.max(position);
        match event {
            TenantEvent::UsersRegistered { users, at } => {
                for r in users {
                    self.last_n = self.last_n.max(r.n);
                    self.by_name.insert(r.username.clone(), r.n);
                    let account = Account { username: r.username.clone(), profile: r.profile.clone(), password: r.password.clone(), ctime: *at, mtime: *at };
                    self.users.insert(r.n, account);
                }
            }
            TenantEvent::ProfileUpdated { n, patch, at } => {
                if let Some(a) = self.users.get_mut(n) {
                    a.profile = a.profile.patched(patch);
                    a.mtime = *at;
                }
            }
            TenantEvent::PasswordChanged { n, password, at } => {
                if let Some(a) = self.users.get_mut(n) {
                    a.password = password.clone();
                    a.mtime = *at;
                }
            }
            TenantEvent::UsersUnregistered { ns } => {
                for n in ns {
                    if let Some(a) = self.users.remove(n) {
                        self.by_name.remove(&a.username);
                    }
                }
                for n in ns {
                    for peer in self.friends.remove(n).unwrap_or_default().into_keys() {
                        if let Some(f) = self.friends.get_mut(&peer) {
                            f.remove(n);
                        }
                    }
                }
                self.friends.retain(|_, f| !f.is_empty());
                for n in ns {
                    self.no_disturb.remove(n);
                    self.shields.remove(n);
                }
                self.requests.retain(|_, r| !ns.contains(&r.from) && !ns.contains(&r.to));
            }
            TenantEvent::FriendsAdded { n, peers, at } => {
                for p in peers {
                    let note = || FriendNote { note_name: String::new(), others: String::new(), since: *at };
                    self.friends.entry(*n).or_default().entry(*p).or_insert_with(note);
                    self.friends.entry(*p).or_default().entry(*n).or_insert_with(note);
                }
            }
            TenantEvent::FriendsRemoved { n, peers } => {
                for p in peers {
                    if let Some(f) = self.friends.get_mut(n) {
                        f.remove(p);
                    }
                    if let Some(f) = self.friends.get_mut(p) {
                        f.remove(n);
                    }
                }
                self.friends.retain(|_, f| !f.is_empty());
            }
            TenantEvent::SensitiveWordsAdded { words, at } => {
                for w in words {
                    if !self.has_word(w) {
                        self.sensitive_words.push((w.clone(), *at));
                    }
                }
            }
            TenantEvent::SensitiveWordRenamed { old, new, at } => {
                if let Some(entry) = self.sensitive_words.iter_mut().find(|(w, _)| w == old) {
                    *entry = (new.clone(), *at);
                }
            }
            TenantEvent::SensitiveWordRemoved { word } => self.sensitive_words.retain(|(w, _)| w != word),
            TenantEvent::SensitiveFilterSwitched { on } => self.sensitive_filter_on = *on,
            TenantEvent::SdkRegistrationSwitched { on } => self.sdk_registration_off = !*on,
            TenantEvent::NoDisturbChanged { n, single_added, single_removed, groups_added, groups_removed, global } => {
                let nd = self.no_disturb.entry(*n).or_default();
                nd.single.extend(single_added);
                single_removed.iter().for_each(|u| {
                    nd.single.remove(u);
                });
                nd.groups.extend(groups_added);
                groups_removed.iter().for_each(|g| {
                    nd.groups.remove(g);
                });
                if let Some(g) = global {
                    nd.global = *g;
                }
                if *nd == NoDisturb::default() {
                    self.no_disturb.remove(n);
                }
            }
            TenantEvent::FriendRequested { nid, from, to, postscript, at } => {
                self.last_request = self.last_request.max(*nid);
                self.requests.insert(*nid, FriendRequest { from: *from, to: *to, postscript: postscript.clone(), at: *at, answer: None });
            }
            TenantEvent::FriendRequestAnswered { nid, agree, at } => {
                if let Some(r) = self.requests.get_mut(nid) {
                    r.answer = Some(*agree);
                    let (a, b) = (r.from, r.to);
                    if *agree && self.users.contains_key(&a) && self.users.contains_key(&b) {
                        let note = || FriendNote { note_name: String::new(), others: String::new(), since: *at };
                        self.friends.entry(a).or_default().entry(b).or_insert_with(note);
                        self.friends.entry(b).or_default().entry(a).or_insert_with(note);
                    }
                }
            }
            TenantEvent::ReplySaved { id, reply } => {
                self.last_reply = self.last_reply.max(*id);
                if reply.is_default {
                    for r in self.replies.values_mut().filter(|r| r.kind == reply.kind) {
                        r.is_default = false;
                    }
                }
                self.replies.insert(*id, reply.clone());
            }
            TenantEvent::ReplyRemoved { id } => {
                self.replies.remove(id);
            }
            TenantEvent::MediaStored { record } => {
                self.media.entry((record.kind.clone(), record.sha256.clone())).or_insert_with(|| record.clone());
            }
            TenantEvent::RoomOpened { n } => {
                self.last_room = self.last_room.max(*n);
                self.rooms.insert(*n);
            }
            TenantEvent::RoomClosed { n } => {
                self.rooms.remove(n);
            }
            TenantEvent::GroupsShielded { n, added, removed } => {
                let s = self.shields.entry(*n).or_default();
                s.extend(added);
                removed.iter().for_each(|g| {
                    s.remove(g);
                });
                if s.is_empty() {
                    self.shields.remove(n);
                }
            }
            TenantEvent::FriendNotesSet { n, notes } => {
                for c in notes {
                    if let Some(note) = self.friends.get_mut(n).and_then(|f| f.get_mut(&c.peer)) {
                        if let Some(v) = &c.note_name {
                            note.note_name = v.clone();
                        }
                        if let Some(v) = &c.others {
                            note.others = v.clone();
                        }
                    }
                }
            }
            TenantEvent::GroupOpened { n } => {
                self.last_group = self.last_group.max(*n);
                self.groups.insert(*n);
            }
            TenantEvent::GroupClosed { n } => {
                self.groups.remove(n);
            }
        }
    }

    fn realign(&mut self, committed: &Self, _settled: &[(Position, TenantEvent)]) {
        // Positions only raise `position`; nothing else depends on them.
        self.position = committed.position;
        debug_assert_eq!(self, committed, "a tenant state differs from the committed one by more than its position");
    }

    fn wrap(event: TenantEvent) -> Event {
        Event::Tenant(event)
    }

    fn unwrap(event: &Event) -> Option<&TenantEvent> {
        match event {
            Event::Tenant(e) => Some(e),
            _ => None,
        }
    }
}

fn check_word(word: &str) -> Result<(), Rejection> {
    let chars = word.chars().count();
    if chars == 0 || chars > MAX_SENSITIVE_WORD_CHARS {
        return Err(Rejection::Invalid(format!("a sensitive word is 1 to {MAX_SENSITIVE_WORD_CHARS} characters, got {chars}")));
    }
    if word.chars().any(char::is_whitespace) && word.trim().is_empty() {
        return Err(Rejection::Invalid("a sensitive word cannot be blank".into()));
    }
    Ok(())
}

/// `text` with each occurrence of any of `words` replaced by one `*` per character. ASCII letters
/// match in either case; other characters exactly. Overlapping occurrences are all masked.
pub fn mask_words<'a>(text: &str, words: impl Iterator<Item = &'a str>) -> String {
    let chars: Vec<char> = text.chars().collect();
    let folded: Vec<char> = chars.iter().map(char::to_ascii_lowercase).collect();
    let mut hidden = vec![false; chars.len()];
    for word in words {
        let w: Vec<char> = word.chars().map(|c| c.to_ascii_lowercase()).collect();
        if w.is_empty() || w.len() > folded.len() {
            continue;
        }
        for start in 0..=folded.len() - w.len() {
            if folded[start..start + w.len()] == w[..] {
                hidden[start..start + w.len()].iter_mut().for_each(|h| *h = true);
            }
        }
    }
    chars.iter().zip(hidden).map(|(c, h)| if h { '*' } else { *c }).collect()
}
