//! WKProto, WuKongIM's binary client protocol, versions 1 to 6: the [`Packet`] types and a pure
//! codec ([`check`], [`decode`], [`decode_connect`], [`encode`]).
//!
//! Nothing here does I/O, keeps state or reads a clock. The connection layer feeds it bytes and
//! the negotiated protocol version of the session; [`DecodeError::Incomplete`] means "wait for more
//! bytes", [`DecodeError::Invalid`] means "close the connection". `docs/PROTOCOL.md` documents every
//! byte layout this file implements.
//!
//! This file depends on nothing but `std` and `thiserror`, so the fuzz crate (`fuzz/`) can compile it
//! on its own without the rest of the server.

use std::fmt;

use thiserror::Error;

/// Largest packet body (the bytes after the remaining-length varint) either side accepts: 1 MiB, as
/// WuKongIM's `MaxRemaingLength`.
pub const MAX_BODY_LEN: usize = 1 << 20;

/// Longest string field in bytes. The Go codec reads string lengths as a signed 16-bit value, so
/// 32767 is the largest length every implementation agrees on.
pub const MAX_STRING_LEN: usize = i16::MAX as usize;

/// Oldest protocol version Rookery speaks. Version 0 is never sent by a real SDK; the codec treats it
/// like version 1 (every gate is a `>=` comparison).
pub const MIN_VERSION: u8 = 1;

/// Newest protocol version Rookery speaks (WuKongIM v3's `MessageSeqU64Version`).
pub const LATEST_VERSION: u8 = 6;

/// First version in which SEND carries `stream_no` and RECV the stream block (when `Setting::STREAM` is set).
const STREAM_FIRST_VERSION: u8 = 2;
/// Last version with stream fields; version 5 removed them even when the stream bit is set.
const STREAM_LAST_VERSION: u8 = 4;
/// First version in which SEND and RECV carry `expire`.
const EXPIRE_VERSION: u8 = 3;
/// First version in which CONNACK carries `node_id`.
const NODE_ID_VERSION: u8 = 4;
/// First version in which SENDACK/RECV/RECVACK carry `message_seq` as u64 and SENDACK may carry a
/// trailing `client_msg_no`.
const SEQ_U64_VERSION: u8 = 6;

/// Longest remaining-length varint (4 bytes, 28 bits).
const MAX_VARINT_LEN: usize = 4;

/// CONNACK header bit 0: a `server_version` byte opens the body.
const CONNACK_HAS_SERVER_VERSION: u8 = 0x01;

/// The session version for a client that sent `client_version` in its CONNECT: the client's own
/// version, capped at [`LATEST_VERSION`]. Every later packet of the session is coded with it.
pub fn negotiate_version(client_version: u8) -> u8 {
    client_version.clamp(MIN_VERSION, LATEST_VERSION)
}

/// Whether the CONNACK to a client that sent `client_version` must announce `server_version`
/// (WuKongIM's rule: only above version 3). The npm SDK 1.0.4 speaks version 2 and ignores the
/// header flag, so announcing to it would shift every CONNACK field by one byte.
pub fn announces_server_version(client_version: u8) -> bool {
    client_version > 3
}

/// Why bytes could not be decoded into a packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The buffer ends before the packet does: keep the bytes and read more.
    #[error("incomplete packet")]
    Incomplete,
    /// The bytes can never become a valid packet: close the connection.
    #[error("invalid packet: {0}")]
    Invalid(String),
}

/// Why a packet could not be encoded. `encode` leaves the output buffer as it was on error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A string field is longer than [`MAX_STRING_LEN`] bytes.
    #[error("string field {field} is {len} bytes, more than {MAX_STRING_LEN}")]
    StringTooLong {
        /// Name of the field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The body would be larger than [`MAX_BODY_LEN`]; the peer would reject it.
    #[error("packet body is {0} bytes, more than {MAX_BODY_LEN}")]
    BodyTooLarge(usize),
    /// A `message_seq` above `u32::MAX` cannot be sent to a session below version 6.
    #[error("message_seq {0} does not fit the 4 bytes of protocol versions below 6")]
    SeqOutOfRange(u64),
}

/// The packet type: the high nibble of the fixed header byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// Client login (c→s).
    Connect = 1,
    /// Login answer (s→c).
    Connack = 2,
    /// Client sends a message (c→s).
    Send = 3,
    /// Answer to one SEND (s→c).
    Sendack = 4,
    /// Message delivery (s→c).
    Recv = 5,
    /// Client acknowledges a RECV (c→s).
    Recvack = 6,
    /// Heartbeat, one byte.
    Ping = 7,
    /// Heartbeat answer, one byte.
    Pong = 8,
    /// Kick (s→c) or goodbye (c→s).
    Disconnect = 9,
    /// Data-channel subscription (c→s).
    Sub = 10,
    /// Subscription answer (s→c).
    Suback = 11,
    /// Server event (s→c).
    Event = 12,
}

