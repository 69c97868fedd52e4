//! The stored envelope: who did what, when, to which stream; its byte format and its digest.

use bincode::{Decode, Encode};

use crate::chain::{sha256, ChainHash, Position};
use crate::channel::ChannelEvent;
use crate::ids::{ChannelKey, ClientMsgNo, DeviceFlag, RequestId, Timestamp, Uid};
use crate::system::SystemEvent;
use crate::tenant::TenantEvent;
use crate::user::UserEvent;

/// The aggregate an envelope belongs to. Every stream has exactly one writer actor.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub enum StreamId {
    /// A channel: its settings, lists and ordinary messages.
    Channel(ChannelKey),
    /// The command ("sync once") messages of a channel, with their own message_seq space.
    ChannelCommands(ChannelKey),
    /// A user: device tokens, conversation marks, write-spread queue.
    User(Uid),
    /// Server-wide settings (system uids).
    System,
    /// A tenant of the business APIs (by tag): its accounts and app-wide settings.
    Tenant(String),
    /// The events of one stream message of a channel (by its client_msg_no), written by the channel's
    /// actor and indexed by event seq.
    MessageEvents(ChannelKey, ClientMsgNo),
}

impl StreamId {
    /// The stream's key in the log's indexes. Never contains `0xFF`, as long as the channel type is
    /// a known one (ids are UTF-8 text, which has no `0xFF` byte).
    pub fn key(&self) -> Vec<u8> {
        match self {
            StreamId::Channel(k) => prefixed(b'c', Some(k.ty.0), k.id.as_str()),
            StreamId::ChannelCommands(k) => prefixed(b'k', Some(k.ty.0), k.id.as_str()),
            StreamId::User(uid) => prefixed(b'u', None, uid.as_str()),
            StreamId::System => vec![b's'],
            StreamId::Tenant(tag) => prefixed(b't', None, tag),
            StreamId::MessageEvents(k, no) => {
                // The channel id's length in decimal keeps the two texts apart without a separator byte.
                let mut key = prefixed(b'e', Some(k.ty.0), &format!("{}:", k.id.as_str().len()));
                key.extend_from_slice(k.id.as_str().as_bytes());
                key.extend_from_slice(no.0.as_bytes());
                key
            }
        }
    }
}

fn prefixed(tag: u8, ty: Option<u8>, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + id.len());
    key.push(tag);
    key.extend(ty);
    key.extend_from_slice(id.as_bytes());
    key
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamId::Channel(k) => write!(f, "channel {k}"),
            StreamId::ChannelCommands(k) => write!(f, "commands {k}"),
            StreamId::User(uid) => write!(f, "user {uid}"),
            StreamId::System => f.write_str("system"),
            StreamId::Tenant(tag) => write!(f, "tenant {tag}"),
            StreamId::MessageEvents(k, no) => write!(f, "events of {} in {k}", no.0),
        }
    }
}

/// Who caused a mutation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Actor {
    /// The server itself (e.g. a rule firing); no outside request.
    System,
    /// A named API credential (the name, never the secret).
    Api {
        /// The credential's configured name.
        credential: String,
    },
    /// A connected client device.
    Client {
        /// The authenticated user.
        uid: Uid,
        /// The device kind of the connection.
        device_flag: DeviceFlag,
    },
    /// An app's backend acting for one of its signed-in users (the PopIM family's `login_uid`).
    Delegated {
        /// The credential (the family and app) the request came through.
        credential: String,
        /// The user it acted for.
        uid: Uid,
    },
}

/// The audit part of an envelope: when, who, which request, from where.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Meta {
    /// When the event was decided (server clock, milliseconds).
    pub recorded_at: Timestamp,
    /// Who caused it.
    pub actor: Actor,
    /// The request that caused it; events of one request share it.
    pub request_id: RequestId,
    /// The peer address of the request, when known.
    pub source: Option<String>,
    /// The peer's user agent or SDK name, when known.
    pub user_agent: Option<String>,
}

/// Any event, tagged by aggregate kind.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Event {
    /// An event of a channel (or of its command stream).
    Channel(ChannelEvent),
    /// An event of a user.
    User(UserEvent),
    /// A server-wide event.
    System(SystemEvent),
    /// An event of a tenant.
    Tenant(TenantEvent),
}

