//! Identifiers and small value types of the domain. Ids are newtypes so signatures say what they take.

use bincode::{Decode, Encode};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Encode, Decode)]
        pub struct $name(pub String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }
    };
}

string_id!(
    /// A user id, chosen by the business server.
    Uid
);
string_id!(
    /// A channel id as stored: a group id, or for person channels the internal `big@small` id.
    ChannelId
);
string_id!(
    /// The sender-chosen unique message number used for de-duplication.
    ClientMsgNo
);
string_id!(
    /// A stream-message number (groups chunks of one streamed message).
    StreamNo
);

/// The built-in system uid: always a system account, never a subscriber.
pub const SYSTEM_UID: &str = "____system";

/// A channel type code as on the wire (1 person, 2 group, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct ChannelType(pub u8);

impl ChannelType {
    /// One-to-one chat; its internal id is built by [`person_channel_id`].
    pub const PERSON: ChannelType = ChannelType(1);
    /// A group with explicit subscribers.
    pub const GROUP: ChannelType = ChannelType(2);
    /// Customer service (legacy).
    pub const CUSTOMER_SERVICE: ChannelType = ChannelType(3);
    /// Community.
    pub const COMMUNITY: ChannelType = ChannelType(4);
    /// Community topic.
    pub const COMMUNITY_TOPIC: ChannelType = ChannelType(5);
    /// Info (news) channel: anyone may post.
    pub const INFO: ChannelType = ChannelType(6);
    /// Data channel: no conversations.
    pub const DATA: ChannelType = ChannelType(7);
    /// Temporary channel whose recipients come with each send.
    pub const TEMP: ChannelType = ChannelType(8);
    /// Live channel: no conversations.
    pub const LIVE: ChannelType = ChannelType(9);
    /// Visitors channel.
    pub const VISITORS: ChannelType = ChannelType(10);
    /// One-to-one agent channel.
    pub const AGENT: ChannelType = ChannelType(11);
    /// Agent group.
    pub const AGENT_GROUP: ChannelType = ChannelType(12);

    /// Whether this code is one Rookery knows (1..=12).
    pub fn is_known(self) -> bool {
        (1..=12).contains(&self.0)
    }

    /// Whether members are managed explicitly with subscriber lists.
    pub fn has_subscribers(self) -> bool {
        self != ChannelType::PERSON && self != ChannelType::AGENT
    }
}

/// A channel's identity: id plus type (the same id with two types names two channels).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct ChannelKey {
    /// The stored id (for person channels the internal `big@small` id).
    pub id: ChannelId,
    /// The channel type.
    pub ty: ChannelType,
}

impl ChannelKey {
    /// Builds a key.
    pub fn new(id: impl Into<ChannelId>, ty: ChannelType) -> ChannelKey {
        ChannelKey { id: id.into(), ty }
    }
}

impl std::fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ty.0, self.id)
    }
}

/// Per-channel message sequence number: starts at 1, dense, no gaps. 0 means "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Encode, Decode)]
pub struct MessageSeq(pub u64);

impl MessageSeq {
    /// The next sequence number.
    pub fn next(self) -> MessageSeq {
        MessageSeq(self.0 + 1)
    }
}

/// Server-wide unique message id (positive 63-bit; signed on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Encode, Decode)]
pub struct MessageId(pub i64);

/// Milliseconds since the Unix epoch. The domain never reads a clock: time arrives as an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Encode, Decode)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Whole seconds, the unit of the wire protocol and the REST API.
    pub fn as_secs(self) -> u64 {
        self.0 / 1000
    }
}

/// Device kind of a connection: 0 app, 1 web, 2 desktop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct DeviceFlag(pub u8);

impl DeviceFlag {
    /// iOS/Android app.
    pub const APP: DeviceFlag = DeviceFlag(0);
    /// Browser.
    pub const WEB: DeviceFlag = DeviceFlag(1);
    /// Desktop.
    pub const PC: DeviceFlag = DeviceFlag(2);
    /// Server-internal sender (REST sends).
    pub const SYSTEM: DeviceFlag = DeviceFlag(99);

    /// Whether a client may register a token for this flag.
    pub fn is_client(self) -> bool {
        self.0 <= 2
    }
}

/// Device level: 0 slave, 1 master (a master login replaces other sessions of the same flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Encode, Decode)]
pub struct DeviceLevel(pub u8);

impl DeviceLevel {
    /// Coexists with other sessions.
    pub const SLAVE: DeviceLevel = DeviceLevel(0);
    /// Replaces other sessions of the same device flag.
    pub const MASTER: DeviceLevel = DeviceLevel(1);
}

/// A request id (a UUID's 16 bytes). Made outside the domain and passed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Encode, Decode)]
pub struct RequestId(pub [u8; 16]);

/// The internal id of the one-to-one channel between `a` and `b`.
///
/// The uid whose CRC-32 (IEEE) is larger comes first, `big@small`; on equal CRCs the lexicographically
/// larger uid comes first. Both users therefore name the same channel whichever side computes it.
pub fn person_channel_id(a: &Uid, b: &Uid) -> ChannelId {
    let ca = crc32fast::hash(a.0.as_bytes());
    let cb = crc32fast::hash(b.0.as_bytes());
    let a_first = ca > cb || (ca == cb && a.0 >= b.0);
    if a_first {
        ChannelId(format!("{}@{}", a.0, b.0))
    } else {
        ChannelId(format!("{}@{}", b.0, a.0))
    }
}

/// The two participants of a person channel id, or `None` if it is not of the form `x@y`.
pub fn person_channel_parties(id: &ChannelId) -> Option<(Uid, Uid)> {
    let (x, y) = id.0.split_once('@')?;
    if x.is_empty() || y.is_empty() || y.contains('@') {
        return None;
    }
    Some((Uid(x.to_owned()), Uid(y.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_channel_id_follows_crc_order() {
        assert_eq!(person_channel_id(&"u1".into(), &"u2".into()).0, "u2@u1");
        assert_eq!(person_channel_id(&"u2".into(), &"u1".into()).0, "u2@u1");
        assert_eq!(person_channel_id(&"alice".into(), &"bob".into()).0, "bob@alice");
        assert_eq!(person_channel_id(&"a".into(), &"a".into()).0, "a@a");
    }

    #[test]
    fn person_channel_parties_round_trip() {
        let id = person_channel_id(&"alice".into(), &"bob".into());
        assert_eq!(person_channel_parties(&id), Some(("bob".into(), "alice".into())));
        assert_eq!(person_channel_parties(&"nope".into()), None);
        assert_eq!(person_channel_parties(&"a@".into()), None);
    }
}