impl PacketType {
    /// The type for a header's high nibble; `None` for 0 (reserved) and 13-15.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Connect,
            2 => Self::Connack,
            3 => Self::Send,
            4 => Self::Sendack,
            5 => Self::Recv,
            6 => Self::Recvack,
            7 => Self::Ping,
            8 => Self::Pong,
            9 => Self::Disconnect,
            10 => Self::Sub,
            11 => Self::Suback,
            12 => Self::Event,
            _ => return None,
        })
    }

    /// The wire code (1-12).
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The four flag bits of the fixed header of SEND, SENDACK, RECV and RECVACK.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Header {
    /// Bit 3: this packet repeats an earlier one (RECV re-sent after a missing RECVACK).
    pub dup: bool,
    /// Bit 2: a command message consumed once per user ("write diffusion").
    pub sync_once: bool,
    /// Bit 1: the message counts toward the unread badge.
    pub red_dot: bool,
    /// Bit 0: do not store the message (it gets `message_seq` 0).
    pub no_persist: bool,
}

impl Header {
    /// Reads the low nibble of a fixed header byte.
    pub fn from_flags(flags: u8) -> Self {
        Self { dup: flags & 0x08 != 0, sync_once: flags & 0x04 != 0, red_dot: flags & 0x02 != 0, no_persist: flags & 0x01 != 0 }
    }

    /// The low nibble of the fixed header byte.
    pub fn flags(self) -> u8 {
        (u8::from(self.dup) << 3) | (u8::from(self.sync_once) << 2) | (u8::from(self.red_dot) << 1) | u8::from(self.no_persist)
    }
}

/// The setting byte of SEND, RECV and SUB (spec §1.8). Unknown bits are kept as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Setting(pub u8);

impl Setting {
    /// Bit 7: the sender wants read receipts (opaque to the server).
    pub const RECEIPT: u8 = 0x80;
    /// Bit 5: signal-protocol payload (unused by every known client).
    pub const SIGNAL: u8 = 0x20;
    /// Bit 4: the payload is not encrypted (WuKongIM v3 honours it; v2 and Rookery's JS clients do not).
    pub const NO_ENCRYPT: u8 = 0x10;
    /// Bit 3: a `topic` string field is present.
    pub const TOPIC: u8 = 0x08;
    /// Bit 1: stream message; adds stream fields for protocol versions 2-4 only.
    pub const STREAM: u8 = 0x02;

    /// Whether every bit of `mask` is set.
    pub fn contains(self, mask: u8) -> bool {
        self.0 & mask == mask
    }

    /// Returns the setting with the bits of `mask` set or cleared.
    #[must_use]
    pub fn with(self, mask: u8, on: bool) -> Self {
        if on {
            Self(self.0 | mask)
        } else {
            Self(self.0 & !mask)
        }
    }

    /// Receipt bit.
    pub fn receipt(self) -> bool {
        self.contains(Self::RECEIPT)
    }

    /// Topic bit: the packet has a `topic` field.
    pub fn topic(self) -> bool {
        self.contains(Self::TOPIC)
    }

    /// Stream bit: the packet has stream fields when the version is 2-4.
    pub fn stream(self) -> bool {
        self.contains(Self::STREAM)
    }

    /// No-encrypt bit.
    pub fn no_encrypt(self) -> bool {
        self.contains(Self::NO_ENCRYPT)
    }
}

/// A reason code (spec §4) as carried by CONNACK, SENDACK, SUBACK and DISCONNECT. Kept as the raw
/// byte so that codes Rookery does not know still round-trip.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReasonCode(pub u8);

