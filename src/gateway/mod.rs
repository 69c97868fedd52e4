//! The WKProto gateway: what the official WuKongIM SDKs speak over TCP and WebSocket.
//!
//! `packet` is the pure codec (bytes to [`packet::Packet`] and back, every protocol version 1-6);
//! `crypto` is the key agreement and payload encryption of the handshake. Neither does I/O, so both
//! are tested without sockets; `docs/PROTOCOL.md` describes the wire format they implement.
//!
//! `conn` turns a TCP stream or a WebSocket into a buffered stream of packets; `tcp` and `ws` only
//! accept and adapt sockets, through `accept`, which takes a connection from accept to close (`server`
//! holds what every connection shares); `login`
//! answers CONNECT (credentials through the login use case, key agreement, the entry in presence);
//! `session` is the per-connection loop (PING, SEND through the send use case, RECVs of what is
//! delivered to it, kicks); `unacked` tracks the RECVs a session waits to see acknowledged;
//! `jsonrpc` translates JSON-RPC over WebSocket to and from packets, so JSON-RPC sessions share the
//! session logic. The gateway builds no other transport's answers and holds no rule of its own
//! about what may be sent: those are the use cases' (`crate::usecase`).

#![warn(missing_docs)]

/// Room in a RECV body for everything but the payload: the header fields at the lengths the use cases
/// allow (ids up to 257 bytes for person channels, client_msg_no and topic up to 128 and 255, the
/// 32-byte msg_key, stream fields, numbers and string lengths), with margin.
const RECV_OVERHEAD: usize = 4096;

/// The largest plaintext payload every session can receive: sealed (AES-128-CBC, padded to whole
/// blocks, then base64) inside a RECV, or base64 in a JSON-RPC message, it still fits one packet of
/// [`packet::MAX_BODY_LEN`]. A larger message would end the session of every recipient it was pushed
/// to, so the send use case refuses it to its sender (the server wires this in as the payload limit).
pub fn max_deliverable_payload() -> usize {
    let budget = packet::MAX_BODY_LEN - RECV_OVERHEAD;
    // base64 turns 3 bytes into 4; PKCS#7 always adds 1 to 16 bytes of padding.
    let padded = (budget / 4) * 3 / 16 * 16;
    padded - 1
}

pub mod accept;
pub mod conn;
pub mod crypto;
pub mod jsonrpc;
mod login;
pub mod packet;
pub mod server;
pub mod session;
pub mod tcp;
pub mod unacked;
pub mod ws;