impl Event {
    /// A short stable name for the event kind, as used in audit queries ("channel.message_appended").
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Channel(e) => e.kind(),
            Event::User(e) => e.kind(),
            Event::System(e) => e.kind(),
            Event::Tenant(e) => e.kind(),
        }
    }
}

/// What is stored for one event apart from its log position and chain link.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct EnvelopeBody {
    /// The stream the event belongs to.
    pub stream: StreamId,
    /// Audit metadata.
    pub meta: Meta,
    /// The event itself.
    pub event: Event,
}

/// An envelope as read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Where it sits in the log.
    pub position: Position,
    /// The chain link of the envelope before it.
    pub prev_hash: ChainHash,
    /// Stream, audit metadata and event.
    pub body: EnvelopeBody,
}

/// Byte that starts every encoded [`EnvelopeBody`]: format 1 is `bincode::config::standard()` of the
/// body. A later format gets a new byte and a decoder branch; old bytes stay readable forever.
pub const FORMAT_V1: u8 = 1;

/// Why stored bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No bytes at all.
    #[error("empty record")]
    Empty,
    /// A format byte this build does not know (written by a newer Rookery?).
    #[error("unknown format version {0}")]
    UnknownFormat(u8),
    /// The bincode body is malformed.
    #[error("malformed body: {0}")]
    Malformed(String),
    /// The body decoded but bytes were left over.
    #[error("{0} trailing bytes after body")]
    Trailing(usize),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

impl EnvelopeBody {
    /// Encodes as `[FORMAT_V1][bincode]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.push(FORMAT_V1);
        // Encoding into a Vec cannot fail: every type here has an infallible encoding.
        bincode::encode_into_std_write(self, &mut out, config()).expect("encode to Vec");
        out
    }

    /// Decodes bytes written by any past format.
    ///
    /// # Errors
    /// [`DecodeError`] when the bytes are not a complete envelope body.
    pub fn decode(bytes: &[u8]) -> Result<EnvelopeBody, DecodeError> {
        let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        match version {
            FORMAT_V1 => decode_exact(rest),
            other => Err(DecodeError::UnknownFormat(other)),
        }
    }

    /// The digest the hash chain links: SHA-256 over the body with every message payload replaced by
    /// its hash. A payload can therefore be erased later without breaking the chain.
    pub fn digest(&self) -> ChainHash {
        let digest_form;
        let body = match &self.event {
            Event::Channel(ChannelEvent::MessageAppended(m)) if m.payload.is_inline() => {
                let mut erased = m.clone();
                erased.payload = erased.payload.erased();
                digest_form =
                    EnvelopeBody { stream: self.stream.clone(), meta: self.meta.clone(), event: Event::Channel(ChannelEvent::MessageAppended(erased)) };
                &digest_form
            }
            _ => self,
        };
        sha256(&body.encode())
    }

    /// [`EnvelopeBody::digest`] and [`EnvelopeBody::encode`] at once, without copying the body: a
    /// message's payload is swapped for its erased form while the digest form is hashed, then put
    /// back. What the live write path uses; the same results as the two calls.
    pub fn digest_and_encode(&mut self) -> (ChainHash, Vec<u8>) {
        let digest = match &mut self.event {
            Event::Channel(ChannelEvent::MessageAppended(m)) if m.payload.is_inline() => {
                let erased = m.payload.erased();
                let inline = std::mem::replace(&mut m.payload, erased);
                let digest = sha256(&self.encode());
                if let Event::Channel(ChannelEvent::MessageAppended(m)) = &mut self.event {
                    m.payload = inline;
                }
                digest
            }
            _ => sha256(&self.encode()),
        };
        (digest, self.encode())
    }
}

/// Decodes a bincode value and insists that it used every byte.
pub(crate) fn decode_exact<T: Decode<()>>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, read) = bincode::decode_from_slice(bytes, config()).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if read != bytes.len() {
        return Err(DecodeError::Trailing(bytes.len() - read));
    }
    Ok(value)
}

/// Encodes any state or value with the same bincode configuration as envelopes.
pub(crate) fn encode_plain<T: Encode>(value: &T) -> Vec<u8> {
    bincode::encode_to_vec(value, config()).expect("encode to Vec")
}