impl ReasonCode {
    /// 0: never sent intentionally.
    pub const UNKNOWN: Self = Self(0);
    /// 1: success (CONNACK, SENDACK, SUBACK).
    pub const SUCCESS: Self = Self(1);
    /// 2: wrong or missing token, bad client key.
    pub const AUTH_FAIL: Self = Self(2);
    /// 3: the sender is not a subscriber of the channel.
    pub const SUBSCRIBER_NOT_EXIST: Self = Self(3);
    /// 4: the sender is on a denylist.
    pub const IN_BLACKLIST: Self = Self(4);
    /// 5: the channel does not exist.
    pub const CHANNEL_NOT_EXIST: Self = Self(5);
    /// 6: cluster-internal.
    pub const USER_NOT_ON_NODE: Self = Self(6);
    /// 7: legacy, unused.
    pub const SENDER_OFFLINE: Self = Self(7);
    /// 8: defined; WuKongIM sends 9 for msg_key failures instead.
    pub const MSG_KEY_ERROR: Self = Self(8);
    /// 9: msg_key mismatch or payload that does not decrypt.
    pub const PAYLOAD_DECODE_ERROR: Self = Self(9);
    /// 10: cluster-internal.
    pub const FORWARD_SEND_PACKET_ERROR: Self = Self(10);
    /// 11: the sender may not send here.
    pub const NOT_ALLOW_SEND: Self = Self(11);
    /// 12: kicked by another login (DISCONNECT).
    pub const CONNECT_KICK: Self = Self(12);
    /// 13: the sender is not on the allowlist.
    pub const NOT_IN_WHITELIST: Self = Self(13);
    /// 14: legacy.
    pub const QUERY_TOKEN_ERROR: Self = Self(14);
    /// 15: internal server failure.
    pub const SYSTEM_ERROR: Self = Self(15);
    /// 16: legacy.
    pub const CHANNEL_ID_ERROR: Self = Self(16);
    /// 17: cluster-internal.
    pub const NODE_MATCH_ERROR: Self = Self(17);
    /// 18: route moving; the client should retry.
    pub const NODE_NOT_MATCH: Self = Self(18);
    /// 19: user or channel banned.
    pub const BAN: Self = Self(19);
    /// 20: unused.
    pub const NOT_SUPPORT_HEADER: Self = Self(20);
    /// 21: CONNECT without a client key.
    pub const CLIENT_KEY_IS_EMPTY: Self = Self(21);
    /// 22: rate limited.
    pub const RATE_LIMIT: Self = Self(22);
    /// 23: channel type not supported.
    pub const NOT_SUPPORT_CHANNEL_TYPE: Self = Self(23);
    /// 24: the channel was disbanded.
    pub const DISBAND: Self = Self(24);
    /// 25: the sender's own channel has `send_ban`.
    pub const SEND_BAN: Self = Self(25);
    /// 26: the channel is being deleted (WuKongIM v3).
    pub const CHANNEL_DELETING: Self = Self(26);
    /// 27: protocol upgrade required (WuKongIM v3).
    pub const PROTOCOL_UPGRADE_REQUIRED: Self = Self(27);
    /// 28: idempotency conflict (WuKongIM v3).
    pub const IDEMPOTENCY_CONFLICT: Self = Self(28);
    /// 29: the channel's sequence space is exhausted (WuKongIM v3).
    pub const MESSAGE_SEQ_EXHAUSTED: Self = Self(29);

    /// WuKongIM's name for the code, or `None` for codes above 29.
    pub fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 30] = [
            "Unknown",
            "Success",
            "AuthFail",
            "SubscriberNotExist",
            "InBlacklist",
            "ChannelNotExist",
            "UserNotOnNode",
            "SenderOffline",
            "MsgKeyError",
            "PayloadDecodeError",
            "ForwardSendPacketError",
            "NotAllowSend",
            "ConnectKick",
            "NotInWhitelist",
            "QueryTokenError",
            "SystemError",
            "ChannelIDError",
            "NodeMatchError",
            "NodeNotMatch",
            "Ban",
            "NotSupportHeader",
            "ClientKeyIsEmpty",
            "RateLimit",
            "NotSupportChannelType",
            "Disband",
            "SendBan",
            "ChannelDeleting",
            "ProtocolUpgradeRequired",
            "IdempotencyConflict",
            "MessageSeqExhausted",
        ];
        NAMES.get(usize::from(self.0)).copied()
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} ({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// One WKProto packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Type 1.
    Connect(ConnectPacket),
    /// Type 2.
    Connack(ConnackPacket),
    /// Type 3.
    Send(SendPacket),
    /// Type 4.
    Sendack(SendackPacket),
    /// Type 5.
    Recv(RecvPacket),
    /// Type 6.
    Recvack(RecvackPacket),
    /// Type 7: the single byte `0x70`.
    Ping,
    /// Type 8: the single byte `0x80`.
    Pong,
    /// Type 9.
    Disconnect(DisconnectPacket),
    /// Type 10.
    Sub(SubPacket),
    /// Type 11.
    Suback(SubackPacket),
    /// Type 12.
    Event(EventPacket),
}

/// CONNECT: the first packet of every session. Its layout has no version gates, so it decodes the
/// same whatever version the caller passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectPacket {
    /// The client's protocol version (npm SDK 1.0.4: 2; SDK sources 1.3.x: 5).
    pub version: u8,
    /// 0 app, 1 web, 2 desktop.
    pub device_flag: u8,
    /// Client-chosen device id; the JS SDK makes a new one for every connection attempt.
    pub device_id: String,
    /// The user logging in.
    pub uid: String,
    /// The token registered with `/user/token`.
    pub token: String,
    /// The client's clock, Unix milliseconds.
    pub client_timestamp: i64,
    /// Standard base64 of the client's 32-byte X25519 public key.
    pub client_key: String,
}

/// CONNACK: the answer to CONNECT. The header's bit 0 is set exactly when `server_version` is `Some`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnackPacket {
    /// The negotiated version, announced only to clients above version 3 (see
    /// [`announces_server_version`]).
    pub server_version: Option<u8>,
    /// Server clock minus `client_timestamp`, milliseconds.
    pub time_diff: i64,
    /// [`ReasonCode::SUCCESS`], or why the login failed.
    pub reason_code: ReasonCode,
    /// Standard base64 of the server's X25519 public key for this session.
    pub server_key: String,
    /// Sixteen ASCII characters that are the AES-CBC IV of the session.
    pub salt: String,
    /// Node id, written only for version 4 and above.
    pub node_id: u64,
}

