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