/// SEND: a client sends a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendPacket {
    /// Header flags (the JS SDK always sets `red_dot`).
    pub header: Header,
    /// Setting byte; decides whether `stream_no` and `topic` are present.
    pub setting: Setting,
    /// Client-local counter, echoed in SENDACK.
    pub client_seq: u32,
    /// Client-unique message number, the de-duplication key.
    pub client_msg_no: String,
    /// Present only for versions 2-4 with the stream bit.
    pub stream_no: String,
    /// Target channel; for person channels the peer's uid.
    pub channel_id: String,
    /// Channel type (1 person, 2 group, …).
    pub channel_type: u8,
    /// Seconds until expiry, 0 = never; version 3 and above.
    pub expire: u32,
    /// 32 lowercase hex characters authenticating the packet (see `crypto.rs`).
    pub msg_key: String,
    /// Present only with the topic bit.
    pub topic: String,
    /// The rest of the body: base64 text of the AES ciphertext for encrypted sessions.
    pub payload: Vec<u8>,
}

/// SENDACK: the answer to one SEND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendackPacket {
    /// Header flags (WuKongIM v2 copies the SEND's flags).
    pub header: Header,
    /// Server message id; 0 on failure.
    pub message_id: i64,
    /// The SEND's `client_seq`; the JS SDK matches acks on it alone.
    pub client_seq: u32,
    /// Channel sequence; 0 for no-persist messages and failures. 4 bytes below version 6.
    pub message_seq: u64,
    /// Success or why the message was refused.
    pub reason_code: ReasonCode,
    /// Trailing field written for version 6 when non-empty (WuKongIM v3); omitted below version 6 so
    /// SENDACKs stay byte-identical with WuKongIM v2.
    pub client_msg_no: String,
}

/// RECV: a message delivered to one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecvPacket {
    /// Header flags: `red_dot`, `sync_once` and `no_persist` from the SEND, `dup` on re-sends.
    pub header: Header,
    /// Setting byte copied from the SEND.
    pub setting: Setting,
    /// msg_key over the fields as sent to this connection (see `crypto.rs`).
    pub msg_key: String,
    /// Sender uid (empty for the system uid).
    pub from_uid: String,
    /// Channel id as this recipient sees it (the peer's uid for person channels).
    pub channel_id: String,
    /// Channel type.
    pub channel_type: u8,
    /// Seconds until expiry; version 3 and above.
    pub expire: u32,
    /// The sender's client message number.
    pub client_msg_no: String,
    /// Stream number; versions 2-4 with the stream bit.
    pub stream_no: String,
    /// Stream sequence; versions 2-4 with the stream bit.
    pub stream_seq: u32,
    /// Stream flag (0 start, 1 ing, 2 end); versions 2-4 with the stream bit.
    pub stream_flag: u8,
    /// Server message id.
    pub message_id: i64,
    /// Channel sequence; 4 bytes below version 6.
    pub message_seq: u64,
    /// Server time, Unix seconds.
    pub timestamp: i32,
    /// Present only with the topic bit.
    pub topic: String,
    /// The rest of the body: base64 text of the ciphertext for encrypted sessions.
    pub payload: Vec<u8>,
}

/// RECVACK: the client acknowledges a RECV. No reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecvackPacket {
    /// Header flags; the JS SDK copies the RECV's `red_dot`, `sync_once` and `no_persist`.
    pub header: Header,
    /// The acknowledged message.
    pub message_id: i64,
    /// Its sequence; 4 bytes below version 6.
    pub message_seq: u64,
}

/// DISCONNECT: the server kicks a session (the JS SDK then stops reconnecting).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisconnectPacket {
    /// Usually [`ReasonCode::CONNECT_KICK`].
    pub reason_code: ReasonCode,
    /// Human-readable reason.
    pub reason: String,
}

/// SUB: subscribe to or unsubscribe from a data channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubPacket {
    /// Setting byte (no conditional fields in SUB).
    pub setting: Setting,
    /// Client request number, echoed in SUBACK.
    pub sub_no: String,
    /// Channel to (un)subscribe.
    pub channel_id: String,
    /// Its type (the JS SDK defaults to 7, data channel).
    pub channel_type: u8,
    /// 0 subscribe, 1 unsubscribe.
    pub action: u8,
    /// URL-query-style parameters.
    pub param: String,
}

/// SUBACK: the answer to SUB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubackPacket {
    /// The SUB's `sub_no`.
    pub sub_no: String,
    /// The SUB's channel.
    pub channel_id: String,
    /// The SUB's channel type.
    pub channel_type: u8,
    /// The SUB's action.
    pub action: u8,
    /// Success or why not.
    pub reason_code: ReasonCode,
}

/// EVENT: a server-pushed event; never encrypted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventPacket {
    /// Event id.
    pub id: String,
    /// Event type (the wire field is called `type`).
    pub kind: String,
    /// Unix milliseconds.
    pub timestamp: i64,
    /// The rest of the body; JSON by convention.
    pub data: Vec<u8>,
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::Connack(_) => PacketType::Connack,
            Self::Send(_) => PacketType::Send,
            Self::Sendack(_) => PacketType::Sendack,
            Self::Recv(_) => PacketType::Recv,
            Self::Recvack(_) => PacketType::Recvack,
            Self::Ping => PacketType::Ping,
            Self::Pong => PacketType::Pong,
            Self::Disconnect(_) => PacketType::Disconnect,
            Self::Sub(_) => PacketType::Sub,
            Self::Suback(_) => PacketType::Suback,
            Self::Event(_) => PacketType::Event,
        }
    }
}

/// Checks whether `buf` starts with a whole packet and returns that packet's length in bytes
/// (header, remaining length and body) without decoding the body.
///
/// # Errors
/// [`DecodeError::Incomplete`] when the buffer ends inside the header, the length or the body;
/// [`DecodeError::Invalid`] for an unknown packet type, a length varint over 4 bytes or a body over
/// [`MAX_BODY_LEN`]. Both errors are reported as soon as the bytes that prove them are present, so a
/// hostile length is refused before its body is buffered.
pub fn check(buf: &[u8]) -> Result<usize, DecodeError> {
    frame(buf).map(|f| f.len)
}

/// Decodes the packet at the start of `buf` with the session's negotiated `version` and returns it
/// with the number of bytes it took. Bytes after it are left for the next call.
///
/// # Errors
/// As [`check`], plus [`DecodeError::Invalid`] when a whole body does not hold the fields its type
/// and version require (a truncated field inside a complete packet is invalid, never incomplete),
/// a string is longer than [`MAX_STRING_LEN`] or not UTF-8.
pub fn decode(buf: &[u8], version: u8) -> Result<(Packet, usize), DecodeError> {
    let f = frame(buf)?;
    let mut r = Reader { buf: f.body, pos: 0 };
    let packet = match f.kind {
        PacketType::Ping => Packet::Ping,
        PacketType::Pong => Packet::Pong,
        PacketType::Connect => Packet::Connect(decode_connect_body(&mut r)?),
        PacketType::Connack => Packet::Connack(decode_connack_body(&mut r, f.flags, version)?),
        PacketType::Send => Packet::Send(decode_send_body(&mut r, f.flags, version)?),
        PacketType::Sendack => Packet::Sendack(decode_sendack_body(&mut r, f.flags, version)?),
        PacketType::Recv => Packet::Recv(decode_recv_body(&mut r, f.flags, version)?),
        PacketType::Recvack => Packet::Recvack(decode_recvack_body(&mut r, f.flags, version)?),
        PacketType::Disconnect => Packet::Disconnect(DisconnectPacket { reason_code: ReasonCode(r.u8("reason_code")?), reason: r.string("reason")? }),
        PacketType::Sub => Packet::Sub(SubPacket {
            setting: Setting(r.u8("setting")?),
            sub_no: r.string("sub_no")?,
            channel_id: r.string("channel_id")?,
            channel_type: r.u8("channel_type")?,
            action: r.u8("action")?,
            param: r.string("param")?,
        }),
        PacketType::Suback => Packet::Suback(SubackPacket {
            sub_no: r.string("sub_no")?,
            channel_id: r.string("channel_id")?,
            channel_type: r.u8("channel_type")?,
            action: r.u8("action")?,
            reason_code: ReasonCode(r.u8("reason_code")?),
        }),
        PacketType::Event => {
            Packet::Event(EventPacket { id: r.string("id")?, kind: r.string("type")?, timestamp: r.i64("timestamp")?, data: r.rest().to_vec() })
        }
    };
    // Bytes after the last field of a fixed layout are ignored, as WuKongIM's decoders and the JS
    // SDK do: newer peers append optional fields (SENDACK's client_msg_no is one).
    Ok((packet, f.len))
}

/// Decodes the first packet of a connection, which must be CONNECT. CONNECT carries its own
/// version and has no version gates, so this works before any version is negotiated.
///
/// # Errors
/// As [`decode`], plus [`DecodeError::Invalid`] when the first packet is of another type.
pub fn decode_connect(buf: &[u8]) -> Result<(ConnectPacket, usize), DecodeError> {
    let f = frame(buf)?;
    if f.kind != PacketType::Connect {
        return Err(invalid(format!("first packet must be CONNECT, got {:?}", f.kind)));
    }
    let mut r = Reader { buf: f.body, pos: 0 };
    Ok((decode_connect_body(&mut r)?, f.len))
}

/// Appends the encoding of `packet` for a session of protocol `version` to `out`. Fields the
/// version does not have are left out (for example `expire` below version 3), so one stored message
/// can be sent to clients of every version.
///
/// # Errors
/// A string over [`MAX_STRING_LEN`] bytes, a body over [`MAX_BODY_LEN`] bytes, or a `message_seq`
/// over `u32::MAX` for a version below 6. `out` is unchanged on error.
pub fn encode(packet: &Packet, version: u8, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let result = encode_inner(packet, version, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// [`encode`] into a new vector.
///
/// # Errors
/// As [`encode`].
pub fn encode_to_vec(packet: &Packet, version: u8) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode(packet, version, &mut out)?;
    Ok(out)
}

/// A packet located in a buffer: its type, header flags, body and total length.
struct Frame<'a> {
    kind: PacketType,
    flags: u8,
    body: &'a [u8],
    len: usize,
}

fn invalid(reason: impl Into<String>) -> DecodeError {
    DecodeError::Invalid(reason.into())
}

fn frame(buf: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let first = *buf.first().ok_or(DecodeError::Incomplete)?;
    let code = first >> 4;
    let kind = PacketType::from_code(code).ok_or_else(|| invalid(format!("unknown packet type {code}")))?;
    let flags = first & 0x0f;
    if matches!(kind, PacketType::Ping | PacketType::Pong) {
        // PING and PONG are one byte with no remaining length; the 1.0.4 SDK would choke on `80 00`.
        return Ok(Frame { kind, flags, body: &[], len: 1 });
    }
    let mut body_len = 0usize;
    let mut varint_len = 0usize;
    loop {
        if varint_len == MAX_VARINT_LEN {
            return Err(invalid("remaining length longer than 4 bytes"));
        }
        let byte = *buf.get(1 + varint_len).ok_or(DecodeError::Incomplete)?;
        body_len |= usize::from(byte & 0x7f) << (7 * varint_len);
        varint_len += 1;
        if byte & 0x80 == 0 {
            break;
        }
    }
    if body_len > MAX_BODY_LEN {
        return Err(invalid(format!("body of {body_len} bytes exceeds {MAX_BODY_LEN}")));
    }
    let len = 1 + varint_len + body_len;
    let body = buf.get(1 + varint_len..len).ok_or(DecodeError::Incomplete)?;
    Ok(Frame { kind, flags, body, len })
}

/// Reads fields from a complete body; running out of bytes here is [`DecodeError::Invalid`].
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len()).ok_or_else(|| invalid(format!("truncated field {field}")))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn i32(&mut self, field: &str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    fn i64(&mut self, field: &str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    /// `message_seq`: u32 below version 6, u64 from version 6.
    fn seq(&mut self, version: u8, field: &str) -> Result<u64, DecodeError> {
        if version >= SEQ_U64_VERSION {
            self.u64(field)
        } else {
            self.u32(field).map(u64::from)
        }
    }

    fn string(&mut self, field: &str) -> Result<String, DecodeError> {
        let len = usize::from(self.u16(field)?);
        // The Go decoder reads the length as i16 and rejects negatives; refusing the same lengths
        // keeps Rookery from accepting what WuKongIM would not.
        if len > MAX_STRING_LEN {
            return Err(invalid(format!("string field {field} declares {len} bytes, more than {MAX_STRING_LEN}")));
        }
        let bytes = self.take(len, field)?;
        // Real clients encode strings as UTF-8 (the JS SDK via encodeURIComponent); anything else is
        // garbage, and Rust strings must be valid.
        String::from_utf8(bytes.to_vec()).map_err(|_| invalid(format!("string field {field} is not UTF-8")))
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        self.pos = self.buf.len();
        rest
    }
}

fn has_stream_fields(setting: Setting, version: u8) -> bool {
    setting.stream() && (STREAM_FIRST_VERSION..=STREAM_LAST_VERSION).contains(&version)
}

fn decode_connect_body(r: &mut Reader<'_>) -> Result<ConnectPacket, DecodeError> {
    Ok(ConnectPacket {
        version: r.u8("version")?,
        device_flag: r.u8("device_flag")?,
        device_id: r.string("device_id")?,
        uid: r.string("uid")?,
        token: r.string("token")?,
        client_timestamp: r.i64("client_timestamp")?,
        client_key: r.string("client_key")?,
    })
}

fn decode_connack_body(r: &mut Reader<'_>, flags: u8, version: u8) -> Result<ConnackPacket, DecodeError> {
    let server_version = if flags & CONNACK_HAS_SERVER_VERSION != 0 { Some(r.u8("server_version")?) } else { None };
    let time_diff = r.i64("time_diff")?;
    let reason_code = ReasonCode(r.u8("reason_code")?);
    let server_key = r.string("server_key")?;
    let salt = r.string("salt")?;
    let node_id = if version >= NODE_ID_VERSION { r.u64("node_id")? } else { 0 };
    Ok(ConnackPacket { server_version, time_diff, reason_code, server_key, salt, node_id })
}

fn decode_send_body(r: &mut Reader<'_>, flags: u8, version: u8) -> Result<SendPacket, DecodeError> {
    let header = Header::from_flags(flags);
    let setting = Setting(r.u8("setting")?);
    let client_seq = r.u32("client_seq")?;
    let client_msg_no = r.string("client_msg_no")?;
    let stream_no = if has_stream_fields(setting, version) { r.string("stream_no")? } else { String::new() };
    let channel_id = r.string("channel_id")?;
    let channel_type = r.u8("channel_type")?;
    let expire = if version >= EXPIRE_VERSION { r.u32("expire")? } else { 0 };
    let msg_key = r.string("msg_key")?;
    let topic = if setting.topic() { r.string("topic")? } else { String::new() };
    let payload = r.rest().to_vec();
    Ok(SendPacket { header, setting, client_seq, client_msg_no, stream_no, channel_id, channel_type, expire, msg_key, topic, payload })
}

fn decode_sendack_body(r: &mut Reader<'_>, flags: u8, version: u8) -> Result<SendackPacket, DecodeError> {
    let header = Header::from_flags(flags);
    let message_id = r.i64("message_id")?;
    let client_seq = r.u32("client_seq")?;
    let message_seq = r.seq(version, "message_seq")?;
    let reason_code = ReasonCode(r.u8("reason_code")?);
    let client_msg_no = if version >= SEQ_U64_VERSION && r.remaining() > 0 { r.string("client_msg_no")? } else { String::new() };
    Ok(SendackPacket { header, message_id, client_seq, message_seq, reason_code, client_msg_no })
}

fn decode_recv_body(r: &mut Reader<'_>, flags: u8, version: u8) -> Result<RecvPacket, DecodeError> {
    let header = Header::from_flags(flags);
    let setting = Setting(r.u8("setting")?);
    let msg_key = r.string("msg_key")?;
    let from_uid = r.string("from_uid")?;
    let channel_id = r.string("channel_id")?;
    let channel_type = r.u8("channel_type")?;
    let expire = if version >= EXPIRE_VERSION { r.u32("expire")? } else { 0 };
    let client_msg_no = r.string("client_msg_no")?;
    let (stream_no, stream_seq, stream_flag) =
        if has_stream_fields(setting, version) { (r.string("stream_no")?, r.u32("stream_seq")?, r.u8("stream_flag")?) } else { (String::new(), 0, 0) };
    let message_id = r.i64("message_id")?;
    let message_seq = r.seq(version, "message_seq")?;
    let timestamp = r.i32("timestamp")?;
    let topic = if setting.topic() { r.string("topic")? } else { String::new() };
    let payload = r.rest().to_vec();
    Ok(RecvPacket {
        header,
        setting,
        msg_key,
        from_uid,
        channel_id,
        channel_type,
        expire,
        client_msg_no,
        stream_no,
        stream_seq,
        stream_flag,
        message_id,
        message_seq,
        timestamp,
        topic,
        payload,
    })
}

fn decode_recvack_body(r: &mut Reader<'_>, flags: u8, version: u8) -> Result<RecvackPacket, DecodeError> {
    Ok(RecvackPacket { header: Header::from_flags(flags), message_id: r.i64("message_id")?, message_seq: r.seq(version, "message_seq")? })
}

/// Writes big-endian fields into the output buffer, checking the limits the peers enforce.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn i32(&mut self, v: i32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn seq(&mut self, v: u64, version: u8) -> Result<(), EncodeError> {
        if version >= SEQ_U64_VERSION {
            self.u64(v);
        } else {
            // The JS SDK reads 4 bytes whatever the version; never widen or silently truncate.
            self.u32(u32::try_from(v).map_err(|_| EncodeError::SeqOutOfRange(v))?);
        }
        Ok(())
    }

    fn string(&mut self, s: &str, field: &'static str) -> Result<(), EncodeError> {
        let len = u16::try_from(s.len()).ok().filter(|&l| usize::from(l) <= MAX_STRING_LEN).ok_or(EncodeError::StringTooLong { field, len: s.len() })?;
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }
}

fn encode_inner(packet: &Packet, version: u8, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let kind = packet.packet_type();
    let flags = match packet {
        Packet::Send(p) => p.header.flags(),
        Packet::Sendack(p) => p.header.flags(),
        Packet::Recv(p) => p.header.flags(),
        Packet::Recvack(p) => p.header.flags(),
        Packet::Connack(p) if p.server_version.is_some() => CONNACK_HAS_SERVER_VERSION,
        // Other types carry no flags; WuKongIM writes zeros.
        _ => 0,
    };
    out.push((kind.code() << 4) | flags);
    if matches!(packet, Packet::Ping | Packet::Pong) {
        return Ok(());
    }
    // The body is written first and its length spliced in before it, which saves computing every
    // packet's size twice (as the Go codec does) at the cost of one memmove of the body.
    let body_start = out.len();
    let mut w = Writer { out };
    match packet {
        Packet::Ping | Packet::Pong => {}
        Packet::Connect(p) => {
            w.u8(p.version);
            w.u8(p.device_flag);
            w.string(&p.device_id, "device_id")?;
            w.string(&p.uid, "uid")?;
            w.string(&p.token, "token")?;
            w.i64(p.client_timestamp);
            w.string(&p.client_key, "client_key")?;
        }
        Packet::Connack(p) => {
            if let Some(v) = p.server_version {
                w.u8(v);
            }
            w.i64(p.time_diff);
            w.u8(p.reason_code.0);
            w.string(&p.server_key, "server_key")?;
            w.string(&p.salt, "salt")?;
            if version >= NODE_ID_VERSION {
                w.u64(p.node_id);
            }
        }
        Packet::Send(p) => {
            w.u8(p.setting.0);
            w.u32(p.client_seq);
            w.string(&p.client_msg_no, "client_msg_no")?;
            if has_stream_fields(p.setting, version) {
                w.string(&p.stream_no, "stream_no")?;
            }
            w.string(&p.channel_id, "channel_id")?;
            w.u8(p.channel_type);
            if version >= EXPIRE_VERSION {
                w.u32(p.expire);
            }
            w.string(&p.msg_key, "msg_key")?;
            if p.setting.topic() {
                w.string(&p.topic, "topic")?;
            }
            w.bytes(&p.payload);
        }
        Packet::Sendack(p) => {
            w.i64(p.message_id);
            w.u32(p.client_seq);
            w.seq(p.message_seq, version)?;
            w.u8(p.reason_code.0);
            if version >= SEQ_U64_VERSION && !p.client_msg_no.is_empty() {
                w.string(&p.client_msg_no, "client_msg_no")?;
            }
        }
        Packet::Recv(p) => {
            w.u8(p.setting.0);
            w.string(&p.msg_key, "msg_key")?;
            w.string(&p.from_uid, "from_uid")?;
            w.string(&p.channel_id, "channel_id")?;
            w.u8(p.channel_type);
            if version >= EXPIRE_VERSION {
                w.u32(p.expire);
            }
            w.string(&p.client_msg_no, "client_msg_no")?;
            if has_stream_fields(p.setting, version) {
                // GoProto's layout, which is also the order the npm SDK 1.0.4 reads (spec §1.6.5 lists a
                // second, incompatible layout from the v3 codec; no current SDK reads either).
                w.string(&p.stream_no, "stream_no")?;
                w.u32(p.stream_seq);
                w.u8(p.stream_flag);
            }
            w.i64(p.message_id);
            w.seq(p.message_seq, version)?;
            w.i32(p.timestamp);
            if p.setting.topic() {
                w.string(&p.topic, "topic")?;
            }
            w.bytes(&p.payload);
        }
        Packet::Recvack(p) => {
            w.i64(p.message_id);
            w.seq(p.message_seq, version)?;
        }
        Packet::Disconnect(p) => {
            w.u8(p.reason_code.0);
            w.string(&p.reason, "reason")?;
        }
        Packet::Sub(p) => {
            w.u8(p.setting.0);
            w.string(&p.sub_no, "sub_no")?;
            w.string(&p.channel_id, "channel_id")?;
            w.u8(p.channel_type);
            w.u8(p.action);
            w.string(&p.param, "param")?;
        }
        Packet::Suback(p) => {
            w.string(&p.sub_no, "sub_no")?;
            w.string(&p.channel_id, "channel_id")?;
            w.u8(p.channel_type);
            w.u8(p.action);
            w.u8(p.reason_code.0);
        }
        Packet::Event(p) => {
            w.string(&p.id, "id")?;
            w.string(&p.kind, "type")?;
            w.i64(p.timestamp);
            w.bytes(&p.data);
        }
    }
    let body_len = out.len() - body_start;
    if body_len > MAX_BODY_LEN {
        return Err(EncodeError::BodyTooLarge(body_len));
    }
    let (varint, n) = varint(body_len);
    out.splice(body_start..body_start, varint[..n].iter().copied());
    Ok(())
}

/// The remaining-length varint of `len` (at most [`MAX_BODY_LEN`], so at most 3 bytes) and its
/// length. Unlike WuKongIM's encoders, which write nothing for 0, a zero length is written as `00`
/// so that every non-PING/PONG packet has at least one length byte.
fn varint(mut len: usize) -> ([u8; MAX_VARINT_LEN], usize) {
    let mut bytes = [0u8; MAX_VARINT_LEN];
    let mut n = 0;
    loop {
        // Truncation is intended: the mask keeps the low seven bits.
        let mut byte = (len & 0x7f) as u8;
        len >>= 7;
        if len > 0 {
            byte |= 0x80;
        }
        bytes[n] = byte;
        n += 1;
        if len == 0 || n == MAX_VARINT_LEN {
            return (bytes, n);
        }
    }
}

#[cfg(test)]
mod tests;
